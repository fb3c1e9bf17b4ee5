"""busch2026 Fig. 2 (Sec. III-C) sets the camera-view pseudo ground truth beside the nuScenes BEV ground
truth, each in the front view and in BEV; "the pseudo ground truth is projected to BEV using
nuScenes lidar data". :func:`lift_pseudo_to_bev_lidar` is that projection, and
:func:`render_labels_to_camera` renders the BEV ground truth into a camera with
:func:`bevlib.render.render_bev`.

The notebooks ``notebooks/fig4_distance_share.ipynb`` and ``notebooks/fig2_pseudo_vs_gt.ipynb``
(written by ``scripts/make_fig_notebooks.py``) call :func:`prepare_fig4` / :func:`prepare_fig2`
and the writers below; every output is written atomically.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ... import geometry as geo
from ...bev import BEVGrid
from ...classes import ALL_CLASSES, IGNORE, NUM_ALL, NUM_BEV
from ...data.nuscenes_data import (CAMERAS, BEVTargetConfig, bev_ground_truth, camera_rig, load_image,
                                   open_nuscenes, scene_sample_tokens)
from ...data.source import WorldParams, resolve_dataroot
from ...params import ParameterError
from ...render import render_bev
from .common import check_camera, save_plot

log = logging.getLogger(__name__)

#: Colour of BEV cells no LiDAR ground point fell into (Fig. 2, lifted pseudo-label).
NO_POINT_RGB = (70, 70, 70)
#: nuScenes-lidarseg categories counted as ground when lidarseg is present.
GROUND_CATEGORY_PREFIX = "flat."


def lidar_ground_points(nusc, sample_token: str, ground_z_max_m: float = 0.3) -> tuple[np.ndarray, np.ndarray, str]:
    """A keyframe's LiDAR points in its ego frame, and which of them are ground.

    Points come from :func:`bevlib.data.lidar.load_lidar_sweep` (the keyframe sweep, ego frame =
    the LIDAR_TOP ego pose, as in :func:`camera_rig`).

    Returns:
        points: (P, 3) float64 metres, ego frame.
        ground: (P,) bool: lidarseg ``flat.*`` categories when the keyframe has lidarseg, else
            ``z_ego < ground_z_max_m``.
        rule: a short description of the ground rule used.
    Raises: DataError if the keyframe has no LIDAR_TOP, or its point or lidarseg file is missing
        or truncated (naming the file).
    """
    from ...data.lidar import load_lidar_sweep
    from ...data.nuscenes_data import DataError

    sweep = load_lidar_sweep(nusc, sample_token)
    if sweep is None:
        raise DataError(f"sample {sample_token} has no LIDAR_TOP: Fig. 2 lifts pseudo-labels with the LiDAR")
    points = sweep.points_ego
    if sweep.lidarseg is not None:
        names = nusc.lidarseg_idx2name_mapping
        flat = np.array([names.get(i, "").startswith(GROUND_CATEGORY_PREFIX) for i in range(256)])
        return points, flat[sweep.lidarseg], "lidarseg flat.* categories"
    return points, points[:, 2] < ground_z_max_m, f"z_ego < {ground_z_max_m:g} m"


def lift_pseudo_to_bev_lidar(points_ego: np.ndarray, labels, K: np.ndarray, ego_T_cam: np.ndarray,
                             grid: BEVGrid, n_classes: int = NUM_ALL) -> np.ndarray:
    """Lift camera-view pseudo-labels to BEV with LiDAR points (busch2026 Fig. 2: "the pseudo
    ground truth is projected to BEV using nuScenes lidar data").

    Each (ground) point is projected into every camera; where it lands inside the image in front
    of the camera, it takes the class of the pixel it lands on (nearest pixel, OpenCV pixel
    centres at integers) and votes with it for the BEV cell that contains its (x, y). A cell takes
    its majority class (ties: the lower class index); cells without a vote are IGNORE. A point
    seen by two cameras votes twice. Pixels labelled IGNORE or >= ``n_classes`` do not vote.

    Args:
        points_ego: (P, 3) float metres in the keyframe's ego frame (pass only ground points).
        labels: (N, h, w) uint8 (or a list of N (h_i, w_i) maps) class ids, per camera.
        K: (N, 3, 3) intrinsics in pixels of each label map; ego_T_cam: (N, 4, 4) camera -> ego.
        grid: the BEV grid (rows/columns as :mod:`bevlib.bev`).
    Returns: (H, W) uint8 class ids, IGNORE where no point voted.
    Raises: ValueError if the numbers of label maps, intrinsics and extrinsics differ.
    """
    pts = np.asarray(points_ego, np.float64).reshape(-1, 3)
    K = np.asarray(K, np.float64)
    T = np.asarray(ego_T_cam, np.float64)
    if not (len(labels) == len(K) == len(T)):
        raise ValueError(f"{len(labels)} label maps, {len(K)} intrinsics and {len(T)} extrinsics: need one per camera")
    inside = grid.contains(pts[:, :2])
    pts = pts[inside]
    rc = np.rint(grid.xy_to_rowcol(pts[:, :2])).astype(np.int64)
    # A point exactly on the outer edge rounds one cell out: keep it in the edge cell.
    cell = np.clip(rc[:, 0], 0, grid.H - 1) * grid.W + np.clip(rc[:, 1], 0, grid.W - 1)
    cells, classes = [], []
    for lab, Kc, Tc in zip(labels, K, T):
        lab = np.asarray(lab)
        uv, _, front = geo.project(Kc, geo.invert(Tc), pts)
        u = np.rint(np.where(front, uv[:, 0], -1)).astype(np.int64)
        v = np.rint(np.where(front, uv[:, 1], -1)).astype(np.int64)
        ok = front & (u >= 0) & (v >= 0) & (u < lab.shape[1]) & (v < lab.shape[0])
        cls = lab[v[ok], u[ok]].astype(np.int64)
        keep = cls < n_classes
        cells.append(cell[ok][keep])
        classes.append(cls[keep])
    cells = np.concatenate(cells) if cells else np.zeros(0, np.int64)
    classes = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    votes = np.bincount(cells * n_classes + classes, minlength=grid.H * grid.W * n_classes)
    votes = votes.reshape(grid.H * grid.W, n_classes)
    out = votes.argmax(1).astype(np.uint8)
    out[votes.sum(1) == 0] = IGNORE
    return out.reshape(grid.H, grid.W)


def render_labels_to_camera(bev_labels: np.ndarray, K: np.ndarray, ego_T_cam: np.ndarray,
                            image_hw: tuple[int, int], grid: BEVGrid, n_classes: int = NUM_BEV) -> np.ndarray:
    """A BEV class map seen from a camera (busch2026 Fig. 2b, front view of the BEV ground truth).

    The map is one-hot encoded, rendered with :func:`bevlib.render.render_bev` (bilinear) and
    reduced by argmax, i.e. each pixel takes the class with the largest bilinear weight among
    the four BEV cells around the ground point it sees.

    Args:
        bev_labels: (H, W) integer class ids in [0, n_classes) or IGNORE (no class).
        K: (3, 3) pixels of an (h, w) = ``image_hw`` image; ego_T_cam: (4, 4) camera -> ego.
    Returns: (h, w) uint8 class ids; IGNORE where the pixel's ray misses the grid (sky, outside
        the BEV extent) or sees only IGNORE cells.
    """
    lab = torch.as_tensor(np.asarray(bev_labels).astype(np.int64))
    onehot = F.one_hot(lab.clamp(0, n_classes), n_classes + 1)[..., :n_classes]   # IGNORE -> all zero
    onehot = onehot.permute(2, 0, 1)[None].float()
    rendered, valid = render_bev(onehot, np.asarray(K)[None, None], np.asarray(ego_T_cam)[None, None],
                                 image_hw, grid.with_shape(*lab.shape))
    rendered = rendered[0, 0]
    out = rendered.argmax(0).to(torch.uint8)
    out[~valid[0, 0] | (rendered.sum(0) < 0.5)] = IGNORE
    return out.numpy()


@dataclass
class Fig2Params(WorldParams):
    """Every knob of notebooks/fig2_pseudo_vs_gt.ipynb (busch2026 Fig. 2). ``dataroot=None``
    reads the embedded world."""

    labeler: str = "synthetic"           # "synthetic" (embedded world) | "mask2former"
    pseudo_noise: float = 0.1
    mask2former_weights: str | None = None
    seed: int = 0
    sample_token: str | None = None      # None: the keyframe with most map markings ahead (see pick_keyframe)
    camera: str = "CAM_FRONT"
    bev_hw: tuple = (150, 150)           # busch2026: 150 x 150 over +-30 m x +-15 m
    bev_style: str = "hdmapnet"          # BEV ground truth as busch2026's evaluation draws it; "buffer": line_width_m
    line_width_m: float = 0.6            # bev_style="buffer" only
    ground_z_max_m: float = 0.3          # ground rule where there is no lidarseg
    output_dir: str | None = None        # None: <project>/outputs/fig2
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        check_camera(self.camera)
        if self.bev_style not in ("hdmapnet", "buffer"):
            raise ParameterError(f"parameter 'bev_style' must be 'hdmapnet' or 'buffer', got {self.bev_style!r}")
        if self.labeler not in ("synthetic", "mask2former"):
            raise ParameterError(f"parameter 'labeler' must be 'synthetic' or 'mask2former', got {self.labeler!r}")
        if self.labeler == "mask2former" and not self.mask2former_weights:
            raise ParameterError("parameter 'mask2former_weights' (a local path) is required with "
                                 "labeler='mask2former'")
        v = self.bev_hw
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)):
            raise ParameterError(f"parameter 'bev_hw' must be two positive integers, got {v!r}")
        self.bev_hw = tuple(v)

    @property
    def grid(self) -> BEVGrid:
        """The BEV grid: ``bev_hw`` cells over +-30 m x +-15 m (ego frame)."""
        return BEVGrid(H=self.bev_hw[0], W=self.bev_hw[1])


def pick_keyframe(nusc, grid: BEVGrid, cfg: BEVTargetConfig, max_candidates: int = 24) -> str:
    """A keyframe worth showing: among the first ``max_candidates`` keyframes (scene order), the
    one whose BEV ground truth has the most marking cells ahead of the ego (x > 0), crosswalk cells
    counting triple (busch2026 Fig. 2 discusses the crosswalk style). The first keyframe when no
    map is present."""
    tokens = scene_sample_tokens(nusc, [s["name"] for s in nusc.scene])[:max_candidates]
    ahead = grid.cell_centers()[..., 0] > 0
    best, best_score = tokens[0], -1
    for t in tokens:
        gt = bev_ground_truth(nusc, t, grid, cfg)
        if gt is None:
            return tokens[0]
        g = gt[ahead]
        score = int(((g > 0) & (g < NUM_BEV)).sum() + 2 * (g == ALL_CLASSES.index("crosswalk")).sum())
        if score > best_score:
            best, best_score = t, score
    return best


@dataclass
class Fig2Data:
    """What :func:`prepare_fig2` produced for one keyframe (all numpy)."""

    params: Fig2Params
    source: str
    sample_token: str
    image: np.ndarray          # (h, w, 3) uint8, the chosen camera at native resolution
    pseudo_front: np.ndarray   # (h, w) uint8 pseudo-label of that camera
    gt_front: np.ndarray       # (h, w) uint8 BEV GT rendered into it (IGNORE off the grid); None w/o map
    pseudo_bev: np.ndarray     # (H, W) uint8 LiDAR-lifted pseudo-label, IGNORE where no point
    gt_bev: np.ndarray         # (H, W) uint8 BEV ground truth; None without a map expansion
    ground_rule: str
    n_ground_points: int


def prepare_fig2(p: Fig2Params) -> Fig2Data:
    """Everything Fig. 2 shows for one keyframe: pseudo-labels of its 6 cameras (generated once
    and cached, as busch2026 does), LiDAR-lifted to BEV; the BEV ground truth and its rendering
    into ``p.camera``.

    Raises: ParameterError for the synthetic labeller on data that is not an embedded world;
        DataError naming missing files or records.
    """
    from ...data.pseudo import cache_pseudo_labels, load_pseudo_label
    from .runs import make_labeler

    dataroot, source = resolve_dataroot(p, p.progress)
    if p.labeler == "synthetic" and not (Path(dataroot) / "bevlib_world.json").exists():
        raise ParameterError(f"labeler='synthetic' needs the embedded world's camera semantics; {dataroot} is not "
                             "one: use labeler='mask2former' with mask2former_weights")
    nusc = open_nuscenes(dataroot, p.version)
    grid = p.grid
    tcfg = BEVTargetConfig(line_width_m=p.line_width_m, style=p.bev_style)
    token = p.sample_token or pick_keyframe(nusc, grid, tcfg)
    rig = camera_rig(nusc, token)
    labeler = make_labeler(p)
    cache_pseudo_labels(nusc, labeler, rig["sd_tokens"], progress=p.progress)
    labels = [load_pseudo_label(dataroot, labeler.name, t) for t in rig["sd_tokens"]]
    # Mask2Former may label at another size than the JPEG: scale each camera's K to its label map.
    Ks = np.stack([geo.scale_intrinsics(K, wh, (lab.shape[1], lab.shape[0]))
                   for K, wh, lab in zip(rig["K"], rig["native_wh"], labels)])
    points, ground, rule = lidar_ground_points(nusc, token, p.ground_z_max_m)
    pseudo_bev = lift_pseudo_to_bev_lidar(points[ground], labels, Ks, rig["ego_T_cam"], grid)

    c = CAMERAS.index(p.camera)
    lab_c = labels[c]
    h, w = lab_c.shape
    image = load_image(nusc.get_sample_data_path(rig["sd_tokens"][c]), (w, h))
    gt_bev = bev_ground_truth(nusc, token, grid, tcfg)
    gt_front = None if gt_bev is None else render_labels_to_camera(gt_bev, Ks[c], rig["ego_T_cam"][c], (h, w), grid)
    return Fig2Data(p, source, token, image, lab_c, gt_front, pseudo_bev, gt_bev, rule, int(ground.sum()))


def _bev_rgb(labels: np.ndarray) -> np.ndarray:
    from ...viz import colorize

    rgb = colorize(labels)
    rgb[labels == IGNORE] = NO_POINT_RGB
    return rgb


def plot_fig2(data: Fig2Data, path) -> Path:
    """busch2026 Fig. 2: (a) pseudo ground truth, (b) nuScenes BEV ground truth, each in the
    front view (left) and in BEV (right); the legend names the classes shown. Atomic PNG write."""
    return save_plot(_plot_fig2, path, data)


def _plot_fig2(data: Fig2Data):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    from ...viz import legend_handles, overlay

    p = data.params
    g = p.grid
    extent = (g.y_max, g.y_min, g.x_min, g.x_max)  # left, right, bottom, top: driver-up map, left = +y
    img_h, img_w = data.image.shape[:2]
    # Panel widths proportional to their aspect ratios, so both panels of a row share a height.
    ratios = [img_w / img_h, (g.y_max - g.y_min) / (g.x_max - g.x_min)]
    fig_w = 12.0
    row_h = 0.92 * fig_w / sum(ratios)
    fig, axes = plt.subplots(2, 2, figsize=(fig_w, 2 * row_h + 1.6), gridspec_kw={"width_ratios": ratios},
                             layout="constrained")
    panels = [
        ("(a) pseudo GT, front view", data.pseudo_front, "front"),
        ("(a) pseudo GT lifted to BEV with LiDAR", data.pseudo_bev, "bev"),
        ("(b) nuScenes GT rendered into the front view", data.gt_front, "front"),
        ("(b) nuScenes BEV GT", data.gt_bev, "bev"),
    ]
    shown = set()
    for ax, (title, lab, kind) in zip(axes.flat, panels):
        ax.set_title(title, fontsize=9)
        if lab is None:
            ax.text(0.5, 0.5, "no map expansion:\nBEV ground truth absent", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        shown |= {int(c) for c in np.unique(lab) if 0 < c < NUM_ALL}
        if kind == "front":
            ax.imshow(overlay(data.image, lab, alpha=0.65))
            ax.set_axis_off()
        else:
            ax.imshow(_bev_rgb(lab), extent=extent, interpolation="nearest")
            # The ego vehicle's footprint (nuScenes ego origin: rear axle; about 4.9 m x 1.9 m).
            ax.add_patch(Rectangle((-0.95, -1.0), 1.9, 4.9, fill=False, ec="white", lw=1))
            ax.set_xlabel("y [m] (left +)", fontsize=8)
            ax.set_ylabel("x [m] (forward)", fontsize=8)
            ax.tick_params(labelsize=7)
    handles = legend_handles(sorted(shown)) + [Patch(color=np.array(NO_POINT_RGB) / 255.0,
                                                     label="BEV: no LiDAR ground point")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    fig.suptitle(f"busch2026 Fig. 2 on {data.source}, keyframe {data.sample_token[:8]}, {p.camera}; "
                 f"LiDAR ground: {data.ground_rule} ({data.n_ground_points} points)", fontsize=9)
    return fig


def fig2_summary(data: Fig2Data) -> str:
    """Markdown: per BEV class, the cells labelled in the lifted pseudo-label and in the GT."""
    lines = [f"Keyframe `{data.sample_token}` of {data.source}. LiDAR ground points: {data.n_ground_points} "
             f"({data.ground_rule}); BEV cells with a LiDAR vote: {int((data.pseudo_bev != IGNORE).sum())} of "
             f"{data.pseudo_bev.size}.", "",
             "| class | lifted pseudo-label cells | BEV GT cells |", "|---|---:|---:|"]
    for c in range(1, NUM_ALL):
        a = int((data.pseudo_bev == c).sum())
        b = int((data.gt_bev == c).sum()) if data.gt_bev is not None else None
        if a or b:
            lines.append(f"| {ALL_CLASSES[c]} | {a} | {b if b is not None else 'absent'} |")
    return "\n".join(lines) + "\n"
