"""Figures for the CSC / SLidR notebooks (chen2024 CSC, Secs. 3.1-3.2: superpixels and superpoints).

* :func:`superpixel_comparison_figure`: one camera's SLIC superpixels (SLidR) next to the VFM
  stand-in's semantic superpixels coloured by their semantic signs, and the bird's-eye view of the
  sweep coloured by superpoint (a static PNG; matplotlib ``Figure`` on the Agg canvas, no pyplot).
* :func:`feature_pca_rgb`: per-point features -> RGB by their first three principal components
  (the usual way to look at learnt 3D features, e.g. a pre-trained MinkUNet's output).
* :func:`points_view` / :func:`write_points_view`: an interactive plotly 3D view of the sweep with a
  dropdown between colourings (superpoint ids, semantic classes, feature PCA...), usable in
  JupyterLab and in a static HTML file without ipywidgets.

Inputs are plain numpy arrays, e.g. the fields of a :class:`bevlib.experiments.csc.pretrain.CSCItems`
item (``points[:, :3]``, ``superpoint``, ``superpixels``, ``signs``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ...data.superpoints import id_colours


def _edges(ids: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour lies in another region."""
    edge = np.zeros(ids.shape, bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    return edge


def _id_map(ids, name: str, hw: tuple[int, int]) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.shape != hw or not np.issubdtype(ids.dtype, np.integer) or (ids.size and ids.min() < 0):
        raise ValueError(f"{name} must be an (H, W) = {hw} map of int ids >= 0, got {ids.dtype} {ids.shape}")
    return ids.astype(np.int64)


def superpixel_comparison_figure(image, slic_ids, semantic_ids, semantic_signs, class_names: Sequence[str],
                                 points_xy, superpoint_ids, path, title: str | None = None) -> Path:
    """Save a three-panel PNG comparing SLidR's and CSC's superpixels of one camera, and the sweep's superpoints.

    Panels: (a) "SLIC (SLidR)": the image with the SLIC superpixel boundaries in white;
    (b) "VFM superpixels (semantic signs)": the image blended half-and-half with the semantic
    superpixels coloured by their semantic sign (categorical colours, a legend of the signs present
    in this image) and their boundaries in white; (c) "sweep coloured by superpoint": bird's-eye
    view of the whole sweep in the ego frame, forward (x) up and left (y) to the left (axes in
    metres, true values, equal aspect), points coloured by superpoint id
    (:func:`bevlib.data.superpoints.id_colours`), points seen by no camera small and light grey.

    Args:
        image: (H, W, 3) uint8 RGB of one camera.
        slic_ids: (H, W) int superpixel ids >= 0 of that image (e.g.
            :func:`bevlib.data.superpixels.slic_superpixels`).
        semantic_ids: (H, W) int ids 0..S_sem-1 (e.g. :func:`bevlib.data.superpixels.semantic_superpixels`).
        semantic_signs: (S_sem,) int >= 0, the semantic class of each semantic superpixel id
            (at least ``semantic_ids.max() + 1`` entries).
        class_names: str per class, indexed by sign (longer than the largest sign used).
        points_xy: (P, 2) float ego-frame x (forward), y (left), metres, of the whole sweep.
        superpoint_ids: (P,) int superpoint of each point, -1 = seen by no camera.
        path: output file (.png; the format follows the suffix).
        title: optional figure title.
    Returns: the written path (atomic write, :func:`bevlib.io.atomic_savefig`).
    Raises: ValueError naming ``image``, ``slic_ids``, ``semantic_ids``, ``semantic_signs``,
        ``class_names``, ``points_xy`` or ``superpoint_ids`` on a bad shape, dtype or value.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from ...io import atomic_savefig

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    hw = image.shape[:2]
    slic = _id_map(slic_ids, "slic_ids", hw)
    sem = _id_map(semantic_ids, "semantic_ids", hw)
    signs = np.asarray(semantic_signs)
    if (signs.ndim != 1 or not np.issubdtype(signs.dtype, np.integer) or len(signs) <= sem.max()
            or (signs.size and signs.min() < 0)):
        raise ValueError(f"semantic_signs must be (S_sem,) int >= 0 with S_sem > semantic_ids.max() = {sem.max()}, "
                         f"got {signs.dtype} {signs.shape}")
    signs = signs.astype(np.int64)
    names = list(class_names)
    sign_map = signs[sem]
    present = np.unique(sign_map)
    if len(names) <= present.max() or not all(isinstance(n, str) for n in names):
        raise ValueError(f"class_names must be strings indexed by sign (> {present.max()} of them), "
                         f"got {len(names)} entries")
    xy = np.asarray(points_xy, np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"points_xy must be (P, 2) ego x, y metres, got {xy.shape}")
    sp = np.asarray(superpoint_ids)
    if sp.shape != (len(xy),) or not np.issubdtype(sp.dtype, np.integer):
        raise ValueError(f"superpoint_ids must be ({len(xy)},) int for points_xy {xy.shape}, got {sp.dtype} {sp.shape}")

    # A class keeps its colour across figures while tab20 can hold every class (the world's few
    # camera classes); with more classes (ADE20K's 150) ranking the signs present keeps them apart.
    # tab20 holds dark / light pairs: the dark ten first, so neighbouring signs are not look-alikes
    tab20 = colormaps["tab20"]
    palette = [tab20(i)[:3] for i in (*range(0, 20, 2), *range(1, 20, 2))]
    if len(names) <= len(palette):
        colour_of = {int(s): palette[int(s)] for s in present}
    else:
        colour_of = {int(s): palette[k % len(palette)] for k, s in enumerate(present)}
    lut = np.zeros((int(present.max()) + 1, 3))
    for s, c in colour_of.items():
        lut[s] = c

    shown_slic = image.copy()
    shown_slic[_edges(slic)] = 255
    blended = 0.5 * image.astype(np.float64) / 255.0 + 0.5 * lut[sign_map]
    blended[_edges(sem)] = 1.0

    H, W = hw
    panel_w = 5.0
    panel_h = max(panel_w * H / W, 3.5)
    fig = Figure(figsize=(3 * panel_w, panel_h + 1.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)      # a bare Figure on Agg: no pyplot state, no backend switch in a notebook
    ax_a, ax_b, ax_c = fig.subplots(1, 3)
    ax_a.imshow(shown_slic)
    ax_a.set_title(f"SLIC (SLidR): {len(np.unique(slic))} superpixels", fontsize=9)
    ax_b.imshow(np.clip(blended, 0.0, 1.0))
    ax_b.set_title(f"VFM superpixels (semantic signs): {len(np.unique(sem))}", fontsize=9)
    for ax in (ax_a, ax_b):
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
        ax.axis("off")
    ax_b.legend(handles=[Patch(color=colour_of[int(s)], label=f"{int(s)} {names[int(s)]}") for s in present],
                loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=min(4, len(present)), fontsize=7,
                frameon=False)

    seen = sp >= 0
    # unseen first and small, so the superpoints are drawn over them
    ax_c.scatter(xy[~seen, 1], xy[~seen, 0], s=0.3, c=[(0.85, 0.85, 0.85)], linewidths=0, rasterized=True)
    ax_c.scatter(xy[seen, 1], xy[seen, 0], s=1.0, c=id_colours(sp[seen]), linewidths=0, rasterized=True)
    # plotting (y, x) with the horizontal axis inverted is the (-y, x) view with the true y on the ticks
    ax_c.invert_xaxis()
    ax_c.set_aspect("equal", adjustable="datalim")
    ax_c.set_xlabel("y (m, left)", fontsize=8)
    ax_c.set_ylabel("x (m, forward)", fontsize=8)
    ax_c.tick_params(labelsize=7)
    n_sp = len(np.unique(sp[seen]))
    ax_c.set_title(f"sweep coloured by superpoint: {n_sp} superpoints, {int(seen.sum())}/{len(sp)} points seen",
                   fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return atomic_savefig(fig, path)


def feature_pca_rgb(features) -> np.ndarray:
    """Colour points by their features: the first three principal components as R, G, B.

    Each component's scores are mapped to [0, 1] by their 1st / 99th percentiles and clipped (so a
    few outliers do not wash out the colours). Components that do not exist (C < 3 features, or
    P <= 3 points: centred P points span at most P - 1 directions) or have no spread are 0.5.
    Signs follow scikit-learn's ``PCA`` convention (deterministic, arbitrary per component).

    Args:
        features: (P, C) float features (numpy or a torch tensor, any device), P >= 1, finite.
    Returns: (P, 3) float32 in [0, 1].
    Raises: ValueError naming ``features`` for a non-2-D input, no rows, or non-finite values.
    Source: ``sklearn.decomposition.PCA`` (computed in float64).
    """
    from sklearn.decomposition import PCA

    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"features must be (P, C) with P >= 1, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features must be finite (found NaN or inf)")
    P, C = x.shape
    out = np.full((P, 3), 0.5, np.float64)
    k = min(3, C, P - 1)
    if k < 1:
        return out.astype(np.float32)
    # random_state pins the randomized solver scikit-learn picks for large inputs
    scores = PCA(n_components=k, random_state=0).fit_transform(x)
    lo, hi = np.percentile(scores, [1.0, 99.0], axis=0)
    # rounding noise of a rank-deficient input must stay grey, not be stretched to full range
    tol = 1e-9 * max(float(np.abs(x - x.mean(axis=0)).max()), 1e-300)
    for j in range(k):
        if hi[j] - lo[j] > tol:
            out[:, j] = np.clip((scores[:, j] - lo[j]) / (hi[j] - lo[j]), 0.0, 1.0)
    return out.astype(np.float32)


def _rgb_strings(rgb: np.ndarray) -> list[str]:
    v = np.rint(np.clip(rgb, 0.0, 1.0) * 255).astype(np.int64)
    return [f"rgb({r},{g},{b})" for r, g, b in v]


def points_view(points_xyz, colourings: Mapping[str, np.ndarray], max_points: int = 30000, seed: int = 0,
                title: str | None = None, point_size: float = 1.5):
    """Interactive 3D view of one sweep with a dropdown to switch between colourings.

    One ``go.Scatter3d`` trace per colouring over the same points, only the first visible; a
    dropdown (``layout.updatemenus``, ``restyle`` buttons setting ``visible`` one-hot) switches
    between them in the browser itself, so the view works in JupyterLab and in a static HTML
    export (:func:`write_points_view`) without ipywidgets or a Python kernel.

    Args:
        points_xyz: (P, 3) float ego-frame x (forward), y (left), z (up), metres.
        colourings: name -> (P,) int ids (categorical: :func:`bevlib.data.superpoints.id_colours`,
            -1 grey; e.g. ``superpoint``, classes) or (P, 3) float RGB in [0, 1] (e.g.
            :func:`feature_pca_rgb`). Marker colours are ``'rgb(r,g,b)'`` strings (0..255).
        max_points: at most this many points are drawn: a uniform subset without replacement drawn
            by ``np.random.default_rng(seed)``, the same for every colouring, in original order.
        seed: seed of that subset.
        title: optional figure title.
        point_size: marker size in pixels (> 0).
    Returns: ``plotly.graph_objects.Figure`` (scene ``aspectmode="data"``: metres to scale).
    Raises: ValueError naming ``points_xyz`` (not (P, 3) finite), ``colourings`` (empty, a
        colouring neither (P,) int nor (P, 3) float in [0, 1]), ``max_points`` or ``point_size``.
    """
    import plotly.graph_objects as go

    xyz = np.asarray(points_xyz, np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or not np.isfinite(xyz).all():
        raise ValueError(f"points_xyz must be (P, 3) finite ego metres, got {xyz.shape}")
    P = len(xyz)
    if not isinstance(colourings, Mapping) or not colourings:
        raise ValueError("colourings must be a non-empty dict name -> (P,) int ids or (P, 3) RGB")
    if not (isinstance(max_points, (int, np.integer)) and max_points >= 1):
        raise ValueError(f"max_points must be an int >= 1, got {max_points!r}")
    if not point_size > 0:
        raise ValueError(f"point_size must be > 0, got {point_size!r}")
    checked = {}
    for name, c in colourings.items():
        if hasattr(c, "detach"):
            c = c.detach().cpu().numpy()
        c = np.asarray(c)
        if c.shape == (P,) and np.issubdtype(c.dtype, np.integer):
            checked[str(name)] = ("ids", c.astype(np.int64))
        elif (c.shape == (P, 3) and np.issubdtype(c.dtype, np.floating) and np.isfinite(c).all()
              and (c.size == 0 or (c.min() >= 0.0 and c.max() <= 1.0))):
            checked[str(name)] = ("rgb", c.astype(np.float64))
        else:
            raise ValueError(f"colourings[{name!r}] must be ({P},) int ids or ({P}, 3) float RGB in [0, 1] "
                             f"for points_xyz {xyz.shape}, got {c.dtype} {c.shape}")

    keep = np.arange(P)
    if P > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(P, size=int(max_points), replace=False))
    sub = xyz[keep]

    traces = []
    for i, (name, (kind, c)) in enumerate(checked.items()):
        c = c[keep]
        rgb = id_colours(c) if kind == "ids" else c
        hover = dict(text=[f"id {v}" for v in c], hovertemplate="%{text}<br>x %{x:.1f} y %{y:.1f} z %{z:.1f} m"
                                                               "<extra></extra>") if kind == "ids" else \
            dict(hovertemplate="x %{x:.1f} y %{y:.1f} z %{z:.1f} m<extra></extra>")
        traces.append(go.Scatter3d(x=sub[:, 0], y=sub[:, 1], z=sub[:, 2], mode="markers", name=name,
                                   visible=(i == 0), showlegend=False,
                                   marker=dict(size=point_size, color=_rgb_strings(rgb)), **hover))
    names = list(checked)
    buttons = [dict(label=n, method="restyle", args=[{"visible": [j == i for j in range(len(names))]}])
               for i, n in enumerate(names)]
    fig = go.Figure(data=traces)
    fig.update_layout(
        title=title, margin=dict(l=0, r=0, t=40 if title else 10, b=0),
        scene=dict(aspectmode="data", xaxis_title="x (m, forward)", yaxis_title="y (m, left)",
                   zaxis_title="z (m, up)"),
        updatemenus=[dict(type="dropdown", buttons=buttons, active=0, x=0.0, y=1.0, xanchor="left",
                          yanchor="top", showactive=True)])
    return fig


def write_points_view(fig, path) -> Path:
    """Write a plotly figure (e.g. :func:`points_view`) as a standalone HTML file, atomically.

    The plotly.js library is loaded from its CDN (a small file; viewing it needs the internet).

    Args:
        fig: ``plotly.graph_objects.Figure``. path: output file (.html).
    Returns: the written path (:func:`bevlib.io.atomic_write_text`).
    """
    from ...io import atomic_write_text

    return atomic_write_text(path, fig.to_html(include_plotlyjs="cdn"))
