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
from pathlib import PurePath

# (setter, getter) symbol pairs of the OpenBLAS builds numpy ships or links.
_SYMBOLS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


def _is_numpys(path: str) -> bool:
    """Whether a library file lies in numpy's own folders (`numpy.libs/` of the wheels, or below `numpy/`), by
    whole path component: a venv or home folder merely named like numpy does not make scipy's OpenBLAS numpy's."""
    return any(part in ("numpy", "numpy.libs") for part in PurePath(path).parent.parts)


def _openblas_paths() -> list[str]:
    """Files of the OpenBLAS libraries loaded in this process, numpy's first (scipy's wheels bring their own)."""
    import numpy  # noqa: F401 - the BLAS of interest is the one numpy has loaded

    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line},
                          key=lambda path: (not _is_numpys(path), path))
    except OSError:
        return []


@functools.lru_cache(maxsize=1)
def _openblas_all() -> tuple:
    """(set, get) of every OpenBLAS loaded in this process, numpy's first."""
    found = []
    for path in _openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in _SYMBOLS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                found.append((getattr(lib, setter), getattr(lib, getter)))
                break
    return tuple(found)


def _openblas():
    """(set, get) of the OpenBLAS numpy has loaded, or None."""
    found = _openblas_all()
    return found[0] if found else None


@contextlib.contextmanager
def blas_threads(n: int):
    """Run the block with at most `n` BLAS threads in every OpenBLAS loaded when it starts (numpy's and,
    once scipy.linalg is imported, scipy's); otherwise unchanged."""
    _openblas_all.cache_clear()  # scipy may have loaded its library since the last call
    apis = _openblas_all()
    befores = [get_threads() for _, get_threads in apis]
    for (set_threads, _), before in zip(apis, befores):
        set_threads(min(n, before))
    try:
        yield
    finally:
        for (set_threads, _), before in zip(apis, befores):
            set_threads(before)


def blas_thread_count() -> int:
    """OpenBLAS's thread count (1 when another BLAS is loaded, whose threads cannot be set)."""
    api = _openblas()
    return max(1, int(api[1]())) if api is not None else 1


def run_on_threads(workers: int, work) -> None:
    """work(0) ... work(workers - 1), each on its own Python thread with a one-thread BLAS.

    For jobs split statically into `workers` shares of GEMMs and GIL-free numba kernels: the shares
    run on every core with no BLAS threads fighting them, and the split does not depend on timing.
    One worker runs inline. The first exception raised in a worker is re-raised here.
    """
    if workers <= 1:
        work(0)
        return
    import threading

    errors = []

    def run(w: int) -> None:
        try:
            work(w)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    with blas_threads(1):
        threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]


def split_rows(n: int, work) -> None:
    """work(start, stop) over n rows cut into one contiguous share per BLAS thread, run by run_on_threads."""
    workers = max(1, min(blas_thread_count(), n))
    edges = [n * w // workers for w in range(workers + 1)]
    run_on_threads(workers, lambda w: work(edges[w], edges[w + 1]))


# CBLAS symbols of the OpenBLAS builds numpy ships or links ({precision char}{routine}), and whether their
# integers are 64-bit.
_CBLAS_SYMBOLS = (("scipy_cblas_{}{}64_", True), ("cblas_{}{}64_", True),
                  ("scipy_cblas_{}{}", False), ("cblas_{}{}", False))
_ROW_MAJOR, _NO_TRANS, _TRANS, _LOWER = 101, 111, 112, 122


@functools.lru_cache(maxsize=4)
def _cblas(routine: str, char: str):
    """numpy's OpenBLAS `cblas_{char}{routine}` (e.g. "gemm", "s") and its integer type, or None."""
    for path in filter(_is_numpys, _openblas_paths()):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name, wide in _CBLAS_SYMBOLS:
            if hasattr(lib, name.format(char, routine)):
                return getattr(lib, name.format(char, routine)), (ctypes.c_int64 if wide else ctypes.c_int32)
    return None


def gram_lower(A, out) -> bool:
    """out's lower triangle := A.T @ A (BLAS syrk, no GIL held, the upper triangle left untouched), for a
    C-contiguous float32 or float64 A (K, N) and out (N, N) of its dtype. False (nothing done) when numpy's
    OpenBLAS cannot be called directly."""
    import numpy as np

    char = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}.get(A.dtype)
    found = _cblas("syrk", char) if char else None
    # the same conditions as gemm_tn_into's (numpy's own BLAS dispatch)
    if (found is None or A.ndim != 2 or out.dtype != A.dtype or out.shape != (A.shape[1], A.shape[1])
            or not (A.flags.c_contiguous and out.flags.c_contiguous and out.flags.writeable)
            or not (A.flags.aligned and out.flags.aligned) or np.may_share_memory(A, out)):
        return False
    fn, integer = found
    real = ctypes.c_float if char == "s" else ctypes.c_double
    k, n = A.shape
    if not _fits(integer, n, k):
        return False
    fn(ctypes.c_int(_ROW_MAJOR), ctypes.c_int(_LOWER), ctypes.c_int(_TRANS), integer(n), integer(k), real(1.0),
       ctypes.c_void_p(A.ctypes.data), integer(n), real(0.0), ctypes.c_void_p(out.ctypes.data), integer(n))
    return True


def _fits(integer, *values: int) -> bool:
    """Whether every value fits the ctypes integer type `integer` (c_int32 wraps silently, e.g. 2**31 -> -2**31)."""
    return integer is not ctypes.c_int32 or all(v < 2**31 for v in values)


def gemm_tn_into(A, B, C, alpha: float, beta: float) -> bool:
    """C := alpha * A.T @ B + beta * C in place, one BLAS gemm in numpy's OpenBLAS (no GIL held), for
    C-contiguous A (K, M), B (K, N) and C (M, N) of one dtype, float32 or float64 (the plain-SGD step of a
    layer's weight folded into its gradient's product: C = W, alpha = -lr, beta = 1 - lr * l2). False
    (nothing done) when numpy's OpenBLAS cannot be called directly or the arrays do not qualify: as in numpy's
    own BLAS dispatch, they must also be aligned, C must not overlap A or B, and with a 32-bit-integer OpenBLAS
    every dimension must fit its integers."""
    import numpy as np

    char = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}.get(A.dtype)
    found = _cblas("gemm", char) if char else None
    if (found is None or A.ndim != 2 or B.ndim != 2 or C.ndim != 2 or B.dtype != A.dtype or C.dtype != A.dtype
            or not (A.flags.c_contiguous and B.flags.c_contiguous and C.flags.c_contiguous and C.flags.writeable)
            or not (A.flags.aligned and B.flags.aligned and C.flags.aligned)
            or B.shape[0] != A.shape[0] or C.shape != (A.shape[1], B.shape[1])
            or np.may_share_memory(C, A) or np.may_share_memory(C, B)):
        return False
    fn, integer = found
    real = ctypes.c_float if char == "s" else ctypes.c_double
    k, m = A.shape
    n = B.shape[1]
    if not _fits(integer, m, n, k):  # the leading dimensions are m and n
        return False
    if m == 0 or n == 0:
        return True
    fn(ctypes.c_int(_ROW_MAJOR), ctypes.c_int(_TRANS), ctypes.c_int(_NO_TRANS), integer(m), integer(n), integer(k),
       real(alpha), ctypes.c_void_p(A.ctypes.data), integer(m), ctypes.c_void_p(B.ctypes.data), integer(n),
       real(beta), ctypes.c_void_p(C.ctypes.data), integer(n))
    return True
