"""The exact GELU (activation="gelu"): the fused elementwise kernels and batch norm + GELU against the
naive references (tests/reference.py), numerical gradient checks in float64, and the kernels' Python
source under NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest

from conftest import assert_runs_without_jit, check_bn_layer_gradients, check_linear_gradients
from imgclf.errors import UsageError
from imgclf.kernels import elementwise as ew
from imgclf.nn import conv, layers
from reference import activation_grad_naive, activation_naive, bias_act_dropout_naive, spatial_batchnorm_train_naive


def test_gelu_known_values():
    x = np.array([[-3.0, -1.0, 0.0, 0.5, 1.0, 2.0]])
    out, _ = layers.gelu_forward(x)
    # x * Phi(x) with the standard normal CDF's tabulated values Phi(-3, -1, 0.5, 1, 2)
    phi = [0.0013498980316301, 0.1586552539314571, 0.5, 0.6914624612740131, 0.8413447460685429, 0.9772498680518208]
    expected = x[0] * phi
    np.testing.assert_allclose(out[0], expected, rtol=1e-10, atol=1e-12)
    assert layers.parse_activation("gelu") == ("gelu", 0.0)
    with pytest.raises(Exception, match="takes no parameter"):
        layers.parse_activation("gelu:1")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_gelu_kernels_match_reference(dtype, rng):
    z = (rng.standard_normal((7, 13)) * 2).astype(dtype)
    b = rng.standard_normal(13).astype(dtype)
    u = rng.random((7, 13)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for uu, keep in ((None, 1.0), (u, 0.6)):
        _, out_ref = bias_act_dropout_naive(z, b, "gelu", 0.0, uu, keep)
        a, out = ew.bias_act_forward(z.copy(), b, "gelu", 0.0, uu, keep)
        assert a.dtype == out.dtype == dtype and out is not a
        np.testing.assert_allclose(a, z.astype(np.float64) + b, rtol=tol, atol=tol)  # the pre-activation
        np.testing.assert_allclose(out, out_ref, rtol=tol, atol=tol)
        dout = rng.standard_normal(z.shape).astype(dtype)
        mask = np.ones(z.shape) if uu is None else (uu < keep) / keep
        dz_ref = dout * mask * activation_grad_naive(z.astype(np.float64) + b, "gelu")
        np.testing.assert_allclose(ew.act_backward(dout, a, "gelu", 0.0, uu, keep), dz_ref, rtol=tol, atol=tol)


def test_gelu_layer_gradients(rng):
    x = rng.standard_normal((4, 6)) * 2
    out, cache = layers.activation_forward(x, "gelu")
    np.testing.assert_allclose(out, activation_naive(x, "gelu"), rtol=1e-12, atol=1e-12)
    check_linear_gradients(lambda p: layers.activation_forward(p["x"], "gelu")[0], {"x": x},
                  lambda G: {"x": layers.activation_backward(G, cache)[0]})


def test_fused_affine_gelu_dropout_gradients(rng):
    x = rng.standard_normal((6, 5))
    params = {"x": x, "w": rng.standard_normal((5, 7)) * 0.5, "b": rng.standard_normal(7) * 0.1}

    def fwd(p):
        return layers.affine_act_forward(p["x"], p["w"], p["b"], "gelu", 0.0, 0.3, "train", np.random.default_rng(7))

    def grads(G):
        dx, g = layers.affine_act_backward(G, fwd(params)[1])
        return {"x": dx, **g}

    check_linear_gradients(lambda p: fwd(p)[0], params, grads)


def test_conv_gelu_gradients(rng):
    params = {"x": rng.standard_normal((2, 5, 5, 2)), "w": rng.standard_normal((3, 3, 2, 3)) * 0.4,
              "b": rng.standard_normal(3) * 0.1}

    def fwd(p):
        return conv.conv_act_forward(p["x"], p["w"], p["b"], "gelu", None, 1, 1)

    def grads(G):
        dx, g = conv.conv_act_backward(G, fwd(params)[1])
        return {"x": dx, **g}

    check_linear_gradients(lambda p: fwd(p)[0], params, grads)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bn_gelu_matches_the_two_layers(dtype, rng):
    x = (rng.standard_normal((3, 4, 5, 6)) * 2 + 0.5).astype(dtype)
    gamma, beta = rng.standard_normal(6).astype(dtype), rng.standard_normal(6).astype(dtype)
    rm0, rv0, rm1, rv1 = np.zeros(6, dtype), np.ones(6, dtype), np.zeros(6, dtype), np.ones(6, dtype)
    out, cache = conv.bn_gelu_forward(x, gamma, beta, rm0, rv0, "train", momentum=0.6, eps=1e-12)
    ref = activation_naive(spatial_batchnorm_train_naive(x.astype(np.float64), gamma, beta, eps=1e-12)[0], "gelu")
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, **tol)
    h, c_bn = conv.spatial_batchnorm_forward(x, gamma, beta, rm1, rv1, "train", momentum=0.6, eps=1e-12)
    a, c_act = layers.activation_forward(h, "gelu")
    np.testing.assert_allclose(out, a, **tol)
    np.testing.assert_array_equal(rm0, rm1)
    np.testing.assert_array_equal(rv0, rv1)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, g = conv.bn_gelu_backward(dout, cache)
    dx_ref, g_ref = conv.spatial_batchnorm_backward(layers.activation_backward(dout, c_act)[0], c_bn)
    assert dx.dtype == dtype and g["gamma"].dtype == dtype
    np.testing.assert_allclose(dx, dx_ref, **tol)
    for k in ("gamma", "beta"):
        np.testing.assert_allclose(g[k], g_ref[k], **tol)
    test_out, _ = conv.bn_gelu_forward(x, gamma, beta, rm0, rv0, "test")
    np.testing.assert_allclose(test_out, layers.activation_forward(
        conv.spatial_batchnorm_forward(x, gamma, beta, rm0, rv0, "test")[0], "gelu")[0], **tol)


def test_bn_gelu_gradient_check(rng):
    check_bn_layer_gradients(conv.bn_gelu_forward, conv.bn_gelu_backward, rng.standard_normal((2, 3, 4, 3)) * 1.5, rng)


def test_gelu_kernels_without_jit():
    code = textwrap.dedent("""
        import math
        import numpy as np
        from imgclf.kernels import elementwise as ew
        from imgclf.nn import conv, layers
        from reference import activation_naive, activation_grad_naive, spatial_batchnorm_train_naive
        r = np.random.default_rng(0)
        z, b, u = r.standard_normal((4, 5)), r.standard_normal(5), r.random((4, 5))
        a, out = ew.bias_act_forward(z.copy(), b, "gelu", 0.0, u, 0.5)
        assert np.allclose(out, activation_naive(z + b, "gelu") * (u < 0.5) / 0.5)
        d = r.standard_normal(z.shape)
        assert np.allclose(ew.act_backward(d, a, "gelu", 0.0, u, 0.5),
                           d * (u < 0.5) / 0.5 * activation_grad_naive(z + b, "gelu"))
        x, g, be = r.standard_normal((2, 3, 3, 2)), r.standard_normal(2), r.standard_normal(2)
        o, c = conv.bn_gelu_forward(x, g, be, np.zeros(2), np.ones(2), "train")
        assert np.allclose(o, activation_naive(spatial_batchnorm_train_naive(x, g, be)[0], "gelu"))
        G = r.standard_normal(o.shape)
        dx, gr = conv.bn_gelu_backward(G, c)
        h, cb = conv.spatial_batchnorm_forward(x, g, be, np.zeros(2), np.ones(2), "train")
        dx_ref, gr_ref = conv.spatial_batchnorm_backward(G * activation_grad_naive(h, "gelu"), cb)
        assert np.allclose(dx, dx_ref) and np.allclose(gr["gamma"], gr_ref["gamma"])
        # the float32 exp's Python source: the same polynomial and exponent bits
        v = np.float32(-np.array([0.0, 1e-6, 0.3, 1.0, 2.5, 10.0, 50.0, 87.0], np.float32))
        e = np.array([ew._exp_neg32(t) for t in v])
        assert e.dtype == np.float32
        ref = np.array([math.exp(float(t)) for t in v])
        assert np.all(np.abs(e - ref) <= np.spacing(ref.astype(np.float32))), (e, ref)
        assert ew._exp_neg32(np.float32(-88.0)) == 0.0
        print("ok")
    """)
    assert_runs_without_jit(code)


def test_exp_neg32_within_one_ulp_of_math_exp():
    """The GELU derivative's float32 exp (compiled) on [ln(FLT_MIN), 0], tiny and huge arguments: within one
    ulp of the correctly rounded value; 0 below ln(FLT_MIN), where exp is subnormal."""
    from numba import njit

    @njit
    def run(x, out):
        for i in range(x.size):
            out[i] = ew._exp_neg32(x[i])

    x = np.concatenate([np.linspace(-87.3365, 0, 200_001, dtype=np.float32),
                        -np.logspace(-9, 1.9, 2001).astype(np.float32), np.float32([0.0, -0.0, -1e-30])])
    out = np.empty_like(x)
    run(x, out)
    ref = np.array([math.exp(float(v)) for v in x])
    np.testing.assert_array_less(np.abs(out - ref), np.spacing(ref.astype(np.float32)) * 1.0001)
    assert out[-3] == out[-2] == out[-1] == 1.0
    low = np.float32([-87.34, -88.0, -100.0, -1e30, -np.inf])
    out = np.empty_like(low)
    run(low, out)
    np.testing.assert_array_equal(out, 0.0)


def test_fused_bn_gelu_pool_backward_needs_the_training_forward(rng):
    x = rng.standard_normal((2, 4, 4, 3))
    out, cache = conv.bn_gelu_pool_forward(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), "test")
    with pytest.raises(UsageError, match="training mode"):
        conv.bn_gelu_pool_backward(np.ones_like(out), cache)


def test_gelu_reference_formula():
    assert math.isclose(activation_naive(np.array([1.0]), "gelu")[0], 0.8413447460685429, rel_tol=1e-12)


@pytest.mark.parametrize("shape", [(3, 6, 4, 5), (2, 7, 5, 3), (2, 5, 6, 2), (3, 6, 7, 4)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_bn_gelu_pool_matches_the_three_layers(shape, dtype, rng):
    """bn + gelu + 2x2 pool (floor mode on odd maps) against bn + gelu, then the pool, in sequence."""
    x = (rng.standard_normal(shape) * 2 + 0.3).astype(dtype)
    C = shape[3]
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    s0, s1 = (np.zeros(C, dtype), np.ones(C, dtype)), (np.zeros(C, dtype), np.ones(C, dtype))
    out, cache = conv.bn_gelu_pool_forward(x, gamma, beta, *s0, "train", momentum=0.6)
    a, c_bn = conv.bn_gelu_forward(x, gamma, beta, *s1, "train", momentum=0.6)
    pooled, c_pool = conv.max_pool_forward(a, 2, floor=True)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(out, pooled)
    np.testing.assert_array_equal(cache[1], c_pool[1])
    for u, v in zip(s0, s1):
        np.testing.assert_array_equal(u, v)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, g = conv.bn_gelu_pool_backward(dout, cache)
    dx_ref, g_ref = conv.bn_gelu_backward(conv.max_pool_backward(dout, c_pool)[0], c_bn)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, dx_ref, **tol)
    for k in ("gamma", "beta"):
        np.testing.assert_allclose(g[k], g_ref[k], **tol)


def test_fused_bn_gelu_pool_gradient_check(rng):
    x = rng.permutation(2 * 5 * 7 * 3).reshape(2, 5, 7, 3) / 10.0 - 4.0  # distinct values: no ties
    check_bn_layer_gradients(conv.bn_gelu_pool_forward, conv.bn_gelu_pool_backward, x, rng)


def test_fused_bn_gelu_pool_without_jit():
    code = textwrap.dedent("""
        import numpy as np
        from imgclf.nn import conv
        r = np.random.default_rng(0)
        x, g, be = r.standard_normal((2, 5, 5, 2)), r.standard_normal(2), r.standard_normal(2)
        p, c = conv.bn_gelu_pool_forward(x, g, be, np.zeros(2), np.ones(2), "train")
        a, cb = conv.bn_gelu_forward(x, g, be, np.zeros(2), np.ones(2), "train")
        q, cp = conv.max_pool_forward(a, 2, floor=True)
        assert np.allclose(p, q)
        G = r.standard_normal(p.shape)
        dx, gr = conv.bn_gelu_pool_backward(G, c)
        dx_ref, gr_ref = conv.bn_gelu_backward(conv.max_pool_backward(G, cp)[0], cb)
        assert np.allclose(dx, dx_ref) and np.allclose(gr["gamma"], gr_ref["gamma"])
        print("ok")
    """)
    assert_runs_without_jit(code)
