"""ConvNet: whole-model gradient checks in float64, fitting, geometry errors, model files, filter images."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import check_model_gradients, make_images
from imgclf.errors import UsageError
from imgclf.nn.convnet import ConvNet, parse_filters


@pytest.mark.parametrize("size,kw", [
    (8, dict(filters=("3x2", 4), hidden=5, dropout=0.3)),
    (8, dict(filters=(3, 4), hidden=0, batchnorm=True)),
    (6, dict(filters=(3,), hidden=0, batchnorm=True, activation="tanh", pool=3)),
    (5, dict(filters=(2,), hidden=4, filter_size=5, loss="svm", pool=1)),
    (8, dict(filters=("3x2", 4), hidden=5, dropout=0.3, label_smoothing=0.2)),
    (8, dict(filters=(3, 4), hidden=0, batchnorm=True, bn_momentum=0.6)),
    # airbench's conv-pool-conv block: the fused bn+relu+pool layer, then a convolution at half resolution
    (8, dict(filters=("3x2", "4x2"), hidden=0, batchnorm=True, pool_position="first")),
    (8, dict(filters=("3x2", 4), hidden=5, pool_position="first")),
])
def test_whole_model_gradient_check(size, kw):
    X, y = make_images(6, n_classes=3, shape=(size, size, 3), seed=1)
    model = check_model_gradients(ConvNet(dtype="float64", reg=0.01, **kw), X, y)
    assert all(p.ndim == 4 for k, p in model.params_.items() if k == "W1")


def test_batchnorm_layers_have_no_bias_before_the_norm():
    X, y = make_images(6, n_classes=3, shape=(8, 8, 3))
    m = ConvNet(filters=(3, 4), hidden=5, batchnorm=True)
    m._check_params()
    m.input_shape_ = X.shape[1:]
    m.initialize(192, 3, np.random.default_rng(0))
    assert sorted(k for k in m.params_ if k.startswith("b")) == ["b4", "beta1", "beta2", "beta3"]
    assert m.params_["W1"].shape == (3, 3, 3, 3) and m.params_["W3"].shape == (2 * 2 * 4, 5)


def test_fits_separable_images_and_round_trips_through_a_model_file(tmp_path):
    from imgclf import storage
    from imgclf.io import modelfile

    X, y = make_images(240, n_classes=3, shape=(8, 8, 3), seed=1)
    Xv, yv = make_images(60, n_classes=3, shape=(8, 8, 3), seed=2)
    m = ConvNet(filters=(4, 8), hidden=16, batchnorm=True, epochs=3, batch_size=32, augment="flip,crop:1",
                random_state=0).fit(X, y, Xv, yv)
    assert m.score(Xv, yv) > 0.9
    assert m.params_["W1"].dtype == np.float32 and m.input_shape_ == (8, 8, 3)
    path = tmp_path / "conv.npz"
    storage.save_model(modelfile.ModelBundle(m, ["a", "b", "c"], (8, 8, 3)), path)
    loaded = storage.load_model(path).model
    assert isinstance(loaded, ConvNet) and loaded.kind == "convnet"
    np.testing.assert_array_equal(loaded.predict(Xv), m.predict(Xv))
    np.testing.assert_allclose(loaded.predict_proba(Xv), m.predict_proba(Xv), rtol=1e-6)
    # Same seed, same result.
    again = ConvNet(filters=(4, 8), hidden=16, batchnorm=True, epochs=3, batch_size=32, augment="flip,crop:1",
                    random_state=0).fit(X, y, Xv, yv)
    np.testing.assert_array_equal(again.params_["W1"], m.params_["W1"])


def test_grey_images_and_flat_rows_with_input_shape():
    X, y = make_images(90, n_classes=3, shape=(6, 6, 1), seed=4)
    m = ConvNet(filters=(4,), hidden=8, epochs=2, batch_size=30, random_state=0).fit(X, y)
    assert m.params_["W1"].shape == (3, 3, 1, 4)
    flat = ConvNet(filters=(4,), hidden=8, epochs=2, batch_size=30, random_state=0, input_shape=(6, 6, 1))
    flat.fit(X.reshape(90, -1), y)
    np.testing.assert_array_equal(flat.predict(X.reshape(90, -1)), m.predict(X))
    # Without input_shape, rows are 1x1 images of 36 channels: nothing to pool, the filters see each row whole.
    rows = ConvNet(filters=(4,), hidden=8, epochs=2, batch_size=30, random_state=0).fit(X.reshape(90, -1), y)
    assert rows.input_shape_ == (1, 1, 36) and rows.params_["W1"].shape == (3, 3, 36, 4)


def test_predicts_in_chunks_with_bounded_buffers(monkeypatch):
    import imgclf.nn.convnet as cn

    X, y = make_images(60, n_classes=3, shape=(8, 8, 3))
    m = ConvNet(filters=(4,), hidden=8, epochs=1, batch_size=20, random_state=0).fit(X, y)
    full = m.decision_function(X)
    monkeypatch.setattr(cn, "PREDICT_CHUNK", 7)
    np.testing.assert_allclose(m.decision_function(X), full, rtol=1e-5, atol=1e-6)
    assert all(len(ws) <= ws.max_buffers for ws in m._workspaces.values())


def test_geometry_and_parameter_errors():
    X, y = make_images(10, n_classes=2, shape=(12, 12, 3))
    with pytest.raises(UsageError, match=r"convolution layer 3 of filters=\(4, 4, 4\) on 12x12x3 images: max pooling "
                                          r"height: .* = 1.5 is not an integer"):
        ConvNet(filters=(4, 4, 4)).fit(X, y)
    with pytest.raises(UsageError, match="does not fit an input of 1"):
        ConvNet(filters=(4, 4, 4, 4, 4), pool=2).fit(X[:, :8, :8], y)
    with pytest.raises(UsageError, match="filters must be filter counts"):
        ConvNet(filters=("32y",)).fit(X, y)
    with pytest.raises(UsageError, match="filter_size must be an integer >= 1"):
        ConvNet(filter_size=0).fit(X, y)
    with pytest.raises(UsageError, match="dropout"):
        ConvNet(dropout=1.5).fit(X, y)
    assert parse_filters("32x2,64") == [(32, 2), (64, 1)]
    assert parse_filters((16, "8x3")) == [(16, 1), (8, 3)]


def test_estimator_idiom_and_weight_images():
    m = ConvNet(filters=(5,), hidden=0, lr=0.01)
    assert m.get_params()["filters"] == (5,) and m.get_params()["lr"] == 0.01
    assert m.set_params(filter_size=5) is m and m.filter_size == 5
    assert repr(m).startswith("ConvNet(")
    with pytest.raises(UsageError):
        m.predict(np.zeros((1, 8, 8, 3)))
    X, y = make_images(30, n_classes=3, shape=(8, 8, 3))
    m.set_params(epochs=1, batch_size=10).fit(X, y)
    images, labels = m.weight_images((8, 8, 3))
    assert images.shape == (5, 5, 5, 3) and images.dtype == np.uint8 and len(labels) == 5
    assert images.reshape(5, -1).min(axis=1).tolist() == [0] * 5
    assert images.reshape(5, -1).max(axis=1).tolist() == [255] * 5
    with pytest.raises(UsageError, match="channels"):
        m.weight_images((8, 8, 1))


def test_im2col_buffers_are_reused_across_minibatches():
    X, y = make_images(40, n_classes=2, shape=(8, 8, 3))
    m = ConvNet(filters=(4, 8), hidden=8, epochs=1, batch_size=20, random_state=0, conv_backend="im2col").fit(X, y)
    rng = np.random.default_rng(0)
    _, caches1 = m._forward(m.prepare(X[:20]), "train", rng)
    m.loss_and_grads(m.prepare(X[:20]), np.asarray(y[:20]), "train", rng)
    _, caches2 = m._forward(m.prepare(X[20:]), "train", rng)
    for layer in range(2):
        assert caches2[layer][0][0][1] is caches1[layer][0][0][1]  # conv_act cache -> conv cache -> cols


def test_flip_tta_scores_are_the_mean_over_the_image_and_its_mirror():
    X, y = make_images(40, n_classes=2, shape=(8, 8, 3), seed=4)
    m = ConvNet(filters=(3,), hidden=4, batchnorm=True, epochs=1, batch_size=10, random_state=0).fit(X, y)
    plain = m.decision_function(X)
    mirrored = m.decision_function(X[:, :, ::-1])
    m.tta = "flip"
    np.testing.assert_allclose(m.decision_function(X), (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="tta"):
        ConvNet(tta="rotate").fit(X, y)


def test_flip_shift_tta_is_airbench_level_2():
    """tta="flip+shift": 0.5 flip(x) + 0.25 flip(x[-1,-1]) + 0.25 flip(x[+1,+1]), the shifts cropped from the
    image reflect-padded by one pixel, by hand from plain scores of raw images."""
    X, y = make_images(40, n_classes=3, shape=(8, 6, 3), seed=4)
    m = ConvNet(filters=(3,), hidden=4, batchnorm=True, epochs=1, batch_size=10, random_state=0).fit(X, y)

    def flip(Z):
        return (m.decision_function(Z) + m.decision_function(Z[:, :, ::-1])) / 2

    padded = np.pad(X, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    assert padded.shape == (40, 10, 8, 3)
    want = 0.5 * flip(X) + 0.25 * flip(padded[:, 0:8, 0:6]) + 0.25 * flip(padded[:, 2:10, 2:8])
    m.tta = "flip+shift"
    np.testing.assert_allclose(m.decision_function(X), want, rtol=1e-10, atol=1e-12)
    assert not np.allclose(want, flip(X))
    np.testing.assert_array_equal(m.predict(X), m.classes_[np.argmax(want, axis=1)])
    # The same scores whatever the batch (each image's shifts are its own).
    np.testing.assert_allclose(m.decision_function(X[7:9]), want[7:9], rtol=1e-10, atol=1e-12)
    with pytest.raises(UsageError, match="'flip' or 'flip\\+shift'") as exc:
        ConvNet(tta="shift").fit(X, y)
    assert exc.value.param == "tta"


def test_airbench_options_round_trip_through_a_model_file(tmp_path):
    """bias_lr_scale, lookahead K:ramp, warmup:P:S:E, crop:P:reflect and tta flip+shift train, are saved and
    load back to the same predictions; a model file from before them (no bias_lr_scale) loads with the default."""
    from imgclf import storage
    from imgclf.io import modelfile, npzfile

    X, y = make_images(60, n_classes=3, shape=(8, 8, 3), seed=2)
    params = dict(filters=(4,), hidden=0, batchnorm=True, optim="nesterov", lr=0.2, optim_options={"momentum": 0.85},
                  batch_size=20, epochs=2, bias_lr_scale=16.0, lookahead="2:ramp", lr_schedule="warmup:0.23:0.2:0.07",
                  augment="flip:alt,crop:2:reflect", tta="flip+shift", label_smoothing=0.2, random_state=0)
    m = ConvNet(**params).fit(X, y)
    assert np.isfinite(m.params_["beta1"]).all() and m.stopped_ is None
    path = tmp_path / "m.npz"
    storage.save_model(modelfile.ModelBundle(m, ["a", "b", "c"], (8, 8, 3), [], m.history_, 0, {}), path)
    back = storage.load_model(path).model
    mine, theirs = m.get_params(), back.get_params()
    for key in ("bias_lr_scale", "lookahead", "lr_schedule", "augment", "tta"):
        assert theirs[key] == mine[key] == params[key], key
    np.testing.assert_array_equal(back.decision_function(X), m.decision_function(X))
    meta, arrays = npzfile.read(path)
    del meta["hyperparameters"]["bias_lr_scale"]
    npzfile.write(path, arrays, meta)
    assert storage.load_model(path).model.bias_lr_scale == 1.0


def test_bn_momentum_sets_the_running_statistics_decay():
    X, y = make_images(20, n_classes=2, shape=(8, 8, 3), seed=4)
    runs = {}
    for mom in (0.9, 0.0):
        m = ConvNet(filters=(3,), hidden=0, batchnorm=True, bn_momentum=mom, epochs=1, batch_size=20, random_state=0)
        m.fit(X, y)
        runs[mom] = m.buffers_["running_mean1"].copy()
        if mom == 0.0:  # one step with momentum 0: the running mean is the batch's own mean
            m2 = ConvNet(filters=(3,), hidden=0, batchnorm=True, random_state=0)
            m2._check_params()
            m2.input_shape_ = X.shape[1:]
            m2.input_mean_, m2.input_scale_ = m.input_mean_, m.input_scale_
            m2.initialize(192, 2, np.random.default_rng(0))
    assert not np.allclose(runs[0.9], runs[0.0])
    with pytest.raises(UsageError, match="bn_momentum"):
        ConvNet(bn_momentum=1.0).fit(X, y)


def test_patch_whitening_init_whitens_the_training_patches():
    from imgclf.kernels.im2col import im2col
    from imgclf.nn import convnet

    X, y = make_images(60, n_classes=3, shape=(10, 10, 3), seed=6)
    m = ConvNet(filters=(8,), hidden=0, batchnorm=True, patch_whiten=True, epochs=1, batch_size=60, lr=1e-12,
                optim="sgd", random_state=0).fit(X, y)
    W = m.params_["W1"].reshape(27, 8).astype(np.float64)
    np.testing.assert_array_equal(W[:, :4], -W[:, 4:])
    cols = im2col(((X.astype(np.float64) - m.input_mean_) * m.input_scale_), 3, 3)
    cov = np.cov((cols @ W[:, :4]).T)
    lam = np.linalg.eigvalsh(np.cov(cols.T))[::-1][:4]
    # Unit variance up to the eps added to each eigenvalue, and uncorrelated.
    np.testing.assert_allclose(np.diag(cov), lam / (lam + convnet.WHITEN_EPS), rtol=1e-3)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 1e-3
    again = ConvNet(**m.get_params()).fit(X, y)
    np.testing.assert_array_equal(again.params_["W1"], m.params_["W1"])  # seeded: the same filters


def _layout(model, shape):
    model._check_params()
    return model._conv_layers(shape), model._geometry(shape)


def test_pool_position_first_pools_after_each_stages_first_convolution():
    shape = (16, 16, 3)
    layers_, geometry = _layout(ConvNet(filters=("4x2", "8x3"), pool_position="first"), shape)
    assert layers_ == [(4, True), (4, False), (8, True), (8, False), (8, False)]
    assert geometry == [(8, 8, 4), (8, 8, 4), (4, 4, 8), (4, 4, 8), (4, 4, 8)]
    layers_, geometry = _layout(ConvNet(filters=("4x2", "8x3")), shape)  # the default: pool last
    assert layers_ == [(4, False), (4, True), (8, False), (8, False), (8, True)]
    assert geometry == [(16, 16, 4), (8, 8, 4), (8, 8, 8), (8, 8, 8), (4, 4, 8)]
    # One convolution per stage: the same net either way; 1x1 "images" (feature rows) are never pooled.
    assert _layout(ConvNet(filters=(4, 8), pool_position="first"), shape) == _layout(ConvNet(filters=(4, 8)), shape)
    assert _layout(ConvNet(filters=("4x2",), pool_position="first"), (1, 1, 12))[0] == [(4, False), (4, False)]


def test_pool_position_first_fits_and_round_trips_through_a_model_file(tmp_path):
    from imgclf import storage
    from imgclf.io import modelfile

    X, y = make_images(240, n_classes=3, shape=(8, 8, 3), seed=1)
    Xv, yv = make_images(60, n_classes=3, shape=(8, 8, 3), seed=2)
    kw = dict(filters=("4x2", "8x2"), hidden=0, batchnorm=True, pool_position="first", epochs=3, batch_size=32,
              augment="flip,crop:1", random_state=0)
    m = ConvNet(**kw).fit(X, y, Xv, yv)
    assert m.score(Xv, yv) > 0.9
    assert m.params_["W2"].shape == (3, 3, 4, 4) and m.params_["W5"].shape == (2 * 2 * 8, 3)
    path = tmp_path / "conv.npz"
    storage.save_model(modelfile.ModelBundle(m, ["a", "b", "c"], (8, 8, 3)), path)
    loaded = storage.load_model(path).model
    assert loaded.pool_position == "first"
    np.testing.assert_array_equal(loaded.predict_proba(Xv), m.predict_proba(Xv))
    again = ConvNet(**kw).fit(X, y, Xv, yv)  # same seed, same result
    np.testing.assert_array_equal(again.params_["W2"], m.params_["W2"])


@pytest.mark.parametrize("value", ["middle", "FIRST", None, 1, ["first"]])
def test_pool_position_is_checked(value):
    X, y = make_images(20, n_classes=2, shape=(8, 8, 3))
    with pytest.raises(UsageError, match=r"^pool_position must be 'last' or 'first', got "):
        ConvNet(filters=("2x2",), pool_position=value).fit(X, y)
