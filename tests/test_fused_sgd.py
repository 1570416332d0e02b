"""Plain SGD folded into the weight gradient's GEMM (issue 18): the BLAS call, the layer, the Solver's use of
it, same weights as the unfused step to float32 rounding, bit-exact resume."""

import sys
from pathlib import Path

import numpy as np
import pytest

from imgclf.errors import UsageError
from imgclf.nn import layers
from imgclf.nn.net import NeuralNet
from imgclf.nn.optim import sgd as sgd_rule

sys.path.insert(0, str(Path(__file__).parent))
from conftest import assert_runs_without_jit, assert_same_state, full_and_resumed, make_images  # noqa: E402


def test_gemm_tn_into_is_alpha_at_b_plus_beta_c_in_place():
    from imgclf.blas import gemm_tn_into

    r = np.random.default_rng(0)
    for dtype, tol in [(np.float32, 1e-5), (np.float64, 1e-13)]:
        A, B = r.standard_normal((9, 7)).astype(dtype), r.standard_normal((9, 5)).astype(dtype)
        C = r.standard_normal((7, 5)).astype(dtype)
        ref = -0.3 * (A.T.astype(np.float64) @ B) + 0.9 * C
        if not gemm_tn_into(A, B, C, -0.3, 0.9):
            pytest.skip("no OpenBLAS to call directly: callers fall back to numpy")
        np.testing.assert_allclose(C, ref, rtol=tol, atol=tol)
    C = np.ones((7, 5), np.float32)
    A32, B32 = A.astype(np.float32), B.astype(np.float32)
    for a, b, c in [(A32.T.copy().T, B32, C), (A32, B32[:, ::2], C[:, :3]), (A32, B32, np.ones((5, 7), np.float32)),
                    (A32, B.astype(np.float64), C), (A32[:8], B32, C)]:
        assert not gemm_tn_into(a, b, c, 1.0, 0.0)
    assert np.all(C == 1.0)  # refused: nothing written


def _unaligned(shape, fill):
    """A C-contiguous, writeable float32 array at an odd byte offset (numpy never hands such to BLAS)."""
    size = int(np.prod(shape))
    a = np.frombuffer(np.zeros(4 * size + 1, np.uint8), np.float32, count=size, offset=1).reshape(shape)
    assert a.flags.c_contiguous and a.flags.writeable and not a.flags.aligned
    a[...] = fill
    return a


def test_gemm_tn_into_refuses_unaligned_and_overlapping_arrays():
    from imgclf.blas import gemm_tn_into

    r = np.random.default_rng(1)
    A, B = r.standard_normal((9, 7)).astype(np.float32), r.standard_normal((9, 5)).astype(np.float32)
    C = np.ones((7, 5), np.float32)
    flat = np.ones(9 * 7, np.float32)  # C inside A's memory
    B_big = r.standard_normal((9, 5)).astype(np.float32)  # C = its first 7 rows
    cases = [(_unaligned((9, 7), A), B, C), (A, _unaligned((9, 5), B), C), (A, B, _unaligned((7, 5), 1.0)),
             (flat.reshape(9, 7), B, flat[14:49].reshape(7, 5)), (A, B_big, B_big[:7])]
    for a, b, c in cases:
        before = (a.copy(), b.copy(), c.copy())
        assert not gemm_tn_into(a, b, c, -0.5, 0.5)
        for x, x0 in zip((a, b, c), before):  # refused: nothing written
            np.testing.assert_array_equal(x, x0)


def test_gemm_tn_into_refuses_dimensions_a_32_bit_blas_cannot_take(monkeypatch):
    import ctypes

    from imgclf import blas

    assert blas._fits(ctypes.c_int32, 0, 2**31 - 1) and not blas._fits(ctypes.c_int32, 5, 2**31)
    assert blas._fits(ctypes.c_int64, 2**31, 2**40)
    calls = []
    for integer in (ctypes.c_int32, ctypes.c_int64):
        monkeypatch.setattr(blas, "_cblas", lambda routine, char, i=integer: (lambda *args: calls.append(args), i))
        for k, m, n in [(2**31, 0, 0), (0, 2**31, 0), (0, 0, 2**31)]:  # all zero-size: no memory, checks still run
            A, B, C = (np.empty(shape, np.float32) for shape in [(k, m), (k, n), (m, n)])
            assert blas.gemm_tn_into(A, B, C, 1.0, 0.0) == (integer is ctypes.c_int64)
    assert calls == []  # nothing reached the BLAS (and the 64-bit case had nothing to do)


def test_sum_sq_is_the_optimiser_steps_sum_exactly():
    from imgclf.kernels.elementwise import sum_sq

    r = np.random.default_rng(1)
    for n in (1, 2047, 2048, 5000, 70001):
        for dtype in (np.float32, np.float64):
            w = r.standard_normal(n).astype(dtype)
            config = {"learning_rate": 1e-3, "l2": 2e-4}
            total = sum_sq(w)
            sgd_rule(w.copy(), np.zeros_like(w), config)
            assert total == config["sum_sq"]  # the same number: the reported loss does not change
            np.testing.assert_allclose(total, np.sum(w.astype(np.float64) ** 2), rtol=1e-12)
    with pytest.raises(UsageError):
        sum_sq(np.ones((4, 4), np.float32).T[:, :2])
    with pytest.raises(UsageError):
        sum_sq(np.ones(4, np.int64))


def test_sum_sq_runs_without_jit():
    assert_runs_without_jit(
        "import numpy as np\n"
        "from imgclf.kernels.elementwise import sum_sq\n"
        "w = np.random.default_rng(0).standard_normal(5000).astype(np.float32)\n"
        "assert abs(sum_sq(w) - float(np.sum(w.astype(np.float64) ** 2))) < 1e-9 * sum_sq(w)\n"
        "print('ok')\n")


@pytest.mark.parametrize("fallback", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_affine_backward_sgd_steps_the_weight_as_the_rule(monkeypatch, fallback, dtype):
    if fallback:  # where BLAS cannot be called directly: the gradient and the optimiser's kernel
        monkeypatch.setattr("imgclf.blas.gemm_tn_into", lambda *a: False)
    r = np.random.default_rng(2)
    x, w = r.standard_normal((6, 2, 4)).astype(dtype), r.standard_normal((8, 5)).astype(dtype)
    dout = r.standard_normal((6, 5)).astype(dtype)
    dx_ref, g = layers.affine_backward(dout, (x, w, None))
    w_ref = w.copy()
    sgd_rule(w_ref, g["w"], {"learning_rate": 0.05, "l2": 0.1})
    w_live = w.copy()
    dx, g2 = layers.affine_backward(dout, (x, w_live, None), sgd=(0.05, 0.1))
    assert g2["w"] is None
    np.testing.assert_array_equal(dx, dx_ref)  # from the weight before the step
    np.testing.assert_array_equal(g2["b"], g["b"])
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(w_live, w_ref, rtol=tol, atol=tol)
    if fallback:
        np.testing.assert_array_equal(w_live, w_ref)
    for bad in [(-0.1, 0.1), (0.1, -1.0), (np.nan, 0.0), "x", (1.0,)]:
        with pytest.raises(UsageError):
            layers.affine_backward(dout, (x, w.copy(), None), sgd=bad)


def _data(n=240, seed=0):
    X, y = make_images(n, n_classes=4, shape=(4, 4, 3), seed=seed)
    return ((X.astype(np.float32) - 100) / 60), y


PLAIN = dict(hidden=(16, 12), dropout=0.2, augment="flip", epochs=3, batch_size=40, random_state=3, optim="sgd",
             lr=5e-2, reg=1e-3, lr_schedule="step:0.7")


def _unfused(monkeypatch):
    monkeypatch.setattr(NeuralNet, "sgd_fusable", lambda self: ())


@pytest.mark.parametrize("extra", [{}, {"batchnorm": True}, {"hidden": ()}, {"reg": 0.0},
                                   {"lr_schedule": "warmup:0.2:0"}])  # lr 0 at the first step
def test_fused_and_unfused_sgd_give_the_same_weights(monkeypatch, extra):
    X, y = _data()
    seen = []
    original = NeuralNet.loss_and_grads

    def spy(self, *a, **kw):
        seen.append(sorted(kw.get("sgd") or ()))
        return original(self, *a, **kw)

    monkeypatch.setattr(NeuralNet, "loss_and_grads", spy)
    fused = NeuralNet(**{**PLAIN, **extra}).fit(X, y)
    n_layers = len(extra.get("hidden", PLAIN["hidden"])) + 1
    assert seen and all(s == [f"W{i}" for i in range(1, n_layers + 1)] for s in seen)
    _unfused(monkeypatch)
    seen.clear()
    plain = NeuralNet(**{**PLAIN, **extra}).fit(X, y)
    assert seen and not any(seen)
    for k in plain.params_:
        np.testing.assert_allclose(fused.params_[k], plain.params_[k], rtol=2e-5, atol=2e-6, err_msg=k)
    np.testing.assert_allclose(fused.result_.loss_history, plain.result_.loss_history, rtol=1e-5)
    assert fused.result_.loss_history[0] == plain.result_.loss_history[0]  # the same penalty sum, the same loss
    ratios = [[r["update_ratio"] for r in m.result_.history] for m in (fused, plain)]
    np.testing.assert_allclose(*ratios, rtol=1e-3)  # the copy before the step sees the weight before it


def test_a_non_finite_loss_leaves_fused_weights_untouched():
    X, y = _data()
    net = NeuralNet(**PLAIN).fit(X, y)
    params = {k: v.copy() for k, v in net.params_.items()}
    Xp = net.prepare_batch(X[:40]).copy()
    Xp[0, 0] = np.inf
    loss, grads = net.loss_and_grads(Xp, np.searchsorted(net.classes_, y[:40]), rng=np.random.default_rng(0), l2=False,
                                     sgd={k: (0.1, 0.0) for k in net.sgd_fusable()})
    assert not np.isfinite(loss)
    for k, v in params.items():
        np.testing.assert_array_equal(net.params_[k], v, err_msg=k)


@pytest.mark.parametrize("extra", [{"optim": "momentum"}, {"ema": 0.9}, {"lookahead": "2:0.5"},
                                   {"bias_lr_scale": 2.0}])
def test_fusion_is_plain_sgd_only(monkeypatch, extra):
    X, y = _data()
    seen = []
    original = NeuralNet.loss_and_grads

    def spy(self, *a, **kw):
        seen.append(kw.get("sgd"))
        return original(self, *a, **kw)

    monkeypatch.setattr(NeuralNet, "loss_and_grads", spy)
    NeuralNet(**{**PLAIN, "epochs": 1, **extra}).fit(X, y)
    if "bias_lr_scale" in extra:  # the weights still fuse; the biases step at their own rate, unfused
        assert all(sorted(s) == ["W1", "W2", "W3"] for s in seen)
    else:
        assert seen and not any(seen)


def test_loss_and_grads_refuses_sgd_it_cannot_take():
    X, y = _data(40)
    net = NeuralNet(**PLAIN).initialize(48, 4, np.random.default_rng(0))
    Xp = net.prepare_batch(X)
    with pytest.raises(UsageError):
        net.loss_and_grads(Xp, y, rng=np.random.default_rng(0), l2=True, sgd={"W1": (0.1, 0.0)})
    with pytest.raises(UsageError):
        net.loss_and_grads(Xp, y, rng=np.random.default_rng(0), l2=False, sgd={"b1": (0.1, 0.0)})
    # without sgd every gradient is returned (gradient checks)
    _, grads = net.loss_and_grads(Xp, y, rng=np.random.default_rng(0))
    assert set(grads) == set(net.params_)


@pytest.mark.parametrize("stop_at", [8, 6])  # mid-epoch 2 and at epoch 1's end (6 steps per epoch)
def test_fused_sgd_resume_is_bit_exact(tmp_path, stop_at):
    data = _data() + _data(40, seed=5)
    full, _, resumed = full_and_resumed(lambda: NeuralNet(**PLAIN), data, tmp_path, stop_at)
    assert_same_state(full, resumed)
    assert_same_state(full, NeuralNet(**PLAIN).fit(*data))  # same seed, same numbers
