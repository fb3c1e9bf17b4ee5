"""Segmenter heads (bevlib.models.segmenter) against manual computations."""
import pytest
import torch
import torch.nn.functional as F

from bevlib.models.segmenter import LinearHead, MaskTransformerHead, token_grid


def _tokens(b=2, gh=3, gw=5, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, gh * gw, d, generator=g)


def test_shapes():
    x = _tokens()
    assert LinearHead(32, 7, 8)(x, (24, 40)).shape == (2, 7, 24, 40)
    assert MaskTransformerHead(32, 7, n_layers=2, n_heads=4, patch=8)(x, (24, 40)).shape == (2, 7, 24, 40)
    assert MaskTransformerHead(32, 7, n_heads=2, patch=8, d_model=16)(x, (24, 40)).shape == (2, 7, 24, 40)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="image_hw"):
        LinearHead(32, 7, 8)(_tokens(), (25, 40))
    with pytest.raises(ValueError, match="tokens"):
        LinearHead(32, 7, 8)(_tokens(gh=4), (24, 40))   # e.g. [CLS] left in / wrong grid
    with pytest.raises(ValueError, match="n_heads"):
        MaskTransformerHead(32, 7, n_heads=5, patch=8)
    with pytest.raises(ValueError, match="patch"):
        token_grid((16, 16), 0)


def test_linear_head_matches_einsum_and_interpolate():
    head = LinearHead(32, 7, 8)
    x = _tokens()
    W, b = head.head.weight, head.head.bias
    grid = torch.einsum("bnd,kd->bkn", x, W) + b[None, :, None]
    ref = F.interpolate(grid.reshape(2, 7, 3, 5), size=(24, 40), mode="bilinear", align_corners=False)
    torch.testing.assert_close(head(x, (24, 40)), ref)


def test_linear_head_constant_field_closed_form():
    # bilinear upsampling of a constant grid is that constant: every pixel = W t + b
    head = LinearHead(16, 4, 4)
    t = torch.randn(16)
    out = head(t.expand(1, 6, 16).contiguous(), (8, 12))
    expected = head.head.weight @ t + head.head.bias
    torch.testing.assert_close(out[0].permute(1, 2, 0), expected.expand(8, 12, 4))


def test_token_order_is_row_major():
    # a token that is "hot" for class 0 at grid (r, c) must peak at that patch's pixels
    head = LinearHead(2, 2, 4)
    with torch.no_grad():
        head.head.weight.copy_(torch.eye(2))
        head.head.bias.zero_()
    x = torch.zeros(1, 3 * 5, 2)
    x[0, 1 * 5 + 3, 0] = 10.0
    out = head(x, (12, 20))[0, 0]
    r, c = divmod(int(out.argmax()), 20)
    assert r // 4 == 1 and c // 4 == 3


def test_mask_head_product_from_embeddings():
    torch.manual_seed(0)
    head = MaskTransformerHead(32, 7, n_layers=2, n_heads=4, patch=8).eval()
    x = _tokens()
    patches, classes = head.embeddings(x)
    torch.testing.assert_close(patches.norm(dim=-1), torch.ones(2, 15))
    torch.testing.assert_close(classes.norm(dim=-1), torch.ones(2, 7))
    # direct: cosine masks, LayerNorm over the K classes by hand, grid, bilinear
    m = torch.einsum("bnd,bkd->bnk", patches, classes)
    mu, var = m.mean(-1, keepdim=True), m.var(-1, unbiased=False, keepdim=True)
    m = (m - mu) / torch.sqrt(var + head.mask_norm.eps) * head.mask_norm.weight + head.mask_norm.bias
    ref = F.interpolate(m.permute(0, 2, 1).reshape(2, 7, 3, 5), size=(24, 40), mode="bilinear", align_corners=False)
    torch.testing.assert_close(head(x, (24, 40)), ref)


def test_mask_head_class_embeddings_see_patches():
    # class and patch embeddings are processed jointly: changing the patches changes the class embeddings
    torch.manual_seed(0)
    head = MaskTransformerHead(32, 7, n_heads=4, patch=8).eval()
    _, c1 = head.embeddings(_tokens(seed=1))
    _, c2 = head.embeddings(_tokens(seed=2))
    assert not torch.allclose(c1, c2)


@pytest.mark.parametrize("kind", ["linear", "mask"])
def test_gradients_reach_the_head_only(kind):
    from bevlib.experiments.s3pt.probe import FrozenProbeModel, build_head

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 8, stride=8), torch.nn.Flatten(2))

    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = backbone

        def forward(self, im):
            return self.net(im).transpose(1, 2)

    model = FrozenProbeModel(Tokens(), build_head(kind, 32, 5, 8))
    model.train()
    model(torch.randn(2, 3, 16, 24)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
