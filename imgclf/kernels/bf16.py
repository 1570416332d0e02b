"""float32 -> bfloat16 rounding, alone and fused into im2col.

bfloat16 is the upper half of a float32 (sign, 8 exponent bits, 7 mantissa bits); arrays of it are uint16
here. Rounding is to nearest, ties to even, on the float32's bit pattern: add 0x7FFF plus the lowest kept
bit, keep the upper 16 bits. Overflow rounds to infinity as IEEE rounding does; a NaN keeps its sign and
upper payload and gets the quiet bit set, so it never rounds into an infinity.

`im2col_bf16` is im2col (imgclf/kernels/im2col.py, same layout, same runs) writing the column matrix
as bfloat16 directly: half the bytes of the largest temporary, and no separate rounding pass over it.
Public wrappers are in imgclf/bf16.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .im2col import _zero_run


# Round to nearest even on the bits u (uint32) of a float32, branch-free so LLVM vectorises the loops that
# call it. numba types integer arithmetic at 64 bits (uint32 + uint32 is uint64), which ran these loops on
# 64-bit lanes (vpmovzxdq, vpaddq: 8 values per zmm register); truncating every intermediate back to
# uint32 lets LLVM narrow the operations: 16 values per register.
_U16, _U1, _QUIET, _ROUND = np.uint32(16), np.uint32(1), np.uint32(0x0040), np.uint32(0x7FFF)
_ABS, _INF = np.uint32(0x7FFFFFFF), np.uint32(0x7F800000)


@njit(cache=True, inline="always")
def _rne32(u):
    high = np.uint32(u >> _U16)
    rounded = np.uint32(np.uint32(np.uint32(u + _ROUND) + np.uint32(high & _U1)) >> _U16)
    quiet = np.uint32(high | _QUIET)
    return quiet if np.uint32(u & _ABS) > _INF else rounded


@njit(parallel=True, cache=True)
def round_bf16(src, dst):
    """dst[i] = bfloat16(src[i]); src the uint32 view of float32 data, dst uint16, both flat."""
    for i in prange(src.shape[0]):
        dst[i] = np.uint16(_rne32(src[i]))


@njit(cache=True, inline="always")
def _round_run(dst, src):
    for t in range(dst.shape[0]):
        dst[t] = np.uint16(_rne32(src[t]))


@njit(parallel=True, cache=True)
def im2col_bf16(x, cols, N, H, W, C, KH, KW, stride, pad, dil, Ho, Wo):
    # x: flat uint32 view of float32 images; cols: flat uint16. The loop structure of _im2col.
    KWC = KW * C
    K = KH * KWC
    for nh in prange(N * Ho):
        n = nh // Ho
        ho = nh - n * Ho
        for wo in range(Wo):
            row = (nh * Wo + wo) * K
            w0 = wo * stride - pad
            lo = min(max(0, -w0), KW)
            hi = max(min(KW, W - w0), lo)
            for kh in range(KH):
                h = ho * stride - pad + kh * dil
                base = row + kh * KWC
                if h < 0 or h >= H:
                    _zero_run(cols[base:base + KWC])
                    continue
                xrow = (n * H + h) * W * C
                if dil == 1:
                    _zero_run(cols[base:base + lo * C])
                    _round_run(cols[base + lo * C:base + hi * C], x[xrow + (w0 + lo) * C:xrow + (w0 + hi) * C])
                    _zero_run(cols[base + hi * C:base + KWC])
                else:
                    for kw in range(KW):
                        w = w0 + kw * dil
                        dst = base + kw * C
                        if w < 0 or w >= W:
                            _zero_run(cols[dst:dst + C])
                        else:
                            _round_run(cols[dst:dst + C], x[xrow + w * C:xrow + (w + 1) * C])
