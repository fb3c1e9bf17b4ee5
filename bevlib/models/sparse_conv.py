"""Sparse-voxel 3-D convolution in pure torch, for the MinkUNet backbone of chen2024 CSC (Sec. 4.1).

No sparse-convolution library runs on the project's CPU machines (MinkowskiEngine, torchsparse and
torch-scatter do not install; spconv 2.3.8's backward needs CUDA), so the op is written here as
gather - matmul - scatter per kernel offset (the "weight-stationary" scheme of MinkowskiEngine,
Choy et al. 2019, Sec. 3, and torchsparse), with autograd through plain torch ops.

Conventions:

* A :class:`SparseVoxels` holds integer voxel coordinates ``coords`` (N, 4) int64
  ``[batch, x, y, z]`` **at its own resolution** (a stride-2 tensor's coordinates are
  ``floor(c / 2)`` of its parent's; ``stride`` records the cumulative stride w.r.t. the input
  voxels) and features ``feats`` (N, C). Coordinates may be negative.
* Weights use MinkowskiEngine's layout ``(K**3, C_in, C_out)``; kernel offset index
  ``k = (a * K + b) * K + c`` for the offset (a, b, c) in x, y, z, each in ``0..K-1``. The dense
  equivalent is ``weight.view(K, K, K, Cin, Cout).permute(4, 3, 0, 1, 2)`` for ``conv3d`` (x, y, z
  as the D, H, W axes) and ``.permute(3, 4, 0, 1, 2)`` for ``conv_transpose3d``.
* Padding is ``p = (K - 1) // 2`` (centred odd kernels; 0 for K = 2). A conv of stride s reads
  ``out[q] = sum_k W[k]^T in[s q + k - p]`` (exactly ``F.conv3d(stride=s, padding=p)`` read at the
  output coordinates); a transposed conv writes ``out[s q + k - p] += W[k]^T in[q]`` (exactly
  ``F.conv_transpose3d(stride=s, padding=p)`` read at the given output coordinates). Missing
  voxels are zeros. Output coordinates: stride 1 -> the input's (submanifold conv, Graham et al.
  2018); stride s -> ``unique(floor(coords / s))`` (also for K = 3, as MinkowskiEngine does);
  transposed -> the caller's finer coordinate set (MinkUNet's decoder upsamples onto the encoder's
  skip tensor).

Backends (:func:`backend`, :func:`set_backend`): on CUDA tensors, submanifold convs run on spconv's
``SubMConv3d`` where spconv imports; every other conv, every CPU tensor and every machine without spconv use
this module's op. The weight / index mapping to spconv is tested equal to this op on CPU, single-threaded
(tests/test_sparse_conv.py, where spconv imports); the CUDA path itself has not run here (no GPU).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

#: Backend choices of :func:`set_backend` / ``$BEVLIB_SPARSE_BACKEND``.
BACKENDS = ("auto", "torch", "spconv")
_choice: str | None = None
_spconv_imports: bool | None = None


def spconv_imports() -> bool:
    """True when ``import spconv.pytorch`` works (checked once per process)."""
    global _spconv_imports
    if _spconv_imports is None:
        try:
            import spconv.pytorch  # noqa: F401
            _spconv_imports = True
        except Exception:  # an absent or broken build (missing cumm / CUDA libraries) fails here
            _spconv_imports = False
    return _spconv_imports


def spconv_available() -> bool:
    """True when spconv imports and CUDA is available (spconv 2.x's backward needs CUDA)."""
    return spconv_imports() and torch.cuda.is_available()


def set_backend(name: str | None) -> None:
    """Choose the sparse-conv backend for this process: ``"auto"`` (spconv where :func:`spconv_available`, else
    this module's op), ``"torch"``, ``"spconv"`` (wherever it imports; used for CUDA tensors only), or None
    (back to ``$BEVLIB_SPARSE_BACKEND``, default ``"auto"``).
    Raises: ValueError for another name; ImportError for ``"spconv"`` when spconv does not import."""
    global _choice
    if name is not None and name not in BACKENDS:
        raise ValueError(f"sparse backend must be one of {BACKENDS}, got {name!r}")
    if name == "spconv" and not spconv_imports():
        raise ImportError("sparse backend 'spconv' asked for, but `import spconv.pytorch` fails")
    _choice = name


@contextlib.contextmanager
def use_backend(name: str | None):
    """Run the body under :func:`set_backend` ``(name)`` and restore the previous choice on exit (on error too).

    Used to time or compare two backends in one process (``python -m bevlib.bench sparse``).
    Raises: as :func:`set_backend`.
    """
    previous = _choice
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def backend() -> str:
    """The sparse-conv implementation of submanifold convs: "torch" (this module's op) or "spconv".

    From :func:`set_backend`, else ``$BEVLIB_SPARSE_BACKEND`` (``auto`` | ``torch`` | ``spconv``, default auto):
    auto is "spconv" where :func:`spconv_available` (CUDA), else "torch". Strided and transposed convs always
    use this module's op: their output-coordinate rules (MinkowskiEngine's, module doc) differ from spconv's.
    Raises: ValueError for an unknown ``$BEVLIB_SPARSE_BACKEND``.
    """
    import os

    choice = _choice or os.environ.get("BEVLIB_SPARSE_BACKEND", "auto")
    if choice not in BACKENDS:
        raise ValueError(f"BEVLIB_SPARSE_BACKEND must be one of {BACKENDS}, got {choice!r}")
    if choice == "auto":
        return "spconv" if spconv_available() else "torch"
    if choice == "spconv" and not spconv_imports():
        return "torch"
    return choice


def _spconv_submanifold(x: "SparseVoxels", weight: torch.Tensor, bias: torch.Tensor | None, K: int) -> torch.Tensor:
    """The submanifold conv of :func:`sparse_conv3d` by spconv's ``SubMConv3d``: (N, Cout) feats on x.coords.

    spconv's kernel (Cout, K, K, K, Cin) over its index columns equals ours read as
    ``weight.view(K, K, K, Cin, Cout).permute(4, 0, 1, 2, 3)`` when its indices are ``[b, x, y, z]`` shifted to
    be non-negative (tested equal); its output rows are the input's, in order. The spconv tensor (with its
    neighbour pairs) is cached in ``x.kernel_maps``, so every conv on the same coordinates reuses the pairs.
    """
    import spconv.pytorch as spc

    Cin, Cout = weight.shape[1], weight.shape[2]
    key = ("spconv", K)
    hit = x.kernel_maps.get(key)
    if hit is None or hit[0] is not x.coords:
        c = x.coords
        lo = c[:, 1:].min(0).values
        idx = torch.cat([c[:, :1], c[:, 1:] - lo], 1).int().contiguous()
        shape = (c[:, 1:].max(0).values - lo + 1).tolist()
        # spconv's default (implicit GEMM) needs CUDA even in its CUDA wheels' CPU path; Native is the one
        # algorithm that runs on CPU tensors (the mapping test)
        algo = None if x.feats.is_cuda else spc.ConvAlgo.Native
        module = spc.SubMConv3d(Cin, Cout, K, bias=False, indice_key=f"bevlib_subm{K}", algo=algo).to(x.feats.device)
        hit = (x.coords, spc.SparseConvTensor(x.feats, idx, shape, int(c[:, 0].max()) + 1), module)
        x.kernel_maps[key] = hit
    _, template, module = hit
    # our weight (with its autograd graph) stands in for the module's own parameter
    if "weight" in module._parameters:
        del module.weight
    module.weight = weight.view(K, K, K, Cin, Cout).permute(4, 0, 1, 2, 3).contiguous()
    module.in_channels, module.out_channels = Cin, Cout
    out = module(template.replace_feature(x.feats)).features
    return out if bias is None else out + bias


@dataclass(eq=False)
class SparseVoxels:
    """A batch of sparse voxels (a minimal MinkowskiEngine ``SparseTensor``).

    Attributes:
        coords: (N, 4) int64 ``[batch, x, y, z]`` voxel indices at this tensor's resolution, unique rows.
        feats: (N, C) floating features, row i belongs to ``coords[i]``.
        stride: the cumulative voxel stride w.r.t. the input voxels (1, 2, 4, ...).
        kernel_maps: cache of neighbour maps keyed by conv geometry, shared by tensors on the same
            coordinates (filled by :func:`sparse_conv3d`; not in repr). No ``==`` (identity only).
    Raises: ValueError (naming the argument) for a wrong shape / dtype, stride < 1, or duplicate coords.
    """

    coords: torch.Tensor
    feats: torch.Tensor
    stride: int = 1
    kernel_maps: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        c, f = self.coords, self.feats
        if not isinstance(c, torch.Tensor) or c.dtype != torch.int64 or c.dim() != 2 or c.shape[1] != 4:
            raise ValueError(f"coords must be an (N, 4) int64 tensor [batch, x, y, z], got "
                             f"{getattr(c, 'dtype', type(c))} {tuple(getattr(c, 'shape', ()))}")
        if not isinstance(f, torch.Tensor) or not f.is_floating_point() or f.dim() != 2 or f.shape[0] != c.shape[0]:
            raise ValueError(f"feats must be an (N, C) floating tensor with N = {c.shape[0]}, got "
                             f"{getattr(f, 'dtype', type(f))} {tuple(getattr(f, 'shape', ()))}")
        if int(self.stride) < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if c.shape[0] > 1:
            keys, _, _ = _hash(c)
            if torch.unique(keys).numel() != c.shape[0]:
                raise ValueError("coords has duplicate rows; voxelise with voxelize_points() to merge them")

    @classmethod
    def _trusted(cls, coords, feats, stride, kernel_maps=None) -> "SparseVoxels":
        """Build without the uniqueness check (coords known unique: produced by this module)."""
        obj = cls.__new__(cls)
        obj.coords, obj.feats, obj.stride = coords, feats, int(stride)
        obj.kernel_maps = {} if kernel_maps is None else kernel_maps
        return obj

    def replace_feats(self, feats: torch.Tensor) -> "SparseVoxels":
        """The same coordinates (and neighbour-map cache) with new (N, C') features."""
        if feats.dim() != 2 or feats.shape[0] != self.coords.shape[0]:
            raise ValueError(f"feats must be ({self.coords.shape[0]}, C), got {tuple(feats.shape)}")
        return SparseVoxels._trusted(self.coords, feats, self.stride, self.kernel_maps)


def _hash(coords: torch.Tensor, lo: torch.Tensor | None = None, span: torch.Tensor | None = None):
    """Row-major int64 keys of (N, 4) coords in the box [lo, lo + span); returns (keys, lo, span).

    Keys of coords outside the box are meaningless; callers mask them with :func:`_inside`.
    """
    if lo is None:
        lo = coords.min(0).values
        span = coords.max(0).values - lo + 1
        if math.prod(int(s) for s in span) >= 2 ** 62:
            raise ValueError(f"coords span {span.tolist()} too large to hash into int64")
    c = coords - lo
    keys = ((c[..., 0] * span[1] + c[..., 1]) * span[2] + c[..., 2]) * span[3] + c[..., 3]
    return keys, lo, span


def _unhash(keys: torch.Tensor, lo: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """(M,) keys of :func:`_hash` -> (M, 4) int64 coords (row-major decode)."""
    out = torch.empty(keys.numel(), 4, dtype=torch.long, device=keys.device)
    rest = keys
    for d in (3, 2, 1):
        out[:, d] = rest % span[d] + lo[d]
        rest = rest // span[d]
    out[:, 0] = rest + lo[0]
    return out


def _inside(coords: torch.Tensor, lo: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    return ((coords >= lo) & (coords < lo + span)).all(-1)


def voxelize_points(points: torch.Tensor, batch_index: torch.Tensor, voxel_size: float,
                    feats: torch.Tensor) -> tuple[SparseVoxels, torch.Tensor]:
    """Cubic voxelisation of a batch of point clouds with mean-pooled features (SLidR / CSC input).

    Args:
        points: (P, 3) float, metres, each cloud in its own frame (e.g. the LiDAR frame).
        batch_index: (P,) integer, the cloud each point belongs to (>= 0).
        voxel_size: edge of the cubic voxels, metres (> 0; SLidR and CSC use 0.1 m).
        feats: (P, C) float per-point features (e.g. intensity, or ones).
    Returns:
        (voxels, inverse): a stride-1 :class:`SparseVoxels` with coords ``[b, floor(p / voxel_size)]``
        (sorted by batch, then x, y, z) and feats the mean of its points' feats (differentiable);
        inverse (P,) int64, the voxel row of each point (``voxels.feats[inverse]`` lifts back to points).
    Raises: ValueError naming points, batch_index, voxel_size or feats for bad shapes / values.
    """
    if points.dim() != 2 or points.shape[1] != 3 or not points.is_floating_point():
        raise ValueError(f"points must be (P, 3) float metres, got {points.dtype} {tuple(points.shape)}")
    P = points.shape[0]
    if batch_index.shape != (P,) or batch_index.is_floating_point():
        raise ValueError(f"batch_index must be ({P},) integer, got {batch_index.dtype} {tuple(batch_index.shape)}")
    if P and int(batch_index.min()) < 0:
        raise ValueError("batch_index must be >= 0")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be > 0 metres, got {voxel_size}")
    if feats.dim() != 2 or feats.shape[0] != P or not feats.is_floating_point():
        raise ValueError(f"feats must be ({P}, C) float, got {feats.dtype} {tuple(feats.shape)}")
    # Float64 before the floor so a point on a voxel face lands the same way for float32 and float64 input.
    xyz = torch.floor(points.detach().double() / voxel_size).long()
    coords = torch.cat([batch_index.long()[:, None], xyz], 1)
    if P == 0:
        return SparseVoxels._trusted(coords, feats[:0], 1), torch.zeros(0, dtype=torch.long)
    keys, lo, span = _hash(coords)
    ukeys, inverse = torch.unique(keys, return_inverse=True)
    vc = _unhash(ukeys, lo, span)
    M = ukeys.numel()
    count = torch.zeros(M, dtype=feats.dtype, device=feats.device).index_add_(
        0, inverse, torch.ones(P, dtype=feats.dtype, device=feats.device))
    mean = feats.new_zeros(M, feats.shape[1]).index_add(0, inverse, feats) / count[:, None]
    return SparseVoxels._trusted(vc, mean, 1), inverse


def _offsets(K: int, device) -> torch.Tensor:
    """(K**3, 3) int64 kernel offsets (a, b, c) in 0..K-1, row k = (a * K + b) * K + c."""
    r = torch.arange(K, device=device)
    return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)


def kernel_map(in_coords: torch.Tensor, out_coords: torch.Tensor, kernel_size: int, stride: int,
               transposed: bool = False) -> list[tuple[int, torch.Tensor | None, torch.Tensor | None]]:
    """Input/output row pairs of a sparse conv, one entry per kernel offset with any pair.

    Neighbours are found by hashing coords to int64 keys, ``torch.sort`` of the table's keys and one
    ``torch.searchsorted`` over the queries of all offsets (MinkowskiEngine / torchsparse build the
    same map with a GPU hash table).

    Args:
        in_coords: (N, 4) int64 ``[b, x, y, z]``, unique; out_coords: (M, 4) int64, unique.
        kernel_size: K >= 1; stride: s >= 1; transposed: the map of a transposed conv.
        Geometry as in the module doc: conv ``in = s * out + k - p``; transposed ``out = s * in + k - p``,
        ``p = (K - 1) // 2``.
    Returns:
        list of (k, in_rows (L,) int64, out_rows (L,) int64); (k, None, None) marks the identity map
        (the centre offset of a submanifold conv with out_coords == in_coords, stored without indices).
    Raises: ValueError for kernel_size or stride < 1.
    """
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    K, s, p = kernel_size, stride, (kernel_size - 1) // 2
    table, query = (out_coords, in_coords) if transposed else (in_coords, out_coords)
    if table.shape[0] == 0 or query.shape[0] == 0:
        return []
    offs = _offsets(K, table.device)
    identity = (not transposed and s == 1 and K % 2 == 1 and in_coords is out_coords)
    tkeys, lo, span = _hash(table)
    sorted_keys, perm = torch.sort(tkeys)
    # (K^3, Q, 4) query coordinates: batch unchanged, x, y, z = s * q + k - p.
    q = query[None].repeat(K ** 3, 1, 1)
    q[..., 1:] = s * q[..., 1:] + (offs - p)[:, None, :]
    qkeys, _, _ = _hash(q, lo, span)
    pos = torch.searchsorted(sorted_keys, qkeys).clamp_(max=sorted_keys.numel() - 1)
    hit = (sorted_keys[pos] == qkeys) & _inside(q, lo, span)
    found = perm[pos]
    qrows = torch.arange(query.shape[0], device=table.device)
    centre = (K ** 3) // 2
    maps = []
    for k in range(K ** 3):
        if identity and k == centre:
            maps.append((k, None, None))
            continue
        h = hit[k]
        if not bool(h.any()):
            continue
        t_rows, q_rows = found[k][h], qrows[h]
        maps.append((k, q_rows, t_rows) if transposed else (k, t_rows, q_rows))
    return maps


def downsample_coords(coords: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, 4) int64 -> (M, 4) int64 ``unique([b, floor(x / s), floor(y / s), floor(z / s)])``, sorted."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    out = coords.clone()
    out[:, 1:] = torch.div(coords[:, 1:], stride, rounding_mode="floor")
    if out.shape[0] == 0:
        return out
    # Row-major keys sort like (b, x, y, z) rows, so this equals torch.unique(out, dim=0), only faster.
    keys, lo, span = _hash(out)
    return _unhash(torch.unique(keys), lo, span)


def sparse_conv3d(x: SparseVoxels, weight: torch.Tensor, bias: torch.Tensor | None = None, kernel_size: int = 3,
                  stride: int = 1, transposed: bool = False, out_coords: torch.Tensor | None = None) -> SparseVoxels:
    """Sparse 3-D convolution (submanifold, strided, or transposed), gather - matmul - scatter per offset.

    Args:
        x: input :class:`SparseVoxels`, N voxels, feats (N, Cin).
        weight: (K**3, Cin, Cout), feats' dtype / device (MinkowskiEngine layout; see the module doc).
        bias: (Cout,) or None.
        kernel_size: K >= 1; stride: s >= 1.
        transposed: upsampling conv (MinkUNet decoder); then ``out_coords`` is required.
        out_coords: (M, 4) int64 unique output coordinates. Default: x.coords for stride 1 (submanifold:
            the input's coordinates and cache), ``unique(floor(coords / s))`` for stride s > 1.
    Returns: SparseVoxels with feats (M, Cout) and stride ``x.stride * s`` (``x.stride // s`` transposed).
        Output voxels with no input neighbour get the bias (zeros without one).
    Raises: ValueError naming weight, bias, kernel_size, stride or out_coords when inconsistent.
    Source: Choy et al. 2019 (MinkowskiEngine), Graham et al. 2018 (submanifold conv); values equal
        ``F.conv3d`` / ``F.conv_transpose3d`` on the densified voxels (tests/test_sparse_conv.py).
    """
    K, s = int(kernel_size), int(stride)
    if K < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if s < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    Cin = x.feats.shape[1]
    if weight.dim() != 3 or weight.shape[0] != K ** 3 or weight.shape[1] != Cin:
        raise ValueError(f"weight must be (K^3={K ** 3}, Cin={Cin}, Cout), got {tuple(weight.shape)}")
    Cout = weight.shape[2]
    if bias is not None and bias.shape != (Cout,):
        raise ValueError(f"bias must be ({Cout},), got {tuple(bias.shape)}")
    maps_cache = x.kernel_maps
    # spconv on CUDA only: its CPU build has no backward, and its CPU forward races across OpenMP threads
    # (spconv 2.3.8: a few wrong rows in some calls unless OMP_NUM_THREADS=1)
    if s == 1 and not transposed and out_coords is None and K % 2 == 1 and x.coords.shape[0] \
            and x.feats.is_cuda and backend() == "spconv":
        return SparseVoxels._trusted(x.coords, _spconv_submanifold(x, weight, bias, K), x.stride, maps_cache)
    if transposed:
        if out_coords is None:
            raise ValueError("out_coords is required for a transposed conv (the finer coordinates to upsample onto)")
        out_stride = max(x.stride // s, 1)
    elif out_coords is None:
        if s == 1:
            out_coords = x.coords
        else:
            key = ("down", s)
            if key not in maps_cache:
                maps_cache[key] = downsample_coords(x.coords, s)
            out_coords = maps_cache[key]
        out_stride = x.stride * s
    else:
        out_stride = x.stride * s
    if out_coords.dtype != torch.int64 or out_coords.dim() != 2 or out_coords.shape[1] != 4:
        raise ValueError(f"out_coords must be (M, 4) int64, got {out_coords.dtype} {tuple(out_coords.shape)}")
    # The cache holds out_coords itself, so an `is` check cannot be fooled by a recycled tensor id.
    key = ("map", K, s, transposed, id(out_coords))
    hit = maps_cache.get(key)
    if hit is None or hit[0] is not out_coords:
        hit = (out_coords, kernel_map(x.coords, out_coords, K, s, transposed))
        maps_cache[key] = hit
    maps = hit[1]
    f = x.feats
    out = None
    for k, irows, orows in maps:
        if irows is None:  # submanifold centre: every voxel is its own neighbour, no gather needed
            out = f @ weight[k] if out is None else out + f @ weight[k]
    if out is None:
        out = f.new_zeros(out_coords.shape[0], Cout)
    for k, irows, orows in maps:
        if irows is not None:
            out.index_add_(0, orows, f.index_select(0, irows) @ weight[k])
    if bias is not None:
        out = out + bias
    share = maps_cache if out_coords is x.coords else None
    return SparseVoxels._trusted(out_coords, out, out_stride, share)


def _init_like_conv(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int) -> None:
    # nn.Conv3d.reset_parameters: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same for bias.
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        if bias is not None:
            bias.uniform_(-bound, bound)


class SparseConv3d(nn.Module):
    """Sparse conv layer (submanifold for stride 1, downsampling for stride > 1), MinkowskiEngine layout.

    Args: in_channels, out_channels; kernel_size K (default 3); stride s (default 1); bias (default False,
        MinkUNet's convs are followed by BatchNorm).
    Parameters: weight (K**3, Cin, Cout), bias (Cout,); initialised like ``nn.Conv3d`` (fan_in = Cin K**3).
    forward(x: SparseVoxels, out_coords=None) -> SparseVoxels; see :func:`sparse_conv3d`.
    Raises: ValueError for non-positive sizes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, bias: bool = False):
        super().__init__()
        if min(in_channels, out_channels, kernel_size, stride) < 1:
            raise ValueError(f"in_channels, out_channels, kernel_size, stride must be >= 1, got "
                             f"{in_channels}, {out_channels}, {kernel_size}, {stride}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.weight = nn.Parameter(torch.empty(kernel_size ** 3, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        _init_like_conv(self.weight, self.bias, in_channels * kernel_size ** 3)

    def forward(self, x: SparseVoxels, out_coords: torch.Tensor | None = None) -> SparseVoxels:
        return sparse_conv3d(x, self.weight, self.bias, self.kernel_size, self.stride, False, out_coords)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"bias={self.bias is not None}")


class SparseConvTranspose3d(SparseConv3d):
    """Sparse transposed conv (MinkUNet decoder upsampling) onto a given finer tensor's coordinates.

    Args: as :class:`SparseConv3d` (defaults kernel_size 2, stride 2). Initialised like
        ``nn.ConvTranspose3d`` (its fan_in is taken from weight dim 1: Cout K**3).
    forward(x: SparseVoxels, target: SparseVoxels) -> SparseVoxels on ``target.coords`` (reusing its cache).
    Raises: ValueError when ``target.stride * stride != x.stride``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)
        _init_like_conv(self.weight, self.bias, out_channels * kernel_size ** 3)

    def forward(self, x: SparseVoxels, target: SparseVoxels) -> SparseVoxels:
        if target.stride * self.stride != x.stride:
            raise ValueError(f"target stride {target.stride} x {self.stride} != input stride {x.stride}")
        out = sparse_conv3d(x, self.weight, self.bias, self.kernel_size, self.stride, True, target.coords)
        return SparseVoxels._trusted(target.coords, out.feats, target.stride, target.kernel_maps)


class SparseBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over the (N, C) features of a :class:`SparseVoxels` (MinkowskiBatchNorm).

    forward(x) -> SparseVoxels with the same coords; statistics over all voxels of the batch.
    """

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        return x.replace_feats(super().forward(x.feats))


class SparseReLU(nn.Module):
    """ReLU on the features of a :class:`SparseVoxels` (MinkowskiReLU)."""

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        return x.replace_feats(torch.relu(x.feats))
