"""lukkassen2024 RangeViT task (bevlib.experiments.multivit) on the tiny embedded world."""
import math
import time

import numpy as np
import pytest
import torch

from bevlib.experiments.multivit import (REPORTED_TABLE1_RANGEVIT, dip_events, plot_miou_curve, plot_val_sweep, RangeViTParams, apply_augmentation, collate_sweeps,
                                         draw_augmentation, make_task, prepare, run_rangevit, sliding_window_forward,
                                         table1_rows, write_table1)
from bevlib.experiments.multivit.task import Augmentation, window_starts
from bevlib.params import ParameterError
from bevlib.train import read_metrics

TINY_MODEL = dict(stem_channels=16, stem_base_channels=8, embed_dim=32, depth=1, heads=2, decoder_channels=16,
                  epochs=2, warmup_epochs=1, batch_size=2, crop_w=128, range_hw=(32, 512))


@pytest.fixture(scope="module")
def exp(tiny_world, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    p = RangeViTParams(dataroot=str(tiny_world), progress=False, runs_dir=str(runs), output_dir=str(runs / "out"),
                       **TINY_MODEL)
    return prepare(p)


def test_item_shapes(exp):
    task = make_task(exp)
    torch.manual_seed(0)
    np.random.seed(0)
    it = task.train_dataset()[0]
    n = len(it["labels"])
    assert it["image"].shape == (5, 32, 128) and it["image"].dtype == torch.float32
    assert it["mask"].shape == (32, 128) and it["points"].shape == (n, 3) and n > 0
    assert 0 <= int(it["u"].min()) and int(it["u"].max()) < 128
    assert 0 <= int(it["v"].min()) and int(it["v"].max()) < 32
    assert 0 <= int(it["labels"].min()) and int(it["labels"].max()) <= 16
    # every occupied pixel is some point's own pixel
    assert it["mask"][it["v"], it["u"]].all()
    full = task.val_dataset()[0]
    assert full["image"].shape == (5, 32, 512) and len(full["labels"]) == len(exp.val_sweeps[0]["labels"])
    b = collate_sweeps([it, task.train_dataset()[1]])
    assert b["image"].shape[0] == 2 and b["batch"].shape == b["labels"].shape
    assert torch.equal(b["batch"].bincount(), torch.tensor([n, len(b["labels"]) - n]))
    # the ego-return filter removed only ignore-labelled points, so the metric is unchanged
    assert sum(sw["n_dropped_labelled"] for sw in exp.train_sweeps + exp.val_sweeps) == 0


def test_augmentation_reproducible_and_rotation():
    np.random.seed(3)
    a = draw_augmentation(0.25, 5.0)
    np.random.seed(3)
    assert draw_augmentation(0.25, 5.0) == a
    pts = np.array([[10.0, 0.0, 0.0], [0.0, 0.0, 2.0]], np.float32)
    yaw = apply_augmentation(pts, Augmentation(angles_deg=(0.0, 0.0, 5.0)))
    r = math.radians(5.0)
    np.testing.assert_allclose(yaw[0], [10 * math.cos(r), 10 * math.sin(r), 0.0], atol=1e-5)
    np.testing.assert_allclose(yaw[1], [0.0, 0.0, 2.0], atol=1e-6)
    roll = apply_augmentation(pts, Augmentation(angles_deg=(5.0, 0.0, 0.0)))
    np.testing.assert_allclose(roll[1], [0.0, -2 * math.sin(r), 2 * math.cos(r)], atol=1e-5)
    flip = apply_augmentation(pts, Augmentation(flip=True, translation=(1.0, 2.0, 0.0)))
    np.testing.assert_allclose(flip[0], [11.0, -2.0, 0.0], atol=1e-6)


def test_train_item_reproducible_under_seed(exp):
    ds = make_task(exp).train_dataset()
    out = []
    for _ in range(2):
        torch.manual_seed(7)
        np.random.seed(7)
        out.append(ds[1])
    for k in out[0]:
        assert torch.equal(out[0][k], out[1][k])


def test_sliding_window_full_width_equals_forward(exp):
    task = make_task(exp)
    torch.manual_seed(0)
    model = task.build_model().eval()
    ds = task.train_dataset()
    torch.manual_seed(1)
    np.random.seed(1)
    b = collate_sweeps([ds[0], ds[1]])
    ref = model(b["image"], b["points"], b["u"], b["v"], b["batch"])
    got = sliding_window_forward(model, b["image"], b["points"], b["u"], b["v"], b["batch"], 128, 64)
    torch.testing.assert_close(got["point_logits"], ref["point_logits"])
    torch.testing.assert_close(got["pixel_logits"], ref["pixel_logits"])
    assert window_starts(512, 128, 64) == [0, 64, 128, 192, 256, 320, 384]
    assert window_starts(500, 128, 100) == [0, 100, 200, 300, 372]


def test_two_epoch_run_and_table(exp, tmp_path):
    t0 = time.time()
    run = run_rangevit(exp, name="rangevit_tiny")
    print(f"tiny 2-epoch run: {time.time() - t0:.1f} s")
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert 0.0 <= rows[-1]["miou"] <= 100.0
    assert "car_iou" in rows[-1] and "vegetation_iou" in rows[-1]
    csv_path, md_path = write_table1(run, tmp_path, "tiny world")
    trows = table1_rows(run)
    assert [r["source"] for r in trows] == ["measured", "reported (lukkassen2024 Table 1, nuScenes val)"]
    assert trows[1]["miou"] == REPORTED_TABLE1_RANGEVIT["RangeViT (scratch)"][-1] == 70.5
    md = md_path.read_text()
    assert "70.5" in md and "barrier" in md.splitlines()[2] and "mIoU (%)" in md
    assert plot_miou_curve(run, tmp_path / "miou.png").stat().st_size > 0
    assert plot_val_sweep(exp, make_task(exp), run, tmp_path / "sweep.png").stat().st_size > 0
    assert dip_events(run) == []


def test_params_validation():
    with pytest.raises(ParameterError, match="crop_w"):
        RangeViTParams(crop_w=100)
    with pytest.raises(ParameterError, match="heads"):
        RangeViTParams(embed_dim=96, heads=5)
    assert all(len(v) == 17 for v in REPORTED_TABLE1_RANGEVIT.values())
