"""busch2026 Table I protocol: seeds with 95 % intervals, the scratch control, the linear probe,
the paper's schedule (warm-up + cosine, backbone lr multiplier, fine-tuning lr)."""
import csv

import numpy as np
import pytest

from bevlib.experiments import busch2026 as b
from bevlib.params import ParameterError
from bevlib.stats import mean_ci95

SMALL = dict(image_wh=(128, 72), bev_hw=(60, 30), query_hw=(20, 10), embed_dim=16, epochs=2, batch_size=2,
             pretrain_lengths=(1,), no_temp_lengths=(), finetune_halved_epochs=1, progress=False)


@pytest.mark.slow
def test_seeds_scratch_control_and_probe(tiny_world, tmp_path, monkeypatch):
    monkeypatch.setenv("BEVLIB_CACHE", str(tmp_path / "cache"))
    p = b.Table1Params(dataroot=str(tiny_world), runs_dir=str(tmp_path / "runs"), seeds=(0, 1), scratch_control=True,
                       schedule="warmup_cosine", warmup_steps=2, backbone_lr_mult=0.1, finetune_lr=1e-3, **SMALL)
    exp = b.prepare(p)
    runs = b.run_table1(exp)
    assert all(len(v) == 2 for v in runs.values())
    assert b.SCRATCH_ROW in runs
    rows = b.table1_rows(runs)
    b.write_table1(rows, tmp_path / "out", "test")
    b.write_seed_table(runs, tmp_path / "out")
    table = list(csv.DictReader(open(tmp_path / "out" / "table1.csv")))
    seeds = list(csv.DictReader(open(tmp_path / "out" / "table1_seeds.csv")))
    base = [r for r in seeds if r["method"] == "supervised baseline"]
    assert sorted(int(r["seed"]) for r in base) == [0, 1]
    row = next(r for r in table if r["method"] == "supervised baseline" and r["source"] == "measured")
    m, h = mean_ci95([float(r["miou60"]) for r in base])
    assert row["n_seeds"] == "2" and float(row["miou60"]) == pytest.approx(m, abs=0.06)
    assert float(row["miou60_ci95"]) == pytest.approx(h, abs=0.06)
    assert "±" in (tmp_path / "out" / "table1.md").read_text()
    # the fine-tuning runs used their own lr and the paper's schedule, the backbone at 0.1 x
    import json
    ft = json.loads((runs["ours(1ep pretrain + temp)"][0] / "config.json").read_text())
    assert ft["train"]["lr"] == 1e-3 and ft["train"]["schedule"] == "warmup_cosine"
    assert ft["task"]["backbone_lr_mult"] == 0.1
    b.plot_fig6(runs, tmp_path / "out" / "fig6.png")
    probe = b.probe_rows(runs, exp, max_train=5000)
    assert [r["features"] for r in probe][0] == "random weights" and len(probe) == 4
    for r in probe:
        for c in b.PROBE_COLUMNS:
            assert np.isnan(r[c]) or 0 <= r[c] <= 100
    b.write_probe_table(probe, tmp_path / "out", exp)
    assert (tmp_path / "out" / "probe.md").exists()


def test_backbone_lr_multiplier_groups():
    from fakes import busch_task
    task = busch_task(backbone_lr_mult=0.1)
    model = task.build_model()
    groups = task.param_groups(model)
    assert groups[0]["lr_mult"] == 0.1
    n = sum(q.numel() for g in groups for q in g["params"])
    assert n == sum(q.numel() for q in model.parameters())
    assert {id(q) for q in groups[0]["params"]} == {id(q) for q in model.backbone.parameters()}
    from bevlib.train import TrainConfig, build_optimizer
    opt = build_optimizer(groups, TrainConfig(lr=2e-4))
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(2e-5), 2e-4]


def test_parameters_are_checked():
    with pytest.raises(ParameterError, match="schedule"):
        b.Table1Params(schedule="cosine")
    with pytest.raises(ParameterError, match="seeds"):
        b.Table1Params(seeds=(0, 0))
    with pytest.raises(ParameterError, match="finetune_lr"):
        b.Table1Params(finetune_lr=-1.0)
    assert b.Table1Params(seed=3).train_seeds == (3,)


def test_mean_ci95_against_scipy():
    from scipy import stats
    v = [21.0, 23.5, 22.1, 20.4]
    m, h = mean_ci95(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert m == pytest.approx(np.mean(v)) and h == pytest.approx((hi - lo) / 2)
    assert np.isnan(mean_ci95([1.0])[1])
