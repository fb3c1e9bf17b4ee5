"""lukkassen2024 (MultiViT) Sec. 3.1 / 4.2: camera pseudo-labels from 3D boxes, measured.

* Table 2 analogue on the embedded world: box-prompted labels (:mod:`bevlib.data.box_labels`)
  against the world's exact camera semantics, per-class IoU and mIoU beside the paper's numbers
  (measured on nuImages mini with SAM, labelled as reported), plus a Fig. 4 style figure.
* Real keyframe (``../shared/nuscenes-keyframe``): labels of the six real cameras and a LiDAR
  check -- the keyframe's LiDAR points inside each 3D box, moved into the camera exactly as
  nuscenes-devkit's ``map_pointcloud_to_image`` does, should land on the pixels the labels give
  that box.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...classes import IGNORE, MULTIVIT_CAMERA
from ...data.box_labels import (KEPT, IGNORED, MIN_INSIDE, BoxLabels, BoxPromptLabeler, ProjectedBoxLabeler,
                                WorldSilhouetteLabeler, pseudo_label_iou, world_truth)
from ...data.nuscenes_data import CAMERAS, open_nuscenes
from ...data.pseudo import cache_pseudo_labels, load_pseudo_label
from ...data.source import WorldParams, real_keyframe_root, resolve_dataroot
from ...geometry import invert, transform_from
from ...io import atomic_savefig, atomic_write, atomic_write_text
from ...params import ParameterError
from ...paths import outputs_dir
from ...tables import write_table
from ...viz import colorize

#: lukkassen2024 Table 2 (SAM ViT-B on nuImages mini, inflated 2D boxes): class -> (IoU %, boxes).
#: Reported, not measured here.
REPORTED_TABLE2 = {
    "barrier": (87.7, 69), "bicycle": (73.8, 14), "bus": (94.1, 5), "car": (90.3, 117),
    "construction_vehicle": (78.3, 5), "motorcycle": (89.0, 13), "pedestrian": (73.1, 193),
    "traffic_cone": (70.8, 44), "trailer": (85.1, 2), "truck": (81.7, 28), "mIoU": (82.4, None),
}
TABLE2_SOURCE = "reported (lukkassen2024 Table 2, nuImages mini)"
#: The paper's row names.
TABLE2_NAMES = {"construction_vehicle": "construction", "traffic_cone": "traffic cone"}
LABELERS = ("world_silhouette", "projected", "sam")


@dataclass
class PseudoLabelParams(WorldParams):
    """Knobs of the pseudo-label notebook; defaults: the embedded default world, 48 images (about
    nuImages mini's 50), SAM replaced by :class:`~bevlib.data.box_labels.WorldSilhouetteLabeler`.

    The border errors (``border_px``, ``border_flip``) stand in for SAM's mistakes; they are set,
    not measured, so the Table 2 analogue tests the pipeline, not SAM.
    """

    labeler: str = "world_silhouette"      # world_silhouette | projected | sam (paper: SAM ViT-B)
    border_px: int = 2                     # world_silhouette: largest dilation / erosion (px)
    border_flip: float = 0.25              # world_silhouette: flip probability in the 2-px edge band
    box_margin_m: float = 0.1              # world_silhouette: 3D box growth (m)
    min_inside: float = MIN_INSIDE         # hull share inside the image below which a box is IGNORE
    inflate_max: float = 0.2               # prompt inflation U(0, inflate_max); paper Sec. 4.2: 0.2
    n_images: int = 48                     # camera images evaluated (paper: nuImages mini)
    seed: int = 0
    sam_weights: str | None = None         # local transformers SAM directory (labeler 'sam', real keyframe)
    real_keyframe: bool = True             # also label the real keyframe in ../shared (if present)
    output_dir: str | None = None          # None: <project>/outputs/multivit_pseudo_labels
    progress: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.labeler not in LABELERS:
            raise ParameterError(f"parameter 'labeler' must be one of {LABELERS}, got {self.labeler!r}")
        for n in ("border_px", "n_images"):
            v = getattr(self, n)
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if n == "n_images" else 0):
                raise ParameterError(f"parameter {n!r} must be a {'positive' if n == 'n_images' else 'non-negative'} "
                                     f"integer, got {v!r}")
        for n in ("border_flip", "min_inside"):
            v = getattr(self, n)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ParameterError(f"parameter {n!r} must be a number in [0, 1], got {v!r}")
        for n in ("inflate_max", "box_margin_m"):
            v = getattr(self, n)
            if not (isinstance(v, (int, float)) and v >= 0.0):
                raise ParameterError(f"parameter {n!r} must be a non-negative number, got {v!r}")
        if self.sam_weights is not None and not Path(self.sam_weights).is_dir():
            raise ParameterError(f"parameter 'sam_weights' must be a local SAM directory, got {self.sam_weights!r}")
        if self.labeler == "sam" and self.sam_weights is None:
            raise ParameterError("parameter 'sam_weights' is required with labeler='sam'")

    @property
    def out_dir(self) -> Path:
        """Where tables and figures go."""
        return Path(self.output_dir) if self.output_dir else outputs_dir("multivit_pseudo_labels")


def make_labeler(p: PseudoLabelParams) -> BoxPromptLabeler:
    """The labeller the parameters name."""
    common = dict(min_inside=p.min_inside, inflate_max=p.inflate_max, seed=p.seed)
    if p.labeler == "world_silhouette":
        return WorldSilhouetteLabeler(p.border_px, p.border_flip, p.box_margin_m, **common)
    if p.labeler == "projected":
        return ProjectedBoxLabeler(**common)
    from ...data.sam_labeler import SamBoxLabeler
    return SamBoxLabeler(p.sam_weights, **common)


def evaluation_tokens(nusc, n: int, seed: int = 0) -> list[str]:
    """``n`` camera sample_data tokens drawn without replacement (seeded) from all keyframes'
    six cameras, returned in scene / time / camera order; all of them when there are fewer."""
    toks = []
    for scene in nusc.scene:
        s = scene["first_sample_token"]
        while s:
            sample = nusc.get("sample", s)
            toks += [sample["data"][ch] for ch in CAMERAS if ch in sample["data"]]
            s = sample["next"]
    if n >= len(toks):
        return toks
    pick = np.sort(np.random.default_rng(seed).choice(len(toks), n, replace=False))
    return [toks[i] for i in pick]


def evaluate(p: PseudoLabelParams) -> dict:
    """Label ``n_images`` world images (cached once, :func:`bevlib.data.pseudo.cache_pseudo_labels`)
    and measure them (:func:`bevlib.data.box_labels.pseudo_label_iou`): over all object pixels
    (``"all"``) and over the pixels of annotated objects only (``"annotated"``).

    Returns: dict with ``all``, ``annotated`` (pseudo_label_iou results), ``labeler`` (the
        labeller), ``nusc``, ``tokens``, ``data_desc``, ``made`` (labels generated now),
        ``label_s`` / ``eval_s`` (seconds).
    Raises: ParameterError naming 'dataroot' when it is not an embedded world (no exact semantics).
    """
    from ...data.world import camera_semantics_path

    root, desc = resolve_dataroot(p, progress=p.progress)
    nusc = open_nuscenes(root, p.version)
    tokens = evaluation_tokens(nusc, p.n_images, p.seed)
    if not tokens or not camera_semantics_path(root, tokens[0]).exists():
        raise ParameterError(f"parameter 'dataroot': {root} has no exact camera semantics; the Table 2 analogue "
                             "needs the embedded world (dataroot None or 'embedded')")
    labeler = make_labeler(p)
    t0 = time.perf_counter()
    made = cache_pseudo_labels(nusc, labeler, tokens, progress=p.progress)
    t1 = time.perf_counter()
    labels = {t: load_pseudo_label(root, labeler.name, t) for t in tokens}
    res = pseudo_label_iou(nusc, tokens, labeler, labels)
    res_ann = pseudo_label_iou(nusc, tokens, labeler, labels, annotated_only=True)
    return dict(all=res, annotated=res_ann, labeler=labeler, nusc=nusc, tokens=tokens, data_desc=desc, made=made,
                label_s=t1 - t0, eval_s=time.perf_counter() - t1)


def table2_rows(result: dict) -> list[dict]:
    """Per class (Table 2's order) then mIoU: the measured rows (all object pixels; annotated objects
    only) and the paper's row, labelled :data:`TABLE2_SOURCE`. Columns ``iou`` (%), ``boxes``."""
    rows = []
    for name in [*REPORTED_TABLE2]:
        label = TABLE2_NAMES.get(name, name)
        for key, source in (("all", "measured"), ("annotated", "measured (annotated objects only)")):
            r = result[key]
            if name == "mIoU":
                rows.append(dict(**{"class": label}, source=source, iou=r["miou"], boxes=sum(r["boxes"].values())))
            else:
                rows.append(dict(**{"class": label}, source=source, iou=r["iou"][name], boxes=r["boxes"][name]))
        iou, n = REPORTED_TABLE2[name]
        rows.append(dict(**{"class": label}, source=TABLE2_SOURCE, iou=iou,
                         boxes=n if n is not None else sum(v[1] for v in REPORTED_TABLE2.values() if v[1])))
    return rows


def write_table2(result: dict, out_dir, caption: str) -> tuple[Path, Path]:
    """Write ``table2_pseudo_labels.csv`` / ``.md`` (:func:`table2_rows`; IoU %, kept boxes)."""
    return write_table(table2_rows(result), out_dir, "table2_pseudo_labels", ("class", "source", "boxes"), ("iou",),
                       caption, titles=("IoU (%)",), title="Table 2 (analogue).")


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------

def _draw_rects(img: np.ndarray, records, scale: float = 1.0) -> np.ndarray:
    import cv2
    out = np.ascontiguousarray(img.copy())
    colours = MULTIVIT_CAMERA.color_array()
    for r in records:
        if r.rect is None or not r.labelled:
            continue
        x0, y0, x1, y1 = (int(round(v * scale)) for v in r.rect)
        col = tuple(int(c) for c in (colours[r.cls] if r.status == KEPT else (160, 160, 160)))
        cv2.rectangle(out, (x0, y0), (x1, y1), col, 1 if out.shape[1] < 1000 else 2)
    return out


def _label_rgb(labels: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.6) -> np.ndarray:
    """Class colours over the image (background shows the image, IGNORE grey)."""
    col = colorize(labels, MULTIVIT_CAMERA).astype(np.float32)
    if image is None:
        return col.astype(np.uint8)
    img = image.astype(np.float32)
    m = labels != MULTIVIT_CAMERA.background
    img[m] = (1 - alpha) * img[m] + alpha * col[m]
    return img.clip(0, 255).astype(np.uint8)


def correctness_rgb(labels: np.ndarray, truth: np.ndarray, image: np.ndarray) -> np.ndarray:
    """lukkassen2024 Fig. 4 colouring: pixels that are an object in the pseudo-label or the truth,
    blue where the label is right, yellow where wrong; IGNORE grey; the rest the dimmed image."""
    out = (image.astype(np.float32) * 0.45).astype(np.uint8)
    fg = (labels != IGNORE) & ((labels > 0) | (truth > 0))
    out[fg & (labels == truth)] = (40, 90, 255)
    out[fg & (labels != truth)] = (255, 220, 0)
    out[labels == IGNORE] = (150, 150, 150)
    return out


def plot_world_example(result: dict, out_path) -> Path:
    """Fig. 4 analogue for one evaluated world camera (the one with the most kept boxes): image with
    prompt rectangles, exact semantics, pseudo-label, correct (blue) / wrong (yellow) pixels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nusc, labeler = result["nusc"], result["labeler"]
    best, best_n = result["tokens"][0], -1
    for tok in result["tokens"]:
        n = sum(r.status == KEPT for r in labeler.plan(nusc, tok)[0])
        if n > best_n:
            best, best_n = tok, n
    records = labeler.plan(nusc, best)[0]
    labels = load_pseudo_label(nusc.dataroot, labeler.name, best)
    truth = world_truth(nusc.dataroot, best)
    image = np.asarray(Image.open(nusc.get_sample_data_path(best)).convert("RGB"))
    channel = nusc.get("sample_data", best)["channel"]
    ok = (labels != IGNORE) & ((labels > 0) | (truth > 0))
    acc = float((labels[ok] == truth[ok]).mean() * 100) if ok.any() else float("nan")
    panels = [("camera image + prompt rectangles", _draw_rects(image, records)),
              ("exact semantics (world)", _label_rgb(truth, image)),
              (f"pseudo-label ({labeler.kind})", _draw_rects(_label_rgb(labels, image), records)),
              (f"correct (blue) / wrong (yellow): {acc:.1f} % of object pixels", correctness_rgb(labels, truth, image))]
    h, w = image.shape[:2]
    fig, axes = plt.subplots(2, 2, figsize=(12, 12 * h / w + 0.6), constrained_layout=True)
    for ax, (title, img) in zip(axes.ravel(), panels):
        ax.imshow(img)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{channel} {best[:8]}: {best_n} boxes kept ({labeler.name})", fontsize=10)
    out = atomic_savefig(fig, out_path, dpi=100)
    plt.close(fig)
    return out


# ------------------------------------------------------------------------------------------------
# Real keyframe: labels and the LiDAR check
# ------------------------------------------------------------------------------------------------

def lidar_points_in_camera(nusc, lidar_sd_token: str, cam_sd_token: str) -> np.ndarray:
    """A LiDAR sweep's points in a camera frame (N, 3) m, through the global frame with each
    sample_data's own ego pose: ``cam_T_lidar = cam_T_egocam @ egocam_T_global @ global_T_egolidar @
    egolidar_T_lidar``, the chain of nuscenes-devkit's ``map_pointcloud_to_image``.

    Raises: FileNotFoundError when the point file is missing.
    """
    from nuscenes.utils.data_classes import LidarPointCloud

    def pose(sd):
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        ep = nusc.get("ego_pose", sd["ego_pose_token"])
        return transform_from(ep["translation"], ep["rotation"]) @ transform_from(cs["translation"], cs["rotation"])

    lidar, cam = nusc.get("sample_data", lidar_sd_token), nusc.get("sample_data", cam_sd_token)
    path = Path(nusc.dataroot) / lidar["filename"]
    if not path.exists():
        raise FileNotFoundError(f"LiDAR file {path} of sample_data {lidar_sd_token} is missing")
    pts = LidarPointCloud.from_file(str(path)).points[:3].T.astype(np.float64)
    cam_T_lidar = invert(pose(cam)) @ pose(lidar)
    return pts @ cam_T_lidar[:3, :3].T + cam_T_lidar[:3, 3]


def lidar_box_check(points_cam: np.ndarray, K: np.ndarray, labels: BoxLabels, min_dist: float = 1.0) -> list[dict]:
    """For each kept / ignored box: the LiDAR points inside its 3D box (devkit ``points_in_box``)
    that project into the image (camera depth > ``min_dist`` m, as ``map_pointcloud_to_image``),
    and how many of them land on pixels the instance map gives that box.

    Args: points_cam (N, 3) camera frame m; K (3, 3) at the label size; labels: :class:`BoxLabels`.
    Returns: one dict per box: token, class_name, status, n_points_all (points inside the box, in
        or out of view), n_points, n_on_box, rate (NaN without points).
    """
    from nuscenes.utils.geometry_utils import points_in_box

    H, W = labels.instance.shape
    z = points_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (points_cam @ K.T)[:, :2] / z[:, None]
    px = np.round(np.nan_to_num(uv, nan=-1.0, posinf=-1.0, neginf=-1.0)).astype(np.int64)
    in_img = (z > min_dist) & (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H)
    rows = []
    for r in labels.records:
        if not r.labelled:
            continue
        inside = points_in_box(r.box.devkit_box(), points_cam.T)
        sel = in_img & inside
        owner = labels.instance[px[sel, 1], px[sel, 0]]
        n, hit = int(sel.sum()), int((owner == r.index).sum())
        rows.append(dict(token=r.token, class_name=r.class_name, status=r.status, n_points_all=int(inside.sum()),
                         n_points=n, n_on_box=hit, rate=hit / n if n else float("nan")))
    return rows


def _save_png(img: np.ndarray, path: Path) -> Path:
    return atomic_write(path, lambda tmp: Image.fromarray(img).save(tmp, format="PNG"))


def real_keyframe_box_labels(out_dir=None, sam_weights=None, dataroot=None, sample_token: str | None = None,
                             min_inside: float = MIN_INSIDE) -> dict:
    """Label the six real cameras of the keyframe in ``../shared`` and check the labels with LiDAR.

    Labeller: :class:`~bevlib.data.box_labels.ProjectedBoxLabeler` (hull masks), or
    :class:`~bevlib.data.sam_labeler.SamBoxLabeler` when ``sam_weights`` (a local directory) is given;
    no prompt inflation (nuScenes' boxes are 3D). Writes per camera ``<CAM>.png`` (image, coloured
    labels, prompt rectangles, LiDAR points in kept boxes: green on the box's pixels, red elsewhere),
    ``mosaic.png``, ``lidar_in_box.csv`` / ``.md`` (per camera and overall) and
    ``lidar_in_box_boxes.csv`` (per box), all atomically. The data are read in place, never copied.

    Args:
        out_dir: default ``<project>/outputs/multivit_pseudo_labels/real_keyframe``.
        dataroot: default :func:`bevlib.data.source.real_keyframe_root`. sample_token: default the first.
    Returns: dict with ``per_camera`` {channel: {kept, ignored, n_points, n_on_box, rate}},
        ``overall`` (same keys), ``boxes`` (per-box rows of kept boxes, with the annotation's
        ``num_lidar_pts`` beside ``n_points_all``, the points found inside the box here: a check of
        the frame chain), ``files``, ``labeler`` (name), ``seconds``.
    Raises: FileNotFoundError when the keyframe (or ``sam_weights``) is missing.
    """
    t0 = time.perf_counter()
    root = Path(dataroot) if dataroot is not None else real_keyframe_root()
    if not (root / "v1.0-mini").is_dir():
        raise FileNotFoundError(f"no real nuScenes keyframe (v1.0-mini) under {root}")
    out = Path(out_dir) if out_dir is not None else outputs_dir("multivit_pseudo_labels", "real_keyframe")
    nusc = open_nuscenes(root, "v1.0-mini")
    sample = nusc.get("sample", sample_token) if sample_token else nusc.sample[0]
    if sam_weights is not None:
        from ...data.sam_labeler import SamBoxLabeler
        labeler = SamBoxLabeler(sam_weights, min_inside=min_inside)
    else:
        labeler = ProjectedBoxLabeler(min_inside=min_inside)
    lidar_tok = sample["data"]["LIDAR_TOP"]
    per_cam, all_boxes, files, tiles = {}, [], {}, []
    for ch in CAMERAS:
        tok = sample["data"][ch]
        res = labeler.label_full(nusc, tok)
        sd = nusc.get("sample_data", tok)
        K = np.asarray(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"], np.float64)
        pts = lidar_points_in_camera(nusc, lidar_tok, tok)
        rows = [dict(camera=ch, **r, num_lidar_pts=nusc.get("sample_annotation", r["token"])["num_lidar_pts"])
                for r in lidar_box_check(pts, K, res)]
        kept = [r for r in rows if r["status"] == KEPT]
        all_boxes += kept
        n, hit = sum(r["n_points"] for r in kept), sum(r["n_on_box"] for r in kept)
        per_cam[ch] = dict(kept=len(kept), ignored=sum(r["status"] == IGNORED for r in rows), n_points=n,
                           n_on_box=hit, rate=hit / n if n else float("nan"))
        image = np.asarray(Image.open(nusc.get_sample_data_path(tok)).convert("RGB"))
        tile = _draw_rects(_label_rgb(res.labels, image), res.records)
        _dots(tile, pts, K, res)
        small = np.asarray(Image.fromarray(tile).resize((800, 450), Image.BILINEAR))
        files[ch] = str(_save_png(small, out / f"{ch}.png"))
        tiles.append(small)
    mosaic = np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:], 1)], 0)
    files["mosaic"] = str(_save_png(mosaic, out / "mosaic.png"))
    n, hit = sum(c["n_points"] for c in per_cam.values()), sum(c["n_on_box"] for c in per_cam.values())
    overall = dict(kept=sum(c["kept"] for c in per_cam.values()), ignored=sum(c["ignored"] for c in per_cam.values()),
                   n_points=n, n_on_box=hit, rate=hit / n if n else float("nan"))
    table = [dict(camera=ch, **{k: (v * 100 if k == "rate" else v) for k, v in c.items()})
             for ch, c in [*per_cam.items(), ("all", overall)]]
    caption = (f"LiDAR points inside kept 3D boxes that land on the box's own pixels ({labeler.name}), real "
               f"nuScenes keyframe {sample['token'][:8]}; columns: camera, kept / ignored boxes, LiDAR points in "
               f"kept boxes projecting into the image, those on the box's own pixels, rate (%).")
    csv_path, md_path = write_table(table, out, "lidar_in_box", ("camera", "kept", "ignored", "n_points", "n_on_box"),
                                    ("rate",), caption, titles=("rate (%)",), digits=1)
    import csv
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(all_boxes[0]) if all_boxes else ["camera"])
    w.writeheader()
    w.writerows(all_boxes)
    files.update(csv=str(csv_path), md=str(md_path),
                 boxes_csv=str(atomic_write_text(out / "lidar_in_box_boxes.csv", buf.getvalue())))
    return dict(per_camera=per_cam, overall=overall, boxes=all_boxes, files=files, labeler=labeler.name,
                sample_token=sample["token"], seconds=time.perf_counter() - t0)


def _dots(tile: np.ndarray, pts: np.ndarray, K: np.ndarray, res: BoxLabels, min_dist: float = 1.0) -> None:
    """Mark (in place) the LiDAR points inside kept boxes: green on the box's own pixels, red elsewhere."""
    from nuscenes.utils.geometry_utils import points_in_box

    H, W = res.instance.shape
    z = pts[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.nan_to_num((pts @ K.T)[:, :2] / z[:, None], nan=-1.0, posinf=-1.0, neginf=-1.0)
    px = np.round(uv).astype(np.int64)
    ok = (z > min_dist) & (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H)
    for r in res.records:
        if r.status != KEPT:
            continue
        sel = ok & points_in_box(r.box.devkit_box(), pts.T)
        on = res.instance[px[sel, 1], px[sel, 0]] == r.index
        for col, p in (((40, 255, 40), px[sel][on]), ((255, 30, 30), px[sel][~on])):
            for du in (-1, 0, 1):
                for dv in (-1, 0, 1):
                    tile[np.clip(p[:, 1] + dv, 0, H - 1), np.clip(p[:, 0] + du, 0, W - 1)] = col


def real_keyframe_available() -> bool:
    """Whether the real keyframe is present in ``../shared`` (the notebook skips that part otherwise)."""
    return (real_keyframe_root() / "v1.0-mini").is_dir()


def write_summary(out_dir, result: dict, real: dict | None = None) -> Path:
    """``summary.json``: labeller, images, Table 2 analogue numbers (both measurements), runtimes and,
    when given, the real keyframe's LiDAR check (overall and per camera). Written atomically."""
    import json

    def clean(r):
        return {k: v for k, v in r.items() if k != "confusion"}
    summary = dict(labeler=result["labeler"].name, data=result["data_desc"], n_images=len(result["tokens"]),
                   labels_made=result["made"], label_s=result["label_s"], eval_s=result["eval_s"],
                   table2_all=clean(result["all"]), table2_annotated=clean(result["annotated"]),
                   real_keyframe=None if real is None else {k: real[k] for k in ("labeler", "sample_token", "overall",
                                                                                 "per_camera", "seconds")})
    return atomic_write_text(Path(out_dir) / "summary.json", json.dumps(summary, indent=1, default=float))
