"""RangeViT (bevlib.models.rangevit): shapes, position-embedding resizing, unequal pixel shuffle,
local ViT weights round trip, gradient flow, a few training steps, the registry."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bevlib.models.rangevit import (RangeViTConfig, build_rangevit, config_dict, pixel_shuffle_2d,
                                    resize_pos_embed)
from bevlib.models.registry import build_model, model_names

H, W = 32, 384
SMALL = dict(stem_channels=32, stem_base_channels=16, embed_dim=48, depth=2, heads=2, decoder_channels=32,
             kpconv_radius=2.0, image_size=(H, W))


def _small(**kw) -> RangeViTConfig:
    return RangeViTConfig(**{**SMALL, **kw})


def _points(n=400, batches=2, w=W, seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 3, generator=g) * 8 - 4
    u = torch.randint(0, w, (n,), generator=g)
    v = torch.randint(0, H, (n,), generator=g)
    b = torch.randint(0, batches, (n,), generator=g)
    return pts, u, v, b


def test_output_shapes_and_point_list_input():
    torch.manual_seed(0)
    m = build_rangevit(_small()).eval()
    x = torch.randn(2, 5, H, W)
    pts, u, v, b = _points()
    with torch.no_grad():
        out = m(x, pts, u, v, b)
        assert out["pixel_logits"].shape == (2, 17, H, W)
        assert out["features"].shape == (2, 32, H, W)
        assert out["point_logits"].shape == (400, 17)
        # the same points as a per-scan list give the same logits (in list order)
        order = torch.argsort(b, stable=True)
        lists = [[t[order][b[order] == i] for i in range(2)] for t in (pts, u, v)]
        out_l = m(x, *lists)
        torch.testing.assert_close(out_l["point_logits"], out["point_logits"][order])
        assert "point_logits" not in m(x)
        # a wider image (full-scan width) works: position embeddings are resized on the fly
        assert m(torch.randn(1, 5, H, 2 * W))["pixel_logits"].shape == (1, 17, H, 2 * W)
    with pytest.raises(ValueError):
        m(torch.randn(1, 5, H, W + 4))
    with pytest.raises(ValueError):
        m(x, pts, u + W, v, b)


def test_pos_embed_resize():
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 4 * 6, 8)
    assert resize_pos_embed(pos, (4, 6), (4, 6)) is pos
    r = resize_pos_embed(pos, (4, 6), (8, 12))
    assert r.shape == (1, 1 + 8 * 12, 8)
    torch.testing.assert_close(r[:, :1], pos[:, :1])           # [CLS] untouched
    back = resize_pos_embed(pos, (4, 6), (16, 48))
    assert back.shape == (1, 1 + 16 * 48, 8)
    # a constant grid stays constant (bicubic weights sum to 1)
    const = torch.ones(1, 1 + 14 * 14, 4)
    torch.testing.assert_close(resize_pos_embed(const, (14, 14), (16, 48)), torch.ones(1, 1 + 16 * 48, 4))
    with pytest.raises(ValueError):
        resize_pos_embed(pos, (5, 5), (8, 8))
    # in the model: the training grid returns the parameter itself
    m = build_rangevit(_small())
    enc = m.encoder
    assert enc.grid == (16, 48)
    assert enc.pos_embed((16, 48)) is enc.position_embeddings
    assert enc.pos_embed((16, 96)).shape == (1, 1 + 16 * 96, 48)


def test_pixel_shuffle_2d():
    x = torch.randn(2, 3 * 4, 5, 6)
    torch.testing.assert_close(pixel_shuffle_2d(x, (2, 2)), nn.PixelShuffle(2)(x))
    x = torch.randn(2, 3 * 2 * 8, 4, 5)
    y = pixel_shuffle_2d(x, (2, 8))
    assert y.shape == (2, 3, 8, 40)
    # channel (c, i, j) of token (h, w) lands on pixel (h * 2 + i, w * 8 + j)
    c, i, j, h, w = 1, 1, 5, 3, 2
    assert y[0, c, h * 2 + i, w * 8 + j] == x[0, c * 16 + i * 8 + j, h, w]


def test_vit_weights_round_trip(tmp_path):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    vc = ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=192,
                   image_size=32, patch_size=8)      # a 4 x 4 "pretrained" grid
    vit = ViTModel(vc, add_pooling_layer=False)
    vit.save_pretrained(tmp_path / "vit")
    m = build_rangevit(_small(vit_weights=str(tmp_path / "vit")))
    sd_vit = vit.state_dict()
    for k, p in m.encoder.layers.state_dict().items():
        torch.testing.assert_close(p, sd_vit[f"layers.{k}"])
    torch.testing.assert_close(m.encoder.layernorm.weight, vit.layernorm.weight)
    torch.testing.assert_close(m.encoder.cls_token, vit.embeddings.cls_token)
    torch.testing.assert_close(m.encoder.position_embeddings,
                               resize_pos_embed(vit.embeddings.position_embeddings, (4, 4), (16, 48)))
    with pytest.raises(ValueError, match="do not match"):
        build_rangevit(_small(vit_weights=str(tmp_path / "vit"), depth=3))
    with pytest.raises(FileNotFoundError):
        build_rangevit(_small(vit_weights=str(tmp_path / "missing")))


def test_gradients_reach_every_part():
    torch.manual_seed(0)
    m = build_rangevit(_small())
    pts, u, v, b = _points()
    out = m(torch.randn(2, 5, H, W), pts, u, v, b)
    (out["point_logits"].square().mean() + out["pixel_logits"].square().mean()).backward()
    for name in ("stem", "encoder", "decoder", "refiner", "pixel_head"):
        grads = [p.grad for p in getattr(m, name).parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    assert m.encoder.position_embeddings.grad.abs().sum() > 0
    assert m.stem.blocks[0].proj[0].weight.grad.abs().sum() > 0


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    m = build_rangevit(_small())
    x = torch.randn(2, 5, H, W)
    pts, u, v, b = _points()
    y_pts = torch.randint(0, 17, (len(pts),))
    y_pix = torch.randint(0, 17, (2, H, W))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        out = m(x, pts, u, v, b)
        loss = (nn.functional.cross_entropy(out["point_logits"], y_pts, ignore_index=0)
                + nn.functional.cross_entropy(out["pixel_logits"], y_pix, ignore_index=0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses


def test_registry_and_config_dict():
    assert "rangevit" in model_names()
    cfg = _small()
    d = config_dict(cfg)
    assert d["patch"] == [2, 8]
    m = build_model("rangevit", d)
    assert m.cfg == cfg
    with pytest.raises(TypeError, match="unknown"):
        build_model("rangevit", {"nope": 1})
    with pytest.raises(ValueError):
        build_model("rangevit", {**d, "image_size": [32, 380]})
