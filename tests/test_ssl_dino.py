"""bevlib.ssl.dino: head structure, loss against a direct loop, centring closed form, schedules, EMA."""
import copy
import math

import numpy as np
import pytest
import torch

from bevlib.ssl.dino import DINOHead, DINOLoss, cancel_last_layer_grads, cosine_schedule, ema_update
from bevlib.ssl.vmf import log_vmf_normalizer


def test_head_shapes_norms_and_frozen_g():
    torch.manual_seed(0)
    head = DINOHead(12, hidden=16, bottleneck=8, n_prototypes=20, nlayers=3)
    x = torch.randn(5, 12)
    out = head(x)
    assert out.shape == (5, 20)
    z = head.embed(x)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(head.prototype_norms(), torch.ones(20))
    torch.testing.assert_close(out, z @ head.prototypes().T)
    assert sum(isinstance(m, torch.nn.GELU) for m in head.mlp) == 2
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad
    vm = DINOHead(12, hidden=16, bottleneck=8, n_prototypes=20, vmf=True)
    assert vm.last_layer.bias is None and not torch.allclose(vm.prototype_norms(), torch.ones(20))


def _direct_loss(s, t, center, tau_s, tau_t, n_global, n_views):
    b = t.shape[0] // n_global
    total, n = 0.0, 0
    for it in range(n_global):
        for iv in range(n_views):
            if iv == it:
                continue
            for j in range(b):
                q = torch.softmax((t[it * b + j] - center[0]) / tau_t, 0)
                lp = torch.log_softmax(s[iv * b + j] / tau_s, 0)
                total += -(q * lp).sum().item() / b
            n += 1
    return total / n


def test_loss_against_loop_and_centre_update():
    torch.manual_seed(1)
    k, b, ng, nl = 6, 3, 2, 3
    loss = DINOLoss(k, n_global=ng, n_local=nl, warmup_teacher_temp_epochs=5)
    loss.center.copy_(torch.randn(1, k))
    c0 = loss.center.clone()
    s = torch.randn((ng + nl) * b, k, requires_grad=True)
    t = torch.randn(ng * b, k)
    val = loss(s, t, epoch=2)
    tau_t = 0.04 + (0.07 - 0.04) * 2 / 4
    assert val.item() == pytest.approx(_direct_loss(s.detach(), t, c0, 0.1, tau_t, ng, ng + nl), rel=1e-6)
    torch.testing.assert_close(loss.center, 0.9 * c0 + 0.1 * t.mean(0, keepdim=True))
    val.backward()
    assert s.grad.abs().sum() > 0


def test_vmf_loss_uses_eq2_and_probability_centring():
    torch.manual_seed(2)
    k, b, d = 5, 2, 4
    loss = DINOLoss(k, n_global=2, n_local=0, warmup_teacher_temp_epochs=0, vmf=True, vmf_dim=d)
    torch.testing.assert_close(loss.center, torch.full((1, k), 1 / k))
    c = torch.softmax(torch.randn(1, k), 1)
    loss.center.copy_(c)
    s, t = torch.randn(2 * b, k, dtype=torch.float64), torch.randn(2 * b, k, dtype=torch.float64)
    loss.double()
    ns, nt = torch.rand(k, dtype=torch.float64) + 0.5, torch.rand(k, dtype=torch.float64) + 0.5
    val = loss(s, t, 0, student_norms=ns, teacher_norms=nt)
    ls = s / 0.1 + log_vmf_normalizer(ns / 0.1, d)
    lt = t / 0.07 + log_vmf_normalizer(nt / 0.07, d)
    p = torch.softmax(lt, 1)
    q = p / c.double()
    q = q / q.sum(1, keepdim=True)
    lp = torch.log_softmax(ls, 1)
    ref = 0.5 * (-(q[:b] * lp[b:]).sum(1).mean() - (q[b:] * lp[:b]).sum(1).mean())
    assert val.item() == pytest.approx(ref.item(), rel=1e-10)
    torch.testing.assert_close(loss.center, 0.9 * c.double() + 0.1 * p.mean(0, keepdim=True))
    with pytest.raises(ValueError, match="norms"):
        loss(s, t, 0)


def test_teacher_temp_schedule_and_state_dict_round_trip():
    loss = DINOLoss(4, warmup_teacher_temp_epochs=30)
    assert loss.teacher_temp(0) == pytest.approx(0.04)
    assert loss.teacher_temp(29) == pytest.approx(0.07)
    assert loss.teacher_temp(100) == pytest.approx(0.07)
    loss.update_center(torch.arange(8.0).reshape(2, 4))
    other = DINOLoss(4)
    assert not torch.equal(other.center, loss.center)
    other.load_state_dict(loss.state_dict())
    assert torch.equal(other.center, loss.center)
    assert "center" in loss.state_dict()


def test_cosine_schedule_endpoints():
    s = cosine_schedule(0.996, 1.0, 100)
    assert s.shape == (100,)
    assert s[0] == pytest.approx(0.996)
    np.testing.assert_allclose(s[-1], 1.0 + 0.5 * (0.996 - 1.0) * (1 + math.cos(math.pi * 99 / 100)), rtol=1e-15)
    assert np.all(np.diff(s) >= 0) and s[-1] > 0.99999
    lr = cosine_schedule(5e-4, 1e-5, 50, warmup_steps=10)
    np.testing.assert_allclose(lr[:10], np.linspace(0, 5e-4, 10))
    assert lr[10] == pytest.approx(5e-4)
    assert np.all(np.diff(lr[10:]) <= 0) and lr[-1] > 1e-5
    wd = cosine_schedule(0.04, 0.4, 7)
    np.testing.assert_allclose(wd, 0.4 + 0.5 * (0.04 - 0.4) * (1 + np.cos(np.pi * np.arange(7) / 7)), rtol=1e-14)
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_schedule(1, 0, 5, warmup_steps=6)


def test_ema_closed_form_and_last_layer_grad_cancel():
    torch.manual_seed(3)
    student = DINOHead(4, hidden=6, bottleneck=3, n_prototypes=5, norm_last_layer=False)
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(1.0)
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    ema_update(teacher, student, 0.9)
    for n, p in teacher.named_parameters():
        torch.testing.assert_close(p, 0.9 * before[n] + 0.1 * dict(student.named_parameters())[n])
    with pytest.raises(ValueError, match="m must"):
        ema_update(teacher, student, 1.5)
    student(torch.randn(2, 4)).sum().backward()
    cancel_last_layer_grads(student, epoch=0, freeze_epochs=1)
    assert all(p.grad is None for n, p in student.named_parameters() if n.startswith("last_layer"))
    assert all(p.grad is not None for n, p in student.named_parameters() if n.startswith("mlp"))
    student(torch.randn(2, 4)).sum().backward()
    cancel_last_layer_grads(student, epoch=1, freeze_epochs=1)
    assert all(p.grad is not None for p in student.parameters())


def test_bad_input_raises():
    with pytest.raises(ValueError, match="vmf_dim"):
        DINOLoss(4, vmf=True)
    loss = DINOLoss(4, n_global=2, n_local=1)
    with pytest.raises(ValueError, match="student_output"):
        loss(torch.randn(4, 4), torch.randn(2, 4), 0)
    with pytest.raises(ValueError, match="teacher_output"):
        loss(torch.randn(6, 4), torch.randn(3, 4), 0)
