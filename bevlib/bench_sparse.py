"""``python -m bevlib.bench sparse``: the pure-torch sparse-voxel convolution of chen2024 CSC's MinkUNet
(:mod:`bevlib.models.sparse_conv`, issue 14) against its compute floor and the dense ``conv3d`` floor.

Setting: one LiDAR sweep voxelised at 0.1 m (SLidR / CSC's voxel size): the real nuScenes LIDAR_TOP
keyframe sweep (``../shared/nuscenes-keyframe/samples/LIDAR_TOP/*.pcd.bin``, read in place) or, where it
is absent or with ``--synthetic``, a synthetic HDL-32E-like sweep of the same size; optionally cropped
to ``|x|, |y| < crop`` metres. Features 64 channels (random, fixed), a stride-1 (submanifold) K = 3 conv
64 -> 64, float32, batch 1. Methods, timed round-robin (rotating order) in one process, median of
``repeats``:

* ``ours``: :func:`~bevlib.models.sparse_conv.sparse_conv3d` with the kernel map cached (as in a network,
  where every conv on the same coordinates shares it; the map's one-off build is ``map_build_ms``);
* ``mm_floor``: one ``(L, 64) @ (64, 64)`` matmul, L the number of (input, output) pairs of the kernel
  map: the multiply-adds of the op without its gathers and scatters;
* ``dense``: ``F.conv3d`` (padding 1) on the occupied bounding grid, the floor a dense backbone pays,
  run only where its estimated memory fits ``dense_limit_gb`` ("too large" otherwise); its output at
  the voxels must equal ours (``allclose``, rtol 1e-4, atol 1e-4, float32 sums in another order).

* ``spconv``: spconv 2.x's ``SubMConv3d`` through the same interface (:func:`~bevlib.models.sparse_conv.use_backend`
  ``("spconv")``), run only with ``device="cuda"`` where spconv imports (its CPU build has no backward and
  its CPU forward races across OpenMP threads); otherwise its cells say why it did not run. Its output
  and gradients must equal ours (same tolerance).

``device``: ``"cpu"`` (default) or ``"cuda"``; on CUDA every timed call ends with
``torch.cuda.synchronize()``, so the times are wall-clock times of finished work, and TF32 is off
(full float32 in every method, as on CPU).

Passes: forward, and forward + backward (gradients w.r.t. features and weight; upstream random, fixed).
No target: the numbers are reported for choosing a backend.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .bench_common import _median_ms, bench_result, environment, round_robin, torch_timing

SPARSE_VOXEL_M = 0.1
SPARSE_CHANNELS = 64
SPARSE_TOL = 1e-4
#: Bytes per dense grid voxel and channel: input, output and their gradients, plus CPU conv3d's
#: im2col buffer of K^3 columns (float32).
_DENSE_BYTES_PER_VOXEL_CHANNEL = 4 * (4 + 27)
#: --quick: the synthetic sweep cropped to |x|, |y| < 2 m, 16 channels (tests).
QUICK = dict(crop_m=2.0, channels=16)


def _sweep(synthetic: bool, seed: int) -> tuple[np.ndarray, str]:
    """(P, 3) float32 sensor-frame points (metres) and a source label."""
    if not synthetic:
        from .data.source import real_keyframe_root

        files = sorted((real_keyframe_root() / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
        if files:
            # nuScenes .pcd.bin: float32 records of (x, y, z, intensity, ring).
            pts = np.fromfile(files[0], dtype=np.float32).reshape(-1, 5)[:, :3]
            return pts, f"real nuScenes LIDAR_TOP {Path(files[0]).name}"
    from .bench_lidar import _range_input

    pts, _, label = _range_input(True, seed)
    return pts[:, :3], label


@contextlib.contextmanager
def _full_fp32():
    """Run the body with TF32 off for cuDNN convolutions and CUDA matmuls, restored on exit: cuDNN's
    default TF32 (10-bit mantissa) would put dense conv3d ~1e-3 away from ours and fail the equality check,
    and every method must do the same float32 arithmetic for the times to compare. No effect on CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def bench_sparse(repeats: int = 10, warmup: int = 2, threads: int = 2, quick: bool = False, seed: int = 0,
                 synthetic: bool = False, crop_m: float | None = None, channels: int | None = None,
                 dense_limit_gb: float = 4.0, device: str = "cpu") -> dict:
    """Time the stride-1 K=3 sparse conv: ours vs the matmul floor vs dense conv3d vs spconv (module doc).

    Args:
        repeats: timed runs per method and pass (median reported); warmup: untimed runs first.
        threads: ``torch.set_num_threads`` for the run (restored afterwards).
        quick: the small problem of :data:`QUICK` on the synthetic sweep (tests).
        seed: seeds the features, weight and upstream gradient (and the synthetic sweep).
        synthetic: use the synthetic sweep even where the real one is present.
        crop_m: keep points with |x| and |y| < crop_m metres (None: the whole sweep).
        channels: Cin = Cout (default 64; 16 with quick).
        dense_limit_gb: run the dense conv3d only when its estimated memory is below this (GiB).
        device: ``"cpu"`` or ``"cuda"`` (the spconv row runs only on CUDA, where spconv imports).
    Returns: the JSON-ready result dict: ``config`` (points, voxels, pairs, bounding grid, ...),
        ``environment``, ``results`` (one row per pass: ``ours_ms``, ``mm_floor_ms``, ``dense_ms``
        (ms or "too large"), ``*_min_ms``, ``ours_over_floor``, ``dense_over_ours`` and
        ``dense_over_ours_paired`` (None without dense), ``max_abs_diff`` / ``equal`` (None without
        dense; backward rows also ``grad_max_abs_diff``), ``spconv_ms`` (ms, or why it did not run),
        ``spconv_over_ours``, ``spconv_max_abs_diff`` (over values and, in backward rows, gradients) /
        ``spconv_equal`` (None where it did not run)).
    Raises: ValueError for repeats < 1, warmup < 0, threads < 1, crop_m <= 0, dense_limit_gb <= 0, or a
        device other than cpu / cuda, or cuda where ``torch.cuda.is_available()`` is False.
    """
    from .models.sparse_conv import (SparseVoxels, kernel_map, sparse_conv3d, spconv_imports, use_backend,
                                     voxelize_points)

    if repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, threads >= 1; got {repeats}, {warmup}, {threads}")
    if crop_m is not None and crop_m <= 0:
        raise ValueError(f"crop_m must be > 0 metres, got {crop_m}")
    if dense_limit_gb <= 0:
        raise ValueError(f"dense_limit_gb must be > 0, got {dense_limit_gb}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' (--device cuda) but torch.cuda.is_available() is False here")
    if device != "cuda":
        spconv_skip = "needs CUDA"
    elif not spconv_imports():
        spconv_skip = "spconv does not import"
    else:
        spconv_skip = None
    if quick:
        synthetic, crop_m = True, QUICK["crop_m"] if crop_m is None else crop_m
    C = channels or (QUICK["channels"] if quick else SPARSE_CHANNELS)
    pts, source = _sweep(synthetic, seed)
    pts = torch.from_numpy(np.ascontiguousarray(pts))
    if crop_m is not None:
        pts = pts[(pts[:, 0].abs() < crop_m) & (pts[:, 1].abs() < crop_m)]
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    vox, _ = voxelize_points(pts, torch.zeros(len(pts), dtype=torch.long), SPARSE_VOXEL_M,
                             torch.ones(len(pts), 1))
    voxelize_ms = round(1e3 * (time.perf_counter() - t0), 3)
    dev = torch.device(device)
    # coords already unique (voxelised), so no second uniqueness check; a fresh neighbour-map cache
    vox = SparseVoxels._trusted(vox.coords.to(dev), vox.feats.to(dev), vox.stride)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    N = vox.coords.shape[0]
    t0 = time.perf_counter()
    maps = kernel_map(vox.coords, vox.coords, 3, 1)
    sync()
    map_ms = round(1e3 * (time.perf_counter() - t0), 3)
    pairs = sum(N if i is None else i.numel() for _, i, _ in maps)
    # random draws on the CPU generator, then moved: the same numbers on every device
    x = vox.replace_feats(torch.randn(N, C, generator=gen).to(dev).requires_grad_(True))
    w = (torch.randn(27, C, C, generator=gen) / (27 * C) ** 0.5).to(dev).requires_grad_(True)
    g_out = torch.randn(N, C, generator=gen).to(dev)
    a_floor = torch.randn(pairs, C, generator=gen).to(dev).requires_grad_(True)
    g_floor = torch.randn(pairs, C, generator=gen).to(dev)
    lo = vox.coords[:, 1:].min(0).values
    dims = (vox.coords[:, 1:].max(0).values - lo + 1).tolist()
    grid_voxels = int(np.prod(dims))
    dense_gb = grid_voxels * C * _DENSE_BYTES_PER_VOXEL_CHANNEL / 2 ** 30
    run_dense = dense_gb < dense_limit_gb
    rel = vox.coords[:, 1:] - lo
    w_dense = lambda: w.view(3, 3, 3, C, C).permute(4, 3, 0, 1, 2)  # noqa: E731  (layout: see sparse_conv)

    def dense():
        d = x.feats.new_zeros(*dims, C).index_put((rel[:, 0], rel[:, 1], rel[:, 2]), x.feats)
        y = F.conv3d(d.permute(3, 0, 1, 2)[None], w_dense(), padding=1)[0]
        return y.permute(1, 2, 3, 0)[rel[:, 0], rel[:, 1], rel[:, 2]]

    def ours():
        with use_backend("torch"):
            return sparse_conv3d(x, w).feats

    def spconv():
        with use_backend("spconv"):
            return sparse_conv3d(x, w).feats

    ours()  # fills the kernel-map cache on x's coordinates
    methods = {"ours": (ours, g_out, x.feats), "mm_floor": (lambda: a_floor @ w[0], g_floor, a_floor)}
    if run_dense:
        methods["dense"] = (dense, g_out, x.feats)
    if spconv_skip is None:
        spconv()  # builds spconv's neighbour pairs once, as for ours
        methods["spconv"] = (spconv, g_out, x.feats)

    def run(name, backward):
        fn, g, leaf = methods[name]
        if not backward:
            with torch.no_grad():
                y = fn()
            sync()
            return y, None
        y = fn()
        y.backward(g)
        grads = (leaf.grad, w.grad)
        leaf.grad, w.grad = None, None
        sync()
        return y.detach(), grads

    def compare(a, b, backward):
        (ya, ga), (yb, gb) = a, b
        diff = {"max_abs_diff": float((ya - yb).abs().max())}
        equal = bool(torch.allclose(ya, yb, rtol=SPARSE_TOL, atol=SPARSE_TOL))
        if backward:
            diff["grad_max_abs_diff"] = max(float((p - q).abs().max()) for p, q in zip(ga, gb))
            equal = equal and all(torch.allclose(p, q, rtol=SPARSE_TOL, atol=SPARSE_TOL) for p, q in zip(ga, gb))
        return diff, equal

    rows = []
    with torch_timing(threads) as (load_start, reused), _full_fp32():
        for p in ("forward", "forward+backward"):
            bw = p != "forward"
            names = list(methods)
            outs, samples = round_robin(run, names, bw, warmup, repeats)
            row = {"pass": p, "ours_ms": _median_ms(samples["ours"]), "mm_floor_ms": _median_ms(samples["mm_floor"]),
                   "dense_ms": _median_ms(samples["dense"]) if run_dense else "too large",
                   **{f"{n}_min_ms": round(1e3 * min(samples[n]), 3) for n in names}}
            row["ours_over_floor"] = round(row["ours_ms"] / row["mm_floor_ms"], 2)
            row["dense_over_ours"] = row["dense_over_ours_paired"] = row["max_abs_diff"] = row["equal"] = None
            if run_dense:
                row["dense_over_ours"] = round(row["dense_ms"] / row["ours_ms"], 2)
                row["dense_over_ours_paired"] = round(statistics.median(
                    d / o for d, o in zip(samples["dense"], samples["ours"])), 2)
                diff, row["equal"] = compare(outs["ours"], outs["dense"], bw)
                row.update(diff)
            row["spconv_ms"] = spconv_skip
            row["spconv_over_ours"] = row["spconv_max_abs_diff"] = row["spconv_equal"] = None
            if spconv_skip is None:
                row["spconv_ms"] = _median_ms(samples["spconv"])
                row["spconv_over_ours"] = round(row["spconv_ms"] / row["ours_ms"], 2)
                diff, row["spconv_equal"] = compare(outs["ours"], outs["spconv"], bw)
                row["spconv_max_abs_diff"] = max(diff.values())
            rows.append(row)
    return bench_result(
        "sparse",
        config={"source": source, "points": int(len(pts)), "crop_m": crop_m, "voxel_m": SPARSE_VOXEL_M,
                "voxels": int(N), "pairs": int(pairs), "mean_neighbours": round(pairs / max(N, 1), 2),
                "kernel_size": 3, "stride": 1, "channels": C, "batch": 1, "bounding_grid": dims,
                "dense_estimate_gb": round(dense_gb, 3), "dense_limit_gb": dense_limit_gb,
                "voxelize_ms": voxelize_ms, "map_build_ms": map_ms, "repeats": repeats, "warmup": warmup,
                "threads": threads, "device": device, "tf32": False, "quick": quick,
                "reuse_large_allocations": reused, "tolerance": SPARSE_TOL,
                "statistic": "median over repeats, ms; methods timed round-robin (rotating order) in one process"},
        environment=environment(load_start, torch=torch.__version__,
                                torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                                cuda_device=torch.cuda.get_device_name() if device == "cuda" else None),
        results=rows)


def format_sparse_table(result: dict) -> str:
    """The sparse-conv benchmark as a fixed-width text table."""
    c = result["config"]
    lines = [f"sparse conv benchmark: {c['source']}, {c['points']} points -> {c['voxels']} voxels at "
             f"{c['voxel_m']} m, {c['pairs']} pairs ({c['mean_neighbours']} / voxel), K=3 s=1 "
             f"{c['channels']}->{c['channels']}, grid {'x'.join(map(str, c['bounding_grid']))}, "
             f"{c['threads']} threads, {c.get('device', 'cpu')}, median of {c['repeats']} (ms); "
             f"map build {c['map_build_ms']} ms",
             f"{'pass':>17} {'ours':>9} {'mm floor':>9} {'dense':>10} {'spconv':>22} {'ours/floor':>10} "
             f"{'dense/ours':>10} {'spconv/ours':>11} {'equal':>6}"]
    lines.append("-" * len(lines[-1]))
    ms = lambda v: v if isinstance(v, str) else f"{v:.2f}"  # noqa: E731  (a reason where it did not run)
    ratio = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in result["results"]:
        spconv = r.get("spconv_ms", "not measured")
        equal = r["equal"] if r.get("spconv_equal") is None else (r["equal"] is not False and r["spconv_equal"])
        lines.append(f"{r['pass']:>17} {r['ours_ms']:>9.2f} {r['mm_floor_ms']:>9.2f} {ms(r['dense_ms']):>10} "
                     f"{ms(spconv):>22} {r['ours_over_floor']:>10.2f} {ratio(r['dense_over_ours']):>10} "
                     f"{ratio(r.get('spconv_over_ours')):>11} {str(equal):>6}")
    return "\n".join(lines)


def add_sparse_parser(sub) -> None:
    """Register the ``sparse`` sub-command on :mod:`bevlib.bench`'s sub-parsers."""
    sp = sub.add_parser("sparse", help="sparse-voxel conv (MinkUNet, K=3 s=1) fwd/bwd: ours vs matmul and dense "
                                         "floors and spconv")
    sp.add_argument("--repeats", type=int, default=None, help="timed runs per pass (default 10; 3 with --quick)")
    sp.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 2; 1 with --quick)")
    sp.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    sp.add_argument("--synthetic", action="store_true", help="a synthetic sweep, not the real one")
    sp.add_argument("--crop", type=float, default=None, help="keep |x|, |y| < CROP metres (default: whole sweep)")
    sp.add_argument("--channels", type=int, default=None, help="Cin = Cout (default 64; 16 with --quick)")
    sp.add_argument("--dense-limit-gb", type=float, default=4.0, help="skip dense conv3d above this estimate")
    sp.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where to run (default cpu); spconv is timed only on cuda, where it imports")
    sp.add_argument("--out", default=None, help="JSON path (default <project>/outputs/bench/sparse.json)")
    sp.add_argument("--quick", action="store_true", help="a small synthetic crop and few repeats, for tests")


def run_sparse(args, emit) -> int:
    """Run the ``sparse`` sub-command from parsed ``args``; ``emit`` is :func:`bevlib.bench._emit`."""
    result = bench_sparse(repeats=args.repeats if args.repeats is not None else (3 if args.quick else 10),
                          warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
                          threads=args.threads, quick=args.quick, synthetic=args.synthetic, crop_m=args.crop,
                          channels=args.channels, dense_limit_gb=args.dense_limit_gb, device=args.device)
    return emit(result, args.out, "sparse", format_sparse_table)
