"""busch2026 Fig. 4 (distance bands) and Fig. 2 (LiDAR lifting of pseudo-labels), and their notebooks."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bevlib.bev import BEVGrid
from bevlib.classes import IGNORE
from bevlib.experiments import figures as fg
from bevlib.params import ParameterError

ROOT = Path(__file__).resolve().parents[1]
TINY_WORLD = dict(n_scenes=2, keyframes_per_scene=2, image_wh=(320, 180))


def level_camera(height: float, f: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """A pinhole camera at ego (0, 0, height) looking along +x (optical axis horizontal)."""
    K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]   # columns: cam x -> -y_ego, cam y -> -z_ego, cam z -> +x_ego
    T[2, 3] = height
    return K, T


# ------------------------------------------------------------------------------------------------
# Fig. 4
# ------------------------------------------------------------------------------------------------

# Closed form: a level camera at height h sees the ground at distance d on image row v = cy + f h / d,
# so band [a, b) covers rows (cy + f h / b, cy + f h / a], clipped to the image (rows -0.5 .. H - 0.5).
# Full-width road: each row counts W pixels, share_i ∝ the band's row span.
# Road |y| <= w (narrower than the image): row v holds 2 w (v - cy) / h pixels, so
# share_i ∝ ∫ 2 (w / h)(v - cy) dv = (w / h) [(v_hi - cy)^2 - (v_lo - cy)^2].
F_PX, H_CAM, CX, CY, IMG_HW = 1000.0, 1.5, 799.5, 449.5, (900, 1600)
EDGES = np.array([0.0, 7.5, 15.0, 22.5, 30.0])


def _row_spans():
    v = lambda d: CY + F_PX * H_CAM / d if d > 0 else np.inf
    hi = np.minimum([v(a) for a in EDGES[:-1]], IMG_HW[0] - 0.5)
    lo = np.array([v(b) for b in EDGES[1:]])
    return lo, hi


@pytest.mark.parametrize("origin", ["camera", "ego"])
def test_fig4_matches_closed_form_full_width_road(origin):
    K, T = level_camera(H_CAM, F_PX, CX, CY)
    lo, hi = _row_spans()
    expected = 100 * (hi - lo) / (hi - lo).sum()                      # 62.5, 25, 8.33, 4.17
    b = fg.distance_bands(K, T, IMG_HW, road_half_width_m=1e6, distance_origin=origin)
    np.testing.assert_allclose(b.edges_m, EDGES)
    np.testing.assert_allclose(b.share_percent, expected, atol=0.3)  # +-0.5 row per band edge of 400 rows
    assert b.share_percent.sum() == pytest.approx(100.0)
    assert (b.pixels % IMG_HW[1] == 0).all()                         # whole rows


def test_fig4_matches_closed_form_narrow_road():
    K, T = level_camera(H_CAM, F_PX, CX, CY)
    w = 2.0                                                            # 600 px half-width at the bottom row < 800
    lo, hi = _row_spans()
    area = (w / H_CAM) * ((hi - CY) ** 2 - (lo - CY) ** 2)
    b = fg.distance_bands(K, T, IMG_HW, road_half_width_m=w)
    np.testing.assert_allclose(b.share_percent, 100 * area / area.sum(), atol=0.2)
    assert b.pixels.sum() == pytest.approx(area.sum(), rel=0.01)
    # the band map marks exactly the counted pixels, near bands at the bottom of the image
    assert (b.band >= 0).sum() == b.pixels.sum()
    assert b.band[-1, int(CX)] == 0 and b.band[int(CY) - 5, int(CX)] == -1


@pytest.mark.parametrize("half_width", [7.0, 15.0])
def test_fig4_nuscenes_front_camera_shares_sum_to_100_and_decrease(half_width):
    from bevlib.bench import nuscenes_rig

    K, T = nuscenes_rig((900, 1600))
    b = fg.distance_bands(K[1], T[1], (900, 1600), half_width)        # CAM_FRONT
    assert b.share_percent.sum() == pytest.approx(100.0)
    assert (np.diff(b.share_percent) < 0).all(), b.share_percent
    assert 40 < b.share_percent[0] < 60 and 1 < b.share_percent[-1] < 10


def test_fig4_rejects_bad_definitions():
    K, T = level_camera(H_CAM, F_PX, CX, CY)
    with pytest.raises(ValueError, match="distance_origin"):
        fg.distance_bands(K, T, IMG_HW, 5.0, distance_origin="lidar")
    with pytest.raises(ValueError, match="road_half_width_m"):
        fg.distance_bands(K, T, IMG_HW, 0.0)
    back = T.copy()
    back[:3, :3] = T[:3, :3] @ np.diag([-1.0, 1.0, -1.0])                # turned around: looks along -x
    with pytest.raises(ValueError, match="no road pixel"):
        fg.distance_bands(K, back, IMG_HW, 5.0)
    with pytest.raises(ParameterError, match="camera"):
        fg.Fig4Params(camera="CAM_FRNT")


def test_fig4_on_the_real_keyframe(keyframe_root, tmp_path):
    data = fg.prepare_fig4(fg.Fig4Params(dataroot=str(keyframe_root), progress=False))
    assert data.image.shape == (900, 1600, 3)
    s = data.bands.share_percent
    assert s.sum() == pytest.approx(100.0) and (np.diff(s) < 0).all()
    rows = list(csv.DictReader(open(fg.write_fig4_csv(data.bands, tmp_path / "fig4.csv"))))
    assert [float(r["band_start_m"]) for r in rows] == [0.0, 7.5, 15.0, 22.5]
    assert sum(float(r["share_percent"]) for r in rows) == pytest.approx(100.0, abs=0.05)


# ------------------------------------------------------------------------------------------------
# Fig. 2
# ------------------------------------------------------------------------------------------------

def test_lift_puts_the_pixel_class_into_the_right_bev_cell():
    grid = BEVGrid(H=60, W=30)                   # 1 m cells: row = 29.5 - x, col = 14.5 - y
    K, T = level_camera(1.5, 100.0, 100.0, 50.0)
    labels = np.zeros((1, 100, 200), np.uint8)
    # Hand projection u = cx - f y / x, v = cy + f h / x of the points below.
    labels[0, 62, 95:97] = 2                     # lane at (12.5, 0.5) -> (96, 62) and (12.6, 0.6) -> (95, 62)
    labels[0, 70, 100] = IGNORE                  # (10.714, 0) -> (100, 70): unlabelled pixels do not vote
    pts = np.array([
        [12.5, 0.5, 0.0],     # lane      -> cell (17, 14)
        [12.6, 0.6, 0.0],     # lane      -> cell (17, 14)
        [12.4, 0.4, 0.0],     # (97, 62) background -> cell (17, 14): outvoted 2:1
        [12.5, -3.5, 0.0],    # (128, 62) background -> cell (17, 18)
        [-5.5, 0.5, 0.0],     # behind the camera -> cell (35, 14) stays empty
        [12.5, 13.5, 0.0],    # u = -8, left of the image -> cell (17, 1) stays empty
        [150 / 20, 0.0, 0.0], # v = 70, u = 100: IGNORE pixel -> cell (22, 14) stays empty
        [40.0, 0.0, 0.0],     # outside the grid
    ])
    bev = fg.lift_pseudo_to_bev_lidar(pts, labels, K[None], T[None], grid)
    assert bev.shape == (60, 30) and bev.dtype == np.uint8
    assert bev[17, 14] == 2
    assert bev[17, 18] == 0
    assert bev[35, 14] == IGNORE and bev[17, 1] == IGNORE and bev[22, 14] == IGNORE
    assert (bev != IGNORE).sum() == 2
    # a second camera seeing the same points votes too: two background votes flip the cell
    labels2 = np.concatenate([labels, np.zeros_like(labels)])
    bev2 = fg.lift_pseudo_to_bev_lidar(pts[:3], labels2, np.stack([K, K]), np.stack([T, T]), grid)
    assert bev2[17, 14] == 0
    with pytest.raises(ValueError, match="one per camera"):
        fg.lift_pseudo_to_bev_lidar(pts, labels2, K[None], T[None], grid)


def test_bev_labels_render_into_the_camera_where_they_lie():
    grid = BEVGrid(H=60, W=30)
    K, T = level_camera(1.5, 100.0, 100.0, 50.0)
    gt = np.zeros((60, 30), np.uint8)
    gt[15:20, 12:17] = 3                          # crosswalk block around (12.5, 0.5)
    gt[40, 5] = IGNORE
    front = fg.render_labels_to_camera(gt, K, T, (100, 200), grid)
    assert front.shape == (100, 200) and front.dtype == np.uint8
    assert front[62, 96] == 3                     # sees (12.5, 0.5)
    assert front[62, 128] == 0                    # sees (12.5, -3.5)
    assert front[20, 100] == IGNORE               # sky
    assert front[52, 100] == IGNORE               # ground beyond the 30 m extent (x = 75 m)


def test_fig2_params_are_checked():
    with pytest.raises(ParameterError, match="mask2former_weights"):
        fg.Fig2Params(labeler="mask2former")
    with pytest.raises(ParameterError, match="bev_hw"):
        fg.Fig2Params(bev_hw=(150,))


# ------------------------------------------------------------------------------------------------
# Notebooks (papermill, smoke presets, tiny embedded world in a temporary cache)
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    from bevlib.data.world import WorldConfig, ensure_world

    cache = tmp_path_factory.mktemp("bevlib_cache")
    ensure_world(cache_dir=cache, cfg=WorldConfig(**TINY_WORLD), progress=False)
    return cache


def _papermill(name: str, params_dir: str, tmp_path: Path, cache: Path, *extra: str) -> Path:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / name), str(tmp_path / "executed.ipynb"),
           "-f", str(ROOT / "params" / params_dir / "smoke.yaml"), "-p", "output_dir", str(out), *extra,
           "--cwd", str(ROOT / "notebooks")]
    r = subprocess.run(cmd, env=dict(os.environ, BEVLIB_CACHE=str(cache)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def _smoke_params(params_dir: str) -> dict:
    import yaml
    return yaml.safe_load(open(ROOT / "params" / params_dir / "smoke.yaml"))


def test_smoke_presets_use_the_tiny_world():
    for d in ("fig4_distance_share", "fig2_pseudo_vs_gt"):
        p = _smoke_params(d)
        assert (p["world_scenes"], p["world_keyframes"], tuple(p["world_image_wh"])) == \
               (TINY_WORLD["n_scenes"], TINY_WORLD["keyframes_per_scene"], TINY_WORLD["image_wh"])


@pytest.mark.slow
def test_fig4_notebook_smoke(tmp_path, tiny_cache):
    # dataroot 'embedded' so the run does not depend on ../shared being present
    out = _papermill("fig4_distance_share.ipynb", "fig4_distance_share", tmp_path, tiny_cache,
                     "-p", "dataroot", "embedded")
    rows = list(csv.DictReader(open(out / "fig4.csv")))
    assert list(rows[0]) == ["band_start_m", "band_end_m", "share_percent"]
    shares = [float(r["share_percent"]) for r in rows]
    assert sum(shares) == pytest.approx(100.0, abs=0.05) and shares == sorted(shares, reverse=True)
    assert (out / "fig4.png").stat().st_size > 20_000
    report = (out / "fig4.md").read_text()
    assert "reported" in report and "~50" in report and "~6" in report and "embedded world" in report
    nb = json.load(open(tmp_path / "executed.ipynb"))
    assert any("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.slow
def test_fig2_notebook_smoke(tmp_path, tiny_cache):
    out = _papermill("fig2_pseudo_vs_gt.ipynb", "fig2_pseudo_vs_gt", tmp_path, tiny_cache)
    assert (out / "fig2.png").stat().st_size > 50_000
    nb = json.load(open(tmp_path / "executed.ipynb"))
    text = "".join("".join(o.get("data", {}).get("text/markdown", ""))
                   for c in nb["cells"] for o in c.get("outputs", []))
    assert "lidarseg flat" in text and "crosswalk" in text


def test_committed_notebooks_have_no_outputs_and_match_the_generator():
    import runpy

    import nbformat

    gen = runpy.run_path(str(ROOT / "scripts" / "make_fig_notebooks.py"))   # builds, writes only as __main__
    for name, key in (("fig4_distance_share.ipynb", "fig4"), ("fig2_pseudo_vs_gt.ipynb", "fig2")):
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), name
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), name
        assert [(c.id, c.source) for c in nb.cells] == [(c.id, c.source) for c in gen[key].cells], \
            f"{name} is stale: run python scripts/make_fig_notebooks.py"
