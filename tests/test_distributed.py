"""Scale-out: the shared trainer under ``torchrun`` with 2 CPU processes (gloo).

Tolerance: 2 processes x batch B/2 take the same optimiser steps as 1 process x batch B up to
float32 summation order (DDP averages the two half-batch gradients, each a mean over its half),
so training losses agree to rel 1e-5 and the evaluation counts exactly.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bevlib.train import latest_checkpoint, read_metrics

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def torchrun(root, kind, nproc=2, **popen):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(HERE / "train_worker.py"), str(root), kind, "4"]
    if popen:
        return subprocess.Popen(cmd, env=_env(), start_new_session=True, **popen)
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)


def test_two_processes_match_one(tmp_path):
    one = subprocess.run([sys.executable, str(HERE / "train_worker.py"), str(tmp_path / "one"), "toy-noqueue", "4"],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(tmp_path / "two", "toy-noqueue")
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    d1, = (tmp_path / "one").iterdir()
    d2, = (tmp_path / "two").iterdir()
    assert d1.name == d2.name                       # same config: the global batch is the same
    r1, r2 = read_metrics(d1), read_metrics(d2)
    assert len(r1) == len(r2) == 3
    for a, b in zip(r1, r2):
        assert a["step"] == b["step"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["n_eval"] == a["n_eval"] == 9      # every validation sample counted once over 2 ranks
        assert b["accuracy"] == a["accuracy"]
    # only rank 0 wrote: one metrics file, one set of checkpoints, no stray temporary files
    assert sorted(p.name for p in d2.iterdir()) == sorted(p.name for p in d1.iterdir())


def test_killed_two_process_run_resumes(tmp_path):
    ref = torchrun(tmp_path / "ref", "toy-slow")
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    ref_dir, = (tmp_path / "ref").iterdir()
    p = torchrun(tmp_path / "killed", "toy-slow", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, ckdir = time.time() + 240, None
    while time.time() < deadline and p.poll() is None:
        dirs = list((tmp_path / "killed").glob("run-*/checkpoints"))
        if dirs and any(int(c.stem.split("_")[1]) == 8 for c in dirs[0].glob("step_*.pt")):
            ckdir = dirs[0]
            break
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)              # torchrun and both workers, at once
    p.wait()
    assert ckdir is not None, "the 2-process run never wrote the step-8 checkpoint"
    killed = ckdir.parent
    assert not (killed / "done.json").exists() and latest_checkpoint(killed) is not None
    res = torchrun(tmp_path / "killed", "toy-slow")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (killed / "metrics.csv").read_bytes() == (ref_dir / "metrics.csv").read_bytes()
