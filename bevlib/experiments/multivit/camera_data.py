"""lukkassen2024 MultiViT camera data: keyframe camera items, camera augmentations and the aligned
camera / range-image pairs (Sec. 3.2, Sec. 4.1 "Augmentations").

The paper trains CameraViT on the 6 camera views of each keyframe with "random flipping, random
scaling, and random rotation" (magnitudes not given), and MultiViT on pairs of a 32 x 384 range-image
crop and the camera view it "aligns with" (the 32 x 2048 image cut into 6 crops). Here:

* :func:`load_camera_items` holds each keyframe's 6 resized images, their cached pseudo-labels
  (:data:`bevlib.classes.MULTIVIT_CAMERA`) and the rig, including ``lidar_T_cam``: each camera in
  the keyframe's LIDAR_TOP sensor frame, the frame the range image is projected in.
* :class:`CameraDataset` yields (keyframe, camera) items with our camera augmentations
  (:func:`draw_camera_augmentation`: flip p = 0.5, scale U(0.8, 1.2), rotation U(+-10 deg) about
  the image centre, output size unchanged, image bilinear, labels nearest, new pixels ignore).
* :func:`camera_column` is the fractional range-image column of a camera's optical axis, and
  :class:`AlignedPairDataset` cuts a ``crop_w``-wide crop centred on it (rolled across the 0 / W
  seam), with the RangeViT LiDAR augmentations and a flip shared by both modalities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ... import geometry as geo
from ...classes import MULTIVIT_CAMERA
from ...data.nuscenes_data import CAMERAS
from ...models.backbone import normalize_images
from ...range_view import RangeProjection, project_to_range
from .task import (Augmentation, apply_augmentation, collate_sweeps, draw_augmentation, normalise_range_image,
                   rotation_matrix)

#: Cameras per keyframe (:data:`bevlib.data.nuscenes_data.CAMERAS` order).
N_CAMERAS = len(CAMERAS)
#: Pseudo-label values a MultiViT camera item may hold: background, the 10 object classes, ignore.
_VALID_LABELS = frozenset(range(len(MULTIVIT_CAMERA.names))) | {MULTIVIT_CAMERA.ignore_index}


# ------------------------------------------------------------------------------------------------
# Keyframe camera items
# ------------------------------------------------------------------------------------------------

def keyframe_lidar_T_cam(nusc, sample_token: str, ego_T_cam: np.ndarray) -> np.ndarray:
    """Cameras in the keyframe's LIDAR_TOP sensor frame: ``lidar_T_cam = inv(ego_T_lidar) @ ego_T_cam``.

    Args:
        nusc: nuScenes database (devkit ``NuScenes``).
        sample_token: the keyframe.
        ego_T_cam: (N, 4, 4) cameras in the keyframe's ego frame (the LIDAR_TOP ego pose), as
            :func:`bevlib.data.nuscenes_data.camera_rig` / the ``cameras`` field give them.
    Returns: (N, 4, 4) float64 ``lidar_T_cam`` (maps camera-frame points, OpenCV axes, into the
        LIDAR_TOP sensor frame the range image of :func:`bevlib.range_view.project_to_range` uses).
    Raises: ValueError when the keyframe has no LIDAR_TOP sample_data.

    ``ego_T_lidar`` is the keyframe LIDAR_TOP's ``calibrated_sensor`` record (nuScenes schema);
    the rig's ego frame is that sweep's ego pose, so no pose enters here.
    """
    sample = nusc.get("sample", sample_token)
    if "LIDAR_TOP" not in sample["data"]:
        raise ValueError(f"keyframe {sample_token} has no LIDAR_TOP: lidar_T_cam needs its calibration")
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    lidar_T_ego = geo.invert(geo.transform_from(cs["translation"], cs["rotation"]))
    return lidar_T_ego @ np.asarray(ego_T_cam, np.float64)


def _check_hw(image_hw) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in image_hw)
        ok = (h, w) == tuple(image_hw) and h > 0 and w > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"image_hw must be two positive integers (h, w), got {image_hw!r}")
    return h, w


def load_camera_items(nusc, sample_tokens, labeler_name: str, image_hw, progress: bool = True) -> list[dict]:
    """Keyframe camera items held in memory (lukkassen2024 Sec. 4.1: 6 views per keyframe).

    Read through :func:`bevlib.data.fields.load_keyframe` with fields ``("cameras", "pseudo")``.

    Args:
        nusc: nuScenes database.
        sample_tokens: keyframe tokens, in the order of the returned list.
        labeler_name: the cached pseudo-label set (:mod:`bevlib.data.pseudo`) in
            :data:`bevlib.classes.MULTIVIT_CAMERA` indices (0 background, 1..10 objects, 255 ignore).
        image_hw: (h, w) pixels of images and labels (paper: 256 x 704).
        progress: show a progress bar.
    Returns: per keyframe a dict: ``images`` (6, h, w, 3) uint8 RGB (bilinear-resized); ``labels``
        (6, h, w) uint8 (nearest-resized); ``K`` (6, 3, 3) float32 pixels at (h, w);
        ``ego_T_cam`` (6, 4, 4) float32 (keyframe ego frame); ``lidar_T_cam`` (6, 4, 4) float32
        (keyframe LIDAR_TOP sensor frame, :func:`keyframe_lidar_T_cam`); ``sd_tokens`` list of the
        6 camera sample_data tokens; ``token`` the keyframe. Cameras in
        :data:`bevlib.data.nuscenes_data.CAMERAS` order.
    Raises:
        FileNotFoundError: a pseudo-label of ``labeler_name`` is not cached (names the labeller,
            the keyframe and the file).
        ValueError: ``image_hw`` is not two positive integers, a cached label holds a value
            outside MULTIVIT_CAMERA (0..10, 255: e.g. another project's label set), or a keyframe
            has no LIDAR_TOP.
        DataError: a missing image / record (from the reader).
    """
    from ...data.fields import KeyframeConfig, load_keyframe
    from ...progress import bar

    h, w = _check_hw(image_hw)
    if not labeler_name:
        raise ValueError(f"labeler_name must name a cached pseudo-label set, got {labeler_name!r}")
    cfg = KeyframeConfig(image_wh=(w, h), labeler=labeler_name, fields=("cameras", "pseudo"))
    out = []
    for tok in bar(list(sample_tokens), desc=f"camera items ({labeler_name})", disable=not progress, leave=False):
        try:
            kf = load_keyframe(nusc, tok, cfg)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"camera pseudo-labels of labeller {labeler_name!r} are missing for keyframe "
                                    f"{tok}: {e}") from e
        labels = kf["pseudo"]
        bad = sorted(set(np.unique(labels).tolist()) - _VALID_LABELS)
        if bad:
            raise ValueError(f"pseudo-labels of labeller {labeler_name!r} (keyframe {tok}) hold values {bad} outside "
                             f"{MULTIVIT_CAMERA.name} (0..{len(MULTIVIT_CAMERA.names) - 1}, "
                             f"{MULTIVIT_CAMERA.ignore_index} ignore)")
        sample = nusc.get("sample", tok)
        out.append({"images": kf["images"], "labels": labels, "K": kf["K"], "ego_T_cam": kf["ego_T_cam"],
                    "lidar_T_cam": keyframe_lidar_T_cam(nusc, tok, kf["ego_T_cam"]).astype(np.float32),
                    "sd_tokens": [sample["data"][c] for c in CAMERAS], "token": tok})
    return out


# ------------------------------------------------------------------------------------------------
# Camera augmentations
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CameraAugmentation:
    """One draw of our camera augmentations (lukkassen2024 Sec. 4.1 names flip, scale and rotation
    without magnitudes). The image is scaled by ``scale`` and rotated by ``angle_deg``
    (counter-clockwise as seen, OpenCV's ``getRotationMatrix2D`` sign) about its centre
    ((w - 1) / 2, (h - 1) / 2), then mirrored left-right when ``flip`` (x -> w - 1 - x)."""

    flip: bool = False
    scale: float = 1.0
    angle_deg: float = 0.0

    @property
    def identity(self) -> bool:
        return not self.flip and self.scale == 1.0 and self.angle_deg == 0.0


def _check_camera_aug_params(flip_p, scale, rotate_deg) -> tuple[float, float]:
    if not 0.0 <= flip_p <= 1.0:
        raise ValueError(f"flip_p must be a probability in [0, 1], got {flip_p!r}")
    try:
        lo, hi = (float(s) for s in scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a (low, high) pair, got {scale!r}") from None
    if not 0.0 < lo <= hi:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale!r}")
    if not 0.0 <= rotate_deg < 180.0:
        raise ValueError(f"rotate_deg must be in [0, 180) degrees, got {rotate_deg!r}")
    return lo, hi


def draw_camera_augmentation(flip_p: float = 0.5, scale=(0.8, 1.2), rotate_deg: float = 10.0) -> CameraAugmentation:
    """Draw flip (probability ``flip_p``), scale ~ U(``scale``) and angle ~ U(+-``rotate_deg``) degrees
    from NumPy's global RNG (the trainer seeds it per item). Always three draws, in that order, so
    the stream does not depend on the outcome. Ours: the paper gives no magnitudes.
    Raises: ValueError naming ``flip_p``, ``scale`` or ``rotate_deg`` when out of range."""
    lo, hi = _check_camera_aug_params(flip_p, scale, rotate_deg)
    flip = bool(np.random.rand() < flip_p)
    s = float(np.random.uniform(lo, hi))
    a = float(np.random.uniform(-rotate_deg, rotate_deg))
    return CameraAugmentation(flip, s, a)


def camera_affine(aug: CameraAugmentation, w: int, h: int) -> np.ndarray:
    """(2, 3) float64 forward pixel map of ``aug`` on a (h, w) image (``cv2.warpAffine``'s ``M``,
    pixel centres at integers): [x', y'] = M [x, y, 1]."""
    c = ((w - 1) / 2.0, (h - 1) / 2.0)
    m = np.vstack([cv2.getRotationMatrix2D(c, float(aug.angle_deg), float(aug.scale)), [0.0, 0.0, 1.0]])
    if aug.flip:
        m = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
    return m[:2]


def apply_camera_augmentation(image: np.ndarray, labels: np.ndarray, aug: CameraAugmentation):
    """Warp an image and its labels jointly with :func:`camera_affine` (``cv2.warpAffine``).

    Args:
        image: (h, w, 3) uint8 RGB; labels: (h, w) uint8 class indices.
    Returns: (image, labels) of the same shapes and dtypes. Image bilinear, pixels from outside
        the source black (0); labels nearest (no blended classes), pixels from outside the source
        :data:`MULTIVIT_CAMERA.ignore_index` (255), so padding never counts as background.
        The identity returns copies without resampling; a pure flip is exact.
    Raises: ValueError when the shapes do not match.
    """
    h, w = labels.shape[:2]
    if image.shape[:2] != (h, w) or labels.ndim != 2:
        raise ValueError(f"image (h, w, 3) and labels (h, w) must match, got {image.shape} and {labels.shape}")
    if aug.identity:
        return image.copy(), labels.copy()
    m = camera_affine(aug, w, h)
    img = cv2.warpAffine(np.ascontiguousarray(image), m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    lab = cv2.warpAffine(np.ascontiguousarray(labels), m, (w, h), flags=cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=int(MULTIVIT_CAMERA.ignore_index))
    return img, lab


def camera_tensors(image: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, w, 3) uint8 RGB, (h, w) uint8 -> (3, h, w) float32 ImageNet-normalised
    (:func:`bevlib.models.backbone.normalize_images`, as every image model of the repo) and (h, w) int64."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return normalize_images(img[None, None])[0, 0], torch.from_numpy(labels.astype(np.int64))


class CameraDataset(Dataset):
    """CameraViT items over (keyframe, camera) pairs of :func:`load_camera_items` (lukkassen2024 Sec. 4.1).

    Item ``i`` is camera ``i % 6`` of keyframe ``i // 6`` (len = 6 x keyframes): ``image`` (3, h, w)
    float32 ImageNet-normalised, ``labels`` (h, w) int64 in MULTIVIT_CAMERA (255 ignore),
    ``camera`` int (index into :data:`~bevlib.data.nuscenes_data.CAMERAS`). Training draws
    :func:`draw_camera_augmentation` (``flip_p``, ``scale``, ``rotate_deg``) per item from NumPy's
    global RNG and applies it with :func:`apply_camera_augmentation`; evaluation is unaugmented.
    Raises: ValueError for augmentation parameters out of range.
    """

    def __init__(self, items: list[dict], train: bool, flip_p: float = 0.5, scale=(0.8, 1.2), rotate_deg: float = 10.0):
        self.scale = _check_camera_aug_params(flip_p, scale, rotate_deg)
        self.items, self.train, self.flip_p, self.rotate_deg = items, bool(train), float(flip_p), float(rotate_deg)

    def __len__(self):
        return N_CAMERAS * len(self.items)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range 0..{len(self) - 1}")
        it, cam = self.items[i // N_CAMERAS], i % N_CAMERAS
        image, labels = it["images"][cam], it["labels"][cam]
        if self.train:
            image, labels = apply_camera_augmentation(
                image, labels, draw_camera_augmentation(self.flip_p, self.scale, self.rotate_deg))
        img, lab = camera_tensors(image, labels)
        return {"image": img, "labels": lab, "camera": cam}


def collate_camera(items: list[dict]) -> dict:
    """Stack camera items: ``image`` (B, 3, h, w) float32, ``labels`` (B, h, w) int64, ``camera`` (B,) int64."""
    return {"image": torch.stack([it["image"] for it in items]), "labels": torch.stack([it["labels"] for it in items]),
            "camera": torch.tensor([int(it["camera"]) for it in items], dtype=torch.long)}


# ------------------------------------------------------------------------------------------------
# Camera / range-image alignment
# ------------------------------------------------------------------------------------------------

def camera_column(lidar_T_cam: np.ndarray, W: int) -> float:
    """Fractional range-image column of a camera's optical axis (lukkassen2024 Sec. 3.2.1 u equation).

    The axis is the camera frame's +z (OpenCV), ``d = lidar_T_cam[:3, 2]`` in the LiDAR sensor
    frame; its column is ``u = 1/2 (1 - atan2(d_y, d_x) / pi) W`` wrapped into [0, W), the
    convention of :func:`bevlib.range_view.project_to_range` (which floors it to a pixel). It is
    the column of the axis's far end (the vanishing point): a point at depth r on the axis is
    seen from the LiDAR shifted by the camera's offset, ~|t_xy| / r rad (0.5 m at 20 m: 1.4 deg).
    A reflecting ``lidar_T_cam`` (a mirrored frame) is fine: only its third column is read.

    Args:
        lidar_T_cam: (4, 4) camera -> LiDAR sensor frame (:func:`keyframe_lidar_T_cam`).
        W: range-image columns over 360 deg.
    Returns: float in [0, W).
    Raises: ValueError for a non-(4, 4) matrix, W < 1, or an axis (nearly) vertical, with no azimuth.
    """
    T = np.asarray(lidar_T_cam, np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"lidar_T_cam must be a finite (4, 4) matrix, got shape {T.shape}")
    if not (int(W) == W and W >= 1):
        raise ValueError(f"W must be a positive integer, got {W!r}")
    d = T[:3, 2]
    if math.hypot(d[0], d[1]) < 1e-6 * max(np.linalg.norm(d), 1e-300):
        raise ValueError(f"the camera's optical axis {d.tolist()} is vertical: it has no range-image column")
    u = 0.5 * (1.0 - math.atan2(d[1], d[0]) / math.pi) * W
    return float(u % W)


def augmentation_transform(aug: Augmentation) -> np.ndarray:
    """(4, 4) float64 ``aug_T_lidar`` of a LiDAR :class:`~bevlib.experiments.multivit.task.Augmentation`:
    the map :func:`~bevlib.experiments.multivit.task.apply_augmentation` applies to points
    (rotate, translate, then mirror y -> -y; a reflection when ``aug.flip``)."""
    T = np.eye(4)
    T[:3, :3] = rotation_matrix(*aug.angles_deg)
    T[:3, 3] = aug.translation
    if aug.flip:
        T = np.diag([1.0, -1.0, 1.0, 1.0]) @ T
    return T


def crop_start(column: float, crop_w: int, W: int) -> int:
    """First column (in 0..W-1) of the ``crop_w``-wide crop centred on the fractional ``column``:
    the crop covers [s, s + crop_w) (mod W) with s = round(column - crop_w / 2), so its centre
    s + crop_w / 2 is within half a pixel of ``column``. Raises ValueError for crop_w outside 1..W."""
    if not (int(crop_w) == crop_w and 1 <= crop_w <= W):
        raise ValueError(f"crop_w must be an integer in 1..W={W}, got {crop_w!r}")
    return int(math.floor(column - crop_w / 2.0 + 0.5)) % W


class AlignedPairDataset(Dataset):
    """MultiViT pairs: a range-image crop aligned with one camera, and that camera's view
    (lukkassen2024 Sec. 4.1: "6 even crops of size 32 x 384, each of which aligns with a camera view").

    Item ``i`` is camera ``i % 6`` of keyframe ``i // 6`` (len = 6 x keyframes). ``sweeps``
    (:func:`~bevlib.experiments.multivit.task.load_sweeps`) and ``camera_items``
    (:func:`load_camera_items`) list the same keyframes in the same order.

    LiDAR part (training): :func:`~bevlib.experiments.multivit.task.draw_augmentation` (translation
    +-``translate_m``, roll / pitch / yaw +-``rotate_deg``, flip y -> -y, each with probability
    ``p``; the paper's 0.5), then the projection. The crop is centred on the camera's column *in the
    augmented frame* (:func:`camera_column` of ``aug_T_lidar @ lidar_T_cam``): the yaw then changes
    the x / y channels but never the alignment, and a flip mirrors the crop to the mirrored camera
    column. Instead of the paper's 6 fixed crops, each crop is centred on its camera's axis
    (nuScenes' cameras are not evenly spaced in azimuth). The range image is indexed modulo W, so a
    crop across the 0 / W seam is contiguous. Points whose column falls outside the crop are
    dropped; ``u`` is relative to the crop.

    Camera part: the keyframe's image / labels of that camera. Training: the LiDAR flip is applied
    to the image too (never an independent camera flip, which would break the alignment), plus
    :func:`draw_camera_augmentation` scaling (``cam_scale``) and rotation (``cam_rotate_deg``).
    Evaluation (``train=False``): no augmentation in either modality.
    RNG order per item (NumPy's global RNG): the LiDAR draw, then the camera draw.

    Item: ``image`` (5, H, crop_w) float32 normalised range image, ``mask`` (H, crop_w) bool,
    ``points`` (n, 3) float32 m (augmented LiDAR frame), ``u`` / ``v`` (n,) int64 pixels in the
    crop, ``labels`` (n,) int64 0..16 (0 ignore) (the :class:`RangeSweepDataset` keys, so
    :func:`collate_sweeps` batches them); ``cam_image`` (3, h, w) float32 ImageNet-normalised,
    ``cam_labels`` (h, w) int64 MULTIVIT_CAMERA (255 ignore), ``camera`` int.

    Raises: ValueError when the lists differ in length or a keyframe token differs (names both),
        crop_w is outside 1..W, p is not a probability, or a camera parameter is out of range.
    """

    def __init__(self, sweeps: list[dict], camera_items: list[dict], proj: RangeProjection, crop_w: int,
                 train: bool, translate_m: float = 0.25, rotate_deg: float = 5.0, p: float = 0.5,
                 cam_scale=(0.8, 1.2), cam_rotate_deg: float = 10.0):
        if len(sweeps) != len(camera_items):
            raise ValueError(f"sweeps ({len(sweeps)}) and camera_items ({len(camera_items)}) must list the same "
                             f"keyframes")
        for k, (s, c) in enumerate(zip(sweeps, camera_items)):
            if s["token"] != c["token"]:
                raise ValueError(f"keyframe {k}: sweeps has token {s['token']} but camera_items has {c['token']}; "
                                 f"both must list the same keyframes in the same order")
        crop_start(0.0, crop_w, proj.W)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.cam_scale = _check_camera_aug_params(0.0, cam_scale, cam_rotate_deg)
        self.sweeps, self.camera_items, self.proj, self.crop_w = sweeps, camera_items, proj, int(crop_w)
        self.train, self.p = bool(train), float(p)
        self.translate_m, self.rotate_deg, self.cam_rotate_deg = float(translate_m), float(rotate_deg), float(cam_rotate_deg)

    def __len__(self):
        return N_CAMERAS * len(self.sweeps)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range 0..{len(self) - 1}")
        k, cam = i // N_CAMERAS, i % N_CAMERAS
        s, c = self.sweeps[k], self.camera_items[k]
        aug = draw_augmentation(self.translate_m, self.rotate_deg, self.p) if self.train else Augmentation()
        xyz = apply_augmentation(s["points"], aug) if self.train else s["points"]
        ri = project_to_range(np.column_stack([xyz, s["intensity"]]), s["ring"], self.proj)
        W = self.proj.W
        col = camera_column(augmentation_transform(aug) @ np.asarray(c["lidar_T_cam"][cam], np.float64), W)
        start = crop_start(col, self.crop_w, W)
        cols = (start + np.arange(self.crop_w)) % W
        image = normalise_range_image(ri.image, ri.mask)[:, :, cols]
        du = (ri.u - start) % W
        keep = du < self.crop_w
        out = {"image": torch.from_numpy(np.ascontiguousarray(image)),
               "mask": torch.from_numpy(np.ascontiguousarray(ri.mask[:, cols])),
               "points": torch.from_numpy(np.ascontiguousarray(xyz[keep], dtype=np.float32)),
               "u": torch.from_numpy(du[keep].astype(np.int64)), "v": torch.from_numpy(ri.v[keep].astype(np.int64)),
               "labels": torch.from_numpy(s["labels"][keep].astype(np.int64))}
        cam_aug = CameraAugmentation()
        if self.train:
            d = draw_camera_augmentation(0.0, self.cam_scale, self.cam_rotate_deg)
            cam_aug = CameraAugmentation(aug.flip, d.scale, d.angle_deg)
        img, lab = camera_tensors(*apply_camera_augmentation(c["images"][cam], c["labels"][cam], cam_aug))
        out.update(cam_image=img, cam_labels=lab, camera=cam)
        return out


def collate_pairs(items: list[dict]) -> dict:
    """Batch pair items: :func:`~bevlib.experiments.multivit.task.collate_sweeps` for the LiDAR keys
    (``image`` (B, 5, H, crop_w), ``mask``, concatenated ``points`` / ``u`` / ``v`` / ``labels`` and
    ``batch`` (N,)), plus ``cam_image`` (B, 3, h, w) float32, ``cam_labels`` (B, h, w) int64 and
    ``camera`` (B,) int64 stacked."""
    out = collate_sweeps(items)
    out["cam_image"] = torch.stack([it["cam_image"] for it in items])
    out["cam_labels"] = torch.stack([it["cam_labels"] for it in items])
    out["camera"] = torch.tensor([int(it["camera"]) for it in items], dtype=torch.long)
    return out
