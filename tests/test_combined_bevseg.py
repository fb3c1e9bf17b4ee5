"""bevlib.experiments.combined.bevseg against direct computations (loops, closed forms) with stub
BEV encoders."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from bevlib.data.map_masks import MAP_SEG_CLASSES
from bevlib.experiments.combined.bevseg import (BEVFUSION_THRESHOLDS, BEVDistillAdapter, BEVSegConfig, BEVSegHead,
                                                BEVSegModel, BEVSegTask, bevdistill_loss, finetune_split,
                                                iou_from_counts, multilabel_iou, multilabel_iou_counts,
                                                sigmoid_focal_loss)
from bevlib.models.promptnorm import PromptNorm, prompt_norms, replace_layernorms

C = len(MAP_SEG_CLASSES)


class StubEncoder(nn.Module):
    """batch[key] (B, Cin, h, w) -> 1x1 conv -> LayerNorm over channels: a BEV branch with a norm
    that replace_layernorms can turn into a PromptNorm."""

    def __init__(self, key: str, cin: int, cout: int):
        super().__init__()
        self.key, self.proj, self.norm = key, nn.Conv2d(cin, cout, 1), nn.LayerNorm(cout)

    def forward(self, batch):
        x = self.proj(batch[self.key])
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _model(prompt_mode="none", n_datasets=None, out_hw=(20, 20)):
    cam, lidar = StubEncoder("cam", 3, 8), StubEncoder("lidar", 2, 6)
    if n_datasets:
        replace_layernorms(cam, n_datasets)
        replace_layernorms(lidar, n_datasets)
    return BEVSegModel(cam, lidar, BEVSegHead(8, 6, fused_channels=16, n_blocks=1, out_hw=out_hw), prompt_mode)


def _batch(B=2, h=10, w=10, out_hw=(20, 20), seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"cam": torch.randn(B, 3, h, w, generator=g), "lidar": torch.randn(B, 2, h, w, generator=g),
            "map_masks": torch.rand(B, C, *out_hw, generator=g) > 0.6}


def test_head_shapes_gradients_and_errors():
    torch.manual_seed(0)
    head = BEVSegHead(8, 6, fused_channels=16, n_blocks=2)
    cam, lidar = torch.randn(2, 8, 32, 32, requires_grad=True), torch.randn(2, 6, 32, 32, requires_grad=True)
    out = head(cam, lidar)
    assert out.shape == (2, C, 200, 200)                  # paper C.2: 200 x 200, one logit per class
    out.sum().backward()
    assert cam.grad.abs().sum() > 0 and lidar.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ"):
        head(cam, lidar[:, :, :16])
    with pytest.raises(ValueError, match="channels"):
        head(cam[:, :4], lidar)
    with pytest.raises(ValueError, match="fused_channels"):
        BEVSegHead(8, 6, fused_channels=0)


def test_head_output_is_local_so_interpolation_keeps_the_grid():
    """A feature in the front-left input cell moves the logits in the front-left output region
    only: concatenation, convolutions and bilinear upsampling keep the BEV orientation."""
    torch.manual_seed(0)
    head = BEVSegHead(2, 2, fused_channels=4, n_blocks=0, out_hw=(40, 40)).eval()
    cam, lidar = torch.zeros(1, 2, 20, 20), torch.zeros(1, 2, 20, 20)
    base = head(cam, lidar)
    cam[0, :, 2, 3] = 5.0
    diff = (head(cam, lidar) - base).abs().sum(1)[0]
    rows, cols = torch.nonzero(diff > 1e-6, as_tuple=True)
    # Input cell (2, 3) -> fuser 3x3: input rows 1..3, cols 2..4 -> bilinear x2 (sampling input
    # (r + 0.5) / 2 - 0.5, i.e. its floor and ceil): output rows 1..8, cols 3..10 -> classifier 3x3:
    # rows 0..9, cols 2..11.
    # A transposed or flipped map would put the response elsewhere.
    assert len(rows) > 0
    assert rows.min() == 0 and rows.max() == 9 and cols.min() == 2 and cols.max() == 11


def _iou_loop(probs, target, th, mask):
    """Brute force: per class count cells one by one."""
    B, Cc, H, W = probs.shape
    res = np.zeros((Cc, 2), np.int64)
    for c in range(Cc):
        for b in range(B):
            for i in range(H):
                for j in range(W):
                    if mask is not None and not mask[b, i, j]:
                        continue
                    p, t = probs[b, c, i, j] >= th, bool(target[b, c, i, j])
                    res[c, 0] += p and t
                    res[c, 1] += p or t
    return res


def test_multilabel_iou_matches_brute_force_loop():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, C, 5, 4, generator=g)
    target = torch.rand(2, C, 5, 4, generator=g) > 0.5
    target[:, 3] = False                                   # class 3: no positives ...
    logits[:, 3] = -10.0                                   # ... and none predicted -> NaN, left out of the mean
    mask = torch.rand(2, 5, 4, generator=g) > 0.3
    probs = torch.sigmoid(logits)
    ths = (0.3, 0.5, 0.7)
    counts = multilabel_iou_counts(probs, target, ths, mask)
    for k, th in enumerate(ths):
        np.testing.assert_array_equal(counts[k].numpy(), _iou_loop(probs.numpy(), target.numpy(), th, mask.numpy()))
    res = multilabel_iou(logits, target, ths, mask)
    ref = _iou_loop(probs.numpy(), target.numpy(), 0.5, mask.numpy())
    res05 = multilabel_iou(logits, target, mask=mask)      # default: threshold 0.5 only
    for c, name in enumerate(MAP_SEG_CLASSES):
        if c == 3:
            assert math.isnan(res[f"{name}_iou"]) and math.isnan(res05[f"{name}_iou"])
            continue
        assert res05[f"{name}_iou"] == pytest.approx(100 * ref[c, 0] / ref[c, 1])
        best = max(100 * a / u for a, u in (_iou_loop(probs.numpy(), target.numpy(), th, mask.numpy())[c] for th in ths))
        assert res[f"{name}_iou"] == pytest.approx(best)
    vals = [res05[f"{n}_iou"] for i, n in enumerate(MAP_SEG_CLASSES) if i != 3]
    assert res05["miou"] == pytest.approx(np.mean(vals))
    assert 0.35 in BEVFUSION_THRESHOLDS and 0.65 in BEVFUSION_THRESHOLDS
    with pytest.raises(ValueError, match="thresholds"):
        multilabel_iou(logits, target, (1.5,))
    with pytest.raises(ValueError, match="counts"):
        iou_from_counts(counts, ("a",))


def test_finetune_split_is_deterministic_and_a_fifth():
    toks = [f"tok{i:03d}" for i in range(53)]
    a = finetune_split(toks, 0.2, seed=3)
    assert len(a) == math.ceil(0.2 * 53) and set(a) <= set(toks) and len(set(a)) == len(a)
    assert a == finetune_split(toks, 0.2, seed=3)
    assert a == [t for t in toks if t in set(a)]           # input order kept
    assert set(finetune_split(toks[::-1], 0.2, seed=3)) == set(a)   # depends on the set, not its order
    assert set(finetune_split(toks, 0.2, seed=4)) != set(a)
    assert finetune_split(toks, 1.0) == toks
    assert len(finetune_split(toks[:3], 0.2)) == 1
    for bad, kw in ((toks, dict(share=0.0)), (toks, dict(share=1.5)), ([], {}), (["a", "a"], {})):
        with pytest.raises(ValueError, match="finetune_split"):
            finetune_split(bad, **kw)


def test_bevdistill_loss_matches_direct_computation_and_detaches_lidar():
    g = torch.Generator().manual_seed(2)
    cam = torch.randn(2, 4, 3, 5, generator=g, requires_grad=True)
    lid = torch.randn(2, 4, 3, 5, generator=g, requires_grad=True)
    mask = torch.rand(2, 3, 5, generator=g) > 0.4
    loss = bevdistill_loss(cam, lid, mask)
    c, l, m = cam.detach().numpy(), lid.detach().numpy(), mask.numpy()
    vals = []
    for b in range(2):
        for i in range(3):
            for j in range(5):
                if m[b, i, j]:
                    cos = c[b, :, i, j] @ l[b, :, i, j] / np.linalg.norm(c[b, :, i, j]) / np.linalg.norm(l[b, :, i, j])
                    vals.append(2 - 2 * cos)
    assert loss.item() == pytest.approx(np.mean(vals), rel=1e-5)
    assert bevdistill_loss(cam, lid).item() == pytest.approx(
        np.mean(2 - 2 * (c * l).sum(1) / np.linalg.norm(c, axis=1) / np.linalg.norm(l, axis=1)), rel=1e-5)
    loss.backward()
    assert cam.grad.abs().sum() > 0 and lid.grad is None
    assert bevdistill_loss(lid, lid).item() == pytest.approx(0.0, abs=1e-6)
    assert BEVDistillAdapter(3, 4)(torch.randn(1, 3, 2, 2)).shape == (1, 4, 2, 2)
    with pytest.raises(ValueError, match="cam_bev"):
        bevdistill_loss(cam, lid[:, :3])


def test_sigmoid_focal_loss_closed_form():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, generator=g) * 3
    t = (torch.rand(50, generator=g) > 0.5).float()
    p = 1 / (1 + np.exp(-x.numpy().astype(np.float64)))
    tt = t.numpy()
    ref = np.where(tt == 1, -0.25 * (1 - p) ** 2 * np.log(p), -0.75 * p ** 2 * np.log(1 - p)).mean()
    assert sigmoid_focal_loss(x, t).item() == pytest.approx(ref, rel=1e-4)
    bce = -(tt * np.log(p) + (1 - tt) * np.log(1 - p)).mean()
    assert sigmoid_focal_loss(x, t, gamma=0.0, alpha=-1).item() == pytest.approx(bce, rel=1e-4)
    with pytest.raises(ValueError, match="gamma"):
        sigmoid_focal_loss(x, t, gamma=-1.0)


def test_prompt_modes_are_passed_through():
    torch.manual_seed(0)
    model = _model("own", n_datasets=3)
    norms = prompt_norms(model)
    assert len(norms) == 2 and all(isinstance(m, PromptNorm) for m in norms)
    for m in norms:                                          # leave the identity init so prompts matter
        for p in m.parameters():
            p.data.normal_(0, 0.5)
    batch = _batch()
    with pytest.raises(ValueError, match="dataset_index"):
        model.eval()(batch)                                  # "own" needs each sample's index
    own1 = model({**batch, "dataset_index": torch.tensor([1, 1])})
    own0 = model({**batch, "dataset_index": torch.tensor([0, 0])})
    assert not torch.allclose(own0, own1)
    task = BEVSegTask(lambda: _model("own", n_datasets=3), None, cfg=BEVSegConfig(prompt_mode=1))
    m = task.build_model()
    assert all(n.prompt_mode == 1 for n in prompt_norms(m))
    m.load_state_dict(model.state_dict())
    fixed = m.eval()({**batch, "dataset_index": torch.tensor([0, 2])})   # the wrong, fixed prompt wins
    assert torch.allclose(fixed, own1, atol=1e-6)
    BEVSegTask(lambda: m, None, cfg=BEVSegConfig(prompt_mode="none")).build_model()
    assert all(n.prompt_mode == "none" for n in prompt_norms(m))
    with pytest.raises(ValueError, match="dataset index"):
        _model(5, n_datasets=3)
    with pytest.raises(ValueError, match="prompt_mode"):
        BEVSegConfig(prompt_mode="wrong")


class _Oracle(nn.Module):
    """Logits +-10 from the batch's own target (or its negation): IoU 100 / 0 by construction."""

    def __init__(self, sign):
        super().__init__()
        self.sign = sign

    def forward(self, batch):
        return self.sign * (batch["map_masks"].float() * 20 - 10)


@pytest.mark.parametrize("loss", ["bce", "focal"])
def test_task_loss_trains_and_evaluate_sums_counts(loss):
    torch.manual_seed(0)
    task = BEVSegTask(_model, None, cfg=BEVSegConfig(loss=loss, prompt_mode="none"))
    model = task.build_model()
    batch = _batch()
    batch["map_valid"] = torch.ones(2, 20, 20, dtype=torch.bool)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        terms = task.loss(model, batch)
        assert list(terms) == [loss]
        opt.zero_grad()
        terms[loss].backward()
        opt.step()
        first = first if first is not None else terms[loss].item()
    assert terms[loss].item() < first
    batches = [_batch(seed=s) for s in range(3)]
    assert task.evaluate(_Oracle(1.0), batches, lambda x: x)["miou"] == pytest.approx(100.0)
    assert task.evaluate(_Oracle(-1.0), batches, lambda x: x)["miou"] == pytest.approx(0.0)
    model.eval()
    got = task.evaluate(model, batches, lambda x: x)
    whole = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    assert got == pytest.approx(multilabel_iou(model(whole), whole["map_masks"]))
    with pytest.raises(ValueError, match="map_masks"):
        task.loss(model, {**batch, "map_masks": batch["map_masks"][:, :3]})


def test_head_crop_resamples_the_centred_extent():
    """A crop of 50 / 51.2 puts each output cell where BEVFusion's grid transform puts it: a map linear in
    the metric coordinate comes out equal to the output cells' own coordinates (bilinear is exact on it)."""
    import torch

    from bevlib.experiments.combined.bevseg import BEVSegHead

    head = BEVSegHead(1, 1, fused_channels=1, n_blocks=0, n_classes=1, out_hw=(200, 200), crop=50.0 / 51.2)
    S, R = 128, 51.2
    centres = -R + (torch.arange(S, dtype=torch.float64) + 0.5) * 2 * R / S     # input cell centres, metres
    x = centres.view(1, 1, 1, S).expand(1, 1, S, S).contiguous()
    out = head.resample(x)
    want = -50.0 + (torch.arange(200, dtype=torch.float64) + 0.5) * 0.5          # output cell centres, metres
    assert torch.allclose(out[0, 0, 0], want, atol=1e-6)
    assert torch.allclose(out[0, 0, :, 7], out[0, 0, 0, 7].expand(200))
    full = BEVSegHead(1, 1, fused_channels=1, n_blocks=0, n_classes=1, out_hw=(200, 200))
    assert not torch.allclose(full.resample(x)[0, 0, 0], want, atol=0.1)         # no crop: +-51.2 m, misaligned
    assert head(x.float(), x.float()).shape == (1, 1, 200, 200)
    with pytest.raises(ValueError, match="crop"):
        BEVSegHead(1, 1, crop=1.5)
