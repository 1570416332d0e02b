"""NeuralNet: whole-net gradient checks in float64, fitting, the estimator idiom, model files."""

import sys
from pathlib import Path

import numpy as np
import pytest

from imgclf.errors import UsageError
from imgclf.sanity import check_model_gradients
from imgclf.nn.net import NeuralNet

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_images  # noqa: E402

CONFIGS = [
    {"hidden": (6, 5), "batchnorm": True, "dropout": 0.25},
    {"hidden": (7,), "activation": "tanh", "loss": "svm"},
    {"hidden": (5, 4), "activation": "elu", "init": "xavier"},
    {"hidden": (6,), "activation": "leaky_relu:0.1", "dropout": 0.5},
    {"hidden": (4,), "activation": "sigmoid", "init": "normal:0.5"},
]


@pytest.mark.parametrize("params", CONFIGS)
def test_whole_net_gradient_check_float64(params, rng):
    net = NeuralNet(dtype="float64", reg=0.05, **params)
    trainee = net.initialize(12, 4, rng)
    assert trainee is net
    X = rng.standard_normal((9, 12))
    y = rng.integers(0, 4, 9)
    report = check_model_gradients(net, X, y, n_checks=15, rng=rng, seed=11)
    assert report.ok and report.max_rel_error < 1e-5, report.as_dict()


def _data(n=240, seed=0):
    X, y = make_images(n, n_classes=3, shape=(4, 4, 3), seed=seed)
    return ((X.astype(np.float32) - 100) / 60), y


def test_fit_predict_score_and_estimator_attributes():
    X, y = _data()
    Xv, yv = _data(60, seed=9)
    labels = np.array(["cat", "dog", "eel"])
    net = NeuralNet(hidden=(20,), epochs=10, batch_size=40, lr=3e-3, random_state=0)
    assert net.fit(X, labels[y], Xv, labels[yv]) is net
    assert net.n_features_in_ == 48 and list(net.classes_) == ["cat", "dog", "eel"]
    assert net.score(Xv, labels[yv]) > 0.9
    proba = net.predict_proba(Xv)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert net.predict(Xv[:3]).dtype.kind == "U"
    assert len(net.history_) == 10 and net.params_["W1"].dtype == np.float32
    assert {"epoch", "loss", "train_acc", "val_acc", "lr", "update_ratio", "seconds"} <= set(net.history_[0])
    # The same seed, the same weights.
    again = NeuralNet(hidden=(20,), epochs=10, batch_size=40, lr=3e-3, random_state=0).fit(X, labels[y], Xv, labels[yv])
    np.testing.assert_array_equal(again.params_["W1"], net.params_["W1"])


def test_uint8_images_and_augmentation_are_accepted():
    X, y = make_images(90, n_classes=3, shape=(6, 6, 3))
    net = NeuralNet(hidden=(10,), epochs=2, batch_size=30, augment="flip,crop:1", random_state=1, lr=1e-4).fit(X, y)
    assert net.predict(X).shape == (90,)
    with pytest.raises(UsageError, match="needs image data"):
        NeuralNet(augment="flip", epochs=1).fit(X.reshape(90, -1), y)


def test_params_are_stored_unchanged_and_validated_in_fit():
    net = NeuralNet(hidden=[3, 2], dropout=2.0)
    assert net.get_params()["hidden"] == [3, 2] and net.dropout == 2.0
    X, y = _data(30)
    for bad, msg in [({"dropout": 1.5}, "dropout"), ({"hidden": (0,)}, "hidden"), ({"loss": "l2"}, "unknown loss"),
                     ({"optim": "lbfgs"}, "unknown optimiser"), ({"init": "zeros"}, "unknown init"),
                     ({"activation": "swish"}, "unknown activation"), ({"reg": -1}, "reg")]:
        with pytest.raises(UsageError, match=msg):
            NeuralNet(epochs=1, **bad).fit(X, y)
    with pytest.raises(UsageError, match="not fitted"):
        NeuralNet().predict(X)
    with pytest.raises(UsageError, match="2 classes"):
        NeuralNet(epochs=1).fit(X, np.zeros(30, int))
    assert NeuralNet().set_params(lr=0.5).lr == 0.5
    assert "lr=0.5" in repr(NeuralNet(lr=0.5))


def test_model_file_round_trip(tmp_path):
    from imgclf import storage
    from imgclf.io import modelfile

    X, y = _data()
    net = NeuralNet(hidden=(8, 6), batchnorm=True, dropout=0.2, epochs=2, batch_size=40, random_state=0).fit(X, y)
    path = tmp_path / "net.npz"
    storage.save_model(modelfile.ModelBundle(net, ["a", "b", "c"], (4, 4, 3)), path)
    loaded = storage.load_model(path).model
    assert isinstance(loaded, NeuralNet) and loaded.hidden == (8, 6)
    np.testing.assert_array_equal(loaded.decision_function(X), net.decision_function(X))
    np.testing.assert_array_equal(loaded.buffers_["running_var1"], net.buffers_["running_var1"])


def test_weight_images():
    X, y = _data()
    net = NeuralNet(hidden=(5,), epochs=1, batch_size=40, random_state=0).fit(X, y)
    images, labels = net.weight_images((4, 4, 3))
    assert images.shape == (5, 4, 4, 3) and images.dtype == np.uint8 and len(labels) == 5
    assert images.reshape(5, -1).min(axis=1).tolist() == [0] * 5
    with pytest.raises(UsageError, match="cannot be shown"):
        net.weight_images((5, 5, 3))


def test_sanity_checks_for_twolayer():
    from imgclf import sanity

    assert sanity.grad_check("twolayer").ok
    X = np.random.default_rng(0).standard_normal((20, 4, 4, 3)).astype(np.float32)
    y = np.arange(20) % 10
    measured, expected = sanity.initial_loss("twolayer", X, y, 10)
    assert abs(measured - expected) < 0.05
    _, acc = sanity.overfit("twolayer", X, y)
    assert acc == 1.0


def test_model_files_from_before_the_dense_block_predict_as_they_did(tmp_path):
    """A `net` file written before issue 15 (no layout_, no input standardisation, batch norm after the
    ReLU, b{i} kept) loads and scores exactly as its own layer order says; saved again, it stays so."""
    from imgclf import storage
    from imgclf.io.modelfile import ModelBundle

    rng = np.random.default_rng(3)
    sizes = (12, 6, 5, 3)
    arrays = {"classes": np.array([0, 1, 2])}
    for i in range(1, 4):
        arrays[f"W{i}"] = rng.standard_normal((sizes[i - 1], sizes[i])).astype(np.float32)
        arrays[f"b{i}"] = rng.standard_normal(sizes[i]).astype(np.float32)
    for i in (1, 2):
        arrays[f"gamma{i}"] = rng.random(sizes[i]).astype(np.float32) + 0.5
        arrays[f"beta{i}"] = rng.standard_normal(sizes[i]).astype(np.float32)
        arrays[f"running_mean{i}"] = rng.standard_normal(sizes[i]).astype(np.float32)
        arrays[f"running_var{i}"] = rng.random(sizes[i]).astype(np.float32) + 0.1
    params = {**NeuralNet(hidden=(6, 5), batchnorm=True).get_params(), "hidden": [6, 5], "n_features_in_": 12,
              "stopped_": None, "best_epoch_": 3}
    for new in ("class_weight",):  # parameters the old estimator did not have
        params.pop(new)
    old = NeuralNet.from_arrays(params, arrays)
    X = rng.standard_normal((7, 12)).astype(np.float32)
    h = X.astype(np.float64)
    for i in (1, 2):
        h = np.maximum(h @ arrays[f"W{i}"] + arrays[f"b{i}"], 0)
        h = (h - arrays[f"running_mean{i}"]) / np.sqrt(arrays[f"running_var{i}"] + 1e-5) * arrays[f"gamma{i}"] \
            + arrays[f"beta{i}"]
    expected = h @ arrays["W3"] + arrays["b3"]
    np.testing.assert_allclose(old.decision_function(X), expected, rtol=1e-5, atol=1e-5)
    storage.save_model(ModelBundle(old, ["a", "b", "c"], (12,), []), tmp_path / "again.npz")
    again = storage.load_model(tmp_path / "again.npz").model
    np.testing.assert_array_equal(again.decision_function(X), old.decision_function(X))
    with pytest.raises(ValueError, match="evaluated, never trained"):
        old.loss_and_grads(old.prepare_batch(X), np.array([0, 1, 2, 0, 1, 2, 0]))
    assert "b1" not in NeuralNet(hidden=(6,), batchnorm=True).initialize(12, 3, rng).params_  # today's layout


def test_net_standardises_its_input():
    X, y = _data()
    net = NeuralNet(hidden=(20,), epochs=3, batch_size=40, random_state=0).fit(X * 1000 + 5, y)
    ref = NeuralNet(hidden=(20,), epochs=3, batch_size=40, random_state=0).fit(X, y)
    np.testing.assert_array_equal(net.predict(X * 1000 + 5), ref.predict(X))
    assert net.input_mean_.shape == (48,)
