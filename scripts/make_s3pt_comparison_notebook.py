"""Writes notebooks/s3pt_comparison.ipynb (kept as code so the notebook stays thin and reviewable).

Run from the repository root: ``python scripts/make_s3pt_comparison_notebook.py [OUT_DIR]`` (default: notebooks/).
"""
import sys

import nbformat as nbf

from bevlib.experiments.s3pt.comparison import ComparisonParams
from bevlib.notebooks import NOTEBOOKS, build, parameters_cell, write

NAME = "s3pt_comparison.ipynb"

cells = [nbf.v4.new_markdown_cell(
    "# wozniak2025 S3PT, Tables 2–3 and Fig. 7: DINO vs CrIBo vs S3PT, domain transfer, data and length\n\n"
    "DINO, CrIBo and S3PT pretrain a ViT self-supervised on the default embedded world's camera images (the "
    "nuScenes stand-in). Frozen-backbone Segmenter probes (linear, mask transformer) are then trained on the camera "
    "semantics of the same world (the nuImages stand-in) and of a second embedded world with another look — other "
    "rig, palette and weather — standing in for Cityscapes (Table 2). Table 3 tests each world's probe on the other "
    "world without retraining. Fig. 7 pretrains S3PT on a share of the train scenes and for fewer epochs. The "
    "paper's numbers are beside ours, labelled reported; an interactive view shows the spatial clusters of CrIBo "
    "and S3PT on one image next to its IP-Basic-completed LiDAR depth (Fig. 1 style).\n\n"
    "Run headless: `papermill notebooks/s3pt_comparison.ipynb out.ipynb -f params/s3pt_comparison/smoke.yaml`.")]
cells.append(parameters_cell(ComparisonParams, {}, "# Parameters (papermill overrides these; the defaults are the embedded default)"))
cells.append(nbf.v4.new_code_cell(
    "from IPython.display import Image, Markdown, display\n"
    "from bevlib import params as _params\n"
    "from bevlib.experiments.s3pt import comparison as cmp\n"
    "\n"
    "P = _params.collect(globals(), cmp.ComparisonParams)   # a mistyped parameter fails here, by name\n"
    "out = P.out_dir\n"
    "P"))
cells.append(nbf.v4.new_code_cell(
    "data = cmp.prepare_comparison(P)\n"
    "for d in (data.world, data.city):\n"
    "    print(f'{d.data_desc}: {len(d.train_items)} train / {len(d.val_items)} val camera images')\n"
    "display(Image(str(cmp.look_figure(data, out / 'worlds.png'))))"))
cells.append(nbf.v4.new_markdown_cell("## Tables 2 and 3 (finished runs are reused, also the ablation's CrIBo and S3PT runs)"))
cells.append(nbf.v4.new_code_cell("results = cmp.run_comparison(data)"))
cells.append(nbf.v4.new_markdown_cell("## Fig. 7: pretraining data share and length (S3PT, linear probe)"))
cells.append(nbf.v4.new_code_cell("fig7 = cmp.run_fig7(data)"))
cells.append(nbf.v4.new_code_cell(
    "paths = cmp.write_comparison_tables(results, fig7, out, cmp.comparison_caption(data), P.heads_eval)\n"
    "for name in ('table2', 'table3', 'fig7'):\n"
    "    display(Markdown((out / f'{name}.md').read_text()))\n"
    "display(Image(str(out / 'fig7.png')))"))
cells.append(nbf.v4.new_markdown_cell(
    "## Spatial clusters of one image: CrIBo vs S3PT, and the completed depth (Fig. 1 style)\n\n"
    "The teacher's patch tokens of one camera image, clustered as in pretraining (each run's own cluster count, "
    "Sinkhorn iterations and depth weight), beside the image's LiDAR depth completed with IP-Basic. The widget "
    "picks the image and the cluster count and switches the depth term."))
cells.append(nbf.v4.new_code_cell(
    "view = cmp.cluster_view(data, out / 'clusters.png')\n"
    "display(Image(str(out / 'clusters.png')))\n"
    "view"))
cells.append(nbf.v4.new_markdown_cell(
    "## Direction check\n\nThe paper (ViT-S, 500 epochs): S3PT beats CrIBo on every dataset and head and DINO in "
    "linear probing; CrIBo beats DINO in linear probing but loses with the mask transformer; S3PT transfers best "
    "both ways; more pretraining data and longer pretraining help. Judged on per-seed differences, paired by seed."))
cells.append(nbf.v4.new_code_cell(
    "checks = cmp.direction_check(out)\n"
    "display(Markdown((out / 'direction_check.md').read_text()))"))
nb = build(cells, id_format="s3pt-cmp-{}")


def main(out_dir=NOTEBOOKS):
    """Write the notebook into ``out_dir`` (default: the repository's notebooks/); returns its path."""
    return write(nb, NAME, out_dir)


if __name__ == "__main__":
    main(*sys.argv[1:2])
