"""Benchmarks. ``python -m bevlib.bench render``: speed of the BEV -> camera renderer.

busch2026 renders the predicted BEV map into the six cameras at every training step (Sec. III-B),
so the renderer sits on the training hot path. The camera rig is fixed within a scene, so the
analytic backend caches each rig's sampling grid and a render is one ``grid_sample`` gather
(:func:`bevlib.render.render_bev`). This benchmark measures, side by side in one process:

* ``floor``: a bare ``torch.nn.functional.grid_sample`` on a precomputed grid, the same gather the
  analytic backend makes (the B*N camera images as the batch, the BEV map expanded over its
  cameras): what a renderer built on torch's gather costs at least (the native kernels go below
  it by skipping the pixels that miss the grid);
* ``flat floor``: the other layout of a bare gather, the (B, C, H, W) map sampled on one
  (B, N*h, w, 2) grid, returned as a (B, N, C, h, w) transposed view (the renderer's previous
  layout): its forward output is not contiguous (a consumer that needs contiguous images, like the
  Eq. 1 loss, pays a transposing copy that is not timed here), and its backward, fed the upstream
  gradient in the (B, N, C, h, w) layout, includes that copy;
* ``analytic``: the public API, :func:`bevlib.render.render_bev` (hot: the rig's grid is cached;
  on CPU it runs the native kernels of :mod:`bevlib.native` over the valid pixels only, forward
  bit-identical to the floor where torch's grid_sample fuses its multiply-adds (AVX2 / AVX-512),
  backward equal to the floor's up to summation order; without a C compiler it is the floor's
  own grid_sample);
* ``pytorch3d``: ``render_bev(..., backend="pytorch3d")``, the paper's mesh rasteriser, where
  pytorch3d imports ("unavailable" otherwise).

Setting (busch2026 Sec. IV-A): the real nuScenes camera rig (:data:`bevlib.data.world.NUSCENES_RIG`)
at 288 x 512 pixels, 6 cameras, C in {4 (background + 3 map classes), 13}, BEV 150 x 150 and
200 x 200, forward and forward + backward, batch 1, ``torch.set_num_threads(2)``. Methods are timed
round-robin within each repeat (rotating the order), so load from other processes hits all of them
alike; each time is the median of ``repeats`` runs after ``warmup`` runs. Targets reported against
(not enforced): analytic <= 1.5 x the floor (judged on the median of the per-repeat ratios, which a
busy machine disturbs far less than the ratio of medians), and >= 10 x faster than PyTorch3D.

The JSON goes to ``outputs/bench/render.json`` (atomic write) unless ``--out`` says otherwise.

``python -m bevlib.bench range``: speed of the LiDAR range projection (lukkassen2024 Sec. 3.2.1,
RangeViT's input), :func:`bevlib.range_view.project_to_range` (one per-pixel minimum of a
(range, index) key) against :func:`bevlib.range_view._reference_project` (RangeViT's way: sort by
decreasing range, fancy-index assign), on the real nuScenes LIDAR_TOP sweep of
``../shared/nuscenes-keyframe`` (34,688 points, used in place) or, where it is absent or with
``--synthetic``, a synthetic sweep of the same size, 32 x 2048, both row modes. Timed round-robin
as above, median of ``repeats``; target (reported, not enforced): >= 3 x faster, with outputs
identical (every field of the :class:`~bevlib.range_view.RangeImage`). JSON to
``outputs/bench/range.json``.

``python -m bevlib.bench lovasz``: :func:`bevlib.losses.lovasz_softmax` (all classes sorted at once)
forward + backward against Berman et al.'s per-class loop (written here, clearly marked, as the
reference), 16 classes + ignore, batch 8 x 32 x 384, 2 threads; medians, ratio, and the largest
difference of loss and logits gradient (<= 1e-5 required). Target (reported): >= 3 x faster.
JSON to ``outputs/bench/lovasz.json``.

``python -m bevlib.bench rangevit``: one training step (forward, backward, AdamW) of the paper-size
RangeViT (lukkassen2024 / RangeViT ViT-S: stem 256, D 384, 12 layers, 6 heads) on a 32 x 384 crop
with ~6,500 points, median of 7 steps; FLOPs from ``torch.utils.flop_counter.FlopCounterMode`` and
their rate as a share of the best 2048^2 float32 ``torch.mm`` rate on the same threads. JSON to
``outputs/bench/rangevit.json``.

``python -m bevlib.bench depth``: IP-Basic depth completion (:func:`bevlib.depth_completion.complete_depth`,
wozniak2025 S3PT's depth source) on a 1600 x 900 LiDAR-like sparse map, bilateral and Gaussian blur,
OpenCV at 1 and 2 threads, median of >= 10 runs, against the 11 ms per 1242 x 375 KITTI frame
Ku et al. 2018 report, scaled by pixel count (:func:`bevlib.depth_completion.bench_depth`). JSON to
``outputs/bench/depth.json``.
"""
from __future__ import annotations

from .runtime import reuse_large_allocations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import native, render
from .bev import BEVGrid
from .geometry import scale_intrinsics, transform_from
from .io import atomic_write_text
from .paths import outputs_dir

#: busch2026 Sec. IV-A image size (h, w) and the quick (test) size.
IMAGE_HW = (288, 512)
QUICK_IMAGE_HW = (72, 128)
TARGET_ANALYTIC_OVER_FLOOR = 1.5
TARGET_PYTORCH3D_OVER_ANALYTIC = 10.0
SCHEMA_VERSION = 1
UNAVAILABLE = "unavailable"


def nuscenes_rig(image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The real nuScenes 6-camera rig (v1.0-mini calibration) scaled to ``image_hw``.

    Returns: K (6, 3, 3) float64 pixels for (h, w) images; ego_T_cam (6, 4, 4) float64 metres,
    cameras in :data:`bevlib.data.world.CAMERA_NAMES` order.
    """
    from .data.world import CAMERA_NAMES, NUSCENES_RIG, RIG_IMAGE_WH

    h, w = image_hw
    K = np.stack([scale_intrinsics(np.asarray(NUSCENES_RIG[c]["camera_intrinsic"]), RIG_IMAGE_WH, (w, h))
                  for c in CAMERA_NAMES])
    T = np.stack([transform_from(NUSCENES_RIG[c]["translation"], NUSCENES_RIG[c]["rotation"]) for c in CAMERA_NAMES])
    return K, T


def _pytorch3d_status() -> str:
    """"available <version>" or "unavailable: <why>" (the ImportError's text)."""
    from .render_p3d import _import_pytorch3d

    try:
        _import_pytorch3d()
        import pytorch3d
    except ImportError as e:
        return f"{UNAVAILABLE}: {e}"
    return f"available {getattr(pytorch3d, '__version__', '?')}"


def _load():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def _clear_render_caches() -> None:
    render._GRID_CACHE.clear()
    render._BATCH_CACHE.clear()


def _median_ms(samples: list[float]) -> float:
    return round(1e3 * statistics.median(samples), 3)


def _case(C: int, S: int, batch: int, image_hw, K: torch.Tensor, T: torch.Tensor, pass_: str,
          repeats: int, warmup: int, with_p3d: bool, seed: int) -> dict:
    """Time one (channels, BEV size, pass) case for every method; see :func:`bench_render`."""
    h, w = image_hw
    N = K.shape[1]
    grid = BEVGrid(H=S, W=S)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, C, S, S, generator=gen)
    backward = pass_ == "forward+backward"
    if backward:
        x.requires_grad_(True)
    # The floors' grids come from the same per-calibration cache the analytic backend fills, so all
    # gather with identical coordinates and their outputs must agree bit for bit.
    coords = torch.stack([render.sampling_grid(K[b], T[b], image_hw, grid)[0] for b in range(batch)])
    floor_grid = coords.view(batch * N, h, w, 2).contiguous()
    flat_grid = coords.view(batch, N * h, w, 2).contiguous()
    # Random upstream gradients (not ones) so a wrong gather shows up as a wrong input gradient.
    g_analytic = torch.randn(batch, N, C, h, w, generator=gen)
    g_floor = g_analytic.view(batch * N, C, h, w)

    def floor():
        bev = x[:, None].expand(batch, N, C, S, S).reshape(batch * N, C, S, S)  # a view for B = 1
        return F.grid_sample(bev, floor_grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def flat_floor():
        out = F.grid_sample(x, flat_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.view(batch, C, N, h, w).transpose(1, 2)

    def analytic():
        return render.render_bev(x, K, T, image_hw, grid)[0]

    def p3d():
        return render.render_bev(x, K, T, image_hw, grid, backend="pytorch3d")[0]

    methods = {"floor": (floor, g_floor), "flat_floor": (flat_floor, g_analytic), "analytic": (analytic, g_analytic)}
    if with_p3d:
        methods["pytorch3d"] = (p3d, g_analytic)

    def run(name):
        fn, g = methods[name]
        out = fn()
        if backward:
            out.backward(g)
            grad, x.grad = x.grad, None
            return out.detach(), grad
        return out, None

    results = {}
    errors = {}
    for name in list(methods):
        try:
            for _ in range(warmup):
                run(name)
            results[name] = run(name)  # kept for the equality check
        except Exception as e:  # a broken pytorch3d build fails here, not at import
            if name != "pytorch3d":
                raise
            errors[name] = f"{UNAVAILABLE}: {type(e).__name__}: {e}"
            del methods[name]
    samples = {name: [] for name in methods}
    names = list(methods)
    for i in range(repeats):
        # Rotate the order so no method always runs right after another one (cache, allocator).
        for name in names[i % len(names):] + names[:i % len(names)]:
            t0 = time.perf_counter()
            run(name)
            samples[name].append(time.perf_counter() - t0)

    out_a, grad_a = results["analytic"]
    out_f, grad_f = results["floor"]
    out_flat, grad_flat = results["flat_floor"]
    row = {
        "channels": C, "bev_hw": [S, S], "pass": pass_,
        "floor_ms": _median_ms(samples["floor"]),
        "flat_floor_ms": _median_ms(samples["flat_floor"]),
        "analytic_ms": _median_ms(samples["analytic"]),
        "floor_min_ms": round(1e3 * min(samples["floor"]), 3),
        "flat_floor_min_ms": round(1e3 * min(samples["flat_floor"]), 3),
        "analytic_min_ms": round(1e3 * min(samples["analytic"]), 3),
        "analytic_equals_floor": bool(torch.equal(out_a, out_f.view(batch, N, C, h, w))),
        "analytic_equals_flat_floor": bool(torch.equal(out_a, out_flat)),
    }
    if backward:
        # On CPU the analytic backward is the native kernel (per-thread accumulation, not
        # grid_sample's scatter-add): equal to the floor's gradient up to summation order.
        row["analytic_grad_max_abs_diff_floor"] = float((grad_a - grad_f).abs().max())
        # Summation order over the cameras differs from the flat layout's: equal up to rounding.
        row["analytic_grad_max_abs_diff_flat_floor"] = float((grad_a - grad_flat).abs().max())
    row["analytic_over_floor"] = round(row["analytic_ms"] / row["floor_ms"], 3)
    # Median of the per-repeat ratios: both runs of a repeat see the same load from other
    # processes, so this ratio is far steadier than the ratio of medians on a busy machine.
    row["analytic_over_floor_paired"] = round(statistics.median(
        a / f for a, f in zip(samples["analytic"], samples["floor"])), 3)
    row["analytic_over_flat_floor"] = round(row["analytic_ms"] / row["flat_floor_ms"], 3)
    row["meets_floor_target"] = row["analytic_over_floor_paired"] <= TARGET_ANALYTIC_OVER_FLOOR
    if "pytorch3d" in methods:
        row["pytorch3d_ms"] = _median_ms(samples["pytorch3d"])
        row["pytorch3d_over_analytic"] = round(row["pytorch3d_ms"] / row["analytic_ms"], 2)
        row["meets_pytorch3d_target"] = row["pytorch3d_over_analytic"] >= TARGET_PYTORCH3D_OVER_ANALYTIC
    else:
        why = errors.get("pytorch3d", UNAVAILABLE)
        row["pytorch3d_ms"] = row["pytorch3d_over_analytic"] = row["meets_pytorch3d_target"] = why
    if not backward:
        # The one-off cost of a rig the cache has not seen (first step of a new calibration).
        cold = []
        for _ in range(max(1, min(3, repeats))):
            _clear_render_caches()
            t0 = time.perf_counter()
            analytic()
            cold.append(time.perf_counter() - t0)
        row["analytic_cold_ms"] = _median_ms(cold)
    return row


def bench_render(repeats: int = 15, warmup: int = 3, batch: int = 1, image_hw: tuple[int, int] = IMAGE_HW,
                 channels=(4, 13), bev_sizes=(150, 200), passes=("forward", "forward+backward"),
                 threads: int = 2, pytorch3d: bool = True, quick: bool = False, seed: int = 0) -> dict:
    """Time the renderer backends against the bare ``grid_sample`` floor (see the module doc).

    Args:
        repeats: timed runs per method and case (the median is reported; use >= 10).
        warmup: untimed runs per method and case first (fills caches, allocator, thread pool).
        batch: B, the number of keyframes rendered per call (all with the same rig).
        image_hw: (h, w) pixels per camera; 6 cameras.
        channels / bev_sizes / passes: the cases; ``bev_sizes`` are square BEV grids of the
            busch2026 extent (+-30 m longitudinal, +-15 m lateral).
        threads: ``torch.set_num_threads`` for the run (restored afterwards).
        pytorch3d: also time the PyTorch3D backend where it imports.
        quick: only recorded in the result (the caller picks the small settings).
        seed: seeds the BEV maps and upstream gradients.
    Returns: the JSON-ready dict described in :func:`main` (``results``: one row per case).
    Raises: ValueError for repeats < 1, warmup < 0, batch < 1 or an unknown pass name.
    """
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, batch >= 1; got {repeats}, {warmup}, {batch}")
    bad = [p for p in passes if p not in ("forward", "forward+backward")]
    if bad:
        raise ValueError(f"unknown pass {bad[0]!r}; use 'forward' or 'forward+backward'")
    p3d_status = _pytorch3d_status() if pytorch3d else f"{UNAVAILABLE}: not requested (--no-pytorch3d)"
    with_p3d = p3d_status.startswith("available")
    K, T = nuscenes_rig(image_hw)
    # Float32 tensors, as a training batch delivers them (render_bev's key building is timed too).
    Kt = torch.as_tensor(K, dtype=torch.float32)[None].repeat(batch, 1, 1, 1)
    Tt = torch.as_tensor(T, dtype=torch.float32)[None].repeat(batch, 1, 1, 1)
    load_start = _load()
    # The same process setting as training (bevlib.train): every method here, PyTorch3D included,
    # reuses its large output blocks instead of page-faulting fresh ones at each call.
    reused = reuse_large_allocations()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = [_case(C, S, batch, tuple(image_hw), Kt, Tt, p, repeats, warmup, with_p3d, seed)
                for C in channels for S in bev_sizes for p in passes]
    finally:
        torch.set_num_threads(old_threads)
    ratios = [r["analytic_over_floor_paired"] for r in rows]
    p3d_ratios = [r["pytorch3d_over_analytic"] for r in rows if not isinstance(r["pytorch3d_over_analytic"], str)]
    summary = {
        "max_analytic_over_floor_paired": max(ratios),
        "max_analytic_over_floor": max(r["analytic_over_floor"] for r in rows),
        "meets_floor_target": all(r["meets_floor_target"] for r in rows),
        "min_pytorch3d_over_analytic": min(p3d_ratios) if p3d_ratios else UNAVAILABLE,
        "meets_pytorch3d_target": (all(x >= TARGET_PYTORCH3D_OVER_ANALYTIC for x in p3d_ratios)
                                   if p3d_ratios else UNAVAILABLE),
        "max_analytic_over_flat_floor": max(r["analytic_over_flat_floor"] for r in rows),
        "all_outputs_equal": all(r["analytic_equals_floor"] and r["analytic_equals_flat_floor"] for r in rows),
    }
    return {
        "benchmark": "render",
        "schema_version": SCHEMA_VERSION,
        "config": {"batch": batch, "cameras": int(K.shape[0]), "image_hw": list(image_hw),
                   "channels": list(channels), "bev_sizes": list(bev_sizes), "passes": list(passes),
                   "repeats": repeats, "warmup": warmup, "threads": threads, "quick": quick, "reuse_large_allocations": reused,
                   "statistic": "median over repeats, ms; methods timed round-robin (rotating order) in one "
                                "process; the floor target is judged on analytic_over_floor_paired, the median "
                                "of per-repeat analytic/floor ratios",
                   "bev_extent_m": {"x": [-30.0, 30.0], "y": [-15.0, 15.0]}},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "platform": platform.platform(), "machine": platform.machine(),
                        "processor": platform.processor() or platform.machine(),
                        "cpu_count": os.cpu_count(), "pytorch3d": p3d_status,
                        "native_kernels": native.status(),
                        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                        # Other processes' load inflates wall-clock medians (minima less so).
                        "load_average_1min": {"start": load_start, "end": _load()}},
        "targets": {"analytic_over_floor_max": TARGET_ANALYTIC_OVER_FLOOR,
                    "pytorch3d_over_analytic_min": TARGET_PYTORCH3D_OVER_ANALYTIC},
        "results": rows,
        "summary": summary,
    }


def format_table(result: dict) -> str:
    """The benchmark as a fixed-width text table (one line per case, then the targets)."""
    def fmt(v, spec):
        return v.split(":")[0] if isinstance(v, str) else format(v, spec)

    def verdict(ok):
        return ok if isinstance(ok, str) else ("met" if ok else "NOT met")

    cfg = result["config"]
    head = (f"render benchmark: {cfg['cameras']} cameras x {cfg['image_hw'][0]}x{cfg['image_hw'][1]}, "
            f"batch {cfg['batch']}, {cfg['threads']} threads, median of {cfg['repeats']} (ms); "
            f"pytorch3d: {result['environment']['pytorch3d']}; "
            f"native kernels: {result['environment'].get('native_kernels', '?').split(' (')[0]}")
    cols = (f"{'C':>3} {'BEV':>8} {'pass':>17} {'floor':>9} {'analytic':>9} {'an/floor':>9} {'paired':>7} {'flat':>8} "
            f"{'an/flat':>8} {'cold':>8} {'pytorch3d':>10} {'p3d/an':>7} {'equal':>6}")
    lines = [head, cols, "-" * len(cols)]
    for r in result["results"]:
        bev = f"{r['bev_hw'][0]}x{r['bev_hw'][1]}"
        lines.append(
            f"{r['channels']:>3} {bev:>8} {r['pass']:>17} {r['floor_ms']:>9.2f} {r['analytic_ms']:>9.2f} "
            f"{r['analytic_over_floor']:>9.3f} {r['analytic_over_floor_paired']:>7.3f} {r['flat_floor_ms']:>8.2f} "
            f"{r['analytic_over_flat_floor']:>8.3f} "
            f"{fmt(r.get('analytic_cold_ms', '-'), '.1f'):>8} {fmt(r['pytorch3d_ms'], '.1f'):>10} "
            f"{fmt(r['pytorch3d_over_analytic'], '.1f'):>7} {str(r['analytic_equals_floor']):>6}")
    s, t = result["summary"], result["targets"]
    lines.append(f"targets: analytic <= {t['analytic_over_floor_max']} x floor -> max (paired) "
                 f"{s['max_analytic_over_floor_paired']:.3f} ({verdict(s['meets_floor_target'])}); "
                 f"pytorch3d >= {t['pytorch3d_over_analytic_min']} x analytic -> min "
                 f"{fmt(s['min_pytorch3d_over_analytic'], '.1f')} ({verdict(s['meets_pytorch3d_target'])})")
    return "\n".join(lines)


TARGET_RANGE_SPEEDUP = 3.0
#: Points of the synthetic sweep: the size of the real v1.0-mini LIDAR_TOP keyframe sweep.
RANGE_SYNTHETIC_POINTS = 34688


def _range_input(synthetic: bool, seed: int):
    """(points (N, 4) float32 sensor frame [x, y, z, intensity], ring (N,) uint8, source label)."""
    if not synthetic:
        from .data.source import real_keyframe_root

        root = real_keyframe_root()
        if (root / "v1.0-mini").is_dir():
            from .data.lidar import load_lidar_sweep
            from .data.nuscenes_data import open_nuscenes

            nusc = open_nuscenes(root, "v1.0-mini")
            token = nusc.sample[0]["token"]
            sw = load_lidar_sweep(nusc, token)
            if sw is not None and sw.ring is not None:
                return (np.column_stack([sw.points_sensor, sw.intensity]).astype(np.float32), sw.ring,
                        f"real nuScenes v1.0-mini LIDAR_TOP, sample {token}")
    # An HDL-32E-like sweep: 32 beams x 1084 azimuth steps, ranges 1..80 m, so collisions and the
    # beam spacing resemble the real one.
    rng = np.random.default_rng(seed)
    beams, steps = 32, RANGE_SYNTHETIC_POINTS // 32
    el = np.radians(np.linspace(-30.67, 10.67, beams))[:, None] + rng.normal(0, 0.002, (beams, steps))
    az = np.linspace(-np.pi, np.pi, steps, endpoint=False)[None] + rng.normal(0, 0.001, (beams, steps))
    r = rng.uniform(1.0, 80.0, (beams, steps))
    xyz = np.stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el)], -1).reshape(-1, 3)
    pts = np.column_stack([xyz, rng.uniform(0, 255, len(xyz))]).astype(np.float32)
    ring = np.repeat(np.arange(beams, dtype=np.uint8), steps)
    return pts, ring, f"synthetic HDL-32E-like sweep, seed {seed}"


def bench_range(repeats: int = 15, warmup: int = 3, synthetic: bool = False, quick: bool = False,
                seed: int = 0) -> dict:
    """Time :func:`bevlib.range_view.project_to_range` against the sort-and-assign reference.

    Args:
        repeats: timed runs per method and row mode (median reported; use >= 10).
        warmup: untimed runs first.
        synthetic: use the synthetic sweep even where the real keyframe is present.
        quick: only recorded in the config (the CLI's ``--quick`` lowers ``repeats``).
    Returns: the result dict (see :func:`main` for the keys).
    Raises: ValueError for ``repeats < 1`` or ``warmup < 0``.
    """
    from dataclasses import replace

    from .range_view import RangeProjection, _reference_project, project_to_range

    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    pts, ring, source = _range_input(synthetic, seed)
    # Both methods allocate ~MB images per call; without reuse each call pays fresh page faults.
    reused = reuse_large_allocations()
    load_start = _load()
    methods = {"vectorised": project_to_range, "reference": _reference_project}
    rows = []
    for mode in ("ring", "elevation"):
        cfg = replace(RangeProjection(), row=mode)
        outs = {}
        for name, fn in methods.items():
            for _ in range(warmup):
                fn(pts, ring, cfg)
            outs[name] = fn(pts, ring, cfg)
        samples = {name: [] for name in methods}
        names = list(methods)
        for i in range(repeats):
            for name in names[i % 2:] + names[:i % 2]:
                t0 = time.perf_counter()
                methods[name](pts, ring, cfg)
                samples[name].append(time.perf_counter() - t0)
        a, b = outs["vectorised"], outs["reference"]
        equal = all(np.array_equal(getattr(a, f), getattr(b, f)) and getattr(a, f).dtype == getattr(b, f).dtype
                    for f in ("image", "mask", "owner", "u", "v", "kept")) and a.row == b.row
        row = {"row": mode, "vectorised_ms": _median_ms(samples["vectorised"]),
               "reference_ms": _median_ms(samples["reference"]),
               "vectorised_min_ms": round(1e3 * min(samples["vectorised"]), 3),
               "reference_min_ms": round(1e3 * min(samples["reference"]), 3),
               "speedup_paired": round(statistics.median(r / v for r, v in zip(samples["reference"],
                                                                                 samples["vectorised"])), 2),
               "outputs_identical": bool(equal),
               "kept_share": round(float(a.kept.mean()), 4), "occupied_share": round(float(a.mask.mean()), 4)}
        row["speedup"] = round(row["reference_ms"] / row["vectorised_ms"], 2)
        row["meets_target"] = bool(equal and row["speedup_paired"] >= TARGET_RANGE_SPEEDUP)
        rows.append(row)
    return {
        "benchmark": "range", "schema_version": SCHEMA_VERSION,
        "config": {"points": int(len(pts)), "source": source, "H": 32, "W": 2048, "repeats": repeats,
                   "warmup": warmup, "quick": quick, "reuse_large_allocations": reused,
                   "statistic": "median over repeats, ms; methods timed round-robin (alternating order) in one "
                                "process; the target is judged on speedup_paired, the median of per-repeat "
                                "reference/vectorised ratios"},
        "environment": {"numpy": np.__version__, "python": platform.python_version(),
                        "platform": platform.platform(), "cpu_count": os.cpu_count(),
                        "load_average_1min": {"start": load_start, "end": _load()}},
        "targets": {"speedup_min": TARGET_RANGE_SPEEDUP, "outputs_identical": True},
        "results": rows,
        "summary": {"min_speedup_paired": min(r["speedup_paired"] for r in rows),
                    "all_outputs_identical": all(r["outputs_identical"] for r in rows),
                    "meets_target": all(r["meets_target"] for r in rows)},
    }


def format_range_table(result: dict) -> str:
    """The range benchmark as a fixed-width text table."""
    cfg = result["config"]
    lines = [f"range benchmark: {cfg['points']} points ({cfg['source']}) -> {cfg['H']}x{cfg['W']}, "
             f"median of {cfg['repeats']} (ms)",
             f"{'row':>10} {'vectorised':>11} {'reference':>10} {'speedup':>8} {'paired':>7} {'identical':>10}"]
    lines.append("-" * len(lines[-1]))
    for r in result["results"]:
        lines.append(f"{r['row']:>10} {r['vectorised_ms']:>11.3f} {r['reference_ms']:>10.3f} {r['speedup']:>8.2f} "
                     f"{r['speedup_paired']:>7.2f} {str(r['outputs_identical']):>10}")
    s = result["summary"]
    lines.append(f"targets: >= {result['targets']['speedup_min']} x faster, identical -> min (paired) "
                 f"{s['min_speedup_paired']:.2f}, identical {s['all_outputs_identical']} "
                 f"({'met' if s['meets_target'] else 'NOT met'})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- lovasz
#: lukkassen2024's loss setting: 16 nuScenes-lidarseg classes (+ ignore), batch 8 crops of 32 x 384.
LOVASZ_CLASSES = 16
LOVASZ_BATCH = 8
LOVASZ_HW = (32, 384)
#: Share of ignore-labelled pixels in the synthetic targets.
LOVASZ_IGNORE_SHARE = 0.1
TARGET_LOVASZ_SPEEDUP = 3.0
LOVASZ_TOLERANCE = 1e-5


# ---- REFERENCE (benchmark only, not library code): Berman et al.'s per-class loop -------------
# Berman, Rannen Triki & Blaschko, CVPR 2018, Alg. 1, as their reference implementation
# (bermanmaxim/LovaszSoftmax, lovasz_losses.py: lovasz_grad / lovasz_softmax_flat, per_image=False,
# classes="present"): for each class separately, sort its errors, the Lovasz gradient from
# cumulative sums, one dot product; mean over the present classes.
def _reference_lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. the sorted errors (Berman Alg. 1)."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(gt_sorted) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def _reference_lovasz_softmax(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Berman et al.'s Lovasz-softmax (``classes="present"``, ``per_image=False``), one loop per class."""
    C = logits.shape[1]
    probas = logits.softmax(dim=1).movedim(1, -1).reshape(-1, C)
    labels = target.reshape(-1)
    valid = labels != ignore_index
    probas, labels = probas[valid], labels[valid]
    losses = []
    for c in range(C):
        fg = (labels == c).to(probas.dtype)
        if fg.sum() == 0:
            continue
        errors = (fg - probas[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, 0, descending=True)
        losses.append(torch.dot(errors_sorted, _reference_lovasz_grad(fg[perm])))
    return torch.stack(losses).mean() if losses else probas.sum() * 0.0
# ---- end of the reference -------------------------------------------------------------------


def _threads_env(threads: int) -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": threads, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def bench_lovasz(repeats: int = 15, warmup: int = 3, batch: int = LOVASZ_BATCH, hw: tuple[int, int] = LOVASZ_HW,
                 classes: int = LOVASZ_CLASSES, threads: int = 2, quick: bool = False, seed: int = 0) -> dict:
    """Time :func:`bevlib.losses.lovasz_softmax` (vectorised over classes) forward + backward against
    Berman et al.'s per-class loop (:func:`_reference_lovasz_softmax`), side by side in one process.

    Input: (batch, classes, H, W) float32 logits (random, biased towards the label) and (batch, H, W)
    labels uniform over the classes with :data:`LOVASZ_IGNORE_SHARE` of them ``IGNORE`` (255).
    Each timed run is softmax + loss + backward to the logits. Timed round-robin (alternating
    order), median of ``repeats``. Target (reported, not enforced): >= 3 x faster; the loss values
    and the logits' gradients must agree within :data:`LOVASZ_TOLERANCE` (``within_tolerance``).

    Returns: the result dict (``results``: one row, see :func:`main`).
    Raises: ValueError for repeats < 1, warmup < 0, batch < 1 or classes < 2.
    """
    from .classes import IGNORE
    from .losses import lovasz_softmax

    if repeats < 1 or warmup < 0 or batch < 1 or classes < 2:
        raise ValueError(f"need repeats >= 1, warmup >= 0, batch >= 1, classes >= 2; "
                         f"got {repeats}, {warmup}, {batch}, {classes}")
    h, w = hw
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, (batch, h, w), generator=gen)
    target[torch.rand(batch, h, w, generator=gen) < LOVASZ_IGNORE_SHARE] = IGNORE
    logits0 = torch.randn(batch, classes, h, w, generator=gen)
    logits0 += 2.0 * F.one_hot(target.clamp_max(classes - 1), classes).movedim(-1, 1).float()
    logits = logits0.requires_grad_(True)
    methods = {"library": lambda: lovasz_softmax(logits, target, ignore_index=IGNORE),
               "reference": lambda: _reference_lovasz_softmax(logits, target, IGNORE)}

    def run(name):
        loss = methods[name]()
        loss.backward()
        grad, logits.grad = logits.grad, None
        return loss.detach(), grad

    load_start = _load()
    reused = reuse_large_allocations()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        outs = {}
        for name in methods:
            for _ in range(warmup):
                run(name)
            outs[name] = run(name)
        samples = {name: [] for name in methods}
        names = list(methods)
        for i in range(repeats):
            for name in names[i % 2:] + names[:i % 2]:
                t0 = time.perf_counter()
                run(name)
                samples[name].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    (la, ga), (lr, gr) = outs["library"], outs["reference"]
    row = {"library_ms": _median_ms(samples["library"]), "reference_ms": _median_ms(samples["reference"]),
           "library_min_ms": round(1e3 * min(samples["library"]), 3),
           "reference_min_ms": round(1e3 * min(samples["reference"]), 3),
           "speedup_paired": round(statistics.median(r / v for r, v in zip(samples["reference"],
                                                                             samples["library"])), 2),
           "loss": float(la), "loss_max_abs_diff": float((la - lr).abs()),
           "grad_max_abs_diff": float((ga - gr).abs().max()),
           "labelled_pixels": int((target != IGNORE).sum()),
           "present_classes": int(torch.unique(target[target != IGNORE]).numel())}
    row["speedup"] = round(row["reference_ms"] / row["library_ms"], 2)
    row["within_tolerance"] = bool(row["loss_max_abs_diff"] <= LOVASZ_TOLERANCE
                                   and row["grad_max_abs_diff"] <= LOVASZ_TOLERANCE)
    row["meets_target"] = bool(row["within_tolerance"] and row["speedup_paired"] >= TARGET_LOVASZ_SPEEDUP)
    return {
        "benchmark": "lovasz", "schema_version": SCHEMA_VERSION,
        "config": {"batch": batch, "hw": list(hw), "classes": classes, "ignore_index": IGNORE,
                   "ignore_share": LOVASZ_IGNORE_SHARE, "pass": "forward+backward", "repeats": repeats,
                   "warmup": warmup, "threads": threads, "quick": quick, "reuse_large_allocations": reused,
                   "reference": "Berman et al. 2018 per-class loop (sort, Lovasz gradient by cumulative sums, "
                                "dot product), classes='present', per_image=False",
                   "statistic": "median over repeats, ms; methods timed round-robin (alternating order) in one "
                                "process; the target is judged on speedup_paired, the median of per-repeat "
                                "reference/library ratios"},
        "environment": {**_threads_env(threads), "load_average_1min": {"start": load_start, "end": _load()}},
        "targets": {"speedup_min": TARGET_LOVASZ_SPEEDUP, "max_abs_diff": LOVASZ_TOLERANCE},
        "results": [row],
        "summary": {"speedup_paired": row["speedup_paired"], "within_tolerance": row["within_tolerance"],
                    "meets_target": row["meets_target"]},
    }


def format_lovasz_table(result: dict) -> str:
    """The Lovasz benchmark as a fixed-width text table."""
    cfg, r = result["config"], result["results"][0]
    lines = [f"lovasz benchmark: {cfg['batch']} x {cfg['classes']} x {cfg['hw'][0]}x{cfg['hw'][1]} logits "
             f"(+ ignore), forward+backward, {cfg['threads']} threads, median of {cfg['repeats']} (ms)",
             f"{'library':>9} {'reference':>10} {'speedup':>8} {'paired':>7} {'|dloss|':>9} {'|dgrad|':>9}"]
    lines.append("-" * len(lines[-1]))
    lines.append(f"{r['library_ms']:>9.2f} {r['reference_ms']:>10.2f} {r['speedup']:>8.2f} {r['speedup_paired']:>7.2f} "
                 f"{r['loss_max_abs_diff']:>9.1e} {r['grad_max_abs_diff']:>9.1e}")
    t = result["targets"]
    lines.append(f"targets: >= {t['speedup_min']} x faster, |diff| <= {t['max_abs_diff']:g} -> paired "
                 f"{r['speedup_paired']:.2f}, within tolerance {r['within_tolerance']} "
                 f"({'met' if r['meets_target'] else 'NOT met'})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- rangevit
#: Points in a 32 x 384 crop: a 34,688-point sweep's share of 384 of 2048 columns.
RANGEVIT_POINTS = 6500
PEAK_MM_N = 2048


def _rangevit_input(H: int, W: int, n_points: int, seed: int):
    """A plausible crop: a 32-beam HDL-32E-like sweep of a street (ground at -1.84 m, walls at
    6-22 m varying with azimuth, cm noise) projected with :func:`bevlib.range_view.project_to_range`
    to H x 2048 and cropped to the middle W columns; about ``n_points`` points fall inside.

    Returns: range image (1, 5, H, W) float32, points (N, 3) float32 sensor frame, u (N,), v (N,) int64.
    """
    from .range_view import RangeProjection, project_to_range

    rng = np.random.default_rng(seed)
    full_w = 2048
    # points over the whole turn so that about n_points fall into the W-column crop
    steps = max(1, int(round(n_points * full_w / (W * H))))
    el = np.radians(np.linspace(-30.67, 10.67, H))[:, None] + rng.normal(0, 0.002, (H, steps))
    az = np.linspace(-np.pi, np.pi, steps, endpoint=False)[None] + rng.normal(0, 0.001, (H, steps))
    wall = 14.0 + 6.0 * np.sin(3.0 * az) + 2.0 * np.sign(np.sin(11.0 * az))      # horizontal distance
    ground = np.where(el < 0, 1.84 / np.tan(np.clip(-el, 1e-3, None)), np.inf)  # horizontal distance
    d = np.minimum(wall, ground) + rng.normal(0, 0.02, (H, steps))
    xyz = np.stack([d * np.cos(az), d * np.sin(az), d * np.tan(el)], -1).reshape(-1, 3)
    pts = np.column_stack([xyz, rng.uniform(0, 255, len(xyz))]).astype(np.float32)
    ring = np.repeat(np.arange(H), steps).astype(np.int64)
    img = project_to_range(pts, ring, RangeProjection(H=H, W=full_w))
    c0 = (full_w - W) // 2
    sel = (img.u >= c0) & (img.u < c0 + W)
    image = torch.from_numpy(img.image[:, :, c0:c0 + W].copy())[None]
    image[:, 0] /= 50.0       # roughly unit-scale channels, as a training pipeline normalises them
    image[:, 1] /= 255.0
    image[:, 2:] /= 20.0
    return (image, torch.from_numpy(pts[sel, :3].copy()), torch.from_numpy(img.u[sel] - c0),
            torch.from_numpy(img.v[sel]))


def measure_mm_peak(n: int = PEAK_MM_N, tries: int = 5, warm: bool = True) -> float:
    """Best float32 ``torch.mm`` (n x n) @ (n x n) FLOP/s (2 n^3 per product) on the current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    if warm:
        torch.mm(a, b)
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def bench_rangevit(steps: int = 7, warmup: int = 2, threads: int = 2, model_cfg: dict | None = None,
                   points: int = RANGEVIT_POINTS, peak_n: int = PEAK_MM_N, quick: bool = False,
                   seed: int = 0) -> dict:
    """Time one RangeViT training step and its share of the CPU's dense-matmul peak.

    Model: ``build_model("rangevit", model_cfg)`` (default ``{}``: :class:`RangeViTConfig`'s paper
    sizes, stem 256, D 384, 12 layers, 6 heads), batch 1 crop of ``image_size`` (32 x 384) with
    about ``points`` points for the KPConv refiner (:func:`_rangevit_input`). A step: forward
    (pixel and point logits), cross-entropy on both (random labels), backward, AdamW step.
    Median of ``steps`` timed steps after ``warmup``. FLOPs: ``FlopCounterMode`` over one
    forward + backward (matmuls, convolutions, attention; the optimiser's element-wise work is not
    counted, its time is). Peak: :func:`measure_mm_peak` (best of a few n x n float32 ``torch.mm``)
    on the same threads, before the steps, between them (one product each) and after; the best.

    Returns: the result dict (``results``: one row, see :func:`main`).
    Raises: ValueError for steps < 1 or warmup < 0.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from .models.rangevit import RangeViTConfig
    from .models.registry import build_model

    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    model_cfg = dict(model_cfg or {})
    load_start = _load()
    reused = reuse_large_allocations()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = build_model("rangevit", model_cfg)
        cfg: RangeViTConfig = model.cfg
        H, W = cfg.image_size
        image, pts, u, v = _rangevit_input(H, W, points, seed)
        gen = torch.Generator().manual_seed(seed)
        pix_y = torch.randint(0, cfg.num_classes, (1, H, W), generator=gen)
        pt_y = torch.randint(0, cfg.num_classes, (len(pts),), generator=gen)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()

        def fwd_bwd():
            out = model(image, pts, u, v)
            loss = F.cross_entropy(out["pixel_logits"], pix_y) + F.cross_entropy(out["point_logits"], pt_y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            return loss

        def step():
            loss = fwd_bwd()
            opt.step()
            return loss

        peak_before = measure_mm_peak(peak_n)
        for _ in range(warmup):
            step()
        samples, peak_between = [], []
        for _ in range(steps):
            # one product between steps too: the peak is the best over many moments, so a burst
            # of load from other processes during the before / after tries does not lower it
            peak_between.append(measure_mm_peak(peak_n, tries=1, warm=False))
            t0 = time.perf_counter()
            step()
            samples.append(time.perf_counter() - t0)
        counter = FlopCounterMode(display=False)
        with counter:
            fwd_bwd()
        flops = int(counter.get_total_flops())
        by_module = {k: int(sum(v.values())) for k, v in counter.get_flop_counts().items()
                     if k in ("Global", "RangeViT.stem", "RangeViT.encoder", "RangeViT.decoder",
                              "RangeViT.pixel_head", "RangeViT.refiner")}
        by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
        peak_after = measure_mm_peak(peak_n)
    finally:
        torch.set_num_threads(old_threads)
    peak = max(peak_before, peak_after, *peak_between)
    med = statistics.median(samples)
    row = {"step_ms": _median_ms(samples), "step_min_ms": round(1e3 * min(samples), 3),
           "flops_per_step": flops, "gflops_per_step": round(flops / 1e9, 2),
           "achieved_gflops_s": round(flops / med / 1e9, 2),
           "peak_mm_gflops_s": round(peak / 1e9, 2),
           "peak_mm_gflops_s_before_between_after": [round(peak_before / 1e9, 2),
                                                     round(max(peak_between) / 1e9, 2), round(peak_after / 1e9, 2)],
           "share_of_peak": round(flops / med / peak, 4),
           # the fastest step: far less disturbed by other processes' load than the median
           "share_of_peak_fastest_step": round(flops / min(samples) / peak, 4),
           "flops_by_module": by_module, "flops_by_op": by_op,
           "parameters": int(sum(p.numel() for p in model.parameters())), "points": int(len(pts))}
    from .models.rangevit import config_dict

    return {
        "benchmark": "rangevit", "schema_version": SCHEMA_VERSION,
        "config": {"model": config_dict(cfg), "batch": 1, "image_hw": [H, W], "points": int(len(pts)),
                   "step": "forward (pixel + point logits) + cross-entropy + backward + AdamW step",
                   "steps": steps, "warmup": warmup, "threads": threads, "quick": quick,
                   "peak_mm_n": peak_n, "reuse_large_allocations": reused,
                   "flops": "torch.utils.flop_counter.FlopCounterMode, one forward + backward (optimiser not counted)",
                   "statistic": "median over steps, ms; share_of_peak = flops_per_step / median step time / "
                                "best float32 torch.mm FLOP/s on the same threads"},
        "environment": {**_threads_env(threads), "load_average_1min": {"start": load_start, "end": _load()}},
        "results": [row],
        "summary": {"step_ms": row["step_ms"], "share_of_peak": row["share_of_peak"],
                    "share_of_peak_fastest_step": row["share_of_peak_fastest_step"]},
    }


def format_rangevit_table(result: dict) -> str:
    """The RangeViT step benchmark as a fixed-width text table."""
    cfg, r = result["config"], result["results"][0]
    m = cfg["model"]
    lines = [f"rangevit training step: stem {m['stem_channels']}, D {m['embed_dim']}, depth {m['depth']}, "
             f"heads {m['heads']}, 1 x {cfg['image_hw'][0]}x{cfg['image_hw'][1]}, {cfg['points']} points, "
             f"{cfg['threads']} threads, median of {cfg['steps']}",
             f"{'step ms':>9} {'min ms':>9} {'GFLOP':>8} {'GFLOP/s':>8} {'mm peak':>8} {'share':>7} {'best':>7}"]
    lines.append("-" * len(lines[-1]))
    lines.append(f"{r['step_ms']:>9.1f} {r['step_min_ms']:>9.1f} {r['gflops_per_step']:>8.2f} "
                 f"{r['achieved_gflops_s']:>8.2f} {r['peak_mm_gflops_s']:>8.2f} {100 * r['share_of_peak']:>6.1f}% "
                 f"{100 * r['share_of_peak_fastest_step']:>6.1f}%")
    load = result["environment"]["load_average_1min"]
    lines.append(f"share = FLOPs / median step / best {cfg['peak_mm_n']}^2 float32 torch.mm FLOP/s (best: fastest "
                 f"step); load average {load['start']} -> {load['end']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """CLI: ``python -m bevlib.bench render [--repeats N] [--out PATH] [--quick] [--batch B]``.

    Writes the result JSON (atomically) and prints the table. JSON keys: ``benchmark``,
    ``schema_version``, ``config``, ``environment`` (``pytorch3d``: "available <v>" or
    "unavailable: <why>"; ``native_kernels``: :func:`bevlib.native.status`), ``targets``, ``results`` (per case: ``channels``, ``bev_hw``, ``pass``,
    ``floor_ms``, ``flat_floor_ms``, ``analytic_ms`` (medians; ``*_min_ms`` minima),
    ``analytic_over_floor`` (ratio of medians), ``analytic_over_floor_paired`` (median of per-repeat
    ratios; judged against the target), ``analytic_over_flat_floor``, ``pytorch3d_ms`` (number or
    "unavailable..."), ``pytorch3d_over_analytic``, ``analytic_equals_floor`` /
    ``analytic_equals_flat_floor`` (bitwise), forward rows also ``analytic_cold_ms`` (first render
    of an uncached rig), backward rows ``analytic_grad_max_abs_diff_floor`` and
    ``analytic_grad_max_abs_diff_flat_floor``), ``summary``.
    """
    ap = argparse.ArgumentParser(prog="python -m bevlib.bench", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("render", help="BEV -> camera renderer: analytic vs grid_sample floor vs PyTorch3D")
    r.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 15; 3 with --quick)")
    r.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3; 1 with --quick)")
    r.add_argument("--batch", type=int, default=1, help="keyframes per render call (default 1)")
    r.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    r.add_argument("--out", default=None, help="JSON path (default <project>/outputs/bench/render.json)")
    r.add_argument("--quick", action="store_true",
                   help=f"small images ({QUICK_IMAGE_HW[0]}x{QUICK_IMAGE_HW[1]}) and few repeats, for tests")
    r.add_argument("--no-pytorch3d", action="store_true", help="skip the PyTorch3D backend")
    g = sub.add_parser("range", help="LiDAR range projection: vectorised vs sort-and-assign reference")
    g.add_argument("--repeats", type=int, default=None, help="timed runs per row mode (default 15; 10 with --quick)")
    g.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3; 1 with --quick)")
    g.add_argument("--synthetic", action="store_true", help="a synthetic 34,688-point sweep, not the real one")
    g.add_argument("--out", default=None, help="JSON path (default <project>/outputs/bench/range.json)")
    g.add_argument("--quick", action="store_true", help="fewer repeats, for tests")
    lv = sub.add_parser("lovasz", help="Lovasz-softmax forward+backward: vectorised vs per-class loop reference")
    lv.add_argument("--repeats", type=int, default=None, help="timed runs (default 15; 10 with --quick)")
    lv.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 3; 1 with --quick)")
    lv.add_argument("--batch", type=int, default=LOVASZ_BATCH, help=f"crops per batch (default {LOVASZ_BATCH})")
    lv.add_argument("--hw", type=int, nargs=2, default=list(LOVASZ_HW), metavar=("H", "W"),
                    help=f"crop size (default {LOVASZ_HW[0]} {LOVASZ_HW[1]})")
    lv.add_argument("--classes", type=int, default=LOVASZ_CLASSES, help=f"classes (default {LOVASZ_CLASSES})")
    lv.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    lv.add_argument("--out", default=None, help="JSON path (default <project>/outputs/bench/lovasz.json)")
    lv.add_argument("--quick", action="store_true", help="fewer repeats, for tests")
    rv = sub.add_parser("rangevit", help="RangeViT training step (paper sizes): time and share of the matmul peak")
    rv.add_argument("--steps", type=int, default=None, help="timed steps (default 7; 3 with --quick)")
    rv.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; 1 with --quick)")
    rv.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    rv.add_argument("--points", type=int, default=RANGEVIT_POINTS,
                    help=f"about this many points in the crop (default {RANGEVIT_POINTS})")
    rv.add_argument("--model-config", default=None,
                    help="JSON dict of RangeViTConfig fields (default {}: the paper's sizes)")
    rv.add_argument("--out", default=None, help="JSON path (default <project>/outputs/bench/rangevit.json)")
    rv.add_argument("--quick", action="store_true", help="fewer steps, for tests")
    dp = sub.add_parser("depth", help="IP-Basic depth completion on 1600x900 vs the reported 11 ms per KITTI frame")
    dp.add_argument("--repeats", type=int, default=None, help="timed runs per setting (default 15; 10 with --quick)")
    dp.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 2; 1 with --quick)")
    dp.add_argument("--wh", type=int, nargs=2, default=[1600, 900], metavar=("W", "H"), help="image size")
    dp.add_argument("--out", default=None, help="JSON path (default <project>/outputs/bench/depth.json)")
    dp.add_argument("--quick", action="store_true", help="fewer repeats, for tests")
    a = ap.parse_args(argv)
    if a.what == "depth":
        from .depth_completion import bench_depth, format_depth_table

        result = bench_depth(repeats=a.repeats if a.repeats is not None else (10 if a.quick else 15),
                             warmup=a.warmup if a.warmup is not None else (1 if a.quick else 2),
                             wh=tuple(a.wh), quick=a.quick)
        out = Path(a.out) if a.out else outputs_dir("bench", "depth.json")
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        print(format_depth_table(result))
        print(f"wrote {out}")
        return 0
    if a.what == "lovasz":
        result = bench_lovasz(repeats=a.repeats if a.repeats is not None else (10 if a.quick else 15),
                              warmup=a.warmup if a.warmup is not None else (1 if a.quick else 3),
                              batch=a.batch, hw=tuple(a.hw), classes=a.classes, threads=a.threads, quick=a.quick)
        out = Path(a.out) if a.out else outputs_dir("bench", "lovasz.json")
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        print(format_lovasz_table(result))
        print(f"wrote {out}")
        return 0
    if a.what == "rangevit":
        result = bench_rangevit(steps=a.steps if a.steps is not None else (3 if a.quick else 7),
                                warmup=a.warmup if a.warmup is not None else (1 if a.quick else 2),
                                threads=a.threads, points=a.points, quick=a.quick,
                                model_cfg=json.loads(a.model_config) if a.model_config else None)
        out = Path(a.out) if a.out else outputs_dir("bench", "rangevit.json")
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        print(format_rangevit_table(result))
        print(f"wrote {out}")
        return 0
    if a.what == "range":
        result = bench_range(repeats=a.repeats if a.repeats is not None else (10 if a.quick else 15),
                             warmup=a.warmup if a.warmup is not None else (1 if a.quick else 3),
                             synthetic=a.synthetic, quick=a.quick)
        out = Path(a.out) if a.out else outputs_dir("bench", "range.json")
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        print(format_range_table(result))
        print(f"wrote {out}")
        return 0
    repeats = a.repeats if a.repeats is not None else (3 if a.quick else 15)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 3)
    result = bench_render(repeats=repeats, warmup=warmup, batch=a.batch, threads=a.threads,
                          image_hw=QUICK_IMAGE_HW if a.quick else IMAGE_HW, pytorch3d=not a.no_pytorch3d,
                          quick=a.quick)
    out = Path(a.out) if a.out else outputs_dir("bench", "render.json")
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
