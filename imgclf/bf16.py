"""bfloat16 products with float32 accumulation, where the CPU has them (AVX512-BF16 / AMX-BF16).

Arrays of bfloat16 are uint16 arrays holding the upper half of float32 bit patterns. `to_bf16` rounds
float32 to them (nearest, ties to even; imgclf/kernels/bf16.py), `from_bf16` widens them back exactly,
`im2col` builds a convolution's column matrix directly in bfloat16, and `gemm` multiplies two bfloat16
matrices into float32 through Intel MKL's `cblas_gemm_bf16bf16f32` (imgclf/mkl.py loads it). Each
product rounds its inputs to 8 significant bits and accumulates in float32: relative errors of about
1e-2 per product against float32, which training absorbs (docs/bf16.md measures it).

`available()` says whether this process can use it: Linux with `avx512_bf16` or `amx_bf16` among the
CPU flags, and MKL's runtime loadable (`pip install 'imgclf[bf16]'`); `unavailable_reason()` says why
not, and `require(param)` raises `imgclf.errors.Unsupported` naming the parameter that asked.
"""

from __future__ import annotations

import functools

import numpy as np

from .errors import Unsupported, UsageError

CPU_FLAGS = ("amx_bf16", "avx512_bf16")
INSTALL_HINT = "pip install 'imgclf[bf16]'"
# CBLAS enums
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_INT_MAX = 2**31 - 1  # MKL's LP64 interface: 32-bit dimensions


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags as the Linux kernel lists them (empty elsewhere or when unreadable)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def _cpu_reason() -> str | None:
    flags = cpu_flags()
    if not flags:
        return "the CPU's features cannot be read (/proc/cpuinfo; Linux only)"
    if not any(f in flags for f in CPU_FLAGS):
        return "this CPU has neither AVX512-BF16 nor AMX-BF16"
    return None


def unavailable_reason() -> str | None:
    """None when bfloat16 products can run here, else the reason (CPU first, then the library)."""
    reason = _cpu_reason()
    if reason is None:
        from . import mkl

        reason = mkl.reason_missing()
    return reason


def available() -> bool:
    return unavailable_reason() is None


def require(param: str = "precision") -> None:
    """Raise Unsupported (naming `param`) unless bfloat16 products can run here."""
    reason = unavailable_reason()
    if reason is not None:
        raise Unsupported(f"{param}='bf16' needs a CPU with AVX512-BF16 or AMX-BF16 and Intel MKL's bfloat16 "
                          f"GEMM ({INSTALL_HINT}); here {reason}", param=param)


def _out(out, shape, dtype, name):
    if out is None:
        from .kernels import buffers

        return buffers.empty(shape, dtype)  # a warm recycled array: fresh ones fault every page
    if not isinstance(out, np.ndarray) or out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise UsageError(f"{name} must be a C-contiguous {np.dtype(dtype)} array of shape {tuple(shape)}, got {got}",
                         param=name)
    if not out.flags.writeable:
        raise UsageError(f"{name} is read-only", param=name)
    return out


def to_bf16(a, out=None) -> np.ndarray:
    """float32 `a` rounded to bfloat16 (uint16 of `a`'s shape), into `out` if given."""
    from .kernels.bf16 import round_bf16
    from .kernels.threads import threads_for

    a = np.asarray(a)
    if a.dtype != np.float32:
        raise UsageError(f"to_bf16 expects float32 data, got {a.dtype}", param="a")
    a = np.ascontiguousarray(a)
    out = _out(out, a.shape, np.uint16, "out")
    with threads_for(a.size):
        round_bf16(a.reshape(-1).view(np.uint32), out.reshape(-1))
    return out


def from_bf16(a) -> np.ndarray:
    """bfloat16 (uint16) values widened exactly to float32."""
    a = np.asarray(a)
    if a.dtype != np.uint16:
        raise UsageError(f"from_bf16 expects bfloat16 data as uint16, got {a.dtype}", param="a")
    return (a.astype(np.uint32) << 16).view(np.float32)


def im2col(x, kh: int, kw: int, stride: int = 1, pad: int = 0, dilation: int = 1, out=None) -> np.ndarray:
    """imgclf.kernels.im2col.im2col of float32 images, written as bfloat16 (uint16) and rounded on the way."""
    from .kernels import bf16 as kernels
    from .kernels.im2col import _check_geometry
    from .kernels.threads import threads_for

    x = np.asarray(x)
    Ho, Wo = _check_geometry(x.shape, kh, kw, stride, pad, dilation)
    if x.dtype != np.float32:
        raise UsageError(f"bf16 im2col expects float32 images, got {x.dtype}", param="x")
    x = np.ascontiguousarray(x)
    N, H, W, C = x.shape
    cols = _out(out, (N * Ho * Wo, kh * kw * C), np.uint16, "out")
    with threads_for(cols.size):
        kernels.im2col_bf16(x.reshape(-1).view(np.uint32), cols.reshape(-1), N, H, W, C, int(kh), int(kw),
                            int(stride), int(pad), int(dilation), Ho, Wo)
    return cols


def _operand(a, name):
    if not isinstance(a, np.ndarray) or a.dtype != np.uint16 or a.ndim != 2:
        got = f"{a.dtype} of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise UsageError(f"{name} must be a 2-d bfloat16 (uint16) array, got {got}", param=name)
    if not a.flags.c_contiguous:
        raise UsageError(f"{name} must be C-contiguous (transpose with transa/transb instead)", param=name)
    if max(a.shape) > _INT_MAX:
        raise UsageError(f"{name} is too large for MKL's 32-bit dimensions: shape {a.shape}", param=name)
    return a


def gemm(A, B, transa: bool = False, transb: bool = False, out=None) -> np.ndarray:
    """op(A) @ op(B) in float32 from bfloat16 (uint16, C-contiguous) A and B; op transposes when asked.

    The products accumulate in float32 (MKL: AMX tiles or AVX512-BF16 dot products); the result goes to
    `out` (float32, C-contiguous (M, N)) if given. Runs on imgclf's BLAS thread count (imgclf/blas.py),
    without the GIL. Raises Unsupported when the CPU or MKL is missing."""
    A, B = _operand(A, "A"), _operand(B, "B")
    M, K = A.shape[::-1] if transa else A.shape
    K2, N = B.shape[::-1] if transb else B.shape
    if K != K2:
        raise UsageError(f"gemm: op(A) is {M}x{K} but op(B) is {K2}x{N}; the inner sizes must agree", param="B")
    out = _out(out, (M, N), np.float32, "out")
    if M == 0 or N == 0:
        return out
    if K == 0:
        out[...] = 0
        return out
    require("precision")
    from . import mkl
    from .blas import blas_thread_count

    lib = mkl.library()
    before = lib.MKL_Set_Num_Threads_Local(blas_thread_count())
    try:
        lib.cblas_gemm_bf16bf16f32(_ROW_MAJOR, _TRANS if transa else _NO_TRANS, _TRANS if transb else _NO_TRANS,
                                   M, N, K, 1.0, A.ctypes.data, A.shape[1], B.ctypes.data, B.shape[1], 0.0,
                                   out.ctypes.data, N)
    finally:
        lib.MKL_Set_Num_Threads_Local(before)
    return out
