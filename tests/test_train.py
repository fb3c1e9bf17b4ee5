"""The trainer: metrics log, checkpoints, reuse, resume after SIGKILL, corrupt checkpoints,
loss-spike rollback."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fakes import GRID, MODEL, TRAIN, VAL, FakeStore, factory
from bevlib.train import (CheckpointError, TrainConfig, checkpoint_at, latest_checkpoint, load_checkpoint,
                          read_metrics, train)

HERE = Path(__file__).resolve().parent


def run(tmp, cfg, store=None, name="run", tokens=TRAIN):
    return train(factory, MODEL, cfg, store or FakeStore(), tokens, VAL, tmp, name, GRID, progress=False)


@pytest.mark.parametrize("mode,temporal", [("supervised", False), ("pretrain", True)])
def test_train_writes_metrics_checkpoints_and_reuses(tmp_path, mode, temporal):
    cfg = TrainConfig(mode=mode, temporal=temporal, epochs=2, batch_size=3, lr=1e-3)
    d = run(tmp_path, cfg)
    rows = read_metrics(d)
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [2, 4]
    assert all(np.isfinite(r["train_loss"]) for r in rows) and "miou60" in rows[0]
    if temporal:
        assert rows[0]["loss_prev"] > 0
    ck = load_checkpoint(checkpoint_at(d, 2))
    assert ck["epoch"] == 2 and ck["step"] == 4 and ck["batch"] == 0
    assert (d / "done.json").exists()
    mtime = (d / "metrics.csv").stat().st_mtime_ns
    assert run(tmp_path, cfg) == d
    assert (d / "metrics.csv").stat().st_mtime_ns == mtime   # reused, not retrained


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    worker = [sys.executable, str(HERE / "train_worker.py")]
    ref = subprocess.run(worker + [str(tmp_path / "ref"), "pretrain"], env=env, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref_dir = next((tmp_path / "ref").iterdir())
    # start again in a fresh directory and kill it mid-epoch, right after a mid-epoch checkpoint
    p = subprocess.Popen(worker + [str(tmp_path / "killed"), "pretrain"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    ckdir = None
    while time.time() < deadline:
        dirs = list((tmp_path / "killed").glob("run-*/checkpoints"))
        if dirs and any(int(c.stem.split("_")[1]) == 4 for c in dirs[0].glob("step_*.pt")):
            ckdir = dirs[0]
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert ckdir is not None, "the worker never wrote the step-4 checkpoint"
    killed_dir = ckdir.parent
    assert not (killed_dir / "done.json").exists()
    assert latest_checkpoint(killed_dir) is not None
    res = subprocess.run(worker + [str(tmp_path / "killed"), "pretrain"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert killed_dir.name == ref_dir.name
    assert (killed_dir / "metrics.csv").read_bytes() == (ref_dir / "metrics.csv").read_bytes()


def test_corrupt_latest_checkpoint_falls_back_with_warning(tmp_path):
    cfg = TrainConfig(mode="supervised", epochs=2, batch_size=2, lr=1e-3, checkpoint_every_steps=1)
    d = run(tmp_path / "a", cfg)
    ref = (d / "metrics.csv").read_bytes()
    # pretend the run died: keep checkpoints up to step 4, truncate the newest one
    (d / "done.json").unlink()
    for c in (d / "checkpoints").glob("step_*.pt"):
        if int(c.stem.split("_")[1]) > 4:
            c.unlink()
    (d / "checkpoints" / "epoch_002.pt").unlink()
    newest = latest_checkpoint(d)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(newest)
    with pytest.warns(RuntimeWarning, match="falling back"):
        run(tmp_path / "a", cfg)
    assert (d / "metrics.csv").read_bytes() == ref


def test_flipped_bytes_fail_the_checksum(tmp_path):
    d = run(tmp_path, TrainConfig(mode="supervised", epochs=1, batch_size=3))
    path = checkpoint_at(d, 1)
    ck = torch.load(path, weights_only=True)
    k = next(iter(ck["model"]))
    ck["model"][k] = ck["model"][k] + 1.0      # silently altered weights, valid file
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    cfg = TrainConfig(mode="supervised", epochs=1, batch_size=3)
    d = run(tmp_path, cfg)
    (d / "done.json").unlink()
    ck = torch.load(latest_checkpoint(d), weights_only=True)
    ck["config_hash"] = "0123456789ab"
    from bevlib.train import save_checkpoint
    save_checkpoint(latest_checkpoint(d), ck)
    with pytest.raises(CheckpointError, match="belongs to config '0123456789ab'"):
        run(tmp_path, cfg)


def test_poisoned_batch_rolls_back_and_recovers(tmp_path):
    cfg = TrainConfig(mode="supervised", epochs=3, batch_size=2, lr=1e-3)
    clean = read_metrics(run(tmp_path / "clean", cfg))
    # s1k2 ends its scene: no other keyframe reads it as history, so it poisons one batch an epoch
    # (a poisoned history keyframe would poison its successor's batch too)
    d = run(tmp_path / "poisoned", cfg, store=FakeStore(poison={"s1k2"}))
    rows = read_metrics(d)
    events = (d / "events.jsonl").read_text().splitlines()
    assert len(events) == 3                        # one poisoned batch per epoch, each rolled back
    assert all("non-finite" in r["events"] for r in rows)
    assert all(np.isfinite(r["train_loss"]) for r in rows)
    # recovered: within 10 % of the unpoisoned run's final training loss (it lost 1 of 3 batches
    # an epoch) and within 10 pp of its validation mIoU60
    assert abs(rows[-1]["train_loss"] - clean[-1]["train_loss"]) < 0.1 * clean[-1]["train_loss"]
    assert abs(rows[-1]["miou60"] - clean[-1]["miou60"]) < 10.0
    # without the guard the same data destroys the run
    from bevlib.train import TrainingDiverged
    with pytest.raises(TrainingDiverged):
        run(tmp_path / "noguard", TrainConfig(mode="supervised", epochs=3, batch_size=2, max_rollbacks=0),
            store=FakeStore(poison={"s1k2"}))


def test_two_phase_starts_from_checkpoint(tmp_path):
    pre = run(tmp_path, TrainConfig(mode="pretrain", epochs=1, batch_size=3), name="pre")
    ft = run(tmp_path, TrainConfig(mode="supervised", epochs=1, batch_size=3, init_from=str(checkpoint_at(pre, 1)),
                                   step_offset=2), name="ft", tokens=TRAIN[:3])
    rows = read_metrics(ft)
    assert rows[0]["epoch"] == 0 and rows[0]["total_step"] == 2      # the pretrained model, evaluated
    assert rows[1]["total_step"] == 3
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        run(tmp_path, TrainConfig(mode="supervised", epochs=1, init_from=str(tmp_path / "nope.pt")), name="ft2")
