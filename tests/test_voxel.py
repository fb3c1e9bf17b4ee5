import numpy as np
import pytest
import torch

from bevlib.bev import BEVGrid
from bevlib.voxel import VoxelGrid

G = VoxelGrid(x_min=-10, x_max=14, y_min=-6, y_max=4, z_min=-1, z_max=2, Z=3, H=6, W=5)  # 4 m x 2 m x 1 m


def random_points(rng, n, g=G, margin=2.0):
    lo = np.array([g.x_min, g.y_min, g.z_min]) - margin
    hi = np.array([g.x_max, g.y_max, g.z_max]) + margin
    return rng.uniform(lo, hi, size=(n, 3))


def test_transforms_are_inverse_and_shapes():
    assert G.shape == (3, 6, 5) and G.voxel_size == (4.0, 2.0, 1.0)
    np.testing.assert_allclose(G.mem_T_ego @ G.ego_T_mem, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(np.linalg.inv(G.mem_T_ego), G.ego_T_mem, atol=1e-12)
    p = random_points(np.random.default_rng(0), 100)
    np.testing.assert_allclose(G.mem_to_ego(G.ego_to_mem(p)), p, atol=1e-12)
    pt = torch.from_numpy(p).float().requires_grad_()
    m = G.ego_to_mem(pt)
    assert m.dtype == torch.float32
    np.testing.assert_allclose(m.detach().numpy(), G.ego_to_mem(p), atol=1e-4)
    m.sum().backward()   # differentiable: d(k + i + j)/d(x, y, z) = (-1/dx, -1/dy, 1/dz)
    np.testing.assert_allclose(pt.grad[0].numpy(), [-0.25, -0.5, 1.0])
    torch.testing.assert_close(G.mem_to_ego(G.ego_to_mem(pt.detach())), pt.detach(), atol=1e-5, rtol=0)


def test_centres_map_to_integer_indices():
    c = G.voxel_centers()
    assert c.shape == (3, 6, 5, 3)
    idx = np.stack(np.meshgrid(np.arange(3), np.arange(6), np.arange(5), indexing="ij"), -1)
    np.testing.assert_allclose(G.ego_to_mem(c), idx, atol=1e-12)
    np.testing.assert_allclose(c[0, 0, 0], [14 - 2, 4 - 1, -1 + 0.5])      # front-left-bottom voxel
    np.testing.assert_allclose(c[-1, -1, -1], [-10 + 2, -6 + 1, 2 - 0.5])  # rear-right-top voxel
    vi, valid = G.points_to_voxels(c.reshape(-1, 3))
    assert valid.all()
    np.testing.assert_array_equal(vi, idx.reshape(-1, 3))
    np.testing.assert_array_equal(G.flat_index(vi), np.arange(3 * 6 * 5))
    np.testing.assert_array_equal(G.flat_index(vi), np.ravel_multi_index(tuple(idx.reshape(-1, 3).T), G.shape))


def test_bev_plane_agrees_with_bev_grid():
    bev = G.bev_grid()
    assert bev == BEVGrid(-10, 14, -6, 4, 6, 5)
    assert VoxelGrid.from_bev(bev, -1, 2, 3) == G
    np.testing.assert_allclose(G.voxel_centers()[1, ..., :2], bev.cell_centers(), atol=1e-12)
    p = random_points(np.random.default_rng(1), 300)
    np.testing.assert_allclose(G.ego_to_mem(p)[:, 1:], bev.xy_to_rowcol(p[:, :2]), atol=1e-12)
    # the default voxel grid sits on busch2026's default BEV grid
    assert VoxelGrid().bev_grid() == BEVGrid()
    # a voxel tensor summed over Z is the BEV map: occupancy of random points
    vi, valid = G.points_to_voxels(p)
    vox = np.zeros(G.shape, int)
    np.add.at(vox, tuple(vi[valid].T), 1)
    rc = np.floor(bev.xy_to_rowcol(p[:, :2]) + 0.5).astype(int)
    inz = (p[:, 2] >= G.z_min) & (p[:, 2] < G.z_max)
    ok = inz & (rc[:, 0] >= 0) & (rc[:, 0] < bev.H) & (rc[:, 1] >= 0) & (rc[:, 1] < bev.W)
    occ = np.zeros((bev.H, bev.W), int)
    np.add.at(occ, tuple(rc[ok].T), 1)
    np.testing.assert_array_equal(vox.sum(0), occ)


def brute_voxelise(p, g):
    """For every point, test every voxel's bounds (module docstring) one by one."""
    dx, dy, dz = g.voxel_size
    idx = np.zeros((len(p), 3), np.int64)
    valid = np.zeros(len(p), bool)
    for n, (x, y, z) in enumerate(p):
        for k in range(g.Z):
            for i in range(g.H):
                for j in range(g.W):
                    if (g.z_min + k * dz <= z < g.z_min + (k + 1) * dz
                            and g.x_max - (i + 1) * dx < x <= g.x_max - i * dx
                            and g.y_max - (j + 1) * dy < y <= g.y_max - j * dy):
                        idx[n] = (k, i, j)
                        valid[n] = True
    return idx, valid


@pytest.mark.parametrize("use_torch", [False, True])
def test_points_to_voxels_against_brute_force(use_torch):
    rng = np.random.default_rng(2)
    p = random_points(rng, 400, margin=1.0)
    p[:3] = [np.nan, 0, 0], [np.inf, 0, 0], [0, 0, -np.inf]
    ref_idx, ref_valid = brute_voxelise(p, G)
    assert 0.3 < ref_valid.mean() < 0.9
    if use_torch:
        idx, valid = G.points_to_voxels(torch.from_numpy(p))
        assert idx.dtype == torch.int64 and valid.dtype == torch.bool
        idx, valid = idx.numpy(), valid.numpy()
    else:
        idx, valid = G.points_to_voxels(p)
        assert idx.dtype == np.int64
    np.testing.assert_array_equal(valid, ref_valid)
    np.testing.assert_array_equal(idx[valid], ref_idx[valid])
    # invalid points still index inside the grid (clipped), so a gather never goes out of bounds
    assert (idx >= 0).all() and (idx < np.array(G.shape)).all()


def test_from_voxel_size():
    g = VoxelGrid.from_voxel_size((-51.2, 51.2), (-51.2, 51.2), (-5, 3), (0.8, 0.8, 8.0))
    assert g.shape == (1, 128, 128)
    np.testing.assert_allclose(g.voxel_size, (0.8, 0.8, 8.0))
    assert VoxelGrid(**g.as_dict()) == g
    with pytest.raises(ValueError, match="whole number"):
        VoxelGrid.from_voxel_size((0, 1), (0, 1), (0, 1), (0.3, 0.5, 0.5))
    with pytest.raises(ValueError, match="empty"):
        VoxelGrid(z_min=1, z_max=1)


def test_x_forward_index_conversion_from_docstring():
    """ix = H-1-i, iy = W-1-j, iz = k: ix counts voxels along +x from x_min (LSS-style)."""
    H, W = G.H, G.W
    T_flip = np.array([[1, 0, 0, 0], [0, -1, 0, H - 1], [0, 0, -1, W - 1], [0, 0, 0, 1]], float)
    p = random_points(np.random.default_rng(3), 50)
    dx, dy, dz = G.voxel_size
    m = (p @ (T_flip @ G.mem_T_ego)[:3, :3].T) + (T_flip @ G.mem_T_ego)[:3, 3]
    np.testing.assert_allclose(m[:, 1], (p[:, 0] - G.x_min) / dx - 0.5, atol=1e-12)
    np.testing.assert_allclose(m[:, 2], (p[:, 1] - G.y_min) / dy - 0.5, atol=1e-12)
    np.testing.assert_allclose(m[:, 0], (p[:, 2] - G.z_min) / dz - 0.5, atol=1e-12)
