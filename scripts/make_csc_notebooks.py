"""Writes notebooks/csc_table2.ipynb and notebooks/csc_ablation.ipynb (kept as code so the notebooks stay thin
and reviewable).

Run from the repository root: ``python scripts/make_csc_notebooks.py [OUT_DIR]`` (default: notebooks/).
"""
import sys

import nbformat as nbf

from bevlib.experiments.csc.ablation import AblationParams
from bevlib.experiments.csc.table2 import Table2Params
from bevlib.notebooks import NOTEBOOKS, build, parameters_cell, write

_SETUP = ("from IPython.display import Image, Markdown, display\n"
          "from bevlib import params as _params\n"
          "from bevlib.experiments.csc import study as st\n"
          "from bevlib.experiments.csc import {module} as nbm\n"
          "\n"
          "P = _params.collect(globals(), nbm.{cls})   # a mistyped parameter fails here, by name\n"
          "out = P.out_dir\n"
          "P")
_PREPARE = ("data = st.prepare(P)\n"
            "caption = data.caption()\n"
            "print(caption)")


def _header(cls):
    return parameters_cell(cls, {}, "# Parameters (papermill overrides these; the defaults are the embedded default)")


def table2_notebook():
    cells = [nbf.v4.new_markdown_cell(
        "# CSC (chen2024), Table 2: LiDAR semantic segmentation after image-to-LiDAR pre-training\n\n"
        "A sparse-voxel MinkUNet pre-trains without labels on the embedded world's train keyframes by distilling a "
        "frozen 2D encoder: SLidR contrasts superpoints with their SLIC superpixels (L_sp, Eq. 5); CSC uses "
        "semantic (VFM) superpixels and adds the contrast of every superpoint with cross-scene semantic prototypes "
        "blended by MMPB (L_pro, Eqs. 1-4, from epoch lambda, Eq. 6). Each backbone is then evaluated by linear "
        "probing (frozen, 100 % of the labelled sweeps) and by fine-tuning on 1 / 5 / 10 / 25 / 100 % of them; "
        "mIoU over the 16 lidarseg classes of the val sweeps. The paper's nuScenes numbers stand beside ours, "
        "labelled reported.\n\n"
        "Run headless: `papermill notebooks/csc_table2.ipynb out.ipynb -f params/csc_table2/smoke.yaml`.")]
    cells.append(_header(Table2Params))
    cells.append(nbf.v4.new_code_cell(_SETUP.format(module="table2", cls="Table2Params")))
    cells.append(nbf.v4.new_code_cell(_PREPARE))
    cells.append(nbf.v4.new_markdown_cell("## Pre-training and evaluation (finished runs are reused)"))
    cells.append(nbf.v4.new_code_cell("results = nbm.run_tables(data)"))
    cells.append(nbf.v4.new_code_cell(
        "paths = nbm.write(results, data, out)\n"
        "display(Markdown((out / 'table2.md').read_text()))\n"
        "display(Image(str(out / 'pretrain_curves.png')))"))
    cells.append(nbf.v4.new_markdown_cell(
        "## Direction check\n\nThe paper: CSC beats SLidR in linear probing and at 1 % and 5 % labels, and "
        "pre-training beats a random initialisation. Judged on per-seed differences, paired by seed."))
    cells.append(nbf.v4.new_code_cell(
        "checks = nbm.direction_check(out)\n"
        "display(Markdown((out / 'direction_check.md').read_text()))"))
    return build(cells, id_format="csc-t2-{}")


def ablation_notebook():
    cells = [nbf.v4.new_markdown_cell(
        "# CSC (chen2024), Table 5: what each component adds\n\n"
        "(1) SP: SLidR's superpixel-superpoint contrast with SLIC superpixels; (2) the same with VFM superpixels "
        "(here: the embedded world's camera semantics, split into regions, with wrong signs mixed in); (3) plus the "
        "prototype contrast L_pro against the raw 3D prototypes; (4) plus MMPB, the full CSC. Linear probing and "
        "fine-tuning on 1 / 5 / 10 % of the labels, mIoU over the val sweeps, the paper's numbers beside ours.\n\n"
        "Run headless: `papermill notebooks/csc_ablation.ipynb out.ipynb -f params/csc_ablation/smoke.yaml`.")]
    cells.append(_header(AblationParams))
    cells.append(nbf.v4.new_code_cell(_SETUP.format(module="ablation", cls="AblationParams")))
    cells.append(nbf.v4.new_code_cell(_PREPARE))
    cells.append(nbf.v4.new_markdown_cell(
        "## SLIC vs VFM superpixels, and the sweep coloured by superpoint\n\n"
        "SLIC cuts an image into compact regions of similar colour that do not know what they show; the VFM's "
        "superpixels follow the semantic classes, so one object class is one sign across scenes."))
    cells.append(nbf.v4.new_code_cell("display(Image(str(nbm.superpixel_figure(data, out / 'superpixels.png'))))"))
    cells.append(nbf.v4.new_markdown_cell("## Pre-training and evaluation (finished runs are reused)"))
    cells.append(nbf.v4.new_code_cell("results = nbm.run_tables(data)"))
    cells.append(nbf.v4.new_code_cell(
        "paths = nbm.write(results, data, out)\n"
        "display(Markdown((out / 'table5.md').read_text()))\n"
        "display(Image(str(out / 'pretrain_curves.png')))"))
    cells.append(nbf.v4.new_markdown_cell(
        "## The sweep in 3D\n\nPick the colouring in the dropdown: SLIC superpoints, the VFM's semantic signs, the "
        "lidarseg classes, or the first three principal components of the per-point features of the SLidR and the "
        "CSC backbones (first seed) as RGB. Also written to `points_view.html`."))
    cells.append(nbf.v4.new_code_cell("nbm.points_view(data, results, out / 'points_view.html')"))
    cells.append(nbf.v4.new_markdown_cell(
        "## Direction check\n\nThe paper: VFM superpixels improve linear probing over SLIC, MMPB beats the raw 3D "
        "prototypes, and the full CSC beats SLidR at 1 % labels. Judged on per-seed differences, paired by seed."))
    cells.append(nbf.v4.new_code_cell(
        "checks = nbm.direction_check(out)\n"
        "display(Markdown((out / 'direction_check.md').read_text()))"))
    return build(cells, id_format="csc-abl-{}")


def main(out_dir=NOTEBOOKS):
    """Write both notebooks into ``out_dir`` (default: the repository's notebooks/); returns their paths."""
    return [write(table2_notebook(), "csc_table2.ipynb", out_dir),
            write(ablation_notebook(), "csc_ablation.ipynb", out_dir)]


if __name__ == "__main__":
    main(*sys.argv[1:2])
