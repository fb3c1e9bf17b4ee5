"""BEVFormer-style network and ResNet backbone: shapes, gradients, geometry, temporal alignment."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bevlib.bev import BEVGrid
from bevlib.geometry import invert, project, se2
from bevlib.models.backbone import build_resnet_backbone
from bevlib.models.bevformer import (BEVFormerConfig, SpatialCrossAttention, align_history, build_bevformer,
                                     pillar_points, reference_points_cam)

IMG_HW = (48, 80)
GRID = BEVGrid()  # x -30..30 m, y -15..15 m


def _rig(n: int = 3, image_hw=IMG_HW, focal: float = 40.0):
    """A synthetic rig: cameras 1.5 m above the ground, 0.5 m ahead of the ego origin, yawed by
    360 / n degrees each (90 deg horizontal field of view at the default focal length).

    Returns K (n, 3, 3) and ego_T_cam (n, 4, 4) float64."""
    h, w = image_hw
    K = np.array([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1]])
    # OpenCV camera looking along ego +x: cam z = ego x, cam x = -ego y, cam y = -ego z.
    base = np.eye(4)
    base[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
    Ts = []
    for k in range(n):
        T = se2(0.5, 0.0, 2 * np.pi * k / n) @ base
        T[2, 3] = 1.5
        Ts.append(T)
    return np.stack([K] * n), np.stack(Ts)


def _tiny_cfg(**kw) -> BEVFormerConfig:
    base = dict(backbone="tiny", embed_dim=16, num_heads=2, query_hw=(12, 10), out_hw=(24, 20), num_layers=1,
                ffn_dim=32, num_points=2, pillar_heights=(0.0, 1.0), num_cams=3)
    base.update(kw)
    return BEVFormerConfig(**base)


def _inputs(B: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    K, T = _rig()
    images = torch.randn(B, 3, 3, *IMG_HW, generator=g)
    K = torch.tensor(K, dtype=torch.float32).expand(B, -1, -1, -1)
    T = torch.tensor(T, dtype=torch.float32).expand(B, -1, -1, -1)
    return images, K, T


# ------------------------------------------------------------------------------------- backbone

def test_backbone_strides_channels_and_local_weights(tmp_path):
    x = torch.randn(1, 3, 64, 96)
    for stage, stride, ch in [(1, 4, 16), (2, 8, 32), (3, 16, 64)]:
        bb = build_resnet_backbone("tiny", out_stage=stage)
        assert (bb.stride, bb.out_channels) == (stride, ch)
        assert bb(x).shape == (1, ch, 64 // stride, 96 // stride)
    with pytest.raises(KeyError, match="resnet-7"):
        build_resnet_backbone("resnet-7")
    missing = tmp_path / "no-such-weights"
    with pytest.raises(FileNotFoundError, match="no-such-weights"):
        build_resnet_backbone("tiny", weights_path=str(missing))
    # A checkpoint saved locally loads without network access and reproduces the features.
    from transformers import ResNetConfig, ResNetModel
    from bevlib.models.backbone import RESNET_PRESETS
    torch.manual_seed(0)
    ref = ResNetModel(ResNetConfig(**RESNET_PRESETS["tiny"])).eval()
    ref.save_pretrained(tmp_path / "tiny")
    bb = build_resnet_backbone("tiny", weights_path=str(tmp_path / "tiny"), out_stage=None)
    assert bb.norm_eval
    bb.train()
    assert not any(m.training for m in bb.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        torch.testing.assert_close(bb(x), ref(x).last_hidden_state)
    with pytest.raises(ValueError, match="not a resnet-18"):
        build_resnet_backbone("resnet-18", weights_path=str(tmp_path / "tiny"))


# ------------------------------------------------------------------------------------- network

def test_forward_shapes_and_shared_head():
    torch.manual_seed(0)
    model = build_bevformer(_tiny_cfg())
    images, K, T = _inputs()
    out = model(images, K, T)
    assert out["bev"].shape == (2, 16, 12, 10)
    assert out["logits"].shape == (2, 14, 24, 20)
    torch.testing.assert_close(model.head(out["bev"]), out["logits"])
    out2 = model(images, K, T, prev_bev=out["bev"].detach(), curr_T_prev=torch.eye(4).expand(2, 4, 4),
                 has_prev=torch.ones(2, dtype=torch.bool))
    assert out2["bev"].shape == out["bev"].shape and torch.isfinite(out2["logits"]).all()


def test_has_prev_false_means_no_history():
    """A sample with ``has_prev`` False behaves as BEVFormer without history, whatever its
    (non-zero) history tensor holds; an all-zero history with ``has_prev`` True is a history."""
    torch.manual_seed(0)
    model = build_bevformer(_tiny_cfg()).eval()
    images, K, T = _inputs()
    eye = torch.eye(4).expand(2, 4, 4)
    with torch.no_grad():
        a = model(images, K, T)["bev"]
        prev = torch.randn_like(a)
        b = model(images, K, T, prev_bev=prev, curr_T_prev=eye, has_prev=torch.tensor([False, True]))["bev"]
        c = model(images, K, T, prev_bev=torch.zeros_like(a), curr_T_prev=eye,
                  has_prev=torch.tensor([True, True]))["bev"]
    torch.testing.assert_close(b[0], a[0])
    assert not torch.allclose(b[1], a[1])
    assert not torch.allclose(c[0], a[0])


def test_gradients_reach_queries_backbone_and_attention():
    torch.manual_seed(0)
    model = build_bevformer(_tiny_cfg())
    images, K, T = _inputs()
    prev = torch.randn(2, 16, 12, 10)
    out = model(images, K, T, prev_bev=prev, curr_T_prev=torch.eye(4).expand(2, 4, 4),
                has_prev=torch.ones(2, dtype=torch.bool))
    out["logits"].square().mean().backward()
    layer = model.layers[0]
    # (The positional embedding only enters through the offset / weight layers, whose weights start
    # at zero as in Deformable DETR, so its gradient is zero at initialisation: not checked here.)
    for name, p in [("bev_queries", model.bev_queries),
                    ("backbone stem", model.backbone.embedder.embedder.convolution.weight),
                    ("neck", model.neck.weight), ("sca offsets", layer.sca.sampling_offsets.weight),
                    ("sca weights", layer.sca.attention_weights.weight),
                    ("tsa offsets", layer.tsa.sampling_offsets.weight), ("cam_embeds", model.cam_embeds)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_deterministic_under_seed():
    images, K, T = _inputs()
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_bevformer(_tiny_cfg())
        outs.append(model(images, K, T)["logits"])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_config_from_plain_dict_and_validation():
    d = _tiny_cfg().as_dict()
    d["query_hw"], d["pillar_heights"] = list(d["query_hw"]), list(d["pillar_heights"])
    model = build_bevformer(d)
    assert model.cfg.query_hw == (12, 10) and model.query_grid == GRID.with_shape(12, 10)
    with pytest.raises(ValueError, match="divisible"):
        BEVFormerConfig(embed_dim=30, num_heads=4)
    images, K, T = _inputs()
    with pytest.raises(ValueError, match="curr_T_prev and has_prev"):
        model(images, K, T, prev_bev=torch.zeros(2, 16, 12, 10))
    with pytest.raises(ValueError, match="curr_T_prev and has_prev"):
        model(images, K, T, prev_bev=torch.zeros(2, 16, 12, 10), curr_T_prev=torch.eye(4).expand(2, 4, 4))
    with pytest.raises(ValueError, match="camera embeddings"):
        model(torch.cat([images, images], 1), K.repeat(1, 2, 1, 1), T.repeat(1, 2, 1, 1))


# ------------------------------------------------------------------------------------- geometry

def test_reference_points_agree_with_geometry_project():
    K, T = _rig()
    grid = GRID.with_shape(15, 8)
    heights = (0.0, 0.7, 2.0)
    pts = pillar_points(grid, heights)                                     # (Q, Z, 3)
    coords, in_front, visible = reference_points_cam(pts, torch.tensor(K)[None], torch.tensor(T)[None], IMG_HW)
    h, w = IMG_HW
    flat = pts.reshape(-1, 3).double().numpy()
    n_visible = 0
    for n in range(len(K)):
        uv, depth, front = project(K[n], invert(T[n]), flat)
        front = front.reshape(pts.shape[:2])
        assert np.array_equal(in_front[0, n].numpy(), front)
        g = coords[0, n].double().numpy()
        uv_back = (g + 1.0) / 2.0 * np.array([w, h]) - 0.5            # grid_sample coords -> pixels
        uv = uv.reshape(*pts.shape[:2], 2)
        np.testing.assert_allclose(uv_back[front], uv[front], rtol=1e-5, atol=1e-3)
        inside = front & (uv[..., 0] > -0.5) & (uv[..., 0] < w - 0.5) & (uv[..., 1] > -0.5) & (uv[..., 1] < h - 0.5)
        assert np.array_equal(visible[0, n].numpy(), inside)
        assert (g[~front] < -1).all()                                 # behind: parked outside
        n_visible += int(inside.sum())
    assert n_visible > 10


def _identity_attention(dim: int, num_z: int) -> SpatialCrossAttention:
    """SCA with zero offsets, uniform weights and identity projections: a plain bilinear read."""
    sca = SpatialCrossAttention(dim, heads=1, num_z=num_z, points=1)
    with torch.no_grad():
        sca.sampling_offsets.bias.zero_()
        for lin in (sca.value_proj, sca.output_proj):
            lin.weight.copy_(torch.eye(dim))
            lin.bias.zero_()
    return sca


def test_spatial_cross_attention_reads_feature_at_projection():
    """A feature placed where a BEV cell's ground point projects reaches that cell's query, and is
    averaged over the cameras that see the cell (V_hit)."""
    K, T = _rig(1)
    K, T = np.concatenate([K, K]), np.concatenate([T, T])                # camera 1 duplicates camera 0
    grid = GRID.with_shape(30, 16)
    pts = pillar_points(grid, (0.0,))
    coords, front, vis = reference_points_cam(pts, torch.tensor(K)[None], torch.tensor(T)[None], IMG_HW)
    uv, _, ok = project(K[0], invert(T[0]), pts[:, 0].double().numpy())
    h, w = IMG_HW
    seen = ok & (uv[:, 0] > 3) & (uv[:, 0] < w - 4) & (uv[:, 1] > 3) & (uv[:, 1] < h - 4)
    cell = int(np.flatnonzero(seen)[len(np.flatnonzero(seen)) // 2])
    u, v = uv[cell]
    D = 4
    feats = torch.zeros(1, 2, D, h, w)
    e = torch.tensor([1.0, -2.0, 3.0, 0.5])
    r0, c0 = int(np.floor(v)), int(np.floor(u))
    feats[0, 0, :, r0 - 1:r0 + 3, c0 - 1:c0 + 3] = e.view(D, 1, 1)     # constant around the projection
    sca = _identity_attention(D, 1)
    q = torch.zeros(1, len(pts), D)
    with torch.no_grad():
        out = sca(q, torch.zeros_like(q), feats, coords, front, vis)[0]
    torch.testing.assert_close(out[cell], e / 2)                        # seen by 2 cameras, 1 has it
    # Cells projecting away from the blob read nothing.
    far = ~ok | (np.abs(uv[:, 0] - u) > 4) | (np.abs(uv[:, 1] - v) > 4)
    assert out[torch.from_numpy(far)].abs().max() == 0
    # With the feature in camera 1 too, the average is the full feature.
    feats[0, 1] = feats[0, 0]
    with torch.no_grad():
        out = sca(q, torch.zeros_like(q), feats, coords, front, vis)[0]
    torch.testing.assert_close(out[cell], e)


def test_spatial_cross_attention_matches_dense_evaluation():
    """The per-camera gather of hit queries equals evaluating every query in every camera."""
    torch.manual_seed(0)
    K, T = _rig(3, focal=12.0)                                           # wide views that overlap
    grid = GRID.with_shape(10, 6)
    Z, P, D, nh, B = 2, 2, 8, 2, 2
    pts = pillar_points(grid, (0.0, 1.5))
    Kt = torch.tensor(K, dtype=torch.float32).expand(B, -1, -1, -1)
    Tt = torch.tensor(T, dtype=torch.float32).expand(B, -1, -1, -1).clone()
    Tt[1, :, 0, 3] += 3.0                                                # second sample: another rig position
    coords, front, vis = reference_points_cam(pts, Kt, Tt, IMG_HW)
    sca = SpatialCrossAttention(D, nh, Z, P)
    with torch.no_grad():
        sca.sampling_offsets.weight.normal_(std=0.1)
        sca.attention_weights.weight.normal_(std=0.5)
    Q = pts.shape[0]
    q, pos = torch.randn(B, Q, D), torch.randn(1, Q, D)
    feats = torch.randn(B, 3, D, 6, 10)
    with torch.no_grad():
        got = sca(q, pos, feats, coords, front, vis)
        # Dense reference.
        qq = q + pos
        off = sca.sampling_offsets(qq).view(B, Q, nh, Z, P, 2) * torch.tensor([2 / 10, 2 / 6])
        wt = sca.attention_weights(qq).view(B, Q, nh, Z * P).softmax(-1).view(B, Q, nh, Z, P)
        acc = torch.zeros(B, Q, D)
        for n in range(3):
            val = sca.value_proj(feats[:, n].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)     # (B, D, 6, 10)
            hit = vis[:, n].any(-1)                                                        # (B, Q)
            for hh in range(nh):
                loc = coords[:, n, :, None, :, None, :] + off[:, :, hh:hh + 1]             # (B, Q, 1, Z, P, 2)
                s = F.grid_sample(val[:, hh * D // nh:(hh + 1) * D // nh], loc.reshape(B, Q, Z * P, 2),
                                  align_corners=False)                                     # (B, dh, Q, Z*P)
                wz = (wt[:, :, hh] * front[:, n, :, :, None]).reshape(B, Q, Z * P)
                acc[..., hh * D // nh:(hh + 1) * D // nh] += ((s * wz[:, None]).sum(-1) * hit[:, None]).transpose(1, 2)
        acc = acc / vis.any(-1).sum(1).clamp(min=1)[..., None]
        ref = q + sca.output_proj(acc)
    assert vis.any(-1).sum(1).max() >= 2                                   # some cells seen twice
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------- temporal

def test_history_alignment_identity_and_one_cell_shift():
    grid = GRID.with_shape(12, 10)
    dx, dy = grid.cell_size
    prev = torch.randn(2, 3, 12, 10)
    torch.testing.assert_close(align_history(prev, torch.eye(4).expand(2, 4, 4), grid), prev)
    # Ego drove one cell forward: a static point at x in the previous frame is at x - dx now,
    # so the current row i shows what the previous row i - 1 (one cell further ahead) showed.
    fwd = torch.tensor(se2(-dx, 0.0, 0.0), dtype=torch.float32)
    out = align_history(prev, fwd, grid)
    torch.testing.assert_close(out[:, :, 1:], prev[:, :, :-1])
    assert out[:, :, 0].abs().max() == 0
    # One cell to the left: column j now shows the previous column j - 1.
    left = torch.tensor(se2(0.0, -dy, 0.0), dtype=torch.float32)
    out = align_history(prev, left, grid)
    torch.testing.assert_close(out[..., 1:], prev[..., :-1])
    assert out[..., 0].abs().max() == 0


def test_deformable_sample_recomputes_its_reads_in_backward_with_unchanged_results():
    """deformable_sample under autograd keeps its inputs, not the (M*heads, dh, L, P) bilinear reads
    (issue 15: the largest activations of a paper-size step): same output and gradients, bitwise,
    as the plain implementation, and fewer bytes saved for backward."""
    from bevlib.models.bevformer import _deformable_sample, deformable_sample

    g = torch.Generator().manual_seed(0)
    value = torch.randn(2, 4, 8, 12, 20, generator=g)
    loc = torch.rand(2, 4, 300, 6, 2, generator=g) * 2.4 - 1.2
    w = torch.softmax(torch.randn(2, 4, 300, 6, generator=g), -1)
    up = torch.randn(2, 300, 32, generator=g)
    results = []
    for fn in (deformable_sample, _deformable_sample):
        ins = [t.clone().requires_grad_(True) for t in (value, loc, w)]
        saved = []

        def pack(t):
            saved.append(t.untyped_storage().nbytes())
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn(*ins)
        out.backward(up)
        results.append((out.detach(), [t.grad for t in ins], sum(saved)))
    (out_a, grads_a, saved_a), (out_b, grads_b, saved_b) = results
    assert torch.equal(out_a, out_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    reads = 2 * 4 * 8 * 300 * 6 * 4                       # bytes of the (M*heads, dh, L, P) float32 reads
    assert saved_b - saved_a >= reads, (saved_a, saved_b, reads)
    with torch.no_grad():                                  # inference: the plain path
        assert torch.equal(deformable_sample(value, loc, w), out_b)
