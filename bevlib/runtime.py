"""Process-level runtime settings for CPU training and benchmarks."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.lru_cache(maxsize=1)
def reuse_large_allocations(threshold_bytes: int = 64 << 20) -> bool:
    """Let glibc serve large blocks (up to ``threshold_bytes``) from its heap and keep freed ones.

    By default glibc maps every block above 32 MB fresh from the kernel and unmaps it on free, so
    each rendered (B, N, C, h, w) tensor of a training step (46 MB at 6 x 288 x 512 x 13) pays its
    page faults again: measured here, a C = 13 render gather took 23-27 ms that way and 9-11 ms
    with the blocks reused. Memory is then returned to the OS less eagerly, which suits a
    long-running training or benchmark process. Blocks above the threshold are still mapped and
    unmapped: at the busch2026 paper preset (``python -m bevlib.bench memory``, batch 1, CPU) a
    512 MB threshold kept 13.3 GiB resident for 6.3 GiB of live tensors (freed 0.2-0.8 GiB
    activations stranded in the heap), 64 MB kept 10.2 GiB and ran the step faster (31.5 / 29.0 s
    against 43.8 / 35.6 s for the first two steps). Idempotent per threshold; a no-op (False)
    where libc is not glibc or refuses the setting.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)) == 1
    return ok and mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1
