"""Runs one small training in its own process (the kill/resume test SIGKILLs it)."""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import GRID, MODEL, TRAIN, VAL, FakeStore, factory  # noqa: E402

from bevlib.train import TrainConfig, train  # noqa: E402

class SlowStore(FakeStore):
    """Each keyframe read takes 0.1 s, so the parent has time to SIGKILL the run mid-epoch
    (the results do not depend on it)."""

    def get(self, token):
        time.sleep(0.1)
        return super().get(token)


if __name__ == "__main__":
    torch.set_num_threads(1)
    cfg = TrainConfig(mode=sys.argv[2], temporal=sys.argv[2] == "pretrain", epochs=2, batch_size=2, lr=1e-3,
                      checkpoint_every_steps=1)
    train(factory, MODEL, cfg, SlowStore(), TRAIN, VAL, sys.argv[1], "run", GRID, progress=False)
