"""Spatial batch normalisation fused with the ReLU that follows it, on the (M, C) view of NHWC maps.

In NHWC the per-channel statistics of (N, H, W, C) maps are column statistics of an (N*H*W, C)
matrix whose rows are contiguous, so every loop below runs rows outside and channels inside
(unit-stride, vectorised), with float64 per-channel accumulators. The forward pass is one pass for
the statistics (two in float64 would be safer for huge M; one with a shifted sum is exact enough at
M ~ 10^5 float32 values) plus one fused pass `max(0, x*scale + shift)`; the backward pass is one
pass of reductions and one pass writing dx, where numpy needs about a dozen full passes for the same
work. Rows are split into a few chunks whose partial sums run in parallel.

When a 2x2 max pool follows the ReLU (the convnet's stages), `forward_pool2`/`backward_pool2` fuse it
too: the normalised map is never written, only its pooled maximum, which window element won and (in
training) the winner's x, and the backward pass reads the pooled gradient directly instead of a
scattered full-size copy. Per stage that is 3 passes over the full-size map (statistics, normalise +
pool, dx) plus pooled arrays, instead of 12: the backward sums need only the winners. The ReLU mask is
recomputed from x with the same float32 scale and shift as the forward pass, so the gradients are those
of the unfused layers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..errors import UsageError
from .elementwise import gelu, gelu_grad
from .buffers import empty as _empty
from .threads import threads_for

CHUNKS = 8


@njit(parallel=True, cache=True)
def _column_stats(x, shift, out):
    """out[0] = sum(x - shift), out[1] = sum((x - shift)^2) per column, float64 (shift ~ a row of x)."""
    M, C = x.shape
    part = np.zeros((CHUNKS, 2, C))
    step = (M + CHUNKS - 1) // CHUNKS
    for k in prange(CHUNKS):
        s, q = part[k, 0], part[k, 1]
        for r in range(k * step, min(M, (k + 1) * step)):
            row = x[r]
            for c in range(C):
                d = np.float64(row[c]) - shift[c]
                s[c] += d
                q[c] += d * d
    out[0] = part[:, 0].sum(axis=0)
    out[1] = part[:, 1].sum(axis=0)


@njit(parallel=True, cache=True)
def _scale_shift(x, scale, shift, relu, out):
    M, C = x.shape
    zero = out.dtype.type(0)
    step = (M + CHUNKS - 1) // CHUNKS
    for k in prange(CHUNKS):
        for r in range(k * step, min(M, (k + 1) * step)):
            row, o = x[r], out[r]
            if relu:
                for c in range(C):
                    v = row[c] * scale[c] + shift[c]
                    o[c] = max(v, zero)
            else:
                for c in range(C):
                    o[c] = row[c] * scale[c] + shift[c]


@njit(parallel=True, cache=True)
def _backward_sums(dout, out, x, mean, inv, relu, sums):
    """sums[0] = sum(dy), sums[1] = sum(dy * xhat) per column, dy = dout masked by the ReLU."""
    M, C = x.shape
    part = np.zeros((CHUNKS, 2, C))
    step = (M + CHUNKS - 1) // CHUNKS
    for k in prange(CHUNKS):
        s, q = part[k, 0], part[k, 1]
        for r in range(k * step, min(M, (k + 1) * step)):
            g, o, xr = dout[r], out[r], x[r]
            for c in range(C):
                dy = np.float64(g[c]) if (not relu or o[c] > 0) else 0.0
                s[c] += dy
                q[c] += dy * (np.float64(xr[c]) - mean[c]) * inv[c]
    sums[0] = part[:, 0].sum(axis=0)
    sums[1] = part[:, 1].sum(axis=0)


@njit(parallel=True, cache=True)
def _backward_dx(dout, out, x, a, b, c0, relu, dx):
    """dx = a*dy + b*x + c0 per column (dy = dout masked by the ReLU)."""
    M, C = x.shape
    zero = dx.dtype.type(0)  # a literal 0 would make the whole expression float64
    step = (M + CHUNKS - 1) // CHUNKS
    for k in prange(CHUNKS):
        for r in range(k * step, min(M, (k + 1) * step)):
            g, o, xr, d = dout[r], out[r], x[r], dx[r]
            for c in range(C):
                dy = g[c] if (not relu or o[c] > 0) else zero
                d[c] = a[c] * dy + b[c] * xr[c] + c0[c]


@njit(cache=True, inline="always")
def _window_rows(x, nh, Ho):
    """The two input rows under pooled row nh = n*Ho + i of (N, H, W, C) maps, as flat (W*C) views: the
    channel loops then run unit-stride from index 0, without per-pixel view bookkeeping."""
    n = nh // Ho
    i = nh - n * Ho
    W, C = x.shape[2], x.shape[3]
    return x[n, 2 * i].reshape(W * C), x[n, 2 * i + 1].reshape(W * C)


@njit(cache=True, inline="always")
def _pooled_row(a, nh):
    """Pooled row nh of (N, Ho, Wo, C) maps as a flat (Wo*C) view."""
    Ho = a.shape[1]
    n = nh // Ho
    return a[n, nh - n * Ho].reshape(a.shape[2] * a.shape[3])


# The pooled kernels index the 4-d arrays directly, (n, 2i + di, 2j + dj, c), instead of taking row views
# inside the parallel loop: numba then finds no aliases among the parallel body's arrays and marks them
# `noalias`, so LLVM vectorises the channel loop without runtime overlap checks. With views the checks ran
# at every window (every C channels) and, with the vectoriser's 32-channel stride, C = 32 maps ran the dx
# pass at a quarter of C = 64's speed per byte (3.7 ms against 0.6 ms on a 64x32x32x32 float32 map).

@njit(cache=True, inline="always")
def _relu_window(x, n, i, j, c, s, t, zero):
    """(max, first winning element 0..3, the winner's x) of max(0, x*s + t) over window (i, j) of map n,
    channel c: max(v, 0) first, a later element wins only if it is larger, ties go to the first."""
    a = x[n, 2 * i, 2 * j, c]
    m, km, w = max(a * s + t, zero), np.uint8(0), a
    a = x[n, 2 * i, 2 * j + 1, c]
    v = a * s + t
    if v > m:
        m, km, w = v, np.uint8(1), a
    a = x[n, 2 * i + 1, 2 * j, c]
    v = a * s + t
    if v > m:
        m, km, w = v, np.uint8(2), a
    a = x[n, 2 * i + 1, 2 * j + 1, c]
    v = a * s + t
    if v > m:
        m, km, w = v, np.uint8(3), a
    return m, km, w


@njit(parallel=True, cache=True)
def _scale_shift_relu_pool2(x, scale, shift, out, arg, xw):
    """out = 2x2 max of max(0, x*scale + shift), arg = the first winning window element (0..3) and, when
    xw is not empty (training), xw = the winner's x: all the backward sums pass needs of x."""
    N, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    zero = out.dtype.type(0)
    keep = xw.size > 0
    for nh in prange(N * Ho):
        n = nh // Ho
        i = nh - n * Ho
        if keep:
            for j in range(Wo):
                for c in range(C):
                    out[n, i, j, c], arg[n, i, j, c], xw[n, i, j, c] = _relu_window(x, n, i, j, c, scale[c],
                                                                                    shift[c], zero)
        else:
            for j in range(Wo):
                for c in range(C):
                    out[n, i, j, c], arg[n, i, j, c], _ = _relu_window(x, n, i, j, c, scale[c], shift[c], zero)


@njit(parallel=True, cache=True)
def _pool2_backward_sums(dout, xw, scale, shift, mean, inv, sums):
    """`_backward_sums` for the fused pool over pooled (M/4, C) arrays: only each window's winner carries
    a gradient, so the winners' x (xw, kept by the forward pass) is all of x it reads."""
    M, C = xw.shape
    part = np.zeros((CHUNKS, 2, C))
    step = (M + CHUNKS - 1) // CHUNKS
    for k in prange(CHUNKS):
        for r in range(k * step, min(M, (k + 1) * step)):
            for c in range(C):
                v = xw[r, c]
                dy = np.float64(dout[r, c]) if v * scale[c] + shift[c] > 0 else 0.0
                part[k, 0, c] += dy
                part[k, 1, c] += dy * (np.float64(v) - mean[c]) * inv[c]
    sums[0] = part[:, 0].sum(axis=0)
    sums[1] = part[:, 1].sum(axis=0)


@njit(cache=True, inline="always")
def _dx_at(d, x, e, g, won, s, t, a, b, c0, zero):
    """dx = a*dy + b*x + c0 at index e of x (into d, dx's array): dy = g if the element won the pool and
    passed the ReLU. x[e] is read before d[e] is written, so d may be x. e is a flat index into row views
    or an (n, h, w, c) tuple into the maps."""
    v = x[e]
    dy = g if (won and v * s + t > 0) else zero
    d[e] = a * dy + b * v + c0


@njit(cache=True, inline="always")
def _dx_window(top, bottom, dtop, dbottom, tl, tr, bl, br, g, k, s, t, a, b, c0, zero):
    """`_dx_at` over the four elements of one window's channel (top[tl], top[tr], bottom[bl], bottom[br]),
    k the winner, g the pooled gradient."""
    _dx_at(dtop, top, tl, g, k == 0, s, t, a, b, c0, zero)
    _dx_at(dtop, top, tr, g, k == 1, s, t, a, b, c0, zero)
    _dx_at(dbottom, bottom, bl, g, k == 2, s, t, a, b, c0, zero)
    _dx_at(dbottom, bottom, br, g, k == 3, s, t, a, b, c0, zero)


# The two dx kernels share the window body but not the indexing form. numba marks the parallel body's
# arrays `noalias` when it finds no aliases inside the function (4-d indexing, above), and it never
# considers that two arguments may be one array: `_pool2_backward_dx`'s dx must not be x. The in-place
# kernel has one map parameter, read and written, and indexes it through row views (as the GELU kernels):
# indexed in 4-d it ran the channel loop scalar (2.5 ms against 0.4 ms on a 64x32x32x32 float32 map), while
# the out-of-place kernel through row views ran at C = 32 the slow way described above (4.5 ms).

@njit(parallel=True, cache=True)
def _pool2_backward_dx(dout, arg, x, scale, shift, a, b, c0, dx):
    """`_backward_dx` for the fused pool: dy is the pooled gradient at the winner, 0 elsewhere."""
    N, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    zero = dx.dtype.type(0)
    for nh in prange(N * Ho):
        n = nh // Ho
        i = nh - n * Ho
        for j in range(Wo):
            for c in range(C):
                _dx_window(x, x, dx, dx, (n, 2 * i, 2 * j, c), (n, 2 * i, 2 * j + 1, c), (n, 2 * i + 1, 2 * j, c),
                           (n, 2 * i + 1, 2 * j + 1, c), dout[n, i, j, c], arg[n, i, j, c], scale[c], shift[c], a[c],
                           b[c], c0[c], zero)


@njit(parallel=True, cache=True)
def _pool2_backward_dx_inplace(dout, arg, x, scale, shift, a, b, c0):
    """`_pool2_backward_dx` writing dx over x."""
    N, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    zero = x.dtype.type(0)
    for nh in prange(N * Ho):
        top, bottom = _window_rows(x, nh, Ho)
        g, kk = _pooled_row(dout, nh), _pooled_row(arg, nh)
        for j in range(Wo):
            l, r, p = 2 * j * C, (2 * j + 1) * C, j * C
            for c in range(C):
                _dx_window(top, bottom, top, bottom, l + c, r + c, l + c, r + c, g[p + c], kk[p + c], scale[c],
                           shift[c], a[c], b[c], c0[c], zero)


def _check(x, gamma, beta):
    if x.ndim != 2 or x.dtype not in (np.float32, np.float64) or not x.flags.c_contiguous:
        raise UsageError(f"batch norm kernels expect a C-contiguous float (M, C) array, got {x.dtype} {x.shape}")
    C = x.shape[1]
    if gamma.shape != (C,) or beta.shape != (C,):
        raise UsageError(f"gamma and beta must have shape ({C},), got {gamma.shape} and {beta.shape}")
    if len(x) == 0:
        raise UsageError("batch norm of an empty batch is undefined")


def _statistics(x, running_mean, running_var, mode, momentum, eps):
    """(mean, inv) in float64 of x (M, C): the batch's in training (updating the running averages in
    place: running = momentum * running + (1 - momentum) * batch), else the running statistics'."""
    M, C = x.shape
    if mode == "train":
        sums = np.empty((2, C))
        shift = x[0].astype(np.float64)
        with threads_for(x.size):
            _column_stats(x, shift, sums)
        d = sums[0] / M
        mean = shift + d
        var = np.maximum(sums[1] / M - d * d, 0.0)
        running_mean *= momentum
        running_mean += (1 - momentum) * mean
        running_var *= momentum
        running_var += (1 - momentum) * var
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    return mean, 1.0 / np.sqrt(var + eps)


def _affine(gamma, beta, mean, inv, dtype):
    """The per-channel (scale, shift) of x*scale + shift = gamma*(x - mean)*inv + beta, in x's dtype."""
    scale = gamma * inv
    return scale.astype(dtype), (beta - mean * scale).astype(dtype)


def forward(x, gamma, beta, running_mean, running_var, mode: str, momentum: float = 0.9, eps: float = 1e-5,
            relu: bool = False):
    """(out, stats) for x (M, C): out = [relu](gamma * (x - mu) / sqrt(var + eps) + beta).

    Training uses the batch's mean and (biased) variance and updates the running averages in place
    (running = momentum * running + (1 - momentum) * batch); otherwise the running statistics are used.
    `stats` = (mean, inv) in float64, what the backward pass needs besides x and out."""
    _check(x, gamma, beta)
    mean, inv = _statistics(x, running_mean, running_var, mode, momentum, eps)
    out = _empty(x.shape, x.dtype)
    with threads_for(x.size):
        _scale_shift(x, *_affine(gamma, beta, mean, inv, x.dtype), relu, out)
    return out, (mean, inv)


def _dx_coefficients(gamma, mean, inv, sums, M, dtype):
    """dx = gamma*inv/M * (M*dy - dbeta - xhat*dgamma), with xhat = (x - mean)*inv, folded per column
    into a*dy + b*x + c so the dx pass is one multiply-add chain per element."""
    dbeta, dgamma = sums
    a = gamma * inv
    b = -a * inv * dgamma / M
    c = -a * dbeta / M - b * mean
    return a.astype(dtype), b.astype(dtype), c.astype(dtype)


def backward(dout, x, out, stats, gamma, relu: bool = False):
    """(dx, dgamma, dbeta) of `forward` in training mode, given its input x, output out and stats."""
    mean, inv = stats
    M, C = x.shape
    dout = np.ascontiguousarray(dout, dtype=x.dtype)
    sums = np.empty((2, C))
    with threads_for(x.size):
        _backward_sums(dout, out, x, mean, inv, relu, sums)
    dx = _empty(x.shape, x.dtype)
    with threads_for(x.size):
        _backward_dx(dout, out, x, *_dx_coefficients(gamma, mean, inv, sums, M, x.dtype), relu, dx)
    return dx, sums[1].astype(gamma.dtype), sums[0].astype(gamma.dtype)


def _check_pool2(x):
    if x.ndim != 4 or x.dtype not in (np.float32, np.float64) or not x.flags.c_contiguous:
        raise UsageError(f"fused batch norm + pool expects C-contiguous float (N, H, W, C) maps, got {x.dtype} "
                         f"{x.shape}")
    if x.shape[1] % 2 or x.shape[2] % 2:
        raise UsageError(f"fused 2x2 pooling needs even map sizes, got {x.shape[1]}x{x.shape[2]}")


def forward_pool2(x, gamma, beta, running_mean, running_var, mode: str, momentum: float = 0.9, eps: float = 1e-5):
    """Batch norm, ReLU and 2x2 max pooling of x (N, H, W, C) in two passes: (out, arg, stats).

    out (N, H/2, W/2, C) is the pooled map, arg (uint8) which window element won (0..3, row-major, the
    first on ties) and stats = (mean, inv, scale, shift, xw) what `backward_pool2` needs besides x: xw
    (pooled shape) the windows' winning x in training, empty otherwise."""
    _check_pool2(x)
    return _normalise_pool2(_scale_shift_relu_pool2, x, gamma, beta, running_mean, running_var, mode, momentum, eps)


def _normalise_pool2(kernel, x, gamma, beta, running_mean, running_var, mode, momentum, eps):
    """The fused forward passes' shared part once x's shape is checked: the statistics, then `kernel`
    (normalise, activate, 2x2 pool) writing out, arg and, in training mode, the winners' x (pooled shape),
    which stats ends with; (out, arg, stats)."""
    _check(x.reshape(-1, x.shape[3]), gamma, beta)
    N, H, W, C = x.shape
    mean, inv = _statistics(x.reshape(-1, C), running_mean, running_var, mode, momentum, eps)
    scale, shift = _affine(gamma, beta, mean, inv, x.dtype)
    out = _empty((N, H // 2, W // 2, C), x.dtype)
    arg = _empty(out.shape, np.uint8)
    xw = _empty(out.shape, x.dtype) if mode == "train" else np.empty((0, 0, 0, C), x.dtype)
    with threads_for(x.size):
        kernel(x, scale, shift, out, arg, xw)
    return out, arg, (mean, inv, scale, shift, xw)


def backward_pool2(dout, arg, x, stats, gamma, overwrite_x: bool = False):
    """(dx, dgamma, dbeta) of `forward_pool2` in training mode, from the pooled gradient dout: the sums
    over pooled arrays only (the winners' x kept by the forward pass), then dx over the full map.

    With overwrite_x, dx is written over x (each element is read before it is written), for callers
    that need x no more: the pass then reads and writes one map instead of filling a second (on a
    64x32x32x32 map no longer in cache 0.7 ms against 1.2 ms)."""
    mean, inv, scale, shift, xw = stats
    N, H, W, C = x.shape
    if dout.shape != arg.shape or dout.shape != (N, H // 2, W // 2, C):
        raise UsageError(f"fused batch norm + pool backward: gradient {dout.shape} does not match the forward pass")
    if xw.shape != dout.shape:
        raise UsageError("fused batch norm + relu + pool backward needs the forward pass in training mode")
    dout = np.ascontiguousarray(dout, dtype=x.dtype)
    sums = np.empty((2, C))
    with threads_for(dout.size):
        _pool2_backward_sums(dout.reshape(-1, C), xw.reshape(-1, C), scale, shift, mean, inv, sums)
    coefficients = _dx_coefficients(gamma, mean, inv, sums, N * H * W, x.dtype)
    with threads_for(x.size):
        if overwrite_x:
            dx = x
            _pool2_backward_dx_inplace(dout, arg, x, scale, shift, *coefficients)
        else:
            dx = _empty(x.shape, x.dtype)
            _pool2_backward_dx(dout, arg, x, scale, shift, *coefficients, dx)
    return dx, sums[1].astype(gamma.dtype), sums[0].astype(gamma.dtype)


# -- batch norm + GELU (activation="gelu"): out = gelu(x*scale + shift) in one pass; the backward pass
# recomputes the GELU's input from x with the forward pass's scale and shift (as the fused pool does the
# ReLU mask), so neither the normalised map nor the GELU's input is ever stored.

@njit(parallel=True, cache=True)
def _scale_shift_gelu(x, scale, shift, out):
    M, C = x.shape
    step = (M + CHUNKS - 1) // CHUNKS
    for k in prange(CHUNKS):
        for r in range(k * step, min(M, (k + 1) * step)):
            row, o = x[r], out[r]
            for c in range(C):
                o[c] = gelu(row[c] * scale[c] + shift[c])


ROWS = 16


@njit(parallel=True, cache=True)
def _gelu_backward_sums(dout, x, scale, shift, mean, inv, dy, sums):
    """dy = dout * gelu'(x*scale + shift) written, and `_backward_sums` of it in the same pass.

    dy and xhat = (x - mean)*inv are computed in x's dtype (dy is stored in it anyway, and the forward
    pass's x*scale + shift carries the same rounding), and summed in x's dtype over blocks of ROWS rows,
    whose sums are added in float64: float64 work per element kept this pass at half memory speed (float64
    lanes are half as many, and the whole loop took their width)."""
    M, C = x.shape
    part = np.zeros((CHUNKS, 2, C))
    m, iv = mean.astype(x.dtype), inv.astype(x.dtype)
    step = (M + CHUNKS - 1) // CHUNKS
    for k in prange(CHUNKS):
        s, q = part[k, 0], part[k, 1]
        bs, bq = np.empty(C, x.dtype), np.empty(C, x.dtype)
        end = min(M, (k + 1) * step)
        for r0 in range(k * step, end, ROWS):
            bs[:] = 0
            bq[:] = 0
            for r in range(r0, min(end, r0 + ROWS)):
                g, xr, d = dout[r], x[r], dy[r]
                for c in range(C):
                    v = xr[c]
                    e = g[c] * gelu_grad(v * scale[c] + shift[c])
                    d[c] = e
                    bs[c] += e
                    bq[c] += e * ((v - m[c]) * iv[c])
            for c in range(C):
                s[c] += bs[c]
                q[c] += bq[c]
    sums[0] = part[:, 0].sum(axis=0)
    sums[1] = part[:, 1].sum(axis=0)


def forward_gelu(x, gamma, beta, running_mean, running_var, mode: str, momentum: float = 0.9, eps: float = 1e-5):
    """(out, stats) for x (M, C): out = gelu(gamma * (x - mu) / sqrt(var + eps) + beta), the statistics
    as in `forward`; stats = (mean, inv, scale, shift), what `backward_gelu` needs besides x."""
    _check(x, gamma, beta)
    mean, inv = _statistics(x, running_mean, running_var, mode, momentum, eps)
    scale, shift = _affine(gamma, beta, mean, inv, x.dtype)
    out = _empty(x.shape, x.dtype)
    with threads_for(x.size):
        _scale_shift_gelu(x, scale, shift, out)
    return out, (mean, inv, scale, shift)


def backward_gelu(dout, x, stats, gamma):
    """(dx, dgamma, dbeta) of `forward_gelu` in training mode: two passes (dy and its sums; dx over dy)."""
    mean, inv, scale, shift = stats
    M, C = x.shape
    if dout.shape != x.shape:
        raise UsageError(f"batch norm + gelu backward: gradient {dout.shape} does not match the forward pass")
    dout = np.ascontiguousarray(dout, dtype=x.dtype)
    sums = np.empty((2, C))
    dy = _empty(x.shape, x.dtype)
    with threads_for(x.size):
        _gelu_backward_sums(dout, x, scale, shift, mean, inv, dy, sums)
    with threads_for(x.size):
        # dx overwrites dy in place: each element is read before it is written
        _backward_dx(dy, dy, x, *_dx_coefficients(gamma, mean, inv, sums, M, x.dtype), False, dy)
    return dy, sums[1].astype(gamma.dtype), sums[0].astype(gamma.dtype)


# -- batch norm + GELU + 2x2 max pool: as the ReLU version, but the GELU is not monotonic, so the window's
# maximum is taken after it (four GELUs per window forward, one derivative, at the winner, backward). Odd
# maps pool in floor mode: their last row/column is in no window, gets no gradient through the pool, but
# still its batch-norm share (dx = b*x + c there). In training the forward pass also keeps each window's
# winning x (pooled shape): the backward sums pass then reads pooled arrays only, as `_gelu_backward_sums`
# of them, instead of all of x again (a quarter of the bytes).

@njit(cache=True, inline="always")
def _gelu_window(top, bottom, l, r, c, s, t):
    """(max, first winning element 0..3, the winner's x) of gelu(x*s + t) over one 2x2 window's channel c."""
    a = top[l + c]
    m, km, w = gelu(a * s + t), np.uint8(0), a
    a = top[r + c]
    v = gelu(a * s + t)
    if v > m:
        m, km, w = v, np.uint8(1), a
    a = bottom[l + c]
    v = gelu(a * s + t)
    if v > m:
        m, km, w = v, np.uint8(2), a
    a = bottom[r + c]
    v = gelu(a * s + t)
    if v > m:
        m, km, w = v, np.uint8(3), a
    return m, km, w


@njit(parallel=True, cache=True)
def _scale_shift_gelu_pool2(x, scale, shift, out, arg, xw):
    """out = 2x2 max of gelu(x*scale + shift) over whole windows, arg = the first winning element (0..3),
    and, when xw is not empty (training), xw = the winner's x: all the backward sums pass needs of x."""
    N, H, W, C = x.shape
    Ho, Wo = out.shape[1], out.shape[2]
    keep = xw.size > 0
    for nh in prange(N * Ho):
        top, bottom = _window_rows(x, nh, Ho)
        o, k = _pooled_row(out, nh), _pooled_row(arg, nh)
        if keep:
            xo = _pooled_row(xw, nh)
            for j in range(Wo):
                l, r, p = 2 * j * C, (2 * j + 1) * C, j * C
                for c in range(C):
                    o[p + c], k[p + c], xo[p + c] = _gelu_window(top, bottom, l, r, c, scale[c], shift[c])
        else:
            for j in range(Wo):
                l, r, p = 2 * j * C, (2 * j + 1) * C, j * C
                for c in range(C):
                    o[p + c], k[p + c], _ = _gelu_window(top, bottom, l, r, c, scale[c], shift[c])


@njit(parallel=True, cache=True)
def _gelu_pool2_backward_dx(dy, arg, x, a, b, c0, dx):
    """dx = a*dy + b*x + c0 over the windows, dy the pooled gradient at the winner (0 elsewhere); an odd
    map's last column and row, in no window, get batch norm's share alone: dx = b*x + c0."""
    N, H, W, C = x.shape
    Ho, Wo = dy.shape[1], dy.shape[2]
    zero = dx.dtype.type(0)
    for nh in prange(N * Ho):
        top, bottom = _window_rows(x, nh, Ho)
        dtop, dbottom = _window_rows(dx, nh, Ho)
        g, kk = _pooled_row(dy, nh), _pooled_row(arg, nh)
        for j in range(Wo):
            l, r, p = 2 * j * C, (2 * j + 1) * C, j * C
            for c in range(C):
                gc, kc, ac, bc, cc = g[p + c], kk[p + c], a[c], b[c], c0[c]
                dtop[l + c] = ac * (gc if kc == 0 else zero) + bc * top[l + c] + cc
                dtop[r + c] = ac * (gc if kc == 1 else zero) + bc * top[r + c] + cc
                dbottom[l + c] = ac * (gc if kc == 2 else zero) + bc * bottom[l + c] + cc
                dbottom[r + c] = ac * (gc if kc == 3 else zero) + bc * bottom[r + c] + cc
        if W > 2 * Wo:
            e = 2 * Wo * C
            for c in range(C):
                dtop[e + c] = b[c] * top[e + c] + c0[c]
                dbottom[e + c] = b[c] * bottom[e + c] + c0[c]
        n = nh // Ho
        if H > 2 * Ho and nh - n * Ho == Ho - 1:
            last, dlast = x[n, 2 * Ho].reshape(W * C), dx[n, 2 * Ho].reshape(W * C)
            for j in range(W):
                for c in range(C):
                    dlast[j * C + c] = b[c] * last[j * C + c] + c0[c]


def forward_gelu_pool2(x, gamma, beta, running_mean, running_var, mode: str, momentum: float = 0.9,
                       eps: float = 1e-5):
    """Batch norm (statistics over the whole map), GELU and 2x2 max pooling (floor mode for odd sizes) of
    x (N, H, W, C): (out, arg, stats) as `forward_pool2`."""
    if x.ndim != 4 or x.dtype not in (np.float32, np.float64) or not x.flags.c_contiguous:
        raise UsageError(f"fused batch norm + pool expects C-contiguous float (N, H, W, C) maps, got {x.dtype} "
                         f"{x.shape}")
    N, H, W, C = x.shape
    if H < 2 or W < 2:
        raise UsageError(f"fused 2x2 pooling needs maps of at least 2x2, got {H}x{W}")
    return _normalise_pool2(_scale_shift_gelu_pool2, x, gamma, beta, running_mean, running_var, mode, momentum, eps)


def backward_gelu_pool2(dout, arg, x, stats, gamma, overwrite_x: bool = False):
    """(dx, dgamma, dbeta) of `forward_gelu_pool2` in training mode, from the pooled gradient dout.

    Two passes: dy = dout * gelu'(winner) and its sums over pooled arrays only (the winners' x kept by the
    forward pass: a quarter of x's bytes), then dx over the full map (over x itself with overwrite_x, as
    `backward_pool2`)."""
    mean, inv, scale, shift, xw = stats
    N, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    if dout.shape != arg.shape or dout.shape != (N, Ho, Wo, C):
        raise UsageError(f"fused batch norm + pool backward: gradient {dout.shape} does not match the forward pass")
    if xw.shape != dout.shape:
        raise UsageError("fused batch norm + gelu + pool backward needs the forward pass in training mode")
    dout = np.ascontiguousarray(dout, dtype=x.dtype)
    sums = np.empty((2, C))
    dy = _empty(dout.shape, x.dtype)
    with threads_for(dout.size):
        _gelu_backward_sums(dout.reshape(-1, C), xw.reshape(-1, C), scale, shift, mean, inv, dy.reshape(-1, C), sums)
    a, b, c0 = _dx_coefficients(gamma, mean, inv, sums, N * H * W, x.dtype)
    dx = x if overwrite_x else _empty(x.shape, x.dtype)
    with threads_for(x.size):
        _gelu_pool2_backward_dx(dy, arg, x, a, b, c0, dx)
    return dx, sums[1].astype(gamma.dtype), sums[0].astype(gamma.dtype)
