"""A torch ``Dataset`` of keyframes (and their previous keyframe, for temporal training), and the
collate function for keyframes with variable-length fields (LiDAR points, boxes)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from ..progress import bar as progress_bar

from .fields import BOX_KEYS, POINT_KEYS
from .fields import KeyframeConfig, load_keyframe


class KeyframeStore:
    """Loads keyframes through the devkit once and keeps them in memory.

    Small worlds (the embedded default, CPU presets) fit in memory, and every experiment of a
    notebook shares one store, so images are decoded and BEV ground truth rasterised only once.
    """

    def __init__(self, nusc, cfg: KeyframeConfig, in_memory: bool = True):
        self.nusc, self.cfg, self.in_memory = nusc, cfg, in_memory
        self._items: dict[str, dict] = {}

    def get(self, token: str) -> dict:
        """The keyframe dict of :func:`load_keyframe` for a ``sample_token`` (loaded on first use).

        Raises: DataError naming a missing or corrupt file / record.
        """
        item = self._items.get(token)
        if item is None:
            item = load_keyframe(self.nusc, token, self.cfg)
            if self.in_memory:
                self._items[token] = item
        return item

    def preload(self, tokens, progress: bool = True) -> None:
        """Load ``tokens`` (and their previous keyframes) now, with a progress bar."""
        for t in progress_bar(list(tokens), desc="loading keyframes", disable=not progress, leave=False):
            prev = self.get(t)["prev_token"]
            if prev:
                self.get(prev)


def _to_tensors(item: dict, prefix: str = "") -> dict:
    out = {
        prefix + "images": torch.from_numpy(np.ascontiguousarray(item["images"].transpose(0, 3, 1, 2))),
        prefix + "K": torch.from_numpy(item["K"]),
        prefix + "ego_T_cam": torch.from_numpy(item["ego_T_cam"]),
    } if "images" in item else {}
    if "pseudo" in item:
        out[prefix + "pseudo"] = torch.from_numpy(item["pseudo"]).long()
    return out


#: Class-label keys of the optional fields, handed out as int64 (what losses index with).
_LABEL_KEYS = ("lidar_seg", "box_class")
#: Keys of the optional fields passed as tensors (with :data:`POINT_KEYS` and :data:`BOX_KEYS`).
_FIELD_TENSOR_KEYS = ("ego_T_lidar", "depth")


def _field_tensors(item: dict) -> dict:
    out = {}
    for k in POINT_KEYS + BOX_KEYS + _FIELD_TENSOR_KEYS:
        if k not in item:
            continue
        v = item[k]
        if isinstance(v, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(v))
            out[k] = t.long() if k in _LABEL_KEYS else t
        else:
            out[k] = list(v)
    for k in ("has_lidar", "has_lidarseg"):
        if k in item:
            out[k] = torch.tensor(bool(item[k]))
    if "depth_source" in item:
        out["depth_source"] = item["depth_source"]
    return out


class KeyframeDataset(Dataset):
    """Keyframes as tensors for training and evaluation.

    Each item holds what the store's :class:`KeyframeConfig` fields provide: ``images`` (N, 3, h, w)
    uint8, ``K`` (N, 3, 3) float32 (pixels at (h, w)), ``ego_T_cam`` (N, 4, 4) float32 (field
    ``cameras``); ``bev_gt`` (H, W) int64, IGNORE where absent (``bev_gt``); ``pseudo`` (N, h, w)
    int64 when pseudo-labels are configured; the ``lidar``, ``boxes`` and ``depth`` keys of
    :mod:`bevlib.data.fields` as tensors (labels ``lidar_seg`` / ``box_class`` int64, the rest in
    their numpy dtype, ``box_token`` / ``box_category`` lists of str); always ``curr_T_prev``
    (4, 4) float32, ``has_prev`` bool, ``index`` int. With ``with_prev`` also ``prev_images``,
    ``prev_K``, ``prev_ego_T_cam`` and ``prev_pseudo`` of the previous keyframe (copies of the
    current one at a scene start, where ``has_prev`` is False).

    Items with ``lidar`` or ``boxes`` vary in length: batch them with :func:`collate_keyframes`.
    """

    def __init__(self, store: KeyframeStore, sample_tokens, with_prev: bool = False):
        self.store, self.tokens, self.with_prev = store, list(sample_tokens), with_prev

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict:
        item = self.store.get(self.tokens[i])
        out = _to_tensors(item)
        if "bev_gt" in item:
            out["bev_gt"] = torch.from_numpy(item["bev_gt"]).long()
        out.update(_field_tensors(item))
        out["curr_T_prev"] = torch.from_numpy(item["curr_T_prev"])
        out["has_prev"] = torch.tensor(bool(item["prev_token"]))
        out["index"] = torch.tensor(i)
        if self.with_prev:
            prev = self.store.get(item["prev_token"]) if item["prev_token"] else item
            out.update(_to_tensors(prev, "prev_"))
        return out


#: Padding of the per-row keys: labels pad with their "no label" value, everything else with 0.
_PAD = {"box_class": -1}


def _pad(rows: list, key: str) -> torch.Tensor:
    n = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), n, *rows[0].shape[1:]), _PAD.get(key, 0), dtype=rows[0].dtype)
    for b, r in enumerate(rows):
        out[b, :len(r)] = r
    return out


def _mask(rows: list) -> torch.Tensor:
    n = max((len(r) for r in rows), default=0)
    return torch.arange(n)[None, :] < torch.tensor([len(r) for r in rows])[:, None]


def collate_keyframes(items: list[dict]) -> dict:
    """Batch :class:`KeyframeDataset` items whose LiDAR points and boxes vary in number.

    Fixed-size keys are stacked by ``torch.utils.data.default_collate``. Per-point keys
    (:data:`bevlib.data.fields.POINT_KEYS`) and per-box tensor keys (:data:`BOX_KEYS`) are padded
    to the batch's largest count, (B, P_max, ...) / (B, M_max, ...), with 0 (``box_class``: -1),
    and ``lidar_mask`` (B, P_max) / ``box_mask`` (B, M_max) bool mark the real rows; ``box_token``
    and ``box_category`` become lists (B) of lists of str. Equals ``default_collate`` on items
    without such keys.
    Raises: KeyError if the items do not all have the same keys.
    """
    if not items:
        raise ValueError("collate_keyframes needs at least one item")
    keys = list(items[0])
    for it in items[1:]:
        if list(it) != keys:
            raise KeyError(f"keyframe items differ in keys: {sorted(set(keys) ^ set(it))}")
    out = {}
    for k in keys:
        vals = [it[k] for it in items]
        if k in POINT_KEYS or k in BOX_KEYS:
            if isinstance(vals[0], torch.Tensor):
                out[k] = _pad(vals, k)
                mask = "lidar_mask" if k in POINT_KEYS else "box_mask"
                out.setdefault(mask, _mask(vals))
            else:
                out[k] = [list(v) for v in vals]
        elif isinstance(vals[0], str):
            out[k] = vals
        else:
            out[k] = default_collate(vals)
    return out
