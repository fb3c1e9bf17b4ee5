"""chen2024 CSC Table 2 protocol (bevlib.experiments.csc.lidarseg) on the tiny embedded world."""
import copy
import math
import random

import numpy as np
import pytest
import torch

from bevlib.classes import NUSCENES_LIDARSEG_16
from bevlib.experiments.csc.lidarseg import (FINETUNE_PERCENTS, LidarSegItems, LidarSegTask, SegModel, collate_points,
                                             label_subset, table2_tasks)
from bevlib.models.minkunet import MinkUNet, tiny_config

THIN = 12   # keep every 12th point in training tests: the trainer's epoch stays a few seconds on a busy CPU


@pytest.fixture(scope="module")
def world(tiny_world):
    from bevlib.data.nuscenes_data import open_nuscenes, scene_sample_tokens, split_scenes
    nusc = open_nuscenes(tiny_world, "v1.0-mini")
    sp = split_scenes(nusc)
    return nusc, scene_sample_tokens(nusc, sp["train"]), scene_sample_tokens(nusc, sp["val"])


class ThinItems(LidarSegItems):
    """Every THIN-th point of each sweep (training-speed only; the metric test uses full sweeps)."""

    def _read(self, tok):
        it = super()._read(tok)
        return dict(it, points=it["points"][::THIN].contiguous(), labels=it["labels"][::THIN].contiguous())


# -- label_subset ------------------------------------------------------------------------------

def test_label_subset_nested_deterministic_and_at_least_one():
    toks = [f"tok{i:04d}" for i in range(523)]
    subs = {p: label_subset(toks, p) for p in FINETUNE_PERCENTS}
    for small, big in zip(FINETUNE_PERCENTS, FINETUNE_PERCENTS[1:]):
        assert set(subs[small]) < set(subs[big])
    for p, s in subs.items():
        assert len(s) == math.ceil(p / 100 * len(toks))
        assert s == [t for t in toks if t in set(s)]            # input order kept
    assert subs[100] == toks
    assert label_subset(toks, 5) == subs[5]                      # deterministic
    assert label_subset(toks, 5, seed=1) != subs[5]
    shuffled = toks[:]
    random.Random(0).shuffle(shuffled)
    assert set(label_subset(shuffled, 10)) == set(subs[10])      # does not depend on the input order
    assert len(label_subset(toks[:7], 1)) == 1                   # at least one sweep
    for bad in (0, -1, 101):
        with pytest.raises(ValueError, match="percent"):
            label_subset(toks, bad)
    with pytest.raises(ValueError, match="tokens"):
        label_subset([], 10)


# -- items ---------------------------------------------------------------------------------------

def test_items_match_loader_and_are_cached(world):
    from bevlib.data.lidar import load_lidar_sweep, map_lidarseg
    nusc, train, _ = world
    ds = LidarSegItems(nusc, train)
    assert len(ds) == len(train)
    it = ds[1]
    sw = load_lidar_sweep(nusc, train[1])
    P = len(sw.points_ego)
    assert it["points"].shape == (P, 4) and it["points"].dtype == torch.float32
    assert it["labels"].shape == (P,) and it["labels"].dtype == torch.int64
    np.testing.assert_allclose(it["points"][:, :3].numpy(), sw.points_ego, atol=1e-5)
    np.testing.assert_allclose(it["points"][:, 3].numpy(), sw.intensity / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(it["labels"].numpy(), map_lidarseg(nusc, sw.lidarseg))
    assert int(it["labels"].max()) <= 16 and (it["labels"] > 0).any()
    assert ds[1]["points"] is it["points"]                       # held in memory, not re-read
    sub = ds.subset(train[1:2])
    assert sub[0]["points"] is it["points"]                      # subsets share the cache
    b = collate_points([ds[0], ds[1]])
    assert len(b["points"]) == 2 and b["labels"].shape == (len(ds[0]["labels"]) + P,)


# -- metric ----------------------------------------------------------------------------------

def test_task_miou_equals_devkit_confusion_matrix(world):
    from nuscenes.eval.lidarseg.utils import ConfusionMatrix as DevkitCM
    nusc, train, val = world
    cfg = tiny_config()
    val_items = LidarSegItems(nusc, val)
    task = LidarSegTask(cfg, LidarSegItems(nusc, train), val_items)
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad():
        # a wide random head so the predictions spread over many classes (a real test of the per-class IoU)
        model.classifier.weight.normal_(0.0, 3.0)
        # ignore (0) scores highest everywhere: a metric that let the model predict it would differ
        model.classifier.bias[0] = 1e3
    batches = [collate_points([val_items[i] for i in idx]) for idx in ([0, 1], [2])]
    metrics = task.evaluate(model, batches, lambda x: x)

    dev = DevkitCM(NUSCENES_LIDARSEG_16.num_classes, NUSCENES_LIDARSEG_16.ignore_index)
    n_labelled = 0
    with torch.no_grad():
        for b in batches:
            logits = model(b["points"]).clone()
            logits[:, 0] = -float("inf")                        # the devkit accepts classes 1..16 only
            pred = logits.argmax(1).numpy()
            dev.update(b["labels"].numpy(), pred)
            n_labelled += int((b["labels"] > 0).sum())
    assert (dev.global_cm.sum(0)[1:] > 0).sum() >= 3              # predictions spread over classes
    assert dev.global_cm.sum() == n_labelled                    # every labelled val point scored once
    ref_iou = dev.get_per_class_iou()
    for c in range(1, 17):
        got = metrics[f"{NUSCENES_LIDARSEG_16.names[c]}_iou"]
        if np.isnan(ref_iou[c]):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(100 * ref_iou[c], rel=1e-5, abs=1e-6)
    assert np.isfinite(metrics["miou"])
    assert metrics["miou"] == pytest.approx(100 * dev.get_mean_iou(), rel=1e-5)
    assert set(metrics) == {f"{NUSCENES_LIDARSEG_16.names[c]}_iou" for c in range(1, 17)} | {"miou"}


# -- training: linear probing vs fine-tuning ---------------------------------------------------

class RecordingTask(LidarSegTask):
    """Keeps a copy of the freshly built model's weights, to compare with the trained ones."""

    def build_model(self):
        model = super().build_model()
        self.initial = copy.deepcopy(model.state_dict())
        return model


def _train_one_epoch(world, tmp_path, freeze: bool):
    from bevlib.train import TrainConfig, checkpoint_at, load_checkpoint, read_metrics, train
    nusc, train_toks, val_toks = world
    cfg = tiny_config()
    pre = MinkUNet(cfg).state_dict()                             # a stand-in pre-training checkpoint
    task = RecordingTask(cfg, ThinItems(nusc, train_toks[:2]), ThinItems(nusc, val_toks[:1]), freeze_backbone=freeze,
                         backbone_state={"model": {f"backbone.{k}": v for k, v in pre.items()}},
                         backbone_id="test-pretrain")
    tc = TrainConfig(epochs=1, batch_size=2, lr=1e-2, device="cpu", schedule="constant", eval_batch_size=1)
    run = train(task, tc, tmp_path, "lp" if freeze else "ft", progress=False)
    final = load_checkpoint(checkpoint_at(run, 1))["model"]
    rows = read_metrics(run)
    assert "miou" in rows[-1]
    for k, v in pre.items():                                     # the run started from the pre-trained weights
        assert torch.equal(task.initial[f"backbone.{k}"], v)
    return task.initial, final


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix) and before[k].is_floating_point()]
    return {k: not torch.equal(before[k], after[k]) for k in keys}


def test_linear_probing_trains_only_the_head(world, tmp_path):
    before, after = _train_one_epoch(world, tmp_path, freeze=True)
    bb = [k for k in before if k.startswith("backbone.")]
    for k in bb:                                                 # weights and BN running statistics
        assert torch.equal(before[k], after[k]), k
    assert all(_changed(before, after, "classifier.").values())


def test_finetuning_changes_the_backbone(world, tmp_path):
    before, after = _train_one_epoch(world, tmp_path, freeze=False)
    ch = _changed(before, after, "backbone.")
    assert ch["backbone.stem.0.weight"] and ch["backbone.final.weight"]
    assert sum(ch.values()) > 0.9 * len(ch)
    assert all(_changed(before, after, "classifier.").values())


def test_frozen_backbone_stays_in_eval_mode_and_out_of_the_optimiser():
    m = SegModel(tiny_config(), freeze_backbone=True).train()
    assert m.training and m.classifier.training
    assert not any(mod.training for mod in m.backbone.modules())
    ids = {id(p) for p in m.trainable_parameters()}
    assert ids == {id(p) for p in m.classifier.parameters()}
    assert len(SegModel(tiny_config()).trainable_parameters()) == len(list(SegModel(tiny_config()).parameters()))


# -- load_backbone -------------------------------------------------------------------------------

def test_load_backbone_round_trip_and_missing_key():
    cfg = tiny_config()
    torch.manual_seed(1)
    src = MinkUNet(cfg).state_dict()
    for wrap, prefix in ((lambda sd: sd, ""), (lambda sd: {f"backbone.{k}": v for k, v in sd.items()}, "backbone."),
                         (lambda sd: {"model": {**{f"module.net.{k}": v for k, v in sd.items()},
                                                "module.head.weight": torch.zeros(3)}}, "module.net.")):
        torch.manual_seed(2)
        m = SegModel(cfg)
        assert m.load_backbone(wrap(src)) == prefix
        got = m.backbone.state_dict()
        assert got.keys() == src.keys()
        assert all(torch.equal(got[k], src[k]) for k in src)

    missing = dict(src)
    del missing["enc.2.0.conv1.weight"]
    with pytest.raises(ValueError, match=r"enc\.2\.0\.conv1\.weight"):
        SegModel(cfg).load_backbone({f"backbone.{k}": v for k, v in missing.items()})
    with pytest.raises(ValueError, match="missing"):
        SegModel(cfg).load_backbone({"head.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="shapes"):
        SegModel(cfg).load_backbone(MinkUNet(tiny_config(width=0.5)).state_dict())
    with pytest.raises(ValueError, match="backbone_id"):
        LidarSegTask(cfg, None, None, backbone_state=src)


def test_table2_tasks_protocol(world):
    nusc, train, val = world
    tasks = table2_tasks(nusc, train, val, tiny_config())
    assert list(tasks) == ["lp", "ft1", "ft5", "ft10", "ft25", "ft100"]
    assert tasks["lp"].freeze_backbone and len(tasks["lp"].train_items) == len(train)
    assert not any(t.freeze_backbone for n, t in tasks.items() if n != "lp")
    assert len(tasks["ft1"].train_items) == 1 and tasks["ft100"].train_items.tokens == train
    hashes = {t.config()["train_tokens_hash"] for t in tasks.values()}
    assert len(hashes) >= 2
