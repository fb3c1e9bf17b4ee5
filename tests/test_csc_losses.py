"""CSC losses (chen2024-csc.md Eqs. 1-6) against hand-written references: explicit loops over
anchors / candidates with math.exp / math.log, closed forms, and F.cross_entropy written out."""
import math

import pytest
import torch
import torch.nn.functional as F

from bevlib.ssl.csc import (MMPB, csc_loss, prototype_contrast, prototype_loss_active,
                            semantic_prototypes, superpixel_contrast)


def _unit(v):
    n = math.sqrt(sum(a * a for a in v))
    return [a / n for a in v]


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def _loop_lsp(pix, pts, tau, normalize=True):
    """Eq. 5 by hand: anchor = superpoint i, candidates = every superpixel j."""
    pix = [list(map(float, r)) for r in pix]
    pts = [list(map(float, r)) for r in pts]
    if normalize:
        pix, pts = [_unit(r) for r in pix], [_unit(r) for r in pts]
    terms = []
    for i in range(len(pts)):
        num = math.exp(_dot(pts[i], pix[i]) / tau)
        den = sum(math.exp(_dot(pts[i], pix[j]) / tau) for j in range(len(pix)))
        terms.append(-math.log(num / den))
    return terms


def _loop_lpro(pts, signs, protos, present, tau):
    """Eq. 4 by hand: candidates = present prototypes only."""
    terms = []
    for f, s in zip(pts, signs):
        f = list(map(float, f))
        num = math.exp(_dot(f, list(map(float, protos[s]))) / tau)
        den = sum(math.exp(_dot(f, list(map(float, protos[t]))) / tau)
                  for t in range(len(protos)) if present[t])
        terms.append(-math.log(num / den))
    return terms


# ---------------------------------------------------------------- Eq. 5
def test_superpixel_contrast_three_pairs_2d_by_hand():
    # 3 pairs in 2-D, unit vectors at known angles: cosines are cos(angle differences)
    a = [0.0, 2.0, 4.0]                       # superpixel angles (rad)
    b = [0.3, 2.5, 3.5]                       # superpoint angles
    pix = torch.tensor([[math.cos(t), math.sin(t)] for t in a], dtype=torch.float64) * 3.0
    pts = torch.tensor([[math.cos(t), math.sin(t)] for t in b], dtype=torch.float64) * 0.5
    tau = 0.5
    ref = 0.0
    for i in range(3):                        # closed form: cos(b_i - a_j) / tau
        num = math.exp(math.cos(b[i] - a[i]) / tau)
        den = sum(math.exp(math.cos(b[i] - a[j]) / tau) for j in range(3))
        ref += -math.log(num / den)
    got = superpixel_contrast(pix, pts, tau=tau)
    assert got.item() == pytest.approx(ref / 3, rel=1e-12)
    assert superpixel_contrast(pix, pts, tau=tau, reduction="sum").item() == pytest.approx(ref, rel=1e-12)


def test_superpixel_contrast_direction_matters():
    # anchor = superpoint: swapping the roles (softmax over superpoints) must give another value
    g = torch.Generator().manual_seed(0)
    pix = torch.randn(6, 4, generator=g, dtype=torch.float64)
    pts = torch.randn(6, 4, generator=g, dtype=torch.float64)
    ref = sum(_loop_lsp(pix, pts, 0.07)) / 6
    assert superpixel_contrast(pix, pts).item() == pytest.approx(ref, rel=1e-10)
    swapped = sum(_loop_lsp(pts, pix, 0.07)) / 6
    assert abs(ref - swapped) > 1e-3


def test_superpixel_contrast_matches_cross_entropy_written_out():
    g = torch.Generator().manual_seed(1)
    pix = torch.randn(9, 5, generator=g)
    pts = torch.randn(9, 5, generator=g)
    tau = 0.2
    x = pts / pts.norm(dim=1, keepdim=True)
    y = pix / pix.norm(dim=1, keepdim=True)
    logits = torch.einsum("id,jd->ij", x, y) / tau
    ce = F.cross_entropy(logits, torch.arange(9))
    assert torch.allclose(superpixel_contrast(pix, pts, tau=tau), ce, atol=1e-6)
    # unnormalised variant: raw scalar products
    ce_raw = F.cross_entropy(torch.einsum("id,jd->ij", pts, pix) / tau, torch.arange(9))
    assert torch.allclose(superpixel_contrast(pix, pts, tau=tau, normalize=False), ce_raw, atol=1e-5)


def test_superpixel_contrast_tau_scaling_and_gradients():
    g = torch.Generator().manual_seed(2)
    pix = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    pts = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    for tau in (0.07, 0.5, 2.0):
        ref = sum(_loop_lsp(pix.detach(), pts.detach(), tau)) / 5
        assert superpixel_contrast(pix, pts, tau=tau).item() == pytest.approx(ref, rel=1e-10)
    # tau acts only as a divisor of the cosine logits: normalize=False on pre-normalised inputs with
    # tau' = 1 and inputs scaled by 1/sqrt(tau) equals tau
    xn, yn = F.normalize(pix.detach(), dim=1), F.normalize(pts.detach(), dim=1)
    s = 1 / math.sqrt(0.3)
    assert superpixel_contrast(xn * s, yn * s, tau=1.0, normalize=False).item() == pytest.approx(
        superpixel_contrast(pix, pts, tau=0.3).item(), rel=1e-10)
    loss = superpixel_contrast(pix, pts)
    loss.backward()
    assert torch.isfinite(pix.grad).all() and torch.isfinite(pts.grad).all()
    assert pix.grad.abs().sum() > 0 and pts.grad.abs().sum() > 0


def test_superpixel_contrast_errors():
    with pytest.raises(ValueError, match="empty"):
        superpixel_contrast(torch.zeros(0, 4), torch.zeros(0, 4))
    with pytest.raises(ValueError, match="pixel_feats"):
        superpixel_contrast(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="tau"):
        superpixel_contrast(torch.ones(3, 4), torch.ones(3, 4), tau=0.0)
    with pytest.raises(ValueError, match="point_feats"):
        superpixel_contrast(torch.ones(3, 4), torch.ones(3, 4, dtype=torch.long))


# ---------------------------------------------------------------- Eq. 1
def test_semantic_prototypes_mean_and_absent():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(7, 3, generator=g, dtype=torch.float64)
    signs = torch.tensor([0, 2, 2, 4, 0, 2, 4])           # signs 1 and 3 absent
    protos, present = semantic_prototypes(feats, signs, 5)
    assert protos.shape == (5, 3) and present.dtype == torch.bool
    assert present.tolist() == [True, False, True, False, True]
    for t in range(5):
        rows = [feats[i] for i in range(7) if int(signs[i]) == t]
        if rows:
            ref = [sum(float(r[d]) for r in rows) / len(rows) for d in range(3)]
            assert protos[t].tolist() == pytest.approx(ref, rel=1e-12)
        else:
            assert protos[t].tolist() == [0.0, 0.0, 0.0]


def test_semantic_prototypes_gradient_and_empty():
    feats = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    signs = torch.tensor([1, 1, 0, 1])
    protos, _ = semantic_prototypes(feats, signs, 3)
    protos.sum().backward()
    # d/dF_q of sum_t P^t = 1 / |C^{sign_q}|
    assert feats.grad[:, 0].tolist() == pytest.approx([1 / 3, 1 / 3, 1.0, 1 / 3])
    p, pres = semantic_prototypes(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 3)
    assert p.shape == (3, 2) and not pres.any()
    with pytest.raises(ValueError, match="signs"):
        semantic_prototypes(torch.zeros(2, 2), torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="signs"):
        semantic_prototypes(torch.zeros(2, 2), torch.tensor([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="n_classes"):
        semantic_prototypes(torch.zeros(2, 2), torch.tensor([0, 0]), 0)


# ---------------------------------------------------------------- Eqs. 2-3
def test_mmpb_shapes_and_row_independence():
    torch.manual_seed(0)
    m = MMPB(dim_2d=6, dim_3d=4, dim_out=5, proj_layers=2, fusion_layers=3)
    p2d, p3d = torch.randn(7, 6), torch.randn(7, 4)
    out = m(p2d, p3d)
    assert out.shape == (7, 5)
    b2d, b3d = m.project(p2d, p3d)
    assert b2d.shape == (7, 5) and b3d.shape == (7, 5)
    # each sign's P_mix depends on that sign's prototypes only
    one = m(p2d[3:4], p3d[3:4])
    assert torch.allclose(one[0], out[3], atol=1e-6)
    with pytest.raises(ValueError, match="p2d"):
        m(torch.randn(7, 4), p3d)
    with pytest.raises(ValueError, match="p2d"):
        m(p2d[:3], p3d)
    with pytest.raises(ValueError, match="proj_layers"):
        MMPB(4, 4, proj_layers=0)


def test_mmpb_single_linear_layers_are_affine_by_hand():
    torch.manual_seed(1)
    m = MMPB(3, 2, dim_out=4, proj_layers=1, fusion_layers=1).double()
    p2d, p3d = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    W2, c2 = m.proj_2d[0].weight, m.proj_2d[0].bias
    W3, c3 = m.proj_3d[0].weight, m.proj_3d[0].bias
    Wf, cf = m.fusion[0].weight, m.fusion[0].bias
    ref = (p2d @ W2.T + c2) @ Wf[:, :4].T + (p3d @ W3.T + c3) @ Wf[:, 4:].T + cf
    assert torch.allclose(m(p2d, p3d), ref, atol=1e-12)


def test_mmpb_reset_to_average_is_mean_of_modalities():
    m = MMPB(4, 4, proj_layers=1, fusion_layers=1).reset_to_average()
    p2d, p3d = torch.randn(6, 4), torch.randn(6, 4)
    assert torch.allclose(m(p2d, p3d), (p2d + p3d) / 2, atol=1e-6)
    with pytest.raises(ValueError):
        MMPB(4, 4).reset_to_average()                      # 2-layer stacks: not representable


# ---------------------------------------------------------------- Eq. 4
def test_prototype_contrast_absent_sign_is_not_a_negative():
    g = torch.Generator().manual_seed(4)
    pts = torch.randn(6, 3, generator=g, dtype=torch.float64)
    signs = torch.tensor([0, 2, 2, 0, 3, 3])
    protos = torch.randn(4, 3, generator=g, dtype=torch.float64)
    present = torch.tensor([True, False, True, True])
    protos[1] = torch.tensor([50.0, 50.0, 50.0])            # would dominate if it were a negative
    got = prototype_contrast(pts, signs, protos, present, tau=1.0)
    ref = _loop_lpro(pts, signs.tolist(), protos, present.tolist(), 1.0)
    assert got.item() == pytest.approx(sum(ref) / 6, rel=1e-10)
    # the value must not move when the absent prototype changes
    protos2 = protos.clone()
    protos2[1] = -protos2[1]
    assert prototype_contrast(pts, signs, protos2, present).item() == pytest.approx(got.item(), rel=1e-12)
    # ...whereas with every sign treated present the reference differs
    all_ref = _loop_lpro(pts, signs.tolist(), protos, [True] * 4, 1.0)
    assert abs(sum(all_ref) / 6 - got.item()) > 1e-3
    with pytest.raises(ValueError, match="signs"):
        prototype_contrast(pts, torch.tensor([1, 2, 2, 0, 3, 3]), protos, present)


def test_prototype_contrast_with_semantic_prototypes_and_tau():
    g = torch.Generator().manual_seed(5)
    pts = torch.randn(8, 4, generator=g, dtype=torch.float64, requires_grad=True)
    signs = torch.tensor([0, 0, 3, 3, 3, 5, 5, 0])
    protos, present = semantic_prototypes(pts.detach(), signs, 6)
    for tau in (0.1, 1.0, 3.0):
        ref = _loop_lpro(pts.detach(), signs.tolist(), protos, present.tolist(), tau)
        got = prototype_contrast(pts, signs, protos, present, tau=tau)
        assert got.item() == pytest.approx(sum(ref) / 8, rel=1e-10)
        assert prototype_contrast(pts, signs, protos, present, tau=tau,
                                  reduction="sum").item() == pytest.approx(sum(ref), rel=1e-10)
    # cosine variant against the written-out cross entropy over present columns
    x = pts.detach() / pts.detach().norm(dim=1, keepdim=True)
    keep = present.nonzero().flatten()
    pn = protos[keep] / protos[keep].norm(dim=1, keepdim=True)
    remap = {int(t): k for k, t in enumerate(keep)}
    ce = F.cross_entropy(x @ pn.T / 0.5, torch.tensor([remap[int(s)] for s in signs]))
    assert prototype_contrast(pts, signs, protos, present, tau=0.5, normalize=True).item() == pytest.approx(
        ce.item(), rel=1e-10)
    loss = prototype_contrast(pts, signs, protos, present)
    loss.backward()
    assert torch.isfinite(pts.grad).all() and pts.grad.abs().sum() > 0


def test_prototype_contrast_through_mmpb_gradients_finite():
    torch.manual_seed(2)
    pts = torch.randn(10, 4, requires_grad=True)
    pix = torch.randn(10, 4, requires_grad=True)
    signs = torch.tensor([0, 1, 1, 4, 4, 4, 0, 1, 4, 0])  # 2 and 3 absent
    p3d, pres = semantic_prototypes(pts, signs, 5)
    p2d, pres2 = semantic_prototypes(pix, signs, 5)
    assert torch.equal(pres, pres2)
    m = MMPB(4, 4)
    loss = prototype_contrast(pts, signs, m(p2d, p3d), pres)
    loss.backward()
    for t in (pts.grad, pix.grad, *(p.grad for p in m.parameters())):
        assert t is not None and torch.isfinite(t).all()


def test_prototype_contrast_errors():
    pts, protos = torch.randn(3, 2), torch.randn(4, 2)
    present = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="empty"):
        prototype_contrast(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), protos, present)
    with pytest.raises(ValueError, match="present"):
        prototype_contrast(pts, torch.tensor([0, 1, 2]), protos, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="prototypes"):
        prototype_contrast(pts, torch.tensor([0, 1, 2]), torch.randn(4, 3), present)
    with pytest.raises(ValueError, match="tau"):
        prototype_contrast(pts, torch.tensor([0, 1, 2]), protos, present, tau=-1.0)


# ---------------------------------------------------------------- Eq. 6
def test_csc_loss_switches_at_lambda():
    l_sp, l_pro = torch.tensor(1.25), torch.tensor(0.5)
    for lam in (0, 1, 5):
        for epoch in range(8):
            n = epoch + 1                                      # paper's 1-based epoch count
            expect = 1.25 + (0.5 if n > lam else 0.0)
            assert prototype_loss_active(epoch, lam) == (n > lam)
            assert csc_loss(l_sp, l_pro, epoch, lam).item() == pytest.approx(expect)
    assert not prototype_loss_active(4) and prototype_loss_active(5)    # default lambda = 5
    assert csc_loss(l_sp, None, 4).item() == pytest.approx(1.25)        # L_pro may be skipped early
    assert csc_loss(l_sp, l_pro, 5, reduce="mean").item() == pytest.approx(0.875)
    with pytest.raises(ValueError, match="l_pro"):
        csc_loss(l_sp, None, 5)
    with pytest.raises(ValueError, match="epoch"):
        csc_loss(l_sp, l_pro, -1)
