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
