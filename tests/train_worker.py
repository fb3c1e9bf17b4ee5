"""Runs one small training in its own process (the kill/resume tests SIGKILL it; the distributed
tests launch it under torchrun).

usage: train_worker.py RUNS_ROOT KIND [BATCH_SIZE]  with KIND in {toy, toy-slow, toy-noqueue, busch}
(toy-noqueue: without the queue term, which differs by design between one process and several)
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import FakeStore, ToyTask, busch_task  # noqa: E402

from bevlib.train import TrainConfig, train  # noqa: E402


class SlowStore(FakeStore):
    """Each keyframe read takes 0.1 s, so the parent has time to SIGKILL the run mid-epoch
    (the results do not depend on it)."""

    def get(self, token):
        time.sleep(0.1)
        return super().get(token)


if __name__ == "__main__":
    torch.set_num_threads(1)
    root, kind = sys.argv[1], sys.argv[2]
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    if kind == "busch":
        task = busch_task(SlowStore(), mode="pretrain", temporal=True)
        cfg = TrainConfig(epochs=2, batch_size=2, lr=1e-3, checkpoint_every_steps=1)
    else:
        task = ToyTask(n=24, delay=0.05 if kind == "toy-slow" else 0.0,
                       queue_weight=0.0 if kind == "toy-noqueue" else 0.01)
        cfg = TrainConfig(epochs=3, batch_size=batch, lr=3e-2, checkpoint_every_steps=1, eval_batch_size=4)
    train(task, cfg, root, "run", progress=False)
