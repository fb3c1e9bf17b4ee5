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
* ``cold``: the public API with a rig it has never seen at every call (issue 15: on real nuScenes
  each camera has its own ego pose, so every keyframe's rig is new): building the rig's valid
  pixels and render plan (one native pass over all cameras on CPU) plus the render, checked bit
  for bit against grid_sample on the numpy reference grid of the same rig;
* ``pytorch3d``: ``render_bev(..., backend="pytorch3d")``, the paper's mesh rasteriser, where
  pytorch3d imports ("unavailable" otherwise).

Setting (busch2026 Sec. IV-A): the real nuScenes camera rig (:data:`bevlib.data.world.NUSCENES_RIG`)
at 288 x 512 pixels, 6 cameras, C in {4 (background + 3 map classes), 13}, BEV 150 x 150 and
200 x 200, forward and forward + backward, batch 1, ``torch.set_num_threads(2)``. Methods are timed
round-robin within each repeat (rotating the order), so load from other processes hits all of them
alike; each time is the median of ``repeats`` runs after ``warmup`` runs. Targets reported against
(not enforced): analytic <= 1.5 x the floor (judged on the median of the per-repeat ratios, which a
busy machine disturbs far less than the ratio of medians), >= 10 x faster than PyTorch3D, and a
cold forward + backward (new rig) <= 2 x a cached one (paired the same way; forward-only ratios shown).

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

``python -m bevlib.bench splat``: the combined-datasets paper's LSS splat (:mod:`bevlib.models.lss`,
:mod:`bevlib.bench_splat`): 6 cameras x D = 59 depth bins x 32 x 88 features x 80 channels into a
128 x 128 BEV grid, forward and forward + backward, against the cumulative-sum trick of Philion & Fidler's
lift-splat (written from their description, marked as the reference) and the floor of one read of the
frustum features; outputs asserted equal; target (reported): >= 2 x faster than the cumsum reference.
JSON to ``outputs/bench/splat.json``.

``python -m bevlib.bench memory``: peak resident memory of busch2026 training steps at the paper preset
(``params/table1/paper.yaml``: 512 x 288, ResNet-50, 150 x 150 queries) on CPU, each
batch size in a child process (an OOM kill is reported, not suffered), and what fills it: the bytes autograd saves
for backward per module, the live-tensor peak, parameters and AdamW state. JSON to ``outputs/bench/memory.json``.
Module: :mod:`bevlib.experiments.busch2026.bench_memory` (with ``pipeline``'s, loaded by name: see
:data:`EXPERIMENT_BENCHES`).

``python -m bevlib.bench pipeline``: whether busch2026 Table I's input pipeline keeps up with its training
step (:mod:`bevlib.experiments.busch2026.bench_pipeline`): keyframes per second of the data layer (the
trainer's DataLoader, 0 / 1 / 2 workers, preloaded or read per item with field caches cold and warm) on the embedded world (per-camera ego
poses) and the real keyframe, the model's steps per second, and the share of a training step spent waiting
for data in the trainer's loop; target (reported) <= 10 % with the default workers at the embedded-default
size. JSON to ``outputs/bench/pipeline.json``.

``python -m bevlib.bench sparse``: chen2024 CSC's MinkUNet sparse-voxel conv (:mod:`bevlib.models.sparse_conv`,
:mod:`bevlib.bench_sparse`): the real LIDAR_TOP sweep (or ``--synthetic``) voxelised at 0.1 m, a stride-1
K = 3 conv 64 -> 64, forward and forward + backward, against one matmul over the kernel map's pairs (the
compute floor) and dense ``conv3d`` on the occupied bounding grid where it fits ("too large" otherwise;
``--crop M`` to make it fit), outputs asserted equal; no target. JSON to ``outputs/bench/sparse.json``.
"""
from __future__ import annotations

from .runtime import reuse_large_allocations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import native, render
from .bench_common import SCHEMA_VERSION, _load, _median_ms, environment
from .bench_sparse import add_sparse_parser, run_sparse
from .bench_splat import add_splat_parser, run_splat
from .bench_lidar import (LOVASZ_BATCH, LOVASZ_CLASSES, LOVASZ_HW, RANGEVIT_POINTS, TARGET_LOVASZ_SPEEDUP,  # noqa: F401
                          TARGET_RANGE_SPEEDUP, _rangevit_input, _reference_lovasz_softmax, bench_lovasz, bench_range,
                          bench_rangevit, format_lovasz_table, format_range_table, format_rangevit_table,
                          measure_mm_peak)
from .bev import BEVGrid
from .geometry import scale_intrinsics, transform_from
from .io import atomic_write_text
from .paths import outputs_dir

#: busch2026 Sec. IV-A image size (h, w) and the quick (test) size.
IMAGE_HW = (288, 512)
QUICK_IMAGE_HW = (72, 128)
TARGET_ANALYTIC_OVER_FLOOR = 1.5
TARGET_PYTORCH3D_OVER_ANALYTIC = 10.0
#: issue 15: a training step's render (forward + backward) of a new rig within 2 x of a cached one.
TARGET_COLD_OVER_WARM = 2.0
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

    # Cold: a rig never seen before at every call, as on real nuScenes where each camera has its own
    # ego pose; the rigs differ by a 0.1 mm shift per call, so the work is that of the fixed rig.
    shifts = iter(range(1, 1 << 30))
    last_cold = {}

    def cold():
        Tc = T.clone()
        Tc[..., 0, 3] += 1e-4 * next(shifts)
        last_cold["T"] = Tc
        return render.render_bev(x, K, Tc, image_hw, grid)[0]

    def p3d():
        return render.render_bev(x, K, T, image_hw, grid, backend="pytorch3d")[0]

    methods = {"floor": (floor, g_floor), "flat_floor": (flat_floor, g_analytic), "analytic": (analytic, g_analytic),
               "cold": (cold, g_analytic)}
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
            if name == "cold":
                cold_T = last_cold["T"]
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
    # The cold render against grid_sample on the numpy reference grid of its own (new) rig.
    out_c, grad_c = results["cold"]
    Tc = cold_T
    cold_grid = torch.stack([render.sampling_grid(K[b], Tc[b], image_hw, grid)[0] for b in range(batch)])
    xc = x.detach().requires_grad_(backward)
    out_cf = F.grid_sample(xc[:, None].expand(batch, N, C, S, S).reshape(batch * N, C, S, S),
                           cold_grid.view(batch * N, h, w, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
    if backward:
        out_cf.backward(g_floor)
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
        "cold_ms": _median_ms(samples["cold"]),
        "cold_min_ms": round(1e3 * min(samples["cold"]), 3),
        # Per-repeat pairs, as for the floor target: both see the same load from other processes.
        "cold_over_warm_paired": round(statistics.median(c / a for c, a in zip(samples["cold"], samples["analytic"])), 3),
        "cold_equals_floor": bool(torch.equal(out_c, out_cf.detach().view(batch, N, C, h, w))),
    }
    row["meets_cold_target"] = row["cold_over_warm_paired"] <= TARGET_COLD_OVER_WARM
    if backward:
        # On CPU the analytic backward is the native kernel (per-thread accumulation, not
        # grid_sample's scatter-add): equal to the floor's gradient up to summation order.
        row["analytic_grad_max_abs_diff_floor"] = float((grad_a - grad_f).abs().max())
        # Summation order over the cameras differs from the flat layout's: equal up to rounding.
        row["analytic_grad_max_abs_diff_flat_floor"] = float((grad_a - grad_flat).abs().max())
        row["cold_grad_max_abs_diff_floor"] = float((grad_c - xc.grad).abs().max())
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
        "all_outputs_equal": all(r["analytic_equals_floor"] and r["analytic_equals_flat_floor"] and r["cold_equals_floor"]
                                 for r in rows),
        # The issue-15 target is a training step's render: forward + backward (forward rows are shown too).
        "max_cold_over_warm_paired": max((r["cold_over_warm_paired"] for r in rows if r["pass"] == "forward+backward"),
                                         default=UNAVAILABLE),
        "max_cold_over_warm_forward_paired": max((r["cold_over_warm_paired"] for r in rows if r["pass"] == "forward"),
                                                 default=UNAVAILABLE),
        "meets_cold_target": (all(r["meets_cold_target"] for r in rows if r["pass"] == "forward+backward")
                              if "forward+backward" in passes else UNAVAILABLE),
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
        "environment": environment(load_start, torch=torch.__version__, machine=platform.machine(),
                                   processor=platform.processor() or platform.machine(), pytorch3d=p3d_status,
                                   native_kernels=native.status(),
                                   torch_cpu_capability=torch.backends.cpu.get_cpu_capability()),
        "targets": {"analytic_over_floor_max": TARGET_ANALYTIC_OVER_FLOOR, "cold_over_warm_max": TARGET_COLD_OVER_WARM,
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
            f"{'an/flat':>8} {'cold':>8} {'cold/an':>8} {'pytorch3d':>10} {'p3d/an':>7} {'equal':>6}")
    lines = [head, cols, "-" * len(cols)]
    for r in result["results"]:
        bev = f"{r['bev_hw'][0]}x{r['bev_hw'][1]}"
        lines.append(
            f"{r['channels']:>3} {bev:>8} {r['pass']:>17} {r['floor_ms']:>9.2f} {r['analytic_ms']:>9.2f} "
            f"{r['analytic_over_floor']:>9.3f} {r['analytic_over_floor_paired']:>7.3f} {r['flat_floor_ms']:>8.2f} "
            f"{r['analytic_over_flat_floor']:>8.3f} "
            f"{r['cold_ms']:>8.2f} {r['cold_over_warm_paired']:>8.2f} {fmt(r['pytorch3d_ms'], '.1f'):>10} "
            f"{fmt(r['pytorch3d_over_analytic'], '.1f'):>7} {str(r['analytic_equals_floor'] and r['cold_equals_floor']):>6}")
    s, t = result["summary"], result["targets"]
    lines.append(f"targets: analytic <= {t['analytic_over_floor_max']} x floor -> max (paired) "
                 f"{s['max_analytic_over_floor_paired']:.3f} ({verdict(s['meets_floor_target'])}); "
                 f"pytorch3d >= {t['pytorch3d_over_analytic_min']} x analytic -> min "
                 f"{fmt(s['min_pytorch3d_over_analytic'], '.1f')} ({verdict(s['meets_pytorch3d_target'])}); "
                 f"cold (new rig) forward+backward <= {t['cold_over_warm_max']} x cached -> max (paired) "
                 f"{fmt(s['max_cold_over_warm_paired'], '.2f')} ({verdict(s['meets_cold_target'])}; forward only: "
                 f"max {fmt(s['max_cold_over_warm_forward_paired'], '.2f')})")
    return "\n".join(lines)



def _emit(result: dict, out, name: str, fmt) -> int:
    """Write a case's JSON atomically (``--out`` or outputs/bench/<name>.json), print its table; exit code 0."""
    out = Path(out) if out else outputs_dir("bench", f"{name}.json")
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(fmt(result))
    print(f"wrote {out}")
    return 0


#: Benchmarks of a paper's whole pipeline live with the paper's experiment code; the CLI loads them by
#: module name (as the scoreboard loads claims), so no library module imports an experiment. Each module
#: has ``add_<name>_parser(subparsers)`` and ``run_<name>(args, emit)``. Only the sub-command asked for is
#: imported (the experiment packages pull in the data stack: nuscenes-devkit, shapely, ...); the others
#: are listed with the one-line help given here.
EXPERIMENT_BENCHES = {
    "memory": ("bevlib.experiments.busch2026.bench_memory",
               "peak RSS of busch2026 training steps on CPU, and which modules dominate"),
    "pipeline": ("bevlib.experiments.busch2026.bench_pipeline",
                 "Table I input pipeline: keyframes/s delivered vs training steps/s, share of a step waiting for data"),
}


def _experiment_benches(sub, argv: list[str]) -> dict:
    """Register the experiment benchmarks on the sub-parsers; returns ``{name: runner}`` for the one named in
    ``argv`` (its module imported, its own options registered), placeholders for the rest."""
    import importlib

    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    runners = {}
    for name, (module, help_line) in EXPERIMENT_BENCHES.items():
        if name != chosen:
            sub.add_parser(name, help=help_line)
            continue
        m = importlib.import_module(module)
        getattr(m, f"add_{name}_parser")(sub)
        runners[name] = getattr(m, f"run_{name}")
    return runners


def main(argv=None) -> int:
    """CLI: ``python -m bevlib.bench render [--repeats N] [--out PATH] [--quick] [--batch B]``.

    Writes the result JSON (atomically) and prints the table. JSON keys: ``benchmark``,
    ``schema_version``, ``config``, ``environment`` (``pytorch3d``: "available <v>" or
    "unavailable: <why>"; ``native_kernels``: :func:`bevlib.native.status`), ``targets``, ``results`` (per case: ``channels``, ``bev_hw``, ``pass``,
    ``floor_ms``, ``flat_floor_ms``, ``analytic_ms`` (medians; ``*_min_ms`` minima),
    ``analytic_over_floor`` (ratio of medians), ``analytic_over_floor_paired`` (median of per-repeat
    ratios; judged against the target), ``analytic_over_flat_floor``, ``pytorch3d_ms`` (number or
    "unavailable..."), ``pytorch3d_over_analytic``, ``analytic_equals_floor`` /
    ``analytic_equals_flat_floor`` (bitwise), ``cold_ms`` (a new rig at every call, as on real
    nuScenes), ``cold_over_warm_paired`` (median of per-repeat cold / analytic; judged against
    ``TARGET_COLD_OVER_WARM``), ``cold_equals_floor`` (bitwise, against grid_sample on the numpy
    grid of the same new rig), backward rows ``analytic_grad_max_abs_diff_floor``,
    ``analytic_grad_max_abs_diff_flat_floor`` and ``cold_grad_max_abs_diff_floor``), ``summary``.
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
    add_splat_parser(sub)
    add_sparse_parser(sub)
    argv = sys.argv[1:] if argv is None else list(argv)
    experiment_benches = _experiment_benches(sub, argv)
    a = ap.parse_args(argv)
    if a.what == "sparse":
        return run_sparse(a, _emit)
    if a.what in experiment_benches:
        return experiment_benches[a.what](a, _emit)
    if a.what == "splat":
        return run_splat(a, _emit)
    if a.what == "depth":
        from .depth_completion import bench_depth, format_depth_table

        result = bench_depth(repeats=a.repeats if a.repeats is not None else (10 if a.quick else 15),
                             warmup=a.warmup if a.warmup is not None else (1 if a.quick else 2),
                             wh=tuple(a.wh), quick=a.quick)
        return _emit(result, a.out, "depth", format_depth_table)
    if a.what == "lovasz":
        result = bench_lovasz(repeats=a.repeats if a.repeats is not None else (10 if a.quick else 15),
                              warmup=a.warmup if a.warmup is not None else (1 if a.quick else 3),
                              batch=a.batch, hw=tuple(a.hw), classes=a.classes, threads=a.threads, quick=a.quick)
        return _emit(result, a.out, "lovasz", format_lovasz_table)
    if a.what == "rangevit":
        result = bench_rangevit(steps=a.steps if a.steps is not None else (3 if a.quick else 7),
                                warmup=a.warmup if a.warmup is not None else (1 if a.quick else 2),
                                threads=a.threads, points=a.points, quick=a.quick,
                                model_cfg=json.loads(a.model_config) if a.model_config else None)
        return _emit(result, a.out, "rangevit", format_rangevit_table)
    if a.what == "range":
        result = bench_range(repeats=a.repeats if a.repeats is not None else (10 if a.quick else 15),
                             warmup=a.warmup if a.warmup is not None else (1 if a.quick else 3),
                             synthetic=a.synthetic, quick=a.quick)
        return _emit(result, a.out, "range", format_range_table)
    repeats = a.repeats if a.repeats is not None else (3 if a.quick else 15)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 3)
    result = bench_render(repeats=repeats, warmup=warmup, batch=a.batch, threads=a.threads,
                          image_hw=QUICK_IMAGE_HW if a.quick else IMAGE_HW, pytorch3d=not a.no_pytorch3d,
                          quick=a.quick)
    return _emit(result, a.out, "render", format_table)


if __name__ == "__main__":
    sys.exit(main())
