"""wozniak2025 S3PT Table 1 end to end: notebooks/s3pt_ablation.ipynb headless on its smoke preset."""
import csv

import pytest
from nbrun import run_preset


@pytest.mark.slow
def test_s3pt_ablation_notebook_smoke(tmp_path, bevlib_cache):
    out = tmp_path / "s3pt_ablation"
    run_preset("s3pt_ablation", tmp_path / "executed.ipynb", bevlib_cache, output_dir=out, runs_dir=tmp_path / "runs")
    rows = list(csv.DictReader(open(out / "table1.csv")))
    measured = [x for x in rows if x["source"] == "measured"]
    assert [x["method"] for x in measured] == ["random init", "CrIBo", "+ vMF", "+ vMF, M=32, 1 SK iter.",
                                               "+ vMF, M=32, 1 SK iter., depth (S3PT)"]
    assert all(0.0 <= float(x["linear"]) <= 100.0 and 0.0 <= float(x["mask"]) <= 100.0 for x in measured)
    assert any(x["source"].startswith("reported") and float(x["linear"]) == 38.06 for x in rows)
    assert (out / "fig5_per_class.csv").exists() and (out / "direction_check.md").exists()
    seeds = list(csv.DictReader(open(out / "table1_seeds.csv")))
    assert len(seeds) == 5
