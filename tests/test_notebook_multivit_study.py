"""lukkassen2024 MultiViT part 2 end to end: the tables and feature-space notebooks headless on their
smoke presets (each <= 2 min on 2 cores); the feature-space notebook reuses the tables notebook's runs."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _papermill(name, tmp_path, out, runs):
    r = subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
         "-f", str(ROOT / "params" / name / "smoke.yaml"), "-p", "output_dir", str(out), "-p", "runs_dir", str(runs),
         "--cwd", str(ROOT / "notebooks")],
        env=dict(os.environ, BEVLIB_CACHE=str(tmp_path / "cache")), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.slow
def test_multivit_study_notebooks_smoke(tmp_path):
    runs = tmp_path / "runs"
    tables, features = tmp_path / "tables", tmp_path / "features"
    _papermill("multivit_tables", tmp_path, tables, runs)
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
    _papermill("multivit_feature_space", tmp_path, features, runs)
    assert len(list(runs.iterdir())) == n_runs          # the same runs, reused
    for name in ("table5_cosine", "table5_cosine_all", "table5_cosine_decoder"):
        rows = list(csv.DictReader(open(features / f"{name}.csv")))
        assert len(rows) == 11 and "joint, pull + push (measured)" in rows[0]
        assert "Joint train, pull + push loss (reported)" in rows[0]
    for fig in ("fig8.png", "fig7_joint.png", "fig7_separate.png", "fig7_joint_pull_push.png"):
        assert (features / fig).stat().st_size > 5000, fig
