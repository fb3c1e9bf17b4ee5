import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from bevlib.models.promptnorm import prompt_norms, replace_layernorms
from bevlib.models.voxel_transformer import (VoxelSetTransformer, VoxelSetTransformerConfig, voxelize,
                                             voxelize_batch, window_sets)
from bevlib.voxel import VoxelGrid

G = VoxelGrid(x_min=-12.8, x_max=12.8, y_min=-9.6, y_max=9.6, z_min=-2.0, z_max=4.0, Z=3, H=32, W=24)


def _points(seed, n, F=1, margin=1.0, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    lo = np.array([G.x_min, G.y_min, G.z_min]) - margin
    hi = np.array([G.x_max, G.y_max, G.z_max]) + margin
    xyz = rng.uniform(lo, hi, size=(n, 3))
    return torch.from_numpy(np.concatenate([xyz, rng.uniform(0, 1, size=(n, F))], 1)).to(dtype)


def _brute_voxelize(points):
    """Voxel (k, i, j) of each point from the metric bounds written out, then dict accumulation."""
    dx, dy, dz = G.voxel_size
    acc = defaultdict(list)
    for p in points.tolist():
        x, y, z = p[:3]
        if not (G.x_min < x <= G.x_max and G.y_min < y <= G.y_max and G.z_min <= z < G.z_max):
            continue
        key = (math.floor((z - G.z_min) / dz), math.floor((G.x_max - x) / dx), math.floor((G.y_max - y) / dy))
        acc[key].append(p)
    return {k: np.mean(v, axis=0) for k, v in acc.items()}


def test_voxelize_matches_brute_force():
    pts = _points(0, 3000)
    pts[:5, 0] = float("nan")
    coords, feats = voxelize(pts, G)
    ref = _brute_voxelize(pts[5:])
    assert coords.dtype == torch.int64 and feats.shape == (len(ref), 4)
    got = {tuple(c): f for c, f in zip(coords.tolist(), feats.numpy())}
    assert got.keys() == ref.keys()
    for k, v in ref.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-12, atol=1e-12)
    flat = G.flat_index(coords)
    assert torch.all(flat[1:] > flat[:-1])                 # canonical order
    # a batch keeps the sweeps apart and each equals its own voxelisation
    pts2 = _points(1, 500)
    c, f, b = voxelize_batch([pts, pts2], G)
    c2, f2 = voxelize(pts2, G)
    assert torch.equal(c[b == 0], coords) and torch.equal(c[b == 1], c2) and torch.equal(f[b == 1], f2)
    with pytest.raises(ValueError, match="points"):
        voxelize(pts[:, :2], G)
    with pytest.raises(ValueError, match="columns"):
        voxelize_batch([pts, pts[:, :3]], G)


def test_window_sets_partition_against_loops():
    pts = _points(2, 4000, margin=0.0)
    coords, _, batch = voxelize_batch([pts, pts[:1500]], G)
    for axis, shift, T in [(0, False, 5), (1, True, 7), (0, True, 200)]:
        s = window_sets(coords, batch, G, (8, 6), T, axis, shift)
        assert torch.equal(~s.pad[s.set_id, s.slot], torch.ones(len(coords), dtype=torch.bool))
        assert int((~s.pad).sum()) == len(coords)              # no voxel dropped, no slot shared
        sh, sw = (4, 3) if shift else (0, 0)
        by_window = defaultdict(list)
        for v, (k, i, j) in enumerate(coords.tolist()):
            wkey = (int(batch[v]), (i + sh) // 8, (j + sw) // 6)
            li, lj = (i + sh) % 8, (j + sw) % 6
            by_window[wkey].append(((li, lj, k) if axis == 0 else (lj, li, k), v))
        for wkey, members in by_window.items():
            members.sort()
            for rank, (_, v) in enumerate(members):
                first = members[rank - rank % T][1]     # consecutive chunks of T
                assert s.set_id[v] == s.set_id[first] and s.slot[v] == rank % T
                assert s.set_batch[s.set_id[v]] == wkey[0]
        n_sets = sum(-(-len(m) // T) for m in by_window.values())
        assert s.pad.shape == (n_sets, T)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = VoxelSetTransformerConfig(point_features=1, dim=16, depth=4, heads=2, window=(8, 6), **kw)
    return VoxelSetTransformer(G, cfg).double().eval()


def test_padding_is_masked():
    pts = [_points(3, 250, margin=0.0)]
    coords, _, batch = voxelize_batch(pts, G)
    m = _model(set_size=40)
    for shift in (False, True):           # one set per window in every block, with padding
        s = window_sets(coords, batch, G, (8, 6), 40, 0, shift)
        assert int((~s.pad).sum(1).max()) < 40 and s.pad.any()
    with torch.no_grad():
        ref = m(pts)
        m.pad_value = 1e3                  # garbage in the padding slots
        garbage = m(pts)
        m2 = _model(set_size=97)           # same weights, more padding per set
        m2.pad_value = -7.0
        more = m2(pts)
    torch.testing.assert_close(garbage, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(more, ref, rtol=1e-10, atol=1e-10)
    assert ref.abs().sum() > 0
    # smaller sets see fewer neighbours: the output changes (the comparison above can fail)
    with torch.no_grad():
        assert not torch.allclose(_model(set_size=3)(pts), ref, atol=1e-6)


def test_point_permutation_and_batch_independence():
    a, b = _points(4, 800), _points(5, 300)
    m = _model(set_size=12)
    with torch.no_grad():
        out = m([a, b])
        perm = m([a[torch.randperm(len(a), generator=torch.Generator().manual_seed(0))], b])
        alone = m([b])
    assert out.shape == (2, 16, 32, 24)
    torch.testing.assert_close(perm, out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(alone[0], out[1], rtol=1e-12, atol=1e-12)


def test_single_point_lands_in_its_bev_cell():
    m = _model(set_size=8)
    bev = G.bev_grid()
    rng = np.random.default_rng(6)
    for _ in range(5):
        p = np.array([rng.uniform(G.x_min, G.x_max), rng.uniform(G.y_min, G.y_max), rng.uniform(G.z_min, G.z_max), 0.5])
        with torch.no_grad():
            out = m([torch.from_numpy(p)[None]])
        nz = torch.nonzero(out[0].abs().sum(0))
        row, col = np.floor(bev.xy_to_rowcol(p[None, :2])[0] + 0.5).astype(int)
        assert nz.tolist() == [[row, col]]


def test_bev_reduce_over_height():
    x = torch.randn(5, 3, dtype=torch.float64)
    coords = torch.tensor([[0, 1, 2], [2, 1, 2], [1, 1, 2], [0, 0, 0], [1, 3, 4]])
    batch = torch.tensor([0, 0, 0, 1, 0])
    for reduce in ("max", "sum"):
        m = VoxelSetTransformer(G, VoxelSetTransformerConfig(dim=4, heads=1, bev_reduce=reduce))
        out = m.scatter_bev(x, coords, batch, 2)
        ref = torch.zeros(2, 3, G.H, G.W, dtype=torch.float64)
        cells = defaultdict(list)
        for v in range(5):
            cells[(int(batch[v]), int(coords[v, 1]), int(coords[v, 2]))].append(x[v])
        for (bb, i, j), vs in cells.items():
            st = torch.stack(vs)
            ref[bb, :, i, j] = st.max(0).values if reduce == "max" else st.sum(0)
        assert torch.equal(out, ref)


def test_promptnorm_per_sample_inside_voxel_transformer():
    m = _model(set_size=12)
    n = replace_layernorms(m, n_datasets=3, prompt_dim=4, adapter_hidden=8)
    assert n == 2 * m.config.depth
    a, b = _points(7, 400), _points(8, 400)
    with torch.no_grad():
        for pn in prompt_norms(m):
            pn.adapter[-1].weight.normal_(0, 0.5)
            pn.prompts.weight.normal_()
        both = m([a, b], dataset_index=torch.tensor([0, 2]))
        b_own = m([b], dataset_index=torch.tensor([2]))
        b_wrong = m([b], dataset_index=torch.tensor([0]))
    torch.testing.assert_close(both[1], b_own[0], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(b_own, b_wrong, atol=1e-6)
    with pytest.raises(ValueError, match="dataset_index"):
        m([a, b], dataset_index=torch.tensor([0]))


def test_full_size_bev_and_errors():
    grid = VoxelGrid(x_min=-51.2, x_max=51.2, y_min=-51.2, y_max=51.2, z_min=-5.0, z_max=3.0, Z=1, H=128, W=128)
    m = VoxelSetTransformer(grid, VoxelSetTransformerConfig(point_features=2, dim=8, depth=2, heads=2))
    pts = torch.randn(2000, 5) * torch.tensor([20.0, 20.0, 1.0, 1.0, 1.0])
    out = m([pts, pts[:100]])
    assert out.shape == (2, 8, 128, 128) and out.dtype == torch.float32
    out.sum().backward()
    assert m.embed[0].weight.grad.abs().sum() > 0
    assert m([torch.zeros(0, 5)]).abs().sum() == 0          # an empty sweep is an empty map
    with pytest.raises(ValueError, match="columns"):
        m([pts[:, :4]])
    with pytest.raises(ValueError, match="bev_reduce"):
        VoxelSetTransformerConfig(bev_reduce="mean")
