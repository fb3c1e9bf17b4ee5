"""lukkassen2024 MultiViT part 1 end to end: notebooks/multivit_rangevit.ipynb headless, smoke preset."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_multivit_rangevit_notebook_smoke(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "multivit_rangevit.ipynb"),
         str(tmp_path / "executed.ipynb"), "-f", str(ROOT / "params" / "multivit_rangevit" / "smoke.yaml"),
         "-p", "output_dir", str(out), "-p", "runs_dir", str(tmp_path / "runs"), "--cwd", str(ROOT / "notebooks")],
        env=dict(os.environ, BEVLIB_CACHE=str(tmp_path / "cache")), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "table1_rangevit.csv")))
    sources = {row["source"] for row in rows}
    assert "measured" in sources and any(s.startswith("reported") for s in sources)
    measured = next(row for row in rows if row["source"] == "measured")
    assert 0.0 <= float(measured["miou"]) <= 100.0
    assert "reported" in (out / "table1_rangevit.md").read_text()
    for fig in ("miou_curve.png", "val_sweep.png"):
        assert (out / fig).stat().st_size > 5000
