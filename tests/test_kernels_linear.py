"""The fused linear-classifier step (imgclf/kernels/linear.py) against the naive loop losses of
tests/reference.py, through the kernel, through LinearClassifier.loss_rows, and without the JIT."""

from pathlib import Path

import numpy as np
import pytest

from conftest import assert_runs_without_jit
from imgclf.kernels import linear as kernel
from imgclf.linear import LinearSVM, SoftmaxClassifier
from reference import ovr_svm_loss_naive, softmax_loss_naive, svm_loss_naive

CASES = [("softmax", {}), ("svm", {"delta": 1.0}), ("svm", {"delta": 0.5}), ("svm", {"delta": 1.0, "squared": True}),
         ("ovr", {"delta": 1.0}), ("ovr", {"delta": 0.5, "squared": True})]


def _naive(name, W, X, y, reg, opts, bias_row=True):
    if name == "softmax":
        return softmax_loss_naive(W, X, y, reg, bias_row=bias_row)
    if name == "ovr":
        return ovr_svm_loss_naive(W, X, y, reg, bias_row=bias_row, **opts)
    return svm_loss_naive(W, X, y, reg, bias_row=bias_row, **opts)


def _kind(name, opts):
    if name == "softmax":
        return kernel.SOFTMAX
    if name == "ovr":
        return kernel.OVR_SQUARED_HINGE if opts.get("squared") else kernel.OVR_HINGE
    return kernel.SQUARED_HINGE if opts.get("squared") else kernel.HINGE


def _run_kernel(X, idx, y, W, kind, delta, reg, threads=3):
    """The kernel on W (D+1, C) with the bias as last row; returns (loss + penalty, dW (D+1, C))."""
    D, C = X.shape[1], W.shape[1]
    G = np.full((threads, C, D), np.nan, np.float32)  # stale contents must not leak into the result
    dW = np.full((D + 1, C), np.nan, np.float32)
    data, penalty = kernel.loss_grad_rows(X, idx, y, W[:-1], W[-1].copy(), kind, delta, reg, G, dW[:-1], dW[-1])
    return data + penalty, dW


@pytest.mark.parametrize("name,opts", CASES)
@pytest.mark.parametrize("n", [1, 5, 8, 9, 37])
@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_kernel_matches_naive_loops(rng, name, opts, n, reg):
    # D spans two feature chunks and a remainder; n covers partial, exact and several row groups.
    N, D, C = 60, kernel.CHUNK + 77, 4
    X = rng.standard_normal((N, D)).astype(np.float32)
    y = rng.integers(0, C, N)
    W = (0.05 * rng.standard_normal((D + 1, C))).astype(np.float32)
    idx = rng.choice(N, n, replace=True)  # repeats allowed: a row may appear twice in a batch
    loss, dW = _run_kernel(X, idx, y[idx], W, _kind(name, opts), opts.get("delta", 1.0), reg)
    ref_loss, ref_dW = _naive(name, W.astype(np.float64), X[idx].astype(np.float64), y[idx], reg, opts)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(dW, ref_dW, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls,name,opts", [(SoftmaxClassifier, "softmax", {}), (LinearSVM, "svm", {}),
                                          (LinearSVM, "svm", {"squared": True}), (LinearSVM, "ovr", {}),
                                          (LinearSVM, "ovr", {"squared": True})])
@pytest.mark.parametrize("bias_trick", [True, False])
def test_loss_rows_equals_loss_of_gathered_rows(rng, cls, name, opts, bias_trick):
    X = rng.standard_normal((50, 30)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    extra = {"squared_hinge": True} if opts.get("squared") else {}
    if name == "ovr":
        extra["multiclass"] = "ovr"
    model = cls(reg=0.3, bias_trick=bias_trick, **extra).initialize(30, 3, rng)
    model.params_["W"][...] = 0.1 * rng.standard_normal(model.params_["W"].shape)
    if not bias_trick:
        model.params_["b"][...] = rng.standard_normal(3)
    idx = rng.permutation(50)[:21]
    loss_f, grads_f = model.loss_rows(X, idx, y[idx])
    loss_g, grads_g = model.loss_and_grads(X[idx], y[idx])
    assert loss_f == pytest.approx(loss_g, rel=1e-5)
    assert grads_f.keys() == grads_g.keys()
    for k in grads_f:
        np.testing.assert_allclose(grads_f[k], grads_g[k], rtol=1e-4, atol=1e-6)


def test_kernel_without_jit_matches_naive_loops():
    """NUMBA_DISABLE_JIT=1: the Python source of the kernel is what gets compiled; check it too."""
    code = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from reference import ovr_svm_loss_naive, softmax_loss_naive, svm_loss_naive
from imgclf.kernels import linear as k
rng = np.random.default_rng(5)
X = rng.standard_normal((12, 9)).astype(np.float32); y = rng.integers(0, 3, 12)
W = (0.1 * rng.standard_normal((10, 3))).astype(np.float32)
idx = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 11])
for kind, ref in [(k.SOFTMAX, lambda: softmax_loss_naive(W, X[idx], y[idx], 0.5, bias_row=True)),
                  (k.HINGE, lambda: svm_loss_naive(W, X[idx], y[idx], 0.5, bias_row=True)),
                  (k.SQUARED_HINGE, lambda: svm_loss_naive(W, X[idx], y[idx], 0.5, squared=True, bias_row=True)),
                  (k.OVR_HINGE, lambda: ovr_svm_loss_naive(W, X[idx], y[idx], 0.5, bias_row=True)),
                  (k.OVR_SQUARED_HINGE, lambda: ovr_svm_loss_naive(W, X[idx], y[idx], 0.5, squared=True,
                                                                   bias_row=True))]:
    G = np.zeros((2, 3, 9), np.float32); dW = np.zeros((10, 3), np.float32)
    data, penalty = k.loss_grad_rows(X, idx, y[idx], W[:-1], W[-1].copy(), kind, 1.0, 0.5, G, dW[:-1], dW[-1])
    rl, rdW = ref()
    assert abs(data + penalty - rl) <= 1e-5 * abs(rl), (kind, data + penalty, rl)
    assert np.allclose(dW, rdW, atol=1e-5), kind
print("ok")
""".format(tests=str(Path(__file__).parent))
    assert_runs_without_jit(code)
