"""BEV heatmaps of the camera branch under each dataset's prompt (combined-datasets-bev-pretraining.md,
Sec. 4.3 RQ2 Fig. 3 and Appendix D Fig. 4; issue 13 deliverable 7, the figure part).

The paper evaluates one (Lyft) sample "applying various prompts or using the model without prompt
training, and visualize[s] the BEV heatmap from the image modality". It does not say how the BEV
features become a heatmap; ours (:func:`bev_heatmap`) is the L2 norm over the channels of the camera
BEV ``BEV_img = LSS(f_img(I))`` (Eq. 2, before the projection head: :meth:`.pretrain.CombinedModel.camera_bev`),
divided by its maximum so each map lies in [0, 1] (0 = no feature, e.g. cells no camera frustum reaches;
per-map scaling, so maps show where the features concentrate, not how large they are across prompts).
The panels draw it on a power colour scale (:data:`DISPLAY_GAMMA`): LSS sum-pools the frustum, so the
cells next to the ego would otherwise hide everything else.

Orientation: the captions say "the x-axis represents the forward (and backward) direction of the
vehicle", i.e. the plot's horizontal axis is the ego x axis. The figures therefore show ego +x
(forward) to the **right** and ego +y (left) **up** (a right-handed top view): :func:`display_heatmap`
rotates a map of the grid's native layout (row 0 = front edge, column 0 = left edge; :mod:`bevlib.bev`,
:mod:`bevlib.voxel`) 90 degrees clockwise, and :func:`display_extent` gives the matching
``imshow(extent=...)`` in ego metres.

* :func:`bev_heatmap`: one sample, one prompt (``"none"`` | ``"own"`` | a dataset index) -> (S, S) map.
* :func:`heatmap_figure`: static Fig. 3/4-style PNG, one panel per prompt (+ a model trained without
  prompts), shared colour bar, ego marker.
* :func:`heatmap_widget`: the ipywidgets viewer (prompt dropdown, sample slider).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bevlib.models.promptnorm import prompt_norms, set_prompt_mode

__all__ = ["bev_heatmap", "display_heatmap", "display_extent", "heatmap_figure", "heatmap_widget"]

#: Colour scale of the panels: value ** gamma (matplotlib PowerNorm), so that cells far from the ego show.
DISPLAY_GAMMA = 0.4
COLORBAR_LABEL = f"norm / max (power scale {DISPLAY_GAMMA})"
#: Dropdown value of the widget's "model without prompt training" entry.
BASELINE = "__baseline__"


def _check_prompt(model, prompt):
    norms = prompt_norms(model)
    if isinstance(prompt, bool) or not (prompt in ("none", "own") or isinstance(prompt, (int, np.integer))):
        raise ValueError(f"prompt must be 'none', 'own' or a dataset index, got {prompt!r}")
    if isinstance(prompt, (int, np.integer)) and not norms:
        raise ValueError(f"prompt {int(prompt)} needs a model with PromptNorm (CombinedConfig.prompt=True); "
                         "use prompt='none' for a model trained without prompts")
    return int(prompt) if isinstance(prompt, (int, np.integer)) else prompt


@torch.no_grad()
def bev_heatmap(model, batch: dict, prompt="own", sample: int = 0) -> np.ndarray:
    """The camera branch's BEV features of one sample as a heatmap (paper Figs. 3/4; module docstring).

    The model runs in eval mode under the given prompt; every PromptNorm's prompt mode and the model's
    train / eval flag are restored afterwards (also on error).

    Args:
        model: a :class:`.pretrain.CombinedModel` (with or without PromptNorm).
        batch: :func:`.data.collate_keyframes` output: ``images`` (B, 6, 3, h, w) float32 ImageNet-normalised,
            ``K`` (B, 6, 3, 3) pixels, ``ego_T_cam`` (B, 6, 4, 4) camera (OpenCV) -> ego metres, and
            ``dataset_index`` (B,) int64 (needed for ``"own"`` on a prompted model).
        prompt: ``"none"`` (plain LayerNorms, Table 5's "w/o prompt"), ``"own"`` (the sample's own
            dataset's prompt) or an int d (dataset d's prompt); for a model without PromptNorm only
            ``"none"`` / ``"own"`` (both the same plain model).
        sample: which sample of the batch.
    Returns: (S, S) float32 in [0, 1] in the grid's native layout (row 0 = front edge x_max, column 0 =
        left edge y_max; :meth:`CombinedConfig.lss_grid`): ``||BEV_img[:, i, j]||_2 / max``; all zeros
        when every cell is zero. Use :func:`display_heatmap` to show it forward-right.
    Raises: ValueError naming ``prompt`` (bad value, an index on a prompt-less model, out of range),
        ``sample`` (out of range) or ``batch`` (missing key; ``dataset_index`` for ``"own"``).
    Source: paper Sec. 4.3 (RQ2, Fig. 3), Appendix D (Fig. 4); Eq. 2 (camera BEV); Eq. 5 (prompts).
    """
    prompt = _check_prompt(model, prompt)
    for key in ("images", "K", "ego_T_cam"):
        if key not in batch:
            raise ValueError(f"batch has no {key!r} (expected a collate_keyframes batch)")
    B = batch["images"].shape[0]
    if isinstance(sample, bool) or not 0 <= int(sample) < B:
        raise ValueError(f"sample must lie in [0, {B}), got {sample!r}")
    s = int(sample)
    norms = prompt_norms(model)
    index = None
    if norms and prompt == "own":
        if batch.get("dataset_index") is None:
            raise ValueError("batch has no 'dataset_index', needed for prompt='own'")
        index = torch.as_tensor(batch["dataset_index"]).reshape(-1)[s:s + 1].long()
    saved_modes = [m.prompt_mode for m in norms]
    was_training = model.training
    try:
        set_prompt_mode(model, prompt)   # validates an index's range; a no-op without PromptNorm
        model.eval()
        bev = model.camera_bev(batch["images"][s:s + 1], batch["K"][s:s + 1], batch["ego_T_cam"][s:s + 1], index)
    finally:
        for m, mode in zip(norms, saved_modes):
            m.prompt_mode = mode
        model.train(was_training)
    norm = torch.linalg.vector_norm(bev[0].double(), dim=0)
    peak = float(norm.max())
    out = norm / peak if peak > 0 else norm
    return out.float().cpu().numpy()


def display_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """Native-layout (S, S) map (row 0 = front, column 0 = left) -> display layout with ego +x (forward)
    to the right and +y (left) up: display[r, c] = heatmap[S - 1 - c, r] (90 degrees clockwise).
    Show it with ``imshow(..., origin="upper", extent=display_extent(grid))``.
    Raises: ValueError for a non-2-D input."""
    a = np.asarray(heatmap)
    if a.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (S, S), got shape {a.shape}")
    return np.ascontiguousarray(np.rot90(a, -1))


def display_extent(grid) -> tuple[float, float, float, float]:
    """``imshow`` extent (left, right, bottom, top) = (x_min, x_max, y_min, y_max) ego metres of a
    :class:`bevlib.voxel.VoxelGrid` / :class:`bevlib.bev.BEVGrid` for :func:`display_heatmap` maps."""
    return float(grid.x_min), float(grid.x_max), float(grid.y_min), float(grid.y_max)


def _panel(ax, heatmap, grid, title, cmap):
    from matplotlib.colors import PowerNorm

    # LSS sum-pools the frustum, so the few cells next to the ego dwarf the rest on a linear scale
    im = ax.imshow(display_heatmap(heatmap), origin="upper", extent=display_extent(grid), cmap=cmap,
                   norm=PowerNorm(DISPLAY_GAMMA, vmin=0.0, vmax=1.0), interpolation="nearest")
    # ego at the origin, the triangle pointing forward (+x, right)
    ax.plot([0.0], [0.0], marker=">", markersize=7, color="white", markeredgecolor="black", linestyle="none")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x forward (m)", fontsize=8)
    ax.set_ylabel("y left (m)", fontsize=8)
    ax.tick_params(labelsize=7)
    return im


def heatmap_figure(model, batch: dict, prompts: dict, path, baseline=None, sample: int = 0,
                   baseline_label: str = "w/o prompt training", title: str | None = None,
                   cmap: str = "jet", dpi: int = 110) -> Path:
    """Static Fig. 3/4-style PNG: one BEV heatmap panel per prompt of ``model`` (+ one of ``baseline``),
    forward to the right, a shared [0, 1] colour bar and an ego marker; written atomically.

    Args:
        model: :class:`.pretrain.CombinedModel` (trained with prompts).
        batch: as :func:`bev_heatmap`. sample: which sample of it.
        prompts: ``{panel title: prompt}`` in panel order, prompt as :func:`bev_heatmap` (e.g.
            ``{"nuScenes prompt": 0, "Lyft prompt": 1, "ONCE prompt": 2}``); may be empty with a baseline.
        path: output image (format from the suffix). baseline: an optional second model ("without
            prompt training"), drawn with prompt ``"none"``. baseline_label: its panel title.
        title: figure title. cmap: matplotlib colour map. dpi: resolution.
    Returns: the written path.
    Raises: ValueError when there is no panel, or from :func:`bev_heatmap`.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from bevlib.io import atomic_savefig

    panels = [(name, bev_heatmap(model, batch, p, sample)) for name, p in dict(prompts).items()]
    if baseline is not None:
        panels.append((baseline_label, bev_heatmap(baseline, batch, "none", sample)))
    if not panels:
        raise ValueError("prompts is empty and there is no baseline: nothing to draw")
    grid = model.cfg.lss_grid()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels) + 1.0, 3.2), squeeze=False,
                             constrained_layout=True)
    im = None
    for ax, (name, hm) in zip(axes[0], panels):
        im = _panel(ax, hm, grid, name, cmap)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.85, label=COLORBAR_LABEL)
    if title:
        fig.suptitle(title, fontsize=10)
    try:
        out = atomic_savefig(fig, Path(path), dpi=dpi)
    finally:
        plt.close(fig)
    return Path(out)


def heatmap_widget(model, items, names, baseline=None, cmap: str = "jet"):
    """Interactive Figs. 3/4: a dropdown for the prompt (each dataset's, the sample's own, none, and the
    model "w/o prompt training" when ``baseline`` is given) and a slider for the sample; draws the
    heatmap (forward right) into an ``ipywidgets.Output``. Heatmaps are cached per (sample, choice).

    Args:
        model: :class:`.pretrain.CombinedModel`.
        items: a sequence / dataset of :class:`.data.KeyframeItems` (or :func:`.data.mixed_keyframes`)
            items (non-empty); each is batched alone with :func:`.data.collate_keyframes`.
        names: dataset names by dataset index (e.g. ``["nuscenes", "lyft", "once"]``); for a prompted
            model exactly ``cfg.n_datasets`` of them.
        baseline: optional model trained without prompts (drawn with prompt ``"none"``).
        cmap: matplotlib colour map.
    Returns: an ``ipywidgets.VBox`` with ``.update()`` (redraw now; returns the drawn (S, S) native-layout
        heatmap) and ``.controls`` ({"prompt": Dropdown, "sample": IntSlider}).
    Raises: ValueError for empty ``items`` or a ``names`` length that does not match the prompts.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from .data import collate_keyframes

    if items is None or len(items) == 0:
        raise ValueError("items must be non-empty")
    names = list(names)
    n_prompts = model.cfg.n_datasets if prompt_norms(model) else 0
    if n_prompts and len(names) != n_prompts:
        raise ValueError(f"names must hold one name per dataset prompt ({n_prompts}), got {len(names)}")
    options = [(f"{n} prompt", d) for d, n in enumerate(names[:n_prompts])]
    if n_prompts:
        options.append(("own dataset's prompt", "own"))
    options.append(("no prompt (plain LayerNorm)", "none"))
    if baseline is not None:
        options.append(("w/o prompt training", BASELINE))
    prompt_dd = W.Dropdown(options=options, value=options[0][1], description="prompt")
    sample_sl = W.IntSlider(value=0, min=0, max=len(items) - 1, description="sample", continuous_update=False)
    out = W.Output()
    grid = model.cfg.lss_grid()
    cache: dict = {}

    def heatmap(i, choice):
        if (i, choice) not in cache:
            batch = collate_keyframes([items[i]])
            cache[(i, choice)] = (bev_heatmap(baseline, batch, "none") if choice == BASELINE
                                  else bev_heatmap(model, batch, choice)), int(batch["dataset_index"][0])
        return cache[(i, choice)]

    def update(*_):
        i, choice = sample_sl.value, prompt_dd.value
        hm, d = heatmap(i, choice)
        data_name = names[d] if 0 <= d < len(names) else f"dataset {d}"
        out.clear_output(wait=True)
        with out:
            fig, ax = plt.subplots(figsize=(4.6, 3.8), constrained_layout=True)
            im = _panel(ax, hm, grid, f"sample {i} ({data_name}), {prompt_dd.label}", cmap)
            fig.colorbar(im, ax=ax, shrink=0.85, label=COLORBAR_LABEL)
            plt.show()
            plt.close(fig)
        return hm

    prompt_dd.observe(update, names="value")
    sample_sl.observe(update, names="value")
    box = W.VBox([W.HBox([prompt_dd, sample_sl]), out])
    box.update = update
    box.controls = {"prompt": prompt_dd, "sample": sample_sl}
    return box
