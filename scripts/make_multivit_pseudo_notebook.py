"""Writes notebooks/multivit_pseudo_labels.ipynb (kept as code so the notebook stays thin and reviewable).

Run from the repository root: ``python scripts/make_multivit_pseudo_notebook.py [OUT_DIR]`` (default: notebooks/).
"""
import sys

import nbformat as nbf

from bevlib.experiments.multivit.pseudo_labels import PseudoLabelParams
from bevlib.notebooks import NOTEBOOKS, build, parameters_cell, write

NAME = "multivit_pseudo_labels.ipynb"

cells = [nbf.v4.new_markdown_cell(
    "# lukkassen2024 MultiViT: camera pseudo-labels from 3D boxes (Sec. 3.1, Sec. 4.2, Table 2, Fig. 4)\n\n"
    "Each annotated 3D box is projected into the camera (convex hull of its corners, clipped at the near plane); "
    "the rectangle around the projection prompts a mask; the mask gets the box's class. Boxes wholly hidden behind "
    "nearer boxes are dropped, boxes mostly outside the image are labelled *ignore*, the rest of the image is "
    "background, and nearer objects are painted over farther ones.\n\n"
    "The paper's mask source is SAM (ViT-B) and its Table 2 measures the labels on nuImages mini. Here the "
    "**embedded world** stands in: SAM is replaced by the object's exact silhouette with SAM-like border errors "
    "(their size is a parameter, not a measurement of SAM), and the labels are scored against the world's exact "
    "camera semantics; the paper's numbers are beside them, labelled reported. The last part labels the six "
    "cameras of the **real nuScenes keyframe** and checks them with LiDAR points inside the boxes.\n\n"
    "Run headless: `papermill notebooks/multivit_pseudo_labels.ipynb out.ipynb -f params/multivit_pseudo_labels/smoke.yaml`.")]
cells.append(parameters_cell(PseudoLabelParams, {}, "# Parameters (papermill overrides these; the defaults are the embedded default)"))
cells.append(nbf.v4.new_code_cell(
    "from IPython.display import Markdown, Image, display\n"
    "from bevlib import params as _params\n"
    "from bevlib.experiments.multivit import pseudo_labels\n"
    "\n"
    "P = _params.collect(globals(), pseudo_labels.PseudoLabelParams)   # a mistyped parameter fails here, by name\n"
    "out = P.out_dir\n"
    "P"))
cells.append(nbf.v4.new_markdown_cell("## Labels (generated once, cached) and the Table 2 analogue"))
cells.append(nbf.v4.new_code_cell(
    "result = pseudo_labels.evaluate(P)\n"
    "print(f\"{result['data_desc']}: {len(result['tokens'])} camera images, labeller {result['labeler'].name}; \"\n"
    "      f\"{result['made']} labels made in {result['label_s']:.1f} s, evaluated in {result['eval_s']:.1f} s\")"))
cells.append(nbf.v4.new_code_cell(
    "caption = (f\"Pseudo-labels ({result['labeler'].name}) against the exact camera semantics of {result['data_desc']}, \"\n"
    "           f\"{len(result['tokens'])} images; IoU per class (%) and kept boxes. 'annotated objects only' leaves out \"\n"
    "           f\"object pixels without a box (the world annotates objects within 60 m), as nuImages boxes every object.\")\n"
    "csv_path, md_path = pseudo_labels.write_table2(result, out, caption)\n"
    "display(Markdown(md_path.read_text()))"))
cells.append(nbf.v4.new_markdown_cell("## Fig. 4 analogue: prompts, exact semantics, pseudo-label, correct (blue) / wrong (yellow) pixels"))
cells.append(nbf.v4.new_code_cell(
    "display(Image(filename=str(pseudo_labels.plot_world_example(result, out / 'fig4_world.png'))))"))
cells.append(nbf.v4.new_markdown_cell(
    "## Real nuScenes keyframe: labels of the six cameras and the LiDAR check\n\n"
    "Projected-hull masks (SAM masks when `sam_weights` is set). Green dots: LiDAR points inside a kept box that "
    "land on that box's pixels; red: on another box's pixels or the background (occlusion, or a loose mask)."))
cells.append(nbf.v4.new_code_cell(
    "real = None\n"
    "if P.real_keyframe and pseudo_labels.real_keyframe_available():\n"
    "    real = pseudo_labels.real_keyframe_box_labels(out / 'real_keyframe', P.sam_weights, min_inside=P.min_inside)\n"
    "    display(Markdown(open(real['files']['md']).read()))\n"
    "    display(Image(filename=real['files']['mosaic']))\n"
    "else:\n"
    "    print('real keyframe part skipped (real_keyframe=False, or no ../shared/nuscenes-keyframe)')"))
cells.append(nbf.v4.new_code_cell("pseudo_labels.write_summary(out, result, real)"))
nb = build(cells)   # fixed ids: regenerating gives the same bytes


def main(out_dir=NOTEBOOKS):
    """Write the notebook into ``out_dir`` (default: the repository's notebooks/); returns its path."""
    return write(nb, NAME, out_dir)


if __name__ == "__main__":
    main(*sys.argv[1:2])
