"""The one-vs-rest SVM loss and the full-batch L-BFGS solver (imgclf/lbfgs.py, solver="lbfgs")."""

import numpy as np
import pytest

from imgclf import lbfgs
from imgclf.errors import UsageError
from imgclf.linear import LinearSVM, SoftmaxClassifier
from imgclf.losses import ovr_svm_loss
from imgclf.sanity import check_model_gradients
from reference import ovr_svm_loss_naive, softmax_loss_naive, svm_loss_naive

OVR = {"multiclass": "ovr"}
L2SVM = {"multiclass": "ovr", "squared_hinge": True}


def _data(n=120, d=7, c=3, noise=1.5, seed=0, offset=2.0):
    """Overlapping Gaussian blobs off the origin (so the bias matters), float32."""
    r = np.random.default_rng(seed)
    centers = r.standard_normal((c, d)) + offset
    y = np.arange(n) % c
    return (centers[y] + noise * r.standard_normal((n, d))).astype(np.float32), y


def _naive(model, W, X, y, sample_weight=None):
    """The reference loss of `model`'s kind for W (D+1, C) with the bias as last row."""
    if isinstance(model, SoftmaxClassifier):
        assert sample_weight is None
        return softmax_loss_naive(W, X, y, model.reg_, bias_row=True)
    if model.multiclass == "ovr":
        return ovr_svm_loss_naive(W, X, y, model.reg_, delta=model.delta, squared=model.squared_hinge,
                                  bias_row=True, sample_weight=sample_weight)
    assert sample_weight is None
    return svm_loss_naive(W, X, y, model.reg_, delta=model.delta, squared=model.squared_hinge, bias_row=True)


# -- the one-vs-rest loss --------------------------------------------------------------------------------
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("delta", [1.0, 0.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_ovr_loss_matches_naive_loops(rng, squared, delta, weighted):
    X, y = _data(30, 5, 4)
    X = X.astype(np.float64)
    W = 0.3 * rng.standard_normal((6, 4))
    weight = rng.uniform(0.2, 3.0, len(y)) if weighted else None
    loss, dS = ovr_svm_loss(X @ W[:-1] + W[-1], y, delta=delta, squared=squared, sample_weight=weight)
    ref_loss, ref_dW = ovr_svm_loss_naive(W, X, y, 0.0, delta=delta, squared=squared, bias_row=True,
                                          sample_weight=weight)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    np.testing.assert_allclose(np.vstack([X.T @ dS, dS.sum(axis=0)]), ref_dW, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("params", [OVR, L2SVM])
@pytest.mark.parametrize("class_weight", [None, {0: 3.0, 1: 0.5, 2: 1.0}])
def test_ovr_gradients_check_numerically(rng, params, class_weight):
    X, y = _data(40, 6, 3)
    model = LinearSVM(reg=0.1, class_weight=class_weight, **params).initialize(6, 3, rng, dtype=np.float64)
    model.params_["W"][...] = 0.2 * rng.standard_normal(model.params_["W"].shape)
    model.classes_ = np.arange(3)
    model._weights = model._class_weights(y)
    report = check_model_gradients(model, X.astype(np.float64), y, n_checks=20, rng=rng)
    assert report.ok and report.max_rel_error < 1e-6, report.as_dict()


def test_ovr_trains_by_sgd_through_the_fused_kernel():
    X, y = _data(150, 5, 3, noise=0.3)
    model = LinearSVM(random_state=0, reg=1e-3, lr=1e-2, epochs=20, batch_size=20, **L2SVM).fit(X, y)
    assert model.score(X, y) == 1.0


def test_unknown_solver_and_multiclass_name_the_parameter():
    X, y = _data(30)
    for params, name in [({"solver": "newton"}, "solver"), ({"multiclass": "crammer"}, "multiclass"),
                         ({"iters": 0}, "iters")]:
        with pytest.raises(UsageError) as err:
            LinearSVM(**params).fit(X, y)
        assert err.value.param == name


# -- the full-batch objective ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls,params", [(LinearSVM, L2SVM), (LinearSVM, OVR), (LinearSVM, {}),
                                        (SoftmaxClassifier, {})])
def test_objective_matches_naive_loops(rng, cls, params):
    # 3 features per row -> tiny blocks are not possible; force several blocks per share instead.
    X, y = _data(90, 5, 3)
    model = cls(reg=0.2, **params).initialize(5, 3, rng)
    model.reg_ = 0.2
    weight = rng.uniform(0.5, 2, len(y)).astype(np.float32) if params else None
    centre = X.mean(axis=0)
    objective = lbfgs.LinearObjective(X, y, 3, model._data_loss, 0.2, sample_weight=weight, centre=centre)
    objective.rows = 8
    starts = list(range(0, len(y), 8))
    objective.shares = [starts[s::lbfgs.SHARES] for s in range(lbfgs.SHARES)]
    w = 0.3 * rng.standard_normal(5 * 3 + 3)
    f, g = objective(w)
    # the objective parameterises the centred model: raw-feature weights W, bias b - centre @ W
    W = np.vstack([w[:15].reshape(5, 3), w[15:] - centre.astype(np.float64) @ w[:15].reshape(5, 3)])
    ref_f, ref_g = _naive(model, W, X.astype(np.float64), y, weight)
    assert f == pytest.approx(ref_f, rel=1e-5)
    ref_gb = ref_g[-1]
    np.testing.assert_allclose(g[15:], ref_gb, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g[:15].reshape(5, 3), ref_g[:-1] - np.outer(centre, ref_gb), rtol=1e-4, atol=1e-5)


def test_objective_is_bit_identical_for_any_thread_count(rng, monkeypatch):
    X = rng.standard_normal((3000, 300)).astype(np.float32)
    y = rng.integers(0, 10, 3000)
    model = LinearSVM(**L2SVM)
    w = 0.01 * rng.standard_normal(300 * 10 + 10)
    monkeypatch.setattr(lbfgs, "_BLOCK_BYTES", 4 * 300 * 100)  # 100-row blocks: every share holds several
    objectives = [lbfgs.LinearObjective(X, y, 10, model._data_loss, 0.01, workers=k) for k in (1, 2, 4, 2)]
    assert all(len(share) > 1 for share in objectives[0].shares)
    results = [objective(w) for objective in objectives]
    for f, g in results[1:]:
        assert f == results[0][0]
        np.testing.assert_array_equal(g, results[0][1])


# -- training --------------------------------------------------------------------------------------------
def _scipy_optimum(X, y, reg, squared=True):
    """min over (W, b) of the OvR (squared) hinge + reg |W|^2 by scipy on a float64 numpy objective."""
    from scipy.optimize import minimize

    n, d = X.shape
    c = int(y.max()) + 1
    A = np.hstack([X.astype(np.float64), np.ones((n, 1))])
    T = np.where(np.arange(c) == y[:, None], 1.0, -1.0)

    def f(w):
        W = w.reshape(d + 1, c)
        m = np.maximum(0, 1 - T * (A @ W))
        loss = np.sum(m * m if squared else m) / n + reg * np.sum(W[:-1] ** 2)
        dS = -T * (2 * m if squared else (m > 0)) / n
        g = A.T @ dS
        g[:-1] += 2 * reg * W[:-1]
        return loss, g.ravel()

    res = minimize(f, np.zeros((d + 1) * c), jac=True, method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-10,
                                                                                   "ftol": 1e-15})
    return res.fun, f


def test_lbfgs_reaches_the_optimum_of_the_objective():
    X, y = _data(300, 8, 4, noise=2.0)
    model = LinearSVM(solver="lbfgs", reg=0.01, **L2SVM).fit(X, y)
    best, f = _scipy_optimum(X, y, 0.01)
    ours = f(model.params_["W"].astype(np.float64).ravel())[0]
    assert ours == pytest.approx(best, rel=1e-4)
    assert model.stopped_ is None and model.best_epoch_ == len(model.history_)


def test_lbfgs_matches_liblinear_squared_hinge_with_a_penalised_bias_column():
    """LinearSVC(loss='squared_hinge') minimises 0.5 |w|^2 + C sum_i hinge^2 per class; with
    intercept_scaling large its bias is almost unpenalised, as ours is: same decisions."""
    sklearn_svm = pytest.importorskip("sklearn.svm")
    X, y = _data(300, 8, 4, noise=2.0)
    reg = 0.01
    C = 1 / (2 * reg * len(y))
    ref = sklearn_svm.LinearSVC(C=C, loss="squared_hinge", dual=False, tol=1e-8, intercept_scaling=1e3,
                                max_iter=10000).fit(X, y)
    model = LinearSVM(solver="lbfgs", reg=reg, **L2SVM).fit(X, y)
    np.testing.assert_allclose(model.params_["W"][:-1], ref.coef_.T, rtol=2e-2, atol=2e-3)
    np.testing.assert_allclose(model.params_["W"][-1], ref.intercept_, rtol=2e-2, atol=2e-3)


def test_lbfgs_is_deterministic_and_ignores_the_seed():
    X, y = _data(200, 6, 3)
    a = LinearSVM(solver="lbfgs", random_state=1, **L2SVM).fit(X, y)
    b = LinearSVM(solver="lbfgs", random_state=2, **L2SVM).fit(X, y)
    np.testing.assert_array_equal(a.params_["W"], b.params_["W"])


@pytest.mark.parametrize("bias_trick", [True, False])
def test_early_stopping_keeps_the_best_validation_weights(bias_trick):
    # Few noisy training rows in many dimensions, no penalty: the validation accuracy peaks early, then
    # the fit overfits; a check every iteration and a short patience make that visible.
    X, y = _data(60, 40, 3, noise=3.0, seed=1)
    Xv, yv = _data(400, 40, 3, noise=3.0, seed=2)
    model = LinearSVM(solver="lbfgs", reg=0.0, bias_trick=bias_trick, **L2SVM)
    model.LBFGS_CHECK_EVERY, model.LBFGS_PATIENCE = 1, 4
    model.fit(X, y, Xv, yv)
    best = model.history_[model.best_epoch_ - 1]
    assert best["val_acc"] == max(h["val_acc"] for h in model.history_)
    assert model.score(Xv, yv) == best["val_acc"]
    assert set(best) >= {"epoch", "loss", "train_acc", "val_acc", "lr", "update_ratio", "seconds", "iteration"}
    assert [h["iteration"] for h in model.history_][:3] == [1, 2, 3]
    assert model.stopped_.startswith("early stop: no val improvement for 4 checks")
    assert len(model.history_) - model.best_epoch_ == 4


def test_iters_caps_the_iterations_and_reg_auto_follows_the_paper():
    X, y = _data(200, 6, 3)
    events = []
    model = LinearSVM(solver="lbfgs", iters=7, **L2SVM).fit(X, y, callback=lambda e, info: events.append(e))
    assert model.history_[-1]["iteration"] <= 7 and events.count("step") <= 7 and events[-1] == "epoch"
    assert model.reg_ == pytest.approx(LinearSVM._AUTO_REG_LBFGS * model._scale(X))
    # standardised 6400-feature rows (the 1600-centroid features) get Coates's C = 100
    assert LinearSVM._AUTO_REG_LBFGS * 6401 == pytest.approx(1 / (2 * 100), rel=2e-3)


@pytest.mark.parametrize("cls,params", [(LinearSVM, L2SVM), (SoftmaxClassifier, {})])
def test_lbfgs_model_round_trips(cls, params):
    import json

    X, y = _data(90)
    model = cls(solver="lbfgs", **params).fit(X, y)
    file_params, arrays = model.to_arrays()
    back = cls.from_arrays(json.loads(json.dumps(file_params)), arrays)
    assert back.get_params() == model.get_params()
    np.testing.assert_array_equal(back.decision_function(X), model.decision_function(X))
    old = {k: v for k, v in file_params.items() if k not in ("solver", "multiclass")}  # an older model file
    assert cls.from_arrays(old, arrays).get_params()["solver"] == "sgd"


@pytest.mark.parametrize("field,value", [("solver", "evil"), ("multiclass", 7), ("augment", "rot90"), ("iters", -3)])
def test_hand_edited_model_file_hyperparameters_are_refused(field, value):
    X, y = _data(90)
    file_params, arrays = LinearSVM(solver="lbfgs", **L2SVM).fit(X, y).to_arrays()
    with pytest.raises(UsageError, match=field):
        LinearSVM.from_arrays({**file_params, field: value}, arrays)
