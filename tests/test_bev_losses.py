import math

import numpy as np
import pytest
import torch

from bevlib.ssl.bev_losses import (bev_infonce, mae_loss, mask_patches, patchify, random_patch_mask,
                                   sample_bev_cells)


def _loop_infonce(cam, lid, cells, tau, symmetric=False):
    """Eq. 3 written out with Python loops over samples, anchors and candidates."""
    per_sample = []
    for b, idx in enumerate(cells):
        idx = [int(v) for v in idx]
        if not idx:
            continue
        W = cam.shape[-1]

        def feat(t, c):
            v = [float(t[b, ch, c // W, c % W]) for ch in range(t.shape[1])]
            n = math.sqrt(sum(a * a for a in v))
            return [a / n for a in v]
        xs = [feat(cam, c) for c in idx]
        ys = [feat(lid, c) for c in idx]
        dot = lambda u, v: sum(a * b for a, b in zip(u, v))

        def direction(a, bb):
            tot = 0.0
            for j in range(len(idx)):
                num = math.exp(dot(a[j], bb[j]) / tau)
                den = sum(math.exp(dot(a[j], bb[k]) / tau) for k in range(len(idx)))
                tot += -math.log(num / den)
            return tot / len(idx)
        loss = direction(xs, ys)
        if symmetric:
            loss = 0.5 * (loss + direction(ys, xs))
        per_sample.append(loss)
    return sum(per_sample) / len(per_sample)


def _maps(seed=0, B=2, C=3, H=4, W=5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, C, H, W, generator=g, dtype=torch.float64),
            torch.randn(B, C, H, W, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("symmetric", [False, True])
def test_infonce_matches_loop(symmetric):
    cam, lid = _maps()
    cells = [torch.tensor([0, 7, 13, 19]), torch.tensor([2, 3, 11])]
    got = bev_infonce(cam, lid, tau=0.3, cells=cells, symmetric=symmetric)
    assert got.item() == pytest.approx(_loop_infonce(cam, lid, cells, 0.3, symmetric), rel=1e-10)
    # the same through the sampler, with a seed
    got = bev_infonce(cam, lid, k=6, tau=0.5, generator=3)
    drawn = sample_bev_cells(2, 4, 5, 6, generator=3)
    assert got.item() == pytest.approx(_loop_infonce(cam, lid, drawn, 0.5), rel=1e-10)


def test_infonce_closed_form_and_sensitivity():
    # K orthonormal features, identical in both maps: -log(e^{1/tau} / (e^{1/tau} + K - 1))
    K, tau = 4, 0.2
    cam = torch.zeros(1, K, 2, 2, dtype=torch.float64)
    for c in range(K):
        cam[0, c, c // 2, c % 2] = 2.0 + c          # norms differ: L2 normalisation removes them
    cells = [torch.arange(K)]
    expect = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + K - 1))
    assert bev_infonce(cam, cam.clone(), tau=tau, cells=cells).item() == pytest.approx(expect, rel=1e-12)
    # spatially permuting the LiDAR map breaks the correspondence and changes the loss
    lid = cam.flatten(2)[..., [1, 0, 3, 2]].reshape(cam.shape)
    expect_perm = -math.log(1.0 / (math.exp(1 / tau) + K - 1))
    assert bev_infonce(cam, lid, tau=tau, cells=cells).item() == pytest.approx(expect_perm, rel=1e-12)
    # gradients reach both branches
    a, b = _maps(1)
    a.requires_grad_()
    b.requires_grad_()
    bev_infonce(a, b, k=5, generator=0).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_infonce_mask_and_sampler():
    mask = torch.zeros(2, 4, 5, dtype=torch.bool)
    mask[0, 1, 1:4] = True                         # 3 allowed cells: fewer than k, all used
    mask[1].view(-1)[[0, 5, 6, 7, 8, 9, 15]] = True
    cells = sample_bev_cells(2, 4, 5, k=5, generator=7, mask=mask)
    assert sorted(cells[0].tolist()) == [6, 7, 8]
    assert len(cells[1]) == 5 and len(set(cells[1].tolist())) == 5
    assert set(cells[1].tolist()) <= {0, 5, 6, 7, 8, 9, 15}
    again = sample_bev_cells(2, 4, 5, k=5, generator=7, mask=mask)
    assert all(torch.equal(a, b) for a, b in zip(cells, again))
    cam, lid = _maps(2)
    got = bev_infonce(cam, lid, k=5, generator=7, mask=mask, tau=0.1)
    assert got.item() == pytest.approx(_loop_infonce(cam, lid, cells, 0.1), rel=1e-10)
    # an all-empty mask gives a zero loss that still back-propagates
    cam.requires_grad_()
    z = bev_infonce(cam, lid, k=5, mask=torch.zeros(2, 4, 5, dtype=torch.bool))
    z.backward()
    assert z.item() == 0.0


def test_infonce_errors():
    cam, lid = _maps()
    with pytest.raises(ValueError, match="lidar_bev"):
        bev_infonce(cam, lid[:, :2])
    with pytest.raises(ValueError, match="tau"):
        bev_infonce(cam, lid, tau=0.0)
    with pytest.raises(ValueError, match="k must"):
        bev_infonce(cam, lid, k=0)
    with pytest.raises(ValueError, match="mask"):
        bev_infonce(cam, lid, mask=torch.ones(2, 5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="cells"):
        bev_infonce(cam, lid, cells=[torch.tensor([0, 20]), torch.tensor([1])])


def test_random_patch_mask():
    m = random_patch_mask(4, 20, 0.75, generator=0)
    assert m.shape == (4, 20) and m.dtype == torch.bool
    assert (m.sum(1) == 15).all()
    assert torch.equal(m, random_patch_mask(4, 20, 0.75, generator=0))
    assert not torch.equal(m[0], m[1]) or not torch.equal(m[1], m[2])   # per-sample draws
    assert random_patch_mask(2, 7, 0.0).sum() == 0 and random_patch_mask(2, 7, 1.0).all()
    # uniform: every patch masked about ratio of the time
    freq = random_patch_mask(4000, 10, 0.3, generator=1).double().mean(0)
    assert torch.allclose(freq, torch.full((10,), 0.3, dtype=torch.float64), atol=0.03)
    with pytest.raises(ValueError, match="ratio"):
        random_patch_mask(1, 4, 1.5)


def test_patchify_and_masking_against_loops():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(2, 3, 4, 6, generator=g)
    p = patchify(img, 2)
    assert p.shape == (2, 6, 12)
    for b in range(2):
        for n in range(6):
            r, c = divmod(n, 3)
            ref = img[b, :, 2 * r:2 * r + 2, 2 * c:2 * c + 2].permute(1, 2, 0).reshape(-1)
            assert torch.equal(p[b, n], ref)
    mask = torch.tensor([[True, False, False, True, False, True], [False] * 5 + [True]])
    pm = patchify(mask_patches(img, mask, 2), 2)
    assert (pm[mask] == 0).all() and torch.equal(pm[~mask], p[~mask])
    with pytest.raises(ValueError, match="patch"):
        patchify(img, 4)


def test_mae_loss_against_loop():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    tgt = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, False, False], [False, True, True, True, False]])
    errs = [sum((float(pred[b, n, i]) - float(tgt[b, n, i])) ** 2 for i in range(4)) / 4
            for b in range(2) for n in range(5) if mask[b, n]]
    assert mae_loss(pred, tgt, mask).item() == pytest.approx(sum(errs) / len(errs), rel=1e-12)
    # unmasked patches do not count: changing them leaves the loss unchanged
    pred2 = pred.clone()
    pred2[~mask] += 10
    assert mae_loss(pred2, tgt, mask).item() == pytest.approx(mae_loss(pred, tgt, mask).item(), rel=1e-12)
    assert mae_loss(pred, tgt, None).item() == pytest.approx(((pred - tgt) ** 2).mean().item(), rel=1e-12)
    # norm_pix: each target patch standardised by its own mean and (unbiased) std
    t = np.asarray(tgt)
    tn = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)
    ref = (((np.asarray(pred) - tn) ** 2).mean(-1) * mask.numpy()).sum() / mask.sum().item()
    assert mae_loss(pred, tgt, mask, norm_pix=True).item() == pytest.approx(ref, rel=1e-10)
    with pytest.raises(ValueError, match="mask"):
        mae_loss(pred, tgt, mask[:, :4])
