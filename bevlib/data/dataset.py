"""A torch ``Dataset`` of keyframes (and their previous keyframe, for temporal training)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .nuscenes_data import KeyframeConfig, load_keyframe


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
        for t in tqdm(list(tokens), desc="loading keyframes", disable=not progress, leave=False):
            prev = self.get(t)["prev_token"]
            if prev:
                self.get(prev)


def _to_tensors(item: dict, prefix: str = "") -> dict:
    out = {
        prefix + "images": torch.from_numpy(np.ascontiguousarray(item["images"].transpose(0, 3, 1, 2))),
        prefix + "K": torch.from_numpy(item["K"]),
        prefix + "ego_T_cam": torch.from_numpy(item["ego_T_cam"]),
    }
    if "pseudo" in item:
        out[prefix + "pseudo"] = torch.from_numpy(item["pseudo"]).long()
    return out


class KeyframeDataset(Dataset):
    """Keyframes as tensors for training and evaluation.

    Each item: ``images`` (N, 3, h, w) uint8, ``K`` (N, 3, 3) float32 (pixels at (h, w)),
    ``ego_T_cam`` (N, 4, 4) float32, ``bev_gt`` (H, W) int64 (IGNORE where absent), ``pseudo``
    (N, h, w) int64 when pseudo-labels are configured, ``curr_T_prev`` (4, 4) float32,
    ``has_prev`` bool, ``index`` int; with ``with_prev`` also ``prev_images``, ``prev_K``,
    ``prev_ego_T_cam`` and ``prev_pseudo`` of the previous keyframe (copies of the current one
    at a scene start, where ``has_prev`` is False).
    """

    def __init__(self, store: KeyframeStore, sample_tokens, with_prev: bool = False):
        self.store, self.tokens, self.with_prev = store, list(sample_tokens), with_prev

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict:
        item = self.store.get(self.tokens[i])
        out = _to_tensors(item)
        out["bev_gt"] = torch.from_numpy(item["bev_gt"]).long()
        out["curr_T_prev"] = torch.from_numpy(item["curr_T_prev"])
        out["has_prev"] = torch.tensor(bool(item["prev_token"]))
        out["index"] = torch.tensor(i)
        if self.with_prev:
            prev = self.store.get(item["prev_token"]) if item["prev_token"] else item
            out.update(_to_tensors(prev, "prev_"))
        return out
