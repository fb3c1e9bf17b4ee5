"""bevlib.ssl.cribo: pooling and positional cost against loops, queue against brute force, depth term."""
import pytest
import torch
import torch.nn.functional as F

from bevlib.ssl.cribo import ObjectQueue, joint_view_clustering, object_features, positional_cost


def test_object_features_against_loop():
    torch.manual_seed(0)
    tokens = torch.randn(10, 4, dtype=torch.float64)
    w = torch.rand(10, 3, dtype=torch.float64)
    w[:, 2] = 0
    out = object_features(tokens, w)
    for k in range(3):
        ref = sum(w[i, k] * tokens[i] for i in range(10)) / w[:, k].sum() if w[:, k].sum() > 0 else torch.zeros(4)
        torch.testing.assert_close(out[k], ref.to(out))
    hard = F.one_hot(torch.tensor([0, 1, 1, 0, 0, 1, 1, 1, 0, 0]), 3).double()
    torch.testing.assert_close(object_features(tokens, hard)[1], tokens[[1, 2, 5, 6, 7]].mean(0))


def test_positional_cost_against_loop():
    torch.manual_seed(1)
    pos = torch.randint(0, 4, (12, 2)).double()  # repeated positions exercise the zero-distance rule
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 3, 1, 0, 2])
    assign = F.one_hot(labels, 5).double()  # cluster 4 is empty
    got = positional_cost(pos, assign)
    raw = torch.full((12, 5), float("nan"), dtype=torch.float64)
    for i in range(12):
        for k in range(5):
            ds = [float((pos[i] - pos[j]).norm()) for j in range(12) if labels[j] == k and (pos[i] - pos[j]).norm() > 0]
            if ds:
                raw[i, k] = min(ds)
    fill = raw[~raw.isnan()].mean()
    raw = torch.where(raw.isnan(), fill, raw)
    torch.testing.assert_close(got, raw / raw.max())


def _grid(p):
    xs = torch.arange(p, dtype=torch.float32)
    return torch.stack([xs, torch.zeros(p)], 1)


def test_clustering_shapes_and_recovers_two_groups():
    torch.manual_seed(2)
    p, d = 16, 8
    a, b = torch.randn(d), torch.randn(d)
    feats = torch.stack([a if i < 8 else b for i in range(p)]) + 0.01 * torch.randn(p, d)
    tokens = torch.stack([feats, feats + 0.01 * torch.randn(p, d)])
    positions = torch.stack([_grid(p), _grid(p) + 0.5])
    res = joint_view_clustering(tokens, positions, 2, pos_alpha=0.2, init_indices=torch.tensor([0, 15]),
                                sk_iters=5)
    assert res.assignment.shape == (2 * p, 2) and torch.equal(res.assignment.sum(1), torch.ones(2 * p))
    expect = torch.tensor([0] * 8 + [1] * 8)
    assert torch.equal(res.labels, torch.cat([expect, expect]))
    assert res.valid.all()
    g = torch.Generator().manual_seed(0)
    r1 = joint_view_clustering(tokens, positions, 6, sk_iters=1, generator=g)
    assert r1.init_indices.unique().numel() == 6 and r1.labels.max() < 6


def test_depth_term_changes_the_assignment():
    # Two feature groups (A, B) crossed with two depths (near 5 m, far 50 m). Without the depth cost the
    # clusters follow the features; with beta=4 they follow depth, because |d_i - d_k| now costs more
    # than the feature mismatch.
    d = 4
    fa, fb = torch.eye(d)[0], torch.eye(d)[1]
    feats = torch.stack([fa, fa, fa, fa, fb, fb, fb, fb])
    depth_view = torch.tensor([5.0, 5.0, 50.0, 50.0, 5.0, 5.0, 50.0, 50.0])
    tokens = torch.stack([feats, feats])
    positions = torch.stack([_grid(8), _grid(8) + 0.5])
    depth = torch.stack([depth_view, depth_view])
    init = torch.tensor([0, 7])  # A-near and B-far: both splits are reachable from here
    kw = dict(pos_alpha=0.0, sk_iters=1, n_outer=3, init_indices=init)
    plain = joint_view_clustering(tokens, positions, 2, depth=depth, depth_beta=0.0, **kw)
    deep = joint_view_clustering(tokens, positions, 2, depth=depth, depth_beta=4.0, **kw)
    by_feature = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    by_depth = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    assert torch.equal(plain.labels, torch.cat([by_feature, by_feature]))
    assert torch.equal(deep.labels, torch.cat([by_depth, by_depth]))


def test_queue_fifo_nearest_and_state_dict():
    torch.manual_seed(3)
    q = ObjectQueue(5, 3)
    with pytest.raises(ValueError, match="empty"):
        q.nearest(torch.randn(1, 3))
    rows = torch.randn(8, 3)
    q.push(rows[:2])
    assert len(q) == 2 and torch.equal(q.items(), rows[:2])
    q.push(rows[2:4])
    q.push(rows[4:8])  # 8 pushed into 5 slots: the 3 oldest are gone
    assert len(q) == 5 and torch.equal(q.items(), rows[3:8])
    q.push(torch.randn(7, 3))  # more than size at once keeps the last 5
    big = torch.randn(7, 3)
    q.push(big)
    assert torch.equal(q.items(), big[2:])
    queries = torch.randn(6, 3)
    nb, sim, idx = q.nearest(queries)
    bank = q.items()
    for i in range(6):
        sims = [float(F.cosine_similarity(queries[i], bank[j], dim=0)) for j in range(5)]
        j = max(range(5), key=lambda t: sims[t])
        assert int(idx[i]) == j and torch.equal(nb[i], bank[j])
        assert float(sim[i]) == pytest.approx(sims[j], abs=1e-6)
    other = ObjectQueue(5, 3)
    other.load_state_dict(q.state_dict())
    assert torch.equal(other.items(), q.items()) and len(other) == 5
    other.push(torch.ones(1, 3))
    q.push(torch.ones(1, 3))
    assert torch.equal(other.items(), q.items())


def test_bad_input_raises():
    t, pos = torch.randn(2, 4, 3), torch.randn(2, 4, 2)
    with pytest.raises(ValueError, match="tokens"):
        joint_view_clustering(torch.randn(3, 4, 3), pos, 2)
    with pytest.raises(ValueError, match="n_clusters"):
        joint_view_clustering(t, pos, 9)
    with pytest.raises(ValueError, match="depth"):
        joint_view_clustering(t, pos, 2, depth_beta=1.0)
    with pytest.raises(ValueError, match="init_indices"):
        joint_view_clustering(t, pos, 2, init_indices=torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="share P"):
        object_features(torch.randn(3, 2), torch.rand(4, 2))
    with pytest.raises(ValueError, match="size"):
        ObjectQueue(0, 3)
