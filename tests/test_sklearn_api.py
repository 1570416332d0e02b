"""The public estimators against scikit-learn's own estimator checks, and the API promises of issue #10.

scikit-learn's checks run on default-constructed estimators, with no expected failures: the defaults
scale with the data (linear learning rate and regularisation, epochs stretched to small data sets with
an early stop), so they learn scikit-learn's 300-sample toy problems as they learn CIFAR-10. The other
tests use tiny settings (few epochs, small layers) so the whole file stays fast.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from imgclf import (PCA, ConvNet, KNNClassifier, LinearSVM, MeanSubtraction, NeuralNet, Normalization,
                    SoftmaxClassifier, Whitening)
from imgclf.errors import DataError, UsageError
from imgclf.validation import (DataConversionWarning, NotFittedError, check_array, check_labels, check_random_state,
                               encode_labels)

from conftest import make_images

LINEAR = {"lr": 1e-3, "reg": 1e-3, "epochs": 3, "batch_size": 50}
NET = {"epochs": 5, "lr": 1e-2, "batch_size": 50}


def classifiers():
    return [
        KNNClassifier(k=3),
        LinearSVM(random_state=0, **LINEAR),
        SoftmaxClassifier(random_state=0, **LINEAR),
        NeuralNet(hidden=(8,), random_state=0, **NET),
        NeuralNet(hidden=(8, 6), batchnorm=True, dropout=0.1, random_state=0, **NET),
        ConvNet(filters=(4,), pool=1, hidden=8, random_state=0, **NET),
    ]


def transformers():
    return [MeanSubtraction(), Normalization(), PCA(), PCA(dims=2), Whitening(), Whitening(zca=True)]


DEFAULT_CONSTRUCTED = [KNNClassifier(), LinearSVM(), SoftmaxClassifier(), NeuralNet(), ConvNet(), MeanSubtraction(),
                       Normalization(), PCA(), Whitening()]

# Not inheriting from sklearn.base.BaseEstimator is the point (the library does not import scikit-learn).
NOT_BASE_ESTIMATOR = "Estimator .* does not inherit from `sklearn.base.BaseEstimator`"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", NOT_BASE_ESTIMATOR, UserWarning)
    sklearn_checks = parametrize_with_checks(DEFAULT_CONSTRUCTED)


@sklearn_checks
@pytest.mark.filterwarnings(f"ignore:{NOT_BASE_ESTIMATOR}:UserWarning")
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_errors_and_warnings_are_scikit_learns_too():
    from sklearn.exceptions import DataConversionWarning as SkDataConversionWarning
    from sklearn.exceptions import NotFittedError as SkNotFittedError

    X, y = _images(30)
    with pytest.raises(SkNotFittedError) as info:
        LinearSVM().predict(X)
    assert isinstance(info.value, NotFittedError) and isinstance(info.value, UsageError)
    with pytest.warns(SkDataConversionWarning, match="column-vector y"):
        KNNClassifier(k=1).fit(X, y[:, None])


# -- the promises the checks do not spell out ---------------------------------------------------------------
@pytest.mark.parametrize("est", classifiers() + transformers(), ids=lambda e: repr(e))
def test_constructor_stores_parameters_and_set_params_round_trips(est):
    params = est.get_params()
    assert type(est)(**params).get_params() == params
    odd = {name: object() for name in params}
    assert type(est)(**odd).get_params() == odd  # stored unchanged, validated only in fit
    assert est.set_params(**params) is est
    with pytest.raises(UsageError, match="has no parameter 'bogus'"):
        est.set_params(bogus=1)
    assert repr(est).startswith(type(est).__name__ + "(")


def _images(n=60, n_classes=3, shape=(6, 6, 3), seed=0):
    return make_images(n, n_classes=n_classes, shape=shape, seed=seed)


@pytest.mark.parametrize("est", classifiers(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.int16, np.float64])
def test_classifiers_take_images_of_any_real_dtype_and_string_labels(est, dtype):
    X, y = _images()
    X = X.astype(dtype)
    by_index = est.fit(X, y).predict(X)
    names = np.array(["cat", "dog", "ship"])
    model = est.fit(X, names[y].tolist())  # a list of Python strings: same training, other names
    assert list(model.classes_) == ["cat", "dog", "ship"]
    assert model.n_features_in_ == 6 * 6 * 3
    pred = model.predict(X)
    np.testing.assert_array_equal(pred, names[by_index])
    assert model.score(X, names[y]) == np.mean(pred == names[y])
    np.testing.assert_array_equal(model.predict(X.reshape(len(X), -1)), pred)  # rows == images
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        assert proba.shape == (len(X), 3)
        np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
        np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], pred)


@pytest.mark.parametrize("est", classifiers(), ids=lambda e: type(e).__name__)
def test_string_classes_survive_a_model_file(est, tmp_path):
    from imgclf import storage
    from imgclf.io import modelfile

    X, y = _images()
    labels = np.array(["a", "bb", "ccc"], dtype=object)[y]  # object arrays too
    model = est.fit(X, labels)
    assert model.classes_.dtype.kind == "U"
    bundle = modelfile.ModelBundle(model, list(model.classes_), X.shape[1:], [])
    storage.save_model(bundle, tmp_path / "m.npz")
    back = storage.load_model(tmp_path / "m.npz").model
    np.testing.assert_array_equal(back.classes_, model.classes_)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


@pytest.mark.parametrize("est", classifiers()[1:], ids=lambda e: type(e).__name__)
def test_random_state_int_none_generator(est):
    X, y = _images(seed=3)

    def weights(rs):
        est.set_params(random_state=rs).fit(X, y)
        return next(iter(est.params_.values())).copy()  # W or W1

    np.testing.assert_array_equal(weights(7), weights(7))
    np.testing.assert_array_equal(weights(np.random.default_rng(7)), weights(np.random.default_rng(7)))
    assert not np.array_equal(weights(7), weights(8))
    weights(None)  # fresh entropy: runs
    with pytest.raises(UsageError, match="random_state must be"):
        weights("seven")


@pytest.mark.parametrize("est", classifiers() + transformers(), ids=lambda e: repr(e))
def test_clear_input_errors(est):
    X, y = _images(30)
    Xf = X.astype(np.float32)
    bad_nan = Xf.copy()
    bad_nan[0, 0, 0, 0] = np.nan
    cases = [
        (bad_nan, "contains 1 NaN or infinite value"),
        (np.full_like(Xf, np.inf), "NaN or infinite values"),
        (X[:, :, :, 0], r"must be \(N, D\) features or \(N, H, W, C\) images, got shape \(30, 6, 6\)"),
        (X[0].ravel(), "Reshape your data"),
        (X[:0], "holds no samples"),
        (X.astype(complex), "Complex data not supported"),
        (np.array([["a", "b"]] * 30), "must hold real numbers"),
    ]
    for bad, message in cases:
        with pytest.raises(DataError, match=message):
            est.fit(bad, y)
    est.fit(X, y)
    name = type(est).__name__
    for method in ("predict", "predict_proba", "decision_function", "transform"):
        if hasattr(est, method):
            with pytest.raises(DataError, match=f"X has 3 features, but {name} is expecting 108 features as input"):
                getattr(est, method)(Xf.reshape(30, -1)[:, :3])
            with pytest.raises(DataError, match="NaN"):
                getattr(est, method)(bad_nan)


@pytest.mark.parametrize("est", classifiers(), ids=lambda e: type(e).__name__)
def test_label_errors(est):
    X, y = _images(30)
    with pytest.raises(DataError, match="1-d array of 30 labels"):
        est.fit(X, y[:10])
    with pytest.raises(DataError, match="Unknown label type: continuous"):
        est.fit(X, y + 0.5)
    with pytest.raises(DataError, match="target y is None"):
        est.fit(X, None)
    with pytest.raises(DataError, match="cannot be ordered"):
        est.fit(X, np.array([1, "a", 2] * 10, dtype=object))
    if not isinstance(est, KNNClassifier):  # kNN fits one class (and predicts it)
        with pytest.raises(DataError, match="need at least 2 classes to fit, y has only 1 class"):
            est.fit(X, np.zeros(30))
    with pytest.raises(NotFittedError, match="not fitted yet"):
        type(est)().predict(X)


def test_too_few_samples():
    X, y = _images(4)
    with pytest.raises(UsageError, match=r"k=5 is larger than the number of training examples \(4 samples\)"):
        KNNClassifier(k=5).fit(X, y)
    with pytest.raises(DataError, match="at least 2 training samples .* got 1 sample"):
        PCA().fit(X[:1])


@pytest.mark.parametrize("t", transformers(), ids=lambda e: repr(e))
def test_transformers_on_images(t):
    X, _ = _images(40)
    Z = t.fit_transform(X)
    assert Z.dtype == np.float32 and len(Z) == 40
    np.testing.assert_array_equal(Z, t.transform(X))
    assert t.n_features_in_ == 108
    if isinstance(t, PCA) and t.dims is not None:
        assert Z.shape == (40, t.dims)
        return  # a truncated projection cannot be undone
    back = t.inverse_transform(Z)
    assert back.shape == X.shape
    np.testing.assert_allclose(back, X, atol=0.05 * 255)


def test_column_vector_y_is_flattened_with_a_warning():
    X, y = _images(30)
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        model = KNNClassifier(k=1).fit(X, y[:, None])
    assert model.score(X, y) == 1.0


def test_validation_helpers():
    assert check_array(np.array([[1, 2]], dtype=object)).dtype == np.float64
    with pytest.raises(TypeError, match="argument must be a string or a real number"):
        check_array(np.array([[1, {}]], dtype=object))
    with pytest.raises(DataError, match="must hold real numbers .*could not convert string to float"):
        check_array(np.array([[1, "one"]], dtype=object))
    with pytest.raises(DataError, match=r"0 feature\(s\) \(shape=\(3, 0\)\)"):
        check_array(np.zeros((3, 0)))
    with pytest.raises(DataError, match="beyond the float32 range"):
        check_array(np.array([[1e300]]))
    with pytest.raises(DataError, match="sparse"):
        from scipy import sparse

        check_array(sparse.csr_matrix(np.eye(3)))
    classes, codes = encode_labels(check_labels(np.array(["b", "a", "b"], dtype=object), 3))
    assert classes.dtype.kind == "U" and list(classes) == ["a", "b"] and list(codes) == [1, 0, 1]
    assert encode_labels(np.array([3.0, 1.0]))[0].tolist() == [1.0, 3.0]  # whole-number floats are labels
    g = np.random.default_rng(1)
    assert check_random_state(g) is g
    assert check_random_state(5).integers(1000) == np.random.default_rng(5).integers(1000)
    for bad in (-1, 1.5, True, np.random.RandomState(0)):
        with pytest.raises(UsageError, match="random_state"):
            check_random_state(bad)


def test_library_does_not_import_sklearn():
    code = ("import sys, numpy as np, imgclf\n"
            "import importlib.util; importlib.util.find_spec = lambda name, *a: None  # as if not installed\n"
            "X = np.random.default_rng(0).random((20, 4)); y = np.arange(20) % 2\n"
            "for name in imgclf.__all__:\n"
            "    est = getattr(imgclf, name)()\n"
            "    repr(est); est.get_params()\n"
            "imgclf.KNNClassifier(k=1).fit(X, y).score(X, y)\n"
            "imgclf.PCA(dims=2).fit_transform(X)\n"
            "try:\n"
            "    imgclf.LinearSVM().predict(X)\n"
            "except imgclf.validation.NotFittedError:\n"
            "    pass\n"
            "assert 'sklearn' not in sys.modules, 'sklearn was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
