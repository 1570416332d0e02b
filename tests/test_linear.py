import numpy as np
import pytest

from conftest import make_images
from imgclf.errors import Diverged, UsageError
from imgclf.linear import LinearSVM, SoftmaxClassifier

FAST = {"reg": 1e-3, "lr": 1e-2, "epochs": 20, "batch_size": 20}


def _blobs(n=150, c=3, d=5, offset=5.0, seed=0):
    """Gaussian blobs far from the origin, so a separating model needs its bias."""
    r = np.random.default_rng(seed)
    centers = r.standard_normal((c, d)) * 3 + offset
    y = np.arange(n) % c
    return centers[y] + r.standard_normal((n, d)) * 0.3, y


@pytest.mark.parametrize("cls", [LinearSVM, SoftmaxClassifier])
@pytest.mark.parametrize("bias_trick", [True, False])
def test_fits_separable_data_with_and_without_bias_trick(cls, bias_trick):
    X, y = _blobs()
    model = cls(bias_trick=bias_trick, random_state=0, **FAST).fit(X, y)
    assert model.score(X, y) == 1.0
    names = set(model.params_)
    assert names == ({"W"} if bias_trick else {"W", "b"})
    assert model.params_["W"].shape[0] == (6 if bias_trick else 5)


@pytest.mark.parametrize("cls", [LinearSVM, SoftmaxClassifier])
def test_sklearn_idiom(cls):
    model = cls(reg="not checked here", lr=-1)
    assert model.get_params()["reg"] == "not checked here"  # stored unchanged
    with pytest.raises(UsageError, match="reg must be a number >= 0"):
        model.fit(np.zeros((4, 2)), [0, 1, 0, 1])
    model.set_params(reg=0.0, lr=0.1)
    assert model.get_params()["lr"] == 0.1
    with pytest.raises(UsageError, match="no parameter 'bogus'"):
        model.set_params(bogus=1)
    assert "reg=0.0" in repr(model)


def _channel_images(n=90, seed=0):
    """uint8 4x4x3 images whose class is the bright colour channel (separable without a bias)."""
    r = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = r.integers(0, 60, (n, 4, 4, 3))
    X[np.arange(n), :, :, y] += 150
    return X.astype(np.uint8), y


def test_labels_of_any_kind_and_images_of_any_dtype():
    X, y = _channel_images()
    labels = np.array(["cat", "dog", "eel"])[y]
    for Xin in (X, X.astype(np.float64), X.astype(np.int32)):
        model = SoftmaxClassifier(random_state=0, reg=0.0, lr=1e-6, epochs=10, batch_size=30).fit(Xin, labels)
        assert model.n_features_in_ == 48
        assert list(model.classes_) == ["cat", "dog", "eel"]
        assert model.predict(Xin[:5]).dtype.kind == "U"
        assert model.score(Xin, labels) > 0.9
    proba = model.predict_proba(X[:7])
    assert proba.shape == (7, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], model.predict(X[:7]))
    assert model.decision_function(X[:7]).shape == (7, 3)


def test_same_seed_same_model():
    X, y = _blobs()
    a = LinearSVM(random_state=3, **FAST).fit(X, y)
    b = LinearSVM(random_state=3, **FAST).fit(X, y)
    np.testing.assert_array_equal(a.params_["W"], b.params_["W"])


def test_validation_errors():
    X, y = _blobs(30)
    model = SoftmaxClassifier(random_state=0, **FAST)
    with pytest.raises(UsageError, match="not fitted"):
        model.predict(X)
    with pytest.raises(UsageError, match="NaN"):
        model.fit(np.where(X > 6, np.nan, X), y)
    with pytest.raises(UsageError, match="1-d array of 30 labels"):
        model.fit(X, y[:10])
    with pytest.raises(UsageError, match="at least 2 classes"):
        model.fit(X, np.zeros(30, int))
    with pytest.raises(UsageError, match="real numbers"):
        model.fit(X.astype(complex), y)
    model.fit(X, y)
    with pytest.raises(UsageError, match="X has 4 features, but SoftmaxClassifier is expecting 5 features as input"):
        model.predict(X[:, :4])
    with pytest.raises(UsageError, match="delta must be"):
        LinearSVM(delta=0).fit(X, y)


def test_best_validation_weights_are_kept(rng):
    X, y = _blobs(200, seed=1)
    model = SoftmaxClassifier(random_state=0, **FAST).fit(X[:150], y[:150], X[150:], y[150:])
    vals = [h["val_acc"] for h in model.history_]
    assert model.best_epoch_ == 1 + int(np.argmax(vals))
    assert model.score(X[150:], y[150:]) == pytest.approx(max(vals))


class _NaNAfter(SoftmaxClassifier):
    """Returns a NaN loss from the given training step on."""

    def __init__(self, nan_from=5, **kw):
        super().__init__(**kw)
        self.nan_from = nan_from

    def loss_rows(self, X, idx, y):
        self.calls_ = getattr(self, "calls_", 0) + 1
        loss, grads = super().loss_rows(X, idx, y)
        return (float("nan") if self.calls_ >= self.nan_from else loss), grads


def test_nan_loss_stops_and_keeps_best_model():
    X, y = _blobs(200, seed=2)
    # 150 / 20 = 7 steps per epoch: the NaN arrives in the 3rd epoch.
    model = _NaNAfter(nan_from=17, random_state=0, **FAST).fit(X[:150], y[:150], X[150:], y[150:])
    assert model.stopped_.startswith("diverged: the loss became nan at iteration 17")
    assert len(model.history_) == 2
    assert np.isfinite(model.params_["W"]).all()
    assert model.score(X[150:], y[150:]) == pytest.approx(max(h["val_acc"] for h in model.history_))


def test_nan_before_first_epoch_is_an_error():
    X, y = _blobs(100)
    with pytest.raises(Diverged, match="no epoch finished.*lower learning rate"):
        _NaNAfter(nan_from=2, random_state=0, **FAST).fit(X, y)


@pytest.mark.parametrize("cls", [LinearSVM, SoftmaxClassifier])
@pytest.mark.parametrize("bias_trick", [True, False])
def test_to_from_arrays_round_trip(cls, bias_trick):
    X, y = _blobs()
    model = cls(bias_trick=bias_trick, random_state=0, **FAST).fit(X, y)
    params, arrays = model.to_arrays()
    import json

    json.dumps(params)
    back = cls.from_arrays(json.loads(json.dumps(params)), arrays)
    assert back.get_params() == model.get_params()
    np.testing.assert_array_equal(back.decision_function(X), model.decision_function(X))
    with pytest.raises(UsageError, match="lacks the arrays"):
        cls.from_arrays(params, {"W": arrays["W"]})


def test_weight_images_are_per_template_rescaled():
    X, y = make_images(60, n_classes=3, shape=(4, 4, 3))
    model = LinearSVM(random_state=0, reg=1.0, lr=1e-6, epochs=3, batch_size=20).fit(X, y)
    images, labels = model.weight_images((4, 4, 3))
    assert images.shape == (3, 4, 4, 3) and images.dtype == np.uint8
    assert labels == [0, 1, 2]
    assert (images.reshape(3, -1).min(axis=1) == 0).all() and (images.reshape(3, -1).max(axis=1) == 255).all()
    with pytest.raises(UsageError, match="cannot be shown as 8x8x3 images"):
        model.weight_images((8, 8, 3))


@pytest.mark.parametrize("cls", [LinearSVM, SoftmaxClassifier])
def test_training_centres_the_features_implicitly(cls):
    """Training on raw features sees them centred (bias -c @ W, weight gradient minus c (sum dS)): the
    gradient checks numerically, the fused kernel agrees, and the folded model predicts as trained."""
    from imgclf.sanity import check_model_gradients

    rng = np.random.default_rng(0)
    X = (rng.standard_normal((40, 6)) + 5).astype(np.float64)
    y = rng.integers(0, 3, 40)
    m = cls(reg=0.1).initialize(6, 3, rng, dtype=np.float64)
    m._centre = X.mean(axis=0)
    report = check_model_gradients(m, X, y, n_checks=20, rng=rng)
    assert report.ok and report.max_rel_error < 1e-6, report.as_dict()
    m32 = cls(reg=0.1).initialize(6, 3, rng)
    m32._centre = X.mean(axis=0).astype(np.float32)
    X32, idx = X.astype(np.float32), rng.permutation(40)[:17]
    fused, gathered = m32.loss_rows(X32, idx, y[idx]), m32.loss_and_grads(X32[idx], y[idx])
    assert fused[0] == pytest.approx(gathered[0], rel=1e-5)
    np.testing.assert_allclose(fused[1]["W"], gathered[1]["W"], rtol=1e-4, atol=1e-5)
    model = cls(random_state=0).fit(X, y)
    assert not hasattr(model, "_centre")
    np.testing.assert_array_equal(model.predict(X), model.classes_[np.argmax(X @ model.params_["W"][:-1]
                                                                              + model.params_["W"][-1], axis=1)])
