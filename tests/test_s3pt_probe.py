"""Frozen-backbone Segmenter probes of wozniak2025 (bevlib.experiments.s3pt.probe) on the tiny world."""
import math

import numpy as np
import pytest
import torch

from bevlib.classes import IGNORE, WORLD_CAMERA
from bevlib.experiments.s3pt import probe as P
from bevlib.train import TrainConfig, read_metrics

INPUT_HW = (32, 64)


def _vit_config():
    from transformers import ViTConfig
    return ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     patch_size=8, image_size=32, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


@pytest.fixture(scope="module")
def items(tiny_world):
    return {s: P.world_camera_items(tiny_world, s) for s in ("train", "val")}


def _task(tiny_world, items, head="linear", **kw):
    return P.FrozenProbeTask(_vit_config(), head, tiny_world, items["train"][:6], items["val"][:6], input_hw=INPUT_HW, **kw)


def test_label_set_matches_world_classes():
    from bevlib.data.world import CAMERA_SEMANTIC_CLASSES

    assert WORLD_CAMERA.names == CAMERA_SEMANTIC_CLASSES[1:]
    lut = P.world_label_lut()
    assert lut[0] == IGNORE and (lut[len(CAMERA_SEMANTIC_CLASSES):] == IGNORE).all()
    for i, name in enumerate(CAMERA_SEMANTIC_CLASSES[1:], start=1):
        assert WORLD_CAMERA.names[lut[i]] == name


def test_dataset_labels_are_nearest_samples(tiny_world, items):
    from bevlib.data.world import load_camera_semantics

    ds = P.ProbeImageDataset(tiny_world, items["val"], INPUT_HW)
    it = ds[0]
    assert it["image"].shape == (3, *INPUT_HW) and it["image"].dtype == torch.float32
    sem = load_camera_semantics(tiny_world, items["val"][0]["token"])
    H, W = sem.shape
    ys = (np.arange(INPUT_HW[0]) * H / INPUT_HW[0]).astype(int)   # cv2 INTER_NEAREST: floor(dst * scale)
    xs = (np.arange(INPUT_HW[1]) * W / INPUT_HW[1]).astype(int)
    expected = sem[ys][:, xs].astype(np.int64) - 1
    np.testing.assert_array_equal(it["labels"].numpy(), expected)   # the world never renders id 0


def test_backbone_sources_agree(tmp_path):
    from transformers import ViTModel

    torch.manual_seed(0)
    vit = ViTModel(_vit_config(), add_pooling_layer=False).eval()
    x = torch.randn(2, 3, *INPUT_HW)
    ref = vit(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 1:]
    vit.save_pretrained(tmp_path / "w")
    for bb in (P.build_backbone(_vit_config(), vit.state_dict()), P.build_backbone(tmp_path / "w"),
               P.build_backbone(lambda im: vit(pixel_values=im, interpolate_pos_encoding=True).last_hidden_state[:, 1:])):
        with torch.no_grad():
            torch.testing.assert_close(bb.eval()(x), ref)
    assert ref.shape == (2, (INPUT_HW[0] // 8) * (INPUT_HW[1] // 8), 32)
    with pytest.raises(ValueError, match="state_dict"):
        P.build_backbone(_vit_config(), {"nope": torch.zeros(1)})
    with pytest.raises(FileNotFoundError):
        P.build_backbone(tmp_path / "missing")


def test_bad_arguments(tiny_world, items):
    with pytest.raises(ValueError, match="head"):
        _task(tiny_world, items, head="deeplab")
    with pytest.raises(ValueError, match="image_hw"):
        P.FrozenProbeTask(_vit_config(), "linear", tiny_world, items["train"], items["val"], input_hw=(30, 64))
    with pytest.raises(ValueError, match="backbone_id"):
        P.FrozenProbeTask(lambda im: im, "linear", tiny_world, [], [], embed_dim=3, patch=8, input_hw=INPUT_HW)


@pytest.mark.parametrize("head", ["linear", "mask"])
def test_probe_trains_head_only(tiny_world, items, tmp_path, head):
    task = _task(tiny_world, items, head=head)
    before = {k: v.clone() for k, v in task.backbone.state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=2, lr=1e-2, schedule="constant", device="cpu", eval_batch_size=6)
    run = P.train(task, cfg, tmp_path, f"probe-{head}", progress=False)
    after = task.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the head did train: the checkpointed head differs from a fresh one
    from bevlib.train import latest_checkpoint, load_checkpoint
    ck = load_checkpoint(latest_checkpoint(run))["model"]
    torch.manual_seed(cfg.seed)
    fresh = task.build_model().state_dict()
    assert any(not torch.equal(ck[k], fresh[k]) for k in fresh if k.startswith("head."))
    assert all(torch.equal(ck[k], before[k[len("backbone."):]]) for k in ck if k.startswith("backbone."))
    row = read_metrics(run)[-1]
    assert {f"{n}_iou" for n in WORLD_CAMERA.names} | {"miou"} <= set(row)
    assert 0.0 <= row["miou"] <= 100.0


def test_lr_grid_picks_the_best_real_runs(tiny_world, items, tmp_path):
    task = _task(tiny_world, items)
    cfg = TrainConfig(epochs=1, batch_size=3, schedule="constant", device="cpu", eval_batch_size=6)
    res = P.probe_lr_grid(task, cfg, tmp_path, "grid", lrs=(1e-1, 1e-5))
    assert [r["lr"] for r in res["runs"]] == [1e-1, 1e-5]
    scores = [read_metrics(r["run_dir"])[-1]["miou"] for r in res["runs"]]
    assert res["best_lr"] == res["runs"][int(np.argmax(scores))]["lr"]
    assert res["best"]["miou"] == max(scores)


def test_lr_grid_selection(monkeypatch, tmp_path):
    scores = {8e-4: 10.0, 3e-4: float("nan"), 8e-5: 30.0}
    monkeypatch.setattr(P, "train", lambda task, cfg, root, name, progress=False: tmp_path / str(cfg.lr))
    monkeypatch.setattr(P, "read_metrics", lambda d: [{"miou": 99.0}, {"miou": scores[float(d.name)]}])
    res = P.probe_lr_grid(None, TrainConfig(), tmp_path, "g")
    assert P.PAPER_LR_GRID == (8e-4, 3e-4, 8e-5)
    assert res["best_lr"] == 8e-5 and res["best"]["miou"] == 30.0   # last epoch counts, NaN never wins
    scores[8e-5] = float("nan")
    assert P.probe_lr_grid(None, TrainConfig(), tmp_path, "g")["best_lr"] == 8e-4
    scores.update({8e-4: math.nan})
    with pytest.raises(ValueError, match="miou"):
        P.probe_lr_grid(None, TrainConfig(), tmp_path, "g")
