import numpy as np
import pytest

from imgclf.errors import UsageError
from imgclf.gradcheck import check_gradients
from imgclf.losses import softmax, softmax_loss, svm_loss
from imgclf.linear import LinearSVM, SoftmaxClassifier
from reference import softmax_loss_naive, svm_loss_naive


def _rel(a, b):
    """Norm-wise relative error: entries that cancel to ~1e-17 must not count as 100% off."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


def _problem(rng, n=12, d=7, c=4, scale=1.0):
    X = rng.standard_normal((n, d)) * scale
    y = rng.integers(0, c, n)
    W = rng.standard_normal((d + 1, c)) * 0.1
    return X, y, W


def _model_loss(cls, W, X, y, reg, bias_trick=True, **kw):
    m = cls(reg=reg, bias_trick=bias_trick, **kw)
    m.initialize(X.shape[1], W.shape[1], np.random.default_rng(0), dtype=np.float64)
    if bias_trick:
        m.params_["W"][...] = W
    else:
        m.params_["W"][...] = W[:-1]
        m.params_["b"][...] = W[-1]
    return m.loss_and_grads(X, y)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("delta", [1.0, 0.5])
def test_svm_vectorised_matches_naive(rng, squared, delta):
    X, y, W = _problem(rng)
    loss, grads = _model_loss(LinearSVM, W, X, y, reg=0.3, delta=delta, squared_hinge=squared)
    ref_loss, ref_dW = svm_loss_naive(W, X, y, 0.3, delta=delta, squared=squared, bias_row=True)
    assert _rel(loss, ref_loss) < 1e-6
    assert _rel(grads["W"], ref_dW) < 1e-6


def test_softmax_vectorised_matches_naive(rng):
    X, y, W = _problem(rng)
    loss, grads = _model_loss(SoftmaxClassifier, W, X, y, reg=0.3)
    ref_loss, ref_dW = softmax_loss_naive(W, X, y, 0.3, bias_row=True)
    assert _rel(loss, ref_loss) < 1e-6
    assert _rel(grads["W"], ref_dW) < 1e-6


@pytest.mark.parametrize("cls", [LinearSVM, SoftmaxClassifier])
def test_separate_bias_matches_bias_trick(rng, cls):
    X, y, W = _problem(rng)
    l1, g1 = _model_loss(cls, W, X, y, reg=0.2, bias_trick=True)
    l2, g2 = _model_loss(cls, W, X, y, reg=0.2, bias_trick=False)
    assert l1 == pytest.approx(l2, rel=1e-12)
    np.testing.assert_allclose(g1["W"][:-1], g2["W"], rtol=1e-12)
    np.testing.assert_allclose(g1["W"][-1], g2["b"], rtol=1e-12)


def test_bias_row_is_not_regularised(rng):
    X, y, W = _problem(rng)
    base, _ = _model_loss(SoftmaxClassifier, W, X, y, reg=0.0)
    # Penalty counts every row of W but the last.
    with_reg, _ = _model_loss(SoftmaxClassifier, W, X, y, reg=1.0)
    assert with_reg - base == pytest.approx(float(np.sum(W[:-1] ** 2)), rel=1e-12)


@pytest.mark.parametrize("loss_fn", [lambda s, y: svm_loss(s, y), lambda s, y: svm_loss(s, y, squared=True),
                                     softmax_loss], ids=["hinge", "squared-hinge", "softmax"])
def test_losses_pass_gradcheck(rng, loss_fn):
    scores = rng.standard_normal((9, 5))
    y = rng.integers(0, 5, 9)
    _, dscores = loss_fn(scores, y)
    report = check_gradients(lambda p: loss_fn(p["s"], y)[0], {"s": scores}, {"s": dscores},
                             n_checks=45, rng=rng)
    assert report.ok
    assert report.max_rel_error < 1e-6


def test_softmax_is_stable_for_huge_scores():
    scores = np.array([[1000.0, 0.0, -1000.0], [5e4, 5e4, 0.0]])
    loss, d = softmax_loss(scores, np.array([2, 0]))
    assert np.isfinite(loss) and np.isfinite(d).all()
    assert loss == pytest.approx((2000.0 + np.log(2)) / 2)
    np.testing.assert_allclose(softmax(scores).sum(axis=1), 1)


def test_softmax_float32_gradient_has_no_subnormals():
    scores = np.array([[0.0, -95.0, -200.0]], dtype=np.float32)
    _, d = softmax_loss(scores, np.array([0]))
    assert d.dtype == np.float32
    tiny = np.finfo(np.float32).tiny
    assert not ((d != 0) & (np.abs(d) < tiny)).any()


def test_initial_losses_near_ln_c_and_c_minus_1(rng):
    scores = rng.standard_normal((500, 10)) * 1e-3
    y = rng.integers(0, 10, 500)
    assert softmax_loss(scores, y)[0] == pytest.approx(np.log(10), rel=1e-3)
    assert svm_loss(scores, y)[0] == pytest.approx(9, rel=1e-2)


@pytest.mark.parametrize("scores,y,msg", [
    (np.zeros((3, 2)), np.array([0, 1]), "1-d array of 3"),
    (np.zeros((2, 2)), np.array([0, 2]), "labels must lie in 0..1"),
    (np.zeros((2, 2)), np.array([0.0, 1.0]), "integers"),
    (np.zeros(4), np.array([0]), "(N, C)"),
    (np.zeros((0, 3)), np.zeros(0, np.int64), "empty batch"),
])
def test_bad_inputs_are_usage_errors(scores, y, msg):
    with pytest.raises(UsageError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        softmax_loss(scores, y)


def test_label_smoothing_matches_the_smoothed_cross_entropy_and_passes_gradcheck(rng):
    scores = rng.standard_normal((9, 5)) * 3
    y = rng.integers(0, 5, 9)
    e = 0.2
    loss, d = softmax_loss(scores, y, smoothing=e)
    # Reference: cross-entropy against the target (1 - e) onehot + e / C, written out.
    logp = scores - scores.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    target = np.full(scores.shape, e / 5)
    target[np.arange(9), y] += 1 - e
    assert loss == pytest.approx(float(-(target * logp).sum(axis=1).mean()), rel=1e-12)
    np.testing.assert_allclose(d, (np.exp(logp) - target) / 9, atol=1e-15)
    report = check_gradients(lambda p: softmax_loss(p["s"], y, smoothing=e)[0], {"s": scores}, {"s": d},
                             n_checks=45, rng=rng)
    assert report.ok and report.max_rel_error < 1e-6
    assert softmax_loss(scores, y, smoothing=0.0)[0] == softmax_loss(scores, y)[0]
    w = rng.random(9) + 0.5  # with sample (class) weights: the mean of weight_i * L_i
    loss_w, d_w = softmax_loss(scores, y, sample_weight=w, smoothing=e)
    assert loss_w == pytest.approx(float(-(w * (target * logp).sum(axis=1)).mean()), rel=1e-12)
    assert check_gradients(lambda p: softmax_loss(p["s"], y, sample_weight=w, smoothing=e)[0], {"s": scores},
                           {"s": d_w}, n_checks=45, rng=rng).ok
    with pytest.raises(UsageError, match="label smoothing"):
        softmax_loss(scores, y, smoothing=1.0)
