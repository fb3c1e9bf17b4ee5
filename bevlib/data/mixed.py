"""Several datasets as one: the combined-datasets paper's re-indexing of nuScenes, Lyft and ONCE
(Sec. 4.1: "balanced the number of training samples across datasets by repeating the data from
NuScenes and Lyft four times"; Appendix A, Table 8: data volume and repeat times per dataset).

:func:`repeat_factor_indices` is the pure index rule; :class:`MixedDataset` wraps it as a torch
Dataset that tags every item with the index of the dataset it came from (what PromptNorm needs to
pick the dataset's prompt, Eq. 5).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset


def _check_lengths(lengths) -> list[int]:
    if not isinstance(lengths, Sequence) or len(lengths) == 0:
        raise ValueError(f"lengths must be a non-empty sequence of dataset sizes, got {lengths!r}")
    out = []
    for i, n in enumerate(lengths):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"lengths[{i}] must be a positive integer (a dataset may not be empty), got {n!r}")
        out.append(int(n))
    return out


def _check_repeat(repeat, n: int) -> list[float]:
    if not isinstance(repeat, Sequence) or len(repeat) != n:
        raise ValueError(f"repeat must be a sequence of {n} repeat factors (one per dataset), got {repeat!r}")
    out = []
    for i, r in enumerate(repeat):
        if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)) \
                or not math.isfinite(r) or r <= 0:
            raise ValueError(f"repeat[{i}] must be a finite number > 0, got {r!r}")
        out.append(float(r))
    return out


def repeat_counts(lengths: Sequence[int], repeat: Sequence[float] | None = None) -> list[int]:
    """Samples each dataset contributes to one epoch.

    Rounding rule: dataset ``d`` contributes ``floor(repeat[d] * lengths[d] + 1e-9)`` samples (the
    ``1e-9`` absorbs float error, e.g. ``3 * (10 / 3)``); at least 1. With ``repeat=None`` every
    dataset contributes ``max(lengths)`` samples (the paper's balanced re-indexing: each dataset is
    seen equally often per epoch, small ones repeated).

    Args:
        lengths: dataset sizes, positive ints.
        repeat: one factor > 0 per dataset (Table 8's "repeat times", fractional allowed), or None.
    Returns: list of ints, one per dataset.
    Raises: ValueError naming ``lengths`` or ``repeat`` on bad input.
    """
    lengths = _check_lengths(lengths)
    if repeat is None:
        return [max(lengths)] * len(lengths)
    repeat = _check_repeat(repeat, len(lengths))
    return [max(1, math.floor(r * n + 1e-9)) for r, n in zip(repeat, lengths)]


def repeat_factor_indices(lengths: Sequence[int], repeat: Sequence[float] | None = None, seed: int = 0,
                          epoch: int = 0, shuffle: bool = True) -> np.ndarray:
    """One epoch of the mixed index: which (dataset, sample) pair each position reads.

    Dataset ``d`` contributes ``c_d`` = :func:`repeat_counts` positions: every sample
    ``floor(c_d / lengths[d])`` times, plus ``c_d mod lengths[d]`` distinct samples once more,
    drawn without replacement from a permutation seeded by (``seed``, ``epoch``, ``d``), so each
    sample is read either ``floor`` or ``floor + 1`` times and over epochs the extra reads rotate.
    With ``shuffle`` the concatenation is permuted with a (``seed``, ``epoch``) stream, else it is
    ordered by dataset, then by sample index. Equal arguments give equal arrays.

    Args:
        lengths: dataset sizes (positive ints).
        repeat: per-dataset repeat factors (> 0), or None for the balanced rule (see :func:`repeat_counts`).
        seed, epoch: non-negative ints selecting the random streams.
        shuffle: permute the positions.
    Returns: (sum(c_d), 2) int64 array of rows (dataset index, sample index within that dataset).
    Raises: ValueError naming ``lengths``, ``repeat``, ``seed`` or ``epoch`` on bad input.
    """
    for name, v in (("seed", seed), ("epoch", epoch)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    counts = repeat_counts(lengths, repeat)
    parts = []
    for d, (n, c) in enumerate(zip(_check_lengths(lengths), counts)):
        full, extra = divmod(c, n)
        rng = np.random.default_rng([int(seed), int(epoch), d])
        idx = np.concatenate([np.tile(np.arange(n, dtype=np.int64), full),
                              np.sort(rng.permutation(n)[:extra]).astype(np.int64)])
        parts.append(np.column_stack([np.full(c, d, np.int64), np.sort(idx)]))
    out = np.concatenate(parts)
    if shuffle:
        out = out[np.random.default_rng([int(seed), int(epoch)]).permutation(len(out))]
    return out


class MixedDataset(Dataset):
    """Several map-style datasets sampled evenly, each item tagged with its dataset index.

    ``len(self)`` is the number of positions of one epoch, ``sum(repeat_counts(lengths, repeat))``
    (with ``repeat=None``: ``len(datasets) * max(lengths)``). Position ``i`` reads
    ``datasets[d][j]`` for row ``(d, j)`` of :func:`repeat_factor_indices` at the current epoch and
    returns a shallow copy of that item (a dict) with ``"dataset_index": d`` (int) added. The order
    is a deterministic function of (``seed``, epoch); :meth:`set_epoch` moves to another epoch (call
    it before iterating; DataLoader workers copy the dataset when the iterator starts, so
    ``persistent_workers=True`` would keep the old epoch).

    Args:
        datasets: list of map-style datasets (``__len__`` >= 1, ``__getitem__`` returning dicts).
        names: one unique name per dataset (e.g. ["nuscenes", "lyft", "once"]), for reports.
        repeat: per-dataset repeat factors (Table 8), or None for the balanced rule.
        seed: non-negative int.
        shuffle: permute positions within the epoch (False: dataset by dataset, for inspection).
    Raises:
        ValueError naming ``datasets``, ``names``, ``repeat`` or ``seed`` on bad input;
        TypeError from ``__getitem__`` when a wrapped dataset returns a non-dict;
        ValueError from ``__getitem__`` when an item already has a ``"dataset_index"`` key.
    """

    def __init__(self, datasets: list, names: list[str], repeat: list[float] | None = None, seed: int = 0,
                 shuffle: bool = True):
        if not isinstance(datasets, Sequence) or len(datasets) == 0:
            raise ValueError(f"datasets must be a non-empty list of datasets, got {datasets!r}")
        if not isinstance(names, Sequence) or isinstance(names, str) or len(names) != len(datasets) \
                or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"names must be {len(datasets)} unique non-empty strings, got {names!r}")
        lengths = []
        for i, ds in enumerate(datasets):
            try:
                lengths.append(len(ds))
            except TypeError:
                raise ValueError(f"datasets[{i}] has no len(): a map-style dataset is required") from None
            if lengths[-1] < 1:
                raise ValueError(f"datasets[{i}] ({names[i]}) is empty")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.datasets = list(datasets)
        self.names = list(names)
        self.lengths = lengths
        self.repeat = None if repeat is None else _check_repeat(repeat, len(datasets))
        self.counts = repeat_counts(lengths, self.repeat)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self._index = repeat_factor_indices(lengths, self.repeat, self.seed, 0, shuffle)

    def set_epoch(self, epoch: int) -> None:
        """Switch to the index of ``epoch`` (non-negative int). Raises: ValueError naming ``epoch``."""
        self._index = repeat_factor_indices(self.lengths, self.repeat, self.seed, epoch, self.shuffle)
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._index)

    def dataset_index(self, i: int) -> int:
        """Which dataset position ``i`` reads, without loading the item."""
        return int(self._index[i, 0])

    def __getitem__(self, i: int) -> dict:
        d, j = (int(v) for v in self._index[i])
        item = self.datasets[d][j]
        if not isinstance(item, dict):
            raise TypeError(f"datasets[{d}] ({self.names[d]}) returned {type(item).__name__}, expected a dict")
        if "dataset_index" in item:
            raise ValueError(f"datasets[{d}] ({self.names[d]}) item already has a 'dataset_index' key")
        return {**item, "dataset_index": d}

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {L} x {c / L:.3g} = {c}" for n, L, c in zip(self.names, self.lengths, self.counts))
        return f"MixedDataset({parts}; seed {self.seed}, epoch {self.epoch})"
