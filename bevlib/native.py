"""Native CPU kernels of the analytic renderer (``bevlib/csrc/render_cpu.c``), built on first use.

busch2026 renders the predicted BEV map into the six cameras at every training step (Sec. III-B),
so on a CPU the render's forward and backward dominate a step's rendering cost. With a fixed rig
(a scene's calibration), :func:`build_plan` precomputes once which pixels are valid and their four
bilinear taps; :func:`gather_forward` / :func:`gather_backward` then run two small C kernels over
the valid pixels only, on torch's OpenMP threads (``torch.get_num_threads()`` of them). The
forward is bit-identical to ``torch.nn.functional.grid_sample`` (bilinear, zeros padding,
``align_corners=False``) on torch's vectorised CPU path (same fused multiply-adds in the same
order); the backward equals grid_sample's input gradient up to float32 summation order.

The C file is compiled with the system C compiler (``$CC``, else Python's, cc, gcc or clang) into
``<cache>/native/`` (see :func:`bevlib.paths.cache_dir`), keyed by the source, compiler, flags
and CPU, so a shared home directory never hands one CPU's binary to another. Where no compiler
works, or ``BEVLIB_NATIVE=0``, :func:`render_kernels` returns None and :mod:`bevlib.render` keeps
``grid_sample`` and its autograd (same results, slower); :func:`status` says why.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .paths import cache_dir

SOURCE = Path(__file__).parent / "csrc" / "render_cpu.c"
LANES = 16  # channels per block in the kernels (one 512-bit vector of float32)
_FLAG_SETS = (
    # -ffp-contract=off: the only fused multiply-adds are the explicit fmaf() of the source, which
    # mirror grid_sample's; -march=native gives them (and AVX2/AVX-512 loads) where the CPU has them;
    # -fopenmp runs the row ranges on the OpenMP threads torch already has (see the C file).
    ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"],
    ["-O3", "-ffp-contract=off", "-fopenmp"],
    ["-O3", "-ffp-contract=off"],
)
_status = "not loaded yet"


def _cpu_fingerprint() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> list[str]:
    """``$CC`` when set (used as given), else the first of Python's own compiler, cc, gcc, clang
    found on PATH (``["cc"]`` when none is, so the error names it)."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])[:1]
    candidates = shlex.split(sysconfig.get_config_var("CC") or "")[:1] + ["cc", "gcc", "clang"]
    for cc in candidates:
        if shutil.which(cc):
            return [cc]
    return ["cc"]


def _compile(cc: list[str], flags: list[str], out: Path) -> None:
    """Compile SOURCE into ``out`` atomically (a temporary file, then ``os.replace``).

    Raises: OSError / subprocess.CalledProcessError with the compiler's message.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        subprocess.run([*cc, *flags, "-std=c11", "-shared", "-fPIC", str(SOURCE), "-o", tmp, "-lm"],
                       check=True, capture_output=True, text=True, timeout=120)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i = ctypes.c_void_p, ctypes.c_int64
    kernel = [p, i, i, i, p, p, p, p, p, i, i, p, i, p]
    for name, args, res in (("bevlib_render_forward", kernel, ctypes.c_int),
                            ("bevlib_render_backward", kernel + [i], ctypes.c_int),
                            ("bevlib_pack_blocks", [p, i, i, i, i, p], None),
                            ("bevlib_unpack_grad", [p, i, i, i, i, i, p], None),
                            ("bevlib_plan_count", [p, p, p, i, i, i, p, p, p, i], None),
                            ("bevlib_plan_fill", [p, p, p, i, i, i, i, i, p, p, p, p, p, p, i], ctypes.c_int)):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


@functools.lru_cache(maxsize=1)
def render_kernels() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be built (see :func:`status`).

    Compiles on the first call in a fresh cache (about a second); later processes load the cached
    library. ``BEVLIB_NATIVE=0`` turns the kernels off.
    """
    global _status
    if os.environ.get("BEVLIB_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        _status = "off (BEVLIB_NATIVE=0)"
        return None
    cc = _compiler()
    src = SOURCE.read_bytes()
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(b"\0".join([src, " ".join(cc + flags).encode(), _cpu_fingerprint().encode(),
                                         platform.machine().encode()])).hexdigest()[:16]
        path = cache_dir() / "native" / f"render_cpu-{key}.so"
        try:
            if not path.exists():
                _compile(cc, flags, path)
            lib = _declare(ctypes.CDLL(str(path)))
        except (OSError, subprocess.SubprocessError) as e:
            msg = getattr(e, "stderr", None) or str(e)
            errors.append(f"{' '.join(cc + flags)}: {msg.strip().splitlines()[-1] if msg.strip() else e}")
            continue
        _status = f"loaded {path} ({' '.join(cc + flags)})"
        return lib
    _status = "unavailable, grid_sample is used instead: " + "; ".join(errors)
    return None


def status() -> str:
    """How the native kernels stand: loaded (path, compiler flags), off, or why unavailable."""
    render_kernels()
    return _status


@dataclass
class RenderPlan:
    """The valid pixels of a rig and their bilinear taps: what the kernels need for one rig.

    Attributes (numpy, C-contiguous):
        row_ptr: (BN*h + 1,) int64, segments of image row ``k*h + r``.
        segs: (S, 3) int64, (q0, q1, first tap) of each run of valid pixels [q0, q1) of a row.
        idx: (Nv, 4) int32 BEV cell ``i*W + j`` of the nw, ne, sw, se taps, ``H*W`` (a zero row)
            for taps outside the grid.
        wt: (Nv, 4) float32 their bilinear weights, computed as torch's grid_sample computes them.
        map_of_cam: (BN,) int64 which BEV map each camera image reads.
        shape: (BN, h, w, H, W, n_maps).
    """
    row_ptr: np.ndarray
    segs: np.ndarray
    idx: np.ndarray
    wt: np.ndarray
    map_of_cam: np.ndarray
    shape: tuple[int, int, int, int, int, int]
    row_cost: np.ndarray  # (BN*h,) relative cost of each image row, to balance threads
    _splits: dict = field(default_factory=dict, repr=False)

    def row_bounds(self, n: int) -> np.ndarray:
        """(n' + 1,) int64: the image rows split into n' <= n contiguous non-empty ranges of about
        equal cost, range t = rows ``[bounds[t], bounds[t + 1])``."""
        if n not in self._splits:
            cum = np.cumsum(self.row_cost)
            cuts = [0] + [int(np.searchsorted(cum, cum[-1] * t / n)) for t in range(1, n)] + [len(cum)]
            self._splits[n] = np.array(sorted(set(cuts)), dtype=np.int64)
        return self._splits[n]


def build_plan(coords: torch.Tensor, valid: torch.Tensor, n_maps: int, bev_hw: tuple[int, int]) -> RenderPlan:
    """Precompute a rig's valid pixel runs and bilinear taps (the fixed part of busch2026's
    rendering module, Sec. III-B, for one calibration and BEV map size).

    Args:
        coords: (BN, h, w, 2) float32 normalised grid_sample coordinates (``align_corners=False``)
            of :func:`bevlib.render.sampling_grid`, cameras of map ``m`` at ``m*N .. m*N + N - 1``.
        valid: (BN, h, w) bool pixels that hit the ground inside the grid.
        n_maps: B, the number of BEV maps (BN must be a multiple).
        bev_hw: (H, W) cells of the BEV map the plan renders.
    Raises:
        ValueError: shapes that do not fit together.
    """
    BN, h, w, two = coords.shape
    H, W = bev_hw
    if two != 2 or tuple(valid.shape) != (BN, h, w) or n_maps < 1 or BN % n_maps:
        raise ValueError(f"coords {tuple(coords.shape)} / valid {tuple(valid.shape)} / n_maps {n_maps} do not fit")
    v = valid.cpu().numpy().reshape(BN * h, w)
    edges = np.diff(np.pad(v.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    starts = np.nonzero(edges == 1)        # row-major, so segments come in (row, q0) order
    ends = np.nonzero(edges == -1)
    lengths = ends[1] - starts[1]
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    segs = np.stack([starts[1], ends[1], first], axis=1).astype(np.int64)
    row_ptr = np.concatenate([[0], np.cumsum(np.bincount(starts[0], minlength=BN * h))]).astype(np.int64)
    # Taps as torch's vectorised CPU grid_sample computes them: ix = fma(x + 1, W / 2, -0.5) (float32
    # x*y is exact in float64, so float64 then one rounding to float32 is the fused result), then
    # floor, fractions and products in float32.
    g = coords.cpu().numpy().reshape(BN * h, w, 2)[v]        # (Nv, 2), same order as the segments
    f32 = np.float32
    ix = ((g[:, 0] + f32(1)).astype(np.float64) * (W / 2) - 0.5).astype(f32)
    iy = ((g[:, 1] + f32(1)).astype(np.float64) * (H / 2) - 0.5).astype(f32)
    x0, y0 = np.floor(ix), np.floor(iy)
    fx, fy = ix - x0, iy - y0
    gx, gy = f32(1) - fx, f32(1) - fy
    wt = np.stack([gy * gx, gy * fx, fy * gx, fy * fx], axis=1).astype(f32)
    idx = np.empty((len(g), 4), np.int32)
    for t, (dx, dy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        xi, yi = x0.astype(np.int64) + dx, y0.astype(np.int64) + dy
        inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        idx[:, t] = np.where(inside, yi * W + xi, H * W)
    map_of_cam = (np.arange(BN) // (BN // n_maps)).astype(np.int64)
    # A row costs its valid pixels plus a share for writing its zeros and its per-row overhead.
    row_cost = np.bincount(starts[0], weights=lengths, minlength=BN * h) + w / 8 + 1
    return RenderPlan(row_ptr, segs, np.ascontiguousarray(idx), np.ascontiguousarray(wt), map_of_cam,
                      (BN, h, w, H, W, n_maps), row_cost)


def build_plan_from_rig(M: np.ndarray, O: np.ndarray, extent: tuple, image_hw: tuple[int, int], n_maps: int,
                        bev_hw: tuple[int, int]) -> tuple[RenderPlan, torch.Tensor]:
    """A new rig's plan straight from its calibration, in one native pass over all its cameras'
    pixels (the cold path of busch2026's rendering module, Sec. III-B, where every keyframe of real
    nuScenes brings a new rig because each camera has its own ego pose).

    Identical to ``build_plan(*bevlib.render.sampling_grid(...))`` of the same rig: the C code
    repeats the float64 ray / ground-plane hit of :func:`bevlib.render.ground_hits`, the grid test
    and normalised coordinates of :func:`bevlib.render.sampling_grid` and the float32 taps of
    :func:`build_plan`, operation for operation (tested equal array for array).

    Args:
        M: (BN, 3, 3) float64, the ego-frame ray of pixel (u, v) is ``M @ (u, v, 1)``;
        O: (BN, 3) float64 camera centres (metres, ego frame); both from
            :func:`bevlib.render.rig_rays`, cameras of map ``m`` at ``m*N .. m*N + N - 1``.
        extent: (x_min, x_max, y_min, y_max) metres of the BEV grid.
        image_hw: (h, w) pixels; n_maps: B; bev_hw: (H, W) cells of the rendered maps.
    Returns: (plan, valid (BN, h, w) bool CPU tensor).
    Raises: RuntimeError when the kernels are unavailable; ValueError on shapes that do not fit;
    MemoryError when a thread's row buffer cannot be allocated.
    """
    lib = render_kernels()
    if lib is None:
        raise RuntimeError(f"bevlib native kernels: {_status}")
    M = np.ascontiguousarray(M, dtype=np.float64)
    O = np.ascontiguousarray(O, dtype=np.float64)
    ext = np.ascontiguousarray(extent, dtype=np.float64)
    BN, (h, w), (H, W) = len(M), image_hw, bev_hw
    if M.shape != (BN, 3, 3) or O.shape != (BN, 3) or ext.shape != (4,) or n_maps < 1 or BN % n_maps:
        raise ValueError(f"M {M.shape} / O {O.shape} / extent {ext.shape} / n_maps {n_maps} do not fit")
    n = max(1, torch.get_num_threads())
    rows = BN * h
    nvalid = np.empty(rows, np.int64)
    nseg = np.empty(rows, np.int64)
    valid = torch.empty((BN, h, w), dtype=torch.bool)
    lib.bevlib_plan_count(M.ctypes.data, O.ctypes.data, ext.ctypes.data, BN, h, w, valid.data_ptr(),
                          nvalid.ctypes.data, nseg.ctypes.data, n)
    row_ptr = np.zeros(rows + 1, np.int64)
    np.cumsum(nseg, out=row_ptr[1:])
    row_first = np.zeros(rows + 1, np.int64)
    np.cumsum(nvalid, out=row_first[1:])
    segs = np.empty((int(row_ptr[-1]), 3), np.int64)
    idx = np.empty((int(row_first[-1]), 4), np.int32)
    wt = np.empty((int(row_first[-1]), 4), np.float32)
    rc = lib.bevlib_plan_fill(M.ctypes.data, O.ctypes.data, ext.ctypes.data, BN, h, w, H, W, valid.data_ptr(),
                              row_ptr.ctypes.data, row_first.ctypes.data, segs.ctypes.data, idx.ctypes.data,
                              wt.ctypes.data, n)
    if rc != 0:
        raise MemoryError("bevlib native plan building could not allocate its row buffer")
    map_of_cam = (np.arange(BN) // (BN // n_maps)).astype(np.int64)
    row_cost = nvalid + (w / 8 + 1)   # as build_plan: valid pixels plus a share for zeros and overhead
    return RenderPlan(row_ptr, segs, idx, wt, map_of_cam, (BN, h, w, H, W, n_maps), row_cost), valid


def _plan_args(plan: RenderPlan):
    BN, h, w, H, W, M = plan.shape
    return (plan.row_ptr.ctypes.data, plan.segs.ctypes.data, plan.idx.ctypes.data, plan.wt.ctypes.data,
            plan.map_of_cam.ctypes.data, h, w)


def gather_forward(plan: RenderPlan, bev: torch.Tensor) -> torch.Tensor:
    """Render (busch2026 Sec. III-B, Pred_bev -> Pred_cp): (M, C, H, W) float32 CPU maps in the
    ego-frame BEV grid -> (BN, C, h, w) float32 contiguous camera images, 0 at invalid pixels.

    Bit-identical to grid_sample of each camera's map on the plan's coordinates where torch's
    grid_sample fuses multiply-adds (AVX2 / AVX-512 dispatch). Raises RuntimeError when the
    kernels are unavailable, ValueError on a shape or dtype mismatch, MemoryError when a kernel
    cannot allocate its row buffer.
    """
    lib = render_kernels()
    if lib is None:
        raise RuntimeError(f"bevlib native kernels: {_status}")
    BN, h, w, H, W, M = plan.shape
    if bev.dim() != 4 or bev.shape[0] != M or tuple(bev.shape[2:]) != (H, W) or bev.dtype != torch.float32:
        raise ValueError(f"bev must be float32 ({M}, C, {H}, {W}), got {bev.dtype} {tuple(bev.shape)}")
    C = bev.shape[1]
    nblk = -(-C // LANES)
    # One C pass builds the channels-last blocks with their zero row (three torch ops otherwise).
    src = bev.detach().contiguous()
    blocks = torch.empty(M, nblk, H * W + 1, LANES)  # the extra (zero) row is the out-of-grid cell
    lib.bevlib_pack_blocks(src.data_ptr(), M, C, H * W, nblk, blocks.data_ptr())
    out = torch.empty(BN, C, h, w)
    bounds = plan.row_bounds(max(1, torch.get_num_threads()))
    rc = lib.bevlib_render_forward(blocks.data_ptr(), nblk, H * W + 1, C, *_plan_args(plan),
                                   bounds.ctypes.data, len(bounds) - 1, out.data_ptr())
    if rc != 0:
        raise MemoryError("bevlib native render forward could not allocate its row buffer")
    return out


def gather_backward(plan: RenderPlan, grad_out: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`gather_forward` w.r.t. the maps (the backward of busch2026's rendering
    module, Sec. III-B): upstream (BN, C, h, w) -> (M, C, H, W) float32 CPU, cameras summed into
    their map. Each thread accumulates into its own buffer; the buffers are summed at the end.

    Raises: RuntimeError when the kernels are unavailable, ValueError when ``grad_out`` does not
    match the plan, MemoryError when a kernel cannot allocate its row buffer.
    """
    lib = render_kernels()
    if lib is None:
        raise RuntimeError(f"bevlib native kernels: {_status}")
    BN, h, w, H, W, M = plan.shape
    C = grad_out.shape[1]
    if tuple(grad_out.shape) != (BN, C, h, w):
        raise ValueError(f"grad_out must be ({BN}, C, {h}, {w}), got {tuple(grad_out.shape)}")
    g = grad_out.to(torch.float32).contiguous()
    nblk = -(-C // LANES)
    bounds = plan.row_bounds(max(1, torch.get_num_threads()))
    n = len(bounds) - 1
    acc = torch.empty(n, M, nblk, H * W + 1, LANES)  # each thread zeroes its own
    rc = lib.bevlib_render_backward(g.data_ptr(), nblk, H * W + 1, C, *_plan_args(plan),
                                    bounds.ctypes.data, n, acc.data_ptr(), acc[0].numel())
    if rc != 0:
        raise MemoryError("bevlib native render backward could not allocate its row buffer")
    grad = torch.empty(M, C, H, W)
    lib.bevlib_unpack_grad(acc.data_ptr(), n, M, C, H * W, nblk, grad.data_ptr())
    return grad
