"""Horizontal-mirror augmentation of a training set (imgclf.mirror) and the linear models' augment="flip"."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf import LinearSVM, SoftmaxClassifier
from imgclf.errors import UsageError
from imgclf.mirror import append_mirrors


def _naive_mirrors(X):
    out = []
    for img in X:
        h, w, c = img.shape
        out.append(np.array([[img[i, w - 1 - j] for j in range(w)] for i in range(h)]))
    return np.concatenate([X, np.array(out, X.dtype).reshape(X.shape)])


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_append_mirrors_matches_a_naive_loop(rng, dtype):
    X = rng.integers(0, 256, (5, 4, 7, 3)).astype(dtype)
    y, w = np.arange(5), rng.random(5)
    X2, y2, w2 = append_mirrors(X, y, w)
    assert X2.dtype == dtype and X2.shape == (10, 4, 7, 3) and X2.flags.c_contiguous
    np.testing.assert_array_equal(X2, _naive_mirrors(X))
    np.testing.assert_array_equal(y2, np.r_[y, y])
    np.testing.assert_array_equal(w2, np.r_[w, w])
    assert append_mirrors(X)[1:] == (None, None)


@pytest.mark.parametrize("shape", [(6, 12), (6,), (2, 3, 4)])
def test_append_mirrors_refuses_anything_but_images(shape):
    with pytest.raises(UsageError, match=r"X: horizontal mirrors need images \(N, H, W, C\)") as err:
        append_mirrors(np.zeros(shape))
    assert err.value.param == "X"


def test_append_mirrors_checks_label_count():
    with pytest.raises(UsageError) as err:
        append_mirrors(np.zeros((3, 2, 2, 1)), np.zeros(4))
    assert err.value.param == "y"


def test_flip_trains_on_originals_and_mirrors(rng):
    X = rng.integers(0, 256, (60, 6, 6, 3)).astype(np.uint8)
    y = np.arange(60) % 3
    X[y == 1, :, :3] //= 4  # a class told apart by its left half, whose mirror is its right half
    flipped = LinearSVM(solver="lbfgs", iters=30, augment="flip").fit(X, y)
    X2, y2, _ = append_mirrors(X, y)
    by_hand = LinearSVM(solver="lbfgs", iters=30).fit(X2, y2)
    np.testing.assert_allclose(flipped.params_["W"], by_hand.params_["W"], rtol=1e-6, atol=1e-7)
    assert flipped.augment_ == "flip" and by_hand.augment_ is None


@pytest.mark.parametrize("cls", [LinearSVM, SoftmaxClassifier])
def test_flip_on_feature_rows_and_unknown_augment_are_usage_errors(cls):
    X, y = np.zeros((10, 5)), np.arange(10) % 2
    with pytest.raises(UsageError, match="augment: horizontal mirrors need images") as err:
        cls(augment="flip").fit(X, y)
    assert err.value.param == "augment"
    with pytest.raises(UsageError, match="augment must be None or 'flip'") as err:
        cls(augment="crop:4").fit(X, y)
    assert err.value.param == "augment"


def test_model_arrays_record_augment_and_old_files_load(rng):
    X = rng.integers(0, 256, (30, 4, 4, 3)).astype(np.uint8)
    model = SoftmaxClassifier(solver="lbfgs", iters=5, augment="flip").fit(X, np.arange(30) % 3)
    params, arrays = model.to_arrays()
    assert params["augment"] == "flip"
    assert SoftmaxClassifier.from_arrays(params, arrays).augment == "flip"
    del params["augment"]  # a model file written before the parameter existed
    old = SoftmaxClassifier.from_arrays(params, arrays)
    assert old.augment is None
    np.testing.assert_array_equal(old.predict(X), model.predict(X))
