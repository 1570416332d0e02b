"""Max pooling on NHWC images: a fast path for non-overlapping 2x2 windows, a general path otherwise.

In NHWC the C values of one pixel are contiguous, so every kernel's inner loop runs over channels with
the window position fixed: loads are unit-stride and the max/argmax is a vectorisable select.
The forward pass records which window element won (`arg`); the backward pass routes the gradient there,
so ties go to the first maximum, as in the naive loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..errors import UsageError
from .im2col import output_size
from .threads import threads_for


@njit(parallel=True, cache=True)
def _max_pool_2x2(x, out, arg):
    N, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    for nh in prange(N * Ho):
        n = nh // Ho
        i = nh - n * Ho
        top = x[n, 2 * i]
        bottom = x[n, 2 * i + 1]
        for j in range(Wo):
            a, b = top[2 * j], top[2 * j + 1]
            c, d = bottom[2 * j], bottom[2 * j + 1]
            o = out[n, i, j]
            k = arg[n, i, j]
            for ch in range(C):
                m, km = a[ch], np.uint8(0)
                if b[ch] > m:
                    m, km = b[ch], np.uint8(1)
                if c[ch] > m:
                    m, km = c[ch], np.uint8(2)
                if d[ch] > m:
                    m, km = d[ch], np.uint8(3)
                o[ch] = m
                k[ch] = km


@njit(parallel=True, cache=True)
def _max_pool_2x2_backward(dout, arg, dx):
    # Writes every element of dx (the windows tile it exactly), so dx needs no zeroing first. Flat rows
    # indexed from 0 keep the four stores free of view bookkeeping (6x faster than per-pixel views).
    N, Ho, Wo, C = dout.shape
    W = dx.shape[2]  # 2 * Wo, or one more for an odd map (floor): its last column is zeroed by the caller
    zero = dx.dtype.type(0)
    for nh in prange(N * Ho):
        n = nh // Ho
        i = nh - n * Ho
        top = dx[n, 2 * i].reshape(W * C)
        bottom = dx[n, 2 * i + 1].reshape(W * C)
        g = dout[n, i].reshape(Wo * C)
        k = arg[n, i].reshape(Wo * C)
        for j in range(Wo):
            left, right = 2 * j * C, (2 * j + 1) * C
            for ch in range(C):
                v = g[j * C + ch]
                kk = k[j * C + ch]
                top[left + ch] = v if kk == 0 else zero
                top[right + ch] = v if kk == 1 else zero
                bottom[left + ch] = v if kk == 2 else zero
                bottom[right + ch] = v if kk == 3 else zero


@njit(parallel=True, cache=True)
def _max_pool(x, out, arg, PH, PW, S):
    N, H, W, C = x.shape
    _, Ho, Wo, _ = out.shape
    for nh in prange(N * Ho):
        n = nh // Ho
        i = nh - n * Ho
        for j in range(Wo):
            o = out[n, i, j]
            k = arg[n, i, j]
            first = x[n, i * S, j * S]
            for ch in range(C):
                o[ch] = first[ch]
                k[ch] = 0
            for p in range(PH):
                for q in range(PW):
                    v = x[n, i * S + p, j * S + q]
                    idx = np.int32(p * PW + q)
                    for ch in range(C):
                        if v[ch] > o[ch]:
                            o[ch] = v[ch]
                            k[ch] = idx


@njit(parallel=True, cache=True)
def _max_pool_backward(dout, arg, dx, PH, PW, S):
    # Overlapping windows add into the same pixel: one image per task keeps the adds race-free.
    N, Ho, Wo, C = dout.shape
    for n in prange(N):
        dx[n] = 0
        for i in range(Ho):
            for j in range(Wo):
                for ch in range(C):
                    k = arg[n, i, j, ch]
                    p = k // PW
                    dx[n, i * S + p, j * S + k - p * PW, ch] += dout[n, i, j, ch]


def pool_geometry(shape, size: int, stride: int, floor: bool = False) -> tuple[int, int]:
    """(Ho, Wo) of pooling (N, H, W, C) maps; windows must tile the map exactly unless `floor`, where the
    rows and columns past the last whole window are left out (PyTorch's default: 31 -> 15 for 2x2)."""
    if len(shape) != 4:
        raise UsageError(f"expected images shaped (N, H, W, C), got shape {tuple(shape)}")
    for name, v in (("pool size", size), ("pool stride", stride)):
        if int(v) != v or v < 1:
            raise UsageError(f"{name} must be an integer >= 1, got {v!r}")
    if floor:
        Ho, Wo = (shape[1] - size) // stride + 1, (shape[2] - size) // stride + 1
        if shape[1] < size or shape[2] < size:
            raise UsageError(f"max pooling: a {size}x{size} window does not fit {shape[1]}x{shape[2]} maps")
        return Ho, Wo
    return (output_size(shape[1], size, stride, 0, 1, "max pooling height"),
            output_size(shape[2], size, stride, 0, 1, "max pooling width"))


def is_fast_2x2(shape, size: int, stride: int) -> bool:
    return size == 2 and stride == 2 and shape[1] % 2 == 0 and shape[2] % 2 == 0


def max_pool(x: np.ndarray, size: int = 2, stride: int | None = None,
             floor: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Max over size x size windows every `stride` pixels (default: non-overlapping). Returns (out, arg).
    With `floor` the windows need not tile the map (the rest is left out, see `pool_geometry`)."""
    stride = size if stride is None else stride
    Ho, Wo = pool_geometry(x.shape, size, stride, floor)
    if x.dtype not in (np.float32, np.float64):
        raise UsageError(f"max pooling expects float32 or float64 images, got {x.dtype}")
    x = np.ascontiguousarray(x)
    N, C = x.shape[0], x.shape[3]
    out = np.empty((N, Ho, Wo, C), x.dtype)
    with threads_for(x.size):
        if size == 2 and stride == 2:  # also for odd maps (floor): the kernel reads whole windows only
            arg = np.empty((N, Ho, Wo, C), np.uint8)
            _max_pool_2x2(x, out, arg)
        else:
            arg = np.empty((N, Ho, Wo, C), np.int32)
            _max_pool(x, out, arg, int(size), int(size), int(stride))
    return out, arg


def max_pool_backward(dout: np.ndarray, arg: np.ndarray, x_shape: tuple, size: int = 2,
                      stride: int | None = None, floor: bool = False) -> np.ndarray:
    """Gradient of `max_pool` with respect to its input, given the `arg` it returned."""
    stride = size if stride is None else stride
    Ho, Wo = pool_geometry(x_shape, size, stride, floor)
    want = (x_shape[0], Ho, Wo, x_shape[3])
    if dout.shape != want or arg.shape != want:
        raise UsageError(f"max pooling backward: expected gradients of shape {want}, got {dout.shape}")
    dout = np.ascontiguousarray(dout)
    dx = np.empty(tuple(x_shape), dout.dtype)
    with threads_for(dx.size):
        if size == 2 and stride == 2:
            _max_pool_2x2_backward(dout, arg, dx)
            dx[:, 2 * Ho:] = 0  # an odd map's last row and column (floor) are in no window
            dx[:, :, 2 * Wo:] = 0
        else:
            _max_pool_backward(dout, arg, dx, int(size), int(size), int(stride))
    return dx
