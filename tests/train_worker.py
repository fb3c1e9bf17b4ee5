"""Runs one small training in its own process (the kill/resume test SIGKILLs it)."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import GRID, MODEL, TRAIN, VAL, FakeStore, factory  # noqa: E402

from bevlib.train import TrainConfig, train  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    cfg = TrainConfig(mode=sys.argv[2], temporal=sys.argv[2] == "pretrain", epochs=2, batch_size=2, lr=1e-3,
                      checkpoint_every_steps=1)
    train(factory, MODEL, cfg, FakeStore(), TRAIN, VAL, sys.argv[1], "run", GRID, progress=False)
