"""CameraViT / MultiViT (bevlib.models.multivit): shapes, the 2D head against a hand-written
functional computation, RangeViT's encoder tokens, the shared ViT (one set of parameters, gradients
of both branches summed into it), per-modality position embeddings, local ViT weights, encoder
transfer, the registry."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bevlib.experiments.multivit.task import sliding_window_forward
from bevlib.models.multivit import (CameraViT, CameraViTConfig, MultiViT, multivit_config_dict,
                                    transfer_encoder)
from bevlib.models.rangevit import (ConvStem, RangeViT, RangeViTConfig, TokenViTEncoder, UpConvDecoder,
                                    resize_pos_embed)
from bevlib.models.registry import build_model, model_names

VIT = dict(embed_dim=32, depth=1, heads=2)
LIDAR = dict(stem_channels=8, stem_base_channels=8, decoder_channels=8, kpconv_radius=2.0, image_size=(8, 64), **VIT)
CAMERA = dict(stem_channels=8, stem_base_channels=8, decoder_channels=8, image_size=(32, 64), **VIT)


def _lidar(**kw) -> RangeViTConfig:
    return RangeViTConfig(**{**LIDAR, **kw})


def _camera(**kw) -> CameraViTConfig:
    return CameraViTConfig(**{**CAMERA, **kw})


def _points(n=60, h=8, w=64, batches=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 8 - 4, torch.randint(0, w, (n,), generator=g),
            torch.randint(0, h, (n,), generator=g), torch.randint(0, batches, (n,), generator=g))


def test_camera_config_defaults_and_checks():
    c = CameraViTConfig()
    assert (c.patch, c.image_size, c.token_grid, c.num_classes) == ((8, 8), (256, 704), (32, 88), 11)
    assert (c.embed_dim, c.depth, c.heads, c.stem_channels, c.decoder_channels) == (384, 12, 6, 256, 256)
    with pytest.raises(ValueError, match="image_size"):
        CameraViTConfig(image_size=(250, 704))
    with pytest.raises(ValueError, match="heads"):
        CameraViTConfig(embed_dim=30, heads=4)
    with pytest.raises(ValueError, match="num_classes"):
        CameraViTConfig(num_classes=0)


def test_cameravit_shapes_and_bad_input():
    torch.manual_seed(0)
    m = CameraViT(_camera()).eval()
    # the same building blocks as RangeViT (Sec. 3.2.1: "kept exactly the same")
    assert isinstance(m.stem, ConvStem) and isinstance(m.encoder, TokenViTEncoder)
    assert isinstance(m.decoder, UpConvDecoder)
    with torch.no_grad():
        out = m(torch.randn(2, 3, 32, 64))
        assert set(out) == {"logits", "features", "tokens"}
        assert out["logits"].shape == (2, 11, 32, 64)
        assert out["features"].shape == (2, 8, 32, 64)
        assert out["tokens"].shape == (2, 32, 4, 8)
        # another image size: position embeddings resized on the fly
        assert m(torch.randn(1, 3, 48, 80))["logits"].shape == (1, 11, 48, 80)
    for bad in (torch.randn(1, 4, 32, 64), torch.randn(1, 3, 30, 64), torch.randn(3, 32, 64)):
        with pytest.raises(ValueError, match="images"):
            m(bad)


def test_cameravit_head_is_conv_bn_relu_linear():
    """Logits == conv3x3 -> BN (eval statistics) -> ReLU -> 1x1 conv of the features, written out
    with torch.nn.functional."""
    torch.manual_seed(0)
    m = CameraViT(_camera())
    conv, bn, _, lin = m.head
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    m.eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, 32, 64))
        x = F.conv2d(out["features"], conv.weight, None, padding=1)
        x = (x - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        x = torch.relu(x * bn.weight[:, None, None] + bn.bias[:, None, None])
        ref = F.conv2d(x, lin.weight, lin.bias)
    assert conv.kernel_size == (3, 3) and lin.kernel_size == (1, 1) and lin.out_channels == 11
    torch.testing.assert_close(out["logits"], ref)
    # decoder features come from the encoder tokens and the stem skip, as in RangeViT
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 64)
        tok, skip = m.stem(x)
        torch.testing.assert_close(m(x)["features"], m.decoder(m.encoder(tok), skip))


def test_rangevit_returns_encoder_tokens():
    torch.manual_seed(0)
    m = RangeViT(_lidar()).eval()
    x = torch.randn(2, 5, 8, 64)
    with torch.no_grad():
        out = m(x, *_points())
        feats, tokens = m.features_2d(x, return_tokens=True)
        ref = m.encoder(m.stem(x)[0])
    assert out["tokens"].shape == (2, 32, 4, 8)
    torch.testing.assert_close(out["tokens"], ref)
    torch.testing.assert_close(tokens, ref)
    torch.testing.assert_close(feats, m.features_2d(x))
    torch.testing.assert_close(out["features"], feats)


def _count(params) -> int:
    return sum(p.numel() for p in params)


def test_multivit_shares_one_encoder():
    torch.manual_seed(0)
    m = MultiViT(_lidar(), _camera())
    le, ce = m.lidar.encoder, m.camera.encoder
    assert le.layers is ce.layers and le.layernorm is ce.layernorm and le.cls_token is ce.cls_token
    assert le.position_embeddings is not ce.position_embeddings
    assert le.position_embeddings.shape == (1, 1 + 4 * 8, 32) == ce.position_embeddings.shape
    # parameters() yields each shared tensor once: the total is both branches minus the shared part
    shared = _count(le.layers.parameters()) + _count(le.layernorm.parameters()) + le.cls_token.numel()
    total = _count(m.parameters())
    assert total == _count(m.lidar.parameters()) + _count(m.camera.parameters()) - shared
    assert total == _count({id(p): p for p in m.parameters()}.values())
    assert len(list(m.parameters())) == len({id(p) for _, p in m.named_parameters(remove_duplicate=False)})


def _branch_losses(m, x_l, pts, x_c):
    out = m(x_l, *pts, images=x_c)
    return out["lidar"]["point_logits"].square().mean(), out["camera"]["logits"].square().mean()


def test_multivit_gradient_step_moves_both_views():
    torch.manual_seed(0)
    m = MultiViT(_lidar(), _camera())
    x_l, pts, x_c = torch.randn(2, 5, 8, 64), _points(), torch.randn(2, 3, 32, 64)
    w = m.lidar.encoder.layers[0].attention.q_proj.weight
    grads = []
    for pick in (0, 1, None):              # lidar loss only, camera loss only, both
        m.zero_grad()
        ll, lc = _branch_losses(m, x_l, pts, x_c)
        (ll if pick == 0 else lc if pick == 1 else ll + lc).backward()
        grads.append(w.grad.clone())
    assert grads[0].abs().sum() > 0 and grads[1].abs().sum() > 0
    # the shared weight receives the sum of the two branches' gradients
    torch.testing.assert_close(grads[2], grads[0] + grads[1])
    # one SGD step: both branches see the same new weights; both encoders' outputs change
    tok = torch.randn(1, 32, 4, 8)
    with torch.no_grad():
        before = (m.lidar.encoder(tok), m.camera.encoder(tok))
    old = w.detach().clone()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    opt.step()
    cw = m.camera.encoder.layers[0].attention.q_proj.weight
    torch.testing.assert_close(cw, old - 0.5 * grads[2])
    torch.testing.assert_close(w, cw)
    with torch.no_grad():
        after = (m.lidar.encoder(tok), m.camera.encoder(tok))
    assert not torch.allclose(before[0], after[0]) and not torch.allclose(before[1], after[1])


def test_multivit_branches_are_plain_models():
    """The lidar branch's weights load into a stand-alone RangeViT with identical outputs (also in
    sliding-window inference); a MultiViT state dict round trip keeps the tie."""
    torch.manual_seed(0)
    m = MultiViT(_lidar(), _camera()).eval()
    r = RangeViT(_lidar()).eval()
    r.load_state_dict(m.lidar.state_dict())
    c = CameraViT(_camera()).eval()
    c.load_state_dict(m.camera.state_dict())
    x, pts = torch.randn(1, 5, 8, 128), _points(w=128, batches=1)
    with torch.no_grad():
        a = sliding_window_forward(m.lidar, x, *pts, window=64, stride=32)
        b = sliding_window_forward(r, x, *pts, window=64, stride=32)
        torch.testing.assert_close(a["point_logits"], b["point_logits"])
        img = torch.randn(1, 3, 32, 64)
        torch.testing.assert_close(m(images=img)["camera"]["logits"], c(img)["logits"])
    m2 = MultiViT(_lidar(), _camera())
    m2.load_state_dict(m.state_dict())
    assert m2.camera.encoder.layers is m2.lidar.encoder.layers
    torch.testing.assert_close(m2.camera.encoder.cls_token, m.lidar.encoder.cls_token)
    with pytest.raises(ValueError, match="range_image and/or images"):
        m()


@pytest.mark.parametrize("field,value", [("embed_dim", 48), ("depth", 2), ("heads", 4), ("mlp_ratio", 2),
                                         ("vit_weights", "/nonexistent"), ("dropout", 0.1)])
def test_multivit_rejects_different_vits(field, value):
    with pytest.raises(ValueError, match=field):
        MultiViT(_lidar(), _camera(**{field: value}))


def test_multivit_local_vit_weights(tmp_path):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128,
                             image_size=32, patch_size=8), add_pooling_layer=False)   # 4 x 4 grid
    vit.save_pretrained(tmp_path / "vit")
    d = str(tmp_path / "vit")
    m = MultiViT(_lidar(vit_weights=d, image_size=(16, 64)), _camera(vit_weights=d))
    for k, p in m.camera.encoder.layers.state_dict().items():
        torch.testing.assert_close(p, vit.state_dict()[f"layers.{k}"])
    pos = vit.embeddings.position_embeddings
    torch.testing.assert_close(m.lidar.encoder.position_embeddings, resize_pos_embed(pos, (4, 4), (8, 8)))
    torch.testing.assert_close(m.camera.encoder.position_embeddings, resize_pos_embed(pos, (4, 4), (4, 8)))


def test_transfer_encoder_same_and_other_grid():
    torch.manual_seed(0)
    cam = CameraViT(_camera())                  # grid 4 x 8
    rv = RangeViT(_lidar())                     # 8 x 64 with 2 x 8 patches: grid 4 x 8 too
    tok = torch.randn(2, 32, 4, 8)
    with torch.no_grad():
        assert not torch.allclose(cam.encoder(tok), rv.encoder(tok))
    stem_before = {k: v.clone() for k, v in rv.stem.state_dict().items()}
    names = transfer_encoder(cam, rv)
    with torch.no_grad():
        torch.testing.assert_close(rv.encoder(tok), cam.encoder(tok), rtol=0, atol=0)
    expected = {n for n, _ in rv.encoder.named_parameters(prefix="encoder")}
    assert set(names) == expected and len(names) == len(expected)
    for k, v in rv.stem.state_dict().items():
        assert torch.equal(v, stem_before[k]), k   # only the ViT moves
    # another grid: position embeddings resized from the source grid
    rv2 = RangeViT(_lidar(image_size=(16, 64)))   # grid 8 x 8
    transfer_encoder(cam, rv2)
    torch.testing.assert_close(rv2.encoder.position_embeddings,
                               resize_pos_embed(cam.encoder.position_embeddings, (4, 8), (8, 8)))
    torch.testing.assert_close(rv2.encoder.layernorm.weight, cam.encoder.layernorm.weight)


def test_transfer_encoder_into_multivit_and_errors():
    torch.manual_seed(0)
    cam = CameraViT(_camera())
    m = MultiViT(_lidar(image_size=(16, 64)), _camera())
    names = transfer_encoder(cam, m)
    assert len(names) == len(set(names))
    assert "lidar.encoder.position_embeddings" in names and "camera.encoder.position_embeddings" in names
    assert not any(n.startswith("camera.encoder.layers") for n in names)   # shared: listed once
    torch.testing.assert_close(m.camera.encoder.position_embeddings, cam.encoder.position_embeddings)
    torch.testing.assert_close(m.lidar.encoder.position_embeddings,
                               resize_pos_embed(cam.encoder.position_embeddings, (4, 8), (8, 8)))
    tok = torch.randn(1, 32, 4, 8)
    with torch.no_grad():
        torch.testing.assert_close(m.camera.encoder(tok), cam.encoder(tok), rtol=0, atol=0)
    with pytest.raises(ValueError, match="MultiViT"):
        transfer_encoder(m, cam)
    with pytest.raises(ValueError, match="differs"):
        transfer_encoder(cam, RangeViT(_lidar(embed_dim=48)))
    with pytest.raises(TypeError):
        transfer_encoder(cam, nn.Linear(2, 2))


def test_registry_entries():
    assert {"cameravit", "multivit", "rangevit"} <= set(model_names())
    c = build_model("cameravit", {**CAMERA, "image_size": [32, 64]})
    assert isinstance(c, CameraViT) and c.cfg == _camera()
    with pytest.raises(TypeError, match="kpconv_radius"):
        build_model("cameravit", {"kpconv_radius": 1.0})
    d = multivit_config_dict(_lidar(), _camera())
    assert d["camera"]["patch"] == [8, 8]
    m = build_model("multivit", d)
    assert isinstance(m, MultiViT) and m.lidar_cfg == _lidar() and m.camera_cfg == _camera()
    with pytest.raises(TypeError, match="radar"):
        build_model("multivit", {**d, "radar": {}})
    with pytest.raises(TypeError, match="nope"):
        build_model("multivit", {"lidar": {**d["lidar"], "nope": 1}, "camera": d["camera"]})
    with pytest.raises(ValueError, match="depth"):
        build_model("multivit", {"lidar": d["lidar"], "camera": {**d["camera"], "depth": 2}})


def test_cameravit_training_steps_lower_the_loss():
    torch.manual_seed(0)
    m = CameraViT(_camera())
    x = torch.randn(2, 3, 32, 64)
    y = torch.randint(0, 11, (2, 32, 64))
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        loss = F.cross_entropy(m(x)["logits"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses
