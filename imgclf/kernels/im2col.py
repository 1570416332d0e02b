"""im2col / col2im for NHWC images, so a convolution is one BLAS GEMM.

Layout: `x` is (N, H, W, C); `cols` is (N*Ho*Wo, KH*KW*C) with one row per output pixel and the
columns ordered (kh, kw, c). Then `cols @ w.reshape(KH*KW*C, F)` is (N*Ho*Wo, F), which *is* the NHWC
output (N, Ho, Wo, F) without a transpose, and both backward GEMMs read the same row-major buffers.
With dilation 1 the KW*C values of one kernel row are contiguous in both `x` and `cols`, so the
kernels copy whole runs (vectorised loads/stores) rather than C values at a time; zero padding is
handled by clipping the run, not by materialising a padded copy of `x`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..errors import UsageError
from .threads import threads_for


def output_size(size: int, field: int, stride: int, pad: int, dilation: int = 1, what: str = "convolution") -> int:
    """(size + 2*pad - dilation*(field-1) - 1) / stride + 1, refusing geometries that do not tile exactly."""
    span = dilation * (field - 1) + 1
    room = size + 2 * pad - span
    if room < 0:
        raise UsageError(f"{what}: a {field}-wide window (dilation {dilation}) does not fit an input of "
                         f"{size} with padding {pad}")
    if room % stride:
        raise UsageError(f"{what}: (W - F + 2P)/S + 1 = ({size} - {span} + 2*{pad})/{stride} + 1 = "
                         f"{room / stride + 1:g} is not an integer; change the stride or the padding")
    return room // stride + 1


@njit(cache=True, inline="always")
def _copy_run(dst, src):
    # Explicit loops over views indexed from 0: LLVM drops the negative-index fix-ups and vectorises;
    # twice as fast as slice assignment, which goes through numba's general array-copy path.
    for t in range(dst.shape[0]):
        dst[t] = src[t]


@njit(cache=True, inline="always")
def _zero_run(dst):
    zero = dst.dtype.type(0)
    for t in range(dst.shape[0]):
        dst[t] = zero


@njit(parallel=True, cache=True)
def _im2col(x, cols, N, H, W, C, KH, KW, stride, pad, dil, Ho, Wo):
    # x and cols are flat views; flat offsets keep the inner copies free of per-pixel view bookkeeping.
    KWC = KW * C
    K = KH * KWC
    for nh in prange(N * Ho):
        n = nh // Ho
        ho = nh - n * Ho
        for wo in range(Wo):
            row = (nh * Wo + wo) * K
            w0 = wo * stride - pad
            # with dilation 1: kernel columns lo..hi-1 fall inside the image, one contiguous run
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
                    _copy_run(cols[base + lo * C:base + hi * C], x[xrow + (w0 + lo) * C:xrow + (w0 + hi) * C])
                    _zero_run(cols[base + hi * C:base + KWC])
                else:
                    for kw in range(KW):
                        w = w0 + kw * dil
                        dst = base + kw * C
                        if w < 0 or w >= W:
                            _zero_run(cols[dst:dst + C])
                        else:
                            _copy_run(cols[dst:dst + C], x[xrow + w * C:xrow + (w + 1) * C])


@njit(cache=True, inline="always")
def _add_run(dst, src):
    # Indexing views from 0 lets LLVM drop the negative-index fix-up and vectorise the adds.
    for t in range(dst.shape[0]):
        dst[t] += src[t]


@njit(parallel=True, cache=True)
def _col2im(cols, dx, N, H, W, C, KH, KW, stride, pad, dil, Ho, Wo):
    # One image per parallel task: windows overlap within an image only, so the adds never race.
    KWC = KW * C
    K = KH * KWC
    img = H * W * C
    for n in prange(N):
        dx[n * img:(n + 1) * img] = 0
        for ho in range(Ho):
            for wo in range(Wo):
                row = ((n * Ho + ho) * Wo + wo) * K
                w0 = wo * stride - pad
                for kh in range(KH):
                    h = ho * stride - pad + kh * dil
                    if h < 0 or h >= H:
                        continue
                    xrow = (n * H + h) * W * C
                    base = row + kh * KWC
                    if dil == 1:
                        lo = min(max(0, -w0), KW)
                        hi = max(min(KW, W - w0), lo)
                        _add_run(dx[xrow + (w0 + lo) * C:xrow + (w0 + hi) * C], cols[base + lo * C:base + hi * C])
                    else:
                        for kw in range(KW):
                            w = w0 + kw * dil
                            if 0 <= w < W:
                                _add_run(dx[xrow + w * C:xrow + (w + 1) * C], cols[base + kw * C:base + (kw + 1) * C])


def _check_geometry(shape, kh, kw, stride, pad, dilation):
    if len(shape) != 4:
        raise UsageError(f"expected images shaped (N, H, W, C), got shape {tuple(shape)}")
    for name, v, least in (("filter height", kh, 1), ("filter width", kw, 1), ("stride", stride, 1),
                           ("padding", pad, 0), ("dilation", dilation, 1)):
        if int(v) != v or v < least:
            raise UsageError(f"{name} must be an integer >= {least}, got {v!r}")
    _, H, W, _ = shape
    return (output_size(H, kh, stride, pad, dilation, "convolution height"),
            output_size(W, kw, stride, pad, dilation, "convolution width"))


def _check_out(out, shape, dtype, name):
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise UsageError(f"{name} buffer must be C-contiguous {dtype} {tuple(shape)}, got {out.dtype} {out.shape}")
    return out


def im2col(x: np.ndarray, kh: int, kw: int, stride: int = 1, pad: int = 0, dilation: int = 1,
           out: np.ndarray | None = None) -> np.ndarray:
    """Rows of receptive fields: (N*Ho*Wo, kh*kw*C), columns ordered (kh, kw, c). `out` is reused if given."""
    Ho, Wo = _check_geometry(x.shape, kh, kw, stride, pad, dilation)
    if x.dtype not in (np.float32, np.float64):
        raise UsageError(f"im2col expects float32 or float64 images, got {x.dtype}")
    x = np.ascontiguousarray(x)
    N, _, _, C = x.shape
    cols = _check_out(out, (N * Ho * Wo, kh * kw * C), x.dtype, "im2col output")
    with threads_for(cols.size):
        _im2col(x.reshape(-1), cols.reshape(-1), N, x.shape[1], x.shape[2], C, int(kh), int(kw), int(stride),
                int(pad), int(dilation), Ho, Wo)
    return cols


def col2im(cols: np.ndarray, x_shape: tuple, kh: int, kw: int, stride: int = 1, pad: int = 0,
           dilation: int = 1, out: np.ndarray | None = None) -> np.ndarray:
    """The adjoint of im2col: sums every column entry back onto the pixel it was copied from."""
    Ho, Wo = _check_geometry(x_shape, kh, kw, stride, pad, dilation)
    N, _, _, C = x_shape
    want = (N * Ho * Wo, kh * kw * C)
    if cols.shape != want:
        raise UsageError(f"col2im: expected columns of shape {want} for images {tuple(x_shape)}, got {cols.shape}")
    if cols.dtype not in (np.float32, np.float64):
        raise UsageError(f"col2im expects float32 or float64 columns, got {cols.dtype}")
    cols = np.ascontiguousarray(cols)
    dx = _check_out(out, tuple(x_shape), cols.dtype, "col2im output")
    with threads_for(cols.size):
        _col2im(cols.reshape(-1), dx.reshape(-1), N, x_shape[1], x_shape[2], C, int(kh), int(kw), int(stride),
                int(pad), int(dilation), Ho, Wo)
    return dx
