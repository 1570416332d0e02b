"""Layers as forward/backward pairs: `forward(...) -> (out, cache)`, `backward(dout, cache) -> (dx, grads)`.

`grads` is a dict keyed like the layer's parameters ("w", "b", "gamma", "beta"). Matrix products go to
BLAS (numpy `@`); the elementwise work around them (bias, activation, dropout mask) is fused in
imgclf/kernels/elementwise.py. Everything keeps the dtype of its input (float32 in training, float64
for gradient checks). The losses are `imgclf.losses.softmax_loss` / `svm_loss`.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError

# name -> default parameter (the slope of leaky ReLU for x < 0, the saturation of ELU).
ACTIVATION_DEFAULTS = {"relu": 0.0, "leaky_relu": 0.01, "tanh": 0.0, "sigmoid": 0.0, "elu": 1.0, "gelu": 0.0}


def _ew():
    from ..kernels import elementwise

    return elementwise


def parse_activation(spec: str) -> tuple[str, float]:
    """`relu`, `tanh`, `sigmoid`, `leaky_relu[:SLOPE]`, `elu[:ALPHA]`, `gelu` -> (name, parameter).

    `gelu` is the exact form x * Phi(x) (torch.nn.GELU's default, not the tanh approximation)."""
    name, _, arg = str(spec).partition(":")
    if name not in ACTIVATION_DEFAULTS:
        raise UsageError(f"unknown activation {spec!r}; choose from relu, leaky_relu[:SLOPE], tanh, sigmoid, "
                         f"elu[:ALPHA], gelu")
    if not arg:
        return name, ACTIVATION_DEFAULTS[name]
    if name not in ("leaky_relu", "elu"):
        raise UsageError(f"activation {name!r} takes no parameter (got {spec!r})")
    try:
        value = float(arg)
    except ValueError:
        raise UsageError(f"bad activation parameter in {spec!r}: a number expected") from None
    if not (np.isfinite(value) and value >= 0):
        raise UsageError(f"activation parameter in {spec!r} must be a finite number >= 0")
    return name, value


def _c2d(x):
    return np.ascontiguousarray(x.reshape(len(x), -1))


# -- affine --------------------------------------------------------------------------------------
def _product(x2, w, precision: str):
    """(x2 @ w, the bfloat16 operands or None): precision "bf16" rounds both to bfloat16 and accumulates
    in float32 (imgclf/bf16.py); float32 data only."""
    if precision == "float32":
        return x2 @ w, None
    if precision != "bf16":
        raise UsageError(f"precision must be 'float32' or 'bf16', got {precision!r}", param="precision")
    if x2.dtype != np.float32 or w.dtype != np.float32:
        raise UsageError(f"precision='bf16' takes float32 inputs and weights, got {x2.dtype} and {w.dtype}",
                         param="precision")
    from .. import bf16

    low = (bf16.to_bf16(x2), bf16.to_bf16(w))
    return bf16.gemm(*low), low


def affine_forward(x, w, b, precision: str = "float32"):
    """x (N, d1, ..., dk) flattened to (N, D); out = x @ w + b (the product in bfloat16 with
    precision="bf16", the result float32)."""
    x2 = x.reshape(len(x), -1)
    z, low = _product(x2, w, precision)
    return z + b, (x, w, low)


def affine_backward(dout, cache, need_dx: bool = True, sgd=None):
    """`need_dx=False` skips the product a first layer does not need (its input is the data). After a
    bfloat16 forward pass both products take bfloat16 inputs, dout rounded.

    `sgd=(lr, c)` takes the weight's plain-SGD step here, in place, instead of returning its gradient:
    w := w - lr * (dw + c * w) (c: the folded L2 coefficient, 2 * reg), after dx is computed from the old
    w. In float32/float64 it is folded into the gradient's product, w := (1 - lr c) w - lr x.T @ dout in
    one BLAS gemm (no gradient array, no separate pass of the update; the same step to rounding); with
    bfloat16 products, or where BLAS cannot be called directly, the gradient is computed and stepped
    by the optimiser's own kernel (imgclf/nn/optim.py). grads["w"] is then None."""
    x, w, low = cache
    if low is not None:
        from .. import bf16

        x16, w16 = low
        d16 = bf16.to_bf16(np.ascontiguousarray(dout, dtype=np.float32))
        dx = bf16.gemm(d16, w16, transb=True).reshape(x.shape) if need_dx else None
        grads = {"w": bf16.gemm(x16, d16, transa=True), "b": dout.sum(axis=0)}
        return dx, _sgd_fallback(w, grads, sgd)
    x2 = x.reshape(len(x), -1)
    dx = (dout @ w.T).reshape(x.shape) if need_dx else None
    db = dout.sum(axis=0)
    if sgd is not None:
        from ..blas import gemm_tn_into

        lr, c = _check_sgd(sgd)
        if gemm_tn_into(x2, dout, w, -lr, 1.0 - lr * c):
            return dx, {"w": None, "b": db}
    return dx, _sgd_fallback(w, {"w": x2.T @ dout, "b": db}, sgd)


def _check_sgd(sgd) -> tuple[float, float]:
    try:
        lr, c = (float(v) for v in sgd)
    except (TypeError, ValueError):
        raise UsageError(f"sgd must be a pair (learning rate, L2 coefficient), got {sgd!r}", param="sgd") from None
    # lr = 0 is a schedule's warm-up start (warmup:P:0) or an exponential decay's underflow: a no-op step
    if not (np.isfinite(lr) and lr >= 0 and np.isfinite(c) and c >= 0):
        raise UsageError(f"sgd must be (learning rate >= 0, L2 coefficient >= 0), got {sgd!r}", param="sgd")
    return lr, c


def _sgd_fallback(w, grads, sgd):
    """The unfused form of affine_backward's `sgd` step: the optimiser's plain-SGD kernel on the gradient."""
    if sgd is None:
        return grads
    from .optim import sgd as sgd_rule

    lr, c = _check_sgd(sgd)
    sgd_rule(w, grads["w"], {"learning_rate": lr, "l2": c})
    return {"w": None, "b": grads["b"]}


# -- activations ---------------------------------------------------------------------------------
def activation_forward(x, activation: str = "relu", alpha: float | None = None):
    """Elementwise activation (names as in ACTIVATION_DEFAULTS); the cache is the output (for gelu the
    input)."""
    alpha = ACTIVATION_DEFAULTS[activation] if alpha is None else alpha
    z = _c2d(x).copy()
    a, out = _ew().bias_act_forward(z, np.zeros(z.shape[1], z.dtype), activation, alpha)
    return out.reshape(x.shape), (a, activation, alpha, x.shape)


def activation_backward(dout, cache):
    a, activation, alpha, shape = cache
    return _ew().act_backward(_c2d(dout), a, activation, alpha).reshape(shape), {}


def relu_forward(x):
    return activation_forward(x, "relu")


def leaky_relu_forward(x, slope: float = 0.01):
    return activation_forward(x, "leaky_relu", slope)


def tanh_forward(x):
    return activation_forward(x, "tanh")


def sigmoid_forward(x):
    return activation_forward(x, "sigmoid")


def elu_forward(x, alpha: float = 1.0):
    return activation_forward(x, "elu", alpha)


def gelu_forward(x):
    return activation_forward(x, "gelu")


relu_backward = leaky_relu_backward = tanh_backward = sigmoid_backward = elu_backward = activation_backward
gelu_backward = activation_backward


# -- dropout -------------------------------------------------------------------------------------
def dropout_forward(x, p: float, mode: str, rng: np.random.Generator | None):
    """Inverted dropout: in training each unit is zeroed with probability p and the survivors scaled
    by 1/(1-p), so the test-time forward pass is the identity."""
    if not 0 <= p < 1:
        raise UsageError(f"dropout probability must be in [0, 1), got {p}")
    if mode != "train" or p == 0:
        return x, None
    keep = 1.0 - p
    mask = (rng.random(x.shape, dtype=x.dtype) < keep) / x.dtype.type(keep)
    return x * mask, mask


def dropout_backward(dout, cache):
    return (dout if cache is None else dout * cache), {}


# -- batch normalisation --------------------------------------------------------------------------
def batchnorm_forward(x, gamma, beta, running_mean, running_var, mode: str, momentum: float = 0.9,
                      eps: float = 1e-5):
    """Per-feature normalisation of an (N, D) batch. In training it uses the batch statistics and
    updates `running_mean`/`running_var` in place (exponential average); at test time it uses them."""
    if mode == "train":
        mu = x.mean(axis=0)
        xc = x - mu
        var = (xc * xc).mean(axis=0)
        inv = 1.0 / np.sqrt(var + eps)
        xhat = xc * inv
        running_mean *= momentum
        running_mean += (1 - momentum) * mu
        running_var *= momentum
        running_var += (1 - momentum) * var
        return xhat * gamma + beta, (xhat, inv, gamma)
    xhat = (x - running_mean) / np.sqrt(running_var + eps)
    return (xhat * gamma + beta).astype(x.dtype, copy=False), None


def batchnorm_backward(dout, cache):
    """The compact form: dx = inv/N * (N dxhat - sum dxhat - xhat * sum(dxhat * xhat))."""
    xhat, inv, gamma = cache
    dgamma = (dout * xhat).sum(axis=0)
    dbeta = dout.sum(axis=0)
    dxhat = dout * gamma
    n = len(dout)
    dx = (inv / n) * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dx.astype(dout.dtype, copy=False), {"gamma": dgamma, "beta": dbeta}


# -- fused affine + activation [+ dropout] ----------------------------------------------------------
def affine_act_forward(x, w, b, activation: str = "relu", alpha: float | None = None, dropout: float = 0.0,
                       mode: str = "train", rng: np.random.Generator | None = None, precision: str = "float32"):
    """act(x @ w + b), then inverted dropout in training: one GEMM and one fused elementwise pass."""
    alpha = ACTIVATION_DEFAULTS[activation] if alpha is None else alpha
    x2 = x.reshape(len(x), -1)
    z, low = _product(x2, w, precision)
    if mode == "train" and dropout > 0:
        u = rng.random(z.shape, dtype=z.dtype)
        a, out = _ew().bias_act_forward(z, b, activation, alpha, u, 1.0 - dropout)
    else:
        u = None
        a, out = _ew().bias_act_forward(z, b, activation, alpha)
    return out, (x, w, low, a, u, activation, alpha, 1.0 - dropout)


def affine_act_backward(dout, cache, need_dx: bool = True, sgd=None):
    """`sgd=(lr, c)`: the weight's plain-SGD step in place (affine_backward)."""
    x, w, low, a, u, activation, alpha, keep = cache
    dz = _ew().act_backward(np.ascontiguousarray(dout), a, activation, alpha, u, keep)
    return affine_backward(dz, (x, w, low), need_dx, sgd)
