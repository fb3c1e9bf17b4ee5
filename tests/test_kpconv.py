"""KPConv (bevlib.models.kpconv) against brute-force references written here with explicit loops."""
import math

import pytest
import torch

from bevlib.models.kpconv import KPConv, kernel_points, radius_neighbors

R, SIGMA = 0.5, 0.2


def cloud(seed=0, n=60):
    """~60 points in a 1.5 m cube, a dense cluster (to hit max_neighbors) and one isolated point (0)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n - 13, 3, generator=g) * 1.5
    cluster = torch.tensor([0.7, 0.7, 0.7]) + 0.05 * torch.randn(12, 3, generator=g)
    far = torch.tensor([[9.0, -4.0, 2.0]])
    # the lone point first: padding is clamped onto the last row, which must be a real neighbour
    # of someone for a missing padding mask to show
    return torch.cat([far, p, cluster]).float()


def ref_neighbors(support, queries, radius, max_neighbors=None, sb=None, qb=None):
    """Per query: support indices with |y - x| <= radius, sorted by (distance, index), truncated."""
    out = []
    for i in range(queries.shape[0]):
        x = queries[i].tolist()
        cands = []
        for j in range(support.shape[0]):
            if sb is not None and int(sb[j]) != int(qb[i]):
                continue
            y = support[j].tolist()
            d2 = (y[0] - x[0]) ** 2 + (y[1] - x[1]) ** 2 + (y[2] - x[2]) ** 2
            if d2 <= radius * radius:
                cands.append((d2, j))
        cands.sort()
        out.append([j for _, j in cands[:max_neighbors]])
    return out


def ref_kpconv(points, features, weight, kp, radius, sigma, max_neighbors, queries=None, normalize="none"):
    """Eq. (1) + (3) of Thomas et al. with explicit loops over queries, neighbours, kernel points."""
    queries = points if queries is None else queries
    nbrs = ref_neighbors(points, queries, radius, max_neighbors)
    rows = []
    for i, js in enumerate(nbrs):
        acc = torch.zeros(weight.shape[2], dtype=features.dtype)
        for j in js:
            for k in range(kp.shape[0]):
                z = [float(points[j, c]) - float(queries[i, c]) - float(kp[k, c]) for c in range(3)]
                h = max(0.0, 1.0 - math.sqrt(z[0] ** 2 + z[1] ** 2 + z[2] ** 2) / sigma)
                if h > 0:
                    acc = acc + h * (features[j] @ weight[k])
        if normalize == "count":
            acc = acc / max(len(js), 1)
        rows.append(acc)
    return torch.stack(rows), nbrs


def as_lists(nb):
    return [[int(j) for j, ok in zip(r, mk) if ok] for r, mk in zip(nb.index, nb.mask)]


# ---------------------------------------------------------------------------------------------
# neighbour search


def test_neighbors_match_cdist_brute_force():
    g = torch.Generator().manual_seed(1)
    s = torch.rand(300, 3, generator=g) * torch.tensor([4.0, 3.0, 1.0]) - 1.0
    q = torch.rand(80, 3, generator=g) * 5.0 - 1.5          # some queries outside the support box
    nb = radius_neighbors(s, q, 0.6)
    d = torch.cdist(q.double(), s.double())
    for i in range(q.shape[0]):
        want = set(torch.nonzero(d[i] <= 0.6).flatten().tolist())
        assert set(as_lists(nb)[i]) == want
    # padding is the shadow index and sorted nearest first
    assert bool((nb.index[~nb.mask] == s.shape[0]).all()) and nb.num_support == 300
    for i, js in enumerate(as_lists(nb)):
        assert d[i, js].tolist() == sorted(d[i, js].tolist())
    assert nb.index.shape[1] == int(nb.counts.max())


def test_neighbors_truncation_nearest_first_and_ties_by_index():
    p = cloud()
    full = radius_neighbors(p, p, R)
    nb = radius_neighbors(p, p, R, max_neighbors=5)
    assert int(full.counts.max()) > 5 and nb.index.shape[1] == 5
    assert as_lists(nb) == ref_neighbors(p, p, R, 5)
    # the isolated point keeps only itself
    assert as_lists(nb)[0] == [0]
    # exact ties: the lower support index wins the last slot
    s = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [-1.0, 0, 0], [0, 0, 0]])
    nb = radius_neighbors(s, torch.zeros(1, 3), 1.0, max_neighbors=3)
    assert as_lists(nb) == [[3, 0, 1]]


def test_neighbors_respect_batch_index():
    p = cloud()
    b = torch.arange(p.shape[0]) % 2             # two interleaved clouds in the same space
    nb = radius_neighbors(p, p, R, 7, b, b)
    assert as_lists(nb) == ref_neighbors(p, p, R, 7, b, b)
    assert all(int(b[j]) == int(b[i]) for i, js in enumerate(as_lists(nb)) for j in js)


def test_neighbors_rigid_motion_and_errors():
    p = cloud().double()
    th = 0.7
    rot = torch.tensor([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1.0]],
                       dtype=torch.float64)
    moved = p @ rot.T + torch.tensor([12.3, -40.0, 1.5], dtype=torch.float64)
    assert as_lists(radius_neighbors(moved, moved, R)) == as_lists(radius_neighbors(p, p, R))
    with pytest.raises(ValueError):
        radius_neighbors(p[:, :2], p, R)
    with pytest.raises(ValueError):
        radius_neighbors(p, p, -1.0)
    with pytest.raises(ValueError):
        radius_neighbors(p, p, R, max_neighbors=0)
    with pytest.raises(ValueError):
        radius_neighbors(p, p, R, support_batch=torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# kernel points and the convolution


def test_kernel_points_disposition():
    kp = kernel_points(15, 2.0)
    assert kp.shape == (15, 3) and kp.dtype == torch.float32
    assert torch.equal(kp[0], torch.zeros(3))
    torch.testing.assert_close(kp[1:].norm(dim=1), torch.full((14,), 0.66 * 2.0))
    assert torch.equal(kp, kernel_points(15, 2.0))                       # deterministic
    # spread: no two shell points closer than ~half the ideal spacing, centred around 0
    d = torch.cdist(kp[1:], kp[1:]) + 10 * torch.eye(14)
    assert float(d.min()) > 0.5 * 1.32 * math.sqrt(4 * math.pi / 14)
    assert float(kp[1:].mean(0).norm()) < 0.1
    with pytest.raises(ValueError):
        kernel_points(0, 1.0)


@pytest.mark.parametrize("normalize", ["none", "count"])
def test_forward_and_gradients_match_brute_force(normalize):
    torch.manual_seed(0)
    p = cloud()
    conv = KPConv(4, 3, 15, radius=R, sigma=SIGMA, max_neighbors=6, normalize=normalize)
    f = torch.randn(p.shape[0], 4, requires_grad=True)
    out = conv(p, f)
    w = conv.weight.detach().clone().requires_grad_(True)
    f2 = f.detach().clone().requires_grad_(True)
    ref, nbrs = ref_kpconv(p, f2, w, conv.kernel_points, R, SIGMA, 6, normalize=normalize)
    assert out.shape == (p.shape[0], 3)
    assert max(map(len, nbrs)) == 6 and len(nbrs[0]) == 1     # truncation and the lone point exercised
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # the isolated point sees only itself through the centre kernel point: W_0^T f
    torch.testing.assert_close(out[0], f[0] @ conv.weight[0], atol=1e-6, rtol=0)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(conv.weight.grad, w.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(f.grad, f2.grad, atol=1e-5, rtol=0)


def test_separate_queries_bias_and_precomputed_neighbors():
    torch.manual_seed(1)
    p = cloud()
    q = p[::3] + 0.05
    conv = KPConv(2, 5, 15, radius=R, sigma=SIGMA, max_neighbors=None, bias=True)
    with torch.no_grad():
        conv.bias.copy_(torch.arange(5.0))
    f = torch.randn(p.shape[0], 2)
    out = conv(p, f, q)
    ref, _ = ref_kpconv(p, f, conv.weight.detach(), conv.kernel_points, R, SIGMA, None, queries=q)
    torch.testing.assert_close(out, ref + torch.arange(5.0), atol=1e-5, rtol=0)
    nb = conv.neighbors(p, q)
    torch.testing.assert_close(conv(p, f, q, neighbors=nb), out)
    with pytest.raises(ValueError):
        conv(p, f, neighbors=nb)              # computed for other queries


def test_batched_clouds_equal_separate_calls_and_translation():
    torch.manual_seed(2)
    a, b = cloud(3), cloud(4)[:50]
    conv = KPConv(3, 4, 15, radius=R, sigma=SIGMA, max_neighbors=8)
    fa, fb = torch.randn(a.shape[0], 3), torch.randn(b.shape[0], 3)
    batch = torch.cat([torch.zeros(a.shape[0]), torch.ones(b.shape[0])]).long()
    both = conv(torch.cat([a, b]), torch.cat([fa, fb]), batch=batch)   # overlapping clouds, not mixed
    torch.testing.assert_close(both, torch.cat([conv(a, fa), conv(b, fb)]), atol=1e-6, rtol=0)
    # translation moves the neighbourhoods rigidly: same output (KPConv is not rotation invariant)
    t = torch.tensor([3.25, -1.5, 0.75])
    torch.testing.assert_close(conv(a + t, fa), conv(a, fa), atol=2e-5, rtol=0)


def test_constructor_errors_and_empty_support():
    with pytest.raises(ValueError):
        KPConv(4, 3, radius=0.0)
    with pytest.raises(ValueError):
        KPConv(4, 3, radius=1.0, normalize="mean")
    conv = KPConv(4, 3, radius=1.0)
    with pytest.raises(ValueError):
        conv(torch.zeros(5, 3), torch.zeros(5, 2))
    out = conv(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(2, 3))
    assert out.shape == (2, 3) and bool((out == 0).all())
