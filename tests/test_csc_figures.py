"""CSC notebook figures (bevlib.experiments.csc.figures) and the shared per-id colours, on synthetic inputs."""
import numpy as np
import pytest
import torch
from PIL import Image

from bevlib.data.superpoints import id_colours, superpoint_figure
from bevlib.experiments.csc.figures import (feature_pca_rgb, points_view, superpixel_comparison_figure,
                                            write_points_view)

H, W = 90, 160
NAMES = ["road", "sidewalk", "car", "vegetation", "pedestrian", "sky"]


def _scene(seed=0, P=4000):
    rng = np.random.default_rng(seed)
    img = (rng.random((H, W, 3)) * 60).astype(np.uint8)
    img[: H // 2] += 120
    slic = np.repeat(np.repeat(np.arange(6 * 4).reshape(6, 4), 15, 0), 40, 1)      # a 6 x 4 grid of blocks
    sem = np.zeros((H, W), np.int64)
    sem[H // 2:] = 1
    sem[20:60, 50:90] = 2
    signs = np.array([5, 0, 2])
    xy = rng.normal(size=(P, 2)) * 15
    sp = rng.integers(-1, 40, P)
    return img, slic, sem, signs, xy, sp


# ------------------------------------------------------------------------------------------------
# id_colours and superpoint_figure
# ------------------------------------------------------------------------------------------------

def test_id_colours_deterministic_distinct_grey():
    ids = np.arange(100)
    a, b = id_colours(ids), id_colours(list(ids))
    assert a.shape == (100, 3) and np.array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert len(np.unique(a, axis=0)) == 100
    # an id keeps its colour whatever else is coloured with it
    assert np.array_equal(id_colours([7, 3])[0], a[7])
    assert np.array_equal(id_colours(torch.tensor([3, 7]))[1], a[7])
    np.testing.assert_array_equal(id_colours([-1, -7]), np.full((2, 3), 0.6))
    np.testing.assert_allclose(id_colours([0])[0], [1.0, 0.0, 0.0])      # hue 0 of hsv = red
    assert not np.isclose(a, 0.6, atol=0.05).all(axis=1).any()           # no real id looks unseen


def test_superpoint_figure_still_works(tmp_path):
    img, slic, _, _, _, _ = _scene()
    rng = np.random.default_rng(1)
    uv = rng.random((300, 2)) * [W - 1, H - 1]
    ids = slic[np.rint(uv[:, 1]).astype(int), np.rint(uv[:, 0]).astype(int)]
    ids[:5] = -1
    p = superpoint_figure(img, slic, uv, ids, tmp_path / "sp.png", title="t")
    with Image.open(p) as im:
        im.verify()
    with Image.open(p) as im:
        assert im.size[0] > 50 and im.size[1] > 20
    with pytest.raises(ValueError, match="superpoint_ids"):
        superpoint_figure(img, slic, uv, ids[:-1], tmp_path / "x.png")


# ------------------------------------------------------------------------------------------------
# superpixel_comparison_figure
# ------------------------------------------------------------------------------------------------

def test_comparison_figure_writes_a_png(tmp_path):
    img, slic, sem, signs, xy, sp = _scene()
    out = tmp_path / "sub" / "cmp.png"
    p = superpixel_comparison_figure(img, slic, sem, signs, NAMES, xy, sp, out, title="keyframe 0, CAM_FRONT")
    assert p == out and out.is_file()
    assert [f.name for f in out.parent.iterdir()] == ["cmp.png"]           # no temporary left behind
    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        w, h = im.size
        rgb = np.asarray(im.convert("RGB"))
    assert 900 <= w <= 2500 and 200 <= h <= 1000 and w > 2 * h, (w, h)
    # the BEV panel draws superpoints in id_colours: some of those colours appear in the PNG
    # (antialiasing blends edges, so look for near matches of a few well-populated ids)
    want = np.rint(id_colours(np.arange(40)) * 255).astype(int)
    flat = rgb.reshape(-1, 3).astype(int)
    hits = sum(bool((np.abs(flat - c).sum(1) <= 30).any()) for c in want)
    assert hits >= 20, hits


def test_comparison_figure_many_classes_and_all_unseen(tmp_path):
    img, slic, sem, _, xy, sp = _scene()
    names = [f"c{i}" for i in range(150)]                                   # ADE20K-sized label set
    p = superpixel_comparison_figure(img, slic, sem, np.array([149, 3, 77]), names, xy, np.full_like(sp, -1),
                                     tmp_path / "many.png")
    assert p.is_file()


@pytest.mark.parametrize("field", ["image", "slic_ids", "semantic_ids", "semantic_signs", "class_names",
                                   "points_xy", "superpoint_ids"])
def test_comparison_figure_errors_name_the_argument(tmp_path, field):
    img, slic, sem, signs, xy, sp = _scene()
    args = dict(image=img, slic_ids=slic, semantic_ids=sem, semantic_signs=signs, class_names=NAMES,
                points_xy=xy, superpoint_ids=sp)
    bad = {"image": img[..., :2], "slic_ids": slic[:-1], "semantic_ids": sem.astype(np.float32),
           "semantic_signs": signs[:2], "class_names": NAMES[:3], "points_xy": xy[:, :1],
           "superpoint_ids": sp[:-1]}
    args[field] = bad[field]
    with pytest.raises(ValueError, match=field):
        superpixel_comparison_figure(path=tmp_path / "bad.png", **args)
    assert not (tmp_path / "bad.png").exists()


# ------------------------------------------------------------------------------------------------
# feature_pca_rgb
# ------------------------------------------------------------------------------------------------

def _anisotropic(P=2000, C=16, seed=0):
    rng = np.random.default_rng(seed)
    # distinct variances per direction: well-separated principal components
    basis, _ = np.linalg.qr(rng.normal(size=(C, C)))
    return (rng.normal(size=(P, C)) * np.linspace(6.0, 0.5, C)) @ basis.T + 3.0


def test_feature_pca_rgb_matches_an_svd_projection():
    x = _anisotropic()
    out = feature_pca_rgb(x)
    assert out.shape == (len(x), 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    for j in range(3):
        proj = xc @ vt[j]
        assert abs(np.corrcoef(out[:, j], proj)[0, 1]) > 0.99
        # and exactly the percentile scaling of that projection, for one of its two signs
        errs = []
        for s in (1.0, -1.0):
            q = s * proj
            lo, hi = np.percentile(q, [1, 99])
            errs.append(np.abs(np.clip((q - lo) / (hi - lo), 0, 1) - out[:, j]).max())
        assert min(errs) < 1e-5, (j, errs)
    # 1 % of the points on each side are clipped to the ends
    assert 0.005 < (out[:, 0] == 0).mean() < 0.02 and 0.005 < (out[:, 0] == 1).mean() < 0.02


def test_feature_pca_rgb_ranking_along_component_one():
    x = _anisotropic(seed=3)
    xc = x - x.mean(0)
    proj = xc @ np.linalg.svd(xc, full_matrices=False)[2][0]
    r_out = np.argsort(np.argsort(feature_pca_rgb(x)[:, 0]))
    r_svd = np.argsort(np.argsort(proj))
    assert abs(np.corrcoef(r_out, r_svd)[0, 1]) > 0.99


def test_feature_pca_rgb_padding_and_inputs():
    rng = np.random.default_rng(0)
    two = feature_pca_rgb(rng.normal(size=(500, 2)) * [3.0, 1.0])
    assert np.all(two[:, 2] == 0.5) and two[:, :2].std(0).min() > 0.1
    assert np.all(feature_pca_rgb(rng.normal(size=(1, 8))) == 0.5)
    three = feature_pca_rgb(rng.normal(size=(3, 8)))                   # 3 centred points span 2 directions
    assert np.all(three[:, 2] == 0.5)
    flat = feature_pca_rgb(np.tile(rng.normal(size=(1, 5)), (50, 1)))  # no spread at all
    assert np.all(flat == 0.5)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    np.testing.assert_allclose(feature_pca_rgb(torch.from_numpy(x)), feature_pca_rgb(x))
    np.testing.assert_array_equal(feature_pca_rgb(x), feature_pca_rgb(x))   # deterministic


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((0, 4)), np.zeros((2, 3, 4)), np.array([[0.0, np.nan]])])
def test_feature_pca_rgb_errors(bad):
    with pytest.raises(ValueError, match="features"):
        feature_pca_rgb(bad)


# ------------------------------------------------------------------------------------------------
# points_view
# ------------------------------------------------------------------------------------------------

def _parse_rgb(strings):
    return np.array([[int(v) for v in s[4:-1].split(",")] for s in strings])


def test_points_view_traces_dropdown_and_colours():
    rng = np.random.default_rng(0)
    P = 5000
    xyz = rng.normal(size=(P, 3)) * 10
    ids = rng.integers(-1, 30, P)
    rgb = rng.random((P, 3))
    fig = points_view(xyz, {"superpoint": ids, "pca": rgb, "class": ids % 3}, max_points=800, seed=4, title="t")
    assert len(fig.data) == 3
    assert [bool(t.visible) for t in fig.data] == [True, False, False]
    assert [t.name for t in fig.data] == ["superpoint", "pca", "class"]
    assert fig.layout.scene.aspectmode == "data"
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["superpoint", "pca", "class"]
    for i, b in enumerate(buttons):
        vis = b.args[0]["visible"]
        assert list(vis) == [j == i for j in range(3)]
    # the same seeded subset for every trace, in original order, reproducible
    pts = [np.stack([t.x, t.y, t.z], 1) for t in fig.data]
    assert all(p.shape == (800, 3) for p in pts) and all(np.array_equal(p, pts[0]) for p in pts)
    keep = np.sort(np.random.default_rng(4).choice(P, size=800, replace=False))
    np.testing.assert_allclose(pts[0], xyz[keep])
    again = points_view(xyz, {"superpoint": ids}, max_points=800, seed=4)
    np.testing.assert_array_equal(np.asarray(again.data[0].x), np.asarray(fig.data[0].x))
    other = points_view(xyz, {"superpoint": ids}, max_points=800, seed=5)
    assert not np.array_equal(np.asarray(other.data[0].x), np.asarray(fig.data[0].x))
    # colours: categorical through id_colours (-1 grey), RGB passed through, as 'rgb(r,g,b)' strings
    got = _parse_rgb(fig.data[0].marker.color)
    np.testing.assert_array_equal(got, np.rint(id_colours(ids[keep]) * 255).astype(int))
    assert np.all(got[ids[keep] == -1] == 153)
    assert np.abs(_parse_rgb(fig.data[1].marker.color) - rgb[keep] * 255).max() <= 0.5 + 1e-9
    assert len(np.unique(_parse_rgb(fig.data[2].marker.color), axis=0)) == 3


def test_points_view_no_subsampling_below_max():
    xyz = np.random.default_rng(0).normal(size=(100, 3))
    fig = points_view(xyz, {"a": np.arange(100)}, max_points=100)
    np.testing.assert_allclose(np.asarray(fig.data[0].x), xyz[:, 0])


def test_write_points_view(tmp_path):
    xyz = np.random.default_rng(0).normal(size=(200, 3))
    fig = points_view(xyz, {"a": np.arange(200), "b": np.zeros(200, np.int64)})
    p = write_points_view(fig, tmp_path / "v" / "view.html")
    assert p.is_file() and [f.name for f in p.parent.iterdir()] == ["view.html"]
    html = p.read_text(encoding="utf-8")
    assert "cdn.plot.ly" in html and "updatemenus" in html and len(html) < 2_000_000


@pytest.mark.parametrize("case", ["xyz_shape", "xyz_nan", "empty", "length", "rgb_range", "float_ids", "not_dict",
                                  "max_points", "point_size"])
def test_points_view_errors(case):
    P = 50
    xyz = np.random.default_rng(0).normal(size=(P, 3))
    ok = {"a": np.arange(P)}
    args = dict(points_xyz=xyz, colourings=ok)
    name = "colourings"
    if case == "xyz_shape":
        args["points_xyz"], name = xyz[:, :2], "points_xyz"
    elif case == "xyz_nan":
        bad = xyz.copy()
        bad[3, 1] = np.nan
        args["points_xyz"], name = bad, "points_xyz"
    elif case == "empty":
        args["colourings"] = {}
    elif case == "length":
        args["colourings"] = {"a": np.arange(P - 1)}
    elif case == "rgb_range":
        args["colourings"] = {"a": np.full((P, 3), 1.5)}
    elif case == "float_ids":
        args["colourings"] = {"a": np.arange(P, dtype=np.float64)}
    elif case == "not_dict":
        args["colourings"] = [np.arange(P)]
    elif case == "max_points":
        args["max_points"], name = 0, "max_points"
    elif case == "point_size":
        args["point_size"], name = 0.0, "point_size"
    with pytest.raises(ValueError, match=name):
        points_view(**args)
