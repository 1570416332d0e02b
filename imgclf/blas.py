"""Limiting the BLAS thread pool for a block.

OpenBLAS's worker threads spin for a while after each product. When numba's own threads run next (a
fused kernel on all cores), the spinners take their cores: linear-model training, whose steps are numba
kernels and whose only BLAS work is the per-epoch accuracy, ran 1.5x slower per epoch because of it,
and on a busy machine small products themselves got 7-8x slower. `blas_threads(1)` sets OpenBLAS's pool
size through its C API for the duration of a block and restores it after. Only OpenBLAS (numpy's
wheels) is handled; with any other BLAS, or where the library cannot be found, it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools

# (setter, getter) symbol pairs of the OpenBLAS builds numpy ships or links.
_SYMBOLS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


@functools.lru_cache(maxsize=1)
def _openblas():
    """(set, get) of the OpenBLAS loaded in this process, or None."""
    import numpy  # noqa: F401 - the BLAS of interest is the one numpy has loaded

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in _SYMBOLS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                return getattr(lib, setter), getattr(lib, getter)
    return None


@contextlib.contextmanager
def blas_threads(n: int):
    """Run the block with at most `n` BLAS threads (OpenBLAS only; otherwise unchanged)."""
    api = _openblas()
    if api is None:
        yield
        return
    set_threads, get_threads = api
    before = get_threads()
    set_threads(min(n, before))
    try:
        yield
    finally:
        set_threads(before)
