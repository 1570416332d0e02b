"""Convolutional layers on NHWC images: convolution (im2col + one GEMM), max pooling, spatial batch norm.

Each layer is a `*_forward(...) -> (out, cache)` / `*_backward(dout, cache) -> (dx, grads)` pair like
the fully-connected layers in `layers.py`. Filters are stored (KH, KW, C, F): reshaped to
(KH*KW*C, F) they are the right operand of `cols @ w`, whose (N*Ho*Wo, F) result is already the NHWC
output, so no transpose appears anywhere on the forward or backward path.

The im2col matrix is the one large temporary (KH*KW times the input). A `Workspace` keeps it, and the
matching gradient buffer, from one minibatch to the next instead of reallocating them on every call;
a layer's buffers are only valid until its next forward call, which the training loop respects
(forward then backward, one batch at a time).

`backend="dnnl"` runs the convolution's three passes as oneDNN's direct convolutions instead
(imgclf/dnnl.py, the optional `dnnl` extra): no column matrix, no col2im, and with precision="bf16"
AMX / AVX512-BF16 kernels on bfloat16 images, filters and upstream gradients. The gradients mean the
same; `resolve_backend` says which backend "auto" comes to for a layer.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..errors import UsageError
from ..kernels import pool
from ..kernels.im2col import col2im, im2col, output_size


class Workspace:
    """Reusable uninitialised buffers keyed by (name, shape, dtype); keeps the few most recent."""

    def __init__(self, max_buffers: int = 4):
        self.max_buffers = max_buffers
        self._buffers: OrderedDict = OrderedDict()

    def get(self, name: str, shape: tuple, dtype) -> np.ndarray:
        key = (name, tuple(shape), np.dtype(dtype).str)
        buf = self._buffers.pop(key, None)
        if buf is None:
            buf = np.empty(shape, dtype)
        self._buffers[key] = buf
        while len(self._buffers) > self.max_buffers:
            self._buffers.popitem(last=False)
        return buf

    def clear(self) -> None:
        self._buffers.clear()

    def __len__(self) -> int:
        return len(self._buffers)


def _check_conv(x, w, b):
    if x.ndim != 4:
        raise UsageError(f"convolution input must be images (N, H, W, C), got shape {x.shape}")
    if w.ndim != 4:
        raise UsageError(f"convolution filters must be shaped (KH, KW, C, F), got shape {w.shape}")
    if w.shape[2] != x.shape[3]:
        raise UsageError(f"filters expect {w.shape[2]} input channels but the images have {x.shape[3]}")
    if b is not None and b.shape != (w.shape[3],):
        raise UsageError(f"bias must have shape ({w.shape[3]},), got {b.shape}")


BACKENDS = ("im2col", "dnnl")
# "auto" keeps im2col for output maps of at most this many pixels: on 3x3 maps (batch 512, 128-256
# channels) oneDNN 3.2's kernels took 1.6-2.6x im2col's time (docs/dnnl.md), on 7x7 and larger far less.
AUTO_IM2COL_PIXELS = 16


class DnnlCache(tuple):
    """What the backward pass of a oneDNN convolution needs (the forward pass's inputs as multiplied)."""

    __slots__ = ()
    fields = ("x_shape", "x_in", "w_in", "w", "has_bias", "stride", "pad", "dilation", "low")


def resolve_backend(backend: str, dtype, out_pixels: int) -> str:
    """The backend a layer runs on: "auto" is oneDNN where it is installed, the data is float32 and the
    output map has more than AUTO_IM2COL_PIXELS pixels, else im2col; "im2col" and "dnnl" are themselves."""
    if backend == "auto":
        from .. import dnnl

        if np.dtype(dtype) == np.float32 and out_pixels > AUTO_IM2COL_PIXELS and dnnl.available():
            return "dnnl"
        return "im2col"
    if backend not in BACKENDS:
        raise UsageError(f"backend must be one of 'auto', {', '.join(map(repr, BACKENDS))}, got {backend!r}",
                         param="backend")
    return backend


def conv_forward(x, w, b, stride: int = 1, pad: int = 0, dilation: int = 1, workspace: Workspace | None = None,
                 precision: str = "float32", backend: str = "im2col"):
    """out[n, i, j, f] = b[f] + sum_{p,q,c} xpad[n, i*S + p*D, j*S + q*D, c] * w[p, q, c, f].

    `b` may be None (no bias: a batch norm follows); then the gradients have no "b" either.
    `precision="bf16"` (float32 x and w only): the GEMM's inputs are rounded to bfloat16 (the column
    matrix is built in bfloat16 directly) and multiplied with float32 accumulation (imgclf/bf16.py); the
    output, the bias and both backward products' results stay float32, and so does `w` itself.
    `backend`: "im2col" (im2col + one GEMM), "dnnl" (oneDNN's direct convolutions, float32 data only;
    Unsupported where oneDNN is not installed; no workspace needed) or "auto" (`resolve_backend`)."""
    _check_conv(x, w, b)
    low = _check_precision(precision, x, w)
    KH, KW, C, F = w.shape
    N, H, W, _ = x.shape
    Ho = output_size(H, KH, stride, pad, dilation, "convolution height")
    Wo = output_size(W, KW, stride, pad, dilation, "convolution width")
    dtype = np.result_type(x.dtype, w.dtype)
    if resolve_backend(backend, dtype, Ho * Wo) == "dnnl":
        return _dnnl_forward(x, w, b, stride, pad, dilation, low)
    x = np.ascontiguousarray(x, dtype=dtype)
    tap = _single_tap(H, W, Ho, Wo, KH, KW, pad, dilation)
    w16 = None
    if low:
        from .. import bf16

        w2 = w[tap, tap] if tap is not None else w.reshape(KH * KW * C, F)
        w16 = bf16.to_bf16(np.ascontiguousarray(w2))
        if tap is not None:
            cols = bf16.to_bf16(x.reshape(N, C))
        else:
            buf = workspace.get("cols", (N * Ho * Wo, KH * KW * C), np.uint16) if workspace is not None else None
            cols = bf16.im2col(x, KH, KW, stride, pad, dilation, out=buf)
        out = bf16.gemm(cols, w16)
    elif tap is not None:
        # A 1x1 map (feature rows read as images): one filter tap meets the pixel, the others only padding,
        # so the convolution is the product with that tap, without im2col (the same numbers).
        cols = x.reshape(N, C)
        out = cols @ w[tap, tap].astype(dtype, copy=False)
    else:
        buf = workspace.get("cols", (N * Ho * Wo, KH * KW * C), dtype) if workspace is not None else None
        cols = im2col(x, KH, KW, stride, pad, dilation, out=buf)
        out = cols @ w.reshape(KH * KW * C, F).astype(dtype, copy=False)
    if b is not None:
        out += b.astype(dtype, copy=False)
    return out.reshape(N, Ho, Wo, F), (x.shape, cols, w, b is not None, stride, pad, dilation, workspace, w16, tap)


def _dnnl_forward(x, w, b, stride, pad, dilation, low):
    from .. import dnnl

    if x.dtype != np.float32 or w.dtype != np.float32:
        raise UsageError(f"backend='dnnl' takes float32 images and filters, got {x.dtype} and {w.dtype}",
                         param="backend")
    dnnl.require("backend")
    x = np.ascontiguousarray(x)
    if low:
        from .. import bf16

        x_in, w_in = bf16.to_bf16(x), bf16.to_bf16(np.ascontiguousarray(w))
    else:
        x_in, w_in = x, np.ascontiguousarray(w)
    out = dnnl.conv_forward(x_in, w_in, stride, pad, dilation)
    if b is not None:
        out += b.astype(np.float32, copy=False)
    return out, DnnlCache((x.shape, x_in, w_in, w, b is not None, stride, pad, dilation, low))


def _dnnl_backward(dout, cache, need_dx):
    from .. import dnnl

    x_shape, x_in, w_in, w, has_bias, stride, pad, dilation, low = cache
    F = w.shape[3]
    d = np.ascontiguousarray(dout, dtype=np.float32)
    N, H, W, _ = x_shape
    Ho = output_size(H, w.shape[0], stride, pad, dilation, "convolution height")
    Wo = output_size(W, w.shape[1], stride, pad, dilation, "convolution width")
    if d.size != N * Ho * Wo * F:
        raise UsageError(f"convolution backward: upstream gradient {dout.shape} does not match the forward pass")
    d = d.reshape(N, Ho, Wo, F)
    if low:
        from .. import bf16

        d_in = bf16.to_bf16(d)
    else:
        d_in = d
    grads = {"w": dnnl.conv_backward_weights(x_in, d_in, w.shape, stride, pad, dilation)}
    if has_bias:
        grads["b"] = d.reshape(-1, F).sum(axis=0)
    dx = dnnl.conv_backward_data(d_in, w_in, x_shape, stride, pad, dilation) if need_dx else None
    return dx, grads


def _check_precision(precision, x, w) -> bool:
    """Whether the products run in bfloat16; UsageError for an unknown precision or float64 data."""
    if precision == "float32":
        return False
    if precision != "bf16":
        raise UsageError(f"precision must be 'float32' or 'bf16', got {precision!r}", param="precision")
    if x.dtype != np.float32 or w.dtype != np.float32:
        raise UsageError(f"precision='bf16' takes float32 images and filters, got {x.dtype} and {w.dtype}",
                         param="precision")
    return True


def _single_tap(H, W, Ho, Wo, KH, KW, pad, dilation) -> int | None:
    """The filter tap (t, t) that alone meets a 1x1 input at a 1x1 output, or None."""
    if H == W == Ho == Wo == 1 and KH == KW and pad % dilation == 0 and pad // dilation < KH:
        return pad // dilation
    return None


def conv_backward(dout, cache, need_dx: bool = True):
    """Gradients (dx, {"w", "b"}); dx is None when `need_dx` is false (the first layer needs none).
    After a bfloat16 forward pass both products take bfloat16 inputs (the stored columns and filters,
    the upstream gradient rounded) and give float32 dw and dx."""
    if isinstance(cache, DnnlCache):
        return _dnnl_backward(dout, cache, need_dx)
    x_shape, cols, w, has_bias, stride, pad, dilation, workspace, w16, tap = cache
    KH, KW, C, F = w.shape
    low = w16 is not None
    d2 = np.ascontiguousarray(dout, dtype=w.dtype if low else cols.dtype).reshape(-1, F)
    if d2.shape[0] != cols.shape[0]:
        raise UsageError(f"convolution backward: upstream gradient {dout.shape} does not match the forward pass")
    if low:
        from .. import bf16

        d16 = bf16.to_bf16(d2)
        dw2 = bf16.gemm(cols, d16, transa=True)
    else:
        dw2 = cols.T @ d2
    if tap is not None:
        dw = np.zeros_like(w)
        dw[tap, tap] = dw2
    else:
        dw = dw2.reshape(w.shape).astype(w.dtype, copy=False)
    grads = {"w": dw}
    if has_bias:
        grads["b"] = d2.sum(axis=0).astype(w.dtype, copy=False)
    dx = None
    if need_dx and low:
        shape = (cols.shape[0], w16.shape[0])
        dcols = workspace.get("dcols", shape, np.float32) if workspace is not None and tap is None else None
        dcols = bf16.gemm(d16, w16, transb=True, out=dcols)
        dx = dcols.reshape(x_shape) if tap is not None else col2im(dcols, x_shape, KH, KW, stride, pad, dilation)
    elif need_dx and tap is not None:
        dx = (d2 @ w[tap, tap].astype(cols.dtype, copy=False).T).reshape(x_shape)
    elif need_dx:
        w2 = w.reshape(KH * KW * C, F).astype(cols.dtype, copy=False)
        dcols = workspace.get("dcols", cols.shape, cols.dtype) if workspace is not None else None
        dcols = np.matmul(d2, w2.T, out=dcols)
        dx = col2im(dcols, x_shape, KH, KW, stride, pad, dilation)
    return dx, grads


def max_pool_forward(x, size: int = 2, stride: int | None = None, floor: bool = False):
    """Max over size x size windows; numba fast path for the non-overlapping 2x2 case. With `floor`
    the rows/columns past the last whole window are left out (31x31 -> 15x15), else windows must tile."""
    if x.ndim != 4:
        raise UsageError(f"max pooling input must be images (N, H, W, C), got shape {x.shape}")
    out, arg = pool.max_pool(x, size, stride, floor)
    return out, (x.shape, arg, size, stride, floor)


def max_pool_backward(dout, cache):
    x_shape, arg, size, stride, floor = cache
    return pool.max_pool_backward(dout, arg, x_shape, size, stride, floor), {}


def conv_act_forward(x, w, b, activation: str = "relu", alpha: float | None = None, stride: int = 1, pad: int = 0,
                     dilation: int = 1, workspace: Workspace | None = None, precision: str = "float32",
                     backend: str = "im2col"):
    """act(conv(x, w) + b): the bias and activation are one fused pass over the GEMM's output."""
    from .layers import ACTIVATION_DEFAULTS, _ew

    alpha = ACTIVATION_DEFAULTS[activation] if alpha is None else alpha
    z, c_conv = conv_forward(x, w, None, stride, pad, dilation, workspace, precision, backend)
    a, out = _ew().bias_act_forward(z.reshape(-1, w.shape[3]), b.astype(z.dtype, copy=False), activation, alpha)
    return out.reshape(z.shape), (c_conv, a, activation, alpha)


def conv_act_backward(dout, cache, need_dx: bool = True):
    from .layers import _ew

    c_conv, a, activation, alpha = cache
    dz = _ew().act_backward(np.ascontiguousarray(dout).reshape(a.shape), a, activation, alpha)
    dx, grads = conv_backward(dz, c_conv, need_dx)
    grads["b"] = dz.sum(axis=0)
    return dx, grads


def spatial_batchnorm_forward(x, gamma, beta, running_mean, running_var, mode: str, momentum: float = 0.9,
                              eps: float = 1e-5, relu: bool = False):
    """Batch norm per channel over (N, H, W), optionally followed by a ReLU in the same pass.

    In NHWC this is the fully-connected batch norm (`layers.batchnorm_forward`, same conventions:
    biased batch variance, running = momentum * running + (1 - momentum) * batch) on the (N*H*W, C)
    view; numba kernels do it in two passes instead of numpy's many."""
    from ..kernels import batchnorm

    if x.ndim != 4:
        raise UsageError(f"spatial batch norm input must be images (N, H, W, C), got shape {x.shape}")
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[3])
    out, stats = batchnorm.forward(x2, gamma, beta, running_mean, running_var, mode, momentum, eps, relu)
    return out.reshape(x.shape), (x2, out, stats, gamma, relu)


def spatial_batchnorm_backward(dout, cache):
    """Gradients of the training-mode forward pass: (dx, {"gamma", "beta"})."""
    from ..kernels import batchnorm

    x2, out, stats, gamma, relu = cache
    shape = dout.shape
    dx, dgamma, dbeta = batchnorm.backward(dout.reshape(x2.shape), x2, out, stats, gamma, relu)
    return dx.reshape(shape), {"gamma": dgamma, "beta": dbeta}


def fuses_bn_relu_pool(shape, size: int) -> bool:
    """Whether `bn_relu_pool_forward` applies: 2x2 pooling with stride 2 of even-sized maps."""
    return pool.is_fast_2x2(shape, size, size)


def bn_relu_pool_forward(x, gamma, beta, running_mean, running_var, mode: str, momentum: float = 0.9,
                         eps: float = 1e-5):
    """Spatial batch norm, ReLU and 2x2 max pooling as one layer: the same numbers as the three layers
    in sequence, without writing the full-size normalised map (imgclf/kernels/batchnorm.py)."""
    from ..kernels import batchnorm

    return _fused_pool_forward(batchnorm.forward_pool2, x, gamma, beta, running_mean, running_var, mode, momentum, eps)


def _fused_pool_forward(forward, x, gamma, beta, running_mean, running_var, mode, momentum, eps):
    """A fused batch norm + activation + 2x2 pool kernel wrapper's forward pass (`forward` from
    imgclf/kernels/batchnorm.py): (out, cache)."""
    if x.ndim != 4:
        raise UsageError(f"spatial batch norm input must be images (N, H, W, C), got shape {x.shape}")
    x = np.ascontiguousarray(x)
    out, arg, stats = forward(x, gamma, beta, running_mean, running_var, mode, momentum, eps)
    return out, (x, arg, stats, gamma)


def _fused_pool_backward(backward, dout, cache, overwrite_input):
    x, arg, stats, gamma = cache
    dx, dgamma, dbeta = backward(dout, arg, x, stats, gamma, overwrite_x=overwrite_input)
    return dx, {"gamma": dgamma, "beta": dbeta}


def bn_relu_pool_backward(dout, cache, overwrite_input: bool = False):
    """Gradients of the training-mode forward pass from the pooled gradient: (dx, {"gamma", "beta"}).
    With overwrite_input dx is written over the forward pass's input (kept in `cache`), which saves
    filling a second full-size map; the cache is then spent (a training step's, used once)."""
    from ..kernels import batchnorm

    return _fused_pool_backward(batchnorm.backward_pool2, dout, cache, overwrite_input)


def bn_gelu_forward(x, gamma, beta, running_mean, running_var, mode: str, momentum: float = 0.9, eps: float = 1e-5):
    """Spatial batch norm followed by the exact GELU in one pass (imgclf/kernels/batchnorm.py); the cache
    keeps only the input, from which the backward pass recomputes the GELU's input."""
    from ..kernels import batchnorm

    if x.ndim != 4:
        raise UsageError(f"spatial batch norm input must be images (N, H, W, C), got shape {x.shape}")
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[3])
    out, stats = batchnorm.forward_gelu(x2, gamma, beta, running_mean, running_var, mode, momentum, eps)
    return out.reshape(x.shape), (x2, stats, gamma)


def bn_gelu_backward(dout, cache):
    """Gradients of the training-mode forward pass: (dx, {"gamma", "beta"})."""
    from ..kernels import batchnorm

    x2, stats, gamma = cache
    shape = dout.shape
    dx, dgamma, dbeta = batchnorm.backward_gelu(np.ascontiguousarray(dout).reshape(x2.shape), x2, stats, gamma)
    return dx.reshape(shape), {"gamma": dgamma, "beta": dbeta}


def bn_gelu_pool_forward(x, gamma, beta, running_mean, running_var, mode: str, momentum: float = 0.9,
                         eps: float = 1e-5):
    """Spatial batch norm, exact GELU and 2x2 max pooling (odd maps in floor mode: 31 -> 15) as one layer:
    the numbers of the three layers in sequence, without writing the full-size maps."""
    from ..kernels import batchnorm

    return _fused_pool_forward(batchnorm.forward_gelu_pool2, x, gamma, beta, running_mean, running_var, mode, momentum,
                               eps)


def bn_gelu_pool_backward(dout, cache, overwrite_input: bool = False):
    """Gradients of the training-mode forward pass from the pooled gradient: (dx, {"gamma", "beta"});
    overwrite_input as in `bn_relu_pool_backward`."""
    from ..kernels import batchnorm

    return _fused_pool_backward(batchnorm.backward_gelu_pool2, dout, cache, overwrite_input)
