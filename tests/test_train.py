"""The trainer on a tiny in-memory dataset: metrics log, checkpoints, reuse and resume."""
import shutil

import numpy as np
import pytest
import torch

from bevlib import geometry as geo
from bevlib.bev import BEVGrid
from bevlib.data.dataset import KeyframeStore
from bevlib.train import TrainConfig, load_checkpoint, read_metrics, train

GRID = BEVGrid(H=24, W=12)
HW = (48, 88)
MODEL = {"backbone": "tiny", "embed_dim": 16, "num_layers": 1, "query_hw": [12, 6], "out_hw": [24, 12]}


class FakeStore(KeyframeStore):
    """Six keyframes of two 'scenes' with a fixed rig, random images and simple labels."""

    def __init__(self):
        rng = np.random.default_rng(0)
        K = geo.scale_intrinsics(np.array([[1266.0, 0, 816], [0, 1266, 491], [0, 0, 1]]), (1600, 900), HW[::-1])
        yaws = [0, np.pi / 3, 2 * np.pi / 3, np.pi, -2 * np.pi / 3, -np.pi / 3]
        T = np.stack([geo.se2(0, 0, a) @ geo.transform_from([1.5, 0, 1.5], [0.5, -0.5, 0.5, -0.5]) for a in yaws])
        self._items = {}
        for s in range(2):
            for k in range(3):
                tok = f"s{s}k{k}"
                gt = np.zeros((GRID.H, GRID.W), np.uint8)
                gt[:, 5 + k % 2] = 2
                gt[:, [1, 10]] = 1
                self._items[tok] = {
                    "images": rng.integers(0, 255, (6, *HW, 3), dtype=np.uint8),
                    "K": np.repeat(K[None], 6, 0).astype(np.float32), "ego_T_cam": T.astype(np.float32),
                    "bev_gt": gt, "has_bev_gt": True, "prev_token": f"s{s}k{k-1}" if k else "",
                    "curr_T_prev": geo.invert(geo.se2(5.0, 0, 0)).astype(np.float32),
                    "pseudo": rng.integers(0, 14, (6, *HW), dtype=np.uint8),
                }

    def get(self, token):
        return self._items[token]


def factory(cfg):
    from bevlib.models.bevformer import BEVFormerConfig, build_bevformer
    return build_bevformer(BEVFormerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}))


TRAIN = ["s0k0", "s0k1", "s0k2", "s1k0"]
VAL = ["s1k1", "s1k2"]


@pytest.mark.parametrize("mode,temporal", [("supervised", False), ("pretrain", True)])
def test_train_writes_metrics_checkpoints_and_reuses(tmp_path, mode, temporal):
    store = FakeStore()
    cfg = TrainConfig(mode=mode, temporal=temporal, epochs=2, batch_size=2, lr=1e-3)
    run = train(factory, MODEL, cfg, store, TRAIN, VAL, tmp_path, "run", GRID, progress=False)
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [2, 4]
    assert all(np.isfinite(r["train_loss"]) for r in rows) and "miou60" in rows[0]
    if temporal:
        assert rows[0]["loss_prev"] > 0
    ck = load_checkpoint(run / "checkpoints" / "epoch_002.pt")
    assert ck["epoch"] == 2 and ck["step"] == 4
    assert (run / "done.json").exists()
    mtime = (run / "metrics.csv").stat().st_mtime_ns
    assert train(factory, MODEL, cfg, store, TRAIN, VAL, tmp_path, "run", GRID, progress=False) == run
    assert (run / "metrics.csv").stat().st_mtime_ns == mtime   # reused, not retrained


def test_resume_gives_identical_metrics(tmp_path):
    store = FakeStore()
    cfg = TrainConfig(mode="supervised", epochs=3, batch_size=2, lr=1e-3)
    full = train(factory, MODEL, cfg, store, TRAIN, VAL, tmp_path / "a", "run", GRID, progress=False)
    ref = (full / "metrics.csv").read_text()
    # simulate a run stopped after epoch 1: drop later checkpoints, the done marker and later rows
    part = tmp_path / "b" / full.name
    shutil.copytree(full, part)
    (part / "done.json").unlink()
    for e in (2, 3):
        (part / "checkpoints" / f"epoch_{e:03d}.pt").unlink()
    resumed = train(factory, MODEL, cfg, store, TRAIN, VAL, tmp_path / "b", "run", GRID, progress=False)
    assert resumed == part
    strip = lambda text: [",".join(c for i, c in enumerate(l.split(",")) if i != idx) for l in text.splitlines()
                          for idx in [text.splitlines()[0].split(",").index("epoch_seconds")]]
    assert strip((resumed / "metrics.csv").read_text()) == strip(ref)


def test_two_phase_starts_from_checkpoint(tmp_path):
    store = FakeStore()
    pre = train(factory, MODEL, TrainConfig(mode="pretrain", epochs=1), store, TRAIN, VAL, tmp_path, "pre", GRID,
                progress=False)
    ft = train(factory, MODEL, TrainConfig(mode="supervised", epochs=1, init_from=str(pre / "checkpoints" / "epoch_001.pt"),
                                           step_offset=2), store, TRAIN[:2], VAL, tmp_path, "ft", GRID, progress=False)
    rows = read_metrics(ft)
    assert rows[0]["epoch"] == 0 and rows[0]["total_step"] == 2      # the pretrained model, evaluated
    assert rows[1]["total_step"] == 3
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        train(factory, MODEL, TrainConfig(mode="supervised", epochs=1, init_from=str(tmp_path / "nope.pt")),
              store, TRAIN, VAL, tmp_path, "ft2", GRID, progress=False)
