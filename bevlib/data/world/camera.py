"""Camera models and the camera ray-caster: one RGB image, perfect semantic mask and depth map per
camera and keyframe (the ground is a flat textured raster, boxes are shaded cuboids, sky above)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from bevlib.geometry import invert, scale_intrinsics, transform_from

from .config import RIG_IMAGE_WH, WORLD_LOOKS, WorldConfig, WorldLook, _SEM, _rng, _write, camera_rig
from .raycast import _NEAR, _rotate, _Scenery, _slab
from .roads import (_M_ARROW, _M_CROSSWALK, _M_CURB, _M_CW_GAP, _M_LANE_WHITE, _M_LANE_YELLOW, _M_SIDEWALK,
                    _M_STOP, _M_TERRAIN, _M_ASPHALT, _MAT_RGB, _MAT_SEM, _MAT_TEX)
from .scenery import (_BOX_EDGES, _S_BARRIER, _S_BUILDING, _S_CANOPY, _S_CONE, _S_CYCLE, _S_PEDESTRIAN,
                      _S_TRUNK, _S_VEHICLE, _Boxes)

_FAR_GROUND = 300.0           # horizontal range beyond which the ground is drawn as sky

#: Unit vector towards the sun (world frame) for Lambert shading of box faces.
_SUN = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])

#: Ground materials each WorldLook.ground_rgb group recolours.
_GROUND_GROUPS = {"terrain": (_M_TERRAIN,), "sidewalk": (_M_SIDEWALK,), "curb": (_M_CURB,),
                  "asphalt": (_M_ASPHALT, _M_CW_GAP), "paint_white": (_M_LANE_WHITE, _M_CROSSWALK, _M_STOP, _M_ARROW),
                  "paint_yellow": (_M_LANE_YELLOW,)}
#: Box styles each WorldLook.box_grade group regrades.
_BOX_GROUPS = {"vehicle": (_S_VEHICLE, _S_CYCLE), "human": (_S_PEDESTRIAN,), "building": (_S_BUILDING,),
               "vegetation": (_S_TRUNK, _S_CANOPY), "movable": (_S_CONE, _S_BARRIER)}


@dataclass(frozen=True)
class _Look:
    """A :class:`WorldLook` as the arrays the renderer needs (float32 RGB rows)."""
    spec: WorldLook
    mat_rgb: np.ndarray           # (n_materials, 3)
    grade: dict                   # box style -> (saturation, (3, 1) gain)
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    haze: np.ndarray
    gain: np.ndarray              # (3,) colour_gain

    @property
    def post(self) -> bool:
        """Whether the tone curve (contrast / colour gain) is not the identity."""
        return self.spec.contrast != 1.0 or bool((self.gain != 1.0).any())


def _compile_look(name: str) -> _Look:
    spec = WORLD_LOOKS[name]
    mat_rgb = _MAT_RGB.copy()
    for group, rgb in spec.ground_rgb:
        mat_rgb[list(_GROUND_GROUPS[group])] = rgb
    grade = {style: (float(sat), np.asarray(gain, np.float32)[:, None])
             for group, (sat, gain) in spec.box_grade for style in _BOX_GROUPS[group]}
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
    return _Look(spec, mat_rgb, grade, f32(spec.sky_top), f32(spec.sky_horizon), f32(spec.haze), f32(spec.colour_gain))


def _noise_tile(rng, n: int = 256, sigma: float = 1.5) -> np.ndarray:
    """Periodic smooth noise (n, n) float32 with unit std (Fourier filtering keeps it tileable)."""
    f = np.fft.fftfreq(n)
    g = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    tile = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * g))
    return ((tile - tile.mean()) / tile.std()).astype(np.float32)


def _box_colours(b: _Boxes, k: int, p, face) -> np.ndarray:
    """Shaded colours (3, n) float32 of hit points ``p`` (3 arrays, box-local coordinates from the
    box centre, metres) on the faces ``face`` (0: +-x, 1: +-y, 2: top/bottom) of box ``k``.

    Each style paints a few parts (windows, wheels, clothes, ...) picked by position on the box;
    ``part`` indexes a small per-box palette whose entry 0 is the box's own colour."""
    half_h = 0.5 * (b.z1[k] - b.z0[k])
    f = (p[2] + half_h) / (2 * half_h)            # height fraction 0 (bottom) .. 1 (top)
    part = np.zeros(len(f), np.int8)
    side = face != 2
    style = int(b.style[k])
    palette = [tuple(b.rgb[k])]
    if style == _S_VEHICLE:
        palette += [(46, 56, 68), (28, 28, 30)]
        part[side & (f > 0.58) & (f < 0.92)] = 1
        part[f < 0.17] = 2
    elif style == _S_PEDESTRIAN:
        palette += [(40, 42, 58), (196, 160, 130)]
        part[f < 0.47] = 1
        part[f > 0.86] = 2
    elif style == _S_CYCLE:
        palette += [(38, 38, 40)]
        part[f < 0.5] = 1
    elif style == _S_CONE:
        palette += [(236, 236, 236), (30, 30, 30)]
        part[(f > 0.5) & (f < 0.65)] = 1
        part[f < 0.08] = 2
    elif style == _S_BARRIER:
        palette += [(205, 40, 40), (120, 120, 120)]
        part[(np.floor(p[0] / 0.45) % 2 == 0)] = 1
        part[f < 0.2] = 2
    elif style == _S_BUILDING:
        palette += [(58, 72, 90), (104, 104, 108)]
        u = (np.where(face == 1, p[0], p[1]) / 3.2) % 1.0
        z = p[2] + half_h + b.z0[k]
        zf = (z / 3.3) % 1.0
        part[side & (u > 0.25) & (u < 0.75) & (zf > 0.3) & (zf < 0.8) & (z > 2.2)] = 1
        part[~side] = 2
    # Lambert shading with the face normal rotated into the world: n = sign * (box axis of the face).
    sgn = np.sign(np.choose(face, p))
    c, s = math.cos(b.yaw[k]), math.sin(b.yaw[k])
    axis_dot_sun = np.array([c * _SUN[0] + s * _SUN[1], -s * _SUN[0] + c * _SUN[1], _SUN[2]], np.float32)
    shade = (0.5 + 0.5 * np.clip(sgn * axis_dot_sun[face], 0.0, 1.0)).astype(np.float32)
    if style == _S_CANOPY:   # leafy clumps
        cell = np.floor(p[0] / 0.35) * 7.0 + np.floor(p[1] / 0.35) * 13.0 + np.floor(p[2] / 0.35) * 17.0
        shade *= (0.75 + 0.25 * (np.sin(cell) + 1.0)).astype(np.float32)
    return np.asarray(palette, np.float32).T[:, part] * shade


@dataclass
class _Camera:
    channel: str
    ego_T_cam: np.ndarray
    K_out: np.ndarray             # intrinsics at image_wh (written to calibrated_sensor)
    K: np.ndarray                 # intrinsics at the render resolution
    render_wh: tuple
    out_wh: tuple
    rx: np.ndarray                # (H, W) float32 ray x/z in the camera frame
    ry: np.ndarray
    look: _Look
    rig: dict                     # camera_rig(channel, look, rig): what calibrated_sensor records


def _make_camera(channel: str, cfg: WorldConfig) -> _Camera:
    rig = camera_rig(channel, cfg.look, cfg.rig)
    K_full = np.array(rig["camera_intrinsic"], np.float64)
    render_wh = (max(16, round(cfg.image_wh[0] * cfg.render_scale)), max(16, round(cfg.image_wh[1] * cfg.render_scale)))
    K = scale_intrinsics(K_full, RIG_IMAGE_WH, render_wh)
    u, v = np.meshgrid(np.arange(render_wh[0], dtype=np.float64), np.arange(render_wh[1], dtype=np.float64))
    Kinv = np.linalg.inv(K)
    rx = (Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2]).astype(np.float32)
    ry = (Kinv[1, 1] * v + Kinv[1, 2]).astype(np.float32)
    out_wh = tuple(cfg.image_wh)
    return _Camera(channel, transform_from(rig["translation"], rig["rotation"]),
                   scale_intrinsics(K_full, RIG_IMAGE_WH, out_wh), K, render_wh, out_wh, rx, ry,
                   _compile_look(cfg.look), rig)


def _screen_boxes(cam: _Camera, cam_T_global: np.ndarray, b: _Boxes) -> np.ndarray:
    """(N, 4) int pixel windows [c0, c1, r0, r1) containing each box's image, exact for the part in
    front of the near plane (box edges are clipped against it); empty windows have c0 >= c1."""
    P = b.corners() @ cam_T_global[:3, :3].T + cam_T_global[:3, 3]
    A, B = P[:, _BOX_EDGES[:, 0]], P[:, _BOX_EDGES[:, 1]]
    za, zb = A[..., 2], B[..., 2]
    crosses = (za > _NEAR) != (zb > _NEAR)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(crosses, (_NEAR - za) / (zb - za), 0.0)
    X = A + t[..., None] * (B - A)
    pts = np.concatenate([P, X], 1)
    valid = np.concatenate([P[..., 2] > _NEAR, crosses], 1)
    z = np.where(valid, pts[..., 2], 1.0)
    u = cam.K[0, 0] * pts[..., 0] / z + cam.K[0, 1] * pts[..., 1] / z + cam.K[0, 2]
    v = cam.K[1, 1] * pts[..., 1] / z + cam.K[1, 2]
    W, H = cam.render_wh
    inf = np.inf
    c0 = np.floor(np.where(valid, u, inf).min(1)) - 1
    c1 = np.ceil(np.where(valid, u, -inf).max(1)) + 2
    r0 = np.floor(np.where(valid, v, inf).min(1)) - 1
    r1 = np.ceil(np.where(valid, v, -inf).max(1)) + 2
    win = np.stack([np.clip(c0, 0, W), np.clip(c1, 0, W), np.clip(r0, 0, H), np.clip(r1, 0, H)], 1)
    win[~valid.any(1)] = 0
    return win.astype(np.int64)


def _render_camera(cam: _Camera, global_T_ego: np.ndarray, scenery: _Scenery, boxes: _Boxes, rng=None):
    """Ray-cast one image. Returns rgb (H, W, 3) uint8, semantics (H, W) uint8, depth (H, W) float32
    metres along the optical axis (0 = sky), and per box the pixels its surface covers before and
    after occlusion (two (N,) int arrays), all at the render resolution. ``rng`` (a
    numpy Generator) draws the sensor noise of looks with ``noise_sigma`` > 0 and is required then."""
    look = cam.look
    global_T_cam = global_T_ego @ cam.ego_T_cam
    R, o = global_T_cam[:3, :3], global_T_cam[:3, 3]
    ox, oy, oz = (float(v) for v in o)
    # Rays have camera-frame z = 1, so the ray parameter equals depth along the optical axis.
    dx, dy, dz = _rotate(R, cam.rx, cam.ry, 1.0)
    with np.errstate(divide="ignore"):
        t_ground = np.where(dz < -1e-6, -oz / dz, np.inf).astype(np.float32)
    t_ground[t_ground * np.hypot(dx, dy) > _FAR_GROUND] = np.inf
    gx, gy = ox + t_ground * dx, oy + t_ground * dy
    H, W = dx.shape
    depth = t_ground.copy()
    ids = np.full((H, W), -1, np.int32)
    rgb = np.zeros((3, H, W), np.float32)
    shadow = np.zeros((H, W), bool)

    cam_T_global = invert(global_T_cam)
    win = _screen_boxes(cam, cam_T_global, boxes)
    order = np.argsort(np.hypot(boxes.cx - ox, boxes.cy - oy), kind="stable")
    hits = np.zeros(len(boxes), np.int64)
    for k in order:
        c0, c1, r0, r1 = win[k]
        if c0 >= c1 or r0 >= r1:
            continue
        sl = (slice(r0, r1), slice(c0, c1))
        t_near, hit, lo, ld, half = _slab(ox, oy, oz, dx[sl], dy[sl], dz[sl], boxes, k)
        hits[k] = int(hit.sum())
        if boxes.style[k] <= _S_BARRIER:  # contact shadow of traffic participants on the ground
            c, s = math.cos(boxes.yaw[k]), math.sin(boxes.yaw[k])
            px, py = gx[sl] - boxes.cx[k], gy[sl] - boxes.cy[k]
            under = (np.abs(c * px + s * py) < half[0] + 0.25) & (np.abs(-s * px + c * py) < half[1] + 0.25)
            shadow[sl] |= under
        closer = hit & (t_near < depth[sl])
        if not closer.any():
            continue
        t = t_near[closer]
        p = [lo[a] + t * ld[a][closer] for a in range(3)]
        ax, ay, az = (np.abs(p[a]) / half[a] for a in range(3))
        face = np.where((ax >= ay) & (ax >= az), 0, np.where(ay >= az, 1, 2))
        depth[sl][closer] = t
        ids[sl][closer] = k
        col = _box_colours(boxes, k, p, face)
        grade = look.grade.get(int(boxes.style[k]))
        if grade is not None:   # desaturate towards Rec. 601 luma, then tint
            luma = np.float32(0.299) * col[0] + np.float32(0.587) * col[1] + np.float32(0.114) * col[2]
            col = (luma + np.float32(grade[0]) * (col - luma)) * grade[1]
        rgb[:, sl[0], sl[1]][:, closer] = col

    wins = np.bincount(ids[ids >= 0], minlength=len(boxes))
    # Composition runs densely over the whole image, channel by channel: cheaper than boolean
    # gathers/scatters and than (H, W, 3) arrays, whose innermost loops are only 3 long.
    box_hit = ids >= 0
    is_ground = ~box_hit & np.isfinite(t_ground)
    is_sky = ~box_hit & ~is_ground
    gx = np.where(is_ground, gx, 0.0)
    gy = np.where(is_ground, gy, 0.0)
    mat = scenery.ground.lookup(gx, gy)
    sem = np.where(box_hit, boxes.sem[np.maximum(ids, 0)], np.where(is_ground, _MAT_SEM[mat], _SEM["sky"]))
    sem = sem.astype(np.uint8)
    fine = scenery.fine[np.floor(gy * 20.0).astype(np.int32) & 255, np.floor(gx * 20.0).astype(np.int32) & 255]
    coarse = scenery.coarse[np.floor(gy * 1.25).astype(np.int32) & 255, np.floor(gx * 1.25).astype(np.int32) & 255]
    tex = (1.0 + _MAT_TEX[mat] * fine + 0.05 * coarse) * np.where(shadow, np.float32(0.55), np.float32(1.0))
    horizon = np.clip(dz / np.sqrt(dx * dx + dy * dy + dz * dz) * 3.0, 0.0, 1.0)
    fog = np.where(is_sky, np.float32(0.0),
                   (1.0 - np.exp(-depth / np.float32(look.spec.fog_distance))) * np.float32(look.spec.fog_max))
    for c in range(3):
        solid = np.where(box_hit, rgb[c], look.mat_rgb[:, c][mat] * tex)
        sky = look.sky_horizon[c] + (look.sky_top[c] - look.sky_horizon[c]) * horizon
        rgb[c] = np.where(is_sky, sky, solid * (1.0 - fog) + look.haze[c] * fog)
        if look.post:   # fixed pivot, not the image mean, so the response is the same in every image
            rgb[c] = (np.float32(128.0) + np.float32(look.spec.contrast) * (rgb[c] - np.float32(128.0))) * look.gain[c]
    depth[is_sky] = 0.0
    # A light blur stands in for lens softness and hides some aliasing of the single-sample cast.
    rgb = cv2.GaussianBlur(cv2.merge([np.clip(rgb[c], 0, 255).round().astype(np.uint8) for c in range(3)]), (3, 3), 0.6)
    if look.spec.noise_sigma > 0:   # sensor noise comes after the optics
        if rng is None:
            raise ValueError(f"rng is required: look {look.spec.description!r} has sensor noise")
        noise = rng.standard_normal(rgb.shape, dtype=np.float32) * np.float32(look.spec.noise_sigma)
        rgb = np.clip(rgb.astype(np.float32) + noise, 0, 255).round().astype(np.uint8)
    return rgb, sem, depth, hits, wins


def _camera_job(cam: _Camera, global_T_ego, scenery: _Scenery, boxes: _Boxes, files: dict, jpeg_quality: int,
                seed_parts: tuple = ()):
    """Render one image and write JPEG + semantic PNG + depth PNG; returns (hits, wins) per box.
    ``seed_parts`` names the image's own noise stream (``_rng(*seed_parts)``), so noise does not
    depend on thread scheduling."""
    rng = _rng(*seed_parts) if cam.look.spec.noise_sigma > 0 else None
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        rgb, sem, depth, hits, wins = _render_camera(cam, global_T_ego, scenery, boxes, rng)
    if cam.render_wh != cam.out_wh:
        rgb = cv2.resize(rgb, cam.out_wh, interpolation=cv2.INTER_LINEAR)
        sem = cv2.resize(sem, cam.out_wh, interpolation=cv2.INTER_NEAREST)
        depth = cv2.resize(depth, cam.out_wh, interpolation=cv2.INTER_NEAREST)
    depth_cm = np.clip(np.round(depth * 100.0), 0, 65535).astype(np.uint16)
    _write(files["jpg"], cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1])
    _write(files["sem"], cv2.imencode(".png", sem)[1])
    _write(files["depth"], cv2.imencode(".png", depth_cm)[1])
    return hits, wins
