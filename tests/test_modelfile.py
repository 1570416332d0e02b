import io
import json
import zipfile

import numpy as np
import pytest

from conftest import make_images
from imgclf import storage
from imgclf.errors import ModelFileError
from imgclf.io import modelfile, npzfile
from imgclf.linear import LinearSVM, SoftmaxClassifier
from imgclf.preprocessing import MeanSubtraction
from imgclf_cli.main import cli


def _bundle(cls=SoftmaxClassifier, bias_trick=True):
    X, y = make_images(60, n_classes=3, shape=(4, 4, 3))
    chain = [MeanSubtraction().fit(X)]
    model = cls(random_state=0, reg=1.0, lr=1e-6, epochs=2, batch_size=20, bias_trick=bias_trick)
    model.fit(chain[0].transform(X), y)
    return modelfile.ModelBundle(model, ["a", "b", "c"], (4, 4, 3), chain, model.history_, 7, {"n_train": 60}), X


@pytest.mark.parametrize("cls", [LinearSVM, SoftmaxClassifier])
@pytest.mark.parametrize("bias_trick", [True, False])
def test_round_trip(tmp_path, cls, bias_trick):
    bundle, X = _bundle(cls, bias_trick)
    path = tmp_path / "m.npz"
    storage.save_model(bundle, path)
    back = storage.load_model(path)
    assert back.kind == cls.kind and back.classes == ["a", "b", "c"] and back.input_shape == (4, 4, 3)
    assert back.seed == 7 and back.extra == {"n_train": 60} and back.history == bundle.history
    assert back.model.get_params() == bundle.model.get_params()
    np.testing.assert_array_equal(back.model.predict(back.features(X)), bundle.model.predict(bundle.features(X)))
    np.testing.assert_array_equal(back.features(X), bundle.features(X))
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # atomic write leaves no temporary file


def _rewrite_meta(path, **changes):
    meta, arrays = npzfile.read(path)
    meta.update(changes)
    npzfile.write(path, arrays, meta)


def test_unknown_version(tmp_path):
    path = tmp_path / "m.npz"
    storage.save_model(_bundle()[0], path)
    _rewrite_meta(path, version=99)
    with pytest.raises(ModelFileError, match="unsupported model format version 99"):
        storage.load_model(path)


def test_unknown_kind(tmp_path):
    path = tmp_path / "m.npz"
    storage.save_model(_bundle()[0], path)
    _rewrite_meta(path, kind="perceptron")
    with pytest.raises(ModelFileError, match="unknown model kind 'perceptron'"):
        storage.load_model(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "m.npz"
    storage.save_model(_bundle()[0], path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable imgclf .npz file"):
        storage.load_model(path)


def test_foreign_files(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, W=np.zeros(3))
    with pytest.raises(ModelFileError, match="not an imgclf file"):
        storage.load_model(plain)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a readable"):
        storage.load_model(text)
    pipe = tmp_path / "pipe.npz"
    npzfile.write(pipe, {"X_train": np.zeros((1, 2))}, {"format": "imgclf-pipeline", "version": 1})
    with pytest.raises(ModelFileError, match="a pipeline stream, not a model file"):
        storage.load_model(pipe)


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model_W.npy", buf.getvalue())
        z.writestr("meta.npy", _npy(json.dumps({"format": "imgclf-model", "version": 1})))
    with pytest.raises(ModelFileError):
        storage.load_model(path)


def _npy(text):
    buf = io.BytesIO()
    np.save(buf, np.array(text))
    return buf.getvalue()


def test_wrong_weight_shape_is_a_clear_error(tmp_path):
    path = tmp_path / "m.npz"
    storage.save_model(_bundle()[0], path)
    meta, arrays = npzfile.read(path)
    arrays["model_W"] = arrays["model_W"][:5]
    npzfile.write(path, arrays, meta)
    with pytest.raises(ModelFileError, match="W has shape"):
        storage.load_model(path)


@pytest.mark.parametrize("damage", ["version", "truncate", "foreign"])
def test_cli_exit_2_on_bad_model_files(runner, tmp_path, damage):
    path = tmp_path / "m.npz"
    storage.save_model(_bundle()[0], path)
    if damage == "version":
        _rewrite_meta(path, version=2)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        np.savez(path, x=np.zeros(2))
    for args in (["predict", "-m", str(path), "whatever.png"], ["evaluate", "-m", str(path), "--data", "shapes"]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 2, res.output
        assert res.output.startswith("Error: ") and str(path) in res.output


# -- numpy hyperparameters (GridSearchCV's best_estimator_ over numpy grids) ------------------------------
def _numpy_param_models():
    from imgclf import ConvNet, KNNClassifier, NeuralNet

    return [
        (LinearSVM(reg=np.float64(1e-3), lr=np.float32(1e-3), epochs=np.int64(2), batch_size=np.int64(20),
                   bias_trick=np.bool_(False), squared_hinge=np.True_, class_weight={np.int64(0): np.float32(2.0)},
                   random_state=0), "rows"),
        (SoftmaxClassifier(iters=np.int32(5), random_state=0, class_weight="balanced"), "rows"),
        (NeuralNet(hidden=np.int64(8), batchnorm=np.True_, dropout=np.float64(0.1), epochs=np.int64(2),
                   batch_size=np.int64(20), train_acc_sample=np.int64(30), ema=np.float32(0.9),
                   optim_options={"beta1": np.float32(0.8)}, random_state=0), "rows"),
        (NeuralNet(hidden=(np.int64(6), np.int32(4)), epochs=2, random_state=0), "rows"),
        (NeuralNet(hidden=np.array([6]), epochs=2, random_state=0), "rows"),
        (ConvNet(filters=(2,), pool=np.int64(1), filter_size=np.int64(3), hidden=np.int64(0), epochs=1,
                 bn_momentum=np.float32(0.9), patch_whiten=np.False_, random_state=0), "images"),
        (KNNClassifier(k=np.int64(3)), "rows"),
    ]


@pytest.mark.parametrize("model,layout", _numpy_param_models(), ids=lambda v: type(v).__name__ if not isinstance(v, str) else v)
def test_numpy_hyperparameters_save_and_load(tmp_path, model, layout):
    # Fit accepts numpy scalars (what GridSearchCV hands over from np.logspace / np.arange / np.array
    # grids); saving used to fail with json's TypeError ("Object of type int64 is not JSON serializable").
    X, y = make_images(60, n_classes=3, shape=(4, 4, 3))
    X = X.astype(np.float32) if layout == "images" else X.reshape(len(X), -1).astype(np.float32)
    model.fit(X, y)
    path = tmp_path / "m.npz"
    storage.save_model(modelfile.ModelBundle(model, ["a", "b", "c"], X.shape[1:]), path)
    back = storage.load_model(path)
    np.testing.assert_array_equal(back.model.predict(X), model.predict(X))
    meta = json.loads(str(np.load(path)["meta"]))
    assert all(type(v) in (int, float, bool, str, list, dict, type(None)) for v in meta["hyperparameters"].values())


def test_numpy_hyperparameters_still_checked_on_load(tmp_path):
    # Written as plain JSON, a value fit would refuse is still refused on load (here a bool as reg).
    from imgclf import NeuralNet

    X, y = make_images(30, n_classes=3, shape=(2, 2, 3))
    X = X.reshape(len(X), -1).astype(np.float32)
    model = NeuralNet(hidden=np.int64(4), epochs=1, random_state=0).fit(X, y)
    model.reg = np.True_  # as a hand edit would put it; fit refuses it
    path = tmp_path / "m.npz"
    storage.save_model(modelfile.ModelBundle(model, ["a", "b", "c"], X.shape[1:]), path)
    with pytest.raises(ModelFileError, match="reg"):
        storage.load_model(path)


def test_plain_converts_numpy_values():
    value = {np.int64(1): np.float32(0.5), "a": (np.int32(2), np.array([3, 4])), "b": np.bool_(True), "c": np.str_("x")}
    out = npzfile.plain(value)
    assert out == {1: 0.5, "a": [2, [3, 4]], "b": True, "c": "x"}
    assert type(list(out)[0]) is int and type(out["b"]) is bool and type(out["c"]) is str
