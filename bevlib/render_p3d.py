"""PyTorch3D backend of the BEV -> camera renderer (busch2026 Sec. III-B and IV-A).

busch2026 builds the rendering module from PyTorch3D components: the predicted BEV map
``Pred_bev`` is the texture of a ground-plane mesh of two triangles whose four corners are the
extent of the BEV query grid (z = 0 in the ego frame); the mesh is moved into each of the six
camera frames by the extrinsics and rasterised, giving ``Pred_cp``. This module is that
construction, with the same interface and conventions as the analytic backend
:func:`bevlib.render.render_bev` so the two can be swapped and compared:

* BEV rows/columns <-> ego metres as in :mod:`bevlib.bev` (row 0 = ``x_max``, column 0 = ``y_max``);
* texture sampling bilinear, ``align_corners=False``, zero padding (``grid_sample`` semantics);
* pixels in the OpenCV convention, pixel (u, v) has its centre at integer coordinates.

pytorch3d is imported lazily: the rest of bevlib works without it.
"""
from __future__ import annotations

import numpy as np
import torch

from .bev import BEVGrid

#: Near clipping depth (metres along the optical axis). The ground mesh surrounds the ego vehicle,
#: so it always crosses every camera's image plane; PyTorch3D must clip it there or the vertices
#: behind the camera project through infinity. 0.1 m keeps the clipped vertices' screen
#: coordinates small enough for float32 edge functions, and no pixel of a real camera sees the
#: ground closer than 10 cm to its lens plane.
_Z_CLIP_M = 0.1

_MISSING = "pytorch3d is not installed; see README 'PyTorch3D backend'"


def _import_pytorch3d():
    try:
        from pytorch3d.renderer import MeshRasterizer, RasterizationSettings, TexturesUV
        from pytorch3d.structures import Meshes
        from pytorch3d.utils import cameras_from_opencv_projection
    except ImportError as e:  # keep the original cause visible: a broken build also lands here
        raise ImportError(f"{_MISSING} ({e})") from e
    return Meshes, TexturesUV, MeshRasterizer, RasterizationSettings, cameras_from_opencv_projection


def pytorch3d_available() -> bool:
    """True when the pytorch3d backend can be used (pytorch3d and its compiled ops import)."""
    try:
        _import_pytorch3d()
    except ImportError:
        return False
    return True


def ground_mesh(grid: BEVGrid):
    """The textured ground plane of busch2026 Sec. III-B: two triangles spanning the BEV extent.

    The UV coordinates are chosen so that PyTorch3D's ``TexturesUV`` lookup (``gx = 2u - 1``,
    ``gy = 1 - 2v`` on a channels-last map) reproduces :meth:`BEVGrid.xy_to_normalized`:
    ``u = (y_max - y) / (y_max - y_min)`` runs along BEV columns, ``v = (x - x_min) / (x_max - x_min)``
    runs along BEV rows from the bottom (rear) edge. Since u, v are affine in (x, y) on the plane,
    perspective-correct barycentric interpolation gives them exactly at every pixel.

    Returns:
        verts: (4, 3) float32 ego metres, z = 0; corners front-left, front-right, rear-right,
            rear-left. faces: (2, 3) int64 vertex indices. verts_uvs: (4, 2) float32 in [0, 1].
    """
    g = grid
    xy = np.array([[g.x_max, g.y_max], [g.x_max, g.y_min], [g.x_min, g.y_min], [g.x_min, g.y_max]])
    verts = np.concatenate([xy, np.zeros((4, 1))], 1)
    u = (g.y_max - xy[:, 1]) / (g.y_max - g.y_min)
    v = (xy[:, 0] - g.x_min) / (g.x_max - g.x_min)
    verts_uvs = np.stack([u, v], 1)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return (torch.tensor(verts, dtype=torch.float32), torch.tensor(faces, dtype=torch.int64),
            torch.tensor(verts_uvs, dtype=torch.float32))


def render_bev_pytorch3d(pred_bev: torch.Tensor, K, ego_T_cam, image_hw: tuple[int, int], grid: BEVGrid):
    """Render BEV maps into the cameras of a rig with PyTorch3D (busch2026 Sec. III-B / IV-A).

    Same contract as :func:`bevlib.render.render_bev` (``backend="pytorch3d"`` dispatches here).
    The mesh is rasterised with ``faces_per_pixel=1``, ``blur_radius=0`` and perspective-correct
    barycentrics; the texture is sampled at the rasterised UVs with no lighting or shading.

    Args:
        pred_bev: (B, C, H, W) float BEV map (logits or probabilities, any C >= 1) in the ego frame,
            rows/columns as documented in :mod:`bevlib.bev`.
        K: (B, N, 3, 3) intrinsics in pixels for images of size ``image_hw`` (OpenCV, pixel centres
            at integer coordinates), numpy or torch.
        ego_T_cam: (B, N, 4, 4) camera -> ego rigid transforms (metres), numpy or torch.
        image_hw: (h, w) pixels of the rendered images.
        grid: the metric extent of ``pred_bev`` (its H, W need not match the tensor's).
    Returns:
        pred_cp: (B, N, C, h, w), dtype/device of ``pred_bev``: bilinear samples of the BEV map
            (``align_corners=False``, zero padding) where the pixel's ray meets the ground; 0 at
            invalid pixels. Differentiable w.r.t. ``pred_bev`` (computed in float32).
        valid: (B, N, h, w) bool, pixels covered by the ground mesh (``pix_to_face >= 0``) of a
            camera above the ground. Agrees with the analytic backend except within about one
            pixel of the mesh outline, where the two decide "pixel centre inside" with different
            arithmetic.
    Raises:
        ImportError: pytorch3d is not installed ("see README 'PyTorch3D backend'").
        ValueError: mismatched shapes.
    """
    Meshes, TexturesUV, MeshRasterizer, RasterizationSettings, cameras_from_opencv = _import_pytorch3d()
    if pred_bev.dim() != 4:
        raise ValueError(f"pred_bev must be (B, C, H, W), got shape {tuple(pred_bev.shape)}")
    B, C = pred_bev.shape[:2]
    dev = pred_bev.device
    K = torch.as_tensor(np.asarray(K.detach().cpu() if isinstance(K, torch.Tensor) else K, np.float64))
    T = torch.as_tensor(np.asarray(ego_T_cam.detach().cpu() if isinstance(ego_T_cam, torch.Tensor)
                                   else ego_T_cam, np.float64))
    if K.shape[-2:] != (3, 3) or T.shape[-2:] != (4, 4) or K.dim() != 4 or T.dim() != 4 \
            or K.shape[0] != B or T.shape[0] != B or K.shape[1] != T.shape[1]:
        raise ValueError(f"K {tuple(K.shape)} and ego_T_cam {tuple(T.shape)} must be (B={B}, N, 3, 3) / (B, N, 4, 4)")
    N = K.shape[1]
    h, w = int(image_hw[0]), int(image_hw[1])
    BN = B * N

    # Camera extrinsics in OpenCV form (x_cam = R x_ego + t), computed in float64 before the cast.
    K = K.reshape(BN, 3, 3)
    T = T.reshape(BN, 4, 4)
    R_ct = T[:, :3, :3].transpose(1, 2)
    t_ct = -(R_ct @ T[:, :3, 3:])[..., 0]
    # cameras_from_opencv_projection maps the OpenCV principal point c to NDC via (c - W/2), i.e.
    # it takes pixel *corners* at integers (pixel i centred at i + 0.5). Our K has centres at
    # integers, so shift c by +0.5 to sample PyTorch3D pixel i exactly at OpenCV coordinate i.
    K_p3d = K.clone()
    K_p3d[:, 0, 2] += 0.5
    K_p3d[:, 1, 2] += 0.5
    f32 = dict(dtype=torch.float32, device=dev)
    cameras = cameras_from_opencv(R_ct.to(**f32), t_ct.to(**f32), K_p3d.to(**f32),
                                  torch.tensor([[h, w]], **f32).expand(BN, 2))

    verts, faces, verts_uvs = ground_mesh(grid)
    # One mesh per (sample, camera): the texture of sample b is shared by its N cameras.
    maps = pred_bev.to(torch.float32).permute(0, 2, 3, 1).repeat_interleave(N, dim=0)  # (BN, H, W, C)
    textures = TexturesUV(maps=maps, faces_uvs=faces.to(dev).expand(BN, 2, 3),
                          verts_uvs=verts_uvs.to(dev).expand(BN, 4, 2),
                          padding_mode="zeros", align_corners=False, sampling_mode="bilinear")
    meshes = Meshes(verts=verts.to(dev).expand(BN, 4, 3), faces=faces.to(dev).expand(BN, 2, 3),
                    textures=textures)

    settings = RasterizationSettings(image_size=(h, w), faces_per_pixel=1, blur_radius=0.0,
                                     perspective_correct=True, z_clip_value=_Z_CLIP_M,
                                     cull_backfaces=False, bin_size=0 if dev.type == "cpu" else None)
    fragments = MeshRasterizer(cameras=cameras, raster_settings=settings)(meshes)
    texels = meshes.sample_textures(fragments)[:, :, :, 0, :]            # (BN, h, w, C)

    # A camera below the ground would see the mesh from underneath; the analytic backend calls
    # those pixels invalid (rays must point down onto the ground), so match it.
    above = (T[:, 2, 3] > 0).to(dev)
    valid = (fragments.pix_to_face[..., 0] >= 0) & above[:, None, None]
    # Background pixels sample the texture at uv = (0, 0) (interpolated from no face): zero them.
    pred_cp = texels * valid[..., None].to(texels.dtype)
    pred_cp = pred_cp.permute(0, 3, 1, 2).reshape(B, N, C, h, w).to(pred_bev.dtype)
    return pred_cp, valid.reshape(B, N, h, w)
