"""Fused elementwise kernels around the GEMMs of fully-connected layers, and fused optimiser steps.

Numpy spends one full pass over memory per operation (`z + b`, `maximum`, `* mask`, `/ keep` ...);
these kernels do each job in one pass. Activations are coded as small ints so that one kernel serves
all of them; the branch sits outside the inner loop.

The kernels run serially, on purpose: a (200, H) batch is too small for a thread team to pay, and the
optimiser steps, vectorised, run at memory speed (Adam on 1.5M weights: 1.3 ms against 7 ms for numpy)
while a parallel version stalled for milliseconds waiting for threads whenever the 2 cores were busy
(BLAS's own threads, other processes). `error_model="numpy"` lets LLVM vectorise the loops (no
ZeroDivisionError checks).

Backward passes take the activation's *output* (not its input): every supported activation's
derivative can be written from it, so the forward pass keeps a single array. GELU is the exception (its
derivative is not a function of its output): its forward pass keeps the pre-activation z + b, which its
backward pass reads instead, and writes the activation to a second array.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from ..errors import UsageError

ACTIVATIONS = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4, "elu": 5, "gelu": 6}
GELU = 6
SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)


# float32 erf: Eigen's / XLA's rational approximation on [-4, 4] (erf is +/-1 in float32 beyond), max
# absolute error 4.2e-7 against math.erf; pure multiply-adds and one division, so LLVM vectorises the loops
# around it, where a libm erf call per element (7 ns) made batch norm + GELU 6x slower than + ReLU.
# batchnorm.py's kernels compile `gelu` into themselves, and numba's cache (cache=True) does not notice a
# change here: after editing gelu, _erf32, _exp_neg32 or gelu_grad, delete imgclf/kernels/__pycache__/batchnorm.*.
_ERF_ALPHA = (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04, -5.69250639462346e-05,
              -2.10102402082508e-06, 2.77068142495902e-08, -2.72614225801306e-10)
_ERF_BETA = (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03, -2.13374055278905e-04,
             -1.45660718464996e-05)
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = (np.float32(c) for c in _ERF_ALPHA)
_B0, _B2, _B4, _B6, _B8 = (np.float32(c) for c in _ERF_BETA)


@njit(cache=True, inline="always")
def _erf32(x):
    x = min(max(x, np.float32(-4.0)), np.float32(4.0))
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    q = x2 * _B8 + _B6
    q = x2 * q + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return x * p / q


# float32 exp(x) for x <= 0 (the GELU derivative's exp(-x^2/2)): Cephes' expf, i.e. x = n ln2 + r with
# |r| <= ln2/2 (ln2 split in two for an exact n*ln2), exp(r) a degree-7 polynomial, 2^n written into the
# exponent bits. Pure multiply-adds, a floor and integer ops on 32-bit lanes, where numba's np.exp on float32
# is a scalar libm `expf` call per element that kept the whole backward-sums loops scalar (no SVML here).
# Within 1 ulp of math.exp on [ln(FLT_MIN), 0] (tests/test_gelu.py); below ln(FLT_MIN) = -87.34, where
# exp is subnormal, it returns 0 (subnormal arithmetic would be slow and means nothing to a gradient).
_LOG2E, _LN2_HI, _LN2_LO = np.float32(1.4426950408889634), np.float32(0.693359375), np.float32(-2.12194440e-4)
_EXP_MIN, _HALF32 = np.float32(-87.33654), np.float32(0.5)
_P0, _P1, _P2, _P3, _P4, _P5 = (np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                                        4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))


def _pow2_32(n):
    """2^n as float32 for an integral float32 n in [-126, 127], from its exponent bits."""
    return np.array((int(n) + 127) << 23, np.uint32).view(np.float32)[()]


@intrinsic
def _pow2_32_ir(typingctx, n):
    if not _is_float32(n):
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.shl(builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())
    return types.float32(types.float32), codegen


@overload(_pow2_32, inline="always")
def _pow2_32_impl(n):
    if _is_float32(n):
        return lambda n: _pow2_32_ir(n)


@njit(cache=True, inline="always")
def _exp_neg32(x):
    """exp(x) for float32 x <= 0 (see above); 0 below ln(FLT_MIN)."""
    n = np.floor(x * _LOG2E + _HALF32)
    r = x - n * _LN2_HI
    r = r - n * _LN2_LO
    p = _P0 * r + _P1
    p = p * r + _P2
    p = p * r + _P3
    p = p * r + _P4
    p = p * r + _P5
    p = p * r * r + r + np.float32(1.0)
    return p * _pow2_32(max(n, np.float32(-126.0))) if x >= _EXP_MIN else np.float32(0.0)


def gelu(v):
    """The exact GELU x * Phi(x) = x/2 * (1 + erf(x / sqrt 2)) (torch.nn.GELU's default): float64 values
    with math.erf; in compiled kernels float32 values in float32 with `_erf32`."""
    v = float(v)
    return 0.5 * v * (1.0 + math.erf(v * SQRT_HALF))


def gelu_grad(v):
    """d GELU / dx = Phi(x) + x * phi(x), as `gelu` (float64 / float32)."""
    v = float(v)
    return 0.5 * (1.0 + math.erf(v * SQRT_HALF)) + v * INV_SQRT_2PI * math.exp(-0.5 * v * v)


def _is_float32(v):
    return isinstance(v, types.Float) and v.bitwidth == 32


@overload(gelu, inline="always")
def _gelu_impl(v):
    if _is_float32(v):
        h, s = np.float32(0.5), np.float32(SQRT_HALF)

        def impl(v):
            return h * v * (np.float32(1.0) + _erf32(v * s))
    else:
        def impl(v):
            w = np.float64(v)
            return 0.5 * w * (1.0 + math.erf(w * SQRT_HALF))
    return impl


@overload(gelu_grad, inline="always")
def _gelu_grad_impl(v):
    if _is_float32(v):
        h, s, c = np.float32(0.5), np.float32(SQRT_HALF), np.float32(INV_SQRT_2PI)

        def impl(v):
            return h * (np.float32(1.0) + _erf32(v * s)) + v * c * _exp_neg32(-h * v * v)
    else:
        def impl(v):
            w = np.float64(v)
            return 0.5 * (1.0 + math.erf(w * SQRT_HALF)) + w * INV_SQRT_2PI * math.exp(-0.5 * w * w)
    return impl


@njit(cache=True, error_model="numpy")
def _bias_gelu_forward(z, b, u, keep, scale, out):
    """In place z <- z + b (the pre-activation, what the backward pass reads); out <- gelu(z), times
    (u < keep) * scale when u is non-empty (inverted dropout)."""
    n, m = z.shape
    drop = u.shape[0] > 0
    zero = out.dtype.type(0)
    for i in range(n):
        row, o = z[i], out[i]
        for j in range(m):
            v = row[j] + b[j]
            row[j] = v
            o[j] = gelu(v)
        if drop:
            ui = u[i]
            for j in range(m):
                o[j] = o[j] * scale if ui[j] < keep else zero


@njit(cache=True, error_model="numpy")
def _gelu_backward(dout, z, u, keep, scale, dz):
    """dz <- dout * [dropout mask / keep] * gelu'(z), z the pre-activation."""
    n, m = dout.shape
    drop = u.shape[0] > 0
    zero = dz.dtype.type(0)
    for i in range(n):
        g, zi, d = dout[i], z[i], dz[i]
        for j in range(m):
            v = g[j]
            if drop:
                v = v * scale if u[i, j] < keep else zero
            d[j] = v * gelu_grad(zi[j])


@njit(cache=True, error_model="numpy")
def _bias_act_forward(z, b, code, alpha, u, keep, scale, a):
    """In place: z <- act(z + b) (the activation output); if u is non-empty also a <- z * (u < keep) / keep
    (inverted dropout, u uniform in [0, 1), scale = 1/keep in z's dtype)."""
    n, m = z.shape
    drop = u.shape[0] > 0
    for i in range(n):
        row = z[i]
        if code == 0:
            for j in range(m):
                row[j] = row[j] + b[j]
        elif code == 1:
            for j in range(m):
                v = row[j] + b[j]
                row[j] = v if v > 0 else np.float32(0)
        elif code == 2:
            for j in range(m):
                v = row[j] + b[j]
                row[j] = v if v > 0 else v * alpha
        elif code == 3:
            for j in range(m):
                row[j] = np.tanh(row[j] + b[j])
        elif code == 4:
            for j in range(m):
                row[j] = 1 / (1 + np.exp(-(row[j] + b[j])))
        else:
            for j in range(m):
                v = row[j] + b[j]
                row[j] = v if v > 0 else alpha * (np.exp(v) - 1)
        if drop:
            ui = u[i]
            ai = a[i]
            for j in range(m):
                ai[j] = row[j] * scale if ui[j] < keep else np.float32(0)


@njit(cache=True, error_model="numpy")
def _act_backward(dout, out, code, alpha, u, keep, scale, dz):
    """dz <- dout * [dropout mask / keep] * act'(.) written from the activation output `out`."""
    n, m = dout.shape
    drop = u.shape[0] > 0
    for i in range(n):
        g, o, d = dout[i], out[i], dz[i]
        for j in range(m):
            v = g[j]
            if drop:
                v = v * scale if u[i, j] < keep else np.float32(0)
            oj = o[j]
            if code == 1:
                v = v if oj > 0 else np.float32(0)
            elif code == 2:
                v = v if oj > 0 else v * alpha
            elif code == 3:
                v = v * (1 - oj * oj)
            elif code == 4:
                v = v * oj * (1 - oj)
            elif code == 5:
                v = v if oj > 0 else v * (oj + alpha)
            d[j] = v


# -- optimiser steps on flattened w, dw and state; scalars in w's dtype, one pass each ---------------------
# Each folds an L2 gradient into the step (g = dw + l2 * w; l2 = 0 for none) and returns sum(w^2) of the
# weights before the step: the penalty and its gradient cost no extra pass over the weights.
# The weights go in blocks that stay in L1: the float64 sum of squares of a block first (its own
# function, where `reassoc` lets LLVM vectorise the sum; in the same loop as the update it kept the
# whole step scalar, 3-4x slower), then the block's update. Loops run over slices with range(n): the
# same loops indexing the parent arrays with range(lo, hi) ran many times slower.
BLOCK = 2048


@njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def _sum_sq(w):
    total = 0.0
    for i in range(w.size):
        v = np.float64(w[i])
        total += v * v
    return total


SGD, MOMENTUM, NESTEROV, ADAGRAD, RMSPROP, ADAM = range(6)


@njit(cache=True, error_model="numpy")
def _step_block(rule, w, dw, a, b, lr, h1, h2, h3, l2):
    """One block of one rule's step; a and b are the rule's state arrays (unused ones are empty)."""
    n = w.size
    if rule == SGD:
        for i in range(n):
            wi = w[i]
            w[i] = wi - lr * (dw[i] + l2 * wi)
    elif rule == MOMENTUM:  # h1 = mu
        for i in range(n):
            wi = w[i]
            vi = h1 * a[i] - lr * (dw[i] + l2 * wi)
            a[i] = vi
            w[i] = wi + vi
    elif rule == NESTEROV:  # h1 = mu
        for i in range(n):
            wi = w[i]
            prev = a[i]
            vi = h1 * prev - lr * (dw[i] + l2 * wi)
            a[i] = vi
            w[i] = wi + (-h1 * prev + (1 + h1) * vi)
    elif rule == ADAGRAD or rule == RMSPROP:  # cache <- h1 cache + h2 g^2 (adagrad: 1, 1); h3 = eps
        for i in range(n):
            wi = w[i]
            g = dw[i] + l2 * wi
            c = h1 * a[i] + h2 * g * g
            a[i] = c
            w[i] = wi - lr * g / (np.sqrt(c) + h3)
    else:  # ADAM: h1 = b1, h2 = b2, h3 = eps; lr is the bias-corrected step
        for i in range(n):
            wi = w[i]
            g = dw[i] + l2 * wi
            mi = h1 * a[i] + (1 - h1) * g
            vi = h2 * b[i] + (1 - h2) * g * g
            a[i] = mi
            b[i] = vi
            w[i] = wi - lr * mi / (np.sqrt(vi) + h3)


@njit(cache=True, error_model="numpy")
def _step(rule, w, dw, a, b, lr, h1, h2, h3, l2):
    """An optimiser step on flat w in place, block by block; returns sum(w^2) before the step."""
    total = 0.0
    for lo in range(0, w.size, BLOCK):
        wb = w[lo:lo + BLOCK]
        total += _sum_sq(wb)
        _step_block(rule, wb, dw[lo:lo + BLOCK], a[lo:lo + BLOCK], b[lo:lo + BLOCK], lr, h1, h2, h3, l2)
    return total


# Weights from this many up are stepped on all threads by `_step_parallel`. Adam's step is bound by its
# float64 square root and division (its moments are float64 expressions; ~2 ns a weight on one core,
# 1.2 ms for the 620k-weight convnet, also with the arrays in L1), not by memory, so splitting the blocks
# over the 2 cores halves it; the small arrays stay serial (waking the team would cost more).
PARALLEL_STEP_MIN = 1 << 16


@njit(parallel=True, cache=True, error_model="numpy")
def _step_parallel(rule, w, dw, a, b, lr, h1, h2, h3, l2):
    """`_step` with the blocks spread over the threads: the same blocks, the same arithmetic on each
    element, and sum(w^2) added block by block in the same order, so the results are `_step`'s bit for bit."""
    n = w.size
    nb = (n + BLOCK - 1) // BLOCK
    part = np.empty(nb)
    for k in prange(nb):
        lo = k * BLOCK
        hi = min(n, lo + BLOCK)
        wb = w[lo:hi]
        part[k] = _sum_sq(wb)
        _step_block(rule, wb, dw[lo:hi], a[lo:hi], b[lo:hi], lr, h1, h2, h3, l2)
    total = 0.0
    for k in range(nb):
        total += part[k]
    return total


@njit(cache=True, error_model="numpy")
def _sum_sq_blocks(w):
    """sum(w^2) of flat w in float64, block by block as _step adds it up (the same number)."""
    total = 0.0
    for lo in range(0, w.size, BLOCK):
        total += _sum_sq(w[lo:lo + BLOCK])
    return total


@njit(cache=True, error_model="numpy")
def _add_l2(g, w, c):
    """g += c * w in place; returns sum(w^2) accumulated in float64 (the penalty), in the same pass."""
    total = 0.0
    for lo in range(0, w.size, BLOCK):
        wb, gb = w[lo:lo + BLOCK], g[lo:lo + BLOCK]
        total += _sum_sq(wb)
        for i in range(wb.size):
            gb[i] += c * wb[i]
    return total


# -- public, validating wrappers -------------------------------------------------------------------
_EMPTY = np.empty((0, 0), np.float32)


def activation_code(name: str) -> int:
    if name not in ACTIVATIONS:
        raise UsageError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _check_2d(name, x):
    if x.ndim != 2 or not x.flags.c_contiguous:
        raise UsageError(f"{name} must be a C-contiguous 2-D array, got shape {x.shape}")


def bias_act_forward(z, b, activation="relu", alpha=0.01, u=None, keep=1.0):
    """act(z + b), computed in place in z; with dropout uniforms `u` also returns the dropped-out copy.

    Returns (a, out): a = act(z + b) (the same array as z) and out = a * (u < keep) / keep, or a itself
    without dropout. For "gelu", a is the pre-activation z + b (still in place in z; `act_backward`
    reads it) and out a new array: gelu(z + b) [* (u < keep) / keep]."""
    _check_2d("z", z)
    if b.shape != (z.shape[1],) or b.dtype != z.dtype:
        raise UsageError(f"bias must have shape ({z.shape[1]},) and dtype {z.dtype}, got {b.shape} {b.dtype}")
    code = activation_code(activation)
    f = z.dtype.type
    if code == GELU:
        if u is not None:
            _check_dropout(u, z, keep)
        out = np.empty_like(z)
        if u is None:
            _bias_gelu_forward(z, b, _EMPTY.astype(z.dtype), f(1.0), f(1.0), out)
        else:
            _bias_gelu_forward(z, b, u, f(keep), f(1.0 / keep), out)
        return z, out
    if u is None:
        _bias_act_forward(z, b, code, f(alpha), _EMPTY.astype(z.dtype), f(1.0), f(1.0), _EMPTY.astype(z.dtype))
        return z, z
    _check_dropout(u, z, keep)
    out = np.empty_like(z)
    _bias_act_forward(z, b, code, f(alpha), u, f(keep), f(1.0 / keep), out)
    return z, out


def _check_dropout(u, z, keep):
    _check_2d("u", u)
    if u.shape != z.shape or u.dtype != z.dtype:
        raise UsageError(f"dropout uniforms must match z: {u.shape} {u.dtype} vs {z.shape} {z.dtype}")
    if not 0 < keep <= 1:
        raise UsageError(f"dropout keep probability must be in (0, 1], got {keep}")


def act_backward(dout, a, activation="relu", alpha=0.01, u=None, keep=1.0):
    """The gradient through [dropout o] activation, from the activation output `a` (for "gelu" the
    pre-activation `bias_act_forward` returns as `a`); returns a new array."""
    _check_2d("dout", dout)
    if a.shape != dout.shape or a.dtype != dout.dtype:
        raise UsageError(f"activation output must match dout: {a.shape} {a.dtype} vs {dout.shape} {dout.dtype}")
    code = activation_code(activation)
    f = dout.dtype.type
    dz = np.empty_like(dout)
    if code == GELU:
        if u is None:
            _gelu_backward(dout, a, _EMPTY.astype(dout.dtype), f(1.0), f(1.0), dz)
        else:
            if u.shape != dout.shape or u.dtype != dout.dtype:
                raise UsageError(f"dropout uniforms must match dout: {u.shape} {u.dtype} vs {dout.shape} "
                                 f"{dout.dtype}")
            _gelu_backward(dout, a, u, f(keep), f(1.0 / keep), dz)
        return dz
    if u is None:
        _act_backward(dout, a, code, f(alpha), _EMPTY.astype(dout.dtype), f(1.0), f(1.0), dz)
    else:
        if u.shape != dout.shape or u.dtype != dout.dtype:
            raise UsageError(f"dropout uniforms must match dout: {u.shape} {u.dtype} vs {dout.shape} {dout.dtype}")
        _act_backward(dout, a, code, f(alpha), u, f(keep), f(1.0 / keep), dz)
    return dz


def sum_sq(w) -> float:
    """sum(w^2) of a contiguous float array, accumulated in float64 exactly as the optimiser steps add it up
    (their `config["sum_sq"]`), for a weight whose step is taken elsewhere (a fused plain-SGD step)."""
    if not isinstance(w, np.ndarray) or w.dtype not in (np.float32, np.float64) or not w.flags.c_contiguous:
        raise UsageError(f"sum_sq takes a contiguous float32 or float64 array, got "
                         f"{getattr(w, 'shape', None)} {getattr(w, 'dtype', type(w).__name__)}")
    return float(_sum_sq_blocks(w.reshape(-1)))


def add_l2(grad, w, reg: float) -> float:
    """The L2 penalty reg * sum(w^2), returned, with its gradient 2 * reg * w added to `grad` in place."""
    if grad.shape != w.shape or grad.dtype != w.dtype or not (grad.flags.c_contiguous and w.flags.c_contiguous):
        raise UsageError(f"gradient and weight must be contiguous arrays of the same shape and dtype, got "
                         f"{grad.shape} {grad.dtype} and {w.shape} {w.dtype}")
    return reg * _add_l2(grad.reshape(-1), w.reshape(-1), w.dtype.type(2 * reg))
