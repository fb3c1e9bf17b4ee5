"""The spatial clusters of one image and its completed depth, CrIBo vs S3PT (wozniak2025 Fig. 1).

wozniak2025 Fig. 1 shows the teacher's spatial clusters of one driving image for CrIBo (top) and S3PT
(bottom); Sec. 3.2-3.3 define them: the last-layer patch tokens are clustered with CrIBo's
Sinkhorn-Knopp clustering (:func:`bevlib.ssl.joint_view_clustering`; feature + positional cost, S3PT adds
beta |d_i - d_k| on IP-Basic-completed LiDAR depth, Sec. 3.3 / 4.1). Here:

* :func:`load_pretrained`: teacher and config of a pretraining run (:mod:`.pretrain`, :mod:`.ablation`).
* :func:`image_clusters`: the whole image (not a crop) through the teacher, clustered as a single view
  with the run's M / SK iterations / alpha / beta.
* :func:`completed_depth`: the keyframe's LIDAR_TOP sweep in one camera, IP-Basic completed.
* :func:`cluster_figure`: static Fig. 1-style PNG; :func:`cluster_widget`: the ipywidgets viewer.

Single view (our choice): the clustering is defined on the two global crops of training; for a view of
the whole image the image is fed as both views. Twin tokens share position, features and depth, so they
get identical cost rows and identical labels, and the positional cost ignores the twin (distance 0 does
not count), so this equals clustering the P tokens once with M clusters, except that the initial
centroids are drawn from the 2P twins (a draw may pick both twins of one token).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["load_pretrained", "image_clusters", "completed_depth", "cluster_colours", "cluster_borders",
           "cluster_figure", "cluster_widget", "load_camera_image"]

#: Depth limits of the view (metres): devkit's map_pointcloud_to_image min_dist, IP-Basic's inversion offset.
MIN_DEPTH_M = 1.0
MAX_DEPTH_M = 100.0


def load_pretrained(run_dir, which: str = "teacher"):
    """Network and config of a finished S3PT / CrIBo / DINO pretraining run (its last epoch checkpoint).

    Args:
        run_dir: a run directory written by :func:`bevlib.train.train` for :class:`.pretrain.S3PTTask`
            (``config.json`` with ``task.s3pt`` and ``train.epochs``, ``checkpoints/epoch_NNN.pt``).
        which: ``"teacher"`` (the EMA teacher :class:`.pretrain.S3PTNet`, what Fig. 1 clusters),
            ``"student"`` or ``"model"`` (the whole :class:`.pretrain.S3PTModel`).
    Returns: ``(net in eval mode on the CPU, S3PTConfig)``.
    Raises: FileNotFoundError naming the path when the run directory, its ``config.json`` or its last
        checkpoint is missing; ValueError for a config without ``task.s3pt`` or a bad ``which``;
        :class:`bevlib.train.checkpoint.CheckpointError` for a corrupt checkpoint.
    Source: the checkpoint layout of :func:`bevlib.train.train`; wozniak2025 Sec. 3 (teacher tokens).
    """
    from ...train import checkpoint_at
    from ...train.checkpoint import load_checkpoint
    from .pretrain import S3PTConfig, S3PTModel

    if which not in ("teacher", "student", "model"):
        raise ValueError(f"which must be 'teacher', 'student' or 'model', got {which!r}")
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    if not cfg_path.exists():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} has no config.json ({cfg_path})")
    raw = json.loads(cfg_path.read_text())
    s3 = raw.get("task", {}).get("s3pt")
    if s3 is None:
        raise ValueError(f"{cfg_path} is not an S3PT pretraining run (no task.s3pt)")
    # JSON turns tuples into lists; S3PTConfig is frozen and compared by value, so rebuild tuples
    s3 = dict(s3, crops={k: tuple(v) if isinstance(v, list) else v for k, v in s3["crops"].items()})
    cfg = S3PTConfig(**s3)
    state = load_checkpoint(checkpoint_at(run_dir, int(raw["train"]["epochs"])))["model"]
    model = S3PTModel(cfg)
    model.load_state_dict(state)
    model.eval()
    return (model if which == "model" else getattr(model, which)), cfg


def _resize(a: np.ndarray, wh, nearest: bool) -> np.ndarray:
    import cv2
    return cv2.resize(a, tuple(int(v) for v in wh), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def _check_image(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"image must be (h, w, 3) uint8 RGB, got shape {a.shape} dtype {a.dtype}")
    return a


@torch.no_grad()
def image_clusters(net, cfg, image: np.ndarray, depth: np.ndarray | None = None, n_clusters: int | None = None,
                   use_depth: bool = True, seed: int = 0) -> dict:
    """Spatial clusters of the teacher's patch tokens of one whole image (wozniak2025 Fig. 1, Sec. 3.2-3.3).

    The image is resized (bilinear / area) so that each side is the nearest non-zero multiple of the patch,
    normalised like the training crops and run through ``net`` (position embeddings interpolated). The
    last-layer tokens are clustered by :func:`bevlib.ssl.joint_view_clustering` with the image as both views
    (module docstring), token positions in original-image pixels (as in training), the run's
    ``sinkhorn_lambda``, ``sk_iters``, ``n_outer``, ``pos_alpha`` and, with depth, ``depth_beta``.

    Args:
        net: an :class:`.pretrain.S3PTNet` (e.g. the teacher of :func:`load_pretrained`) or any module with
            ``net(pixels (1, 3, H, W)) -> (cls, tokens (1, P, D))``.
        cfg: the run's :class:`.pretrain.S3PTConfig`.
        image: (h, w, 3) uint8 RGB.
        depth: (h, w) float metres along the optical axis (0 / non-finite = none), or None. Token depth =
            median of the valid pixels under the token (:func:`.multicrop.token_depth`); tokens without any
            take the image's farthest token depth (as in training).
        n_clusters: M (default the run's ``cfg.n_clusters``); 1 <= M <= 2P.
        use_depth: apply the depth term (needs ``depth`` and ``cfg.depth_beta > 0``; otherwise ignored).
        seed: seeds the initial centroid draw.
    Returns: dict with ``tokens`` (gh, gw) int64 cluster id per token, ``pixels`` (h, w) int64 (nearest
        upsampling of ``tokens``), ids renumbered 0..k-1 in row-major order of first appearance (k <= M);
        ``grid`` (gh, gw); ``positions`` (gh, gw, 2) float32 token centres (x, y) in image pixels;
        ``token_depth`` (gh, gw) float32 metres or None; ``n_clusters`` M used; ``depth_beta`` applied.
    Raises: ValueError for a bad image / depth shape or M out of range (from the clustering).
    """
    from ...ssl import joint_view_clustering
    from .multicrop import token_depth, token_positions
    from .pretrain import _to_pixels

    image = _check_image(image)
    h, w = image.shape[:2]
    if depth is not None:
        depth = np.asarray(depth, np.float32)
        if depth.shape != (h, w):
            raise ValueError(f"depth must be (h, w) = {(h, w)} like the image, got {depth.shape}")
    m = int(cfg.n_clusters if n_clusters is None else n_clusters)
    patch = int(getattr(net, "patch", None) or cfg.vit["patch_size"])
    gh, gw = max(1, round(h / patch)), max(1, round(w / patch))
    x = image if (gh * patch, gw * patch) == (h, w) else _resize(image, (gw * patch, gh * patch), nearest=False)
    param = next(iter(net.parameters()), None)
    pixels = _to_pixels(x[None])
    if param is not None:
        pixels = pixels.to(param.device, param.dtype)
    _, tok = net(pixels)
    tok = tok[0].float().cpu()
    if tok.shape[0] != gh * gw:
        raise ValueError(f"net returned {tok.shape[0]} tokens for a {gh} x {gw} grid")
    box = np.array([0.0, 0.0, w, h])
    pos = torch.from_numpy(token_positions(box, (gh * patch, gw * patch), patch, False))
    beta = float(cfg.depth_beta) if (use_depth and depth is not None) else 0.0
    td = None
    if depth is not None:
        td = token_depth(np.where(np.isfinite(depth), depth, 0.0), box, (gh * patch, gw * patch), patch, False)
        # no return under a token (sky): farthest depth of the image, as S3PTTask._objects does
        far = float(np.nanmax(td)) if np.isfinite(td).any() else 0.0
        td = np.where(np.isnan(td), far, td).astype(np.float32)
    d2 = None if (td is None or beta == 0) else torch.from_numpy(td)[None].expand(2, -1).contiguous()
    cl = joint_view_clustering(tok[None].expand(2, -1, -1).contiguous(), pos[None].expand(2, -1, -1).contiguous(),
                               m, sinkhorn_lambda=cfg.sinkhorn_lambda, sk_iters=cfg.sk_iters, n_outer=cfg.n_outer,
                               pos_alpha=cfg.pos_alpha, depth=d2, depth_beta=beta,
                               generator=torch.Generator().manual_seed(int(seed)))
    raw = cl.labels[: gh * gw].numpy()
    _, first, inv = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    labels = rank[inv.reshape(-1)].reshape(gh, gw)
    rows = np.minimum((np.arange(h) + 0.5) * gh / h, gh - 1).astype(int)
    cols = np.minimum((np.arange(w) + 0.5) * gw / w, gw - 1).astype(int)
    return {"tokens": labels, "pixels": labels[rows][:, cols], "grid": (gh, gw),
            "positions": pos.numpy().reshape(gh, gw, 2), "token_depth": None if td is None else td.reshape(gh, gw),
            "n_clusters": m, "depth_beta": beta}


def completed_depth(nusc, sample_token: str, camera: str, image_wh) -> tuple[np.ndarray, np.ndarray]:
    """The keyframe's LiDAR sweep in one camera, sparse and IP-Basic completed (wozniak2025 Sec. 3.3 / 4.1).

    The LIDAR_TOP keyframe sweep is brought into the camera with the devkit's chain
    (:func:`.depth_check.lidar_in_camera`), projected at the camera's native resolution (nearest return per
    pixel, z > 1 m), completed there with IP-Basic (bilateral, extrapolated to the top, 100 m offset) by
    the ``depth`` field's own :func:`bevlib.data.fields.completed_lidar_depth`, and the dense map resized to
    ``image_wh`` (nearest). The returned sparse map is projected again with K
    scaled to ``image_wh`` (nearest return per output pixel) rather than nearest-resized, which would drop
    most returns when shrinking.

    Args:
        nusc: devkit handle (embedded world or the real keyframe, v1.0-mini).
        sample_token: keyframe token. camera: e.g. ``"CAM_FRONT"``. image_wh: (w, h) output pixels.
    Returns: ``(sparse, dense)`` (h, w) float32 metres along the optical axis, 0 = none. IP-Basic does not
        keep measured pixels exactly (its dilation lets a nearer neighbour win, then median + bilateral
        smoothing; on the real keyframe's CAM_FRONT 99.6 % of measured pixels stay within 0.1 m); ``dense``
        is 0 where the fills do not reach (e.g. the bottom rows hidden from the LiDAR by the ego car, image
        columns without any return); the sky gets the depth extended up from below (IP-Basic step 5).
    Raises: ValueError for a bad ``image_wh`` or a camera the sample lacks; FileNotFoundError /
        devkit errors for missing files.
    """
    from ...data.fields import DepthConfig, completed_lidar_depth
    from ...depth_completion import project_lidar_depth
    from ...geometry import scale_intrinsics
    from .depth_check import lidar_in_camera

    wh = tuple(int(v) for v in image_wh)
    if len(wh) != 2 or min(wh) < 1:
        raise ValueError(f"image_wh must be (w, h) positive pixels, got {image_wh!r}")
    if camera not in nusc.get("sample", sample_token)["data"]:
        raise ValueError(f"camera {camera!r} is not a sensor of sample {sample_token}")
    lc = lidar_in_camera(nusc, sample_token, camera)
    native_wh = tuple(lc["image_wh"])
    # the depth field's own completion (points already in the camera frame: identity ego_T_cam), run at
    # the native size
    dc = DepthConfig(source="lidar_completed", min_depth_m=MIN_DEPTH_M, complete_min_width=native_wh[0],
                     complete_max_depth_m=MAX_DEPTH_M, complete_extrapolate=True, complete_blur="bilateral")
    dense = completed_lidar_depth(lc["points_cam"], lc["K"], np.eye(4), native_wh, wh, dc)
    K = lc["K"] if wh == native_wh else scale_intrinsics(lc["K"], native_wh, wh)
    return project_lidar_depth(lc["points_cam"], K, wh, MIN_DEPTH_M), dense


def cluster_colours(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) float RGB in [0, 1], random but fixed per cluster id (same ``seed`` -> same colours; colour k
    does not depend on n)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.15, 1.0, (max(int(n), 1), 3))
    return c[:n]


def cluster_borders(labels: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels whose right or lower neighbour has another cluster id."""
    b = np.zeros(labels.shape, bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return b


def _blend(image: np.ndarray, labels: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    col = cluster_colours(int(labels.max()) + 1)[labels]
    out = (1 - alpha) * image.astype(np.float32) / 255.0 + alpha * col
    out[cluster_borders(labels)] = 0.0
    return np.clip(out, 0, 1)


def _draw(fig, image, maps: dict, depth_dense, title: str | None):
    panels = 1 + len(maps) + (depth_dense is not None)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    axes[0].imshow(image)
    axes[0].set_title(title or "image")
    for ax, (name, lab) in zip(axes[1:], maps.items()):
        ax.imshow(_blend(image, np.asarray(lab)))
        ax.set_title(f"{name} ({len(np.unique(lab))} clusters)")
    if depth_dense is not None:
        d = np.asarray(depth_dense, np.float32)
        vmax = float(np.percentile(d[d > 0], 98)) if (d > 0).any() else 1.0
        im = axes[-1].imshow(np.where(d > 0, d, np.nan), cmap="turbo", vmin=0, vmax=vmax)
        axes[-1].set_title("completed depth (IP-Basic)")
        fig.colorbar(im, ax=axes[-1], shrink=0.8, label="depth (m)")
    for ax in axes:
        ax.set_axis_off()
    return axes


def cluster_figure(image: np.ndarray, maps: dict, depth_dense: np.ndarray | None, path, title: str | None = None,
                   dpi: int = 110) -> Path:
    """Static Fig. 1-style PNG: image | one panel per method (clusters blended over the image in fixed random
    colours, borders black) | completed depth (turbo, metres colour bar).

    Args:
        image: (h, w, 3) uint8. maps: ``{method name: (h, w) int cluster ids >= 0}`` (e.g.
            ``image_clusters(...)["pixels"]``). depth_dense: (h, w) float metres (0 = none) or None (no
            panel). path: output PNG (written atomically). title: first panel's title.
    Returns: the path.
    Raises: ValueError when a map or the depth does not match the image size or has negative ids.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ...io import atomic_savefig

    image = _check_image(image)
    for name, lab in maps.items():
        lab = np.asarray(lab)
        if lab.shape != image.shape[:2] or not np.issubdtype(lab.dtype, np.integer) or (lab < 0).any():
            raise ValueError(f"maps[{name!r}] must be ({image.shape[0]}, {image.shape[1]}) int ids >= 0, "
                             f"got shape {lab.shape} dtype {lab.dtype}")
    if depth_dense is not None and np.shape(depth_dense) != image.shape[:2]:
        raise ValueError(f"depth_dense must be {image.shape[:2]}, got {np.shape(depth_dense)}")
    panels = 1 + len(maps) + (depth_dense is not None)
    aspect = image.shape[1] / image.shape[0]
    fig = plt.figure(figsize=(3.2 * aspect / 1.6 * panels + 1, 3.0), constrained_layout=True)
    _draw(fig, image, maps, depth_dense, title)
    out = atomic_savefig(fig, Path(path), dpi=dpi)
    plt.close(fig)
    return Path(out)


def load_camera_image(nusc, sample_token: str, camera: str, image_wh) -> np.ndarray:
    """(h, w, 3) uint8 RGB of one camera of a keyframe, resized (bilinear) to ``image_wh``."""
    from ...data.nuscenes_data import load_image
    sd = nusc.get("sample", sample_token)["data"][camera]
    return load_image(nusc.get_sample_data_path(sd), tuple(image_wh))


def cluster_widget(runs: dict, nusc, items: list, image_wh, seed: int = 0):
    """Interactive Fig. 1: a dropdown of images, one M slider per run (default the run's own), "use depth
    term"; draws image | clusters per run | completed depth into an ``ipywidgets.Output``.

    Args:
        runs: ``{name: run directory}`` (:func:`load_pretrained`; the teacher is used).
        nusc: devkit handle. items: ``[(sample_token, camera), ...]`` (non-empty).
        image_wh: (w, h) of the shown images (the runs' training size is a good choice).
        seed: the clustering's initial draw.
    Returns: an ``ipywidgets.VBox`` (display it in a notebook) with ``.update()`` (redraw now) and
        ``.controls`` (dict of the widgets).
    Raises: ValueError for empty ``runs`` / ``items``; FileNotFoundError from :func:`load_pretrained`.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    if not runs or not items:
        raise ValueError("runs and items must be non-empty")
    nets = {name: load_pretrained(d) for name, d in runs.items()}
    cache: dict = {}

    def data(i):
        if i not in cache:
            tok, cam = items[i]
            cache[i] = (load_camera_image(nusc, tok, cam, image_wh), completed_depth(nusc, tok, cam, image_wh)[1])
        return cache[i]

    image_dd = W.Dropdown(options=[(f"{tok[:8]} {cam}", i) for i, (tok, cam) in enumerate(items)], value=0,
                          description="image")
    sliders = {}
    for name, (net, cfg) in nets.items():
        gh, gw = max(1, round(image_wh[1] / net.patch)), max(1, round(image_wh[0] / net.patch))
        sliders[name] = W.IntSlider(value=cfg.n_clusters, min=1, max=gh * gw, description=f"M {name}"[:30],
                                    style={"description_width": "initial"}, continuous_update=False)
    depth_cb = W.Checkbox(value=True, description="use depth term")
    out = W.Output()

    def update(*_):
        image, dense = data(image_dd.value)
        maps = {}
        for name, (net, cfg) in nets.items():
            r = image_clusters(net, cfg, image, dense, sliders[name].value, use_depth=depth_cb.value, seed=seed)
            maps[f"{name}, M={r['n_clusters']}" + (f", beta={r['depth_beta']:g}" if r["depth_beta"] else "")] = \
                r["pixels"]
        out.clear_output(wait=True)
        with out:
            aspect = image.shape[1] / image.shape[0]
            fig = plt.figure(figsize=(2.0 * aspect * (2 + len(maps)) + 1, 3.0), constrained_layout=True)
            _draw(fig, image, maps, dense, image_dd.label)
            plt.show()
            plt.close(fig)
        return maps

    for c in (image_dd, depth_cb, *sliders.values()):
        c.observe(update, names="value")
    box = W.VBox([W.HBox([image_dd, depth_cb]), W.HBox(list(sliders.values())), out])
    box.update = update
    box.controls = {"image": image_dd, "use_depth": depth_cb, **{f"M {k}": v for k, v in sliders.items()}}
    return box
