"""wozniak2025 S3PT end to end: notebooks/s3pt_ablation.ipynb (Table 1, Fig. 5) and
notebooks/s3pt_comparison.ipynb (Tables 2-3, Fig. 7, the cluster view) headless on their smoke presets,
sharing one runs folder as the notebooks do (the comparison reuses the ablation's CrIBo and S3PT runs)."""
import csv

import pytest
from nbrun import run_preset


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("s3pt_runs")


@pytest.mark.slow
def test_s3pt_ablation_notebook_smoke(tmp_path, bevlib_cache, runs):
    from bevlib.experiments.s3pt.ablation import CLAIM_ROWS, ROWS

    out = tmp_path / "s3pt_ablation"
    run_preset("s3pt_ablation", tmp_path / "executed.ipynb", bevlib_cache, output_dir=out, runs_dir=runs)
    rows = list(csv.DictReader(open(out / "table1.csv")))
    measured = [x for x in rows if x["source"] == "measured"]
    assert [x["method"] for x in measured] == ["random init", *ROWS]
    assert all(0.0 <= float(x["linear"]) <= 100.0 and 0.0 <= float(x["mask"]) <= 100.0 for x in measured)
    assert any(x["source"].startswith("reported") and float(x["linear"]) == 38.06 for x in rows)
    assert (out / "fig5_per_class.png").exists() and (out / "direction_check.md").exists()
    seeds = list(csv.DictReader(open(out / "table1_seeds.csv")))
    assert len(seeds) == 1 + len(ROWS) and {x["method"] for x in seeds} >= set(CLAIM_ROWS)


@pytest.mark.slow
def test_s3pt_comparison_notebook_smoke(tmp_path, bevlib_cache, runs):
    out = tmp_path / "s3pt_comparison"
    before = {p.name for p in runs.iterdir()}
    run_preset("s3pt_comparison", tmp_path / "executed.ipynb", bevlib_cache, output_dir=out, runs_dir=runs)
    t2 = list(csv.DictReader(open(out / "table2.csv")))
    assert [x["method"] for x in t2 if x["source"] == "measured"] == ["random init", "DINO", "CrIBo", "S3PT"]
    t3 = [x for x in csv.DictReader(open(out / "table3.csv")) if x["source"] == "measured"]
    assert all(0.0 <= float(x[c]) <= 100.0 for x in t3 for c in ("world_to_city_linear", "city_to_world_mask"))
    for name in ("fig7.png", "worlds.png", "clusters.png", "direction_check.md"):
        assert (out / name).stat().st_size > 0, name
    made = {p.name for p in runs.iterdir()} - before
    assert any(n.startswith("pre-DINO-") for n in made)
    if before:   # the ablation ran first with the same settings: its CrIBo pretraining is reused, not redone
        assert not any(n.startswith("pre-CrIBo-") for n in made)
