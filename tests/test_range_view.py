"""Range projection (lukkassen2024 Sec. 3.2.1, RangeViT): values, the nearest-wins rule, equality
with the sort-and-assign reference, ring rows, and the real nuScenes keyframe."""
import numpy as np
import pytest

from bevlib.range_view import RangeProjection, _reference_project, project_to_range

SMALL = RangeProjection(H=4, W=8, fov_up_deg=10.0, fov_down_deg=-30.0, row="elevation")


def _at(azimuth_deg, elevation_deg, r=10.0, intensity=7.0):
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    return [r * np.cos(e) * np.cos(a), r * np.cos(e) * np.sin(a), r * np.sin(e), intensity]


def _assert_same(a, b):
    for name in ("image", "mask", "owner", "u", "v", "kept"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.row == b.row


def test_points_at_known_angles_land_on_the_formula_pixel():
    # u = 1/2 (1 - az/180) W, v = (1 - (el + 30) / 40) H with W = 8, H = 4, floored and clipped.
    cases = [((0, 0), (4, 1)),          # u = 4.0, v = 1.0
             ((100, -25), (1, 3)),      # u = 1.78, v = 3.5
             ((-100, 5), (6, 0)),       # u = 6.22, v = 0.5
             ((90, 20), (2, 0)),        # above the FOV: v < 0 clipped to the top row
             ((-90, -50), (6, 3)),      # below the FOV: clipped to the bottom row
             ((180, 0), (0, 1))]        # az = +pi: u = 0
    pts = np.array([_at(a, e, r=5.0 + i) for i, ((a, e), _) in enumerate(cases)])
    ri = project_to_range(pts, cfg=SMALL)
    assert ri.u.dtype == ri.v.dtype == np.int64
    assert [(int(u), int(v)) for u, v in zip(ri.u, ri.v)] == [uv for _, uv in cases]
    assert ri.kept.all() and ri.mask.sum() == len(cases) and ri.row == "elevation"
    u, v = ri.u[1], ri.v[1]
    assert ri.image[:, v, u] == pytest.approx([6.0, 7.0, *pts[1, :3]], rel=1e-6)
    # az = -pi exactly (y = -0.0) gives u = W: clipped into the last column.
    assert project_to_range(np.array([[-1.0, -0.0, 0.0, 0.0]]), cfg=SMALL).u[0] == SMALL.W - 1


def test_paper_defaults_are_the_nuscenes_hdl32e():
    cfg = RangeProjection()
    assert (cfg.H, cfg.W, cfg.fov_up_deg, cfg.fov_down_deg, cfg.row) == (32, 2048, 10.67, -30.67, "ring")
    ri = project_to_range(np.array([[10.0, 0.0, 0.0, 1.0]]))  # no ring: the elevation formula
    assert (ri.u[0], ri.v[0], ri.row) == (1024, int(np.floor((1 - 30.67 / 41.34) * 32)), "elevation")
    assert ri.image.shape == (5, 32, 2048) and ri.image.dtype == np.float32 and ri.mask.shape == (32, 2048)


def test_nearest_point_wins_whatever_the_order_and_ties_go_to_the_lowest_index():
    far, near, other = _at(30, 0, r=20.0, intensity=1), _at(30, 0, r=4.0, intensity=2), _at(-60, -10, r=3.0)
    for pts, winner in (([far, near, other], 1), ([near, far, other], 0)):
        ri = project_to_range(np.array(pts), cfg=SMALL)
        assert ri.kept.tolist() == [i == winner or i == 2 for i in range(3)]
        assert ri.owner[ri.v[winner], ri.u[winner]] == winner
        assert ri.image[0, ri.v[winner], ri.u[winner]] == pytest.approx(4.0)
        assert ri.image[1, ri.v[winner], ri.u[winner]] == 2
    # Equal range in the same pixel: the lowest index owns it, however many there are.
    tie = np.array([_at(30.0, 0, r=8.0, intensity=k) for k in range(5)] + [_at(30.1, 0.1, r=8.0, intensity=9)])
    tie[:, :3] = tie[0, :3]  # exactly the same point six times, other intensities
    ri = project_to_range(tie, cfg=SMALL)
    assert ri.kept.tolist() == [True] + [False] * 5 and ri.image[1, ri.v[0], ri.u[0]] == 0
    _assert_same(ri, _reference_project(tie, cfg=SMALL))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("row", ["ring", "elevation"])
def test_identical_to_the_sort_and_assign_reference_on_random_clouds(seed, row):
    rng = np.random.default_rng(seed)
    N = 30000
    pts = np.column_stack([rng.normal(0, 15, (N, 3)), rng.uniform(0, 255, N)]).astype(np.float32)
    # Many exact duplicates and rounded coordinates: ties and collisions must resolve alike.
    pts[: N // 10] = pts[N // 10: N // 5]
    pts[N // 5: N // 3, :3] = np.round(pts[N // 5: N // 3, :3])
    pts[-3:, :3] = 0.0                                           # points at the origin
    ring = rng.integers(0, 32, N).astype(np.uint8)
    cfg = RangeProjection(row=row)
    fast, ref = project_to_range(pts, ring, cfg), _reference_project(pts, ring, cfg)
    _assert_same(fast, ref)
    assert 0 < fast.kept.sum() < N and fast.kept.sum() == fast.mask.sum()
    # float64 input (another dtype path) gives the same pixels.
    _assert_same(project_to_range(pts.astype(np.float64), ring, cfg), _reference_project(pts.astype(np.float64), ring, cfg))


def test_validity_mask_owner_channels_and_kept_agree():
    rng = np.random.default_rng(5)
    pts = np.column_stack([rng.normal(0, 10, (5000, 3)), rng.uniform(1, 255, 5000)])
    ri = project_to_range(pts, cfg=RangeProjection(H=16, W=128, row="elevation"))
    assert np.array_equal(ri.mask, ri.owner >= 0)
    assert (ri.image[:, ~ri.mask] == 0).all() and (ri.image[0, ri.mask] > 0).all()
    own = ri.owner[ri.mask]
    assert np.array_equal(np.sort(own), np.flatnonzero(ri.kept))
    assert np.array_equal(ri.owner[ri.v, ri.u] == np.arange(len(pts)), ri.kept)
    assert np.array_equal(ri.image[2:, ri.mask], pts[own, :3].T.astype(np.float32))
    assert np.array_equal(ri.image[1, ri.mask], pts[own, 3].astype(np.float32))
    assert np.allclose(ri.image[0, ri.mask], np.linalg.norm(pts[own, :3], axis=1), rtol=1e-6)
    # Every point's own pixel holds a range no larger than its own (nearest wins).
    assert (ri.image[0, ri.v, ri.u] <= np.linalg.norm(pts[:, :3], axis=1).astype(np.float32)).all()
    empty = project_to_range(np.zeros((0, 4)), cfg=SMALL)
    assert not empty.mask.any() and empty.kept.shape == (0,) and empty.u.shape == (0,)


def test_ring_rows_put_ring_k_in_row_h_minus_1_minus_k_and_validate():
    pts = np.array([_at(0, 0), _at(0, 0, r=3.0), _at(45, 0)])
    ri = project_to_range(pts, np.array([0, 31, 5], np.uint8))
    assert ri.row == "ring" and ri.v.tolist() == [31, 0, 26] and ri.kept.all()  # same direction, other beams
    ri = project_to_range(pts, np.array([0, 31, 5]), RangeProjection(row="elevation"))
    assert ri.row == "elevation" and ri.v[0] == ri.v[1] and ri.kept.tolist() == [False, True, True]
    with pytest.raises(ValueError, match="0..31"):
        project_to_range(pts, np.array([0, 32, 1]))
    with pytest.raises(ValueError, match="integer"):
        project_to_range(pts, np.array([0, 1.5, 1]))
    with pytest.raises(ValueError, match="one per point"):
        project_to_range(pts, np.array([0, 1]))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=">=4"):
        project_to_range(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        project_to_range(np.array([[np.nan, 0, 0, 0]]))
    with pytest.raises(ValueError, match="fov_up_deg"):
        RangeProjection(fov_up_deg=-40.0)
    with pytest.raises(ValueError, match="row"):
        RangeProjection(row="beam")
    with pytest.raises(ValueError, match="positive"):
        RangeProjection(H=0)


def test_embedded_world_ring_rows_hold_one_ring_each(tiny_world):
    from bevlib.data.lidar import load_lidar_sweep
    from bevlib.data.nuscenes_data import open_nuscenes
    from tests.conftest import TINY

    nusc = open_nuscenes(tiny_world, TINY.version)
    sweep = load_lidar_sweep(nusc, nusc.sample[0]["token"])
    pts = np.column_stack([sweep.points_sensor, sweep.intensity])
    ri = project_to_range(pts, sweep.ring)
    assert ri.row == "ring"
    for r in range(32):
        rows = np.unique(ri.v[sweep.ring == r])
        assert rows.size <= 1 and (rows.size == 0 or rows[0] == 31 - r)
    # The world's convention (ring 0 = lowest beam) matches the elevation formula's rows.
    el = project_to_range(pts, sweep.ring, RangeProjection(row="elevation"))
    lo, hi = sweep.ring == sweep.ring.min(), sweep.ring == sweep.ring.max()
    assert np.median(el.v[lo]) > np.median(el.v[hi])


def test_real_keyframe_ring_convention(keyframe_nusc):
    from bevlib.data.lidar import load_lidar_sweep

    sweep = load_lidar_sweep(keyframe_nusc, keyframe_nusc.sample[0]["token"])
    p = sweep.points_sensor.astype(np.float64)
    el = np.degrees(np.arcsin(p[:, 2] / np.linalg.norm(p, axis=1)))
    med = np.array([np.median(el[sweep.ring == r]) for r in range(32)])
    # HDL-32E: ring 0 is the lowest beam (~ -30.7 deg), ring 31 the highest (~ +10.7 deg).
    assert med[0] == pytest.approx(-30.67, abs=0.5) and med[31] == pytest.approx(10.67, abs=0.5)
    assert (np.diff(med) > 0).all()


def test_real_keyframe_range_image_check(keyframe_root, tmp_path):
    from bevlib.range_view import range_image_check

    res = range_image_check(keyframe_root, tmp_path)
    assert res["n_points"] > 30000 and res["H"] == 32 and res["W"] == 2048
    for mode in ("ring", "elevation"):
        r = res[mode]
        # ~1084 azimuth steps per beam fill at most 1084 / 2048 = 53 % of the columns.
        assert 0.3 < r["occupied_share"] < 0.53 and 0.7 < r["kept_share"] <= 1.0
        assert abs(r["n_kept"] / res["n_points"] - r["kept_share"]) < 1e-4  # one owner per occupied pixel
        assert abs(r["n_kept"] / (32 * 2048) - r["occupied_share"]) < 1e-4
    # Rows from the ring index lose fewer points than the quantised elevation.
    assert res["ring"]["kept_share"] > res["elevation"]["kept_share"] and res["ring"]["empty_rows"] == 0
    png = tmp_path / "range_image.png"
    assert res["figure"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
