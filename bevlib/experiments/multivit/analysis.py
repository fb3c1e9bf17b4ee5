"""lukkassen2024 Sec. 4.5: the shared camera-LiDAR feature space of MultiViT (Table 5, Figs. 7, 8).

Pure functions; tasks and notebooks gather the features and call them:

* Table 5: per-class cosine similarity of the mean camera and mean LiDAR feature at the ViT
  encoder output, over correctly predicted pixels / points (:func:`class_cosine_update`,
  :func:`table5_rows`, :func:`write_table5`, the paper's values in :data:`REPORTED_TABLE5`).
  Encoder tokens become per-pixel / per-point features with :func:`tokens_to_pixels` /
  :func:`encoder_point_features`.
* Fig. 7: t-SNE of decoder point and pixel features, the same samples for every model
  (:func:`tsne_sample`, :func:`tsne_embed`, :func:`plot_tsne`, :func:`plotly_tsne`).
* Fig. 8: cosine similarity of a query pixel's feature to every pixel and point
  (:func:`similarity_maps`, :func:`plot_similarity`).

Label convention: camera labels are :data:`~bevlib.classes.MULTIVIT_CAMERA` indices, LiDAR labels
:data:`~bevlib.classes.NUSCENES_LIDARSEG_16` indices; the 10 object classes have the same indices
1..10 in both, so one :class:`~bevlib.metrics.ClassMeanCosine` over NUSCENES_LIDARSEG_16 takes
both (camera background 0 falls on the lidarseg ignore index 0 and is skipped).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...classes import NUSCENES_LIDARSEG_16, LabelSet
from ...io import atomic_savefig
from ...metrics import ClassMeanCosine
from ...tables import write_table

__all__ = ["TABLE5_CLASSES", "TABLE5_TITLES", "REPORTED_TABLE5", "tokens_to_pixels", "encoder_point_features",
           "table5_metric", "class_cosine_update", "table5_rows", "write_table5", "tsne_sample", "tsne_embed",
           "plot_tsne", "plotly_tsne", "similarity_maps", "plot_similarity"]

#: Table 5's rows: the 10 object classes (lidarseg-16 names, indices 1..10), in the paper's order.
TABLE5_CLASSES = ("barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
                  "traffic_cone", "trailer", "truck")
TABLE5_TITLES = ("barrier", "bicycle", "bus", "car", "construction", "motorcycle", "pedestrian", "traffic cone",
                 "trailer", "truck", "Mean")
_NAN = float("nan")
#: lukkassen2024 Table 5 (nuScenes mini, ViT from ImageNet-21k), column -> values for
#: :data:`TABLE5_TITLES` (10 classes, then Mean); NaN where the paper prints "-". Column names as printed.
REPORTED_TABLE5 = {
    "Seperate train": (_NAN, 0.30, 0.19, -0.06, _NAN, 0.26, 0.05, 0.37, _NAN, -0.17, 0.13),
    "Joint train": (_NAN, 0.04, 0.18, -0.03, _NAN, 0.23, -0.02, 0.10, _NAN, 0.16, 0.09),
    "Joint train, pull loss": (_NAN, 0.34, 0.16, 0.06, _NAN, 0.19, 0.24, 0.13, _NAN, 0.21, 0.19),
    "Joint train, pull + push loss": (_NAN, 0.47, 0.59, 0.73, _NAN, 0.29, 0.84, 0.47, _NAN, 0.70, 0.58),
}


def _tensor(x) -> torch.Tensor:
    return x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))


def _numpy(x, dtype=np.float64) -> np.ndarray:
    return np.asarray(x.detach().cpu() if torch.is_tensor(x) else x, dtype=dtype)


# ------------------------------------------------------------------------ tokens -> features
def tokens_to_pixels(tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Per-pixel encoder features: each pixel gets its patch's token (nearest, no interpolation).

    Pixel (y, x) belongs to token (y // P_H, x // P_W) with P = (H / gh, W / gw), the block the
    decoder's pixel shuffle writes that token to (RangeViT / CameraViT decoder).

    Args:
        tokens: (B, D, gh, gw) float, ViT encoder output (``out["tokens"]`` of RangeViT / CameraViT).
        hw: (H, W) image size in pixels, multiples of (gh, gw).
    Returns: (B, D, H, W), tokens' dtype and device.
    Raises: ValueError when tokens are not 4-D or H, W are not multiples of the grid.
    """
    if tokens.dim() != 4:
        raise ValueError(f"tokens must be (B, D, gh, gw), got {tuple(tokens.shape)}")
    (h, w), (gh, gw) = (int(s) for s in hw), tokens.shape[2:]
    if h % gh or w % gw or h < gh or w < gw:
        raise ValueError(f"hw {(h, w)} must be a positive multiple of the token grid {(gh, gw)}")
    return tokens.repeat_interleave(h // gh, dim=2).repeat_interleave(w // gw, dim=3)


def encoder_point_features(tokens: torch.Tensor, u: torch.Tensor, v: torch.Tensor, batch: torch.Tensor,
                           patch: tuple[int, int]) -> torch.Tensor:
    """Each range-image point's encoder feature: the token of the patch holding its pixel.

    Args:
        tokens: (B, D, gh, gw) float, RangeViT's encoder output.
        u: (N,) int64 column of each point's pixel (0..gw * P_W - 1).
        v: (N,) int64 row of each point's pixel (0..gh * P_H - 1).
        batch: (N,) int64 scan index (0..B-1).
        patch: (P_H, P_W) of the model (RangeViT: (2, 8)).
    Returns: (N, D), tokens' dtype.
    Raises: ValueError for mismatched lengths or a pixel / scan outside the token grid / batch.
    """
    if tokens.dim() != 4:
        raise ValueError(f"tokens must be (B, D, gh, gw), got {tuple(tokens.shape)}")
    if not (u.shape == v.shape == batch.shape) or u.dim() != 1:
        raise ValueError(f"u, v, batch must be (N,) alike, got {tuple(u.shape)}, {tuple(v.shape)}, "
                         f"{tuple(batch.shape)}")
    b, _, gh, gw = tokens.shape
    ph, pw = (int(p) for p in patch)
    r, c, bb = v.long() // ph, u.long() // pw, batch.long()
    if u.numel() and (int(u.min()) < 0 or int(v.min()) < 0 or int(r.max()) >= gh or int(c.max()) >= gw):
        raise ValueError(f"u / v outside the {gh * ph} x {gw * pw} image of the {gh} x {gw} token grid")
    if batch.numel() and (int(bb.min()) < 0 or int(bb.max()) >= b):
        raise ValueError(f"batch indices outside [0, {b})")
    return tokens[bb, :, r, c]


# ------------------------------------------------------------------------------------ Table 5
def table5_metric(dim: int) -> ClassMeanCosine:
    """A :class:`~bevlib.metrics.ClassMeanCosine` over NUSCENES_LIDARSEG_16 with modalities
    ("camera", "lidar") for D = ``dim`` features (see the module docstring for why one label set)."""
    return ClassMeanCosine(NUSCENES_LIDARSEG_16, dim, ("camera", "lidar"))


def class_cosine_update(cmc: ClassMeanCosine, modality: str, features, pred, labels, channel_dim: int = -1) -> None:
    """Add one modality's correctly predicted features to a Table 5 accumulator.

    lukkassen2024 Table 5: "The average feature for each class is calculated using features from
    correctly predicted points and pixels": only items with ``pred == labels`` count (an ignore
    label 255 is never predicted, so it never counts; the accumulator's own ignore index is skipped).

    Args:
        cmc: the accumulator (e.g. :func:`table5_metric`).
        modality: one of ``cmc.modalities`` ("camera" / "lidar").
        features: (N, D) float (or D at ``channel_dim``, e.g. (B, D, H, W) with ``channel_dim=1``),
            torch or numpy; the encoder output per point / pixel.
        pred: (N,) (or (B, H, W)) int predicted class.
        labels: same shape, int ground-truth class in ``cmc.labels``' indices.
    Raises: ValueError when pred and labels differ in shape, KeyError / ValueError as
        :meth:`ClassMeanCosine.update`.
    """
    p, y = _tensor(pred), _tensor(labels)
    if p.shape != y.shape:
        raise ValueError(f"pred {tuple(p.shape)} and labels {tuple(y.shape)} differ in shape")
    cmc.update(modality, features, y, mask=p.to(y.device) == y, channel_dim=channel_dim)


def _column(measured: ClassMeanCosine | Mapping[str, float]) -> list[float]:
    """Cosines for TABLE5_CLASSES (NaN where absent) and their mean over the present ones."""
    if isinstance(measured, ClassMeanCosine):
        pc = measured.per_class()
        vals = [float(pc[measured.labels.index(n)]) for n in TABLE5_CLASSES]
    else:
        vals = [float(measured.get(f"{n}_cos", _NAN)) for n in TABLE5_CLASSES]
    present = [x for x in vals if not math.isnan(x)]
    return vals + [float(np.mean(present)) if present else _NAN]


def table5_rows(measured: Mapping[str, ClassMeanCosine | Mapping[str, float]], reported: bool = True) -> list[dict]:
    """Table 5 as rows (one per object class, then "Mean"): measured columns beside the paper's.

    Args:
        measured: column name (e.g. "Joint train") -> a filled :class:`ClassMeanCosine` or its
            ``compute()`` dict (``"<class>_cos"`` keys, e.g. read back from a metrics file).
        reported: append the paper's four columns (:data:`REPORTED_TABLE5`) as
            ``"<column> (reported)"``.
    Returns: list of 11 dicts ``{"class": title, <column>: float, ...}``; NaN where a class has no
        correctly predicted feature in a modality (the paper's "-"). The measured Mean is the mean
        over the classes present, as the paper's.
    Raises: KeyError when a ClassMeanCosine's label set lacks a Table 5 class name.
    """
    cols = {name: _column(m) for name, m in measured.items()}
    if reported:
        cols.update({f"{k} (reported)": list(v) for k, v in REPORTED_TABLE5.items()})
    return [{"class": title, **{c: v[i] for c, v in cols.items()}} for i, title in enumerate(TABLE5_TITLES)]


def write_table5(rows: list[dict], out_dir, caption: str, stem: str = "table5_cosine") -> tuple[Path, Path]:
    """Write :func:`table5_rows` as ``<stem>.csv`` / ``.md`` (2 decimals, "-" for absent classes).

    Returns: (csv path, markdown path)."""
    columns = [k for k in rows[0] if k != "class"]
    dash = [{k: ("-" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    return write_table(dash, out_dir, stem, ("class",), columns, caption, title="Table 5.", digits=2)


# ------------------------------------------------------------------------------------- Fig. 7
def tsne_sample(labels_points, labels_pixels, per_class: int, seed: int,
                classes: Sequence[int] = range(1, 11)) -> tuple[np.ndarray, np.ndarray]:
    """Random points and pixels per class for Fig. 7; the draw depends only on the labels and the
    seed, so every model is plotted on the same samples ("for each plot, the same points and
    pixels are used").

    Args:
        labels_points: (Np,) int class of every LiDAR point (lidarseg-16 indices).
        labels_pixels: (Nc,) int class of every camera pixel (MULTIVIT_CAMERA indices).
        per_class: at most this many samples per class and modality (all when fewer).
        seed: numpy ``default_rng`` seed.
        classes: classes sampled (default the 10 object classes 1..10), in this order.
    Returns: (point indices, pixel indices), int64 arrays into the two label arrays, grouped by
        class in ``classes`` order (ascending within a class).
    Raises: ValueError for per_class < 1 or labels that are not 1-D.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    out = []
    for name, lab in (("labels_points", labels_points), ("labels_pixels", labels_pixels)):
        lab = np.asarray(lab.cpu() if torch.is_tensor(lab) else lab)
        if lab.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {lab.shape}")
        idx = []
        for c in classes:
            where = np.flatnonzero(lab == c)
            if where.size:
                idx.append(np.sort(rng.choice(where, min(per_class, where.size), replace=False)))
        out.append(np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, np.int64))
    return out[0], out[1]


def tsne_embed(features, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of features (van der Maaten & Hinton 2008), openTSNE if it imports, else
    scikit-learn's ``TSNE`` (PCA init, Euclidean, exact seed).

    Args:
        features: (N, C) float, torch or numpy (N >= 4).
        seed: random state.
        perplexity: capped at (N - 1) / 3 so that small samples work.
    Returns: (N, 2) float64 embedding.
    Raises: ValueError for a non-2-D input or N < 4.
    """
    x = _numpy(features)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"features must be (N, C) with N >= 4, got {x.shape}")
    perp = float(min(perplexity, (x.shape[0] - 1) / 3))
    try:
        from openTSNE import TSNE as OpenTSNE
    except ImportError:
        from sklearn.manifold import TSNE
        return TSNE(2, perplexity=perp, init="pca", random_state=seed).fit_transform(x).astype(np.float64)
    return np.asarray(OpenTSNE(n_components=2, perplexity=perp, random_state=seed).fit(x), dtype=np.float64)


def _check_tsne_inputs(embedding, labels, is_camera):
    e = np.asarray(embedding, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    cam = np.asarray(is_camera).astype(bool)
    if e.ndim != 2 or e.shape[1] != 2 or y.shape != (e.shape[0],) or cam.shape != y.shape:
        raise ValueError(f"embedding (N, 2), labels (N,), is_camera (N,) expected, got {e.shape}, {y.shape}, "
                         f"{cam.shape}")
    return e, y, cam


def plot_tsne(embedding, labels, is_camera, path, label_set: LabelSet = NUSCENES_LIDARSEG_16,
              title: str | None = None) -> Path:
    """Fig. 7: t-SNE scatter, dots = LiDAR features, triangles = camera features, coloured by class.

    Args:
        embedding: (N, 2) float (:func:`tsne_embed`).
        labels: (N,) int class indices of ``label_set`` (the object classes share indices in both).
        is_camera: (N,) bool, True for camera (pixel) features.
        path: output PNG.
        label_set: class names and colours (default lidarseg-16).
        title: axes title.
    Returns: the written path.
    Raises: ValueError on mismatched shapes.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = _tsne_figure(plt, embedding, labels, is_camera, label_set, title)
    out = atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return out


def _tsne_figure(plt, embedding, labels, is_camera, label_set: LabelSet, title: str | None):
    e, y, cam = _check_tsne_inputs(embedding, labels, is_camera)
    colours = label_set.color_array() / 255.0
    fig, ax = plt.subplots(figsize=(7, 6), constrained_layout=True)
    for c in np.unique(y):
        for sel, marker, who in ((~cam, "o", "LiDAR"), (cam, "^", "camera")):
            m = sel & (y == c)
            if m.any():
                ax.scatter(e[m, 0], e[m, 1], s=30, marker=marker, color=colours[c], edgecolors="none",
                           label=f"{label_set.name_of(int(c))} ({who})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=0.8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        ax.set_title(title)
    return fig


def plotly_tsne(embedding, labels, is_camera, label_set: LabelSet = NUSCENES_LIDARSEG_16, title: str | None = None):
    """Interactive Fig. 7: one trace per (class, modality), circles LiDAR, triangles camera, class
    colours; hover text "<class> (<modality>)".

    Args / Raises: as :func:`plot_tsne` (no path).
    Returns: a ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    e, y, cam = _check_tsne_inputs(embedding, labels, is_camera)
    fig = go.Figure()
    for c in np.unique(y):
        r, g, b = label_set.colors[int(c)]
        for sel, symbol, who in ((~cam, "circle", "LiDAR"), (cam, "triangle-up", "camera")):
            m = sel & (y == c)
            if m.any():
                text = f"{label_set.name_of(int(c))} ({who})"
                fig.add_trace(go.Scatter(x=e[m, 0], y=e[m, 1], mode="markers", name=text,
                                         marker=dict(symbol=symbol, color=f"rgb({r},{g},{b})", size=7),
                                         hovertext=[text] * int(m.sum()), hoverinfo="text"))
    fig.update_layout(title=title, xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False))
    return fig


# ------------------------------------------------------------------------------------- Fig. 8
def similarity_maps(query: torch.Tensor, pixel_features: torch.Tensor,
                    point_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fig. 8: cosine similarity of one query feature to every pixel and every point feature.

    Args:
        query: (D,) float, e.g. the camera encoder feature at the query pixel.
        pixel_features: (D, H, W) float, e.g. :func:`tokens_to_pixels` of the camera tokens.
        point_features: (N, D) float, e.g. :func:`encoder_point_features` of the LiDAR tokens.
    Returns: ((H, W), (N,)) float cosines in [-1, 1]; 0 where a feature is all zero.
    Raises: ValueError when the feature dimensions disagree.
    """
    d = query.shape[0]
    if query.dim() != 1 or pixel_features.dim() != 3 or pixel_features.shape[0] != d or point_features.dim() != 2 \
            or point_features.shape[1] != d:
        raise ValueError(f"query (D,), pixel_features (D, H, W), point_features (N, D) expected, got "
                         f"{tuple(query.shape)}, {tuple(pixel_features.shape)}, {tuple(point_features.shape)}")
    q = F.normalize(query.float(), dim=0)
    pix = (F.normalize(pixel_features.float(), dim=0) * q[:, None, None]).sum(0)
    pts = F.normalize(point_features.float(), dim=1) @ q
    return pix, pts


def plot_similarity(image, pixel_sim, points_uv, point_sim, query_uv, path, title: str | None = None,
                    vmin: float | None = None, vmax: float | None = None) -> Path:
    """Fig. 8 as three stacked panels: the image; the pixel similarity (stretched over the image
    when at token resolution); the points, coloured by similarity, over the image. Colour map
    viridis (yellow high, blue low, as the paper's), one colour scale for both similarity panels
    (default: their joint range); a red dot marks the query pixel in every panel.

    Args:
        image: (H, W, 3) RGB, uint8 or float in [0, 1].
        pixel_sim: (h, w) float (:func:`similarity_maps`).
        points_uv: (N, 2) float pixel coordinates (u column, v row) of the LiDAR points in the image.
        point_sim: (N,) float.
        query_uv: (u, v) of the query pixel.
        path: output PNG.
        title: figure title; vmin, vmax: colour scale limits.
    Returns: the written path.
    Raises: ValueError on mismatched shapes.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = _similarity_figure(plt, image, pixel_sim, points_uv, point_sim, query_uv, title, vmin, vmax)
    out = atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return out


def _similarity_figure(plt, image, pixel_sim, points_uv, point_sim, query_uv, title, vmin, vmax):
    img = np.asarray(image)
    ps, uv, qs = _numpy(pixel_sim), _numpy(points_uv), _numpy(point_sim)
    if img.ndim != 3 or img.shape[2] != 3 or ps.ndim != 2 or uv.ndim != 2 or uv.shape[1] != 2 \
            or qs.shape != uv[:, 0].shape:
        raise ValueError(f"image (H, W, 3), pixel_sim (h, w), points_uv (N, 2), point_sim (N,) expected, got "
                         f"{img.shape}, {ps.shape}, {uv.shape}, {qs.shape}")
    both = np.concatenate([ps.ravel(), qs])
    lo = float(both.min()) if vmin is None else vmin
    hi = float(both.max()) if vmax is None else vmax
    h, w = img.shape[:2]
    fig, axes = plt.subplots(3, 1, figsize=(8, 3 * 8 * h / w + 1), constrained_layout=True)
    axes[0].imshow(img)
    axes[0].set_title("image")
    im = axes[1].imshow(ps, cmap="viridis", vmin=lo, vmax=hi, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                        interpolation="nearest")
    axes[1].set_title("pixel features: cosine similarity to the query")
    axes[2].imshow(img, alpha=0.5)
    axes[2].scatter(uv[:, 0], uv[:, 1], c=qs, cmap="viridis", vmin=lo, vmax=hi, s=4, edgecolors="none")
    axes[2].set_title("point features: cosine similarity to the query")
    for ax in axes:
        ax.scatter([query_uv[0]], [query_uv[1]], s=60, color="red", edgecolors="white", linewidths=1, zorder=5)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[1:], shrink=0.8, label="cosine similarity")
    if title:
        fig.suptitle(title)
    return fig
