"""KNNClassifier and cross_validate_k against the naive references; model files; real CIFAR figures."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.errors import UsageError
from imgclf.neighbors import KNNClassifier, cross_validate_k, fold_bounds, vote_counts
from reference import knn_distances_naive, knn_predict_naive, knn_select_naive, knn_vote_naive


def _images(rng, n, levels=4, shape=(3, 3, 2), n_classes=4):
    X = rng.integers(0, levels, (n,) + shape).astype(np.uint8)
    y = rng.integers(0, n_classes, n)
    return X, y


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("k", [1, 4, 7, 30])
def test_predict_matches_reference(rng, metric, k):
    X, y = _images(rng, 30)
    Xq, _ = _images(rng, 12)
    model = KNNClassifier(k=k, metric=metric).fit(X, y)
    want = knn_predict_naive(X.reshape(30, -1), y, Xq.reshape(12, -1), k, metric)
    np.testing.assert_array_equal(model.predict(Xq), want)


def test_float_features(rng):
    X = rng.standard_normal((25, 6))
    y = rng.integers(0, 3, 25)
    Xq = rng.standard_normal((9, 6))
    model = KNNClassifier(k=3).fit(X, y)
    assert model.X_train_.dtype == np.float32
    want = knn_predict_naive(X.astype(np.float32), y, Xq.astype(np.float32), 3, "l2")
    np.testing.assert_array_equal(model.predict(Xq), want)


def test_uint8_is_kept(rng):
    X, y = _images(rng, 10)
    model = KNNClassifier(k=1).fit(X, y)
    assert model.X_train_.dtype == np.uint8 and model.X_train_.shape == (10, 18)
    assert model.n_features_in_ == 18


def test_vote_tie_goes_to_smallest_label():
    X = np.array([[0], [1], [2], [3]], np.uint8)
    y = np.array([7, 3, 3, 7])  # from 0: neighbours 0 (7), 1 (3): one vote each
    assert KNNClassifier(k=2).fit(X, y).predict(np.array([[0]], np.uint8))[0] == 3
    # distance tie between rows 1 and 3 (both 1 away from 2): the lower index (label 3) is nearer
    assert KNNClassifier(k=1).fit(X[[0, 1, 3]], y[[0, 1, 3]]).predict(np.array([[2]], np.uint8))[0] == 3


def test_vote_counts_matches_reference(rng):
    codes = rng.integers(0, 4, (50, 9))
    got = vote_counts(codes, 4, [1, 2, 5, 9])
    for row, k in zip(got, [1, 2, 5, 9]):
        np.testing.assert_array_equal(row, knn_vote_naive(codes[:, :k]))


def test_string_labels_and_proba(rng):
    X, y = _images(rng, 20, n_classes=3)
    names = np.array(["cat", "dog", "emu"])[y]
    model = KNNClassifier(k=5).fit(X, names)
    assert list(model.classes_) == ["cat", "dog", "emu"]
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert set(model.predict(X)) <= set(names)
    assert 0 <= model.score(X, names) <= 1


def test_kneighbors_distances(rng):
    X = rng.standard_normal((15, 4))
    model = KNNClassifier(k=3).fit(X, np.zeros(15, int))
    dist, idx = model.kneighbors(X[:5])
    ref = knn_distances_naive(X[:5].astype(np.float32), X.astype(np.float32), "l2")
    rd, ri = knn_select_naive(ref, 3)
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_allclose(dist, np.sqrt(rd), atol=1e-6)
    assert model.kneighbors(X[:2], 2, return_distance=False).shape == (2, 2)


def test_params_idiom():
    model = KNNClassifier(k=0, metric="nope", memory_mb=3)  # stored unchanged, validated at fit
    assert model.get_params() == {"k": 0, "metric": "nope", "memory_mb": 3}
    assert model.set_params(k=2, metric="l1") is model and model.k == 2
    with pytest.raises(UsageError):
        model.set_params(foo=1)


@pytest.mark.parametrize("params,X,y,message", [
    ({"k": 0}, np.zeros((3, 2), np.uint8), [0, 1, 0], "k must be"),
    ({"k": 4}, np.zeros((3, 2), np.uint8), [0, 1, 0], "larger than the number of training"),
    ({"metric": "cos"}, np.zeros((3, 2), np.uint8), [0, 1, 0], "unknown metric"),
    ({}, np.zeros((0, 2), np.uint8), [], "empty"),
    ({"k": 1}, np.array([[0.0, np.nan]]), [0], "NaN"),
    ({"k": 1}, np.zeros((3, 2)), [0, 1], "one label per row"),
])
def test_fit_errors(params, X, y, message):
    with pytest.raises(UsageError, match=message):
        KNNClassifier(**params).fit(X, np.asarray(y))


def test_predict_errors():
    model = KNNClassifier(k=1)
    with pytest.raises(UsageError, match="not fitted"):
        model.predict(np.zeros((1, 2)))
    model.fit(np.zeros((3, 2), np.uint8), [0, 1, 2])
    with pytest.raises(UsageError, match="features"):
        model.predict(np.zeros((1, 3), np.uint8))
    with pytest.raises(UsageError, match="NaN"):
        model.predict(np.array([[np.nan, 0.0]]))


def test_model_file_round_trip(tmp_path, rng):
    from imgclf.io.modelfile import ModelBundle
    from imgclf.storage import load_model as load
    from imgclf.storage import save_model as save

    X, y = _images(rng, 20)
    model = KNNClassifier(k=3, metric="l1").fit(X, y)
    save(ModelBundle(model, ["a", "b", "c", "d"], (3, 3, 2)), tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert back.kind == "knn" and back.model.get_params() == model.get_params()
    assert back.model.X_train_.dtype == np.uint8
    np.testing.assert_array_equal(back.model.predict(X), model.predict(X))


def test_fold_bounds():
    assert fold_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_cross_validate_matches_reference(rng, metric):
    X, y = _images(rng, 24)
    ks = [1, 2, 5, 9]
    cv = cross_validate_k(X, y, ks, 3, metric=metric)
    Xf = X.reshape(24, -1)
    for f, (a, b) in enumerate(fold_bounds(24, 3)):
        keep = np.r_[0:a, b:24]
        for row, k in enumerate(ks):
            pred = knn_predict_naive(Xf[keep], y[keep], Xf[a:b], k, metric)
            assert cv.accuracies[row, f] == pytest.approx(np.mean(pred == y[a:b]))
    best = ks[int(np.argmax(cv.mean))]  # argmax: first (smaller k) among equal means
    assert cv.best_k == best


def test_cross_validate_errors(rng):
    X, y = _images(rng, 10)
    for kwargs, message in [({"k_values": [], "folds": 2}, "at least one k"),
                            ({"k_values": [6], "folds": 2}, "larger than"),
                            ({"k_values": [1], "folds": 1}, "folds"),
                            ({"k_values": [1], "folds": 11}, "folds")]:
        with pytest.raises(UsageError, match=message):
            cross_validate_k(X, y, **kwargs)


def test_cifar_reference_figures(cifar_dir, monkeypatch):
    """First 5000 train vs first 500 test on raw pixels (README reference figures)."""
    from imgclf.datasets import load

    monkeypatch.setenv("IMGCLF_DATA", str(cifar_dir.parent))
    ds = load("cifar10", val=0, n_train=5000, n_test=500)
    tr, te = ds.get("train"), ds.get("test")
    for metric, k, want in [("l2", 1, 0.274), ("l2", 10, 0.282), ("l1", 5, 0.302)]:
        assert KNNClassifier(k=k, metric=metric).fit(tr.X, tr.y).score(te.X, te.y) == pytest.approx(want)
