"""lukkassen2024 Sec. 4.5 contrastive loss (bevlib.losses.multivit_contrastive_loss).

Reference: the loss computed with Python loops from its definition (class means by explicit
summation over the rows, normalisation by hand, SupCon's ratio anchor by anchor); a closed form
for orthonormal class means; gradients and the behaviour under pulling / pushing means."""
from __future__ import annotations

import math

import pytest
import torch

from bevlib.losses import multivit_contrastive_loss

# camera: classes 1, 2, 3, 5 (+ background 0 and ignore 255); lidar: 1, 2, 3, 4 (+ ignore 0, ground 11)
CAM_LABELS = [0, 1, 1, 2, 3, 3, 3, 5, 255, 0, 2]
LIDAR_LABELS = [1, 2, 2, 3, 4, 11, 0, 1, 3, 3]


def _batch(seed=0, dim=4):
    g = torch.Generator().manual_seed(seed)
    cam = torch.randn(len(CAM_LABELS), dim, generator=g, dtype=torch.float64)
    lid = torch.randn(len(LIDAR_LABELS), dim, generator=g, dtype=torch.float64)
    return cam, torch.tensor(CAM_LABELS), lid, torch.tensor(LIDAR_LABELS)


def _direct(cam, cam_y, lid, lid_y, mode, tau, classes=range(1, 11), ignore=255):
    """The loss from its definition, with loops over rows, classes and anchors."""
    def means(f, y):
        out = {}
        for k in classes:
            rows = [f[i].tolist() for i in range(len(y)) if int(y[i]) == k and int(y[i]) != ignore]
            if rows:
                m = [sum(col) / len(rows) for col in zip(*rows)]
                n = math.sqrt(sum(x * x for x in m))
                out[k] = [x / n for x in m]
        return out
    mc, ml = means(cam, cam_y), means(lid, lid_y)
    shared = sorted(set(mc) & set(ml))
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    if mode == "pull":
        return sum(1 - dot(mc[k], ml[k]) for k in shared) / len(shared)
    anchors = [("c", k, mc[k]) for k in shared] + [("l", k, ml[k]) for k in shared]
    total = 0.0
    for i, (mod, k, a) in enumerate(anchors):
        pos = next(z for m2, k2, z in anchors if m2 != mod and k2 == k)
        den = sum(math.exp(dot(a, z) / tau) for j, (_, _, z) in enumerate(anchors) if j != i)
        total += -math.log(math.exp(dot(a, pos) / tau) / den)
    return total / len(anchors)


@pytest.mark.parametrize("mode", ["pull", "pull_push"])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_matches_direct_loop(mode, tau):
    for seed in range(3):
        cam, cy, lid, ly = _batch(seed)
        got = multivit_contrastive_loss(cam, cy, lid, ly, mode=mode, temperature=tau)
        assert got.dtype == torch.float64
        assert got.item() == pytest.approx(_direct(cam, cy, lid, ly, mode, tau), rel=1e-10, abs=1e-12)
    # a different class subset: only classes 2 and 3
    got = multivit_contrastive_loss(cam, cy, lid, ly, mode=mode, temperature=tau, classes=[3, 2])
    assert got.item() == pytest.approx(_direct(cam, cy, lid, ly, mode, tau, classes=[2, 3]), rel=1e-10, abs=1e-12)
    # half-precision features are averaged and compared in float32
    half = multivit_contrastive_loss(cam.half(), cy, lid.half(), ly, mode=mode, temperature=tau)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(_direct(cam, cy, lid, ly, mode, tau), rel=1e-2)


def test_closed_form_orthonormal_means():
    """Aligned orthonormal means: s_pos = 1 / tau, every negative 0, so with P classes each anchor
    has loss log(1 + (2P - 2) exp(-1 / tau)); the pull loss is 0."""
    tau, P = 0.2, 3
    e = torch.eye(4, dtype=torch.float64)[:P]
    y = torch.arange(1, P + 1)
    got = multivit_contrastive_loss(e * 2.0, y, e * 0.5, y, temperature=tau)
    assert got.item() == pytest.approx(math.log(1 + (2 * P - 2) * math.exp(-1 / tau)), rel=1e-12)
    assert multivit_contrastive_loss(e, y, e, y, mode="pull").item() == pytest.approx(0.0, abs=1e-7)
    # one shared class: the positive is the only other anchor, SupCon's ratio is 1
    one = torch.tensor([1])
    assert multivit_contrastive_loss(e[:1], one, e[1:2], one).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("mode", ["pull", "pull_push"])
def test_gradients_reach_both_modalities(mode):
    cam, cy, lid, ly = _batch()
    cam.requires_grad_(True)
    lid.requires_grad_(True)
    multivit_contrastive_loss(cam, cy, lid, ly, mode=mode).backward()
    # rows of the shared classes 1, 2, 3 get gradients; background, ignore and one-sided classes don't
    for f, y, shared in ((cam, cy, {1, 2, 3}), (lid, ly, {1, 2, 3})):
        for i, k in enumerate(y.tolist()):
            assert (f.grad[i].abs().sum() > 0) == (k in shared), (k, f.grad[i])


def _means_batch(cam_means, lid_means, noise=0.05, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = cam_means.shape[0]
    y = torch.arange(1, K + 1).repeat_interleave(n)
    cam = cam_means.repeat_interleave(n, 0) + noise * torch.randn(K * n, cam_means.shape[1], generator=g)
    lid = lid_means.repeat_interleave(n, 0) + noise * torch.randn(K * n, cam_means.shape[1], generator=g)
    return cam, y, lid, y


def test_pull_push_falls_when_pulled_together_and_pushed_apart():
    g = torch.Generator().manual_seed(1)
    cam_means, lid_means = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    loss = lambda c, l: multivit_contrastive_loss(*_means_batch(c, l)).item()  # noqa: E731
    pull = lambda c, l: multivit_contrastive_loss(*_means_batch(c, l), mode="pull").item()  # noqa: E731
    base = loss(cam_means, lid_means)
    # pull the LiDAR means towards the camera means of the same class, step by step
    values = [loss(cam_means, (1 - t) * lid_means + t * cam_means) for t in (0.3, 0.6, 0.9)]
    assert base > values[0] > values[1] > values[2], (base, values)
    pulls = [pull(cam_means, (1 - t) * lid_means + t * cam_means) for t in (0.0, 0.5, 1.0)]
    assert pulls[0] > pulls[1] > pulls[2], pulls
    # push different classes apart: same-class pairs kept aligned, classes made (more) orthogonal
    aligned = loss(cam_means, cam_means)
    q, _ = torch.linalg.qr(cam_means.t())           # orthonormal directions spanning the means
    ortho = q.t() * cam_means.norm(dim=1, keepdim=True)
    assert loss(ortho, ortho) < aligned


def test_no_shared_class_gives_a_graph_zero():
    cam = torch.randn(3, 4, requires_grad=True)
    lid = torch.randn(3, 4, requires_grad=True)
    out = multivit_contrastive_loss(cam, torch.tensor([1, 1, 2]), lid, torch.tensor([3, 0, 11]))
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert cam.grad.abs().sum() == 0 and lid.grad.abs().sum() == 0


def test_bad_arguments_are_named():
    cam, cy, lid, ly = _batch()
    with pytest.raises(ValueError, match="mode"):
        multivit_contrastive_loss(cam, cy, lid, ly, mode="push")
    with pytest.raises(ValueError, match="temperature"):
        multivit_contrastive_loss(cam, cy, lid, ly, temperature=0)
    with pytest.raises(ValueError, match="cam_labels"):
        multivit_contrastive_loss(cam, cy[:-1], lid, ly)
    with pytest.raises(ValueError, match="lidar_labels"):
        multivit_contrastive_loss(cam, cy, lid, ly[:-1])
    with pytest.raises(ValueError, match="same C"):
        multivit_contrastive_loss(cam, cy, lid[:, :3], ly)
    with pytest.raises(ValueError, match="ignore_index"):
        multivit_contrastive_loss(cam, cy, lid, ly, classes=[1, 255])
    with pytest.raises(ValueError, match="classes"):
        multivit_contrastive_loss(cam, cy, lid, ly, classes=[])
