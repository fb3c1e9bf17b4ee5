"""HDMapNet / BEVFormer_segmentation_detection rasterisation (bevlib.data.map_raster) on hand-made maps.

Most tests use REF, the grid whose cells are the reference's 0.15 m canvas pixels, so that cells are
canvas pixels: grid row i holds canvas column u = 399 - i (x = -30 + (u + 0.5) * 0.15), grid column j
holds canvas row v = 199 - j (y = -15 + (v + 0.5) * 0.15). Coordinates below sit on pixel centres.
"""
import numpy as np
import pytest
import shapely

from bevlib.bev import BEVGrid
from bevlib.data.map_raster import (REF_TO_BEV, HDMapRasterConfig, canvas_shape, canvas_to_grid,
                                    draw_hdmapnet_canvas, ego_to_canvas, hdmapnet_vectors,
                                    ped_crossing_edges, rasterize_hdmapnet)

REF = BEVGrid(H=400, W=200)
BOUNDARY, LANE, CROSSWALK = 1, 2, 3
EMPTY = {"divider": [], "crosswalk": [], "road": []}


def _geoms(**kw):
    return {**EMPTY, **kw}


def test_ego_to_canvas_mapping_and_canvas_shape():
    assert canvas_shape(BEVGrid()) == (200, 400)             # rows = 30 m lateral, columns = 60 m longitudinal
    pts = np.array([[-30, -15], [0, 0], [30, 15], [29.925, 14.925], [-29.925, 3.075]])
    np.testing.assert_allclose(ego_to_canvas(pts, REF), [[0, 0], [200, 100], [400, 200], [399.5, 199.5],
                                                         [0.5, 120.5]], atol=1e-9)
    # One canvas pixel (row v = 10, column u = 20: x in [-27, -26.85), y in [-13.5, -13.35), rear
    # right) lands in the one grid cell (399 - 20, 199 - 10), mapped to our class index.
    canvas = np.zeros((200, 400), np.uint8)
    canvas[10, 20] = 1                                       # reference divider
    out = canvas_to_grid(canvas, REF)
    assert list(zip(*np.nonzero(out))) == [(379, 189)] and out[379, 189] == LANE
    with pytest.raises(ValueError, match="shape"):
        canvas_to_grid(canvas[:, :300], REF)


def test_coarse_grid_takes_the_pixel_of_each_cell_centre():
    # 150 x 150: row i centre x = 29.8 - 0.4 i. Row 58 (x = 6.6) sits exactly on the edge between
    # canvas columns 243 and 244 (u = 36.6 / 0.15 = 244, 243.99999999999997 in float64) and takes
    # 244, the pixel above the edge (half-open pixels, as the reference's truncation).
    canvas = np.zeros((200, 400), np.uint8)
    canvas[:, 244] = 3                                       # reference contour
    out = canvas_to_grid(canvas, BEVGrid())
    assert np.nonzero(out.any(1))[0].tolist() == [58] and (out[58] == BOUNDARY).all()
    canvas[:] = 0
    canvas[:, 243] = 3
    assert not canvas_to_grid(canvas, BEVGrid()).any()       # no cell centre lies in column 243


def test_divider_is_seven_pixels_across_and_loses_its_last_metre():
    # Along x at y = 3.075 (canvas row 120 -> grid column 79), from behind the grid to beyond it.
    m = rasterize_hdmapnet(_geoms(divider=[shapely.LineString([(-40, 3.075), (40, 3.075)])]), REF)
    cols = np.nonzero((m == LANE).any(0))[0]
    assert cols.tolist() == list(range(76, 83))              # thickness 5 = centre +- 3 px = 1.05 m
    assert (m[10:390, 76:83] == LANE).all()
    assert set(np.unique(m)) == {0, LANE}
    # Clipped at x = -30 and resampled every metre: points up to x = 29 (canvas column 393, round
    # cap to 396 = grid row 3); the metre before the front edge is not drawn.
    assert not m[:3].any() and (m[3, 79] == LANE)
    full = rasterize_hdmapnet(_geoms(divider=[shapely.LineString([(-40, 3.075), (40, 3.075)])]), REF,
                              HDMapRasterConfig(sample_dist_m=None))
    assert (full[0:3, 79] == LANE).all()


def test_divider_thickness_is_the_configured_one():
    m = rasterize_hdmapnet(_geoms(divider=[shapely.LineString([(-40, 3.075), (40, 3.075)])]), REF,
                           HDMapRasterConfig(thickness_px=3))
    assert np.nonzero((m == LANE).any(0))[0].tolist() == list(range(77, 82))


def test_short_divider_is_dropped():
    short = shapely.LineString([(0.075, 3.075), (0.875, 3.075)])   # 0.8 m: one sample point only
    assert not rasterize_hdmapnet(_geoms(divider=[short]), REF).any()
    assert rasterize_hdmapnet(_geoms(divider=[short]), REF, HDMapRasterConfig(sample_dist_m=None)).any()


def test_ped_crossing_edges_are_the_two_longest():
    poly = shapely.Polygon([(0, 0), (4, 0), (4, 12), (0, 12)])
    edges = ped_crossing_edges(poly)
    assert [list(e.coords) for e in edges] == [[(0, 12), (0, 0)], [(4, 0), (4, 12)]] or \
        [list(e.coords) for e in edges] == [[(4, 0), (4, 12)], [(0, 12), (0, 0)]]
    pent = shapely.Polygon([(0, 0), (10, 0), (10, 1), (6, 3), (0, 1)])   # edges 10, 1, 4.47, 6.32, 1
    got = sorted(tuple(map(tuple, e.coords)) for e in ped_crossing_edges(pent))
    assert got == sorted([((0, 0), (10, 0)), ((6, 3), (0, 1))])


def test_crosswalk_is_drawn_as_its_two_long_edges():
    # x 10.125 .. 14.025 (grid rows 132 and 106), y -5.925 .. 6.075 (grid columns 139 and 59):
    # long edges 12 m along y, short edges 3.9 m along x.
    box = shapely.box(10.125, -5.925, 14.025, 6.075)
    m = rasterize_hdmapnet(_geoms(crosswalk=[box]), REF)
    assert set(np.unique(m)) == {0, CROSSWALK}
    rows = np.nonzero((m == CROSSWALK).any(1))[0]
    assert rows.tolist() == list(range(103, 110)) + list(range(129, 136))   # the two long edges, +- 3 px
    assert (m[103:110, 80:120] == CROSSWALK).all() and (m[129:136, 80:120] == CROSSWALK).all()
    assert not m[110:129].any()                               # no short edges, no fill
    # box's ring runs (14.025, -5.925) -> (14.025, 6.075) and (10.125, 6.075) -> (10.125, -5.925):
    # each edge loses its last metre, so near y = 6 only the x = 10.125 edge is drawn, near y = -6
    # only the x = 14.025 one.
    assert m[132, 61] == CROSSWALK and m[106, 61] == 0        # y = 5.775
    assert m[106, 137] == CROSSWALK and m[132, 137] == 0      # y = -5.625


def test_crosswalk_records_are_not_merged():
    # Two 3.9 x 2 m records side by side along y: each one's long edges run along x, at y = -1.925,
    # 0.075 (both records) and 2.075. Their union has no edge at y = 0.075 (GEOS keeps the collinear
    # vertices there, so its long edges are the outer 3.9 m ones).
    a = shapely.box(10.125, -1.925, 14.025, 0.075)
    b = shapely.box(10.125, 0.075, 14.025, 2.075)
    per_record = rasterize_hdmapnet(_geoms(crosswalk=[a, b]), REF)
    merged = rasterize_hdmapnet(_geoms(crosswalk=shapely.unary_union([a, b])), REF)
    assert per_record[119, 99] == CROSSWALK and merged[119, 99] == 0     # x = 12.075 on the shared edge
    assert (per_record[119, [86, 112]] == CROSSWALK).all() and (merged[119, [86, 112]] == CROSSWALK).all()


def test_road_contour_exterior_and_hole_not_the_patch_border():
    # Road edges at y = 8.025 (grid column 46) and y = -7.875 (column 152); a hole
    # x -5.025 .. 4.875 (rows 233, 167), y -2.025 .. 1.875 (columns 113, 87).
    shell = [(-50, -7.875), (50, -7.875), (50, 8.025), (-50, 8.025)]
    hole = [(-5.025, -2.025), (4.875, -2.025), (4.875, 1.875), (-5.025, 1.875)]
    m = rasterize_hdmapnet(_geoms(road=[shapely.Polygon(shell, [hole])]), REF)
    assert set(np.unique(m)) == {0, BOUNDARY}
    assert np.nonzero(m[300] == BOUNDARY)[0].tolist() == list(range(43, 50)) + list(range(149, 156))
    col = np.nonzero(m[:, 99] == BOUNDARY)[0].tolist()       # y = 0.075 runs through the hole
    assert col == list(range(164, 171)) + list(range(230, 237))
    # The polygon is cut at x = +-30 by the patch; those cuts are not road edges.
    assert not m[:, 60:140][[0, 1, 2, 397, 398, 399]].any()
    edge = rasterize_hdmapnet(_geoms(road=[shapely.Polygon(shell, [hole])]), REF,
                              HDMapRasterConfig(contour_margin_m=0.0))
    assert (edge[0:3, 60:140] == BOUNDARY).all()


def test_road_union_and_invalid_records():
    # Two overlapping records: only the outline of their union is a contour (no edge at x = 0.075).
    left = shapely.box(-50, -7.875, 0.075, 8.025)
    right = shapely.box(-0.525, -7.875, 50, 8.025)
    m = rasterize_hdmapnet(_geoms(road=[left, right]), REF)
    assert not m[190:210, 60:140].any() and (m[190:210, 43:50] == BOUNDARY).all()
    # The devkit skips invalid polygons (a bow-tie) instead of repairing them.
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    assert not bowtie.is_valid
    assert not rasterize_hdmapnet(_geoms(road=[bowtie]), REF).any()


def test_overlap_contour_over_ped_crossing_over_divider_with_a_gap():
    road = shapely.box(-50, -7.875, 50, 8.025)
    box = shapely.box(10.125, -5.925, 14.025, 6.075)
    on_edge = shapely.LineString([(-40, 8.025), (40, 8.025)])       # a divider on the road edge
    across = shapely.LineString([(-40, 0.075), (40, 0.075)])        # a divider through the crosswalk
    m = rasterize_hdmapnet(_geoms(divider=[on_edge, across], crosswalk=[box], road=[road]), REF)
    # The boundary wins and erases the divider within its 9-px eraser (+- 5 px): background margins.
    assert (m[20:380, 43:50] == BOUNDARY).all()
    assert not (m[:, 38:55] == LANE).any()
    assert not m[20:380, [41, 42, 50, 51]].any()
    # The crosswalk wins over the divider (our shapely rasteriser draws the lane over it).
    col = m[:, 99]
    assert (col[129:136] == CROSSWALK).all() and (col[103:110] == CROSSWALK).all()
    assert not col[[127, 128, 136, 137, 101, 102, 110, 111]].any()
    assert col[126] == LANE and col[138] == LANE and (col[112:126] == LANE).all()


def test_crosswalk_erased_by_boundary():
    road = shapely.box(-50, -7.875, 50, 8.025)
    box = shapely.box(10.125, 2.025, 14.025, 14.025)         # long edges cross the road edge y = 8.025
    m = rasterize_hdmapnet(_geoms(crosswalk=[box], road=[road]), REF)
    assert m[132, 46] == BOUNDARY and m[132, 35] == CROSSWALK and m[132, 60] == CROSSWALK
    assert m[132, 41] == 0 and m[132, 51] == 0


def test_front_left_lands_at_small_row_and_column():
    front_left = shapely.LineString([(20.0, 10.0), (26.0, 10.0)])
    rear_right = shapely.LineString([(-26.0, -10.0), (-20.0, -10.0)])
    m = rasterize_hdmapnet(_geoms(divider=[front_left]), REF)
    r, c = np.nonzero(m)
    # x 20 .. 25 (26 is the dropped last metre): canvas columns 333 .. 366 (+-3 cap) -> rows 30 .. 69;
    # y = 10: canvas row 166 -> column 33 (+-3).
    assert (r.min(), r.max(), c.min(), c.max()) == (30, 69, 30, 36)
    for grid in (REF, BEVGrid()):
        fl = rasterize_hdmapnet(_geoms(divider=[front_left]), grid)
        rr = rasterize_hdmapnet(_geoms(divider=[rear_right]), grid)
        r, c = np.nonzero(fl)
        assert r.max() < grid.H // 4 + 2 and c.max() < grid.W // 4
        r, c = np.nonzero(rr)
        assert r.min() > 3 * grid.H // 4 - 2 and c.min() > 3 * grid.W // 4


def test_reference_resolution_grid_is_the_canvas_reindexed():
    geoms = _geoms(divider=[shapely.LineString([(-40, -3.3), (12, 0.4), (40, 9.1)])],
                   crosswalk=[shapely.Polygon([(5, -9), (8, -9.5), (9, 4), (6, 4.2)])],
                   road=[shapely.box(-50, -8.2, 50, 7.7), shapely.box(2, -20, 9, 20)])
    canvas = draw_hdmapnet_canvas(hdmapnet_vectors(geoms, REF), REF)
    assert canvas.shape == (200, 400) and set(np.unique(canvas)) == {0, 1, 2, 3}
    m = rasterize_hdmapnet(geoms, REF)
    np.testing.assert_array_equal(m, REF_TO_BEV[canvas.T[::-1, ::-1]])
    coarse = rasterize_hdmapnet(geoms, BEVGrid())
    assert coarse.shape == (150, 150) and coarse.dtype == np.uint8 and set(np.unique(coarse)) == {0, 1, 2, 3}


def test_accepts_merged_geometries_and_checks_input():
    # map_geometries_ego's current output: one (multi)geometry per key.
    merged = {"divider": shapely.MultiLineString([[(-40, 3.075), (40, 3.075)]]),
              "crosswalk": shapely.box(10.125, -5.925, 14.025, 6.075),
              "road": shapely.box(-50, -7.875, 50, 8.025)}
    assert set(np.unique(rasterize_hdmapnet(merged, REF))) == {0, 1, 2, 3}
    with pytest.raises(KeyError, match="road"):
        rasterize_hdmapnet({"divider": [], "crosswalk": []}, REF)
    with pytest.raises(TypeError, match="divider"):
        rasterize_hdmapnet(_geoms(divider=[shapely.box(0, 0, 1, 1)]), REF)
    with pytest.raises(TypeError, match="road"):
        rasterize_hdmapnet(_geoms(road=[shapely.LineString([(0, 0), (1, 1)])]), REF)
    for bad in (dict(resolution_m=0), dict(thickness_px=0), dict(thickness_px=2.5), dict(filter_extra_px=-1),
                dict(sample_dist_m=0), dict(contour_margin_m=-0.1)):
        with pytest.raises(ValueError):
            HDMapRasterConfig(**bad)
    assert not rasterize_hdmapnet(EMPTY, BEVGrid()).any()
    with pytest.raises(TypeError, match="shapely"):
        rasterize_hdmapnet(_geoms(divider=[[(0, 0), (1, 1)]]), REF)
