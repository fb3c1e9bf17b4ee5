"""Superpixels (SLIC, the semantic VFM stand-in), superpoints and pooling (chen2024 CSC, SLidR)."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from bevlib import geometry as geo
from bevlib.data.superpixels import semantic_superpixels, slic_superpixels
from bevlib.data.superpoints import pool, superpoints
from conftest import TINY


def _smooth_image(h=450, w=800, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 100 * np.sin(x / 60.0), 128 + 100 * np.cos(y / 45.0), 128 + 60 * np.sin((x + y) / 90.0)], -1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def test_slic_shape_dtype_contiguous_and_count():
    ids = slic_superpixels(_smooth_image())
    assert ids.shape == (450, 800) and ids.dtype == np.int32
    S = int(ids.max()) + 1
    assert ids.min() == 0 and np.array_equal(np.unique(ids), np.arange(S))
    assert 100 <= S <= 200, S                       # n_segments=150 requested
    for k in range(S):                               # SLIC enforces connectivity
        assert ndimage.label(ids == k)[1] == 1


def test_slic_follows_a_colour_edge():
    img = np.zeros((180, 320, 3), np.uint8)
    img[:, :157] = (200, 30, 30)                      # an edge off the initial grid lines
    img[:, 157:] = (30, 30, 200)
    ids = slic_superpixels(img)
    left = img[..., 0] > 100
    minority = 0
    for k in range(int(ids.max()) + 1):
        share = left[ids == k].mean()
        # sigma=3 pre-smoothing blurs the edge over a few pixels: tolerate a thin band, not a straddle
        assert share < 0.15 or share > 0.85, (k, share)
        minority += min(share, 1 - share) * (ids == k).sum()
    assert minority / ids.size < 0.02


def test_slic_rejects_bad_input():
    with pytest.raises(ValueError, match="image"):
        slic_superpixels(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="n_segments"):
        slic_superpixels(np.zeros((10, 10, 3), np.uint8), n_segments=0)


def _blocks(h=400, w=400, b=10, n_classes=12, seed=0):
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, n_classes, (h // b, w // b)), np.ones((b, b), np.int64))


def _check_pure(ids, sem, sign):
    """Every superpixel inside one class, connected, with that class as sign (brute force)."""
    S = int(ids.max()) + 1
    assert np.array_equal(np.unique(ids), np.arange(S))
    for k in range(S):
        m = ids == k
        assert np.unique(sem[m]).tolist() == [sign[k]]
        assert ndimage.label(m)[1] == 1


@pytest.mark.parametrize("n_split", [1, 3])
def test_semantic_superpixels_noise_free_are_pure(n_split):
    sem = _blocks(120, 160, b=20, n_classes=4)
    ids, sign = semantic_superpixels(sem, n_split=n_split, noise=0.0)
    assert ids.dtype == np.int32 and sign.dtype == np.int64
    _check_pure(ids, sem, sign)
    # n_split=1: exactly the 4-connected components of each class
    expected = sum(ndimage.label(sem == c)[1] for c in np.unique(sem))
    if n_split == 1:
        assert ids.max() + 1 == expected
    else:
        assert ids.max() + 1 > expected


def test_semantic_superpixels_with_image_split_by_slic():
    img = _smooth_image(180, 320)
    sem = _blocks(180, 320, b=20, n_classes=3)
    ids, sign = semantic_superpixels(sem, image=img)
    _check_pure(ids, sem, sign)
    sl = slic_superpixels(img)
    for k in range(int(ids.max()) + 1):              # nested in SLIC's partition too
        assert len(np.unique(sl[ids == k])) == 1


def test_semantic_superpixels_noise_share_and_seed():
    sem = _blocks()
    p, n_classes = 0.3, 150
    ids, sign = semantic_superpixels(sem, n_split=1, noise=p, n_classes=n_classes, seed=3)
    S = int(ids.max()) + 1
    true = np.empty(S, np.int64)
    true[ids.ravel()] = sem.ravel()
    wrong = sign != true
    tol = 4 * np.sqrt(p * (1 - p) / S)
    assert S > 500 and abs(wrong.mean() - p) < tol, (S, wrong.mean())
    assert sign.min() >= 0 and sign.max() < n_classes
    ids2, sign2 = semantic_superpixels(sem, n_split=1, noise=p, n_classes=n_classes, seed=3)
    assert np.array_equal(ids, ids2) and np.array_equal(sign, sign2)
    _, sign3 = semantic_superpixels(sem, n_split=1, noise=p, n_classes=n_classes, seed=4)
    assert not np.array_equal(sign, sign3)
    with pytest.raises(ValueError, match="noise"):
        semantic_superpixels(sem, noise=1.5)
    with pytest.raises(ValueError, match="n_classes"):
        semantic_superpixels(sem, n_classes=3)


# --- superpoints on the embedded world ------------------------------------------------------------

@pytest.fixture(scope="module")
def world_keyframe(tiny_world):
    from bevlib.data import nuscenes_data as nd
    from bevlib.data.fields import KeyframeConfig, load_keyframe
    from bevlib.data.world import load_camera_semantics

    nusc = nd.open_nuscenes(tiny_world, TINY.version)
    token = nusc.sample[0]["token"]
    wh = TINY.image_wh
    item = load_keyframe(nusc, token, KeyframeConfig(fields=("cameras", "lidar"), image_wh=wh, cache=False))
    sds = nd.camera_rig(nusc, token, wh)["sd_tokens"]
    item["semantics"] = np.stack([load_camera_semantics(nusc.dataroot, t) for t in sds])
    return item


def test_superpoints_match_brute_force_projection(world_keyframe):
    it = world_keyframe
    h, w = it["images"].shape[1:3]
    assert it["semantics"].shape[1:] == (h, w)
    maps, signs = zip(*[semantic_superpixels(s, n_split=2) for s in it["semantics"]])
    sp = superpoints(it["lidar_points"], list(maps), it["K"], it["ego_T_cam"], (h, w))
    pts = it["lidar_points"].astype(np.float64)
    rng = np.random.default_rng(0)
    sel = rng.choice(len(pts), size=min(3000, len(pts)), replace=False)
    offsets = np.concatenate([[0], np.cumsum([m.max() + 1 for m in maps])])
    n_multi = 0
    for i in sel:
        cam_ref, pix_ref, n_seen = -1, -1, 0
        for c in range(len(maps)):
            uv, z, front = geo.project(it["K"][c].astype(np.float64), geo.invert(it["ego_T_cam"][c].astype(np.float64)),
                                       pts[i:i + 1])
            if not (front[0] and z[0] > 1.0):
                continue
            col, row = int(np.floor(uv[0, 0] + 0.5)), int(np.floor(uv[0, 1] + 0.5))
            if 0 <= col < w and 0 <= row < h:
                n_seen += 1
                if cam_ref < 0:
                    cam_ref, pix_ref = c, int(maps[c][row, col])
        n_multi += n_seen > 1
        assert sp.camera[i] == cam_ref and sp.pixel_id[i] == pix_ref, i
        assert sp.superpoint[i] == (offsets[cam_ref] + pix_ref if cam_ref >= 0 else -1)
        assert sp.visible[:, i].sum() == n_seen
    assert (sp.camera[sel] >= 0).mean() > 0.2 and n_multi > 0    # the overlap rule was exercised
    assert sp.n_superpoints == offsets[-1]
    # a seen point's superpoint carries the sign of its superpixel: points on a class stay on it
    cls = np.concatenate(signs)[sp.superpoint[sp.superpoint >= 0]]
    seen = np.nonzero(sp.camera >= 0)[0]
    px = np.floor(sp.uv[seen] + 0.5).astype(int)
    assert np.array_equal(cls, it["semantics"][sp.camera[seen], px[:, 1], px[:, 0]])


def test_superpoints_rejects_bad_shapes(world_keyframe):
    it = world_keyframe
    maps = [np.zeros(it["images"].shape[1:3], np.int32)] * 6
    with pytest.raises(ValueError, match="K"):
        superpoints(it["lidar_points"], maps, it["K"][:5], it["ego_T_cam"], maps[0].shape)
    with pytest.raises(ValueError, match="points_ego"):
        superpoints(it["lidar_points"][:, :2], maps, it["K"], it["ego_T_cam"], maps[0].shape)


# --- pooling --------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduce", ["mean", "sum", "amax"])
def test_pool_matches_loop_values_and_gradient(reduce):
    g = torch.Generator().manual_seed(0)
    P, C, n = 300, 5, 40
    feats = torch.randn(P, C, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(-1, n - 3, (P,), generator=g)         # the last groups stay empty
    out, counts = pool(feats, ids, n, reduce)
    rows, ref_counts = [], []
    for k in range(n):
        members = [feats[i] for i in range(P) if int(ids[i]) == k]
        ref_counts.append(len(members))
        if not members:
            rows.append(torch.zeros(C, dtype=feats.dtype))
            continue
        st = torch.stack(members)
        rows.append({"mean": st.mean(0), "sum": st.sum(0), "amax": st.max(0).values}[reduce])
    ref = torch.stack(rows)
    assert torch.equal(counts, torch.tensor(ref_counts))
    torch.testing.assert_close(out, ref)
    wts = torch.randn(n, C, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * wts).sum(), feats)
    (grad_ref,) = torch.autograd.grad((ref * wts).sum(), feats)
    torch.testing.assert_close(grad, grad_ref)
    assert torch.all(grad[ids < 0] == 0)


def test_pool_rejects_bad_ids():
    with pytest.raises(ValueError, match="ids"):
        pool(torch.zeros(3, 2), torch.tensor([0, 5, -1]), 4)
    with pytest.raises(ValueError, match="reduce"):
        pool(torch.zeros(3, 2), torch.tensor([0, 1, -1]), 4, reduce="median")
