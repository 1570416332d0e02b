"""ConvNet's airbench options (issue #18): the whitening stem (frozen filters, bias trained for the first
epochs), gelu, bn_scale=False, dirac init, the global-max head and logit_scale: whole-model gradient
checks in float64, what the Solver leaves frozen, exact resume, model files and their hostile variants."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import check_model_gradients, make_images
from imgclf.errors import ModelFileError, UsageError
from imgclf.nn import convnet
from imgclf.nn.convnet import ConvNet

AIRBENCH = dict(filters=("4x2", "6x2"), pool_position="first", batchnorm=True, hidden=0, stem="whiten:2",
                activation="gelu", bn_scale=False, bn_momentum=0.6, dirac=True, head="maxpool", logit_scale=1 / 9,
                classifier_bias=False)


@pytest.mark.parametrize("size,kw", [
    (10, AIRBENCH),  # 10 -> stem 9 -> pools 4, 2 (floor)
    (10, dict(AIRBENCH, filters=("3x2", 4), activation="relu", head="flatten", hidden=5, logit_scale=0.5)),
    (9, dict(filters=(3, 4), stem="whiten:2", batchnorm=False, activation="gelu", hidden=4, dropout=0.3)),
    (8, dict(filters=(3, 4), hidden=0, batchnorm=True, activation="gelu", head="maxpool", dirac=True)),
    (8, dict(filters=(3,), hidden=5, batchnorm=True, activation="gelu", logit_scale=3.0, loss="svm")),
])
def test_whole_model_gradient_check(size, kw):
    X, y = make_images(6, n_classes=3, shape=(size, size, 3), seed=1)
    check_model_gradients(ConvNet(dtype="float64", reg=0.01, **kw), X, y)


def test_geometry_of_airbench_on_32x32():
    m = ConvNet(filters=("64x2", "128x2", "128x2"), pool_position="first", batchnorm=True, hidden=0,
                stem="whiten:2", head="maxpool")
    geometry = m.check_input_shape((32, 32, 3))
    assert [g[:2] for g in geometry] == [(15, 15), (15, 15), (7, 7), (7, 7), (3, 3), (3, 3)]
    m.input_shape_ = (32, 32, 3)
    m.initialize(32 * 32 * 3, 10, np.random.default_rng(0))
    assert m.stem_w_.shape == (2, 2, 3, 24) and m.params_["stem_b"].shape == (24,)
    assert m.params_["W1"].shape == (3, 3, 24, 64) and m.params_["W7"].shape == (128, 10)
    assert "stem_w" not in m.params_ and next(iter(m.params_)) == "W1" and "b7" in m.params_
    with pytest.raises(UsageError, match="does not fit") as exc:
        ConvNet(stem="whiten:3").check_input_shape((2, 2, 3))
    assert exc.value.param == "stem"


def test_stem_whitens_the_patches_and_stays_frozen():
    from imgclf.kernels.im2col import im2col

    X, y = make_images(60, n_classes=3, shape=(10, 10, 3), seed=6)
    snaps = []

    def cb(event, info):
        if event == "epoch":
            snaps.append(m.params_["stem_b"].copy())

    m = ConvNet(**dict(AIRBENCH, stem_bias_epochs=1, epochs=3, batch_size=20, random_state=0, augment=None))
    m.fit(X, y, callback=cb)
    W = m.stem_w_.reshape(12, 24).astype(np.float64)
    np.testing.assert_array_equal(W[:, :12], -W[:, 12:])
    cols = im2col((X.astype(np.float64) - m.input_mean_) * m.input_scale_, 2, 2)
    cov = cols.T @ cols / len(cols)
    lam = np.linalg.eigvalsh(cov)[::-1]
    white = W[:, :12].T @ cov @ W[:, :12]
    np.testing.assert_allclose(np.diag(white), lam / (lam + convnet.STEM_EPS), rtol=1e-4)
    assert np.abs(white - np.diag(np.diag(white))).max() < 1e-4
    again = ConvNet(**m.get_params()).fit(X, y)
    np.testing.assert_array_equal(again.stem_w_, m.stem_w_)  # deterministic: a resumed run recomputes it
    # the bias trained in epoch 1, then no more; the gammas never (bn_scale=False)
    assert np.any(snaps[0] != 0)
    np.testing.assert_array_equal(snaps[1], snaps[0])
    np.testing.assert_array_equal(snaps[2], snaps[0])
    assert all(np.all(v == 1) for k, v in m.params_.items() if k.startswith("gamma"))
    m0 = ConvNet(**dict(AIRBENCH, stem_bias_epochs=0, epochs=1, batch_size=20, random_state=0)).fit(X, y)
    assert not m0.params_["stem_b"].any()
    # the freezing ends with the fit: a gradient afterwards (a gradient check) has the stem's bias again
    _, grads = m0.loss_and_grads(m0.prepare(X[:8]), np.asarray(y[:8]))
    assert grads["stem_b"].any()
    assert m0.frozen_params(0) == {"stem_b", "gamma1", "gamma2", "gamma3", "gamma4"}


def test_dirac_init_and_logit_scale():
    m = ConvNet(filters=("4x2", 2), dirac=True, batchnorm=True, hidden=0)
    m._check_params()
    m.input_shape_ = (8, 8, 3)
    m.initialize(192, 3, np.random.default_rng(0))
    for name, n in (("W1", 3), ("W2", 4), ("W3", 2)):
        W = m.params_[name]
        eye = np.zeros(W.shape[:3] + (n,), W.dtype)
        eye[1, 1, np.arange(n), np.arange(n)] = 1
        np.testing.assert_array_equal(W[..., :n], eye)
        assert np.any(W[..., n:] != 0) or W.shape[3] == n
    X, y = make_images(30, n_classes=3, shape=(8, 8, 3), seed=2)
    a = ConvNet(filters=(4,), hidden=0, epochs=1, random_state=0).fit(X, y)
    b = ConvNet(**dict(a.get_params(), logit_scale=0.25))
    b.fit(X, y)
    b.params_ = {k: v.copy() for k, v in a.params_.items()}
    b.buffers_, b.input_mean_, b.input_scale_ = a.buffers_, a.input_mean_, a.input_scale_
    np.testing.assert_allclose(b.decision_function(X), 0.25 * a.decision_function(X), rtol=1e-12)


def test_global_max_head_matches_naive(rng):
    x = rng.standard_normal((3, 4, 5, 6))
    out, cache = convnet.global_max_forward(x)
    np.testing.assert_array_equal(out, x.max(axis=(1, 2)))
    g = rng.standard_normal(out.shape)
    dx = convnet.global_max_backward(g, cache)
    ref = np.zeros_like(x)
    for n in range(3):
        for c in range(6):
            i, j = np.unravel_index(np.argmax(x[n, :, :, c]), (4, 5))
            ref[n, i, j, c] = g[n, c]
    np.testing.assert_array_equal(dx, ref)


def test_interrupted_run_resumes_bit_exactly(tmp_path):
    X, y = make_images(60, n_classes=3, shape=(10, 10, 3), seed=3)
    Xv, yv = make_images(20, n_classes=3, shape=(10, 10, 3), seed=4)
    kw = dict(AIRBENCH, stem_bias_epochs=2, epochs=3, batch_size=20, random_state=1, augment="flip,crop:1")
    full = ConvNet(**kw).fit(X, y, Xv, yv)
    first = ConvNet(**kw).fit(X, y, Xv, yv, checkpoint_dir=tmp_path, keep_checkpoints=0)
    ckpt = sorted(tmp_path.glob("*epoch001*"))[0]
    resumed = ConvNet(**kw).fit(X, y, Xv, yv, resume=ckpt)
    for k in full.params_:
        np.testing.assert_array_equal(resumed.params_[k], full.params_[k], err_msg=k)
        np.testing.assert_array_equal(first.params_[k], full.params_[k], err_msg=k)
    for k in full.buffers_:
        np.testing.assert_array_equal(resumed.buffers_[k], full.buffers_[k], err_msg=k)
    np.testing.assert_array_equal(resumed.stem_w_, full.stem_w_)


def _saved(tmp_path):
    from imgclf import storage
    from imgclf.io import modelfile

    X, y = make_images(60, n_classes=3, shape=(10, 10, 3), seed=3)
    m = ConvNet(**dict(AIRBENCH, epochs=1, batch_size=20, random_state=0)).fit(X, y)
    path = tmp_path / "air.npz"
    storage.save_model(modelfile.ModelBundle(m, ["a", "b", "c"], (10, 10, 3)), path)
    return m, X, path


def test_model_file_round_trip(tmp_path):
    from imgclf import storage

    m, X, path = _saved(tmp_path)
    images, labels = m.weight_images((10, 10, 3))  # the stem's filters, the ones that see the image
    assert images.shape == (24, 2, 2, 3) and images.dtype == np.uint8 and len(labels) == 24
    loaded = storage.load_model(path).model
    assert "b5" not in loaded.params_ and loaded.params_["W5"].shape == (6, 3)
    assert loaded.stem == "whiten:2" and loaded.head == "maxpool" and not loaded.bn_scale
    np.testing.assert_array_equal(loaded.stem_w_, m.stem_w_)
    np.testing.assert_array_equal(loaded.predict_proba(X), m.predict_proba(X))


@pytest.mark.parametrize("change,match", [
    (lambda a: a.pop("model_stem_w"), "stem_w is missing"),
    (lambda a: a.update(model_stem_w=np.zeros((3, 2, 3, 24), np.float32)), "stem_w is shape"),
    (lambda a: a["model_stem_w"].__setitem__((0, 0, 0, 0), np.nan), "finite"),
    (lambda a: a["model_gamma1"].__setitem__(0, 2.0), "gamma1 must be all 1"),
])
def test_hostile_model_files_are_refused(tmp_path, change, match):
    from imgclf import storage
    from imgclf.io import npzfile

    _, _, path = _saved(tmp_path)
    arrays, meta = _read(path)
    arrays = {k: v.copy() for k, v in arrays.items()}
    change(arrays)
    bad = tmp_path / "bad.npz"
    npzfile.write(bad, arrays, meta)
    with pytest.raises(ModelFileError, match=match):
        storage.load_model(bad)


def _read(path):
    from imgclf.io import npzfile
    from imgclf.io.modelfile import FORMAT

    meta, arrays = npzfile.read(path, expect_format=FORMAT)
    return arrays, meta


def test_stem_w_without_a_stem_is_refused():
    m = ConvNet(filters=(2,), hidden=0)
    m._check_params()
    m.input_shape_ = (4, 4, 3)
    m.initialize(48, 2, np.random.default_rng(0))
    m.input_mean_, m.input_scale_ = np.zeros(3, np.float32), np.ones(3, np.float32)
    params, arrays = m.to_arrays()
    arrays["stem_w"] = np.zeros((2, 2, 3, 24), np.float32)
    with pytest.raises(ModelFileError, match="no stem"):
        ConvNet.from_arrays(params, arrays)


@pytest.mark.parametrize("kw,param", [
    (dict(stem="whiten"), "stem"), (dict(stem="whiten:0"), "stem"), (dict(stem="pca:2"), "stem"),
    (dict(stem=2), "stem"), (dict(stem="whiten:\u00b2"), "stem"),
    (dict(stem="whiten:2", patch_whiten=True), "patch_whiten"),
    (dict(stem_bias_epochs=-1), "stem_bias_epochs"), (dict(stem_bias_epochs=1.5), "stem_bias_epochs"),
    (dict(bn_scale="no"), "bn_scale"), (dict(dirac=1), "dirac"), (dict(dirac=True, filter_size=2), "dirac"),
    (dict(head="avg"), "head"), (dict(head=None), "head"), (dict(logit_scale=0), "logit_scale"),
    (dict(logit_scale=float("nan")), "logit_scale"), (dict(logit_scale="1/9"), "logit_scale"),
    (dict(activation="gelu:1"), None), (dict(classifier_bias=None), "classifier_bias"),
])
def test_parameters_are_checked(kw, param):
    X, y = make_images(20, n_classes=2, shape=(8, 8, 3))
    with pytest.raises(UsageError) as exc:
        ConvNet(filters=("2x2",), **kw).fit(X, y)
    if param:
        assert exc.value.param == param


def test_defaults_unchanged():
    m = ConvNet()
    assert (m.stem, m.stem_bias_epochs, m.bn_scale, m.dirac, m.head, m.logit_scale, m.classifier_bias) == (
        None, 3, True, False, "flatten", 1.0, True)
    assert not hasattr(m, "frozen_params") or m.frozen_params.__self__ is m


def test_bn_scale_false_gammas_stay_one_through_ema_and_lookahead(tmp_path):
    from imgclf import storage
    from imgclf.io import modelfile

    X, y = make_images(60, n_classes=3, shape=(10, 10, 3), seed=5)
    m = ConvNet(**dict(AIRBENCH, epochs=2, batch_size=20, random_state=0, ema=0.99, lookahead="3:0.5")).fit(X, y)
    assert all(np.all(v == 1) for k, v in m.params_.items() if k.startswith("gamma"))
    path = tmp_path / "ema.npz"
    storage.save_model(modelfile.ModelBundle(m, ["a", "b", "c"], (10, 10, 3)), path)
    np.testing.assert_array_equal(storage.load_model(path).model.predict_proba(X), m.predict_proba(X))


def test_skipping_the_frozen_stem_gradient_changes_nothing(monkeypatch):
    X, y = make_images(60, n_classes=3, shape=(10, 10, 3), seed=7)
    kw = dict(AIRBENCH, stem_bias_epochs=1, epochs=3, batch_size=20, random_state=2)
    fast = ConvNet(**kw).fit(X, y)
    original = ConvNet.frozen_params

    def never_skip(self, epoch):
        names = original(self, epoch)
        self._stem_frozen = False  # every step computes the stem's gradient, as before the skip
        return names

    monkeypatch.setattr(ConvNet, "frozen_params", never_skip)
    slow = ConvNet(**kw).fit(X, y)
    for k in fast.params_:
        np.testing.assert_array_equal(fast.params_[k], slow.params_[k], err_msg=k)
