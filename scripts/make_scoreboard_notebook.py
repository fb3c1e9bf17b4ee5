"""Writes notebooks/scoreboard.ipynb (kept as code so the notebook stays thin and reviewable).

Run from the repository root: ``python scripts/make_scoreboard_notebook.py [OUT_DIR]`` (default: notebooks/).
"""
import sys
from pathlib import Path

import nbformat as nbf

from bevlib.notebooks import NOTEBOOKS, build, parameters_cell, write
from bevlib.scoreboard import ScoreboardParams

NAME = "scoreboard.ipynb"

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
cells.append(parameters_cell(ScoreboardParams, COMMENTS))
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
nb = build(cells)   # fixed ids: regenerating gives the same bytes


def main(out_dir=NOTEBOOKS) -> Path:
    """Write the notebook into ``out_dir`` (default: the repository's notebooks/); returns its path."""
    return write(nb, NAME, out_dir)


if __name__ == "__main__":
    main(*sys.argv[1:2])
