"""Combined-datasets end to end: notebooks/combined_pretraining.ipynb (Tables 1-2) and
notebooks/combined_multidataset.ipynb (Tables 4-6, Figs. 3/4) headless on their smoke presets, sharing one
runs folder as the notebooks do."""
import csv

import pytest
from nbrun import run_preset


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("combined_runs")


def _measured(path):
    return [r for r in csv.DictReader(open(path)) if r["source"] == "measured"]


@pytest.mark.slow
def test_combined_pretraining_notebook_smoke(tmp_path, bevlib_cache, runs):
    out = tmp_path / "combined_pretraining"
    run_preset("combined_pretraining", tmp_path / "executed.ipynb", bevlib_cache, output_dir=out, runs_dir=runs)
    t1, t2 = _measured(out / "table1.csv"), _measured(out / "table2.csv")
    assert [r["method"] for r in t1] == ["Scratch", "BEVDistill", "Ours"]
    assert [r["method"] for r in t2] == ["Full", "-L_MAE", "-L_CL"]
    assert all(0.0 <= float(r["miou"]) <= 100.0 for r in t1 + t2)
    assert t1[2]["miou"] == t2[0]["miou"]                       # "Ours" and "Full" are the same runs
    rep = [r for r in csv.DictReader(open(out / "table1.csv")) if r["source"].startswith("reported")]
    assert [float(r["miou"]) for r in rep] == [39.1, 39.1, 39.3]
    for name in ("pretrain_curves.png", "direction_check.md", "table1_seeds.csv", "table2_seeds.csv"):
        assert (out / name).stat().st_size > 0, name
    names = {p.name.rsplit("-", 1)[0] for p in runs.iterdir()}
    assert {"pre-ours-s0", "pre-no_mae-s0", "pre-no_cl-s0", "pre-bevdistill-s0", "ft-scratch-s0"} <= names


@pytest.mark.slow
def test_combined_multidataset_notebook_smoke(tmp_path, bevlib_cache, runs):
    out = tmp_path / "combined_multidataset"
    run_preset("combined_multidataset", tmp_path / "executed.ipynb", bevlib_cache, output_dir=out, runs_dir=runs)
    t4, t5, t6 = (_measured(out / f"table{k}.csv") for k in (4, 5, 6))
    assert [r["method"] for r in t4] == ["Single dataset", "Multi-dataset w/o prompt", "Multi-dataset w/ prompt"]
    assert [r["method"] for r in t5] == ["W/o prompt", "Correspond", "Wrong"]
    assert [r["method"] for r in t6] == ["40K Frame", "100K Frame", "250K Frame"]
    assert t5[0]["miou"] == t4[1]["miou"] and t5[1]["miou"] == t4[2]["miou"] == t6[1]["miou"]   # shared runs
    assert all(0.0 <= float(r["miou"]) <= 100.0 for r in t4 + t5 + t6)
    for name in ("fig3_heatmaps.png", "direction_check.md", "table6_seeds.csv"):
        assert (out / name).stat().st_size > 0, name
    names = {p.name.rsplit("-", 1)[0] for p in runs.iterdir()}
    assert {"pre-ours-100K-nuscenes+lyft+once-prompt-s0", "pre-ours-250K-mixed-prompt-s0"} <= names
    assert any(n.endswith("-pm2") for n in names)               # the "Wrong" (ONCE) prompt at fine-tuning
