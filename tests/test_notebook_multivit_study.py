"""lukkassen2024 MultiViT part 2 end to end: the tables and feature-space notebooks headless on their
smoke presets (each <= 2 min on 2 cores); the feature-space notebook reuses the tables notebook's runs."""
import csv

import pytest
from nbrun import run_preset


@pytest.mark.slow
def test_multivit_study_notebooks_smoke(tmp_path, bevlib_cache):
    runs = tmp_path / "runs"
    tables, features = tmp_path / "tables", tmp_path / "features"
    run_preset("multivit_tables", tmp_path / "tables.ipynb", bevlib_cache, output_dir=tables, runs_dir=runs)
    for name in ("table1", "table3", "table4", "table6", "cosine", "multivit_seeds", "direction_check"):
        assert (tables / f"{name}.csv").exists() and (tables / f"{name}.md").exists(), name
    rows = list(csv.DictReader(open(tables / "table4.csv")))
    measured = [r for r in rows if r["source"] == "measured"]
    assert {r["method"] for r in measured} == {"RangeViT (nuScenes camera-pretrained)", "MultiViT.L (joint)"}
    assert all(0.0 <= float(r["miou"]) <= 100.0 for r in measured)
    assert any(r["source"].startswith("reported") for r in rows)
    assert any(r["source"].startswith("not run: needs vit_weights") for r in rows)
    seeds = list(csv.DictReader(open(tables / "multivit_seeds.csv")))
    assert len(seeds) == 6     # six rows, one seed in the smoke preset
    assert "indicative" in (tables / "direction_check.md").read_text() or "not run" in (tables / "direction_check.md").read_text()
    assert (tables / "deciding_rows.png").stat().st_size > 5000

    n_runs = len(list(runs.iterdir()))
    run_preset("multivit_feature_space", tmp_path / "features.ipynb", bevlib_cache, output_dir=features, runs_dir=runs)
    assert len(list(runs.iterdir())) == n_runs          # the same runs, reused
    for name in ("table5_cosine", "table5_cosine_all", "table5_cosine_decoder"):
        rows = list(csv.DictReader(open(features / f"{name}.csv")))
        assert len(rows) == 11 and "joint, pull + push (measured)" in rows[0]
        assert "Joint train, pull + push loss (reported)" in rows[0]
    for fig in ("fig8.png", "fig7_joint.png", "fig7_separate.png", "fig7_joint_pull_push.png"):
        assert (features / fig).stat().st_size > 5000, fig
