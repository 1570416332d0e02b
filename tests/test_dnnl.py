"""conv backend "dnnl" (oneDNN through ctypes, imgclf/dnnl.py): the three passes against the im2col
reference (float32 tight, bf16 against the im2col bf16 path), a float32 numerical gradient check, the
binding's validation and cache, ConvNet(conv_backend=...) and `--conv-backend`, model files, and the typed
errors where oneDNN is missing (simulated). Tests that run oneDNN skip cleanly without it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_images
from imgclf import bf16, dnnl
from imgclf.errors import Unsupported, UsageError
from imgclf.gradcheck import check_gradients
from imgclf.nn import conv
from imgclf.nn.convnet import ConvNet
from imgclf_cli.main import cli

needs_dnnl = pytest.mark.skipif(not dnnl.available(), reason=f"oneDNN unavailable: {dnnl.unavailable_reason()}")
needs_bf16 = pytest.mark.skipif(not (dnnl.available() and bf16.available()),
                                reason=f"oneDNN or bf16 unavailable: {dnnl.unavailable_reason()} / "
                                       f"{bf16.unavailable_reason()}")

# (N, H, W, C, F, K, stride, pad, dilation): stride 2, padding 0/1/2, dilation 2, 1x1 maps and filters,
# odd sizes, C=3, a 2x2 stem-like valid convolution
CASES = [(3, 8, 8, 5, 7, 3, 1, 1, 1), (2, 9, 7, 3, 4, 3, 2, 1, 1), (2, 10, 10, 4, 6, 3, 1, 2, 2),
         (4, 1, 1, 8, 5, 3, 1, 1, 1), (2, 6, 6, 3, 4, 2, 1, 0, 1), (2, 7, 5, 3, 4, 1, 1, 0, 1),
         (3, 11, 11, 3, 8, 3, 1, 0, 1), (2, 9, 9, 6, 3, 3, 2, 2, 2)]


@pytest.fixture
def no_dnnl(monkeypatch):
    """A machine without oneDNN."""
    monkeypatch.setattr(dnnl, "_load", lambda: (None, "oneDNN (libdnnl.so.3) was not found (simulated)"))


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _data(case, rng):
    N, H, W, C, F, K, s, p, d = case
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    w = (rng.standard_normal((K, K, C, F)) / np.sqrt(K * K * C)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    return x, w, b, (s, p, d)


@needs_dnnl
@pytest.mark.parametrize("case", CASES)
def test_float32_matches_im2col(case, rng):
    x, w, b, geo = _data(case, rng)
    ref, c_ref = conv.conv_forward(x, w, b, *geo)
    out, c = conv.conv_forward(x, w, b, *geo, backend="dnnl")
    assert isinstance(c, conv.DnnlCache) and out.dtype == np.float32 and out.shape == ref.shape
    assert _rel(out, ref) < 1e-5
    dout = rng.standard_normal(out.shape).astype(np.float32)
    rdx, rg = conv.conv_backward(dout, c_ref)
    dx, g = conv.conv_backward(dout, c)
    assert _rel(dx, rdx) < 1e-5 and _rel(g["w"], rg["w"]) < 1e-5
    np.testing.assert_allclose(g["b"], rg["b"], rtol=1e-5)
    assert g["w"].dtype == np.float32 and dx.dtype == np.float32
    dx_none, g2 = conv.conv_backward(dout, c, need_dx=False)
    assert dx_none is None and np.array_equal(g2["w"], g["w"])


@needs_bf16
@pytest.mark.parametrize("case", CASES[:5])
def test_bf16_close_to_the_im2col_bf16_path(case, rng):
    x, w, b, geo = _data(case, rng)
    ref, c_ref = conv.conv_forward(x, w, None, *geo, precision="bf16")
    out, c = conv.conv_forward(x, w, None, *geo, precision="bf16", backend="dnnl")
    assert _rel(out, ref) < 2e-3  # the same rounded inputs; float32 sums in another order
    dout = rng.standard_normal(out.shape).astype(np.float32)
    rdx, rg = conv.conv_backward(dout, c_ref)
    dx, g = conv.conv_backward(dout, c)
    assert _rel(dx, rdx) < 2e-3 and _rel(g["w"], rg["w"]) < 2e-3
    f32, _ = conv.conv_forward(x, w, None, *geo)
    assert 1e-4 < _rel(out, f32) < 1e-2  # it did run in bfloat16


@needs_dnnl
@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[2]])
def test_float32_gradient_check(case, rng):
    x, w, b, geo = _data(case, rng)
    params = {"x": x, "w": w, "b": b}

    def fwd(q):
        f32 = {k: np.asarray(v, dtype=np.float32) for k, v in q.items()}
        return conv.conv_forward(f32["x"], f32["w"], f32["b"], *geo, backend="dnnl")[0]

    G = np.random.default_rng(1).standard_normal(fwd(params).shape)
    dx, g = conv.conv_backward(G.astype(np.float32), conv.conv_forward(x, w, b, *geo, backend="dnnl")[1])
    # the loss is linear in each parameter: a wide step loses nothing but float32's rounding
    report = check_gradients(lambda q: float(np.sum(fwd(q).astype(np.float64) * G)), params,
                             {"x": dx, "w": g["w"], "b": g["b"]}, n_checks=10, h=0.5)
    assert report.ok and report.max_rel_error < 1e-4, report.as_dict()


@needs_dnnl
def test_conv_act_layer_and_the_single_pixel_case(rng):
    x = rng.standard_normal((4, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    for act in ("relu", "gelu"):
        ref, cr = conv.conv_act_forward(x, w, b, act, None, 1, 1)
        out, c = conv.conv_act_forward(x, w, b, act, None, 1, 1, backend="dnnl")
        assert _rel(out, ref) < 1e-5
        d = rng.standard_normal(out.shape).astype(np.float32)
        (rdx, rg), (dx, g) = conv.conv_act_backward(d, cr), conv.conv_act_backward(d, c)
        assert _rel(dx, rdx) < 1e-5 and _rel(g["w"], rg["w"]) < 1e-5 and _rel(g["b"], rg["b"]) < 1e-5


@needs_dnnl
def test_binding_validation_and_cache(rng):
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    with pytest.raises(UsageError, match="float32 or bfloat16") as err:
        dnnl.conv_forward(x.astype(np.float64), w)
    assert err.value.param == "x"
    with pytest.raises(UsageError, match="C-contiguous"):
        dnnl.conv_forward(np.asfortranarray(x), w)
    with pytest.raises(UsageError, match="same type"):
        dnnl.conv_forward(bf16.to_bf16(x), w)
    with pytest.raises(UsageError, match="input channels"):
        dnnl.conv_forward(x, np.ascontiguousarray(w[:, :, :2]))
    with pytest.raises(UsageError, match="not an integer"):
        dnnl.conv_forward(x, w, stride=3, pad=0)
    with pytest.raises(UsageError, match="writeable C-contiguous float32"):
        dnnl.conv_forward(x, w, pad=1, out=np.empty((2, 5, 5, 4), np.float64))
    with pytest.raises(UsageError, match="forward output's shape"):
        dnnl.conv_backward_data(np.zeros((2, 4, 4, 4), np.float32), w, x.shape, pad=1)
    out = np.empty((2, 5, 5, 4), np.float32)
    assert dnnl.conv_forward(x, w, pad=1, out=out) is out
    names = dnnl.implementations(x.shape, w.shape, 1, 1, 1)
    assert set(names) == {"forward", "backward_data", "backward_weights"} and all(names.values())
    assert dnnl.version().startswith("3.")
    # the cache is bounded: old geometries are destroyed, and come back rebuilt when asked for again
    dnnl.clear_cache()
    for n in range(1, dnnl.CACHE_SIZE + 6):
        dnnl.conv_forward(x[:1].repeat(n, axis=0) if n > 2 else x[:n], w, pad=1)
    assert len(dnnl._cache) == dnnl.CACHE_SIZE
    np.testing.assert_array_equal(dnnl.conv_forward(x, w, pad=1), out)


@needs_dnnl
def test_an_evicted_geometry_lives_until_its_call_ends(monkeypatch, rng):
    monkeypatch.setattr(dnnl, "_cache", dnnl._Cache(2))
    keys = [dnnl._key((n, 5, 5, 3), (3, 3, 3, 4), 1, 1, 1, np.float32) for n in (1, 2, 3)]
    with dnnl._cache.use(keys[0]) as first:
        for key in keys[1:]:
            with dnnl._cache.use(key):
                pass
        assert first.evicted and first.parts  # out of the cache, not destroyed while in use
    assert not first.parts and len(dnnl._cache) == 2


@needs_dnnl
def test_threads_may_call_concurrently(rng):
    from concurrent.futures import ThreadPoolExecutor

    xs = [rng.standard_normal((4, 9, 9, 6)).astype(np.float32) for _ in range(8)]
    w = rng.standard_normal((3, 3, 6, 5)).astype(np.float32)
    ref = [dnnl.conv_forward(x, w, pad=1) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: dnnl.conv_forward(x, w, pad=1), xs))
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


@needs_dnnl
def test_runs_on_imgclf_thread_count(rng):
    from imgclf.blas import blas_threads

    x = rng.standard_normal((8, 9, 9, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    ref = dnnl.conv_forward(x, w, pad=1)
    with blas_threads(1):
        np.testing.assert_allclose(dnnl.conv_forward(x, w, pad=1), ref, rtol=1e-5, atol=1e-5)


def _convnet(**kw):
    base = dict(filters=("4x2", 8), hidden=16, batchnorm=True, epochs=2, batch_size=32, augment="flip,crop:1",
                random_state=0, pool_position="first")
    base.update(kw)
    return ConvNet(**base)


@needs_dnnl
@pytest.mark.parametrize("size,extra", [(8, {}), (9, {"stem": "whiten:2", "activation": "gelu", "hidden": 0,
                                                     "head": "maxpool"})])
def test_convnet_dnnl_and_im2col_agree_in_float32(size, extra, tmp_path):
    from imgclf import storage
    from imgclf.io import modelfile

    X, y = make_images(160, n_classes=3, shape=(size, size, 3), seed=1)
    Xv, yv = make_images(40, n_classes=3, shape=(size, size, 3), seed=2)
    a = _convnet(conv_backend="dnnl", **extra).fit(X, y, Xv, yv)
    b = _convnet(conv_backend="im2col", **extra).fit(X, y, Xv, yv)
    la, lb = [h["loss"] for h in a.history_], [h["loss"] for h in b.history_]
    np.testing.assert_allclose(la, lb, rtol=1e-3)
    # the model file does not record the backend: it loads as "auto" and predicts the same
    path = tmp_path / "m.npz"
    storage.save_model(modelfile.ModelBundle(a, ["a", "b", "c"], (size, size, 3)), path)
    loaded = storage.load_model(path).model
    assert loaded.conv_backend == "auto"
    np.testing.assert_array_equal(loaded.predict(Xv), a.predict(Xv))
    np.testing.assert_allclose(a.predict_proba(Xv), b.predict_proba(Xv), atol=1e-2)


@needs_bf16
def test_convnet_dnnl_bf16_trains():
    X, y = make_images(160, n_classes=3, shape=(8, 8, 3), seed=1)
    m = _convnet(conv_backend="dnnl", precision="bf16", epochs=3).fit(X, y)
    ref = _convnet(conv_backend="im2col", precision="bf16", epochs=3).fit(X, y)
    assert m.score(X, y) > 0.9
    np.testing.assert_allclose([h["loss"] for h in m.history_], [h["loss"] for h in ref.history_], rtol=2e-2)


def test_resolve_backend(monkeypatch):
    assert conv.resolve_backend("im2col", np.float32, 100) == "im2col"
    assert conv.resolve_backend("dnnl", np.float64, 1) == "dnnl"
    assert conv.resolve_backend("auto", np.float64, 1000) == "im2col"
    assert conv.resolve_backend("auto", np.float32, conv.AUTO_IM2COL_PIXELS) == "im2col"
    monkeypatch.setattr(dnnl, "_load", lambda: (object(), None))
    assert conv.resolve_backend("auto", np.float32, conv.AUTO_IM2COL_PIXELS + 1) == "dnnl"
    with pytest.raises(UsageError, match="backend must be one of") as err:
        conv.resolve_backend("gpu", np.float32, 10)
    assert err.value.param == "backend"


def test_parameter_checks():
    X, y = make_images(30, n_classes=3, shape=(6, 6, 3))
    with pytest.raises(UsageError, match="conv_backend must be") as err:
        ConvNet(conv_backend="cudnn").fit(X, y)
    assert err.value.param == "conv_backend"
    with pytest.raises(UsageError, match="needs dtype='float32'") as err:
        ConvNet(conv_backend="dnnl", dtype="float64").fit(X, y)
    assert err.value.param == "conv_backend"
    x = np.zeros((1, 4, 4, 2))
    with pytest.raises(UsageError, match="backend='dnnl' takes float32") as err:
        conv.conv_forward(x, np.zeros((3, 3, 2, 2)), None, 1, 1, backend="dnnl")
    assert err.value.param == "backend"


def test_unavailable_gets_typed_errors_and_auto_falls_back(no_dnnl, rng):
    assert not dnnl.available() and "simulated" in dnnl.unavailable_reason() and dnnl.version() is None
    X, y = make_images(60, n_classes=3, shape=(6, 6, 3))
    with pytest.raises(Unsupported, match=r"conv_backend='dnnl' needs oneDNN .*imgclf\[dnnl\]") as err:
        ConvNet(filters=(4,), hidden=0, epochs=1, conv_backend="dnnl").fit(X, y)
    assert err.value.param == "conv_backend"
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    with pytest.raises(Unsupported) as err:
        conv.conv_forward(x, np.ones((3, 3, 3, 2), np.float32), None, 1, 1, backend="dnnl")
    assert err.value.param == "backend"
    with pytest.raises(Unsupported):
        dnnl.conv_forward(x, np.ones((3, 3, 3, 2), np.float32))
    # auto trains with im2col; a model whose conv_backend says dnnl still predicts here
    m = ConvNet(filters=(4,), hidden=0, epochs=1, batch_size=20, random_state=0).fit(X, y)
    m.conv_backend = "dnnl"
    assert m.predict(X).shape == (60,)


def test_cli_conv_backend_unsupported(runner, small_stream, no_dnnl):
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), "--conv-backend", "dnnl"])
    assert result.exit_code == 2
    assert "--conv-backend" in result.output and "imgclf[dnnl]" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), "--conv-backend", "gpu"])
    assert result.exit_code == 2


@pytest.mark.parametrize("backend", ["im2col", pytest.param("dnnl", marks=needs_dnnl)])
def test_cli_conv_backend_trains(runner, small_stream, tmp_path, backend):
    out = tmp_path / "m.npz"
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), "--filters", "4,8", "--hidden", "16",
                                 "--batchnorm", "--epochs", "3", "--batch-size", "20", "--augment", "none",
                                 "--conv-backend", backend, "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["hyperparameters"]["conv_backend"] == backend and d["accuracy"] > 0.6
    ev = runner.invoke(cli, ["evaluate", "-m", str(out), "--data", str(small_stream), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(d["accuracy"])


def test_loader_refuses_what_is_not_onednn(monkeypatch, tmp_path):
    # the file named by IMGCLF_DNNL_LIB replaces the search: a missing file, then a library without oneDNN's API
    monkeypatch.setenv(dnnl.ENV_PATH, str(tmp_path / "libdnnl.so.3"))
    lib, reason = dnnl._load.__wrapped__()
    assert lib is None and reason.startswith("oneDNN could not be loaded (") and "libdnnl.so.3" in reason
    import ctypes.util

    libm = ctypes.util.find_library("m")
    if libm is None:
        pytest.skip("no libm to load")
    monkeypatch.setenv(dnnl.ENV_PATH, libm)
    lib, reason = dnnl._load.__wrapped__()
    assert lib is None and "not oneDNN 3's C API" in reason
