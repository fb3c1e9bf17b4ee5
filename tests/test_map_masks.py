"""bevlib.data.map_masks against an independent reference: every cell centre taken to the global
frame with the keyframe's pose and tested with shapely against the raw map-expansion records
(no patch, no rotation, no rasterisation), on the tiny embedded world."""
import numpy as np
import pytest
import shapely
from shapely.ops import unary_union

from bevlib import geometry as geo
from bevlib.bev import BEVGrid
from bevlib.data.map_masks import BEVSEG_GRID, CLASS_LAYERS, MAP_SEG_CLASSES, map_masks
from bevlib.data.nuscenes_data import DataError, global_T_ego, map_for_sample, open_nuscenes

# Non-square, non-centred, rectangular cells: any transposition, flip or half-cell shift shows.
GRID = BEVGrid(x_min=-20.0, x_max=40.0, y_min=-12.0, y_max=18.0, H=80, W=50)


@pytest.fixture(scope="module")
def nusc(tiny_world):
    return open_nuscenes(tiny_world, "v1.0-mini")


def _global_shapes(nusc_map):
    """Per class the union of the raw records in the global frame (reference geometry)."""
    out = {}
    for name in MAP_SEG_CLASSES:
        geoms = []
        for layer in CLASS_LAYERS[name]:
            for rec in getattr(nusc_map, layer):
                if "line_token" in rec:
                    geoms.append(nusc_map.extract_line(rec["line_token"]))
                elif "polygon_tokens" in rec:
                    geoms += [nusc_map.extract_polygon(t) for t in rec["polygon_tokens"]]
                else:
                    geoms.append(nusc_map.extract_polygon(rec["polygon_token"]))
        out[name] = unary_union([g for g in geoms if not g.is_empty])
    return out


def test_classes_are_bevfusions_order_restricted_to_the_world(nusc):
    order = ("drivable_area", "ped_crossing", "walkway", "stop_line", "carpark_area", "divider")
    assert MAP_SEG_CLASSES == tuple(c for c in order if c in MAP_SEG_CLASSES)
    m = map_for_sample(nusc, nusc.sample[0]["token"])
    for name in MAP_SEG_CLASSES:                        # every class exists in the world's map
        assert sum(len(getattr(m, lay)) for lay in CLASS_LAYERS[name]) > 0, name
    assert len(m.carpark_area) == 0
    assert BEVSEG_GRID.H == BEVSEG_GRID.W == 200 and BEVSEG_GRID.cell_size == (0.5, 0.5)


def test_masks_match_point_in_polygon_in_the_global_frame(nusc):
    width = 1.0
    dx, dy = GRID.cell_size
    # The devkit rounds polygon vertices to whole pixels (<= half a pixel per axis): only cells
    # farther than that from a boundary must agree exactly.
    margin = 0.75 * np.hypot(dx, dy)
    xy = GRID.cell_centers().reshape(-1, 2)
    checked = 0
    for s in nusc.sample:
        shapes = _global_shapes(map_for_sample(nusc, s["token"]))     # scenes may lie in different maps
        masks = map_masks(nusc, s["token"], GRID, divider_width_m=width)
        assert masks.shape == (len(MAP_SEG_CLASSES), GRID.H, GRID.W) and masks.dtype == bool
        pts = geo.apply(global_T_ego(nusc, s["token"]), np.c_[xy, np.zeros(len(xy))])[:, :2]
        P = shapely.points(pts)
        for k, name in enumerate(MAP_SEG_CLASSES):
            got = masks[k].reshape(-1)
            shp = shapes[name]
            if name == "divider":
                d = shapely.distance(shp, P)
                sure = np.abs(d - width / 2) > 1e-6
                ref = d < width / 2
            else:
                sure = shapely.distance(shp.boundary, P) > margin
                ref = shapely.contains(shp, P)
            assert np.array_equal(got[sure], ref[sure]), (s["token"], name, np.sum(got[sure] != ref[sure]))
            # Near boundaries most cells still agree (a flipped or shifted grid would not).
            assert np.mean(got == ref) > 0.95, (name, np.mean(got == ref))
            checked += int(ref[sure].sum())
    assert checked > 1000                               # the comparison saw many set cells


def test_ego_cell_is_drivable_in_every_keyframe(nusc):
    r, c = np.round(BEVSEG_GRID.xy_to_rowcol(np.array([0.25, 0.25]))).astype(int)   # cell whose centre is (0.25, 0.25)
    for s in nusc.sample:
        masks = map_masks(nusc, s["token"])
        assert masks.shape == (5, 200, 200)
        assert masks[0, r, c], s["token"]


def test_orientation_polygon_ahead_of_the_ego(nusc):
    """A ped crossing whose centroid lies ahead-left of the ego lands in the upper-left quadrant:
    row 0 is the front edge, column 0 the left edge."""
    grid = BEVGrid(-40.0, 40.0, -40.0, 40.0, 160, 160)
    found = 0
    for s in nusc.sample:
        m = map_for_sample(nusc, s["token"])
        ego_T_global = geo.invert(global_T_ego(nusc, s["token"]))
        masks = map_masks(nusc, s["token"], grid, classes=("ped_crossing",))[0]
        for rec in m.ped_crossing:
            cx, cy = geo.apply(ego_T_global, np.array([[*m.extract_polygon(rec["polygon_token"]).centroid.coords[0], 0.0]]))[0, :2]
            if 5 < cx < 35 and 5 < cy < 35:
                row, col = np.round(grid.xy_to_rowcol(np.array([cx, cy]))).astype(int)
                assert row < 80 and col < 80
                assert masks[row - 1:row + 2, col - 1:col + 2].any()
                found += 1
    assert found > 0


def test_non_centred_grid_is_a_crop_of_the_centred_one(nusc):
    tok = nusc.sample[1]["token"]
    full = map_masks(nusc, tok, BEVGrid(-40.0, 40.0, -20.0, 20.0, 160, 80), classes=("drivable_area", "divider"))
    front = map_masks(nusc, tok, BEVGrid(0.0, 40.0, -20.0, 20.0, 80, 80), classes=("drivable_area", "divider"))
    assert np.array_equal(front[1], full[1, :80])      # dividers: exact (point tests at the same centres)
    assert np.mean(front[0] == full[0, :80]) > 0.99    # polygons: up to vertex rounding


def test_bad_input_raises(nusc):
    tok = nusc.sample[0]["token"]
    with pytest.raises(ValueError, match="classes"):
        map_masks(nusc, tok, GRID, classes=("lane",))
    with pytest.raises(ValueError, match="divider_width_m"):
        map_masks(nusc, tok, GRID, divider_width_m=0.0)


def test_missing_map_expansion_raises(tiny_world, tmp_path):
    import shutil
    root = tmp_path / "w"
    shutil.copytree(tiny_world, root, ignore=shutil.ignore_patterns("expansion"))
    n = open_nuscenes(root, "v1.0-mini")
    with pytest.raises(DataError, match="map expansion"):
        map_masks(n, n.sample[0]["token"], GRID)
