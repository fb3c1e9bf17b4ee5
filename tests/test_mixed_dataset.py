"""bevlib.data.mixed: the combined-datasets paper's re-indexing (Sec. 4.1, Appendix A Table 8),
checked against brute-force counts in exact rational arithmetic."""
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bevlib.data.mixed import MixedDataset, repeat_counts, repeat_factor_indices


class _Tagged(torch.utils.data.Dataset):
    """Items that say where they come from, so the mixed index can be checked item by item."""

    def __init__(self, name, n):
        self.name, self.n = name, n

    def __len__(self):
        return self.n

    def __getitem__(self, j):
        if not 0 <= j < self.n:
            raise IndexError(j)
        return {"src": self.name, "j": j, "x": torch.full((2,), float(j))}


def _brute_counts(lengths, repeat):
    """Reference: floor(r * L) in exact fractions (the factor as the ratio it was meant as)."""
    if repeat is None:
        return [max(lengths)] * len(lengths)
    return [max(1, math.floor(Fraction(r).limit_denominator(1000) * n)) for r, n in zip(repeat, lengths)]


@pytest.mark.parametrize("lengths, repeat", [
    ((3, 7, 10), None),                       # balanced: each dataset seen max(L) times
    ((28, 22, 200), (4, 4, 1)),               # Table 8's largest setting scaled down 1000x
    ((10, 9, 5), (0.3, 1.5, 2.2)),            # fractional factors
    ((3, 10), (10 / 3, 0.7)),                 # float error: 3 * (10/3) must count 10, not 9
    ((1,), (1e-3,)),                          # a tiny factor still yields one sample
])
def test_counts_match_brute_force(lengths, repeat):
    idx = repeat_factor_indices(lengths, repeat, seed=3)
    ref = _brute_counts(lengths, repeat)
    assert idx.shape == (sum(ref), 2) and idx.dtype == np.int64
    per_ds = Counter(idx[:, 0].tolist())
    assert [per_ds[d] for d in range(len(lengths))] == ref == repeat_counts(lengths, repeat)
    for d, (n, c) in enumerate(zip(lengths, ref)):
        reads = Counter(idx[idx[:, 0] == d, 1].tolist())
        assert set(reads) <= set(range(n))
        lo = c // n
        # every sample read floor(c/n) or floor(c/n)+1 times; exactly c mod n samples get the extra read
        assert all(lo <= reads.get(j, 0) <= lo + 1 for j in range(n)), reads
        assert sum(reads.get(j, 0) == lo + 1 for j in range(n)) == c - lo * n


def test_balanced_mixed_dataset_items_and_index():
    ds = [_Tagged("nuscenes", 4), _Tagged("lyft", 6), _Tagged("once", 15)]
    mixed = MixedDataset(ds, ["nuscenes", "lyft", "once"], seed=1)
    assert len(mixed) == 3 * 15
    seen = Counter()
    for i in range(len(mixed)):
        item = mixed[i]
        d = item["dataset_index"]
        assert isinstance(d, int) and mixed.names[d] == item["src"] and mixed.dataset_index(i) == d
        seen[d] += 1
    assert seen == {0: 15, 1: 15, 2: 15}
    # items are copies: the wrapped dataset's own dicts are not modified
    assert "dataset_index" not in ds[0][0]
    # shuffled: the three datasets are interleaved, not in blocks
    order = [mixed.dataset_index(i) for i in range(len(mixed))]
    assert order != sorted(order)
    # collates through a DataLoader: dataset_index becomes a LongTensor
    batch = next(iter(DataLoader(mixed, batch_size=8, shuffle=False)))
    assert batch["dataset_index"].dtype == torch.int64 and batch["dataset_index"].shape == (8,)
    assert [mixed.names[d] for d in batch["dataset_index"].tolist()] == list(batch["src"])


def test_repeat_factors_in_dataset():
    mixed = MixedDataset([_Tagged("a", 5), _Tagged("b", 8)], ["a", "b"], repeat=[2.6, 0.5], seed=0)
    assert len(mixed) == 13 + 4 and mixed.counts == [13, 4]
    got = Counter((mixed[i]["src"], mixed[i]["j"]) for i in range(len(mixed)))
    a_reads = sorted(got[("a", j)] for j in range(5))
    assert a_reads == [2, 2, 3, 3, 3]
    assert sum(got[("b", j)] for j in range(8)) == 4 and max(got[("b", j)] for j in range(8)) == 1
    assert "a: 5 x 2.6 = 13" in repr(mixed)


def test_deterministic_per_seed_and_epoch():
    args = ((5, 8, 3), (1.5, 0.5, 2.0))
    a = repeat_factor_indices(*args, seed=7, epoch=2)
    np.testing.assert_array_equal(a, repeat_factor_indices(*args, seed=7, epoch=2))
    assert not np.array_equal(a, repeat_factor_indices(*args, seed=7, epoch=3))
    assert not np.array_equal(a, repeat_factor_indices(*args, seed=8, epoch=2))
    # unshuffled: blocks by dataset, sorted by sample
    plain = repeat_factor_indices(*args, seed=7, epoch=2, shuffle=False)
    np.testing.assert_array_equal(plain, np.array(sorted(map(tuple, a.tolist()))))
    # the fractional extra reads rotate over epochs: the 0.5 x 8 subset is not always the same 4
    subsets = {tuple(sorted(repeat_factor_indices(*args, seed=7, epoch=e, shuffle=False)[:, 1][
        repeat_factor_indices(*args, seed=7, epoch=e, shuffle=False)[:, 0] == 1])) for e in range(6)}
    assert len(subsets) > 1
    mixed = MixedDataset([_Tagged("a", 5), _Tagged("b", 8), _Tagged("c", 3)], ["a", "b", "c"], list(args[1]), seed=7)
    first = [(mixed[i]["src"], mixed[i]["j"]) for i in range(len(mixed))]
    mixed.set_epoch(2)
    assert [(mixed.names[d], j) for d, j in a.tolist()] == [(mixed[i]["src"], mixed[i]["j"]) for i in range(len(mixed))]
    mixed.set_epoch(0)
    assert first == [(mixed[i]["src"], mixed[i]["j"]) for i in range(len(mixed))]


class _NotDict(_Tagged):
    def __getitem__(self, j):
        return j


class _HasIndex(_Tagged):
    def __getitem__(self, j):
        return {"dataset_index": 5}


def test_bad_input_raises_naming_the_parameter():
    a, b = _Tagged("a", 3), _Tagged("b", 2)
    with pytest.raises(ValueError, match="names"):
        MixedDataset([a, b], ["a"])
    with pytest.raises(ValueError, match="names"):
        MixedDataset([a, b], ["a", "a"])
    with pytest.raises(ValueError, match="datasets"):
        MixedDataset([], [])
    with pytest.raises(ValueError, match=r"datasets\[1\]"):
        MixedDataset([a, _Tagged("b", 0)], ["a", "b"])
    with pytest.raises(ValueError, match="repeat"):
        MixedDataset([a, b], ["a", "b"], repeat=[1.0])
    with pytest.raises(ValueError, match=r"repeat\[1\]"):
        MixedDataset([a, b], ["a", "b"], repeat=[1.0, -2.0])
    with pytest.raises(ValueError, match=r"repeat\[0\]"):
        MixedDataset([a, b], ["a", "b"], repeat=[float("nan"), 1.0])
    with pytest.raises(ValueError, match="seed"):
        MixedDataset([a, b], ["a", "b"], seed=-1)
    with pytest.raises(ValueError, match="epoch"):
        MixedDataset([a, b], ["a", "b"]).set_epoch(-1)
    with pytest.raises(ValueError, match=r"lengths\[0\]"):
        repeat_factor_indices([0, 3])
    with pytest.raises(TypeError, match="dict"):
        MixedDataset([_NotDict("a", 2)], ["a"])[0]
    with pytest.raises(ValueError, match="dataset_index"):
        MixedDataset([_HasIndex("a", 2)], ["a"])[0]
