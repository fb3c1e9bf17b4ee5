"""Writes notebooks/multivit_rangevit.ipynb (kept as code so the notebook stays thin and reviewable).

Run from the repository root: ``python scripts/make_multivit_notebook.py [OUT_DIR]`` (default: notebooks/).
"""
import sys

import nbformat as nbf

from bevlib.experiments.multivit import RangeViTParams
from bevlib.notebooks import NOTEBOOKS, build, parameters_cell, write

NAME = "multivit_rangevit.ipynb"

cells = [nbf.v4.new_markdown_cell(
    "# lukkassen2024 MultiViT, part 1: RangeViT on the LiDAR range view\n\n"
    "A LiDAR sweep projected to a 5-channel range image (range, intensity, x, y, z), a SalsaNext stem, a ViT "
    "encoder, a pixel-shuffle decoder and a KPConv 3D refiner give a class per point (the 16 nuScenes-lidarseg "
    "evaluation classes). Trained with Lovász-softmax + focal loss on random crops with flip / translation / "
    "rotation augmentation, evaluated point-wise by sliding-window inference. The defaults run the **embedded "
    "world** from random initialisation on a CPU; the paper's row 1 is beside the measured one, labelled reported.\n\n"
    "Run headless: `papermill notebooks/multivit_rangevit.ipynb out.ipynb -f params/multivit_rangevit/smoke.yaml`.")]
cells.append(parameters_cell(RangeViTParams, {}, "# Parameters (papermill overrides these; the defaults are the embedded default)"))
cells.append(nbf.v4.new_code_cell(
    "from IPython.display import Markdown, Image, display\n"
    "from bevlib import params as _params\n"
    "from bevlib.experiments import multivit\n"
    "\n"
    "P = _params.collect(globals(), multivit.RangeViTParams)   # a mistyped parameter fails here, by name\n"
    "out = P.out_dir\n"
    "P"))
cells.append(nbf.v4.new_markdown_cell("## Data: sweeps read once through the devkit (lidarseg mapped to the 16 evaluation classes)"))
cells.append(nbf.v4.new_code_cell(
    "exp = multivit.prepare(P)\n"
    "print(f'{exp.data_desc}: {len(exp.train_sweeps)} train / {len(exp.val_sweeps)} val sweeps')"))
cells.append(nbf.v4.new_markdown_cell("## Training (the shared trainer; a finished run is reused)"))
cells.append(nbf.v4.new_code_cell("run = multivit.run_rangevit(exp)\nrun"))
cells.append(nbf.v4.new_markdown_cell("## Table 1, row 1: per-class IoU (measured beside reported)"))
cells.append(nbf.v4.new_code_cell(
    "caption = (f'RangeViT from scratch on {exp.data_desc}, {P.epochs} epochs, {len(exp.val_sweeps)} val sweeps, '\n"
    "           f'range image {P.range_hw[0]}x{P.range_hw[1]}, crops of width {P.crop_w}.')\n"
    "csv_path, md_path = multivit.write_table1(run, out, caption)\n"
    "display(Markdown(md_path.read_text()))"))
cells.append(nbf.v4.new_markdown_cell("## mIoU against epochs, and one validation sweep: range image / prediction / ground truth"))
cells.append(nbf.v4.new_code_cell(
    "display(Image(filename=str(multivit.plot_miou_curve(run, out / 'miou_curve.png'))))\n"
    "display(Image(filename=str(multivit.plot_val_sweep(exp, multivit.make_task(exp), run, out / 'val_sweep.png'))))"))
cells.append(nbf.v4.new_markdown_cell("## Training-dip events (rollbacks), if any"))
cells.append(nbf.v4.new_code_cell("events = multivit.dip_events(run)\nevents or 'no rollback events'"))
nb = build(cells)   # fixed ids: regenerating gives the same bytes


def main(out_dir=NOTEBOOKS):
    """Write the notebook into ``out_dir`` (default: the repository's notebooks/); returns its path."""
    return write(nb, NAME, out_dir)


if __name__ == "__main__":
    main(*sys.argv[1:2])
