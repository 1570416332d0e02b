"""precision="bf16": the convolution and affine layers' bfloat16 products against float32 (relative error
about 1e-2), nets training with them, model files, the parameter's checks, the typed error on machines
without support (simulated), and `imgclf train convnet|twolayer --precision`. Tests that multiply skip
cleanly without the CPU feature or MKL."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_images
from imgclf import bf16
from imgclf.errors import Unsupported, UsageError
from imgclf.nn import conv, layers
from imgclf.nn.convnet import ConvNet
from imgclf.nn.net import NeuralNet
from imgclf_cli.main import cli

needs_bf16 = pytest.mark.skipif(not bf16.available(), reason=f"bf16 GEMM unavailable: {bf16.unavailable_reason()}")


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture
def no_bf16(monkeypatch):
    """A machine without AVX512-BF16/AMX-BF16."""
    monkeypatch.setattr(bf16, "_cpu_reason", lambda: "this CPU has neither AVX512-BF16 nor AMX-BF16")


@needs_bf16
@pytest.mark.parametrize("shape,fs,pad,bias", [((8, 12, 12, 16), 3, 1, True), ((4, 9, 9, 3), 3, 1, False),
                                               ((6, 8, 8, 5), 5, 2, True), ((10, 1, 1, 24), 3, 1, True)])
def test_conv_forward_backward_close_to_float32(shape, fs, pad, bias, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal((fs, fs, shape[3], 32)) / np.sqrt(fs * fs * shape[3])).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32) if bias else None
    ws = conv.Workspace()
    for _ in range(2):  # the second pass reuses the workspace's bf16 columns and float32 dcols
        out32, c32 = conv.conv_forward(x, w, b, 1, pad)
        out16, c16 = conv.conv_forward(x, w, b, 1, pad, workspace=ws, precision="bf16")
        assert out16.dtype == np.float32 and out16.shape == out32.shape
        assert 1e-4 < _rel(out16, out32) < 1e-2
        dout = rng.standard_normal(out32.shape).astype(np.float32)
        dx32, g32 = conv.conv_backward(dout, c32)
        dx16, g16 = conv.conv_backward(dout, c16)
        assert dx16.dtype == g16["w"].dtype == np.float32 and dx16.shape == x.shape and g16["w"].shape == w.shape
        assert _rel(dx16, dx32) < 1e-2 and _rel(g16["w"], g32["w"]) < 1e-2
        if bias:
            np.testing.assert_array_equal(g16["b"], g32["b"])  # the bias gradient is a float32 sum either way
    assert conv.conv_backward(dout, c16, need_dx=False)[0] is None


@needs_bf16
def test_conv_act_and_affine_close_to_float32(rng):
    x = rng.standard_normal((16, 6, 6, 4)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 4, 8)) / 6).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    a32, c32 = conv.conv_act_forward(x, w, b, "relu", None, 1, 1)
    a16, c16 = conv.conv_act_forward(x, w, b, "relu", None, 1, 1, precision="bf16")
    assert _rel(a16, a32) < 1e-2
    d = rng.standard_normal(a32.shape).astype(np.float32)
    (dx32, g32), (dx16, g16) = conv.conv_act_backward(d, c32), conv.conv_act_backward(d, c16)
    assert _rel(dx16, dx32) < 2e-2 and _rel(g16["w"], g32["w"]) < 2e-2
    h = rng.standard_normal((20, 3, 4)).astype(np.float32)
    W = rng.standard_normal((12, 7)).astype(np.float32)
    bb = rng.standard_normal(7).astype(np.float32)
    o32, k32 = layers.affine_forward(h, W, bb)
    o16, k16 = layers.affine_forward(h, W, bb, "bf16")
    assert o16.dtype == np.float32 and _rel(o16, o32) < 1e-2
    d = rng.standard_normal(o32.shape).astype(np.float32)
    (dx32, g32), (dx16, g16) = layers.affine_backward(d, k32), layers.affine_backward(d, k16)
    assert dx16.shape == h.shape and _rel(dx16, dx32) < 1e-2 and _rel(g16["w"], g32["w"]) < 1e-2
    assert layers.affine_backward(d, k16, need_dx=False)[0] is None
    z32, _ = layers.affine_act_forward(h, W, bb, "relu", precision="float32")
    z16, kk = layers.affine_act_forward(h, W, bb, "relu", precision="bf16")
    assert _rel(z16, z32) < 1e-2
    assert layers.affine_act_backward(d, kk)[0].shape == h.shape


def test_layer_precision_checks(rng):
    x = rng.standard_normal((2, 4, 4, 3))
    w = rng.standard_normal((3, 3, 3, 2))
    with pytest.raises(UsageError, match="precision must be 'float32' or 'bf16'") as err:
        conv.conv_forward(x.astype(np.float32), w.astype(np.float32), None, 1, 1, precision="fp16")
    assert err.value.param == "precision"
    with pytest.raises(UsageError, match="float32 images and filters"):
        conv.conv_forward(x, w, None, 1, 1, precision="bf16")
    with pytest.raises(UsageError, match="float32 inputs and weights"):
        layers.affine_forward(x, np.ones((48, 2)), np.zeros(2), "bf16")
    with pytest.raises(UsageError, match="precision must be"):
        layers.affine_forward(x, np.ones((48, 2)), np.zeros(2), "half")


@needs_bf16
def test_convnet_trains_in_bf16_and_its_model_file_predicts_in_float32(tmp_path):
    from imgclf import storage
    from imgclf.io import modelfile

    X, y = make_images(240, n_classes=3, shape=(8, 8, 3), seed=1)
    Xv, yv = make_images(60, n_classes=3, shape=(8, 8, 3), seed=2)
    kw = dict(filters=("4x2", 8), hidden=16, batchnorm=True, epochs=3, batch_size=32, augment="flip,crop:1",
              random_state=0, pool_position="first")
    m = ConvNet(precision="bf16", **kw).fit(X, y, Xv, yv)
    ref = ConvNet(**kw).fit(X, y, Xv, yv)
    assert m.score(Xv, yv) > 0.9
    assert all(v.dtype == np.float32 for v in m.params_.values())  # master weights stay float32
    assert not np.array_equal(m.params_["W1"], ref.params_["W1"])  # the steps did run in bf16
    assert _rel(m.params_["W2"], ref.params_["W2"]) < 0.2
    # the same bf16 run again gives the same weights (MKL's products are deterministic on one machine)
    again = ConvNet(precision="bf16", **kw).fit(X, y, Xv, yv)
    np.testing.assert_array_equal(again.params_["W1"], m.params_["W1"])
    path = tmp_path / "conv.npz"
    storage.save_model(modelfile.ModelBundle(m, ["a", "b", "c"], (8, 8, 3)), path)
    loaded = storage.load_model(path).model
    assert loaded.precision == "bf16"
    np.testing.assert_array_equal(loaded.predict(Xv), m.predict(Xv))
    # scoring is float32/float64 whatever the training precision: the same as a float32 model with these weights
    twin = ConvNet(**kw)
    twin.__dict__.update({k: v for k, v in m.__dict__.items() if k.endswith("_")})
    np.testing.assert_array_equal(twin.predict_proba(Xv), m.predict_proba(Xv))


@needs_bf16
def test_neuralnet_trains_in_bf16(rng):
    X, y = make_images(300, n_classes=3, shape=(6, 6, 3), seed=3)
    for kw in (dict(hidden=(32,), batchnorm=True), dict(hidden=(32, 16), dropout=0.0)):
        kw.update(epochs=3, batch_size=50, random_state=0)
        low = NeuralNet(precision="bf16", **kw).fit(X, y).score(X, y)
        ref = NeuralNet(**kw).fit(X, y).score(X, y)
        assert low > 0.7 and abs(low - ref) < 0.05, (low, ref)


def test_precision_parameter_checks():
    X, y = make_images(30, n_classes=3, shape=(6, 6, 3))
    with pytest.raises(UsageError, match="precision must be one of") as err:
        ConvNet(precision="fp8").fit(X, y)
    assert err.value.param == "precision"
    with pytest.raises(UsageError, match="needs dtype='float32'"):
        NeuralNet(precision="bf16", dtype="float64").fit(X, y)


def test_unsupported_machine_gets_a_typed_error_but_loads_bf16_models(no_bf16, tmp_path):
    from imgclf import storage
    from imgclf.io import modelfile

    X, y = make_images(60, n_classes=3, shape=(6, 6, 3))
    with pytest.raises(Unsupported, match=r"precision='bf16' needs .*pip install 'imgclf\[bf16\]'") as err:
        ConvNet(filters=(4,), hidden=0, epochs=1, precision="bf16").fit(X, y)
    assert err.value.param == "precision"
    # a model trained with bf16 elsewhere loads and predicts here (its file only records the setting)
    m = ConvNet(filters=(4,), hidden=0, epochs=1, batch_size=20, random_state=0).fit(X, y)
    m.precision = "bf16"
    path = tmp_path / "m.npz"
    storage.save_model(modelfile.ModelBundle(m, ["a", "b", "c"], (6, 6, 3)), path)
    loaded = storage.load_model(path).model
    assert loaded.precision == "bf16"
    np.testing.assert_array_equal(loaded.predict(X), m.predict(X))


def test_cli_precision_unsupported(runner, small_stream, no_bf16):
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), "--precision", "bf16"])
    assert result.exit_code == 2
    assert "--precision" in result.output and "imgclf[bf16]" in result.output
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), "--precision", "fp16"])
    assert result.exit_code == 2


@needs_bf16
@pytest.mark.parametrize("kind,opts", [("convnet", ["--filters", "4,8", "--hidden", "16", "--batchnorm"]),
                                        ("twolayer", ["--hidden", "32"])])
def test_cli_precision_bf16_trains_and_records_it(runner, small_stream, tmp_path, kind, opts):
    out = tmp_path / "m.npz"
    result = runner.invoke(cli, ["train", kind, "--data", str(small_stream), *opts, "--epochs", "3",
                                 "--batch-size", "20", "--augment", "none", "--precision", "bf16", "--json",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["hyperparameters"]["precision"] == "bf16" and d["accuracy"] > 0.6
    ev = runner.invoke(cli, ["evaluate", "-m", str(out), "--data", str(small_stream), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(d["accuracy"])
