"""Convolution, max pooling and spatial batch norm layers (imgclf.nn.conv and their kernels):
forward and backward against the naive loops, numerical gradient checks in float64, geometry errors,
workspace reuse, and the kernels' Python source under NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from conftest import assert_runs_without_jit, check_bn_layer_gradients, check_linear_gradients
from imgclf.errors import UsageError
from imgclf.nn import conv
from reference import (bn_relu_pool_train_naive, conv_backward_naive, conv_forward_naive, max_pool_backward_naive,
                       max_pool_forward_naive, spatial_batchnorm_train_naive)

# (H, W, C, F, K, stride, pad, dilation)
CONV_CASES = [(5, 5, 3, 4, 3, 1, 1, 1), (6, 7, 2, 3, 3, 1, 0, 1), (7, 7, 2, 3, 3, 2, 1, 1),
              (8, 8, 2, 2, 3, 1, 2, 2), (6, 6, 3, 2, 1, 1, 0, 1), (9, 9, 1, 2, 3, 2, 2, 2)]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_naive_loops(case, rng):
    H, W, C, F, K, s, p, d = case
    x = rng.standard_normal((2, H, W, C))
    w = rng.standard_normal((K, K, C, F))
    b = rng.standard_normal(F)
    out, cache = conv.conv_forward(x, w, b, s, p, d)
    np.testing.assert_allclose(out, conv_forward_naive(x, w, b, s, p, d), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, grads = conv.conv_backward(dout, cache)
    ndx, ndw, ndb = conv_backward_naive(dout, x, w, s, p, d)
    np.testing.assert_allclose(dx, ndx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["w"], ndw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["b"], ndb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES[:4])
def test_conv_gradient_check(case, rng):
    H, W, C, F, K, s, p, d = case
    params = {"x": rng.standard_normal((2, H, W, C)), "w": rng.standard_normal((K, K, C, F)),
              "b": rng.standard_normal(F)}

    def fwd(q):
        return conv.conv_forward(q["x"], q["w"], q["b"], s, p, d)[0]

    def grads(G):
        dx, g = conv.conv_backward(G, conv.conv_forward(params["x"], params["w"], params["b"], s, p, d)[1])
        return {"x": dx, "w": g["w"], "b": g["b"]}

    check_linear_gradients(fwd, params, grads)


def test_conv_act_gradient_check(rng):
    params = {"x": rng.standard_normal((2, 5, 5, 3)), "w": rng.standard_normal((3, 3, 3, 4)),
              "b": rng.standard_normal(4)}

    def fwd(q):
        return conv.conv_act_forward(q["x"], q["w"], q["b"], "relu", None, 1, 1)[0]

    def grads(G):
        dx, g = conv.conv_act_backward(G, conv.conv_act_forward(params["x"], params["w"], params["b"], "relu",
                                                                None, 1, 1)[1])
        return {"x": dx, "w": g["w"], "b": g["b"]}

    out = fwd(params)
    ref = np.maximum(conv_forward_naive(params["x"], params["w"], params["b"], 1, 1), 0)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    check_linear_gradients(fwd, params, grads)


def test_conv_without_bias_has_no_bias_gradient(rng):
    x, w = rng.standard_normal((2, 4, 4, 2)), rng.standard_normal((3, 3, 2, 3))
    out, cache = conv.conv_forward(x, w, None, 1, 1)
    np.testing.assert_allclose(out, conv_forward_naive(x, w, None, 1, 1), rtol=1e-12, atol=1e-12)
    dx, grads = conv.conv_backward(np.ones_like(out), cache, need_dx=False)
    assert dx is None and set(grads) == {"w"}


def test_conv_float32_stays_float32(rng):
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    out, cache = conv.conv_forward(x, w, np.zeros(5, np.float32), 1, 1)
    assert out.dtype == np.float32
    dx, g = conv.conv_backward(np.ones_like(out), cache)
    assert dx.dtype == g["w"].dtype == g["b"].dtype == np.float32
    np.testing.assert_allclose(out, conv_forward_naive(x, w, None, 1, 1), rtol=1e-4, atol=1e-4)


def test_conv_geometry_errors(rng):
    x = rng.standard_normal((1, 8, 8, 3))
    with pytest.raises(UsageError, match=r"convolution height: \(W - F \+ 2P\)/S \+ 1 = \(8 - 3 \+ 2\*0\)/2 \+ 1 = 3.5 "
                                          r"is not an integer"):
        conv.conv_forward(x, rng.standard_normal((3, 3, 3, 2)), np.zeros(2), stride=2, pad=0)
    with pytest.raises(UsageError, match="filters expect 4 input channels but the images have 3"):
        conv.conv_forward(x, rng.standard_normal((3, 3, 4, 2)), np.zeros(2))
    with pytest.raises(UsageError, match=r"bias must have shape \(2,\)"):
        conv.conv_forward(x, rng.standard_normal((3, 3, 3, 2)), np.zeros(3))
    with pytest.raises(UsageError, match=r"images \(N, H, W, C\)"):
        conv.conv_forward(x[0], rng.standard_normal((3, 3, 3, 2)), np.zeros(2))
    with pytest.raises(UsageError, match="max pooling height"):
        conv.max_pool_forward(rng.standard_normal((1, 7, 8, 2)), 2)


def test_workspace_reuses_the_im2col_buffers(rng):
    ws = conv.Workspace(max_buffers=4)
    w, b = rng.standard_normal((3, 3, 2, 4)), np.zeros(4)
    x = rng.standard_normal((3, 6, 6, 2))
    out1, c1 = conv.conv_forward(x, w, b, 1, 1, workspace=ws)
    conv.conv_backward(np.ones_like(out1), c1)
    out2, c2 = conv.conv_forward(x[::-1].copy(), w, b, 1, 1, workspace=ws)
    assert c2[1] is c1[1]  # the same cols array, refilled
    np.testing.assert_allclose(out2, conv_forward_naive(x[::-1], w, b, 1, 1), rtol=1e-12, atol=1e-12)
    assert len(ws) == 2  # cols and dcols
    for n in (1, 2, 4, 5):  # other batch sizes get their own buffers, the oldest are dropped
        conv.conv_forward(x[:1].repeat(n, 0), w, b, 1, 1, workspace=ws)
    assert len(ws) == 4


@pytest.mark.parametrize("H,W,size,stride", [(4, 6, 2, 2), (7, 7, 3, 2), (5, 5, 2, 1), (6, 6, 3, 3), (7, 5, 1, 1)])
def test_max_pool_matches_naive(H, W, size, stride, rng):
    x = rng.standard_normal((2, H, W, 3))
    out, cache = conv.max_pool_forward(x, size, stride)
    np.testing.assert_array_equal(out, max_pool_forward_naive(x, size, stride))
    dout = rng.standard_normal(out.shape)
    dx, _ = conv.max_pool_backward(dout, cache)
    np.testing.assert_array_equal(dx, max_pool_backward_naive(dout, x, size, stride))


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.zeros((1, 4, 4, 2))
    for size, stride in ((2, 2), (3, 1)):
        out, cache = conv.max_pool_forward(x, size, stride)
        dx, _ = conv.max_pool_backward(np.ones_like(out), cache)
        np.testing.assert_array_equal(dx, max_pool_backward_naive(np.ones_like(out), x, size, stride))


@pytest.mark.parametrize("size,stride", [(2, 2), (3, 2)])
def test_max_pool_gradient_check(size, stride, rng):
    params = {"x": rng.permutation(2 * 7 * 7 * 2).reshape(2, 7, 7, 2) / 10.0}  # distinct values: no ties
    if size == 2:
        params["x"] = params["x"][:, :6, :6]

    def grads(G):
        return {"x": conv.max_pool_backward(G, conv.max_pool_forward(params["x"], size, stride)[1])[0]}

    check_linear_gradients(lambda q: conv.max_pool_forward(q["x"], size, stride)[0], params, grads)


@pytest.mark.parametrize("relu", [False, True])
def test_spatial_batchnorm_matches_naive_and_gradient_check(relu, rng):
    x = rng.standard_normal((3, 4, 5, 3)) * 2 + 1
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = np.zeros(3), np.ones(3)
    out, cache = conv.spatial_batchnorm_forward(x, gamma, beta, rm, rv, "train", relu=relu)
    ref, mean, var = spatial_batchnorm_train_naive(x, gamma, beta)
    np.testing.assert_allclose(out, np.maximum(ref, 0) if relu else ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * var, rtol=1e-12)
    test_out, _ = conv.spatial_batchnorm_forward(x, gamma, beta, mean, var, "test", relu=relu)
    np.testing.assert_allclose(test_out, out, rtol=1e-10, atol=1e-12)  # running stats = batch stats

    params = {"x": x, "gamma": gamma, "beta": beta}

    def fwd(q):
        return conv.spatial_batchnorm_forward(q["x"], q["gamma"], q["beta"], np.zeros(3), np.ones(3), "train",
                                              relu=relu)[0]

    def grads(G):
        dx, g = conv.spatial_batchnorm_backward(G, conv.spatial_batchnorm_forward(
            x, gamma, beta, np.zeros(3), np.ones(3), "train", relu=relu)[1])
        return {"x": dx, **g}

    check_linear_gradients(fwd, params, grads)


def test_spatial_batchnorm_float32_statistics_are_accurate(rng):
    # A large offset is where a naive one-pass sum of squares in float32 loses every digit.
    x = (rng.standard_normal((8, 16, 16, 4)) + 1000).astype(np.float32)
    out, _ = conv.spatial_batchnorm_forward(x, np.ones(4, np.float32), np.zeros(4, np.float32),
                                            np.zeros(4, np.float32), np.ones(4, np.float32), "train")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(-1, 4).mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(out.reshape(-1, 4).std(0), 1, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_bn_relu_pool_matches_the_three_layers(dtype, rng):
    """The fused layer against the naive loops, and against batch norm + ReLU + pool in sequence: the
    same outputs, running statistics and winners; the same gradients up to the sums' order."""
    x = (rng.standard_normal((3, 6, 4, 5)) * 2 + 0.5).astype(dtype)
    gamma, beta = rng.standard_normal(5).astype(dtype), rng.standard_normal(5).astype(dtype)
    stats = [(np.zeros(5, dtype), np.ones(5, dtype)) for _ in range(2)]
    out, cache = conv.bn_relu_pool_forward(x, gamma, beta, *stats[0], "train")
    ref, mean, var = bn_relu_pool_train_naive(x, gamma, beta)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out, ref, **tol)
    a, c_bn = conv.spatial_batchnorm_forward(x, gamma, beta, *stats[1], "train", relu=True)
    pooled, c_pool = conv.max_pool_forward(a, 2)
    np.testing.assert_array_equal(out, pooled)
    np.testing.assert_array_equal(cache[1], c_pool[1])
    for s0, s1 in zip(*stats):
        np.testing.assert_array_equal(s0, s1)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, g = conv.bn_relu_pool_backward(dout, cache)
    dx_ref, g_ref = conv.spatial_batchnorm_backward(conv.max_pool_backward(dout, c_pool)[0], c_bn)
    assert dx.dtype == dtype and g["gamma"].dtype == dtype
    np.testing.assert_allclose(dx, dx_ref, **tol)
    for k in ("gamma", "beta"):
        np.testing.assert_allclose(g[k], g_ref[k], **tol)
    test_out, _ = conv.bn_relu_pool_forward(x, gamma, beta, *stats[0], "test")
    np.testing.assert_array_equal(test_out, conv.max_pool_forward(
        conv.spatial_batchnorm_forward(x, gamma, beta, *stats[0], "test", relu=True)[0], 2)[0])


def test_fused_bn_relu_pool_gradient_check(rng):
    x = rng.permutation(2 * 4 * 6 * 3).reshape(2, 4, 6, 3) / 10.0 - 1.5  # distinct values: no ties
    check_bn_layer_gradients(conv.bn_relu_pool_forward, conv.bn_relu_pool_backward, x, rng)
    assert conv.fuses_bn_relu_pool((2, 4, 6, 3), 2) and not conv.fuses_bn_relu_pool((2, 5, 6, 3), 2)
    assert not conv.fuses_bn_relu_pool((2, 6, 6, 3), 3)


@pytest.mark.parametrize("C", [32, 37])
def test_fused_bn_relu_pool_wide_channels(C, rng):
    """Channel counts that fill whole vectors (32) and leave a remainder (37): the fused layer's outputs
    and winners equal the three layers', its gradients match theirs, and the winners' x it keeps for the
    backward sums is x at the winning element."""
    x = (rng.standard_normal((3, 4, 6, C)) * 2 + 0.5).astype(np.float32)
    gamma, beta = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    out, cache = conv.bn_relu_pool_forward(x, gamma, beta, rm.copy(), rv.copy(), "train")
    a, c_bn = conv.spatial_batchnorm_forward(x, gamma, beta, rm.copy(), rv.copy(), "train", relu=True)
    pooled, c_pool = conv.max_pool_forward(a, 2)
    np.testing.assert_array_equal(out, pooled)
    arg, xw = cache[1], cache[2][4]
    windows = x.reshape(3, 2, 2, 3, 2, C).transpose(0, 1, 3, 2, 4, 5).reshape(3, 2, 3, 4, C)
    np.testing.assert_array_equal(xw, np.take_along_axis(windows, arg[..., None, :].astype(np.intp), 3)[..., 0, :])
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx, g = conv.bn_relu_pool_backward(dout, cache)
    dx_ref, g_ref = conv.spatial_batchnorm_backward(conv.max_pool_backward(dout, c_pool)[0], c_bn)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
    for k in ("gamma", "beta"):
        np.testing.assert_allclose(g[k], g_ref[k], rtol=1e-5, atol=1e-5)


def test_fused_bn_relu_pool_backward_needs_the_training_pass():
    x = np.random.default_rng(0).standard_normal((1, 2, 2, 3))
    out, cache = conv.bn_relu_pool_forward(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), "test")
    with pytest.raises(UsageError, match="training"):
        conv.bn_relu_pool_backward(np.ones(out.shape), cache)


def test_fused_bn_relu_pool_ties_and_bad_input():
    x = np.zeros((1, 4, 4, 2))  # every window ties at 0: the first element wins, no gradient passes the ReLU
    out, cache = conv.bn_relu_pool_forward(x, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2), "train")
    assert not out.any() and not cache[1].any()
    with pytest.raises(UsageError, match="even"):
        conv.bn_relu_pool_forward(np.zeros((1, 3, 4, 2)), np.ones(2), np.zeros(2), np.zeros(2), np.ones(2), "train")
    with pytest.raises(UsageError, match="does not match"):
        conv.bn_relu_pool_backward(np.zeros((1, 1, 2, 2)), cache)


def test_layers_match_naive_without_jit():
    """Pooling, batch norm and im2col kernels' Python source (NUMBA_DISABLE_JIT=1) on tiny inputs."""
    code = textwrap.dedent("""
        import numpy as np
        from imgclf.nn import conv
        from reference import conv_forward_naive, conv_backward_naive, max_pool_forward_naive, \\
            max_pool_backward_naive, spatial_batchnorm_train_naive, bn_relu_pool_train_naive
        r = np.random.default_rng(0)
        x, w, b = r.standard_normal((2, 4, 4, 2)), r.standard_normal((3, 3, 2, 3)), r.standard_normal(3)
        out, cache = conv.conv_forward(x, w, b, 1, 1)
        assert np.allclose(out, conv_forward_naive(x, w, b, 1, 1))
        g = r.standard_normal(out.shape)
        dx, grads = conv.conv_backward(g, cache)
        ndx, ndw, ndb = conv_backward_naive(g, x, w, 1, 1)
        assert np.allclose(dx, ndx) and np.allclose(grads["w"], ndw) and np.allclose(grads["b"], ndb)
        for size, stride in ((2, 2), (3, 1)):
            p, c = conv.max_pool_forward(x, size, stride)
            assert np.array_equal(p, max_pool_forward_naive(x, size, stride))
            g = r.standard_normal(p.shape)
            assert np.array_equal(conv.max_pool_backward(g, c)[0], max_pool_backward_naive(g, x, size, stride))
        for relu in (False, True):
            o, c = conv.spatial_batchnorm_forward(x, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2), "train", relu=relu)
            ref = spatial_batchnorm_train_naive(x, np.ones(2), np.zeros(2))[0]
            assert np.allclose(o, np.maximum(ref, 0) if relu else ref)
            g = r.standard_normal(o.shape)
            dx, gr = conv.spatial_batchnorm_backward(g, c)
            h = 1e-6
            xp = x.copy(); xp[1, 2, 3, 1] += h
            xm = x.copy(); xm[1, 2, 3, 1] -= h
            f = lambda z: np.sum(g * conv.spatial_batchnorm_forward(z, np.ones(2), np.zeros(2), np.zeros(2),
                                                                    np.ones(2), "train", relu=relu)[0])
            assert abs((f(xp) - f(xm)) / (2 * h) - dx[1, 2, 3, 1]) < 1e-6
        gamma, beta = r.standard_normal(2), r.standard_normal(2)
        p, c = conv.bn_relu_pool_forward(x, gamma, beta, np.zeros(2), np.ones(2), "train")
        assert np.allclose(p, bn_relu_pool_train_naive(x, gamma, beta)[0])
        g = r.standard_normal(p.shape)
        dx, gr = conv.bn_relu_pool_backward(g, c)
        o, cb = conv.spatial_batchnorm_forward(x, gamma, beta, np.zeros(2), np.ones(2), "train", relu=True)
        dx_ref, gr_ref = conv.spatial_batchnorm_backward(max_pool_backward_naive(g, o, 2), cb)
        assert np.allclose(dx, dx_ref) and np.allclose(gr["gamma"], gr_ref["gamma"])
        assert np.allclose(gr["beta"], gr_ref["beta"])
        print("ok")
    """)
    assert_runs_without_jit(code)


@pytest.mark.parametrize("fs,pad,dilation", [(3, 1, 1), (5, 2, 1), (1, 0, 1), (3, 2, 2)])
def test_one_pixel_maps_take_the_single_tap_path(fs, pad, dilation):
    """Feature rows read as 1x1 images: the convolution is the product with the one tap that meets the
    pixel (no im2col); forward and backward against the naive reference."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 1, 1, 4))
    w = rng.standard_normal((fs, fs, 4, 5))
    b = rng.standard_normal(5)
    out, cache = conv.conv_forward(x, w, b, 1, pad, dilation)
    assert cache[-1] == pad // dilation
    np.testing.assert_allclose(out, conv_forward_naive(x, w, b, 1, pad, dilation), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, grads = conv.conv_backward(dout, cache)
    ref_dx, ref_dw, ref_db = conv_backward_naive(dout, x, w, 1, pad, dilation)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["w"], ref_dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["b"], ref_db, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", ["relu", "gelu"])
def test_fused_bn_pool_backward_over_its_input(layer, rng):
    """overwrite_input=True (the convnet's training step) writes dx over the cached input: the same
    numbers as a separate dx, and the input array is the one returned."""
    forward, backward = {"relu": (conv.bn_relu_pool_forward, conv.bn_relu_pool_backward),
                         "gelu": (conv.bn_gelu_pool_forward, conv.bn_gelu_pool_backward)}[layer]
    x = (rng.standard_normal((2, 5, 6, 33)) * 2 + 0.5).astype(np.float32)
    if layer == "relu":
        x = np.ascontiguousarray(x[:, :4])  # the ReLU fusion pools even maps only
    C = x.shape[3]
    gamma, beta = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    out, cache = forward(x, gamma, beta, np.zeros(C, np.float32), np.ones(C, np.float32), "train")
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx, g = backward(dout, cache)
    x_kept = cache[0].copy()
    dx2, g2 = backward(dout, cache, overwrite_input=True)
    assert dx2 is cache[0] and not np.shares_memory(dx, dx2)
    np.testing.assert_array_equal(dx2, dx)
    assert not np.array_equal(x_kept, cache[0])
    for k in ("gamma", "beta"):
        np.testing.assert_array_equal(g2[k], g[k])


def test_fused_bn_pool_backward_over_its_input_without_jit():
    """overwrite_input=True through the kernels' Python source (NUMBA_DISABLE_JIT=1), both layers: the
    in-place dx kernel gives the out-of-place numbers."""
    code = textwrap.dedent("""
        import numpy as np
        from imgclf.nn import conv
        r = np.random.default_rng(0)
        for fwd, bwd, shape in ((conv.bn_relu_pool_forward, conv.bn_relu_pool_backward, (2, 4, 6, 3)),
                                (conv.bn_gelu_pool_forward, conv.bn_gelu_pool_backward, (2, 5, 5, 3))):
            x, g, be = r.standard_normal(shape) * 2 + 0.5, r.standard_normal(3), r.standard_normal(3)
            p, c = fwd(x, g, be, np.zeros(3), np.ones(3), "train")
            G = r.standard_normal(p.shape)
            dx, gr = bwd(G, c)
            dx2, gr2 = bwd(G, c, overwrite_input=True)
            assert dx2 is c[0] and not np.shares_memory(dx, dx2)
            assert np.array_equal(dx2, dx)
            assert all(np.array_equal(gr2[k], gr[k]) for k in ("gamma", "beta"))
        print("ok")
    """)
    assert_runs_without_jit(code)
