"""The shared trainer on a generic task (EMA teacher + feature queue as task state): metrics log,
checkpoints, reuse, resume after SIGKILL, corrupt checkpoints, loss-spike rollback, optimisers and
schedules, gradient accumulation, DataLoader workers, devices."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fakes import ToyTask
from bevlib.train import (CheckpointError, TrainConfig, TrainingDiverged, build_optimizer, build_scheduler,
                          checkpoint_at, latest_checkpoint, load_checkpoint, read_metrics, save_checkpoint,
                          split_batch, step_checkpoints, to_device, train, warmup_cosine_factor, weight_decay_at)

HERE = Path(__file__).resolve().parent


def cfg_(**kw):
    base = dict(epochs=3, batch_size=4, lr=3e-2, eval_batch_size=4)
    base.update(kw)
    return TrainConfig(**base)


def run(tmp, cfg, task=None, name="run"):
    return train(task or ToyTask(), cfg, tmp, name, progress=False)


def test_train_writes_metrics_checkpoints_and_reuses(tmp_path):
    d = run(tmp_path, cfg_())
    rows = read_metrics(d)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and [r["step"] for r in rows] == [6, 12, 18]
    assert all(np.isfinite(r["train_loss"]) for r in rows)
    # every loss term is logged, and the loss is their sum
    for r in rows:
        assert r["train_loss"] == pytest.approx(r["ce"] + r["distill"] + r["queue"], rel=1e-6)
    assert rows[-1]["accuracy"] > 60 and rows[-1]["n_eval"] == 9
    ck = load_checkpoint(checkpoint_at(d, 3))
    assert ck["epoch"] == 3 and ck["step"] == 18 and ck["batch"] == 0
    assert set(ck["task"]) == {"teacher", "queue", "queue_ptr"}        # the task's state is in it
    assert (d / "done.json").exists()
    mtime = (d / "metrics.csv").stat().st_mtime_ns
    assert run(tmp_path, cfg_()) == d
    assert (d / "metrics.csv").stat().st_mtime_ns == mtime   # reused, not retrained


def test_task_state_changes_the_result(tmp_path):
    """The queue and teacher take part in the loss, so a resume that lost them would differ."""
    a = read_metrics(run(tmp_path / "a", cfg_(), ToyTask(momentum=0.9)))
    b = read_metrics(run(tmp_path / "b", cfg_(), ToyTask(momentum=0.5)))
    assert a[-1]["train_loss"] != b[-1]["train_loss"]


@pytest.mark.slow
@pytest.mark.parametrize("kind,kill_at", [("toy-slow", 8), ("busch", 4)])
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, kind, kill_at):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    worker = [sys.executable, str(HERE / "train_worker.py")]
    ref = subprocess.run(worker + [str(tmp_path / "ref"), kind], env=env, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref_dir = next((tmp_path / "ref").iterdir())
    # start again in a fresh directory and kill it mid-epoch, right after a mid-epoch checkpoint
    p = subprocess.Popen(worker + [str(tmp_path / "killed"), kind], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    ckdir = None
    while time.time() < deadline:
        dirs = list((tmp_path / "killed").glob("run-*/checkpoints"))
        if dirs and any(int(c.stem.split("_")[1]) == kill_at for c in dirs[0].glob("step_*.pt")):
            ckdir = dirs[0]
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert ckdir is not None, f"the worker never wrote the step-{kill_at} checkpoint"
    killed_dir = ckdir.parent
    assert not (killed_dir / "done.json").exists()
    assert latest_checkpoint(killed_dir) is not None
    res = subprocess.run(worker + [str(tmp_path / "killed"), kind], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert killed_dir.name == ref_dir.name
    assert (killed_dir / "metrics.csv").read_bytes() == (ref_dir / "metrics.csv").read_bytes()
    a, b = load_checkpoint(latest_checkpoint(killed_dir)), load_checkpoint(latest_checkpoint(ref_dir))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])
    if kind != "busch":
        assert torch.equal(a["task"]["queue"], b["task"]["queue"])
        for k in a["task"]["teacher"]:
            assert torch.equal(a["task"]["teacher"][k], b["task"]["teacher"][k])


def test_corrupt_latest_checkpoint_falls_back_with_warning(tmp_path):
    cfg = cfg_(epochs=2, checkpoint_every_steps=1, keep_checkpoints=0)
    d = run(tmp_path / "a", cfg)
    ref = (d / "metrics.csv").read_bytes()
    # pretend the run died: keep checkpoints up to step 8, truncate the newest one
    (d / "done.json").unlink()
    for c in (d / "checkpoints").glob("step_*.pt"):
        if int(c.stem.split("_")[1]) > 8:
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
    d = run(tmp_path, cfg_(epochs=1))
    path = checkpoint_at(d, 1)
    ck = torch.load(path, weights_only=True)
    k = next(iter(ck["model"]))
    ck["model"][k] = ck["model"][k] + 1.0      # silently altered weights, valid file
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    d = run(tmp_path, cfg_(epochs=1))
    (d / "done.json").unlink()
    ck = torch.load(latest_checkpoint(d), weights_only=True)
    ck["config_hash"] = "0123456789ab"
    save_checkpoint(latest_checkpoint(d), ck)
    with pytest.raises(CheckpointError, match="belongs to config '0123456789ab'"):
        run(tmp_path, cfg_(epochs=1))


def test_poisoned_batch_rolls_back_and_recovers(tmp_path):
    cfg = cfg_()
    clean = read_metrics(run(tmp_path / "clean", cfg))
    d = run(tmp_path / "poisoned", cfg, ToyTask(poison={5}))
    rows = read_metrics(d)
    events = (d / "events.jsonl").read_text().splitlines()
    assert len(events) == 3                        # one poisoned batch per epoch, each rolled back
    assert all("non-finite" in r["events"] for r in rows)
    assert all(np.isfinite(r["train_loss"]) for r in rows)
    assert abs(rows[-1]["accuracy"] - clean[-1]["accuracy"]) <= 25
    with pytest.raises(TrainingDiverged):
        run(tmp_path / "noguard", cfg_(max_rollbacks=0), ToyTask(poison={5}))


def test_keep_checkpoints(tmp_path):
    d = run(tmp_path / "all", cfg_(epochs=1, checkpoint_every_steps=1, keep_checkpoints=0))
    assert len(step_checkpoints(d)) == 7          # steps 0..6, none deleted
    d = run(tmp_path / "two", cfg_(epochs=1, checkpoint_every_steps=1, keep_checkpoints=2))
    assert [int(p.stem.split("_")[1]) for p in step_checkpoints(d)] == [5, 6]


def test_gradient_accumulation_equals_the_full_batch(tmp_path):
    """accum_steps=2 of half batches takes the same optimiser steps as the full batch (up to float
    summation order): the sample-weighted micro-batch losses sum to the batch loss. (Without the
    queue term, which by design sees the queue after the first micro-batch.)"""
    a = read_metrics(run(tmp_path / "full", cfg_(epochs=2), ToyTask(queue_weight=0.0)))
    b = read_metrics(run(tmp_path / "accum", cfg_(epochs=2, accum_steps=2), ToyTask(queue_weight=0.0)))
    for ra, rb in zip(a, b):
        assert ra["step"] == rb["step"]
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
        assert rb["accuracy"] == ra["accuracy"]


def test_dataloader_workers_do_not_change_the_run(tmp_path):
    a = (run(tmp_path / "w0", cfg_(epochs=1)) / "metrics.csv").read_text().splitlines()
    b = (run(tmp_path / "w2", cfg_(epochs=1, num_workers=2)) / "metrics.csv").read_text().splitlines()
    assert a == b


def test_split_batch_over_processes_and_micro_batches():
    batch = [7, 3, 9, 1, 4]
    parts = [split_batch(batch, r, 2, 2) for r in range(2)]
    flat = [i for p in parts for idx, w in p if w > 0 for i in idx]
    assert sorted(flat) == sorted(batch)
    assert sum(w for p in parts for _, w in p) == pytest.approx(1.0)
    # a share of zero samples still yields a (zero-weight) micro-batch, so every process steps
    short = [split_batch([5], r, 2, 1) for r in range(2)]
    assert short[0] == [([5], 1.0)] and short[1] == [([5], 0.0)]


def test_optimizers_and_schedules():
    model = torch.nn.Linear(2, 2)
    groups = [{"params": [model.weight], "lr_mult": 0.1}, {"params": [model.bias]}]
    opt = build_optimizer(groups, TrainConfig(lr=1.0, optimizer="sgd", momentum=0.5))
    assert isinstance(opt, torch.optim.SGD) and [g["lr"] for g in opt.param_groups] == [0.1, 1.0]
    cfg = TrainConfig(lr=1.0, schedule="warmup_cosine", warmup_steps=10, warmup_ratio=0.25, min_lr_ratio=1e-3)
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    sched = build_scheduler(opt, cfg, 110)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.25) and lrs[5] == pytest.approx(0.25 + 0.75 * 0.5)
    assert lrs[10] == pytest.approx(1.0)
    # closed form of the cosine part: halfway through the decay the lr is the mean of 1 and min
    assert lrs[60] == pytest.approx(1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine_factor(110, 110, 10, 0.25, 1e-3) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="accum_steps"):
        TrainConfig(batch_size=3, accum_steps=2)


def test_sgd_and_constant_schedule_train(tmp_path):
    rows = read_metrics(run(tmp_path, cfg_(optimizer="sgd", schedule="constant", lr=0.1)))
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_devices_and_mixed_precision(tmp_path):
    batch = to_device({"a": torch.ones(2), "b": [torch.zeros(1)], "c": "keep"}, torch.device("cpu"))
    assert batch["c"] == "keep" and batch["b"][0].device.type == "cpu"
    rows = read_metrics(run(tmp_path / "bf16", cfg_(epochs=1, amp="bf16", device="cpu")))
    assert np.isfinite(rows[-1]["train_loss"])
    with pytest.raises(ValueError, match="fp16"):
        run(tmp_path / "fp16", cfg_(epochs=1, amp="fp16", device="cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            run(tmp_path / "cuda", cfg_(epochs=1, device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_device_trains_on_cuda(tmp_path):
    d = run(tmp_path, cfg_(epochs=1, device="auto", amp="bf16"))
    assert np.isfinite(read_metrics(d)[-1]["train_loss"])


def test_training_dip_rolls_back_and_changes_the_data_order(tmp_path):
    """A fault that throws the weights off after step 8 makes the loss climb over several steps
    (no single bad batch, so the spike guard -- here NaN-only -- sees nothing): undetected it ruins
    the run; the dip guard rolls back to the checkpoint before the dip, continues with a new data
    order, and the run ends within 10 % of the undisturbed run's training loss and at its accuracy."""
    base = dict(epochs=4, checkpoint_every_steps=1, keep_checkpoints=0, spike_factor=0)
    clean = read_metrics(run(tmp_path / "clean", cfg_(**base)))
    ruined = read_metrics(run(tmp_path / "ruined", cfg_(**base), ToyTask(corrupt_at=8)))
    assert ruined[-1]["accuracy"] < clean[-1]["accuracy"] - 30           # the fault is real
    d = run(tmp_path / "guarded", cfg_(**base, dip_window=3, dip_factor=1.5), ToyTask(corrupt_at=8))
    rows = read_metrics(d)
    events = [json.loads(x) for x in (d / "events.jsonl").read_text().splitlines()]
    assert len(events) == 1 and "training dip" in events[0]["reason"]
    assert events[0]["rolled_back_to_step"] <= 8 < events[0]["step"] and events[0]["data_order"] == 1
    assert "new data order" in rows[1]["events"]
    assert abs(rows[-1]["train_loss"] - clean[-1]["train_loss"]) < 0.1 * clean[-1]["train_loss"]
    assert rows[-1]["accuracy"] == clean[-1]["accuracy"]
    assert load_checkpoint(latest_checkpoint(d))["reshuffle"] == 1      # a resume keeps the new order
    with pytest.raises(ValueError, match="dip_factor"):
        TrainConfig(dip_window=3, dip_factor=1.0)


# ------------------------------------------------------------------------------------------------
# Weight-decay schedule (DINO / wozniak2025 Table 5: cosine 0.04 -> 0.4)
# ------------------------------------------------------------------------------------------------

class TwoGroupToyTask(ToyTask):
    """DINO's groups: weights decayed, biases not."""

    def param_groups(self, model):
        w = [p for n, p in model.named_parameters() if n.endswith("weight")]
        b = [p for n, p in model.named_parameters() if n.endswith("bias")]
        return [{"params": w}, {"params": b, "weight_decay": 0.0}]


class Crash(Exception):
    pass


def _record_wd(monkeypatch, crash_after=None):
    """Record the weight decay of every group at each AdamW step (optionally crash at a given step)."""
    seen = []
    monkeypatch.undo()                                                  # wrap the real step, not a recorder
    orig = torch.optim.AdamW.step

    def step(self, *a, **k):
        if crash_after is not None and len(seen) == crash_after:
            raise Crash("simulated crash")
        seen.append([g["weight_decay"] for g in self.param_groups])
        return orig(self, *a, **k)
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    return seen


def test_weight_decay_at_closed_form():
    from bevlib.ssl import cosine_schedule

    n = 10
    assert weight_decay_at(0, n, 0.04, 0.4) == pytest.approx(0.04)
    assert weight_decay_at(5, n, 0.04, 0.4) == pytest.approx(0.22)                       # cos(pi / 2) = 0
    assert weight_decay_at(9, n, 0.04, 0.4) == pytest.approx(0.4 - 0.18 * (1 - math.cos(math.pi / 10)))
    assert weight_decay_at(50, n, 0.04, 0.4) == weight_decay_at(9, n, 0.04, 0.4)
    # DINO's cosine_scheduler (second implementation, bevlib.ssl)
    np.testing.assert_allclose([weight_decay_at(i, 37, 0.04, 0.4) for i in range(37)],
                               cosine_schedule(0.04, 0.4, 37), rtol=1e-12)
    with pytest.raises(ValueError, match="total"):
        weight_decay_at(0, 0, 0.04, 0.4)
    for bad in (-0.1, float("nan"), "0.4"):
        with pytest.raises(ValueError, match="weight_decay_end"):
            TrainConfig(weight_decay_end=bad)


def test_weight_decay_end_none_keeps_the_run_hash(tmp_path):
    """Literal hashes computed before the field existed: runs that leave it None keep their names."""
    from bevlib.io import config_hash

    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-3, weight_decay=0.04, schedule="warmup_cosine", warmup_steps=2)
    assert config_hash({"name": "x", "task": {"a": 1}, "train": cfg.hash_dict()}) == "c04a5127d59f"
    assert "weight_decay_end" not in cfg.hash_dict()
    d = run(tmp_path, cfg_(epochs=1))
    assert d.name == "run-a869a54e2fcb"                                 # as named before the field existed
    assert run(tmp_path, cfg_(epochs=1, weight_decay_end=0.4)) != d                   # set: another run
    assert "weight_decay_end" not in json.loads((d / "config.json").read_text())["train"]


def test_weight_decay_schedule_in_training(tmp_path, monkeypatch):
    cfg = cfg_(epochs=2, weight_decay=0.04, weight_decay_end=0.4, checkpoint_every_steps=1, keep_checkpoints=0)
    seen = _record_wd(monkeypatch)
    ref = run(tmp_path / "ref", cfg, TwoGroupToyTask())
    n = len(seen)
    assert n == 12                                                      # 24 items / 4 per batch x 2 epochs
    wd = np.array(seen)
    assert wd[0, 0] == pytest.approx(0.04) and wd[6, 0] == pytest.approx(0.22)
    assert wd[-1, 0] == pytest.approx(0.4 - 0.18 * (1 - math.cos(math.pi / 12)))
    assert np.all(np.diff(wd[:, 0]) > 0)
    assert np.all(wd[:, 1] == 0.0)                                      # biases / norms stay undecayed
    # crash mid-run (after 7 steps, the step-7 checkpoint written), then resume: the same sequence
    seen_b = _record_wd(monkeypatch, crash_after=7)
    with pytest.raises(Crash):
        run(tmp_path / "b", cfg, TwoGroupToyTask())
    assert len(seen_b) == 7
    seen_c = _record_wd(monkeypatch)
    resumed = run(tmp_path / "b", cfg, TwoGroupToyTask())
    assert seen_b + seen_c == seen
    a, b = load_checkpoint(latest_checkpoint(ref)), load_checkpoint(latest_checkpoint(resumed))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])
    # the schedule changes the result (the hook really reaches the optimiser)
    const = load_checkpoint(latest_checkpoint(run(tmp_path / "c", cfg_(epochs=2, weight_decay=0.04),
                                                  TwoGroupToyTask())))
    assert any(not torch.equal(a["model"][k], const["model"][k]) for k in a["model"] if k.endswith("weight"))


def test_decay_groups_split_by_name_shape_and_exclusion():
    import torch.nn as nn

    from bevlib.train import decay_groups

    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    m.prompts = nn.Embedding(3, 5)
    m[2].weight.requires_grad_(False)                      # frozen: in neither group
    decay, no_decay = decay_groups(m.named_parameters(), exclude=("prompts.",))
    ids = lambda ps: {id(p) for p in ps}                   # noqa: E731
    assert ids(decay["params"]) == {id(m[0].weight)}
    assert ids(no_decay["params"]) == {id(m[0].bias), id(m[1].weight), id(m[1].bias), id(m[2].bias),
                                       id(m.prompts.weight)}
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay
    assert id(m.prompts.weight) in ids(decay_groups(m.named_parameters())[0]["params"])   # 2-D: decayed by default


def test_eval_every_scores_every_kth_and_the_last_epoch(tmp_path):
    d = run(tmp_path, cfg_(epochs=4, eval_every=3))
    rows = read_metrics(d)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    scored = [r["epoch"] for r in rows if r.get("accuracy") not in ("", None)]
    assert scored == [3, 4]                                             # every 3rd and the last
    assert all(np.isfinite(r["train_loss"]) for r in rows)              # the loss is logged every epoch
    full = read_metrics(run(tmp_path, cfg_(epochs=4), name="every"))
    assert rows[-1]["accuracy"] == full[-1]["accuracy"]                 # evaluating less does not change training
    assert "eval_every" not in cfg_().hash_dict()                       # None keeps earlier runs' names
    assert d != run(tmp_path, cfg_(epochs=4)) and (d / "done.json").exists()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="eval_every"):
            cfg_(eval_every=bad)
