"""Writes notebooks/viewer.ipynb (kept as code so the notebook stays thin; committed without outputs).

Run from the repository root: ``.venv/bin/python scripts/make_viewer_notebook.py``.
"""
from pathlib import Path

import nbformat as nbf

from bevlib.params import parameters_source
from bevlib.viewer import ViewerParams

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "viewer.ipynb"

nb = nbf.v4.new_notebook()
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
cells = [nbf.v4.new_markdown_cell(
    "# BEV viewer\n\n"
    "Scenes and keyframes of a nuScenes-format dataset: the six cameras in the rig layout with the BEV ground "
    "truth and a checkpoint's BEV prediction **rendered into the cameras** (`bevlib.render.render_bev`), the "
    "camera pseudo-labels, LiDAR points, and a metric BEV panel with the ego box and the camera frustums. "
    "Click a BEV cell to see where it lands in each camera.\n\n"
    "`dataroot = None` views the **embedded world** (generated on first use, a few seconds). Works in JupyterLab "
    "and as a page: `voila notebooks/viewer.ipynb`. Every parameter can also be set by an environment variable "
    "`BEVLIB_VIEWER_<NAME>` or, under voila, a URL query (`?world_keyframes=3`).")]
params = nbf.v4.new_code_cell(parameters_source(ViewerParams, {
    "dataroot": "None: the embedded world; or a nuScenes dataroot, e.g. ../shared/nuscenes-keyframe",
    "checkpoint": "optional: a run directory (outputs/runs/...) or a checkpoint .pt file",
    "model_config": "the checkpoint's model config (dict or JSON path); None: the run's config.json",
    "world_seed": "embedded world only",
    "image_wh": "display size of one camera image"}, "# Parameters"))
params.metadata["tags"] = ["parameters"]
cells.append(params)
cells.append(nbf.v4.new_code_cell(
    "from bevlib.data.source import resolve_dataroot\n"
    "from bevlib.viewer import BEVViewer, viewer_params\n\n"
    "P = viewer_params(globals())   # + BEVLIB_VIEWER_* env vars and voila query parameters; typos fail by name\n"
    "viewer = BEVViewer(resolve_dataroot(P, progress=False)[0], P.version, checkpoint=P.checkpoint, model_config=P.model_config,\n"
    "                   image_wh=P.image_wh)\n"
    "viewer"))
for c, cid in zip(cells, ("intro", "parameters", "viewer")):
    c["id"] = cid   # fixed ids: regenerating gives the same bytes
nb.cells = cells
nbf.write(nb, str(OUT))
print(f"wrote {OUT}")
