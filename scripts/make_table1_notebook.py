"""Writes notebooks/table1.ipynb (kept as code so the notebook stays thin and reviewable).

Run from the repository root: ``python scripts/make_table1_notebook.py [OUT_DIR]`` (default: notebooks/;
tests/test_notebooks_generated.py writes into a temporary directory and compares with the committed file).
"""
import sys
from pathlib import Path

import nbformat as nbf

from bevlib.experiments.busch2026 import Table1Params
from bevlib.notebooks import NOTEBOOKS, build, parameters_cell, write

NAME = "table1.ipynb"

cells = []
cells.append(nbf.v4.new_markdown_cell(
    "# busch2026 Table I, Fig. 5, Fig. 6\n\n"
    "Self-supervised BEV pretraining by differentiable reprojection (Eq. 1) with the temporal loss "
    "(Alg. 1), then fine-tuning on 50 % of the BEV labels. The defaults run the **embedded world** "
    "(a synthetic nuScenes-format dataset generated on first use) on a CPU; set `dataroot` to real "
    "nuScenes, or run with `-f params/table1/paper.yaml` on a GPU, for the paper's setting.\n\n"
    "Run headless: `papermill notebooks/table1.ipynb out.ipynb -f params/table1/smoke.yaml`."))
# The parameters cell is generated from Table1Params so the notebook's defaults and the
# library's can never drift apart; the comments say what the paper used.
COMMENTS = {
    "dataroot": "None: the embedded world; or a path to nuScenes",
    "labeler": '"synthetic" | "mask2former" (with mask2former_weights, a local path)',
    "image_wh": "paper: [512, 288]", "bev_hw": "paper: 150 x 150 queries, scored on the 400 x 200 canvas", "query_hw": "paper: [150, 150]",
    "backbone": '"tiny" | "resnet-18" | "resnet-50" (paper)', "embed_dim": "paper: 256", "num_layers": "paper: 6",
    "epochs": "paper: 30", "batch_size": "paper: 6", "lr": "paper: 2e-4",
    "pretrain_lengths": "paper: 3 ... 27", "no_temp_lengths": "paper: 3, 22",
    "finetune_halved_epochs": "paper: 14 (32,800 steps)", "bev_class_weights": "background, boundary, lane, crosswalk",
    "output_dir": "None: <project>/outputs/<output_name>", "runs_dir": "None: <project>/outputs/runs/busch2026",
}
cells.append(parameters_cell(Table1Params, COMMENTS, "# Parameters (papermill overrides these; the defaults are the embedded-default preset)"))
cells.append(nbf.v4.new_code_cell(
    "from IPython.display import Markdown, Image, display\n"
    "import torch\n"
    "from bevlib import params as _params\n"
    "from bevlib.experiments import busch2026\n"
    "\n"
    "P = _params.collect(globals(), busch2026.Table1Params)   # a mistyped parameter fails here, by name\n"
    "out = P.out_dir\n"
    "torch.manual_seed(P.seed)\n"
    "P"))
cells.append(nbf.v4.new_markdown_cell("## Data: the devkit reads the dataset; pseudo-labels are generated once, offline, and cached"))
cells.append(nbf.v4.new_code_cell(
    "exp = busch2026.prepare(P)\n"
    "print(f'{exp.data_id[\"dataroot\"]}: {len(exp.train_tokens)} train / {len(exp.half_tokens)} fine-tuning / '\n"
    "      f'{len(exp.val_tokens)} val keyframes; pseudo-labels: {exp.labeler_name}')"))
cells.append(nbf.v4.new_markdown_cell("## Runs: baseline, pretraining (± temporal loss), two-phase fine-tuning (finished runs are reused)"))
cells.append(nbf.v4.new_code_cell("runs = busch2026.run_table1(exp)\nruns"))
cells.append(nbf.v4.new_markdown_cell("## Table I (measured beside reported)"))
cells.append(nbf.v4.new_code_cell(
    "rows = busch2026.table1_rows(runs)\n"
    "csv_path, md_path = busch2026.write_table1(rows, out, busch2026.caption(exp))\n"
    "display(Markdown(md_path.read_text()))\n"
    "# with several seeds: every run's numbers; with probe=True: the linear probe of the frozen BEV\n"
    "for extra in busch2026.write_protocol_tables(runs, exp, out):\n"
    "    display(Markdown(extra.read_text()))"))
cells.append(nbf.v4.new_markdown_cell("## Fig. 6: mIoU60 against total training steps"))
cells.append(nbf.v4.new_code_cell("display(Image(filename=str(busch2026.plot_fig6(runs, out / 'fig6_miou_progress.png'))))"))
cells.append(nbf.v4.new_markdown_cell("## Fig. 5: BEV predictions vs ground truth vs pseudo-label (one validation keyframe)"))
cells.append(nbf.v4.new_code_cell("display(Image(filename=str(busch2026.plot_fig5(runs, exp, out / 'fig5_qualitative.png'))))"))
nb = build(cells)   # fixed ids: regenerating gives the same bytes


def main(out_dir=NOTEBOOKS) -> Path:
    """Write the notebook into ``out_dir`` (default: the repository's notebooks/); returns its path."""
    return write(nb, NAME, out_dir)


if __name__ == "__main__":
    main(*sys.argv[1:2])
