import math

import numpy as np
import pytest
import torch

from bevlib import geometry as geo
from bevlib.bev import BEVGrid
from bevlib.classes import IGNORE
from bevlib.losses import bev_ce, busch2026_alg1_temporal_loss, busch2026_eq1_reprojection_ce
from bevlib.metrics import ConfusionMatrix, RangedBEVMetrics


def test_eq1_against_hand_computation():
    # one view, 1x2 image, C = 2: logits per pixel, GT one-hot
    pred = torch.tensor([[1.0, 3.0], [0.0, 0.0]]).view(1, 1, 2, 1, 2)   # channel-major: pixel0 (1, 0), pixel1 (3, 0)
    gt = torch.tensor([[0, 1]]).view(1, 1, 1, 2)
    p0 = -math.log(math.exp(1) / (math.exp(1) + 1))   # pixel 0, class 0
    p1 = -math.log(1 / (math.exp(3) + 1))              # pixel 1, class 1
    expected = (p0 + p1) / (2 * 2)                     # n_pixels = pixels x channels
    assert busch2026_eq1_reprojection_ce(pred, gt).item() == pytest.approx(expected, rel=1e-6)
    gt_ign = torch.tensor([[0, IGNORE]]).view(1, 1, 1, 2)
    assert busch2026_eq1_reprojection_ce(pred, gt_ign).item() == pytest.approx(p0 / 2, rel=1e-6)
    with pytest.raises(ValueError):
        busch2026_eq1_reprojection_ce(pred, gt[0])


def test_bev_ce_uses_map_channels_only():
    logits = torch.zeros(1, 14, 2, 2)
    logits[:, 4:] = 100.0  # object channels must not matter
    gt = torch.zeros(1, 2, 2, dtype=torch.long)
    assert bev_ce(logits, gt).item() == pytest.approx(math.log(4), rel=1e-6)


def test_temporal_loss_alignment_on_known_ego_motion():
    """Alg. 1: the t-1 term must see the BEV moved by the ego motion. A lit BEV cell and a
    pseudo-label that matches it only after the known motion give a low t-1 loss; the same
    pseudo-label without motion compensation would give a high one."""
    grid = BEVGrid(H=30, W=15)   # 2 m cells
    K = torch.tensor([[[[120.0, 0, 63.5], [0, 120.0, 35.5], [0, 0, 1]]]])
    ego_T_cam = torch.from_numpy(geo.transform_from([1.7, 0, 1.5], [0.5, -0.5, 0.5, -0.5])).float()[None, None]
    hw = (72, 128)
    X = torch.zeros(1, 2, 30, 15)
    X[0, 1, 8:12, 5:10] = 1.0                      # a patch 10..18 m ahead
    X[0, 0] = 1.0 - X[0, 1]
    head = lambda x: 20.0 * x                      # the shared "SegHead": confident logits
    dx = 4.0                                       # ego moved 4 m forward since t-1
    curr_T_prev = torch.from_numpy(geo.invert(geo.se2(dx, 0, 0))).float()[None]
    from bevlib.render import render_bev
    from bevlib.bev import warp_bev
    # pseudo-labels rendered from the true maps at t and at t-1 (the patch is 4 m farther at t-1)
    X_prev_true = warp_bev(X, curr_T_prev, grid)
    lab_t = render_bev(head(X), K, ego_T_cam, hw, grid)[0].argmax(2)
    lab_prev = render_bev(head(X_prev_true), K, ego_T_cam, hw, grid)[0].argmax(2)
    assert not torch.equal(lab_t, lab_prev)
    l_t, l_prev = busch2026_alg1_temporal_loss(head, X, curr_T_prev, K, ego_T_cam, hw, grid, lab_t, lab_prev)
    _, l_wrong = busch2026_alg1_temporal_loss(head, X, curr_T_prev, K, ego_T_cam, hw, grid, lab_t, lab_t)
    # pixels the ground does not reach add the same constant to every term; above it, the
    # motion-compensated t-1 term is as good as the t term and far better than no compensation
    assert l_prev.item() - l_t.item() < 0.1 * (l_wrong.item() - l_t.item())
    assert l_wrong.item() - l_t.item() > 0.01
    # scene start: no t-1 term
    _, l0 = busch2026_alg1_temporal_loss(head, X, curr_T_prev, K, ego_T_cam, hw, grid, lab_t, lab_prev,
                                         has_prev=torch.tensor([False]))
    assert l0.item() == 0.0


def test_confusion_iou_known_counts():
    cm = ConfusionMatrix(4)
    gt = torch.tensor([[[0, 1, 1, 2, 3, 3]]])
    pred = torch.tensor([[[0, 1, 0, 2, 3, 2]]])
    cm.update(pred, gt)
    # class 1: TP 1, FN 1, FP 0 -> 0.5; class 2: TP 1, FP 1 -> 0.5; class 3: TP 1, FN 1 -> 0.5
    np.testing.assert_allclose(cm.iou(), [0.5, 0.5, 0.5, 0.5])
    cm2 = ConfusionMatrix(4)
    cm2.update(pred, torch.tensor([[[0, 1, IGNORE, 2, 3, 3]]]))
    np.testing.assert_allclose(cm2.iou()[1], 1.0)


def test_iou_accumulates_over_split_not_per_sample_mean():
    g = BEVGrid(H=6, W=1)
    m = RangedBEVMetrics(g, ranges_m=(60.0,))
    gt1 = torch.tensor([[[1], [1], [1], [1], [0], [0]]])
    m.update(gt1.clone(), gt1)                      # perfect on a sample with 4 class-1 cells
    gt2 = torch.tensor([[[1], [0], [0], [0], [0], [0]]])
    m.update(torch.zeros_like(gt2), gt2)            # miss the single cell of another sample
    r = m.compute()
    assert r["boundary_iou"] == pytest.approx(100 * 4 / 5)   # per-sample mean would be 50


def test_ranged_metrics_count_only_cells_in_range():
    g = BEVGrid(H=6, W=1)   # 10 m rows: centres 25, 15, 5, -5, -15, -25
    m = RangedBEVMetrics(g)
    gt = torch.tensor([[[1], [1], [1], [1], [1], [1]]])
    pred = torch.tensor([[[0], [0], [1], [1], [0], [0]]])  # right only within |x| <= 10
    m.update(pred, gt)
    r = m.compute()
    assert r["miou20"] == pytest.approx(100 / 3)   # boundary 100, lane / crosswalk absent -> 0
    assert r["miou40"] == pytest.approx(100 * 0.5 / 3)
    assert r["miou60"] == pytest.approx(100 * (2 / 6) / 3)
    assert math.isnan(r["lane_iou"])


def test_losses_take_the_label_sets_ignore_index():
    from bevlib.classes import NUSCENES_LIDARSEG_16, LabelSet

    rng = np.random.default_rng(0)
    pred = torch.from_numpy(rng.normal(size=(1, 2, 5, 3, 4))).float()
    gt = torch.from_numpy(rng.integers(0, 5, size=(1, 2, 3, 4)))
    gt[0, 0, 0, :2] = 0
    # with ignore index 0 (lidarseg's) the class-0 pixels drop out of sum and count
    keep = gt != 0
    logp = torch.log_softmax(pred, 2)
    nll = -logp.gather(2, gt[:, :, None]).squeeze(2)
    expected = nll[keep].sum() / (keep.sum() * 5)
    torch.testing.assert_close(busch2026_eq1_reprojection_ce(pred, gt, ignore_index=0), expected)
    assert busch2026_eq1_reprojection_ce(pred, gt).item() != pytest.approx(expected.item())   # default: 255, nothing dropped
    # bev_ce over a label set's channels and ignore index
    two = LabelSet("two", ("road", "other"), ((0, 0, 0), (9, 9, 9)), ignore_index=7)
    logits = torch.zeros(1, 14, 2, 2)
    logits[:, 2:] = 100.0                         # channels beyond the label set must not matter
    g = torch.tensor([[[0, 1], [7, 7]]])
    assert bev_ce(logits, g, labels=two).item() == pytest.approx(math.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="channels"):
        bev_ce(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), labels=NUSCENES_LIDARSEG_16)
