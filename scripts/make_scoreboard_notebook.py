"""Writes notebooks/scoreboard.ipynb (kept as code so the notebook stays thin and reviewable).

Run from the repository root: ``python scripts/make_scoreboard_notebook.py [OUT_DIR]`` (default: notebooks/).
"""
import sys
from pathlib import Path

import nbformat as nbf

from bevlib.params import parameters_source
from bevlib.scoreboard import ScoreboardParams

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAME = "scoreboard.ipynb"

nb = nbf.v4.new_notebook()
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
cells = []
cells.append(nbf.v4.new_markdown_cell(
    "# Reproduction scoreboard\n\n"
    "Every paper's headline claims (registered by its module in `bevlib/experiments/`), checked against the "
    "latest tables in `outputs/`: **held**, **not held**, **inconclusive** (the 95 % interval of the difference "
    "contains the margin) or **not run** (the table or a row is missing), with the measured numbers beside the "
    "paper's. With fewer seeds than a claim needs (3 on the embedded world) the verdict follows the mean and is "
    "marked *indicative*. This notebook only reads tables; run the papers' notebooks first.\n\n"
    "Run headless: `papermill notebooks/scoreboard.ipynb out.ipynb -f params/scoreboard/smoke.yaml`."))
COMMENTS = {
    "outputs_root": "None: <project>/outputs",
    "output_dir": "None: <outputs_root>/scoreboard",
    "papers": 'None: every paper in bevlib.experiments.PAPERS; or e.g. ["busch2026"]',
}
params = nbf.v4.new_code_cell(parameters_source(ScoreboardParams, COMMENTS))
params.metadata["tags"] = ["parameters"]
cells.append(params)
cells.append(nbf.v4.new_code_cell(
    "from IPython.display import Markdown, display\n"
    "from bevlib import params as _params\n"
    "from bevlib import scoreboard\n"
    "from bevlib.experiments import import_papers\n\n"
    "P = _params.collect(globals(), scoreboard.ScoreboardParams)   # a mistyped parameter fails here, by name\n"
    "papers = import_papers(P.papers)   # each paper's module registers its claims on import\n"
    "P"))
cells.append(nbf.v4.new_markdown_cell("## Claims evaluated on the latest outputs"))
cells.append(nbf.v4.new_code_cell(
    "results = scoreboard.evaluate_all(scoreboard.claims(papers), P.root)\n"
    "csv_path, md_path = scoreboard.write_scoreboard(results, P.out, P.root)\n"
    "display(Markdown(md_path.read_text()))"))
for i, c in enumerate(cells):
    c["id"] = f"cell-{i}"   # fixed ids: regenerating gives the same bytes
nb.cells = cells


def main(out_dir=NOTEBOOKS) -> Path:
    """Write the notebook into ``out_dir`` (default: the repository's notebooks/); returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nbf.validate(nb)
    nbf.write(nb, out_dir / NAME)
    print(f"wrote {'notebooks' if out_dir == NOTEBOOKS else out_dir}/{NAME}")
    return out_dir / NAME


if __name__ == "__main__":
    main(*sys.argv[1:2])
