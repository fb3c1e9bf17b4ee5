"""Pretrained -> fine-tuned wiring (bevlib.experiments.combined.finetune) on the tiny world: a
one-epoch pre-training run is loaded tensor for tensor into the segmentation model, which fine-tunes
one epoch on the trainer; the scratch baseline differs; the BEVDistill baseline's loss against a
hand computation and its run loading the same way; bad run paths raise."""
import math

import numpy as np
import pytest
import torch
from conftest import TINY

from bevlib.bev import BEVGrid
from bevlib.data.map_masks import MAP_SEG_CLASSES, map_masks
from bevlib.data.nuscenes_data import open_nuscenes
from bevlib.experiments.combined.bevseg import BEVSegConfig, finetune_split
from bevlib.experiments.combined.data import KeyframeItems, collate_keyframes
from bevlib.experiments.combined.finetune import (BEVDistillModel, BEVDistillTask, CombinedSegTask, SegKeyframeItems,
                                                  build_seg_model, collate_seg_keyframes, last_checkpoint)
from bevlib.experiments.combined.pretrain import CombinedConfig, CombinedPretrainTask
from bevlib.train import TrainConfig, checkpoint_at, load_checkpoint, read_metrics, train

# small BEV (3.2 m cells) so a CPU epoch takes seconds; the mask grid has the model's extent
CFG = CombinedConfig(bev_size=32, k=64)
GRID = BEVGrid(-CFG.bev_range, CFG.bev_range, -CFG.bev_range, CFG.bev_range, H=40, W=40)
HEAD = dict(fused_channels=16, n_blocks=1, out_hw=(GRID.H, GRID.W))
TC = dict(epochs=1, batch_size=2, lr=1e-3, device="cpu", schedule="constant", eval_batch_size=2)
BRANCHES = ("swin", "lss", "lidar")


@pytest.fixture(scope="module")
def world(tiny_world):
    nusc = open_nuscenes(tiny_world, TINY.version)
    return nusc, [s["token"] for s in nusc.sample]


@pytest.fixture(scope="module")
def seg_items(world):
    nusc, tokens = world
    train_tok = finetune_split(tokens, 0.2)                       # 2 of 6
    val_tok = [t for t in tokens if t not in train_tok][:2]
    return (SegKeyframeItems(nusc, train_tok, CFG.image_wh, grid=GRID),
            SegKeyframeItems(nusc, val_tok, CFG.image_wh, grid=GRID))


@pytest.fixture(scope="module")
def pretrain_run(world, tmp_path_factory):
    nusc, tokens = world
    task = CombinedPretrainTask(CFG, KeyframeItems(nusc, tokens[:2], CFG.image_wh),
                                KeyframeItems(nusc, tokens[2:3], CFG.image_wh), data_identity={"test": "finetune"})
    return train(task, TrainConfig(**TC), tmp_path_factory.mktemp("runs"), "pretrain", progress=False)


def _branch_state(seg):
    """The segmentation model's backbone tensors under the pre-training model's names."""
    out = {}
    for k, v in seg.state_dict().items():
        for enc in ("camera_encoder.parts.", "lidar_encoder.parts."):
            if k.startswith(enc):
                out[k[len(enc):]] = v
    return out


def test_seg_items_hold_map_masks(world, seg_items):
    nusc, _ = world
    items = seg_items[0]
    it = items[0]
    ref = map_masks(nusc, items.tokens[0], GRID)
    assert it["map_masks"].dtype == torch.bool and it["map_masks"].shape == (len(MAP_SEG_CLASSES), GRID.H, GRID.W)
    np.testing.assert_array_equal(it["map_masks"].numpy(), ref)
    assert ref[0].any()                                            # drivable area around the ego
    assert items[0]["map_masks"] is it["map_masks"]                # held in memory
    b = collate_seg_keyframes([items[0], items[1]])
    assert b["map_masks"].shape == (2, len(MAP_SEG_CLASSES), GRID.H, GRID.W) and b["images"].shape[0] == 2
    assert torch.equal(b["map_masks"][1], items[1]["map_masks"])
    with pytest.raises(ValueError, match="classes"):
        SegKeyframeItems(nusc, items.tokens, CFG.image_wh, classes=())


def test_pretrained_backbone_loads_and_finetunes(pretrain_run, seg_items, tmp_path):
    ck = load_checkpoint(checkpoint_at(pretrain_run, 1))["model"]
    assert last_checkpoint(pretrain_run).name == "epoch_001.pt"
    seg = build_seg_model(CFG, pretrain_run, prompt_mode="none", **HEAD)
    got = _branch_state(seg)
    backbone = {k for k in ck if k.split(".")[0] in BRANCHES}
    assert set(got) == backbone and len(backbone) > 50
    for k in backbone:
        assert torch.equal(got[k], ck[k]), k
    # the projection heads / MAE decoder are loaded into seg.combined but not part of the seg model
    assert torch.equal(seg.combined.cam_proj.weight, ck["cam_proj.weight"])
    assert not any(k.startswith(("cam_proj", "lidar_proj", "decoder")) for k in got)

    torch.manual_seed(0)   # the pre-training run's seed: scratch = its weights before training
    scratch = _branch_state(build_seg_model(CFG, None, prompt_mode="none", **HEAD))
    assert set(scratch) == backbone
    for branch in BRANCHES:
        keys = [k for k in backbone if k.startswith(branch + ".") and ck[k].is_floating_point()]
        changed = sum(not torch.equal(scratch[k], ck[k]) for k in keys)
        assert changed > len(keys) // 2, (branch, changed, len(keys))

    train_ds, val_ds = seg_items
    task = CombinedSegTask(CFG, train_ds, val_ds, pretrain_run, BEVSegConfig(prompt_mode="none"), HEAD)
    assert task.config()["pretrained_run"] == pretrain_run.name
    assert CombinedSegTask(CFG, train_ds, val_ds, None, head=HEAD).config()["pretrained_run"] is None
    run = train(task, TrainConfig(**TC), tmp_path, "bevseg", progress=False)
    last = read_metrics(run)[-1]
    assert last["epoch"] == 1 and math.isfinite(float(last["train_loss"])) and math.isfinite(float(last["miou"]))
    assert 0.0 <= last["miou"] <= 100.0
    # the fine-tuning run started from the pretrained backbone (its step-0 checkpoint) and trained it
    start = load_checkpoint(run / "checkpoints" / "step_0000000.pt")["model"]
    end = load_checkpoint(last_checkpoint(run))["model"]
    for k in backbone:
        enc = "lidar_encoder.parts." if k.startswith("lidar.") else "camera_encoder.parts."
        assert torch.equal(start[enc + k], ck[k]), k
    assert any(not torch.equal(end[k], start[k]) for k in start if k.startswith("camera_encoder.parts.swin."))


def test_bevdistill_loss_trains_camera_only_and_loads(world, pretrain_run, tmp_path):
    nusc, tokens = world
    task = BEVDistillTask(CFG, KeyframeItems(nusc, tokens[:2], CFG.image_wh),
                          KeyframeItems(nusc, tokens[2:3], CFG.image_wh), data_identity={"test": "finetune"})
    torch.manual_seed(0)
    init = task.build_model().eval()
    batch = collate_keyframes([task.train_data[0], task.train_data[1]])
    with torch.no_grad():
        loss = task.loss(init, batch)["bevdistill"]
        # by hand: the adapter as a matrix product, 2 - 2 cos per occupied cell, mean over them
        cam = init.camera_bev(batch["images"], batch["K"], batch["ego_T_cam"])
        lid = init.lidar(batch["points"]).double()
        w, bias = init.distill_adapter.proj.weight[:, :, 0, 0].double(), init.distill_adapter.proj.bias.double()
        student = torch.einsum("oc,bchw->bohw", w, cam.double()) + bias[None, :, None, None]
        occ = init.occupancy(batch["points"])
        cos = (student * lid).sum(1) / student.norm(dim=1) / lid.norm(dim=1)
        ref = (2 - 2 * cos)[occ].mean()
    assert occ.sum() > 20 and loss.item() == pytest.approx(ref.item(), rel=1e-4)
    all_cells = BEVDistillTask(CFG, None, occupied_only=False).loss(init, batch)["bevdistill"]
    assert all_cells.item() != pytest.approx(loss.item(), rel=1e-3)

    run = train(task, TrainConfig(**TC), tmp_path, "bevdistill", progress=False)
    last = read_metrics(run)[-1]
    assert math.isfinite(float(last["train_loss"])) and math.isfinite(float(last["val_bevdistill"]))
    ck = load_checkpoint(last_checkpoint(run))["model"]
    assert any(k.startswith("distill_adapter.") for k in ck)
    init_state = init.state_dict()
    # the LiDAR teacher is detached: it keeps its init; the camera branch learns
    assert all(torch.equal(ck[k], init_state[k]) for k in ck if k.startswith("lidar."))
    assert any(not torch.equal(ck[k], init_state[k]) for k in ck if k.startswith("swin."))
    got = _branch_state(build_seg_model(CFG, run, prompt_mode="none", **HEAD))
    assert got and all(torch.equal(v, ck[k]) for k, v in got.items())
    assert isinstance(init, BEVDistillModel)


def test_bad_runs_raise(pretrain_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_run"):
        build_seg_model(CFG, tmp_path / "no_such_run", **HEAD)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="empty_run.*no epoch checkpoint"):
        build_seg_model(CFG, tmp_path / "empty_run", **HEAD)
    with pytest.raises(ValueError, match="does not fit"):
        build_seg_model(CombinedConfig(bev_size=32, k=64, lss_channels=8), pretrain_run, **HEAD)


def test_build_seg_model_resamples_onto_the_mask_grid():
    from bevlib.data.map_masks import BEVSEG_GRID
    from bevlib.experiments.combined.finetune import build_seg_model
    from bevlib.experiments.combined.pretrain import CombinedConfig

    cfg = CombinedConfig()
    half = BEVSEG_GRID.x_max
    assert build_seg_model(cfg, target_range=half, fused_channels=8, n_blocks=0).head.crop == half / cfg.bev_range
    assert build_seg_model(cfg, fused_channels=8, n_blocks=0).head.crop == 1.0
    with pytest.raises(ValueError, match="target_range"):
        build_seg_model(cfg, target_range=2 * cfg.bev_range)


def test_only_the_backbones_load_when_asked(pretrain_run):
    """Appendix D: only Swin and the LiDAR backbone come from the run; LSS keeps the fresh init of the seed."""
    ck = load_checkpoint(last_checkpoint(pretrain_run))["model"]
    torch.manual_seed(3)
    fresh = _branch_state(build_seg_model(CFG, None, prompt_mode="none", **HEAD))
    torch.manual_seed(3)
    got = _branch_state(build_seg_model(CFG, pretrain_run, prompt_mode="none", pretrained_parts=("swin", "lidar"),
                                        **HEAD))
    for k, v in got.items():
        ref = ck[k] if k.split(".", 1)[0] in ("swin", "lidar") else fresh[k]
        assert torch.equal(v, ref), k
    assert any(not torch.equal(ck[k], fresh[k]) for k in got if k.startswith("lss."))   # LSS was trained
    with pytest.raises(ValueError, match="pretrained_parts"):
        build_seg_model(CFG, pretrain_run, pretrained_parts=("swim",), **HEAD)
