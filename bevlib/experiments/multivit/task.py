"""lukkassen2024 RangeViT (Sec. 3.2.1, 3.3 "Augmentations" / "Inference") as a task of the shared trainer.

Items are keyframe LIDAR_TOP sweeps (sensor frame) projected by
:func:`bevlib.range_view.project_to_range` (rows from the ring index). Training items are random
``crop_w``-wide crops of the full range image after the paper's point augmentations; validation
items are the full image, evaluated by sliding-window inference (:func:`sliding_window_forward`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ...classes import NUSCENES_LIDARSEG_16
from ...range_view import RangeProjection, project_to_range
from ...train import Task

#: Fixed per-channel statistics of the range image (range m, intensity, x, y, z m), used as
#: (value - mean) / std on occupied pixels (empty pixels stay 0, i.e. "mean"). Rounded from the
#: embedded world's sweeps (range 15 +- 20 m, intensity 22 +- 20, x / y 0 +- 14..20 m, z -0.2 +- 2.6 m);
#: fixed rather than estimated per run so a run's input does not depend on its training split.
#: On real nuScenes (intensity 0..255, long-tailed) they are a coarse but harmless scaling.
CHANNEL_MEAN = (15.0, 20.0, 0.0, 0.0, 0.0)
CHANNEL_STD = (20.0, 20.0, 15.0, 15.0, 2.5)


def normalise_range_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(5, H, W) float32 :attr:`RangeImage.image` -> normalised with :data:`CHANNEL_MEAN` /
    :data:`CHANNEL_STD` where ``mask`` (H, W) is True, 0 elsewhere. Returns (5, H, W) float32."""
    m = np.asarray(CHANNEL_MEAN, np.float32)[:, None, None]
    s = np.asarray(CHANNEL_STD, np.float32)[:, None, None]
    return np.where(mask[None], (image - m) / s, 0.0).astype(np.float32)


@dataclass(frozen=True)
class Augmentation:
    """One draw of the paper's LiDAR augmentations (lukkassen2024 Sec. 3.3, after RangeViT).

    Attributes:
        flip: mirror y -> -y (the range image flipped over its vertical axis: u -> ~W-1-u).
        translation: (3,) metres added to every point (zeros when not drawn).
        angles_deg: (roll, pitch, yaw) in degrees about the sensor's x, y, z axes (zeros when not drawn).
    """

    flip: bool = False
    translation: tuple = (0.0, 0.0, 0.0)
    angles_deg: tuple = (0.0, 0.0, 0.0)


def draw_augmentation(translate_m: float = 0.25, rotate_deg: float = 5.0, p: float = 0.5) -> Augmentation:
    """Draw flip, translation (uniform in +-``translate_m`` per axis) and rotation (roll, pitch, yaw
    each uniform in +-``rotate_deg``), each applied with probability ``p`` (paper: 0.5), from
    NumPy's global RNG (the trainer seeds it per item fetch, so a draw is reproducible)."""
    flip = bool(np.random.rand() < p)
    t = tuple(np.random.uniform(-translate_m, translate_m, 3).tolist()) if np.random.rand() < p else (0.0, 0.0, 0.0)
    a = tuple(np.random.uniform(-rotate_deg, rotate_deg, 3).tolist()) if np.random.rand() < p else (0.0, 0.0, 0.0)
    return Augmentation(flip, t, a)


def rotation_matrix(roll_deg: float, pitch_deg: float, yaw_deg: float) -> np.ndarray:
    """(3, 3) float64 R = Rz(yaw) Ry(pitch) Rx(roll), right-handed, angles in degrees."""
    r, p, y = (math.radians(a) for a in (roll_deg, pitch_deg, yaw_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def apply_augmentation(xyz: np.ndarray, aug: Augmentation) -> np.ndarray:
    """Points (N, 3) metres, sensor frame -> rotated, translated, then flipped; (N, 3) float32.
    Applied before projection, so the range image, (u, v) and the refiner's 3D points all agree.
    Rows come from the ring index and do not move with roll / pitch."""
    out = xyz.astype(np.float64) @ rotation_matrix(*aug.angles_deg).T + np.asarray(aug.translation)
    if aug.flip:
        out[:, 1] = -out[:, 1]
    return out.astype(np.float32)


def load_sweeps(nusc, sample_tokens, min_distance: float = 1.0) -> list[dict]:
    """Keyframe sweeps held in memory: per token a dict with ``points`` (N, 3) float32 m (LIDAR_TOP
    sensor frame), ``intensity`` (N,) float32, ``ring`` (N,) uint8, ``labels`` (N,) uint8 in the 16
    evaluation classes (0 = ignore, :func:`bevlib.data.lidar.map_lidarseg`), ``token``, and
    ``n_dropped`` / ``n_dropped_labelled``: points removed by ``min_distance`` (all / labelled 1..16).

    ``min_distance``: drop points with ``|x| < d and |y| < d`` (the devkit's ``remove_close`` rule, in the
    sensor frame). Why: returns from the ego vehicle itself (a quarter
    of the embedded world's points, in a ~1 m box, all ``vehicle.ego`` -> ignore) would otherwise own
    the nearest pixels and make the 3D refiner's radius search quadratic in that dense cluster. Points
    labelled ignore never count in the metric; labelled ones dropped are counted in ``n_dropped_labelled``
    (0 on the embedded world) so a caller can see the evaluation is unchanged. 0 keeps every point.
    Raises: ValueError when a keyframe has no LIDAR_TOP, no ring or no lidarseg."""
    from ...data.lidar import load_lidar_sweep, map_lidarseg

    out = []
    for tok in sample_tokens:
        s = load_lidar_sweep(nusc, tok)
        if s is None or s.ring is None or s.lidarseg is None:
            raise ValueError(f"keyframe {tok} lacks a LIDAR_TOP sweep with ring and lidarseg")
        labels = map_lidarseg(nusc, s.lidarseg)
        p = s.points_sensor
        keep = ~((np.abs(p[:, 0]) < min_distance) & (np.abs(p[:, 1]) < min_distance))
        out.append({"points": np.ascontiguousarray(p[keep]), "intensity": s.intensity[keep], "ring": s.ring[keep],
                    "labels": labels[keep], "token": tok, "n_dropped": int((~keep).sum()),
                    "n_dropped_labelled": int((labels[~keep] != 0).sum())})
    return out


class RangeSweepDataset(Dataset):
    """Range-image items of in-memory sweeps (:func:`load_sweeps`).

    Item: ``image`` (5, H, W') float32 normalised range image, ``mask`` (H, W') bool occupied
    pixels, ``points`` (n, 3) float32 m (after augmentation), ``u`` / ``v`` (n,) int64 each point's
    own pixel in the item's image, ``labels`` (n,) int64 in 0..16 (0 = ignore). Training
    (``crop_w`` set): random augmentation (:func:`draw_augmentation`), projection, a crop of
    ``crop_w`` columns starting uniformly in 0..W-crop_w, points outside the crop dropped
    (W' = crop_w). Validation (``crop_w=None``): the full image and every point (W' = W).
    """

    def __init__(self, sweeps: list[dict], proj: RangeProjection, crop_w: int | None = None,
                 translate_m: float = 0.25, rotate_deg: float = 5.0):
        self.sweeps, self.proj, self.crop_w = sweeps, proj, crop_w
        self.translate_m, self.rotate_deg = translate_m, rotate_deg

    def __len__(self):
        return len(self.sweeps)

    def __getitem__(self, i: int) -> dict:
        s = self.sweeps[i]
        xyz = s["points"]
        if self.crop_w is not None:
            xyz = apply_augmentation(xyz, draw_augmentation(self.translate_m, self.rotate_deg))
        ri = project_to_range(np.column_stack([xyz, s["intensity"]]), s["ring"], self.proj)
        image, mask, u, v, labels = normalise_range_image(ri.image, ri.mask), ri.mask, ri.u, ri.v, s["labels"]
        if self.crop_w is not None:
            start = int(np.random.randint(0, self.proj.W - self.crop_w + 1))
            keep = (u >= start) & (u < start + self.crop_w)
            image, mask = image[:, :, start:start + self.crop_w], mask[:, start:start + self.crop_w]
            xyz, u, v, labels = xyz[keep], u[keep] - start, v[keep], labels[keep]
        return {"image": torch.from_numpy(np.ascontiguousarray(image)), "mask": torch.from_numpy(np.ascontiguousarray(mask)),
                "points": torch.from_numpy(np.ascontiguousarray(xyz, dtype=np.float32)),
                "u": torch.from_numpy(u.astype(np.int64)), "v": torch.from_numpy(v.astype(np.int64)),
                "labels": torch.from_numpy(labels.astype(np.int64))}


def collate_sweeps(items: list[dict]) -> dict:
    """Batch items of varying point counts: ``image`` (B, 5, H, W), ``mask`` (B, H, W) stacked;
    ``points`` (N, 3), ``u``, ``v``, ``labels`` (N,) concatenated with ``batch`` (N,) int64 scan index
    (the form :class:`bevlib.models.rangevit.RangeViT` takes)."""
    out = {"image": torch.stack([it["image"] for it in items]), "mask": torch.stack([it["mask"] for it in items])}
    for k in ("points", "u", "v", "labels"):
        out[k] = torch.cat([it[k] for it in items])
    out["batch"] = torch.cat([torch.full((len(it["u"]),), b, dtype=torch.long) for b, it in enumerate(items)])
    return out


def window_starts(width: int, window: int, stride: int) -> list[int]:
    """Left columns of the sliding windows: 0, stride, 2 stride, ... and a last one flush with the
    right edge, so every column is covered. Raises ValueError for window > width or stride < 1."""
    if window > width or stride < 1:
        raise ValueError(f"need window <= width and stride >= 1, got window={window}, width={width}, stride={stride}")
    starts = list(range(0, width - window + 1, stride))
    if starts[-1] + window < width:
        starts.append(width - window)
    return starts


@torch.no_grad()
def sliding_window_forward(model, image: torch.Tensor, points: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                           batch: torch.Tensor, window: int, stride: int) -> dict:
    """Sliding-window inference over the full-width range image (lukkassen2024 Sec. 3.3 "Inference",
    after RangeViT): windows of the training crop width at :func:`window_starts`, the 2D decoder
    features (B, C, H, window) of each window summed into the full image and divided by the number
    of windows covering each column (the features, not the logits, are averaged, so the 3D refiner
    sees one feature map as in training); then the pixel head and the 3D refiner on that map.

    Args:
        model: a :class:`bevlib.models.rangevit.RangeViT` (eval mode).
        image: (B, 5, H, W) float; points (N, 3) float m; u, v (N,) int64 full-image pixels; batch (N,) int64.
        window: crop width (px), a multiple of the patch width; stride: px between windows.
    Returns: ``features`` (B, C, H, W), ``pixel_logits`` (B, K, H, W), ``point_logits`` (N, K).
    """
    b, _, h, w = image.shape
    starts = window_starts(w, window, stride)
    # all windows in one batch: one forward instead of len(starts) small ones
    f = model.features_2d(torch.cat([image[..., s:s + window] for s in starts]))
    feats = f.new_zeros((b, f.shape[1], h, w))
    count = f.new_zeros((1, 1, 1, w))
    for k, s in enumerate(starts):
        feats[..., s:s + window] += f[k * b:(k + 1) * b]
        count[..., s:s + window] += 1
    feats = feats / count
    c = feats.shape[1]
    pf = feats.permute(0, 2, 3, 1).reshape(-1, c)[(batch * h + v) * w + u]
    return {"features": feats, "pixel_logits": model.pixel_head(feats),
            "point_logits": model.refiner(points.to(pf.dtype), pf, batch)}


def predict_classes(point_logits: torch.Tensor) -> torch.Tensor:
    """(N, 17) logits -> (N,) int64 classes 1..16 (class 0 = ignore is never predicted, as the
    nuScenes-lidarseg evaluation requires)."""
    return point_logits[:, 1:].argmax(1) + 1


class RangeViTTask(Task):
    """RangeViT trained on nuScenes-lidarseg keyframe sweeps (lukkassen2024 Table 1 rows 1 / 3).

    Loss: L = L_Lovasz + lambda_l L_focal (Sec. 3.2 "Training loss", lambda_l = 1) on the **point**
    logits of the 3D refiner only, over the points labelled 1..16 (0 = ignore). The pixel logits get
    no loss: RangeViT with its KPConv refiner supervises the 3D predictions only, and the paper
    describes no extra 2D term. Evaluation: sliding-window inference, one
    :class:`bevlib.metrics.ConfusionMatrix` over every point of the val sweeps, per-class IoU
    (``<class>_iou``) and ``miou`` in percent (absent classes NaN and skipped, as the devkit).
    """

    headline_metrics = ("miou",)

    def __init__(self, model_cfg: dict, train_sweeps: list[dict], val_sweeps: list[dict], range_hw: tuple,
                 crop_w: int, stride: int, lambda_focal: float = 1.0, translate_m: float = 0.25,
                 rotate_deg: float = 5.0, data_id: dict | None = None):
        self.model_cfg, self.train_sweeps, self.val_sweeps = dict(model_cfg), train_sweeps, val_sweeps
        self.proj = RangeProjection(H=int(range_hw[0]), W=int(range_hw[1]), row="ring")
        self.crop_w, self.stride, self.lambda_focal = int(crop_w), int(stride), float(lambda_focal)
        self.translate_m, self.rotate_deg, self.data_id = float(translate_m), float(rotate_deg), dict(data_id or {})

    def config(self) -> dict:
        from ...io import config_hash
        return {"model_name": "rangevit", "model": self.model_cfg, "data": self.data_id,
                "range_hw": [self.proj.H, self.proj.W], "row": self.proj.row, "crop_w": self.crop_w,
                "stride": self.stride, "lambda_focal": self.lambda_focal, "translate_m": self.translate_m,
                "rotate_deg": self.rotate_deg, "channel_mean": list(CHANNEL_MEAN), "channel_std": list(CHANNEL_STD),
                "n_train": len(self.train_sweeps), "n_val": len(self.val_sweeps),
                "train_tokens_hash": config_hash([s["token"] for s in self.train_sweeps]),
                "val_tokens_hash": config_hash([s["token"] for s in self.val_sweeps])}

    def build_model(self):
        from ...models.registry import build_model
        return build_model("rangevit", self.model_cfg)

    def train_dataset(self):
        return RangeSweepDataset(self.train_sweeps, self.proj, self.crop_w, self.translate_m, self.rotate_deg)

    def val_dataset(self):
        return RangeSweepDataset(self.val_sweeps, self.proj, None)

    def collate(self, items):
        return collate_sweeps(items)

    def loss(self, model, batch: dict) -> dict:
        """``{"loss": Lovasz + lambda focal}`` on the point logits (N, 17) against ``labels``."""
        from ...losses import multivit_segmentation_loss

        out = model(batch["image"], batch["points"], batch["u"], batch["v"], batch["batch"])
        logits, labels = out["point_logits"], batch["labels"]
        if not bool((labels != NUSCENES_LIDARSEG_16.ignore_index).any()):
            # a crop without labelled points: a zero loss that still touches every output
            return {"loss": logits.sum() * 0.0}
        loss = multivit_segmentation_loss(logits.t().unsqueeze(0), labels.unsqueeze(0), lambda_focal=self.lambda_focal,
                                          ignore_index=NUSCENES_LIDARSEG_16.ignore_index)
        return {"loss": loss}

    @torch.no_grad()
    def evaluate(self, model, batches, reduce) -> dict:
        """Per-class IoU and mIoU (percent) over every point of the val sweeps, sliding-window inference."""
        from ...metrics import ConfusionMatrix

        cm = ConfusionMatrix(NUSCENES_LIDARSEG_16)
        for b in batches:
            out = sliding_window_forward(model, b["image"], b["points"], b["u"], b["v"], b["batch"],
                                         self.crop_w, self.stride)
            cm.update(predict_classes(out["point_logits"]), b["labels"])
        cm.load_state(reduce(cm.counts))
        return cm.compute()
