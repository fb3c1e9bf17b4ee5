"""Classical LiDAR depth completion: IP-Basic (Ku et al. 2018) and a nearest-neighbour baseline.

wozniak2025 (S3PT, Sec. 3.3 / 4.1) completes the sparse LiDAR depth of each camera with IP-Basic
so that every ViT token gets a depth for the depth term of its clustering cost. IP-Basic is
J. Ku, A. Harakeh, S. L. Waslander, "In Defense of Classical Image Processing: Fast Depth
Completion on the CPU", CRV 2018, Sec. III ("fast" pipeline, Fig. 2): on the inverted depth map

1. inversion ``d' = max_depth - d`` on valid pixels (so that a max-dilation prefers near returns,
   which occlude far ones),
2. dilation with a 5x5 diamond kernel,
3. small hole closing (morphological close, full 5x5),
4. small hole fill (empty pixels take a full 7x7 dilation),
5. extension to the top of the image (each column's top value copied upwards; optional),
6. large hole fill (empty pixels take a full 31x31 dilation; in the authors' release this runs
   only together with step 5, and so it does here),
7. 5x5 median blur, then a 5x5 Gaussian blur (on valid pixels) or a bilateral filter (d=5,
   sigma_color 1.5, sigma_space 2.0, the authors' values),
8. inversion back.

Built on OpenCV's morphology; :func:`ipbasic_steps` exposes every intermediate map so that each
step can be checked on its own.
"""
from __future__ import annotations

import time
from collections import OrderedDict

import cv2
import numpy as np

#: Depths (metres) at or below this count as "no return", the authors' threshold; it applies to
#: the inverted map as well, where it means "empty".
EMPTY_EPS = 0.1
#: Steps of :func:`ipbasic_steps`, in order.
STEP_NAMES = ("inverted", "dilated", "closed", "small_filled", "extended", "large_filled", "median", "blurred",
              "output")
BLURS = ("bilateral", "gaussian")
#: IP-Basic's bilateral parameters (fast pipeline): diameter, sigma_color (m), sigma_space (px).
BILATERAL = (5, 1.5, 2.0)
#: IP-Basic's reported speed (Ku et al. 2018, "fast" pipeline, Gaussian blur, on a CPU): 11 ms per
#: KITTI frame of 1242 x 375 pixels; and its KITTI depth-completion benchmark errors (test set, as
#: reported by the authors and quoted in the S3PT issue): RMSE 1.288 m, MAE 0.302 m.
REPORTED_MS_PER_FRAME = 11.0
REPORTED_FRAME_WH = (1242, 375)
REPORTED_RMSE_M = 1.29
REPORTED_MAE_M = 0.30


def full_kernel(n: int) -> np.ndarray:
    """(n, n) uint8 all-ones structuring element."""
    return np.ones((n, n), np.uint8)


def diamond_kernel(n: int = 5) -> np.ndarray:
    """(n, n) uint8 diamond (L1 ball of radius n // 2) structuring element, n odd >= 1.

    Raises: ValueError if ``n`` is not a positive odd int.
    """
    if not isinstance(n, (int, np.integer)) or n < 1 or n % 2 == 0:
        raise ValueError(f"n must be a positive odd int, got {n!r}")
    r = n // 2
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (np.abs(x) + np.abs(y) <= r).astype(np.uint8)


def _check_sparse(sparse, name: str = "sparse") -> np.ndarray:
    a = np.asarray(sparse)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty (H, W) depth map, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real-valued depths in metres, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (0 = no return), found NaN or inf")
    if (a < 0).any():
        raise ValueError(f"{name} must be >= 0 metres (0 = no return), found min {float(a.min())}")
    return a


def _fill_empty(d: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Empty pixels (<= EMPTY_EPS) take the max-dilation of ``d``; others keep their value."""
    out = d.copy()
    empty = out < EMPTY_EPS
    out[empty] = cv2.dilate(d, kernel)[empty]
    return out


def extend_to_top(d: np.ndarray) -> np.ndarray:
    """Copy each column's topmost non-empty value (> EMPTY_EPS) to every pixel above it.

    Args: d (H, W) float32. Returns: (H, W) float32, a new array; columns with no non-empty pixel
    are unchanged. Source: Ku et al. 2018 Sec. III, "extension to top of frame".
    """
    valid = d > EMPTY_EPS
    top = np.argmax(valid, axis=0)                      # 0 for an empty column: nothing above it
    top_val = d[top, np.arange(d.shape[1])]
    above = np.arange(d.shape[0])[:, None] < top[None, :]
    return np.where(above, top_val[None, :], d).astype(np.float32)


def ipbasic_steps(sparse: np.ndarray, max_depth: float = 100.0, extrapolate: bool = True,
                  blur: str = "bilateral") -> "OrderedDict[str, np.ndarray]":
    """Every intermediate map of IP-Basic's fast pipeline (module docstring, steps 1-8).

    Args: as :func:`complete_depth`.
    Returns: ordered ``{name: (H, W) float32}`` for :data:`STEP_NAMES`; all but ``"output"`` are in
        inverted depth (``max_depth - d``, 0 = empty); ``"extended"`` / ``"large_filled"`` equal
        their predecessor when ``extrapolate`` is False.
    Raises: ValueError as :func:`complete_depth`.
    """
    d = _check_sparse(sparse)
    if not (isinstance(max_depth, (int, float)) and np.isfinite(max_depth) and max_depth > 2 * EMPTY_EPS):
        raise ValueError(f"max_depth must be a finite number of metres > {2 * EMPTY_EPS}, got {max_depth!r}")
    if blur not in BLURS:
        raise ValueError(f"blur must be one of {BLURS}, got {blur!r}")
    s = OrderedDict()
    # Returns at or beyond max_depth would invert to <= EMPTY_EPS and read as empty (or negative);
    # drop them explicitly instead of letting them half-take part in the dilations.
    valid = (d > EMPTY_EPS) & (d < max_depth - EMPTY_EPS)
    s["inverted"] = np.where(valid, np.float32(max_depth) - d, 0).astype(np.float32)
    s["dilated"] = cv2.dilate(s["inverted"], diamond_kernel(5))
    s["closed"] = cv2.morphologyEx(s["dilated"], cv2.MORPH_CLOSE, full_kernel(5))
    s["small_filled"] = _fill_empty(s["closed"], full_kernel(7))
    if extrapolate:
        s["extended"] = extend_to_top(s["small_filled"])
        s["large_filled"] = _fill_empty(s["extended"], full_kernel(31))
    else:
        s["extended"] = s["small_filled"].copy()
        s["large_filled"] = s["extended"].copy()
    s["median"] = cv2.medianBlur(s["large_filled"], 5)
    if blur == "bilateral":
        s["blurred"] = cv2.bilateralFilter(s["median"], *BILATERAL)
    else:
        # Gaussian only where there is depth, so that empty pixels do not drag edges towards max_depth.
        g = s["median"].copy()
        on = g > EMPTY_EPS
        g[on] = cv2.GaussianBlur(s["median"], (5, 5), 0)[on]
        s["blurred"] = g
    out = s["blurred"].copy()
    on = out > EMPTY_EPS
    out[on] = np.float32(max_depth) - out[on]
    out[~on] = 0.0
    s["output"] = out.astype(np.float32)
    return s


def complete_depth(sparse: np.ndarray, max_depth: float = 100.0, extrapolate: bool = True,
                   blur: str = "bilateral") -> np.ndarray:
    """Dense depth from sparse LiDAR depth with IP-Basic's fast pipeline (Ku et al. 2018, Sec. III).

    Args:
        sparse: (H, W) depth in metres along the camera's optical axis, 0 = no return (any real
            dtype; computed in float32). Returns <= 0.1 m or >= ``max_depth - 0.1`` m are ignored.
        max_depth: metres, the inversion offset (the authors use 100 m for KITTI).
        extrapolate: extend each column's top depth to the image top and fill large holes (31x31).
        blur: ``"bilateral"`` (the authors' default, keeps edges) or ``"gaussian"`` (their KITTI
            benchmark setting, lower RMSE).
    Returns: (H, W) float32 metres; 0 where the pipeline leaves no depth (e.g. columns without any
        return when ``extrapolate`` is False, or an all-empty input).
    Raises: ValueError if ``sparse`` is not a non-empty 2-D real array of finite values >= 0, if
        ``max_depth`` is not a finite number > 0.2, or ``blur`` is not one of :data:`BLURS`.
    """
    return ipbasic_steps(sparse, max_depth, extrapolate, blur)["output"]


def nearest_fill(sparse: np.ndarray) -> np.ndarray:
    """Baseline: every empty pixel takes the depth of its nearest (Euclidean, pixels) valid pixel.

    Args: sparse (H, W) metres, 0 = no return (validated as in :func:`complete_depth`).
    Returns: (H, W) float32 metres; valid pixels unchanged; all zeros when nothing is valid. Ties
        between equidistant valid pixels are broken by SciPy's exact EDT.
    Raises: ValueError as :func:`complete_depth` for ``sparse``.
    """
    from scipy.ndimage import distance_transform_edt

    d = _check_sparse(sparse)
    valid = d > 0
    if not valid.any():
        return np.zeros_like(d)
    # The EDT measures distance to the nearest zero of its input, so the valid pixels are the zeros.
    _, (iy, ix) = distance_transform_edt(~valid, return_indices=True)
    return d[iy, ix]


def project_lidar_depth(points_cam: np.ndarray, K: np.ndarray, image_wh: tuple[int, int],
                        min_depth: float = 1.0) -> np.ndarray:
    """Sparse depth image of points already in the camera frame (nearest return wins per pixel).

    Args:
        points_cam: (N, 3) metres, camera frame (OpenCV: x right, y down, z forward).
        K: (3, 3) intrinsics in pixels at ``image_wh``; image_wh: (width, height) pixels.
        min_depth: points with z <= this (metres) are dropped (nuscenes-devkit's ``min_dist``).
    Returns: (H, W) float32 metres along the optical axis, 0 where no point; a point lands on its
        nearest pixel (centres at integers).
    Raises: ValueError for a wrong ``points_cam`` / ``K`` shape.
    This is :func:`bevlib.data.fields.project_depth` with the camera as the points' frame.
    """
    from .data.fields import project_depth

    p = np.asarray(points_cam, np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points_cam must be (N, 3) metres, got shape {p.shape}")
    if np.asarray(K).shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got shape {np.asarray(K).shape}")
    return project_depth(p, np.asarray(K, np.float64), np.eye(4), tuple(image_wh), min_depth)


def depth_errors(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict:
    """MAE and RMSE (metres) of ``pred`` against ``target`` on ``mask`` (all (H, W)).

    Pixels where ``pred`` is 0 (not completed) count with prediction 0, as in the KITTI protocol
    where every ground-truth pixel is scored. Returns ``{"n", "mae_m", "rmse_m", "covered"}``
    (``covered``: share of masked pixels with pred > 0); NaN errors when the mask is empty.
    """
    m = np.asarray(mask, bool)
    e = np.asarray(pred, np.float64)[m] - np.asarray(target, np.float64)[m]
    n = int(m.sum())
    if n == 0:
        return {"n": 0, "mae_m": float("nan"), "rmse_m": float("nan"), "covered": float("nan")}
    return {"n": n, "mae_m": float(np.abs(e).mean()), "rmse_m": float(np.sqrt((e ** 2).mean())),
            "covered": float((np.asarray(pred)[m] > 0).mean())}


# ----------------------------------------------------------------------------- benchmark

def synthetic_sparse_depth(wh: tuple[int, int] = (1600, 900), beams: int = 32, seed: int = 0) -> np.ndarray:
    """A LiDAR-like sparse depth map for timing: ``beams`` scan lines over the lower two thirds of
    a (h, w) image, a return every ~3 px along each line (about 1 % of pixels, the density of a
    32-beam sweep in a 1600 x 900 nuScenes camera), depths 2..80 m. Returns (h, w) float32 metres."""
    w, h = wh
    rng = np.random.default_rng(seed)
    d = np.zeros((h, w), np.float32)
    rows = np.linspace(h // 3, h - 1, beams).astype(int)
    for r in rows:
        cols = np.unique(rng.integers(0, w, w // 3))
        rr = np.clip(r + rng.integers(-2, 3, len(cols)), 0, h - 1)
        d[rr, cols] = rng.uniform(2.0, 80.0, len(cols))
    return d


def bench_depth(repeats: int = 15, warmup: int = 2, wh: tuple[int, int] = (1600, 900),
                threads: tuple[int, ...] = (1, 2), blurs: tuple[str, ...] = BLURS, quick: bool = False,
                seed: int = 0) -> dict:
    """Time :func:`complete_depth` on a (w, h) image against IP-Basic's 11 ms per KITTI frame.

    The reported time is scaled by pixel count, ``11 ms x w*h / (1242*375)``, assuming the
    pipeline is linear in pixels (all its steps are fixed-size filters). Threads are set with
    ``cv2.setNumThreads`` (OpenCV does the work) and restored afterwards.

    Args: repeats: timed runs per setting (median reported; use >= 10); warmup: untimed runs;
        wh: image (width, height); threads: OpenCV thread counts; blurs: subset of :data:`BLURS`.
    Returns: dict with ``benchmark``, ``config``, ``environment``, ``reported``, ``results`` (per
        (blur, threads): ``median_ms``, ``min_ms``, ``reported_scaled_ms``, ``ratio_to_reported``).
    Raises: ValueError for ``repeats < 1``, ``warmup < 0`` or an unknown blur.
    """
    import statistics

    from .bench_common import _load, bench_result, environment

    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for b in blurs:
        if b not in BLURS:
            raise ValueError(f"blurs must be drawn from {BLURS}, got {b!r}")
    sparse = synthetic_sparse_depth(wh, seed=seed)
    scaled = REPORTED_MS_PER_FRAME * (wh[0] * wh[1]) / (REPORTED_FRAME_WH[0] * REPORTED_FRAME_WH[1])
    before = cv2.getNumThreads()
    load_start = _load()
    rows = []
    try:
        for n in threads:
            cv2.setNumThreads(int(n))
            for b in blurs:
                for _ in range(warmup):
                    complete_depth(sparse, blur=b)
                t = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    complete_depth(sparse, blur=b)
                    t.append(time.perf_counter() - t0)
                med = 1e3 * statistics.median(t)
                rows.append({"blur": b, "threads": int(n), "median_ms": round(med, 3),
                             "min_ms": round(1e3 * min(t), 3), "reported_scaled_ms": round(scaled, 3),
                             "ratio_to_reported": round(med / scaled, 3)})
    finally:
        cv2.setNumThreads(before)
    return bench_result(
        "depth",
        config={"image_wh": list(wh), "repeats": repeats, "warmup": warmup, "quick": quick,
                "input": f"synthetic_sparse_depth(seed={seed}), {float((sparse > 0).mean()):.4f} of pixels valid",
                "max_depth": 100.0, "extrapolate": True,
                "statistic": "median over repeats, ms, of complete_depth (validation + all steps)"},
        environment=environment(load_start, opencv=cv2.__version__, numpy=np.__version__),
        reported={"source": "Ku et al. 2018 (IP-Basic): 11 ms per 1242x375 KITTI frame on a CPU",
                  "ms_per_frame": REPORTED_MS_PER_FRAME, "frame_wh": list(REPORTED_FRAME_WH),
                  "scaled_ms": round(scaled, 3)},
        results=rows)


def format_depth_table(result: dict) -> str:
    """The depth benchmark as a fixed-width text table."""
    cfg, rep = result["config"], result["reported"]
    lines = [f"depth completion benchmark: IP-Basic fast, {cfg['image_wh'][0]}x{cfg['image_wh'][1]} "
             f"({cfg['input']}), median of {cfg['repeats']} (ms)",
             f"{'blur':>10} {'threads':>8} {'median':>9} {'min':>9} {'reported*':>10} {'ratio':>7}"]
    lines.append("-" * len(lines[-1]))
    for r in result["results"]:
        lines.append(f"{r['blur']:>10} {r['threads']:>8} {r['median_ms']:>9.2f} {r['min_ms']:>9.2f} "
                     f"{r['reported_scaled_ms']:>10.2f} {r['ratio_to_reported']:>7.2f}")
    lines.append(f"* reported: {rep['ms_per_frame']} ms per {rep['frame_wh'][0]}x{rep['frame_wh'][1]} frame, "
                 f"scaled by pixel count ({rep['source']})")
    return "\n".join(lines)
