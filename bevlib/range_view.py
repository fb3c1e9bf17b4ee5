"""Range-view projection of a LiDAR sweep (RangeViT / MultiViT input).

lukkassen2024 (MultiViT) Sec. 3.2.1, after RangeViT (Ando et al., CVPR 2023) and Kong et al.
(ICCV 2023): each point p_n = (x, y, z) of a sweep is rasterised into an H x W cylindrical image,

    u_n = 1/2 [1 - atan2(y, x) / pi] W
    v_n = [1 - (arcsin(z / d) + |phi_down|) / xi] H,     d = sqrt(x^2 + y^2 + z^2),
    xi = |phi_up| + |phi_down|,

and the pixel holds (range d, intensity, x, y, z). The paper uses H x W = 32 x 2048 on nuScenes'
HDL-32E (phi_up = 10.67 deg, phi_down = -30.67 deg), the defaults of :class:`RangeProjection`.

Only one point can own a pixel; as in RangeViT (which writes points sorted by decreasing depth, so
the nearest is written last) the **nearest point wins**. This module makes that rule exact and
deterministic: "nearest" compares the stored float32 range, and among points of equal float32
range the one with the **lowest index** in the input wins. :func:`_reference_project` is the
straightforward sort-and-assign implementation of the same rule, kept (clearly private) as the
reference that tests and ``python -m bevlib.bench range`` compare :func:`project_to_range` against.

Rows from the ring index: the nuScenes HDL-32E stores each point's laser index (``ring``, the 5th
column of a ``.pcd.bin``, :attr:`bevlib.data.lidar.LidarSweep.ring`). On the real v1.0-mini
keyframe ring 0 is the *lowest* beam (median elevation -30.6 deg) and ring 31 the highest
(+10.6 deg), one beam per ring; the embedded world (:mod:`bevlib.data.world.lidar`) numbers its
beams the same way (ring k at elevation ``linspace(-30.67, 10.67, 32)[k]``). Image row 0 is the
top of the image (the highest beam, as the elevation formula gives), so ``v = H - 1 - ring``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

#: Channels of :attr:`RangeImage.image`, in order.
CHANNELS = ("range", "intensity", "x", "y", "z")


@dataclass(frozen=True)
class RangeProjection:
    """Geometry of the range image (lukkassen2024 Sec. 3.2.1; defaults: nuScenes HDL-32E, 32 x 2048).

    Attributes:
        H: rows (one per beam in ``row="ring"`` mode: the sensor's beam count, 32 for the HDL-32E).
        W: columns over 360 deg of azimuth (2048 in RangeViT / MultiViT).
        fov_up_deg: phi_up, elevation of the top of the image, degrees (HDL-32E: +10.67).
        fov_down_deg: phi_down, elevation of the bottom of the image, degrees (HDL-32E: -30.67).
        row: ``"ring"`` (default) takes the row from the ring (laser) index where one is given,
            ``v = H - 1 - ring``; ``"elevation"`` always uses the paper's arcsin formula.
            Why ring is the default: the beams' elevations do not fall one per row of the
            formula's quantisation (and a point's measured elevation wanders with noise and with
            its distance from the beam's optical centre), so the formula puts two beams into one
            row (a collision: the farther point is lost) and leaves row segments empty; the ring
            index is the beam itself, so every beam keeps its own row. On the real v1.0-mini
            keyframe 84.9 % of the points keep their pixel with ring rows, 81.5 % with elevation.
            Without a ring (``ring=None``) ``"ring"`` falls back to the elevation formula.

    Raises: ValueError for a non-positive H / W, fov_up <= fov_down, or an unknown ``row``.
    """

    H: int = 32
    W: int = 2048
    fov_up_deg: float = 10.67
    fov_down_deg: float = -30.67
    row: Literal["ring", "elevation"] = "ring"

    def __post_init__(self):
        if not (int(self.H) == self.H and self.H > 0 and int(self.W) == self.W and self.W > 0):
            raise ValueError(f"H and W must be positive integers, got H={self.H!r}, W={self.W!r}")
        if not self.fov_up_deg > self.fov_down_deg:
            raise ValueError(f"fov_up_deg ({self.fov_up_deg}) must be above fov_down_deg ({self.fov_down_deg})")
        if self.row not in ("ring", "elevation"):
            raise ValueError(f"row must be 'ring' or 'elevation', got {self.row!r}")


@dataclass(frozen=True)
class RangeImage:
    """A projected sweep (see :func:`project_to_range`).

    Attributes:
        image: (5, H, W) float32, channels :data:`CHANNELS`: range (metres), intensity (as given),
            x, y, z (metres, the input's frame) of the pixel's owner; 0 in empty pixels.
        mask: (H, W) bool, True where a point owns the pixel.
        owner: (H, W) int64 index (into the input points) of the pixel's owner, -1 where empty.
        u: (N,) int64 column of every point, 0..W-1 (for back-projection of per-pixel outputs).
        v: (N,) int64 row of every point, 0..H-1 (row 0 is the top: the highest elevation).
        kept: (N,) bool, True where the point owns its pixel (``owner[v, u] == arange(N)``).
        row: the row mode actually used, ``"ring"`` or ``"elevation"``.
    """

    image: np.ndarray
    mask: np.ndarray
    owner: np.ndarray
    u: np.ndarray
    v: np.ndarray
    kept: np.ndarray
    row: str


def _validate(points, ring, cfg: RangeProjection):
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 4:
        raise ValueError(f"points must be (N, >=4) [x, y, z, intensity], got shape {pts.shape}")
    if len(pts) >= 2 ** 31:
        raise ValueError(f"at most 2**31 - 1 points, got {len(pts)}")
    if not np.isfinite(pts[:, :4]).all():
        raise ValueError("points hold NaN or infinite x, y, z or intensity")
    use_ring = ring is not None and cfg.row == "ring"
    if use_ring:
        ring = np.asarray(ring)
        if ring.shape != (len(pts),):
            raise ValueError(f"ring must be ({len(pts)},), one per point, got shape {ring.shape}")
        if len(ring) and (not np.array_equal(ring, np.round(ring)) or ring.min() < 0 or ring.max() >= cfg.H):
            raise ValueError(f"ring must hold integer laser indices in 0..{cfg.H - 1} (H = {cfg.H} rows), "
                             f"got values in {ring.min()}..{ring.max()}")
    return pts, (ring if use_ring else None)


def _pixels(pts: np.ndarray, ring, cfg: RangeProjection):
    """(u, v) int64 and range float32 of every point: the paper's formula, float64 arithmetic."""
    # Contiguous float64 columns: strided ones make every ufunc below markedly slower.
    x, y, z = (pts[:, k].astype(np.float64) for k in range(3))
    d = np.sqrt(x * x + y * y + z * z)
    u = np.floor(0.5 * (1.0 - np.arctan2(y, x) / np.pi) * cfg.W)
    # atan2 = -pi gives u = W exactly: the same azimuth as u = 0's edge, clipped into the last column.
    u = np.clip(u, 0, cfg.W - 1).astype(np.int64)
    if ring is not None:
        v = (cfg.H - 1) - ring.astype(np.int64)
    else:
        up, down = np.radians(cfg.fov_up_deg), np.radians(cfg.fov_down_deg)
        # A point at the origin has no elevation; 0 rad (the horizon) keeps it finite.
        pitch = np.arcsin(np.divide(z, d, out=np.zeros_like(d), where=d > 0))
        v = np.floor((1.0 - (pitch + abs(down)) / (abs(up) + abs(down))) * cfg.H)
        # Points outside the vertical field of view go to the top / bottom row, as in RangeViT.
        v = np.clip(v, 0, cfg.H - 1).astype(np.int64)
    return u, v, d.astype(np.float32)


def project_to_range(points, ring=None, cfg: RangeProjection = RangeProjection()) -> RangeImage:
    """Project a LiDAR sweep into a range image (lukkassen2024 Sec. 3.2.1, the u / v equation).

    Args:
        points: (N, >= 4) float array (any float dtype; columns beyond 4 ignored): x, y, z in metres
            in the LiDAR *sensor* frame (the spherical formula assumes the sensor at the origin;
            e.g. :attr:`bevlib.data.lidar.LidarSweep.points_sensor`), then intensity.
        ring: (N,) integer laser index per point (0 = lowest beam, nuScenes / embedded-world
            convention) or None. Used only with ``cfg.row == "ring"`` (the default), then
            ``v = H - 1 - ring``; otherwise v comes from the elevation formula.
        cfg: :class:`RangeProjection`.
    Returns: :class:`RangeImage`. Pixel ownership: the point with the smallest float32 range wins
        its pixel; on equal float32 range the lowest input index wins (deterministic).
        Out-of-FOV elevations are clipped to the first / last row; a point at the origin has
        range 0 (so it wins its pixel) and elevation 0.
    Raises: ValueError for points not (N, >= 4) or non-finite, or a ring of the wrong shape or
        outside 0..H-1.

    Vectorised: one per-pixel minimum (``np.minimum.at``) of a (range, index) key instead of
    RangeViT's full sort, O(N + H W); identical output to :func:`_reference_project`.
    """
    pts, ring = _validate(points, ring, cfg)
    N, HW = len(pts), cfg.H * cfg.W
    u, v, rng = _pixels(pts, ring, cfg)
    lin = v * cfg.W + u
    # Non-negative float32s order like their bit patterns, so (range bits << 32 | index) is one
    # int64 key whose minimum is the nearest point and, on equal range, the lowest index.
    key = (rng.view(np.int32).astype(np.int64) << 32) | np.arange(N, dtype=np.int64)
    best = np.full(HW, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(best, lin, key)
    pix = np.flatnonzero(best != np.iinfo(np.int64).max)
    winner = best[pix] & 0xFFFFFFFF
    owner = np.full(HW, -1, np.int64)
    owner[pix] = winner
    image = np.zeros((5, HW), np.float32)
    image[0, pix] = rng[winner]
    # Per-channel gathers: one (M, 4) row gather + transposed assignment costs ~2x more.
    for c, col in ((1, 3), (2, 0), (3, 1), (4, 2)):
        image[c, pix] = pts[winner, col]
    kept = np.zeros(N, bool)
    kept[winner] = True
    return RangeImage(image=image.reshape(5, cfg.H, cfg.W), mask=(owner >= 0).reshape(cfg.H, cfg.W),
                      owner=owner.reshape(cfg.H, cfg.W), u=u, v=v, kept=kept,
                      row="ring" if ring is not None else "elevation")


def _reference_project(points, ring=None, cfg: RangeProjection = RangeProjection()) -> RangeImage:
    """REFERENCE implementation (tests and the benchmark only; use :func:`project_to_range`).

    RangeViT's way, written out plainly: compute (u, v) per point with the paper's formula, sort
    the points by decreasing range and fancy-index assign them, so the nearest is written last and
    wins. A stable sort by increasing float32 range, reversed, puts equal ranges in decreasing
    index order, so the lowest index is written last: the same tie rule as :func:`project_to_range`.
    Relies on NumPy's 1-D fancy assignment writing repeated indices in order (last one stays).
    """
    pts = np.asarray(points)
    N = len(pts)
    xyz = pts[:, :3].astype(np.float64)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    depth64 = np.sqrt(x * x + y * y + z * z)
    depth = depth64.astype(np.float32)
    yaw = np.arctan2(y, x)
    u = np.minimum(cfg.W - 1, np.maximum(0, np.floor(0.5 * (1.0 - yaw / np.pi) * cfg.W))).astype(np.int64)
    if ring is not None and cfg.row == "ring":
        v = (cfg.H - 1) - np.asarray(ring).astype(np.int64)
    else:
        fov_up, fov_down = np.radians(cfg.fov_up_deg), np.radians(cfg.fov_down_deg)
        fov = abs(fov_up) + abs(fov_down)
        pitch = np.zeros(N)
        nz = depth64 > 0
        pitch[nz] = np.arcsin(z[nz] / depth64[nz])
        v = np.floor((1.0 - (pitch + abs(fov_down)) / fov) * cfg.H)
        v = np.minimum(cfg.H - 1, np.maximum(0, v)).astype(np.int64)
    order = np.argsort(depth, kind="stable")[::-1]
    owner = np.full((cfg.H, cfg.W), -1, np.int64)
    owner[v[order], u[order]] = order
    image = np.zeros((5, cfg.H, cfg.W), np.float32)
    feats = [depth, pts[:, 3], pts[:, 0], pts[:, 1], pts[:, 2]]
    for c, f in enumerate(feats):
        image[c, v[order], u[order]] = np.asarray(f, np.float32)[order]
    mask = owner >= 0
    kept = np.zeros(N, bool)
    kept[owner[mask]] = True
    return RangeImage(image=image, mask=mask, owner=owner, u=u, v=v, kept=kept,
                      row="ring" if ring is not None and cfg.row == "ring" else "elevation")


def range_image_check(dataroot, out_dir, version: str = "v1.0-mini", sample_token: str | None = None,
                      cfg: RangeProjection = RangeProjection()) -> dict:
    """Project a real nuScenes keyframe's LIDAR_TOP sweep in both row modes and save a figure.

    Reads the sweep with :func:`bevlib.data.lidar.load_lidar_sweep` (sensor frame, ring) from the
    dataset at ``dataroot`` in place. For each mode ("ring", "elevation") reports the share of
    points that own their pixel (``kept``) and the share of occupied pixels (``mask``), plus the
    number of empty rows; saves ``out_dir/range_image.png`` (range and intensity channels of both
    modes) with :func:`bevlib.io.atomic_savefig`.

    Args:
        dataroot: nuScenes root holding ``version``.
        out_dir: folder for the figure (created).
        sample_token: keyframe; None takes the first sample.
        cfg: projection geometry; its ``row`` is overridden per mode.
    Returns: dict with ``sample_token``, ``n_points``, ``figure`` (path str) and per mode
        ``{"kept_share", "occupied_share", "empty_rows", "n_kept"}``.
    Raises: DataError (from the reader) for a missing record / file; ValueError when the
        keyframe has no LIDAR_TOP or its file has no ring column.
    """
    from dataclasses import replace
    from pathlib import Path

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data.lidar import load_lidar_sweep
    from .data.nuscenes_data import open_nuscenes
    from .io import atomic_savefig

    nusc = open_nuscenes(dataroot, version)
    token = sample_token or nusc.sample[0]["token"]
    sweep = load_lidar_sweep(nusc, token)
    if sweep is None:
        raise ValueError(f"keyframe {token} has no LIDAR_TOP sweep")
    if sweep.ring is None:
        raise ValueError(f"the LIDAR_TOP sweep of keyframe {token} has no ring column")
    pts = np.column_stack([sweep.points_sensor, sweep.intensity])
    out = {"sample_token": token, "n_points": int(len(pts)), "H": cfg.H, "W": cfg.W}
    images = {}
    for mode in ("ring", "elevation"):
        ri = project_to_range(pts, sweep.ring, replace(cfg, row=mode))
        images[mode] = ri
        out[mode] = {"kept_share": round(float(ri.kept.mean()), 4), "n_kept": int(ri.kept.sum()),
                     "occupied_share": round(float(ri.mask.mean()), 4),
                     "empty_rows": int((~ri.mask.any(1)).sum())}
    fig, axes = plt.subplots(4, 1, figsize=(16, 6.5), constrained_layout=True)
    for i, mode in enumerate(("ring", "elevation")):
        ri = images[mode]
        for j, (ch, cmap, label) in enumerate(((0, "turbo", "range (m)"), (1, "viridis", "intensity"))):
            ax = axes[2 * i + j]
            im = ax.imshow(np.ma.masked_where(~ri.mask, ri.image[ch]), cmap=cmap, aspect="auto",
                           interpolation="nearest")
            ax.set_title(f"{label}, rows from {mode}: {out[mode]['kept_share']:.1%} of points kept, "
                         f"{out[mode]['occupied_share']:.1%} of pixels occupied", fontsize=9)
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, pad=0.005)
    fig.suptitle(f"nuScenes LIDAR_TOP range image {cfg.H}x{cfg.W} (lukkassen2024 Sec. 3.2.1), sample {token[:8]}",
                 fontsize=10)
    path = Path(out_dir) / "range_image.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    out["figure"] = str(path)
    return out
