"""lukkassen2024 (MultiViT) losses: multi-class focal loss, Lovasz-softmax, their sum.

The Lovasz-softmax reference here is Berman et al.'s definition computed directly: per class,
sort the errors, evaluate the Jaccard loss Delta_J(S_k) = |S_k| / |{y = c} u S_k| of every
top-k set with Python sets, take the differences as the Lovasz extension's gradient vector and
dot it with the sorted errors. Values and autograd gradients must agree to 1e-6 (float64).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from bevlib.classes import IGNORE
from bevlib.losses import lovasz_softmax, multiclass_focal_loss, multivit_segmentation_loss


def _direct_focal(logits, target, gamma, alpha, ignore_index=IGNORE):
    """Per-element -alpha_t (1 - p_t)^gamma log p_t with explicit loops; mean over labelled."""
    B, C = logits.shape[:2]
    flat = logits.movedim(1, -1).reshape(-1, C)
    labels = target.reshape(-1).tolist()
    terms = []
    for i, y in enumerate(labels):
        if y == ignore_index:
            continue
        p = torch.softmax(flat[i], dim=0)
        a = 1.0 if alpha is None else alpha[y]
        terms.append(-a * (1 - p[y]) ** gamma * torch.log(p[y]))
    return sum(terms) / len(terms)


def _delta_jaccard(S: set, fg: set) -> float:
    """Berman et al.'s Jaccard loss of the mispredicted set S for a class with pixels fg."""
    return 0.0 if not S else len(S) / len(fg | S)


def _direct_lovasz(probas, target, classes="present", ignore_index=IGNORE):
    """Lovasz extension of Delta_J per class, straight from the definition (Python loops)."""
    C = probas.shape[1]
    flat = probas.movedim(1, -1).reshape(-1, C)
    labels = target.reshape(-1).tolist()
    pix = [i for i, y in enumerate(labels) if y != ignore_index]
    present = {labels[i] for i in pix}
    wanted = [c for c in range(C) if classes == "all" or c in present] if isinstance(classes, str) else list(classes)
    losses = []
    for c in wanted:
        fg = {i for i in pix if labels[i] == c}
        errors = {i: ((1.0 if i in fg else 0.0) - flat[i, c]).abs() for i in pix}
        order = sorted(pix, key=lambda i: -errors[i].item())
        loss_c = 0.0
        for k in range(len(order)):
            g_k = _delta_jaccard(set(order[:k + 1]), fg) - _delta_jaccard(set(order[:k]), fg)
            loss_c = loss_c + errors[order[k]] * g_k
        losses.append(loss_c)
    return sum(losses) / len(losses)


def _inputs(seed=0, B=2, C=4, H=3, W=5, absent=(2,), n_ignore=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, C, H, W, generator=g, dtype=torch.float64) * 2
    present = [c for c in range(C) if c not in absent]
    target = torch.tensor(present)[torch.randint(len(present), (B, H, W), generator=g)]
    target.view(-1)[torch.randperm(B * H * W, generator=g)[:n_ignore]] = IGNORE
    return logits, target


def _value_and_grad(fn, logits):
    x = logits.clone().requires_grad_(True)
    loss = fn(x)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


# ---------------------------------------------------------------- focal


@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (2.0, [0.25, 1.0, 2.0, 0.5]), (0.5, 0.25)])
def test_focal_matches_direct_per_element(gamma, alpha):
    logits, target = _inputs(seed=1)
    a_direct = None if alpha is None else (alpha if isinstance(alpha, list) else [alpha] * 4)
    v, g = _value_and_grad(lambda x: multiclass_focal_loss(x, target, gamma=gamma, alpha=alpha), logits)
    v_ref, g_ref = _value_and_grad(lambda x: _direct_focal(x, target, gamma, a_direct), logits)
    assert v.item() == pytest.approx(v_ref.item(), abs=1e-6)
    torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=0)
    assert g.view(2, 4, -1).movedim(1, -1)[(target == IGNORE).view(2, -1)].abs().max() == 0


def test_focal_gamma0_is_cross_entropy_and_focusing_lowers_easy_terms():
    logits, target = _inputs(seed=2)
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    assert multiclass_focal_loss(logits, target, gamma=0.0).item() == pytest.approx(ce.item(), abs=1e-12)
    assert multiclass_focal_loss(logits, target, gamma=2.0) < ce
    # a hand value: one pixel, p_t = e^1 / (e^1 + 1)
    one = torch.tensor([[1.0, 0.0]]).view(1, 2, 1)
    p = math.e / (math.e + 1)
    assert multiclass_focal_loss(one, torch.tensor([[0]]), gamma=2.0, alpha=[0.3, 1.0]).item() == \
        pytest.approx(-0.3 * (1 - p) ** 2 * math.log(p), rel=1e-6)


def test_focal_all_ignored_and_bad_args():
    logits, target = _inputs()
    x = logits.clone().requires_grad_(True)
    loss = multiclass_focal_loss(x, torch.full_like(target, IGNORE))
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError):
        multiclass_focal_loss(logits, target[0])
    with pytest.raises(ValueError):
        multiclass_focal_loss(logits, target, alpha=[1.0, 2.0])


# ---------------------------------------------------------------- Lovasz-softmax


@pytest.mark.parametrize("classes", ["present", "all", [0, 2, 3]])
@pytest.mark.parametrize("seed", [0, 3])
def test_lovasz_matches_direct_definition(classes, seed):
    logits, target = _inputs(seed=seed)   # class 2 absent, 4 ignored pixels
    v, g = _value_and_grad(lambda x: lovasz_softmax(x, target, classes=classes), logits)
    v_ref, g_ref = _value_and_grad(lambda x: _direct_lovasz(x.softmax(1), target, classes), logits)
    assert v.item() == pytest.approx(v_ref.item(), abs=1e-6)
    torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=0)


def test_lovasz_on_probabilities_and_ignored_pixels_have_no_gradient():
    logits, target = _inputs(seed=4, C=3, absent=())
    probas = logits.softmax(1)
    v, g = _value_and_grad(lambda x: lovasz_softmax(x, target, from_logits=False), probas)
    v_ref, g_ref = _value_and_grad(lambda x: _direct_lovasz(x, target), probas)
    assert v.item() == pytest.approx(v_ref.item(), abs=1e-6)
    torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=0)
    ign = (target == IGNORE).unsqueeze(1).expand_as(g)
    assert g[ign].abs().max() == 0 and g[~ign].abs().max() > 0


def test_lovasz_present_vs_all_on_an_absent_class():
    logits, target = _inputs(seed=5)     # class 2 absent
    probas = logits.softmax(1)
    present = lovasz_softmax(logits, target, classes="present")
    every = lovasz_softmax(logits, target, classes="all")
    # an absent class: Delta_J(S) = 1 for every non-empty S, so its loss is its largest probability
    p2_max = probas[:, 2][target != IGNORE].max()
    assert every.item() == pytest.approx((3 * present.item() + p2_max.item()) / 4, abs=1e-9)
    assert lovasz_softmax(logits, target, classes=[2]).item() == pytest.approx(p2_max.item(), abs=1e-12)


def test_lovasz_perfect_prediction_is_zero_and_edge_cases():
    _, target = _inputs(seed=6)
    safe = torch.where(target == IGNORE, torch.zeros_like(target), target)
    onehot = F.one_hot(safe, 4).movedim(-1, 1).double()
    assert lovasz_softmax(onehot, target, from_logits=False).item() == 0.0
    assert lovasz_softmax(onehot, target, classes="all", from_logits=False).item() == 0.0
    assert lovasz_softmax(onehot * 60.0, target).item() < 1e-20
    # a wrong prediction is not free, and all-ignored gives 0 with a graph
    assert lovasz_softmax(onehot.roll(1, dims=1), target, from_logits=False).item() > 0.5
    x = onehot.clone().requires_grad_(True)
    loss = lovasz_softmax(x, torch.full_like(target, IGNORE))
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError):
        lovasz_softmax(onehot, target, classes="some")
    with pytest.raises(ValueError):
        lovasz_softmax(onehot, target[:, 0])


def test_lovasz_one_class_one_pixel():
    # P = 1: g = [Delta_J({0})] = 1 (the pixel is its own class' whole union) -> loss = 1 - p_y
    probas = torch.tensor([0.7, 0.3], dtype=torch.float64).view(1, 2, 1)
    assert lovasz_softmax(probas, torch.tensor([[0]]), from_logits=False).item() == pytest.approx(0.3)


# ---------------------------------------------------------------- the paper's sum


@pytest.mark.parametrize("lam", [1.0, 3.0])
def test_multivit_loss_is_lovasz_plus_lambda_focal(lam):
    logits, target = _inputs(seed=8)
    total = multivit_segmentation_loss(logits, target, lambda_focal=lam)
    expected = lovasz_softmax(logits, target) + lam * multiclass_focal_loss(logits, target, gamma=2.0)
    assert total.item() == pytest.approx(expected.item(), abs=1e-12)
    v, g = _value_and_grad(lambda x: multivit_segmentation_loss(x, target, lambda_focal=lam), logits)
    v_ref, g_ref = _value_and_grad(
        lambda x: _direct_lovasz(x.softmax(1), target) + lam * _direct_focal(x, target, 2.0, None), logits)
    assert v.item() == pytest.approx(v_ref.item(), abs=1e-6)
    torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=0)
