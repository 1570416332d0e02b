"""The fully-connected hidden block of NeuralNet and of ConvNet's head, one definition for both:

    affine -> [batchnorm] -> activation -> [dropout]      (CS231n's order)

Without batch norm the affine layer, its bias, the activation and the dropout mask run fused
(layers.affine_act_forward). With batch norm the affine layer has no bias: batch norm's mean
subtraction cancels it (its gradient is exactly 0) and beta takes its place.

NeuralNet model files written before this block existed normalised *after* the activation
(affine + b -> activation -> batchnorm -> dropout). Their layout is recorded as `AFTER_ACTIVATION` when
they load, and `forward` evaluates them that way, so they predict exactly as before; training always
starts a fresh model in the current layout.
"""

from __future__ import annotations

import numpy as np

from . import layers

BN_BEFORE_ACTIVATION = "affine-bn-act"
BN_AFTER_ACTIVATION = "affine-act-bn"  # NeuralNet model files without a layout (read-only)


def add_params(params: dict, buffers: dict, i: int, n_in: int, n_out: int, init_spec: str, batchnorm: bool,
               rng: np.random.Generator, dtype, layout: str = BN_BEFORE_ACTIVATION) -> None:
    """W{i} (n_in, n_out) and b{i}, or gamma{i}, beta{i} and the running statistics with batch norm."""
    from . import init

    params[f"W{i}"] = init.weight(init_spec, n_in, n_out, rng, dtype)
    if not batchnorm or layout == BN_AFTER_ACTIVATION:
        params[f"b{i}"] = np.zeros(n_out, dtype)
    if batchnorm:
        add_batchnorm(params, buffers, i, n_out, dtype)


def add_batchnorm(params: dict, buffers: dict, i: int, size: int, dtype) -> None:
    params[f"gamma{i}"] = np.ones(size, dtype)
    params[f"beta{i}"] = np.zeros(size, dtype)
    buffers[f"running_mean{i}"] = np.zeros(size, dtype)
    buffers[f"running_var{i}"] = np.ones(size, dtype)


def forward(h, i: int, params: dict, buffers: dict, act: str, alpha: float, dropout: float, mode: str, rng,
            layout: str = BN_BEFORE_ACTIVATION, precision: str = "float32"):
    """(output, cache) of hidden block i; `dropout` is the training-time probability, `precision` the
    affine product's (layers.affine_forward)."""
    W = params[f"W{i}"]
    p = dropout if mode == "train" else 0.0
    if f"gamma{i}" not in params:
        h, c = layers.affine_act_forward(h, W, params[f"b{i}"], act, alpha, p, mode, rng, precision)
        return h, (i, c)
    bn = (params[f"gamma{i}"], params[f"beta{i}"], buffers[f"running_mean{i}"], buffers[f"running_var{i}"], mode)
    if layout == BN_AFTER_ACTIVATION:
        if mode == "train":
            raise ValueError("the pre-issue-15 batch-norm layout is evaluated, never trained")
        h, _ = layers.affine_act_forward(h, W, params[f"b{i}"], act, alpha)
        return layers.batchnorm_forward(h, *bn)[0], None
    h, c1 = layers.affine_forward(h, W, W.dtype.type(0), precision)
    h, c2 = layers.batchnorm_forward(h, *bn)
    h, c3 = layers.activation_forward(h, act, alpha)
    h, c4 = layers.dropout_forward(h, p, mode, rng)
    return h, (i, c1, c2, c3, c4)


def backward(dh, cache, need_dx: bool = True, sgd=None):
    """(d input, grads keyed by parameter name) of hidden block i; `sgd=(lr, c)` steps W{i} in place
    instead of returning its gradient (layers.affine_backward; grads then lack W{i})."""
    i = cache[0]
    if len(cache) == 2:
        dh, g = layers.affine_act_backward(dh, cache[1], need_dx=need_dx, sgd=sgd)
        grads = {f"b{i}": g["b"]}
        if g["w"] is not None:
            grads[f"W{i}"] = g["w"]
        return dh, grads
    _, c1, c2, c3, c4 = cache
    dh, _ = layers.dropout_backward(dh, c4)
    dh, _ = layers.activation_backward(dh, c3)
    dh, g = layers.batchnorm_backward(dh, c2)
    grads = {f"gamma{i}": g["gamma"], f"beta{i}": g["beta"]}
    dh, g = layers.affine_backward(dh, c1, need_dx=need_dx, sgd=sgd)
    if g["w"] is not None:
        grads[f"W{i}"] = g["w"]
    return dh, grads
