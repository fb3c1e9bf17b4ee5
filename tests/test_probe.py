"""Linear probes: a separable feature is found, a random one is not; subsampling keeps rare classes."""
import numpy as np
import pytest

from bevlib.probe import linear_probe, subsample


def _data(n, informative, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4))
    if informative:
        x[:, 0] += 4.0 * (y == 1)
        x[:, 1] += 4.0 * (y == 2)
    return x, y


def test_probe_separates_informative_features_and_not_random_ones():
    good = linear_probe(*_data(3000, True, 0), *_data(1000, True, 1), num_classes=3)
    bad = linear_probe(*_data(3000, False, 0), *_data(1000, False, 1), num_classes=3)
    assert good.auc.min() > 0.95 and good.iou[1:].min() > 0.8
    assert np.nanmax(np.abs(bad.auc - 0.5)) < 0.08


def test_auc_is_nan_for_an_absent_class_and_errors_are_clear():
    x, y = _data(500, True, 0)
    r = linear_probe(x, y, x[y != 2], y[y != 2], num_classes=4)
    assert np.isnan(r.auc[2]) and np.isnan(r.auc[3])
    with pytest.raises(ValueError, match="2 classes"):
        linear_probe(x, np.zeros_like(y), x, y, num_classes=3)


def test_subsample_keeps_rare_classes():
    x = np.arange(10_000)[:, None].astype(float)
    y = np.zeros(10_000, int)
    y[:5] = 1
    xs, ys = subsample(x, y, 100, seed=0)
    assert len(ys) == 100 and (ys == 1).sum() == 5
    assert np.array_equal(xs[:, 0], np.sort(xs[:, 0]))
