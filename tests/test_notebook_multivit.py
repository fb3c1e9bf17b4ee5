"""lukkassen2024 MultiViT part 1 end to end: notebooks/multivit_rangevit.ipynb headless, smoke preset."""
import csv

import pytest
from nbrun import run_preset


@pytest.mark.slow
def test_multivit_rangevit_notebook_smoke(tmp_path, bevlib_cache):
    out = tmp_path / "out"
    run_preset("multivit_rangevit", tmp_path / "executed.ipynb", bevlib_cache, output_dir=out, runs_dir=tmp_path / "runs")
    rows = list(csv.DictReader(open(out / "table1_rangevit.csv")))
    sources = {row["source"] for row in rows}
    assert "measured" in sources and any(s.startswith("reported") for s in sources)
    measured = next(row for row in rows if row["source"] == "measured")
    assert 0.0 <= float(measured["miou"]) <= 100.0
    assert "reported" in (out / "table1_rangevit.md").read_text()
    for fig in ("miou_curve.png", "val_sweep.png"):
        assert (out / fig).stat().st_size > 5000
