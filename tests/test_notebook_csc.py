"""chen2024 CSC end to end: notebooks/csc_table2.ipynb (Table 2) and notebooks/csc_ablation.ipynb (Table 5,
superpixel figure, 3D view) headless on their smoke presets, sharing one runs folder as the notebooks do."""
import csv

import pytest
from nbrun import run_preset


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("csc_runs")


@pytest.fixture(scope="module")
def shared():
    return {}


def _rows(path, source="measured"):
    return [r for r in csv.DictReader(open(path)) if r["source"].startswith(source)]


@pytest.mark.slow
def test_csc_table2_notebook_smoke(tmp_path, bevlib_cache, runs, shared):
    out = tmp_path / "csc_table2"
    run_preset("csc_table2", tmp_path / "executed.ipynb", bevlib_cache, output_dir=out, runs_dir=runs)
    t2 = _rows(out / "table2.csv")
    assert [r["method"] for r in t2] == ["Random init.", "SLidR", "CSC"]
    cols = ("lp", "ft1", "ft5", "ft10", "ft25", "ft100")
    assert all(0.0 <= float(r[c]) <= 100.0 for r in t2 for c in cols)
    rep = _rows(out / "table2.csv", "reported")
    assert [float(r["lp"]) for r in rep] == [8.1, 38.0, 46.0] and [float(r["ft100"]) for r in rep] == [74.2, 74.6, 75.7]
    for name in ("pretrain_curves.png", "direction_check.md", "table2_seeds.csv", "table2.md"):
        assert (out / name).stat().st_size > 0, name
    shared["table2"] = out / "table2.csv"
    names = {p.name.rsplit("-", 1)[0] for p in runs.iterdir()}
    assert {"pre-row1-s0", "pre-row4-s0", "lp-random-s0", "ft1-row4-s0", "ft100-row1-s0"} <= names


@pytest.mark.slow
def test_csc_ablation_notebook_smoke(tmp_path, bevlib_cache, runs, shared):
    out = tmp_path / "csc_ablation"
    run_preset("csc_ablation", tmp_path / "executed.ipynb", bevlib_cache, output_dir=out, runs_dir=runs)
    t5 = _rows(out / "table5.csv")
    assert [r["method"] for r in t5] == ["(1) SP", "(2) + VFM", "(3) + 3D Pro.", "(4) + MMPB"]
    assert all(0.0 <= float(r[c]) <= 100.0 for r in t5 for c in ("lp", "ft1", "ft5", "ft10"))
    for name in ("superpixels.png", "points_view.html", "pretrain_curves.png", "direction_check.md",
                 "table5_seeds.csv"):
        assert (out / name).stat().st_size > 0, name
    names = {p.name.rsplit("-", 1)[0] for p in runs.iterdir()}
    assert {"pre-row2-s0", "pre-row3-s0", "ft10-row3-s0"} <= names
    t2 = shared.get("table2")
    if t2 is not None:                                          # rows (1) and (4) are Table 2's SLidR and CSC runs
        by = {r["method"]: r for r in _rows(t2)}
        assert t5[0]["lp"] == by["SLidR"]["lp"] and t5[3]["ft1"] == by["CSC"]["ft1"]
    html = (out / "points_view.html").read_text()
    assert "superpoint (SLIC)" in html and "feature PCA, (4) + MMPB" in html
