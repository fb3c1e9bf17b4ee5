import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bevlib.models.promptnorm import (PromptNorm, dataset_prompt, prompt_norms, replace_layernorms,
                                      set_dataset_index, set_prompt_mode)


def _perturb_adapters(module, seed=0):
    """Give every adapter's zero-initialised last layer random weights so prompts matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in prompt_norms(module):
            last = m.adapter[-1]
            last.weight.copy_(torch.randn(last.weight.shape, generator=g) * 0.5)
            last.bias.copy_(torch.randn(last.bias.shape, generator=g) * 0.5)
            m.prompts.weight.copy_(torch.randn(m.prompts.weight.shape, generator=g))


def test_identity_init_is_layernorm_exactly():
    ln = nn.LayerNorm(8, eps=1e-6)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    model = nn.Sequential(nn.Linear(8, 8), ln)
    x = torch.randn(3, 5, 8)
    ref = model(x)
    assert replace_layernorms(model, n_datasets=3) == 1
    pn = model[1]
    assert isinstance(pn, PromptNorm) and pn.eps == 1e-6
    for idx in (torch.tensor([0, 1, 2]), 2):
        assert torch.equal(model[1](model[0](x), dataset_index=idx), ref)
    alpha, beta = pn.alpha_beta(torch.arange(3))
    assert torch.equal(alpha, torch.ones(3, 8)) and torch.equal(beta, torch.zeros(3, 8))


def test_formula_and_own_prompt_per_sample():
    pn = PromptNorm(6, n_datasets=3, prompt_dim=4, adapter_hidden=5)
    _perturb_adapters(pn)
    x = torch.randn(2, 7, 6, dtype=torch.float32)
    idx = torch.tensor([0, 2])
    out = pn(x, dataset_index=idx)
    # Eq. 5 written out: (s, t) = MLP(r_i), alpha = 1 + s, beta = t, applied to the affine LayerNorm
    for b in range(2):
        r = pn.prompts.weight[idx[b]]
        st = pn.adapter[2](F.silu(pn.adapter[0](r)))
        alpha, beta = 1 + st[:6], st[6:]
        ref = alpha * F.layer_norm(x[b], (6,), pn.weight, pn.bias, pn.eps) + beta
        torch.testing.assert_close(out[b], ref, rtol=1e-6, atol=1e-6)
        # the same as a call with that sample alone
        torch.testing.assert_close(out[b:b + 1], pn(x[b:b + 1], dataset_index=idx[b:b + 1]), rtol=0, atol=1e-6)
    assert not torch.allclose(out[1], pn(x, dataset_index=torch.tensor([0, 0]))[1], atol=1e-3)
    # modes: "none" is the plain LayerNorm, an int fixes one prompt for all samples
    set_prompt_mode(pn, "none")
    assert torch.equal(pn(x), F.layer_norm(x, (6,), pn.weight, pn.bias, pn.eps))
    set_prompt_mode(pn, "own")
    torch.testing.assert_close(set_and_call(pn, x, 1), pn(x, dataset_index=torch.tensor([1, 1])))
    set_prompt_mode(pn, 1)
    torch.testing.assert_close(pn(x), set_and_call(pn, x, 1))


def set_and_call(pn, x, i):
    with dataset_prompt(pn, i):
        return pn(x)


def test_prompts_get_gradients_and_errors():
    pn = PromptNorm(4, n_datasets=2, prompt_dim=3, adapter_hidden=4)
    _perturb_adapters(pn, 1)
    pn(torch.randn(2, 4), dataset_index=torch.tensor([1, 1])).pow(2).sum().backward()
    assert pn.prompts.weight.grad[1].abs().sum() > 0 and pn.prompts.weight.grad[0].abs().sum() == 0
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="dataset_index"):
        pn(x)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        pn(x, dataset_index=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="first dimension"):
        pn(x, dataset_index=torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="prompt mode"):
        set_prompt_mode(pn, 5)
    with pytest.raises(ValueError, match="prompt mode"):
        set_prompt_mode(pn, "wrong")


def test_context_restores_index():
    model = nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 4), nn.LayerNorm(4))
    replace_layernorms(model, 2)
    set_dataset_index(model, 0)
    with dataset_prompt(model, torch.tensor([1])):
        assert all(torch.equal(m._dataset_index, torch.tensor([1])) for m in prompt_norms(model))
    assert all(m._dataset_index == 0 for m in prompt_norms(model))
    # shared prompt table: one parameter set for the whole model
    assert prompt_norms(model)[0].prompts is prompt_norms(model)[1].prompts


def _tiny_hf(kind):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "swin":
        cfg = transformers.SwinConfig(image_size=32, patch_size=4, num_channels=3, embed_dim=8, depths=[1, 1],
                                      num_heads=[1, 2], window_size=4, mlp_ratio=2.0)
        return transformers.SwinModel(cfg).eval()
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32)
    return transformers.ViTModel(cfg).eval()


@pytest.mark.parametrize("kind", ["swin", "vit"])
def test_replace_in_transformers_models(kind):
    model = _tiny_hf(kind)
    n_ln = sum(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert n_ln >= 5
    with torch.no_grad():    # non-trivial base affine, to see it is copied
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(pixel_values=x).last_hidden_state
    assert replace_layernorms(model, n_datasets=3, prompt_dim=4, adapter_hidden=8) == n_ln
    assert not any(type(m) is nn.LayerNorm for m in model.modules())
    assert len(prompt_norms(model)) == n_ln
    idx = torch.tensor([2, 0])
    with torch.no_grad(), dataset_prompt(model, idx):
        assert torch.equal(model(pixel_values=x).last_hidden_state, ref)
    _perturb_adapters(model)
    with torch.no_grad():
        with dataset_prompt(model, idx):
            both = model(pixel_values=x).last_hidden_state
        with dataset_prompt(model, idx[1:]):
            second = model(pixel_values=x[1:]).last_hidden_state
        with dataset_prompt(model, torch.tensor([2, 2])):
            wrong = model(pixel_values=x).last_hidden_state
    torch.testing.assert_close(both[1:], second, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(both[1], wrong[1], atol=1e-3)   # sample 1 uses its own prompt (0), not 2
    torch.testing.assert_close(both[0], wrong[0], rtol=1e-5, atol=1e-5)
