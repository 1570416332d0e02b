import numpy as np
import pytest

from imgclf import sanity
from imgclf.errors import UsageError
from imgclf.gradcheck import check_gradients, relative_error, verdict


def test_relative_error_definition():
    assert relative_error(1.0, 1.0) == 0
    assert relative_error(0.0, 0.0) == 0
    assert relative_error(2.0, 1.0) == pytest.approx(0.5)
    assert relative_error(-1.0, 1.0) == pytest.approx(2.0)


def test_verdict_thresholds_follow_cs231n():
    assert verdict(0.5) == "wrong"
    assert verdict(1e-3) == "uncomfortable"
    assert verdict(1e-5) == "ok"
    assert verdict(1e-9) == "good"


def test_correct_gradient_passes_and_wrong_one_fails(rng):
    A = rng.standard_normal((4, 4))
    x = rng.standard_normal((4, 3))
    f = lambda p: float(np.sum(np.tanh(A @ p["x"])))  # noqa: E731
    good = A.T @ (1 - np.tanh(A @ x) ** 2)
    report = check_gradients(f, {"x": x}, {"x": good}, n_checks=12, rng=rng)
    assert report.ok and report.params[0].status == "good"
    report = check_gradients(f, {"x": x}, {"x": good * 1.1}, n_checks=12, rng=rng)
    assert not report.ok and report.params[0].status == "wrong"


def test_works_in_float64_even_for_float32_params(rng):
    x = rng.standard_normal(5).astype(np.float32)
    seen = []

    def f(p):
        seen.append(p["x"].dtype)
        return float(np.sum(p["x"] ** 3))

    report = check_gradients(f, {"x": x}, {"x": 3 * x.astype(np.float64) ** 2}, n_checks=5, rng=rng)
    assert set(seen) == {np.dtype(np.float64)}
    assert report.max_rel_error < 1e-7


def test_kinks_are_noted_not_failed():
    # |x| at 0 with the subgradient 0: the centered difference is 0 too, but at x = h/2 it is not.
    h = 1e-5
    x = np.array([h / 2, 1.0])
    report = check_gradients(lambda p: float(np.abs(p["x"]).sum()), {"x": x}, {"x": np.array([-1.0, 1.0])},
                             n_checks=2, h=h)
    assert report.ok
    assert report.params[0].kinks == 1


def test_parameter_restored_after_check(rng):
    x = rng.standard_normal(6)
    seen = {}
    check_gradients(lambda p: seen.update(p) or float(p["x"].sum()), {"x": x}, {"x": np.ones(6)},
                    n_checks=6, rng=rng)
    np.testing.assert_array_equal(seen["x"], x)


def test_bad_arguments():
    with pytest.raises(UsageError, match="no analytic gradient"):
        check_gradients(lambda p: 0.0, {"x": np.zeros(2)}, {})
    with pytest.raises(UsageError, match="shape"):
        check_gradients(lambda p: 0.0, {"x": np.zeros(2)}, {"x": np.zeros(3)})


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_sanity_grad_check_passes_for_linear_models(kind):
    report = sanity.grad_check(kind, n_checks=20, rng=np.random.default_rng(1))
    assert report.ok
    assert report.max_rel_error < 1e-6


def test_sanity_grad_check_catches_a_broken_gradient(monkeypatch):
    from imgclf.linear import SoftmaxClassifier

    real = SoftmaxClassifier.loss_and_grads

    def broken(self, X, y, mode="train", rng=None, l2=True):
        loss, grads = real(self, X, y, mode, rng)
        grads["W"] = grads["W"] * 0.5
        return loss, grads

    monkeypatch.setattr(SoftmaxClassifier, "loss_and_grads", broken)
    assert not sanity.grad_check("softmax").ok


def test_sanity_unknown_kind():
    with pytest.raises(UsageError, match="no sanity checks for model kind 'nope'"):
        sanity.grad_check("nope")
