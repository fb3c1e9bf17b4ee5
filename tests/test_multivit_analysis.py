"""lukkassen2024 Sec. 4.5 analysis tools (bevlib.experiments.multivit.analysis): token -> pixel /
point features against explicit loops, Table 5 against means computed with numpy, the paper's
reported Table 5 against its own Mean row, the t-SNE sample / embedding / plots, Fig. 8's
similarity maps against a per-element cosine and its plot."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bevlib.classes import NUSCENES_LIDARSEG_16
from bevlib.experiments.multivit import analysis as A


def test_tokens_to_pixels_matches_loop():
    tok = torch.randn(2, 3, 4, 5)
    pix = A.tokens_to_pixels(tok, (8, 40))            # patch 2 x 8
    assert pix.shape == (2, 3, 8, 40)
    for b in range(2):
        for y in range(8):
            for x in range(40):
                assert torch.equal(pix[b, :, y, x], tok[b, :, y // 2, x // 8])
    with pytest.raises(ValueError, match="hw"):
        A.tokens_to_pixels(tok, (9, 40))
    with pytest.raises(ValueError, match="tokens"):
        A.tokens_to_pixels(tok[0], (8, 40))


def test_encoder_point_features_matches_loop():
    g = torch.Generator().manual_seed(0)
    tok = torch.randn(2, 6, 4, 5, generator=g)
    n = 50
    u, v, b = (torch.randint(0, 40, (n,), generator=g), torch.randint(0, 8, (n,), generator=g),
               torch.randint(0, 2, (n,), generator=g))
    f = A.encoder_point_features(tok, u, v, b, (2, 8))
    assert f.shape == (n, 6)
    for i in range(n):
        assert torch.equal(f[i], tok[b[i], :, v[i] // 2, u[i] // 8])
    # the same as reading each point's pixel from tokens_to_pixels
    torch.testing.assert_close(f, A.tokens_to_pixels(tok, (8, 40))[b, :, v, u])
    with pytest.raises(ValueError, match="u / v"):
        A.encoder_point_features(tok, u + 40, v, b, (2, 8))
    with pytest.raises(ValueError, match="batch"):
        A.encoder_point_features(tok, u, v, b + 2, (2, 8))
    with pytest.raises(ValueError, match="u, v, batch"):
        A.encoder_point_features(tok, u[:-1], v, b, (2, 8))


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_table5_cosine_over_correct_predictions():
    rng = np.random.default_rng(0)
    D = 5
    # camera pixels: MULTIVIT_CAMERA labels (0 background, 255 ignore), lidar points: lidarseg-16
    cy = np.array([0, 1, 1, 4, 4, 4, 7, 255, 2, 0, 4])
    cp = np.array([0, 1, 3, 4, 4, 1, 7, 0, 2, 0, 4])         # two wrong (index 2, 5)
    ly = np.array([1, 1, 4, 4, 7, 11, 0, 2, 2, 9])
    lp = np.array([1, 1, 4, 5, 7, 11, 0, 3, 3, 9])           # class 2 never right
    cf, lf = rng.normal(size=(len(cy), D)), rng.normal(size=(len(ly), D))
    cmc = A.table5_metric(D)
    A.class_cosine_update(cmc, "camera", cf, cp, cy)
    A.class_cosine_update(cmc, "lidar", torch.from_numpy(lf), torch.from_numpy(lp), torch.from_numpy(ly))
    expected = {}
    for k in range(1, 11):
        c_ok = (cy == k) & (cp == cy)
        l_ok = (ly == k) & (lp == ly)
        expected[k] = _cos(cf[c_ok].mean(0), lf[l_ok].mean(0)) if c_ok.any() and l_ok.any() else math.nan
    assert [k for k, v in expected.items() if not math.isnan(v)] == [1, 4, 7]
    rows = A.table5_rows({"Joint train": cmc})
    assert [r["class"] for r in rows] == list(A.TABLE5_TITLES)
    for r, name in zip(rows[:10], A.TABLE5_CLASSES):
        k = NUSCENES_LIDARSEG_16.index(name)
        assert r["Joint train"] == pytest.approx(expected[k], abs=1e-12, nan_ok=True)
    assert rows[10]["Joint train"] == pytest.approx(np.mean([expected[1], expected[4], expected[7]]), abs=1e-12)
    # a compute() dict gives the same column (e.g. read back from a metrics file)
    rows2 = A.table5_rows({"x": cmc.compute()}, reported=False)
    assert set(rows2[0]) == {"class", "x"}
    for r, r2 in zip(rows, rows2):
        assert r2["x"] == pytest.approx(r["Joint train"], abs=1e-12, nan_ok=True)
    with pytest.raises(ValueError, match="pred"):
        A.class_cosine_update(cmc, "camera", cf, cp[:-1], cy)


def test_reported_table5_is_consistent():
    """The transcribed per-class values reproduce the paper's Mean row (two decimals)."""
    rows = A.table5_rows({})
    for col in A.REPORTED_TABLE5:
        vals = [r[f"{col} (reported)"] for r in rows[:10]]
        present = [v for v in vals if not math.isnan(v)]
        assert len(present) == 7
        assert rows[10][f"{col} (reported)"] == pytest.approx(np.mean(present), abs=0.006)
    assert rows[3]["Joint train, pull + push loss (reported)"] == 0.73        # car
    assert math.isnan(rows[0]["Seperate train (reported)"])                   # barrier: "-"


def test_write_table5(tmp_path):
    cmc = A.table5_metric(3)
    A.class_cosine_update(cmc, "camera", np.eye(3)[[0, 1]], np.array([1, 3]), np.array([1, 3]))
    A.class_cosine_update(cmc, "lidar", np.eye(3)[[0, 0]], np.array([1, 3]), np.array([1, 3]))
    csv_path, md_path = A.write_table5(A.table5_rows({"Joint train": cmc}), tmp_path, "nuScenes mini, test")
    md = md_path.read_text()
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "1.00" in lines["barrier"] and "0.00" in lines["bus"]
    assert lines["car"].split("|")[2].strip() == "-"
    assert "Joint train, pull + push loss (reported)" in md
    assert csv_path.read_text().count("\n") == 12


def test_tsne_sample_is_reproducible_and_per_class():
    rng = np.random.default_rng(1)
    lp, lc = rng.integers(0, 17, 500), rng.integers(0, 11, 800)
    pi, ci = A.tsne_sample(lp, lc, per_class=10, seed=3)
    pi2, ci2 = A.tsne_sample(lp.copy(), torch.from_numpy(lc), per_class=10, seed=3)
    assert np.array_equal(pi, pi2) and np.array_equal(ci, ci2)
    pi3, _ = A.tsne_sample(lp, lc, per_class=10, seed=4)
    assert not np.array_equal(pi, pi3)
    for idx, lab in ((pi, lp), (ci, lc)):
        assert len(np.unique(idx)) == len(idx)
        for k in range(1, 11):
            assert (lab[idx] == k).sum() == min(10, (lab == k).sum())
        assert set(lab[idx]) <= set(range(1, 11))
    few = np.array([1, 1, 2])
    p, c = A.tsne_sample(few, few, per_class=5, seed=0)
    assert sorted(p) == [0, 1, 2] and sorted(c) == [0, 1, 2]
    with pytest.raises(ValueError, match="per_class"):
        A.tsne_sample(lp, lc, per_class=0, seed=0)


def _clusters(n=25, d=16, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 10
    y = np.repeat(np.arange(k), n)
    return centres[y] + rng.normal(size=(k * n, d)), y


def test_tsne_embed_keeps_clusters():
    x, y = _clusters()
    e = A.tsne_embed(x, seed=0)
    assert e.shape == (len(x), 2)
    # nearest neighbour in the embedding is always in the same cluster
    d = ((e[:, None] - e[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).all()
    np.testing.assert_allclose(A.tsne_embed(torch.from_numpy(x), seed=0), e)
    with pytest.raises(ValueError, match="features"):
        A.tsne_embed(x[:3], seed=0)


def test_plot_tsne_markers_and_colours(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    x, y = _clusters(n=10)
    lab = y + 1                              # classes 1..3
    cam = np.arange(len(y)) % 2 == 0
    e = np.asarray(x[:, :2]) * 0.1
    fig = A._tsne_figure(plt, e, lab, cam, NUSCENES_LIDARSEG_16, "t")
    colls = {c.get_label(): c for c in fig.axes[0].collections}
    assert set(colls) == {f"{NUSCENES_LIDARSEG_16.names[k]} ({m})" for k in (1, 2, 3) for m in ("LiDAR", "camera")}
    for k in (1, 2, 3):
        name = NUSCENES_LIDARSEG_16.names[k]
        rgb = np.array(NUSCENES_LIDARSEG_16.colors[k]) / 255
        np.testing.assert_allclose(colls[f"{name} (camera)"].get_facecolor()[0, :3], rgb)
        assert len(colls[f"{name} (camera)"].get_offsets()) == ((lab == k) & cam).sum()
        # triangles have 3 corners, dots are round (many vertices)
        tri = colls[f"{name} (camera)"].get_paths()[0].vertices
        dot = colls[f"{name} (LiDAR)"].get_paths()[0].vertices
        assert len(np.unique(tri.round(6), axis=0)) == 3 and len(dot) > 8
    plt.close(fig)
    p = A.plot_tsne(e, lab, cam, tmp_path / "tsne.png", title="Fig. 7")
    img = np.asarray(Image.open(p).convert("RGB")).astype(int)
    for k in (1, 2, 3):
        assert (np.abs(img - np.array(NUSCENES_LIDARSEG_16.colors[k])).sum(-1) <= 6).sum() > 10, k
    with pytest.raises(ValueError, match="embedding"):
        A.plot_tsne(e, lab[:-1], cam, tmp_path / "x.png")


def test_plotly_tsne_traces():
    e = np.random.default_rng(0).normal(size=(6, 2))
    lab = np.array([1, 1, 7, 7, 7, 1])
    cam = np.array([True, False, True, False, False, False])
    fig = A.plotly_tsne(e, lab, cam)
    got = {(t.name, t.marker.symbol, t.marker.color, len(t.x)) for t in fig.data}
    assert got == {("barrier (camera)", "triangle-up", "rgb(112,128,144)", 1),
                   ("barrier (LiDAR)", "circle", "rgb(112,128,144)", 2),
                   ("pedestrian (camera)", "triangle-up", "rgb(0,0,230)", 1),
                   ("pedestrian (LiDAR)", "circle", "rgb(0,0,230)", 2)}
    for t in fig.data:
        assert all(h == t.name for h in t.hovertext)


def test_similarity_maps_match_direct_cosine():
    g = torch.Generator().manual_seed(0)
    q, pix, pts = torch.randn(6, generator=g), torch.randn(6, 3, 4, generator=g), torch.randn(7, 6, generator=g)
    ps, qs = A.similarity_maps(q, pix, pts)
    assert ps.shape == (3, 4) and qs.shape == (7,)
    for y in range(3):
        for x in range(4):
            assert ps[y, x].item() == pytest.approx(F.cosine_similarity(q, pix[:, y, x], dim=0).item(), abs=1e-6)
    for i in range(7):
        assert qs[i].item() == pytest.approx(_cos(q.numpy(), pts[i].numpy()), abs=1e-6)
    # the query's own pixel is 1
    pix[:, 1, 2] = 3 * q
    assert A.similarity_maps(q, pix, pts)[0][1, 2].item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="query"):
        A.similarity_maps(q, pix[:5], pts)


def test_plot_similarity(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    rng = np.random.default_rng(0)
    image = np.full((48, 96, 3), 200, np.uint8)
    ps = rng.uniform(-1, 1, (6, 12))                      # token resolution, stretched over the image
    uv = rng.uniform(0, 95, (40, 2)) * [1, 0.5]
    qs = rng.uniform(-1, 1, 40)
    fig = A._similarity_figure(plt, image, ps, uv, qs, (30, 20), None, None, None)
    axes = [ax for ax in fig.axes if ax.images or ax.collections]
    assert len(axes) >= 3
    pts = axes[2].collections[0]
    cmap, norm = pts.get_cmap(), pts.norm
    assert norm.vmin == pytest.approx(min(ps.min(), qs.min())) and norm.vmax == pytest.approx(max(ps.max(), qs.max()))
    np.testing.assert_allclose(pts.get_array(), qs)
    np.testing.assert_allclose(pts.to_rgba(pts.get_array()), cmap(norm(qs)))
    plt.close(fig)
    p = A.plot_similarity(image, torch.from_numpy(ps), uv, qs, (30, 20), tmp_path / "sim.png", title="Fig. 8")
    img = np.asarray(Image.open(p).convert("RGB")).astype(int)
    red = (img[..., 0] > 200) & (img[..., 1] < 50) & (img[..., 2] < 50)
    assert red.sum() > 20                                   # the query dots
    with pytest.raises(ValueError, match="point_sim"):
        A.plot_similarity(image, ps, uv, qs[:-1], (30, 20), tmp_path / "bad.png")
