"""Keyframe items of the combined-datasets BEV pre-training (combined-datasets-bev-pretraining.md,
Sec. 3.1: a sample is ``D_i = {I_i, P_i}``, six surround-view images and one LiDAR sweep; Sec. 4.1 /
Appendix A: the datasets are mixed evenly and re-indexed, each sample tagged with its dataset).

:class:`KeyframeItems` reads one world's keyframes through :func:`bevlib.data.fields.load_keyframe`
(fields ``cameras`` and ``lidar``), :func:`mixed_keyframes` wraps several worlds (one per sensor
rig) in a :class:`bevlib.data.mixed.MixedDataset`, and :func:`collate_keyframes` batches them for
:class:`.pretrain.CombinedPretrainTask` (points stay a list: the sweeps differ in size).

Frames: ego (x forward, y left, z up, metres); cameras OpenCV; ``ego_T_cam`` maps camera points into
the ego frame.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from bevlib.data.mixed import MixedDataset

__all__ = ["KeyframeItems", "collate_keyframes", "mixed_keyframes", "POINT_FEATURES"]

#: The per-point feature column that follows xyz: ``"intensity"`` (divided by 255 so it is O(1);
#: nuScenes-format files store 0..255) or ``"ring"`` (laser index / (max ring + 1) of the sweep,
#: in [0, 1), so 32-, 40- and 64-beam rigs share one scale). The paper (Sec. 4.1) "unified ... feature
#: dimensions" of the LiDARs without saying how; intensity is our default because its meaning does
#: not depend on the beam count.
POINT_FEATURES = ("intensity", "ring")

# ImageNet statistics (the same as bevlib.models.backbone.normalize_images), float32 (3, 1, 1)
_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


class KeyframeItems(Dataset):
    """One world's keyframes as pre-training items, held in memory after the first read.

    Args:
        nusc: the devkit database (``bevlib.data.nuscenes_data.open_nuscenes``).
        tokens: sample tokens, in item order (non-empty).
        image_wh: (w, h) pixels the images are resized to (K follows).
        dataset_index: the world's dataset index (>= 0), put into every item (also valid without a
            :class:`MixedDataset`, e.g. a single-dataset run).
        point_feature: one of :data:`POINT_FEATURES`.
        cache: keep costly keyframe fields in the on-disk field cache (``KeyframeConfig.cache``).
    Item i: dict with
        ``images`` (6, 3, h, w) float32 ImageNet-normalised RGB;
        ``K`` (6, 3, 3) float32 pixels at ``image_wh``;
        ``ego_T_cam`` (6, 4, 4) float32, camera (OpenCV) -> ego, metres;
        ``points`` (N, 4) float32: ego x, y, z metres, then the point feature;
        ``dataset_index`` int.
    Raises: ValueError naming ``tokens``, ``image_wh``, ``dataset_index`` or ``point_feature``;
        DataError (on access) as ``load_keyframe``.
    """

    def __init__(self, nusc, tokens, image_wh: tuple[int, int], dataset_index: int = 0,
                 point_feature: str = "intensity", cache: bool = True):
        from bevlib.data.fields import KeyframeConfig
        self.tokens = list(tokens)
        if not self.tokens:
            raise ValueError("tokens must hold at least one sample token")
        if len(image_wh) != 2 or min(int(v) for v in image_wh) < 1:
            raise ValueError(f"image_wh must be (w, h) positive pixels, got {image_wh!r}")
        if isinstance(dataset_index, bool) or not isinstance(dataset_index, (int, np.integer)) or dataset_index < 0:
            raise ValueError(f"dataset_index must be an int >= 0, got {dataset_index!r}")
        if point_feature not in POINT_FEATURES:
            raise ValueError(f"point_feature must be one of {POINT_FEATURES}, got {point_feature!r}")
        self.nusc = nusc
        self.image_wh = (int(image_wh[0]), int(image_wh[1]))
        self.dataset_index = int(dataset_index)
        self.point_feature = point_feature
        self.kcfg = KeyframeConfig(fields=("cameras", "lidar"), image_wh=self.image_wh, cache=cache)
        self._items: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def _read(self, i: int) -> dict:
        from bevlib.data.fields import load_keyframe
        kf = load_keyframe(self.nusc, self.tokens[i], self.kcfg)
        images = kf["images"].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        images = (images - _MEAN) / _STD
        if self.point_feature == "intensity":
            feat = kf["lidar_intensity"].astype(np.float32) / 255.0
        else:
            ring = kf["lidar_ring"].astype(np.float32)
            feat = ring / (float(ring.max()) + 1.0) if ring.size else ring
        points = np.concatenate([kf["lidar_points"].astype(np.float32), feat[:, None]], 1)
        return {"images": torch.from_numpy(np.ascontiguousarray(images, np.float32)),
                "K": torch.from_numpy(kf["K"].astype(np.float32)),
                "ego_T_cam": torch.from_numpy(kf["ego_T_cam"].astype(np.float32)),
                "points": torch.from_numpy(np.ascontiguousarray(points))}

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not 0 <= i < len(self.tokens):
            raise IndexError(f"item {i} out of range for {len(self.tokens)} keyframes")
        if i not in self._items:
            self._items[i] = self._read(i)
        # a fresh dict per access (MixedDataset adds keys); the tensors are shared, never written
        return {**self._items[i], "dataset_index": self.dataset_index}


class _Retagged(Dataset):
    """Items of a dataset without their ``dataset_index`` key (MixedDataset adds its own)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        item = dict(self.ds[i])
        item.pop("dataset_index", None)
        return item


def mixed_keyframes(worlds: list, names: list[str], image_wh: tuple[int, int], repeat: list[float] | None = None,
                    seed: int = 0, point_feature: str = "intensity", cache: bool = True) -> MixedDataset:
    """Several worlds (datasets) mixed evenly and re-indexed (paper Sec. 4.1, Appendix A Table 8).

    Args:
        worlds: list of ``(nusc, tokens)`` pairs, one per dataset; dataset d gets index d.
        names: one unique name per world (e.g. ``["nuscenes", "lyft", "once"]``).
        image_wh, point_feature, cache: as :class:`KeyframeItems`.
        repeat: per-dataset repeat factors (Table 8) or None (balanced: every dataset contributes
            ``max(lengths)`` samples per epoch).
        seed: order of the mixed index (:class:`MixedDataset`).
    Returns: a :class:`MixedDataset` whose items are :class:`KeyframeItems` items with ``dataset_index``
        = the world's position in ``worlds``.
    Raises: ValueError naming ``worlds`` (empty, or not pairs), or as :class:`KeyframeItems` /
        :class:`MixedDataset`.
    """
    if not isinstance(worlds, (list, tuple)) or not worlds:
        raise ValueError("worlds must be a non-empty list of (nusc, tokens) pairs")
    parts = []
    for d, w in enumerate(worlds):
        if not isinstance(w, (list, tuple)) or len(w) != 2:
            raise ValueError(f"worlds[{d}] must be a (nusc, tokens) pair, got {type(w).__name__}")
        parts.append(_Retagged(KeyframeItems(w[0], w[1], image_wh, d, point_feature, cache)))
    return MixedDataset(parts, list(names), repeat=repeat, seed=seed)


def collate_keyframes(items: list[dict]) -> dict:
    """Batch items of :class:`KeyframeItems` / :func:`mixed_keyframes`.

    Returns: ``images`` (B, 6, 3, h, w), ``K`` (B, 6, 3, 3), ``ego_T_cam`` (B, 6, 4, 4) stacked;
        ``points`` a list of B (N_b, 4) tensors; ``dataset_index`` (B,) int64.
    Raises: ValueError for an empty list or items of different image sizes.
    """
    if not items:
        raise ValueError("items must hold at least one item")
    shapes = {tuple(it["images"].shape) for it in items}
    if len(shapes) != 1:
        raise ValueError(f"items have different image shapes {sorted(shapes)}: use one image_wh for every world")
    return {"images": torch.stack([it["images"] for it in items]),
            "K": torch.stack([it["K"] for it in items]),
            "ego_T_cam": torch.stack([it["ego_T_cam"] for it in items]),
            "points": [it["points"] for it in items],
            "dataset_index": torch.as_tensor([int(it["dataset_index"]) for it in items], dtype=torch.int64)}
