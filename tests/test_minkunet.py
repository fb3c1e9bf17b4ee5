"""bevlib.models.minkunet: coordinate bookkeeping, gradient wiring, equivariance, a tiny overfit, errors.

References are independent of the module under test: a python-dict voxeliser (brute force), a
translated copy of the input, and per-voxel grouping by numpy floor / unique.
"""
from dataclasses import replace

import numpy as np
import pytest
import torch

from bevlib.models.minkunet import (DEPTHS, TOTAL_STRIDE, MinkUNet, MinkUNetConfig, paper_config,
                                    tiny_config)
from bevlib.models.sparse_conv import SparseVoxels


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def sweep(n=2000, seed=0, extent=(6.0, 6.0, 2.0), dtype=torch.float32):
    """(n, 4) points x, y, z (metres, centred box) + intensity in [0, 1)."""
    g = torch.Generator().manual_seed(seed)
    ext = torch.tensor(extent, dtype=dtype)
    xyz = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * ext
    return torch.cat([xyz, torch.rand(n, 1, generator=g, dtype=dtype)], 1)


def random_voxels(n=600, cin=4, seed=0, grid=24, batch=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    flat = torch.randperm(batch * grid ** 3, generator=g)[:n]
    b, rest = flat // grid ** 3, flat % grid ** 3
    coords = torch.stack([b, rest // grid ** 2, (rest // grid) % grid, rest % grid], 1) - torch.tensor([0, 9, 5, 13])
    return SparseVoxels(coords, torch.randn(n, cin, generator=g, dtype=dtype))


def test_configs_match_minkunet34c_plan():
    cfg = paper_config()
    assert (cfg.stem_width,) + cfg.widths == (32, 32, 64, 128, 256, 256, 128, 96, 96)
    assert cfg.layers == (2, 3, 4, 6, 2, 2, 2, 2)
    assert (cfg.in_channels, cfg.out_channels, cfg.voxel_size, cfg.stem_kernel) == (4, 64, 0.1, 3)
    tiny = tiny_config()
    assert tiny.widths == tuple(max(1, round(p / 4)) for p in cfg.planes) and tiny.layers == (1,) * 8
    # Block count follows the depth preset: each BasicBlock owns exactly one conv1.
    for depth in ("34", "tiny"):
        net = MinkUNet(replace(tiny, depth=depth))
        n_blocks = sum(1 for name, _ in net.named_modules() if name.endswith("conv1"))
        assert n_blocks == sum(DEPTHS[depth])


def test_forward_keeps_input_coords_and_shapes():
    net = MinkUNet(tiny_config(out_channels=12)).double()
    x = random_voxels()
    out = net(x)
    assert out.coords is x.coords and out.stride == 1
    assert out.feats.shape == (x.coords.shape[0], 12) and out.feats.dtype == torch.float64
    assert torch.isfinite(out.feats).all()


def brute_voxelise(points, batch_index, voxel_size):
    """Dict-based mean pooling: coords (M, 4) in first-seen order, feats (M, C), point -> row."""
    rows, sums, counts, inv = {}, [], [], []
    keys = np.floor(points[:, :3].double().numpy() / voxel_size).astype(np.int64)
    for i, (b, k) in enumerate(zip(batch_index.tolist(), keys.tolist())):
        key = (b, *k)
        if key not in rows:
            rows[key] = len(rows)
            sums.append(torch.zeros(points.shape[1], dtype=points.dtype))
            counts.append(0)
        r = rows[key]
        sums[r] = sums[r] + points[i]
        counts[r] += 1
        inv.append(r)
    coords = torch.tensor(list(rows), dtype=torch.long)
    feats = torch.stack(sums) / torch.tensor(counts, dtype=points.dtype)[:, None]
    return SparseVoxels(coords, feats), torch.tensor(inv)


def test_forward_points_one_row_per_point_and_matches_brute_force_voxelisation():
    net = MinkUNet(tiny_config(out_channels=8)).double().eval()
    a = sweep(700, seed=1, dtype=torch.float64)
    # Duplicate points inside the same 0.1 m voxels (same corner, new offset) so voxels hold several points.
    corner = torch.floor(a[:300, :3] / 0.1) * 0.1
    dup = torch.cat([corner + 0.1 * torch.rand(300, 3, dtype=torch.float64).clamp(0.01, 0.99), a[:300, 3:]], 1)
    a = torch.cat([a, dup])
    b = sweep(500, seed=2, dtype=torch.float64)
    feats = net.forward_points([a, b])
    assert feats.shape == (a.shape[0] + b.shape[0], 8)
    pts = torch.cat([a, b])
    bi = torch.cat([torch.zeros(len(a), dtype=torch.long), torch.ones(len(b), dtype=torch.long)])
    torch.testing.assert_close(net.forward_points(pts, bi), feats, rtol=0, atol=0)
    # Same voxel (grouped independently by numpy) -> identical rows; there must be such groups.
    keys = np.concatenate([bi.numpy()[:, None], np.floor(pts[:, :3].numpy() / 0.1).astype(np.int64)], 1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = torch.from_numpy(group.reshape(-1))
    assert group.unique().numel() < len(pts)
    first = torch.full((int(group.max()) + 1,), -1, dtype=torch.long)
    for i in range(len(pts) - 1, -1, -1):
        first[group[i]] = i
    torch.testing.assert_close(feats, feats[first[group]], rtol=0, atol=0)
    # Reference: brute-force voxelisation (different row order) -> forward -> lift back.
    ref_vox, ref_inv = brute_voxelise(pts, bi, 0.1)
    ref = net(ref_vox).feats[ref_inv]
    torch.testing.assert_close(feats, ref, rtol=1e-9, atol=1e-9)


def test_every_parameter_gets_a_gradient():
    net = MinkUNet(tiny_config(out_channels=8)).double().train()
    pts = [sweep(1500, seed=3, dtype=torch.float64), sweep(1500, seed=4, dtype=torch.float64)]
    out = net.forward_points(pts)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    (out * w).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("shift", [(TOTAL_STRIDE, 0, 0), (-2 * TOTAL_STRIDE, TOTAL_STRIDE, 3 * TOTAL_STRIDE)])
def test_translation_by_total_stride_leaves_features_unchanged(shift):
    torch.manual_seed(0)
    net = MinkUNet(tiny_config(out_channels=8)).double()
    net.train()
    with torch.no_grad():  # populate BN running statistics so eval mode is not the identity
        net(random_voxels(seed=9))
    net.eval()
    x = random_voxels(seed=10)
    out = net(x).feats
    moved = x.coords.clone()
    moved[:, 1:] += torch.tensor(shift)
    out_moved = net(SparseVoxels(moved, x.feats)).feats
    torch.testing.assert_close(out_moved, out, rtol=1e-12, atol=1e-12)
    # The check has teeth: a shift that is not a multiple of the stride regroups the coarse voxels.
    moved1 = x.coords.clone()
    moved1[:, 1] += 1
    assert not torch.allclose(net(SparseVoxels(moved1, x.feats)).feats, out, atol=1e-6)


def test_tiny_overfit_linear_head_loss_halves():
    torch.manual_seed(0)
    net = MinkUNet(tiny_config(out_channels=16))
    head = torch.nn.Linear(16, 2)
    pts = [sweep(2000, seed=11), sweep(2000, seed=12)]
    labels = (torch.cat(pts)[:, 2] > 0).long()
    opt = torch.optim.Adam(list(net.parameters()) + list(head.parameters()), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(net.forward_points(pts)), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_bad_inputs_raise_value_error_naming_the_argument():
    for kw, name in [(dict(in_channels=0), "in_channels"), (dict(width=0), "width"), (dict(depth="50"), "depth"),
                     (dict(depth=(1, 2)), "depth"), (dict(planes=(8,) * 7), "planes"),
                     (dict(stem_kernel=2), "stem_kernel"), (dict(voxel_size=-0.1), "voxel_size"),
                     (dict(out_channels=0), "out_channels"), (dict(bn_momentum=2.0), "bn_momentum")]:
        with pytest.raises(ValueError, match=name):
            MinkUNetConfig(**kw)
    with pytest.raises(ValueError, match="config"):
        MinkUNet({"width": 0.25})
    net = MinkUNet(tiny_config())
    with pytest.raises(ValueError, match="x must be a SparseVoxels"):
        net(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="x.feats"):
        net(random_voxels(cin=3, dtype=torch.float32))
    x = random_voxels(dtype=torch.float32)
    with pytest.raises(ValueError, match="stride"):
        net(SparseVoxels(x.coords, x.feats, stride=2))
    p = sweep(50)
    with pytest.raises(ValueError, match="points"):
        net.forward_points(p[:, :3], torch.zeros(50, dtype=torch.long))
    with pytest.raises(ValueError, match=r"points\[1\]"):
        net.forward_points([p, p[:, :3]])
    with pytest.raises(ValueError, match="batch_index"):
        net.forward_points([p], torch.zeros(50, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_index"):
        net.forward_points(p)
    with pytest.raises(ValueError, match="batch_index"):
        net.forward_points(p, torch.zeros(49, dtype=torch.long))
    with pytest.raises(ValueError, match="points"):
        net.forward_points(p[:0], torch.zeros(0, dtype=torch.long))
