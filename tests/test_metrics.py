"""Label sets, the generic confusion-matrix mIoU, busch2026's ranged metrics (golden values of the
implementation before the label-set refactor) and MultiViT Table 5's per-class cosine similarity."""
import math
import types
import zlib

import numpy as np
import pytest
import torch

from bevlib import classes as C
from bevlib.bev import BEVGrid
from bevlib.classes import BEV_MAP, BUSCH2026_ALL, IGNORE, NUSCENES_LIDARSEG_16, LabelSet
from bevlib.metrics import ClassFeatureMeans, ClassMeanCosine, ConfusionMatrix, RangedBEVMetrics


# --- label sets ----------------------------------------------------------------------------------

def test_busch2026_label_sets_and_aliases():
    assert BUSCH2026_ALL.names == C.ALL_CLASSES and len(BUSCH2026_ALL) == C.NUM_ALL == 14
    assert BUSCH2026_ALL.colors == C.COLORS and BUSCH2026_ALL.ignore_index == C.IGNORE == 255
    assert BEV_MAP.names == ("background",) + C.BEV_CLASSES and BEV_MAP.num_classes == C.NUM_BEV == 4
    assert BEV_MAP.mean_classes == (1, 2, 3) and BEV_MAP.mean_names == C.BEV_CLASSES
    assert BUSCH2026_ALL.mean_classes == tuple(range(1, 14))
    for name in C.ALL_CLASSES:
        assert BUSCH2026_ALL.index(name) == C.class_index(name)
    with pytest.raises(KeyError, match="known"):
        BEV_MAP.index("car")
    np.testing.assert_array_equal(BUSCH2026_ALL.color_array(), np.array(C.COLORS, np.uint8))
    assert BUSCH2026_ALL.color_array().dtype == np.uint8 and BUSCH2026_ALL.color_array().shape == (14, 3)


def test_lidarseg_16_matches_devkit_class_mapper():
    from nuscenes.eval.lidarseg.utils import LidarsegClassMapper

    # The mapper only touches nusc for the fine-class indices, which this comparison does not need.
    m = LidarsegClassMapper(types.SimpleNamespace(lidarseg_name2idx_mapping={}))
    coarse2idx = m.coarse_name_2_coarse_idx_mapping
    assert len(coarse2idx) == 17 and NUSCENES_LIDARSEG_16.num_classes == 17
    for name, idx in coarse2idx.items():
        assert NUSCENES_LIDARSEG_16.index(name) == idx
        assert NUSCENES_LIDARSEG_16.colors[idx] == tuple(m.coarse_colormap[name])
    assert NUSCENES_LIDARSEG_16.ignore_index == m.ignore_class["index"] == 0
    assert NUSCENES_LIDARSEG_16.mean_classes == tuple(range(1, 17)) and len(NUSCENES_LIDARSEG_16.mean_names) == 16


def test_label_set_validation():
    with pytest.raises(ValueError, match="repeats"):
        LabelSet("x", ("a", "a"), ((0, 0, 0),) * 2)
    with pytest.raises(ValueError, match="RGB"):
        LabelSet("x", ("a", "b"), ((0, 0, 0),))
    with pytest.raises(ValueError, match="RGB"):
        LabelSet("x", ("a",), ((0, 0, 300),))
    with pytest.raises(ValueError, match="mean classes"):
        LabelSet("x", ("a", "b"), ((0, 0, 0),) * 2, ignore_index=0, mean_classes=(0, 1))
    ls = LabelSet("x", ["a", "b", "c"], [[1, 2, 3]] * 3, ignore_index=1)
    assert ls.mean_classes == (0, 2) and ls.names == ("a", "b", "c") and hash(ls) == hash(
        LabelSet("x", ("a", "b", "c"), ((1, 2, 3),) * 3, ignore_index=1))


def test_viz_default_colours_unchanged_and_label_set_driven():
    from bevlib.viz import colorize, legend_handles, overlay

    old = np.zeros((256, 3), np.uint8)
    old[:14] = np.array(C.COLORS, np.uint8)
    old[255] = (128, 128, 128)
    lab = np.random.default_rng(0).integers(0, 256, size=(3, 7, 9))
    np.testing.assert_array_equal(colorize(lab), old[lab])
    pts = np.array([0, 4, 16, 3])
    np.testing.assert_array_equal(colorize(pts, NUSCENES_LIDARSEG_16),
                                  np.array([C.LIDARSEG_16_COLORS[i] for i in pts], np.uint8))
    h = legend_handles([1, 7], NUSCENES_LIDARSEG_16)
    assert [x.get_label() for x in h] == ["barrier", "pedestrian"]
    np.testing.assert_allclose(h[1].get_facecolor()[:3], np.array((0, 0, 230)) / 255.0)
    assert [x.get_label() for x in legend_handles([0, 13])] == ["background", "barrier"]
    img = np.full((1, 3, 3), 100, np.uint8)
    out = overlay(img, np.array([[0, 1, IGNORE]]), alpha=1.0)
    np.testing.assert_array_equal(out[0], [[100] * 3, C.COLORS[1], [100] * 3])
    # lidarseg: 0 is the ignore class (skipped), there is no background
    out = overlay(img, np.array([[0, 1, 7]]), alpha=1.0, label_set=NUSCENES_LIDARSEG_16)
    np.testing.assert_array_equal(out[0], [[100] * 3, C.LIDARSEG_16_COLORS[1], C.LIDARSEG_16_COLORS[7]])


# --- generic confusion-matrix mIoU ---------------------------------------------------------------

def brute_iou(pred, gt, labels: LabelSet, mask=None):
    """Per-class TP / FP / FN counted class by class with numpy, and the IoU from them."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    keep = gt != labels.ignore_index
    if mask is not None:
        keep &= np.broadcast_to(np.asarray(mask), gt.shape)
    iou = np.full(labels.num_classes, np.nan)
    for c in range(labels.num_classes):
        tp = np.sum(keep & (gt == c) & (pred == c))
        fp = np.sum(keep & (gt != c) & (pred == c))
        fn = np.sum(keep & (gt == c) & (pred != c))
        if tp + fp + fn:
            iou[c] = tp / (tp + fp + fn)
    return iou


def random_labels(rng, shape, labels: LabelSet, p_ignore=0.1, p_right=0.5, pred_lo=0):
    gt = rng.integers(0, labels.num_classes, size=shape)
    gt[rng.random(shape) < p_ignore] = labels.ignore_index
    pred = rng.integers(pred_lo, labels.num_classes, size=shape)
    right = (rng.random(shape) < p_right) & (gt != labels.ignore_index) & (gt >= pred_lo)
    pred[right] = gt[right]
    return pred, gt


@pytest.mark.parametrize("labels,shape,mask_shape", [
    (BEV_MAP, (3, 20, 17), (20, 17)),                      # BEV cells, one mask for the batch
    (BUSCH2026_ALL, (2, 6, 24, 32), (2, 6, 24, 32)),       # camera pixels of six views
    (NUSCENES_LIDARSEG_16, (5000,), (5000,)),              # points, ignore = class 0
    (NUSCENES_LIDARSEG_16, (5000,), None),
])
def test_generic_miou_against_brute_force(labels, shape, mask_shape):
    rng = np.random.default_rng(zlib.crc32(labels.name.encode()) + len(shape) + (mask_shape is None))
    pred, gt = random_labels(rng, shape, labels)
    mask = None if mask_shape is None else rng.random(mask_shape) < 0.7
    cm = ConfusionMatrix(labels)
    cm.update(torch.from_numpy(pred), torch.from_numpy(gt), None if mask is None else torch.from_numpy(mask))
    ref = brute_iou(pred, gt, labels, mask)
    np.testing.assert_allclose(cm.iou(), ref, rtol=1e-12, equal_nan=True)
    mean = ref[list(labels.mean_classes)]
    assert cm.miou() == pytest.approx(np.nanmean(mean), rel=1e-12)
    assert cm.miou(absent="zero") == pytest.approx(np.nan_to_num(mean).mean(), rel=1e-12)
    assert cm.counts.dtype == np.int64
    keep = (gt != labels.ignore_index) & (True if mask is None else np.broadcast_to(mask, gt.shape))
    assert cm.counts.sum() == keep.sum()
    # numpy input gives the same counts
    cm_np = ConfusionMatrix(labels)
    cm_np.update(pred, gt, mask)
    np.testing.assert_array_equal(cm_np.counts, cm.counts)
    r = cm.compute()
    assert set(r) == {f"{n}_iou" for n in labels.mean_names} | {"miou"}
    assert r["miou"] == pytest.approx(100 * np.nanmean(mean))


def test_lidarseg_miou_matches_devkit_confusion_matrix():
    from nuscenes.eval.lidarseg.utils import ConfusionMatrix as DevkitCM

    rng = np.random.default_rng(7)
    dev = DevkitCM(17, ignore_idx=0)
    cm = ConfusionMatrix(NUSCENES_LIDARSEG_16)
    for _ in range(3):   # three point clouds; the devkit requires predictions in 1..16
        pred, gt = random_labels(rng, (3000,), NUSCENES_LIDARSEG_16, p_ignore=0.05, pred_lo=1)
        gt[gt == 9] = 10  # an absent class (trailer): NaN, skipped by both means
        pred[pred == 9] = 10
        dev.update(gt, pred)
        cm.update(pred, gt)
    ref = np.asarray(dev.get_per_class_iou(), np.float64)
    np.testing.assert_allclose(cm.iou()[1:], ref[1:], rtol=1e-6, equal_nan=True)
    assert math.isnan(cm.iou()[9])
    assert cm.miou() == pytest.approx(dev.get_mean_iou(), rel=1e-6)


def test_confusion_merge_and_state_equal_one_pass():
    rng = np.random.default_rng(3)
    pred, gt = random_labels(rng, (4, 30, 30), BUSCH2026_ALL)
    mask = rng.random((4, 30, 30)) < 0.8
    full = ConfusionMatrix(BUSCH2026_ALL)
    full.update(pred, gt, mask)
    a, b = ConfusionMatrix(BUSCH2026_ALL), ConfusionMatrix(BUSCH2026_ALL)
    a.update(pred[:1], gt[:1], mask[:1])
    b.update(pred[1:], gt[1:], mask[1:])
    s = a + b
    np.testing.assert_array_equal(s.counts, full.counts)
    assert not np.array_equal(a.counts, full.counts)   # '+' made a new matrix
    a += b
    np.testing.assert_array_equal(a.counts, full.counts)
    # what a distributed evaluation does: sum the states of all ranks, load the sum
    c, d = ConfusionMatrix(BUSCH2026_ALL), ConfusionMatrix(BUSCH2026_ALL)
    c.update(pred[:2], gt[:2], mask[:2])
    d.update(pred[2:], gt[2:], mask[2:])
    total = torch.from_numpy(c.state()) + torch.from_numpy(d.state())
    c.load_state(total)
    np.testing.assert_array_equal(c.counts, full.counts)
    assert c.miou() == full.miou()
    with pytest.raises(ValueError):
        c.merge(ConfusionMatrix(BEV_MAP))
    with pytest.raises(ValueError):
        c.load_state(np.zeros((4, 4)))


def test_confusion_rejects_bad_input():
    cm = ConfusionMatrix(BEV_MAP)
    with pytest.raises(ValueError, match="differ"):
        cm.update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="pred holds class 4"):
        cm.update(torch.tensor([4]), torch.tensor([1]))
    with pytest.raises(ValueError, match="gt holds class 7"):
        cm.update(torch.tensor([1]), torch.tensor([7]))
    with pytest.raises(ValueError, match="broadcast"):
        cm.update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="absent"):
        cm.miou(absent="nan")
    cm.update(torch.tensor([IGNORE]), torch.tensor([IGNORE]))  # an ignored element's prediction is not checked
    assert cm.counts.sum() == 0 and math.isnan(cm.miou()) and cm.miou(absent="zero") == 0.0


# --- busch2026 ranged metrics: bit-identical to the implementation before the refactor -------------

def _maps(seed, grid, B=3, nb=2):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(nb):
        gt = rng.integers(0, 4, size=(B, grid.H, grid.W))
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = np.where(rng.random(gt.shape) < 0.6, np.clip(gt, 0, 3), rng.integers(0, 4, size=gt.shape))
        out.append((torch.from_numpy(pred), torch.from_numpy(gt)))
    return out


#: RangedBEVMetrics.compute() of the pre-LabelSet implementation (bevlib/metrics.py at 547bf75) on
#: _maps(seed, grid), as float.hex so that the comparison is bit-exact.
GOLDEN = [
    (0, BEVGrid(H=30, W=20), {
        "miou20": "0x1.930beec616df6p+5", "miou40": "0x1.a0cbe5485df7fp+5", "miou60": "0x1.a67b37d714b2dp+5",
        "boundary_iou": "0x1.97c07f01fc07fp+5", "lane_iou": "0x1.b202d6d4f0627p+5",
        "crosswalk_iou": "0x1.a9ae51ae51ae5p+5"}),
    (1, BEVGrid(), {
        "miou20": "0x1.b07d469b38e4ep+5", "miou40": "0x1.ae18d0ec85f02p+5", "miou60": "0x1.ad363a1ab7a07p+5",
        "boundary_iou": "0x1.ae1c87e92cdf0p+5", "lane_iou": "0x1.aa76b69dada77p+5",
        "crosswalk_iou": "0x1.af0f6fc94c5adp+5"}),
    (2, BEVGrid(x_min=-40, x_max=20, H=24, W=12), {
        "miou20": "0x1.a2d14b9649063p+5", "miou40": "0x1.a57a06dd5517ap+5", "miou60": "0x1.ab7d6d4e5b83ap+5",
        "boundary_iou": "0x1.9c42b2836ed5dp+5", "lane_iou": "0x1.b333333333334p+5",
        "crosswalk_iou": "0x1.b30262347081ap+5"}),
]


@pytest.mark.parametrize("seed,grid,expected", GOLDEN)
def test_ranged_metrics_bit_identical_to_golden(seed, grid, expected):
    m = RangedBEVMetrics(grid)
    for p, g in _maps(seed, grid):
        m.update(p, g)
    r = m.compute()
    assert list(r) == list(expected)   # key order too (the trainer's CSV columns follow it)
    assert {k: float(v).hex() for k, v in r.items()} == expected


def test_ranged_metrics_absent_class_golden():
    grid = BEVGrid(H=6, W=4)
    m = RangedBEVMetrics(grid)
    rng = np.random.default_rng(5)
    gt = torch.from_numpy(rng.integers(0, 2, size=(2, 6, 4)))
    pred = torch.from_numpy(rng.integers(0, 3, size=(2, 6, 4)))
    m.update(pred, gt)
    r = m.compute()
    assert math.isnan(r.pop("crosswalk_iou"))
    assert {k: float(v).hex() for k, v in r.items()} == {
        "miou20": "0x0.0p+0", "miou40": "0x1.30c30c30c30c3p+2", "miou60": "0x1.c924924924924p+2",
        "boundary_iou": "0x1.56db6db6db6dbp+4", "lane_iou": "0x0.0p+0"}


def test_ranged_metrics_equal_generic_miou_on_masked_cells():
    grid = BEVGrid(H=30, W=20)
    m = RangedBEVMetrics(grid)
    maps = _maps(0, grid)
    for p, g in maps:
        m.update(p, g)
    pred = np.concatenate([p.numpy() for p, _ in maps])
    gt = np.concatenate([g.numpy() for _, g in maps])
    r = m.compute()
    for rng_m in (20, 40, 60):
        ref = brute_iou(pred, gt, BEV_MAP, grid.range_mask(rng_m))[1:]
        assert r[f"miou{rng_m}"] == pytest.approx(100 * np.nan_to_num(ref).mean(), rel=1e-12)


def test_ranged_metrics_merge_counts_across_processes():
    grid = BEVGrid(H=30, W=20)
    (p1, g1), (p2, g2) = _maps(0, grid)
    full = RangedBEVMetrics(grid)
    full.update(p1, g1)
    full.update(p2, g2)
    a, b = RangedBEVMetrics(grid), RangedBEVMetrics(grid)
    a.update(p1, g1)
    b.update(p2, g2)
    assert a.counts().shape == (3, 4, 4) and a.counts().dtype == np.int64
    summed = a.counts() + b.counts()                     # what an all-reduce of counts() produces
    c = RangedBEVMetrics(grid)
    c.load_counts(summed)
    assert c.compute() == full.compute()
    a.add_counts(torch.from_numpy(b.counts()))
    assert a.compute() == full.compute()
    d = RangedBEVMetrics(grid)
    d.update(p1, g1)
    d += b
    assert d.compute() == full.compute()
    with pytest.raises(ValueError):
        d.merge(RangedBEVMetrics(BEVGrid(H=30, W=10)))
    with pytest.raises(ValueError):
        d.add_counts(np.zeros((2, 4, 4), np.int64))


# --- MultiViT Table 5: per-class cosine similarity of mean features --------------------------------

def numpy_class_means(feats, labels, mask, ignore, K):
    keep = (labels != ignore) & mask
    out = np.full((K, feats.shape[-1]), np.nan)
    for c in range(K):
        sel = keep & (labels == c)
        if sel.any():
            out[c] = feats[sel].mean(0)
    return out


def np_cos(a, b):
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_class_mean_cosine_against_numpy():
    rng = np.random.default_rng(11)
    ls = NUSCENES_LIDARSEG_16
    D = 8
    # camera: (B, D, H, W) pixel features; classes 9 and 12 never appear (Table 5's "-")
    cam_f = rng.normal(size=(2, D, 10, 12)).astype(np.float32) + 0.3
    cam_y = rng.integers(0, 17, size=(2, 10, 12))
    cam_y[np.isin(cam_y, (9, 12))] = 4
    cam_pred = np.where(rng.random(cam_y.shape) < 0.7, cam_y, rng.integers(1, 17, size=cam_y.shape))
    # lidar: (N, D) point features
    lid_f = rng.normal(size=(900, D)).astype(np.float32) + 0.3
    lid_y = rng.integers(0, 17, size=900)
    lid_y[lid_y == 12] = 3
    lid_pred = np.where(rng.random(900) < 0.7, lid_y, rng.integers(1, 17, size=900))

    sim = ClassMeanCosine(ls, D)
    sim.update("camera", torch.from_numpy(cam_f), torch.from_numpy(cam_y), mask=torch.from_numpy(cam_pred == cam_y),
               channel_dim=1)
    sim.update("lidar", torch.from_numpy(lid_f), torch.from_numpy(lid_y), mask=torch.from_numpy(lid_pred == lid_y))

    a = numpy_class_means(np.moveaxis(cam_f, 1, -1).astype(np.float64), cam_y, cam_pred == cam_y, 0, 17)
    b = numpy_class_means(lid_f.astype(np.float64), lid_y, lid_pred == lid_y, 0, 17)
    np.testing.assert_allclose(sim.feats["camera"].means().numpy(), a, rtol=1e-12, equal_nan=True)
    per = np_cos(a, b)
    np.testing.assert_allclose(sim.per_class(), per, rtol=1e-12, equal_nan=True)
    assert np.isnan(sim.per_class()[[0, 9, 12]]).all() and not np.isnan(sim.per_class()[[1, 4, 16]]).any()
    np.testing.assert_allclose(sim.matrix(), np_cos(a[:, None], b[None]), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(np.diag(sim.matrix()), per, rtol=1e-12, equal_nan=True)
    assert sim.mean() == pytest.approx(np.nanmean(per[1:]), rel=1e-12)
    r = sim.compute()
    assert r["car_cos"] == pytest.approx(per[4]) and math.isnan(r["trailer_cos"]) and "ignore_cos" not in r


def test_class_mean_cosine_identical_and_opposite_means():
    ls = LabelSet("two", ("a", "b"), ((0, 0, 0), (1, 1, 1)))
    sim = ClassMeanCosine(ls, 3, modalities=("x", "y"))
    sim.update("x", torch.tensor([[1.0, 2, 3], [3, 2, 1]]), torch.tensor([0, 1]))
    sim.update("y", torch.tensor([[2.0, 4, 6], [-3, -2, -1]]), torch.tensor([0, 1]))
    np.testing.assert_allclose(sim.per_class(), [1.0, -1.0], atol=1e-12)
    assert sim.mean() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(KeyError):
        sim.update("camera", torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError):
        sim.update("x", torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError):
        sim.update("x", torch.zeros(1, 3), torch.tensor([5]))


def test_class_mean_cosine_merge_equals_one_pass():
    rng = np.random.default_rng(2)
    f = torch.from_numpy(rng.normal(size=(600, 5)))
    y = torch.from_numpy(rng.integers(0, 4, size=600))
    g = torch.from_numpy(rng.normal(size=(400, 5)) + 0.5)
    z = torch.from_numpy(rng.integers(0, 4, size=400))
    full = ClassMeanCosine(BEV_MAP, 5)
    full.update("camera", f, y)
    full.update("lidar", g, z)
    a, b = ClassMeanCosine(BEV_MAP, 5), ClassMeanCosine(BEV_MAP, 5)
    a.update("camera", f[:250], y[:250])
    a.update("lidar", g[:100], z[:100])
    b.update("camera", f[250:], y[250:])
    b.update("lidar", g[100:], z[100:])
    c = ClassMeanCosine(BEV_MAP, 5)
    c.load_state({m: {k: a.state()[m][k] + b.state()[m][k] for k in ("sums", "counts")} for m in a.modalities})
    a += b
    for x in (a, c):
        np.testing.assert_allclose(x.per_class(), full.per_class(), rtol=1e-12)
        for m in x.modalities:
            torch.testing.assert_close(x.feats[m].counts, full.feats[m].counts, rtol=0, atol=0)
    one = ClassFeatureMeans(BEV_MAP, 5)
    with pytest.raises(ValueError):
        one.merge(ClassFeatureMeans(BEV_MAP, 6))
