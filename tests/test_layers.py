"""Layers and fused kernels: values against the naive references, gradients against centered differences."""

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_runs_without_jit
from imgclf.errors import UsageError
from imgclf.gradcheck import check_gradients
from imgclf.kernels import elementwise as ew
from imgclf.nn import layers

sys.path.insert(0, str(Path(__file__).parent))
import reference  # noqa: E402

ACTS = [("relu", 0.0), ("leaky_relu", 0.1), ("tanh", 0.0), ("sigmoid", 0.0), ("elu", 1.0), ("identity", 0.0)]


def _away_from_kinks(rng, shape, dtype=np.float64):
    """Values at least 0.05 away from 0, so ReLU-like kinks never sit within the difference step."""
    z = rng.standard_normal(shape)
    return (z + np.sign(z) * 0.05).astype(dtype)


def _check(f, params, grads, rng):
    report = check_gradients(f, params, grads, n_checks=12, rng=rng)
    assert report.max_rel_error < 1e-6, report.as_dict()


@pytest.mark.parametrize("name,alpha", ACTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_act_kernels_match_reference(name, alpha, dtype, rng):
    z = rng.standard_normal((7, 13)).astype(dtype)
    b = rng.standard_normal(13).astype(dtype)
    u = rng.random((7, 13)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for uu, keep in ((None, 1.0), (u, 0.6)):
        a_ref, out_ref = reference.bias_act_dropout_naive(z, b, name, alpha, uu, keep)
        a, out = ew.bias_act_forward(z.copy(), b, name, alpha, uu, keep)
        np.testing.assert_allclose(a, a_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(out, out_ref, rtol=tol, atol=tol)
        dout = rng.standard_normal(z.shape).astype(dtype)
        mask = np.ones_like(a_ref) if uu is None else (uu < keep) / keep
        dz_ref = dout * mask * reference.activation_grad_naive(z.astype(np.float64) + b, name, alpha)
        np.testing.assert_allclose(ew.act_backward(dout, a, name, alpha, uu, keep), dz_ref, rtol=tol, atol=tol)


def test_add_l2_kernel(rng):
    w = rng.standard_normal((30, 7)).astype(np.float32)
    g = rng.standard_normal((30, 7)).astype(np.float32)
    g0 = g.copy()
    penalty = ew.add_l2(g, w, 0.3)
    assert penalty == pytest.approx(0.3 * sum(float(v) ** 2 for v in w.ravel()), rel=1e-6)
    np.testing.assert_allclose(g, g0 + 0.6 * w, rtol=1e-6)
    with pytest.raises(UsageError, match="same shape"):
        ew.add_l2(g, w[:, :3], 0.1)


def test_kernels_validate_their_inputs():
    z = np.zeros((3, 4), np.float32)
    with pytest.raises(UsageError, match="bias must have shape"):
        ew.bias_act_forward(z, np.zeros(3, np.float32))
    with pytest.raises(UsageError, match="unknown activation"):
        ew.bias_act_forward(z, np.zeros(4, np.float32), "swish")
    with pytest.raises(UsageError, match="C-contiguous"):
        ew.bias_act_forward(z.T, np.zeros(3, np.float32))


def test_kernels_without_jit_match_reference():
    """The same comparisons with NUMBA_DISABLE_JIT=1: the Python bodies of the kernels are what is compiled."""
    code = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
import reference
from imgclf.kernels import elementwise as ew
from imgclf.kernels.augment import flip_crop
from imgclf.nn import optim
rng = np.random.default_rng(3)
for name, alpha in [("relu", 0.0), ("leaky_relu", 0.1), ("tanh", 0.0), ("sigmoid", 0.0), ("elu", 1.0)]:
    z = rng.standard_normal((4, 5)); b = rng.standard_normal(5); u = rng.random((4, 5))
    a_ref, out_ref = reference.bias_act_dropout_naive(z, b, name, alpha, u, 0.5)
    a, out = ew.bias_act_forward(z.copy(), b, name, alpha, u, 0.5)
    assert np.allclose(a, a_ref) and np.allclose(out, out_ref), name
    d = rng.standard_normal(z.shape)
    ref = d * (u < 0.5) / 0.5 * reference.activation_grad_naive(z + b, name, alpha)
    assert np.allclose(ew.act_backward(d, a, name, alpha, u, 0.5), ref), name
X = rng.integers(0, 255, (3, 5, 4, 2)).astype(np.uint8)
flip = np.array([True, False, True]); dy = np.array([0, 2, 4]); dx = np.array([4, 1, 0])
assert np.array_equal(flip_crop(X, flip, dy, dx, 2), reference.flip_crop_naive(X, flip, dy, dx, 2))
assert np.array_equal(flip_crop(X, flip, dy, dx, 2, True), reference.flip_crop_naive(X, flip, dy, dx, 2, True))
for rule in optim.RULES:
    w = rng.standard_normal((3, 2)); g = rng.standard_normal((3, 2)); cfg = optim.make_config(rule, 0.1)
    h = {{k: v for k, v in cfg.items() if k != "learning_rate"}}
    ref, _ = reference.optim_step_naive(rule, w, g, {{}}, 0.1, **h)
    optim.RULES[rule](w, g, cfg)
    assert np.allclose(w, ref), rule
w, g = rng.standard_normal(5000), rng.standard_normal(5000)  # the threads' Adam kernel: the serial one's step
w2, a, b = w.copy(), np.zeros(w.size), np.zeros(w.size)
q = ew._step(ew.ADAM, w, g, a.copy(), b.copy(), 0.1, 0.9, 0.999, 1e-8, 0.01)
assert ew._step_parallel(ew.ADAM, w2, g, a, b, 0.1, 0.9, 0.999, 1e-8, 0.01) == q and np.array_equal(w, w2)
g = rng.standard_normal((3, 4)); w = rng.standard_normal((3, 4)); g0 = g.copy()
assert np.isclose(ew.add_l2(g, w, 0.2), 0.2 * sum(v * v for v in w.ravel())) and np.allclose(g, g0 + 0.4 * w)
print("ok")
""".format(tests=str(Path(__file__).parent))
    assert_runs_without_jit(code)


def test_affine_values_and_gradients(rng):
    x = rng.standard_normal((5, 2, 3))
    w, b = rng.standard_normal((6, 4)), rng.standard_normal(4)
    out, cache = layers.affine_forward(x, w, b)
    np.testing.assert_allclose(out, x.reshape(5, 6) @ w + b)
    dout = rng.standard_normal(out.shape)
    dx, g = layers.affine_backward(dout, cache)
    assert dx.shape == x.shape
    f = lambda p: float(np.sum(layers.affine_forward(p["x"], p["w"], p["b"])[0] * dout))  # noqa: E731
    _check(f, {"x": x, "w": w, "b": b}, {"x": dx, "w": g["w"], "b": g["b"]}, rng)
    assert layers.affine_backward(dout, cache, need_dx=False)[0] is None


@pytest.mark.parametrize("name,alpha", ACTS[:5])
def test_activation_gradients(name, alpha, rng):
    x = _away_from_kinks(rng, (4, 6))
    out, cache = layers.activation_forward(x, name, alpha)
    np.testing.assert_allclose(out, reference.activation_naive(x, name, alpha), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(x.shape)
    dx, _ = layers.activation_backward(dout, cache)
    f = lambda p: float(np.sum(layers.activation_forward(p["x"], name, alpha)[0] * dout))  # noqa: E731
    _check(f, {"x": x}, {"x": dx}, rng)


def test_named_activation_layers():
    x = np.array([[-2.0, 3.0]])
    assert layers.relu_forward(x)[0].tolist() == [[0.0, 3.0]]
    assert layers.leaky_relu_forward(x, 0.5)[0].tolist() == [[-1.0, 3.0]]
    assert layers.elu_forward(x)[0][0, 1] == 3.0
    np.testing.assert_allclose(layers.tanh_forward(x)[0], np.tanh(x))
    np.testing.assert_allclose(layers.sigmoid_forward(x)[0], 1 / (1 + np.exp(-x)))


def test_parse_activation():
    assert layers.parse_activation("leaky_relu:0.2") == ("leaky_relu", 0.2)
    assert layers.parse_activation("elu") == ("elu", 1.0)
    for bad in ("swish", "relu:1", "elu:x", "leaky_relu:-1"):
        with pytest.raises(UsageError):
            layers.parse_activation(bad)


@pytest.mark.parametrize("name,alpha", [("relu", 0.0), ("tanh", 0.0), ("leaky_relu", 0.05)])
def test_fused_affine_activation_dropout_gradients(name, alpha, rng):
    x = rng.standard_normal((6, 5))
    w, b = rng.standard_normal((5, 7)) * 0.5, rng.standard_normal(7) * 0.1

    def fwd(p, seed=7):
        return layers.affine_act_forward(p["x"], p["w"], p["b"], name, alpha, 0.3, "train", np.random.default_rng(seed))

    out, cache = fwd({"x": x, "w": w, "b": b})
    dout = rng.standard_normal(out.shape)
    dx, g = layers.affine_act_backward(dout, cache)
    f = lambda p: float(np.sum(fwd(p)[0] * dout))  # noqa: E731
    report = check_gradients(f, {"x": x, "w": w, "b": b}, {"x": dx, "w": g["w"], "b": g["b"]}, n_checks=12, rng=rng)
    assert report.ok and report.max_rel_error < 1e-5, report.as_dict()
    # Test mode: no dropout, deterministic.
    t1, _ = layers.affine_act_forward(x, w, b, name, alpha, 0.3, "test")
    np.testing.assert_allclose(t1, reference.activation_naive(x @ w + b, name, alpha), rtol=1e-12, atol=1e-12)


def test_dropout_is_inverted_and_identity_at_test(rng):
    x = np.ones((400, 50))
    out, mask = layers.dropout_forward(x, 0.3, "train", np.random.default_rng(0))
    assert abs(out.mean() - 1.0) < 0.02  # expectation preserved
    assert set(np.unique(out)) == {0.0, 1 / 0.7}
    assert abs((out == 0).mean() - 0.3) < 0.01
    assert layers.dropout_forward(x, 0.3, "test", None)[0] is x
    dout = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(layers.dropout_backward(dout, mask)[0], dout * mask)
    with pytest.raises(UsageError, match="dropout probability"):
        layers.dropout_forward(x, 1.0, "train", rng)


def test_batchnorm_values_running_stats_and_gradients(rng):
    x = rng.standard_normal((8, 5)) * 3 + 2
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    rm, rv = np.zeros(5), np.ones(5)
    out, cache = layers.batchnorm_forward(x, gamma, beta, rm, rv, "train")
    np.testing.assert_allclose(out, reference.batchnorm_train_naive(x, gamma, beta), rtol=1e-10)
    np.testing.assert_allclose(rm, 0.1 * x.mean(0))
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(0))
    test_out, _ = layers.batchnorm_forward(x, gamma, beta, rm, rv, "test")
    np.testing.assert_allclose(test_out, (x - rm) / np.sqrt(rv + 1e-5) * gamma + beta)
    dout = rng.standard_normal(x.shape)
    dx, g = layers.batchnorm_backward(dout, cache)

    def f(p):
        return float(np.sum(layers.batchnorm_forward(p["x"], p["gamma"], p["beta"], np.zeros(5), np.ones(5), "train")[0] * dout))

    _check(f, {"x": x, "gamma": gamma, "beta": beta}, {"x": dx, **g}, rng)


def test_flip_crop_kernel_matches_reference(rng):
    from imgclf.kernels.augment import flip_crop

    X = rng.integers(0, 256, (6, 7, 5, 3)).astype(np.uint8)
    flip = rng.random(6) < 0.5
    dy, dx = rng.integers(0, 7, 6), rng.integers(0, 7, 6)
    np.testing.assert_array_equal(flip_crop(X, flip, dy, dx, 3), reference.flip_crop_naive(X, flip, dy, dx, 3))
    with pytest.raises(UsageError, match="offsets"):
        flip_crop(X, flip, dy + 10, dx, 3)
    with pytest.raises(UsageError, match="image batch"):
        flip_crop(X.reshape(6, -1), flip, dy, dx, 3)


def test_reflect_crop_kernel_matches_numpy_reflect_padding(rng):
    """crop:P:reflect: every offset of a reflect-padded batch (numpy's "reflect", PyTorch's too), flipped
    or not, for pads up to the side less one; float images keep their values exactly."""
    from imgclf.kernels.augment import flip_crop

    X = rng.standard_normal((4, 5, 4, 2)).astype(np.float32)
    for pad in (0, 1, 2, 3):
        for dyv in range(2 * pad + 1):
            for dxv in range(2 * pad + 1):
                dy, dx = np.full(4, dyv), np.full(4, dxv)
                flip = np.array([True, False, True, False])
                np.testing.assert_array_equal(flip_crop(X, flip, dy, dx, pad, reflect=True),
                                              reference.flip_crop_naive(X, flip, dy, dx, pad, reflect=True))
    # A shifted image shows mirrored pixels where the zero padding shows zeros.
    one = np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1)
    zero = flip_crop(one, np.array([False]), np.array([0]), np.array([0]), 1)
    refl = flip_crop(one, np.array([False]), np.array([0]), np.array([0]), 1, reflect=True)
    assert zero[0, 0, 0, 0] == 0 and refl[0, 0, 0, 0] == one[0, 1, 1, 0] and (refl > 0).all()
    with pytest.raises(UsageError, match="reflect padding of 4"):
        flip_crop(X, np.zeros(4, bool), np.zeros(4, int), np.zeros(4, int), 4, reflect=True)


def test_reflect_crop_augmentation_spec_and_stream():
    """crop:P:reflect parses, round-trips through `spec`, draws the Generator exactly as crop:P does (the
    same offsets, another padding) and is refused for pads the images cannot reflect."""
    from imgclf.nn import augment

    a = augment.parse("flip:alt,crop:2:reflect")
    assert (a.flip, a.alternate, a.crop, a.reflect) == (True, True, 2, True)
    assert a.spec == "flip:alt,crop:2:reflect" and augment.parse(a.spec) == a
    assert augment.parse("crop:2").reflect is False and augment.parse("crop:2").spec == "crop:2"
    X = np.random.default_rng(0).standard_normal((8, 6, 6, 3)).astype(np.float32)
    zero, refl = augment.parse("flip,crop:2"), augment.parse("flip,crop:2:reflect")
    r1, r2 = np.random.default_rng(4), np.random.default_rng(4)
    out_z, out_r = zero(X, r1), refl(X, r2)
    assert r1.bit_generator.state == r2.bit_generator.state
    inside = out_z != 0  # where the zero padding shows the image, the reflect padding shows the same pixel
    np.testing.assert_array_equal(out_r[inside], out_z[inside])
    assert not np.array_equal(out_r, out_z)
    for bad in ("crop:2:zero", "crop:x:reflect", "crop:-1:reflect", "crop:2:reflect:1"):
        with pytest.raises(UsageError) as exc:
            augment.parse(bad)
        assert exc.value.param == "augment"
    with pytest.raises(UsageError, match="reflect") as exc:
        augment.parse("crop:6:reflect")(X, np.random.default_rng(0))
    assert exc.value.param == "augment"


def test_augment_parse_and_determinism():
    from imgclf.nn import augment

    assert augment.parse(None) is None and augment.parse("none") is None
    a = augment.parse("flip,crop:4")
    assert (a.flip, a.crop, a.spec) == (True, 4, "flip,crop:4")
    assert augment.parse("crop").crop == 4
    for bad in ("rotate", "crop:x", "crop:-1", "flip:2"):
        with pytest.raises(UsageError):
            augment.parse(bad)
    X = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1)
    np.testing.assert_array_equal(a(X, np.random.default_rng(5)), a(X, np.random.default_rng(5)))
    flipped = augment.parse("flip")(X, np.random.default_rng(1))
    for k in range(2):
        assert np.array_equal(flipped[k], X[k]) or np.array_equal(flipped[k], X[k, :, ::-1])
    with pytest.raises(UsageError, match="image data"):
        a(X.reshape(2, -1), np.random.default_rng(0))



def test_alternating_flips_match_the_definition_and_draw_what_flip_draws():
    """flip:alt against the naive epoch-by-epoch definition (tests/reference.py) over 4 epochs with rows
    left over each epoch; the Generator is drawn exactly as by `flip`, and epoch 0 is `flip`'s epoch."""
    from imgclf.nn import augment

    alt, plain = augment.parse("flip:alt"), augment.parse("flip")
    assert (alt.flip, alt.alternate, alt.spec) == (True, True, "flip:alt")
    assert augment.parse("crop:2,flip:alt").spec == "flip:alt,crop:2" and plain.new_state(5) is None
    n, batch = 11, 3
    X = np.arange(n * 2 * 3, dtype=np.float32).reshape(n, 2, 3, 1)  # no image is its own mirror
    rng, twin, order_rng = np.random.default_rng(7), np.random.default_rng(7), np.random.default_rng(1)
    state = alt.new_state(n)
    assert state.dtype == np.bool_ and not state.any()
    batches, coins, got = [], [], []
    for epoch in range(4):
        order = order_rng.permutation(n)
        batches.append([order[b * batch:(b + 1) * batch] for b in range(n // batch)])
        coins.append([])
        got.append([])
        for idx in batches[-1]:
            coins[-1].append(np.random.Generator(_copy_bitgen(rng)).random(len(idx)) < 0.5)  # what it will draw
            out = alt(X[idx], rng, index=idx, epoch=epoch, state=state)
            ref = plain(X[idx], twin)
            assert rng.bit_generator.state == twin.bit_generator.state  # the same numbers drawn
            if epoch == 0:
                np.testing.assert_array_equal(out, ref)
            flags = []
            for k, row in enumerate(idx):
                assert np.array_equal(out[k], X[row]) or np.array_equal(out[k], X[row, :, ::-1])
                flags.append(not np.array_equal(out[k], X[row]))
            got[-1].append(flags)
    assert got == reference.alternating_flips_naive(n, batches, coins)
    # Seen in two consecutive epochs, a row is seen both ways.
    for e in range(1, 4):
        before = {int(r): f for rows, fl in zip(batches[e - 1], got[e - 1]) for r, f in zip(rows, fl)}
        for rows, fl in zip(batches[e], got[e]):
            assert all(f != before[int(r)] for r, f in zip(rows, fl) if int(r) in before)


def _copy_bitgen(rng):
    bg = np.random.PCG64()
    bg.state = rng.bit_generator.state
    return bg


def test_alternating_flips_refusals():
    from imgclf.nn import augment

    alt = augment.parse("flip:alt,crop:1")
    X = np.zeros((2, 4, 4, 1), np.float32)
    for bad in ("flip,flip:alt", "flip:alt,flip", "flip:x"):
        with pytest.raises(UsageError) as exc:
            augment.parse(bad)
        assert exc.value.param == "augment"
    with pytest.raises(UsageError, match="training row") as exc:
        alt(X, np.random.default_rng(0))  # called like a stateless augmentation
    assert exc.value.param == "augment"
    with pytest.raises(UsageError, match="one training row per image"):
        alt(X, np.random.default_rng(0), index=np.array([0, 5]), epoch=1, state=alt.new_state(3))
    with pytest.raises(UsageError, match="epoch"):
        alt(X, np.random.default_rng(0), index=np.array([0, 1]), epoch=-1, state=alt.new_state(3))


def test_init_schemes(rng):
    from imgclf.nn import init

    assert abs(init.weight("he", 2000, 50, rng).std() - np.sqrt(2 / 2000)) < 2e-3
    assert abs(init.weight("xavier", 2000, 50, rng).std() - np.sqrt(1 / 2000)) < 2e-3
    w = init.weight("normal:0.01", 300, 40, rng)
    assert w.dtype == np.float32 and abs(w.std() - 0.01) < 1e-3
    for bad in ("uniform", "normal:-1", "normal:x", "he:2"):
        with pytest.raises(UsageError):
            init.parse(bad)
