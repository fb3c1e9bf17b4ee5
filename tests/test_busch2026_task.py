"""busch2026 as a task of the shared trainer: its modes (supervised, Eq. 1, Eq. 1 + Alg. 1) and
the two-phase start from a pretraining checkpoint."""
import numpy as np
import pytest

from fakes import TRAIN, busch_task
from bevlib.train import TrainConfig, checkpoint_at, load_checkpoint, read_metrics, train


def run(tmp, cfg, name="run", **kw):
    return train(busch_task(**kw), cfg, tmp, name, progress=False)


@pytest.mark.parametrize("mode,temporal", [("supervised", False), ("pretrain", False), ("pretrain", True)])
def test_modes_train_and_log_their_terms(tmp_path, mode, temporal):
    d = run(tmp_path, TrainConfig(epochs=2, batch_size=3, lr=1e-3), mode=mode, temporal=temporal)
    rows = read_metrics(d)
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [2, 4]
    assert all(np.isfinite(r["train_loss"]) for r in rows) and "miou60" in rows[0]
    if temporal:
        assert rows[0]["loss_prev"] > 0
        assert rows[0]["train_loss"] == pytest.approx(rows[0]["loss_t"] + rows[0]["loss_prev"])
    else:
        assert "loss_t" not in rows[0]
    ck = load_checkpoint(checkpoint_at(d, 2))
    assert ck["epoch"] == 2 and ck["step"] == 4 and ck["batch"] == 0


def test_two_phase_starts_from_checkpoint(tmp_path):
    pre = run(tmp_path, TrainConfig(epochs=1, batch_size=3), "pre", mode="pretrain")
    ft = run(tmp_path, TrainConfig(epochs=1, batch_size=3, init_from=str(checkpoint_at(pre, 1)), step_offset=2),
             "ft", tokens=TRAIN[:3])
    rows = read_metrics(ft)
    assert rows[0]["epoch"] == 0 and rows[0]["total_step"] == 2      # the pretrained model, evaluated
    assert rows[1]["total_step"] == 3
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        run(tmp_path, TrainConfig(epochs=1, init_from=str(tmp_path / "nope.pt")), "ft2")


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        busch_task(mode="selfsup")
    with pytest.raises(ValueError, match="temporal"):
        busch_task(mode="supervised", temporal=True)
