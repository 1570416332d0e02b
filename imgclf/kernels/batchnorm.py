"""Spatial batch normalisation fused with the ReLU that follows it, on the (M, C) view of NHWC maps.

In NHWC the per-channel statistics of (N, H, W, C) maps are column statistics of an (N*H*W, C)
matrix whose rows are contiguous, so every loop below runs rows outside and channels inside
(unit-stride, vectorised), with float64 per-channel accumulators. The forward pass is one pass for
the statistics (two in float64 would be safer for huge M; one with a shifted sum is exact enough at
M ~ 10^5 float32 values) plus one fused pass `max(0, x*scale + shift)`; the backward pass is one
pass of reductions and one pass writing dx, where numpy needs about a dozen full passes for the same
work. Rows are split into a few chunks whose partial sums run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..errors import UsageError
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


def _check(x, gamma, beta):
    if x.ndim != 2 or x.dtype not in (np.float32, np.float64) or not x.flags.c_contiguous:
        raise UsageError(f"batch norm kernels expect a C-contiguous float (M, C) array, got {x.dtype} {x.shape}")
    C = x.shape[1]
    if gamma.shape != (C,) or beta.shape != (C,):
        raise UsageError(f"gamma and beta must have shape ({C},), got {gamma.shape} and {beta.shape}")
    if len(x) == 0:
        raise UsageError("batch norm of an empty batch is undefined")


def forward(x, gamma, beta, running_mean, running_var, mode: str, momentum: float = 0.9, eps: float = 1e-5,
            relu: bool = False):
    """(out, stats) for x (M, C): out = [relu](gamma * (x - mu) / sqrt(var + eps) + beta).

    Training uses the batch's mean and (biased) variance and updates the running averages in place
    (running = momentum * running + (1 - momentum) * batch); otherwise the running statistics are used.
    `stats` = (mean, inv) in float64, what the backward pass needs besides x and out."""
    _check(x, gamma, beta)
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
    inv = 1.0 / np.sqrt(var + eps)
    scale = gamma * inv
    out = np.empty_like(x)
    with threads_for(x.size):
        _scale_shift(x, scale.astype(x.dtype), (beta - mean * scale).astype(x.dtype), relu, out)
    return out, (mean, inv)


def backward(dout, x, out, stats, gamma, relu: bool = False):
    """(dx, dgamma, dbeta) of `forward` in training mode, given its input x, output out and stats."""
    mean, inv = stats
    M, C = x.shape
    dout = np.ascontiguousarray(dout, dtype=x.dtype)
    sums = np.empty((2, C))
    with threads_for(x.size):
        _backward_sums(dout, out, x, mean, inv, relu, sums)
    dbeta, dgamma = sums
    # dx = gamma*inv/M * (M*dy - dbeta - xhat*dgamma), with xhat = (x - mean)*inv, folded per column
    # into a*dy + b*x + c so the second pass is one multiply-add chain per element.
    a = gamma * inv
    b = -a * inv * dgamma / M
    c = -a * dbeta / M - b * mean
    dx = np.empty_like(x)
    with threads_for(x.size):
        _backward_dx(dout, out, x, a.astype(x.dtype), b.astype(x.dtype), c.astype(x.dtype), relu, dx)
    return dx, dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)
