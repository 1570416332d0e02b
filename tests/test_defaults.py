"""The library owns the defaults (issue 15) and they work on any data (issue 16): blobs, standardised
and PCA-whitened features, any feature scale; the CLI shows the estimators' own defaults; class
weights change the decision; library errors name parameters, the CLI names flags."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from imgclf import ConvNet, LinearSVM, NeuralNet, SoftmaxClassifier
from imgclf.errors import UsageError
from imgclf.sanity import check_model_gradients
from imgclf.kinds import ESTIMATORS, TRAINED, estimator_class

TRAINED_CLASSES = [LinearSVM, SoftmaxClassifier, NeuralNet, ConvNet]


def _blobs(n=300, d=5, k=3, seed=0):
    """k well-separated Gaussian blobs (centres 6 standard deviations apart on average)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (k, d))
    y = rng.integers(0, k, n)
    return centres[y] + rng.normal(size=(n, d)), y


def _views(X):
    """The same data as raw features, standardised, PCA-whitened and on a pixel-like scale."""
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    U, _, _ = np.linalg.svd(Xs - Xs.mean(axis=0), full_matrices=False)
    return {"raw": X, "standardised": Xs, "whitened": U * np.sqrt(len(X)), "pixel-scale": 40 * X + 128}


@pytest.mark.parametrize("cls", TRAINED_CLASSES, ids=lambda c: c.__name__)
def test_defaults_fit_separable_blobs_in_any_representation(cls):
    X, y = _blobs()
    views = _views(X)
    if issubclass(cls, NeuralNet):
        # The nets standardise each feature themselves: raw, standardised and pixel-scale rows are the
        # same data to them, whitened rows a rotation of it.
        views = {k: views[k] for k in ("raw", "whitened")}
    for name, Xv in views.items():
        model = cls(random_state=0).fit(Xv, y)
        assert model.score(Xv, y) >= 0.95, (name, model.stopped_)


def test_auto_rates_follow_the_feature_scale():
    X, y = _blobs()
    a = LinearSVM(random_state=0).fit(X, y)
    b = LinearSVM(random_state=0).fit(X * 1000, y)
    # (the bias trick's constant 1 is not rescaled, hence not exactly 1e6)
    assert b.lr_ == pytest.approx(a.lr_ / 1e6, rel=0.02) and b.reg_ == pytest.approx(a.reg_ * 1e6, rel=0.02)
    np.testing.assert_array_equal(a.predict(X), b.predict(X * 1000))
    assert LinearSVM(lr=1e-3, reg=0.5).rates_for(X) == (1e-3, 0.5)


def test_auto_epochs_stretch_small_data_only():
    net = NeuralNet()
    assert net.epochs_for(49000) == (8, None)  # CIFAR-10: the measured 8 epochs
    assert net.epochs_for(300) == (600, 60)  # one step per epoch: 600 steps, stop after 60 without progress
    assert net.epochs_for(1000) == (120, 12)
    assert NeuralNet(epochs=3).epochs_for(300) == (3, None)
    with pytest.raises(UsageError, match="epochs must be an integer >= 1 or 'auto'") as info:
        NeuralNet(epochs="many").epochs_for(300)
    assert info.value.param == "epochs"


@pytest.mark.parametrize("kind", TRAINED)
def test_cli_options_show_the_estimator_defaults(kind):
    """`imgclf train KIND` with no flags builds the estimator's default model."""
    import click

    from imgclf_cli.registry import TRAIN_COMMANDS, load_command
    from imgclf_cli.training import estimator_defaults

    cls = estimator_class(kind)
    signature = {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}
    assert estimator_defaults(kind) == signature
    cmd = load_command(TRAIN_COMMANDS[kind])
    ctx = click.Context(cmd)
    for opt in cmd.params:
        if opt.name in signature and opt.name not in ("random_state",):
            value = opt.process_value(ctx, opt.default)
            expected = signature[opt.name]
            if opt.name in ("lr_schedule", "augment") and value == "none":
                value = None
            if opt.name in ("hidden", "filters") and not isinstance(expected, tuple):
                expected = (expected,)
            assert value == expected, (kind, opt.name)


def test_one_list_of_kinds_and_optimisers():
    from imgclf.nn.optim import RULES
    from imgclf.tuning import ESTIMATORS as TUNED
    from imgclf_cli.commands.tune import KINDS as TUNE_KINDS
    from imgclf_cli.registry import TRAIN_COMMANDS as COMMANDS
    from imgclf_cli.training import OPTIMISERS

    assert tuple(RULES) == OPTIMISERS
    assert set(COMMANDS) == set(TRAINED) and set(TUNE_KINDS) == set(TUNED) == set(TRAINED) | {"knn"}
    for kind in ESTIMATORS:
        assert estimator_class(kind).kind == kind
    assert estimator_class("net") is NeuralNet  # the name older model files use


# -- class weights ------------------------------------------------------------------------------------
def _imbalanced(seed=0):
    """Two overlapping classes, 9 to 1: unweighted, the minority is mostly predicted as the majority."""
    rng = np.random.default_rng(seed)
    y = (rng.random(600) < 0.1).astype(int)
    X = rng.normal(size=(600, 2)) + np.where(y[:, None] == 1, 1.0, 0.0)
    return X, y


@pytest.mark.parametrize("cls", [LinearSVM, SoftmaxClassifier, NeuralNet], ids=lambda c: c.__name__)
def test_class_weights_change_the_decision(cls):
    X, y = _imbalanced()
    plain = cls(random_state=0).fit(X, y)
    balanced = cls(class_weight="balanced", random_state=0).fit(X, y)
    by_dict = cls(class_weight={0: 1, 1: 9}, random_state=0).fit(X, y)
    minority = y == 1
    recall = [np.mean(m.predict(X[minority]) == 1) for m in (plain, balanced, by_dict)]
    assert recall[1] > recall[0] + 0.3 and recall[2] > recall[0] + 0.3, recall
    assert np.mean(balanced.predict(X) == 1) > np.mean(plain.predict(X) == 1)


def test_class_weight_errors_name_the_parameter():
    X, y = _imbalanced()
    for bad, msg in [("heavy", "class_weight must be None, 'balanced' or a dict"),
                     ({7: 2.0}, "names the class 7, which is not in the training labels"),
                     ({1: -1.0}, "must be a finite number >= 0")]:
        with pytest.raises(UsageError, match=msg) as info:
            LinearSVM(class_weight=bad).fit(X, y)
        assert info.value.param == "class_weight"


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_weighted_loss_gradients_check_numerically(loss):
    """The class-weighted objective of the net (and so of the shared losses) against finite differences."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((12, 6)), rng.integers(0, 3, 12)
    net = NeuralNet(hidden=(5,), loss=loss, dtype="float64", reg=0.01, dropout=0.0)
    net.classes_ = np.arange(3)
    net.initialize(6, 3, rng)
    net._weights = np.array([0.5, 2.0, 3.0])
    report = check_model_gradients(net, X, y, n_checks=20, rng=rng)
    assert report.ok and report.max_rel_error < 1e-5, report.as_dict()


def test_weighted_losses_match_a_plain_weighted_mean():
    from imgclf.losses import softmax_loss, svm_loss

    rng = np.random.default_rng(1)
    scores, y, w = rng.standard_normal((8, 4)), rng.integers(0, 4, 8), rng.random(8) * 3
    for fn in (softmax_loss, svm_loss):
        rows = [fn(scores[i:i + 1], y[i:i + 1])[0] for i in range(8)]
        loss, dscores = fn(scores, y, sample_weight=w)
        assert loss == pytest.approx(np.mean(w * rows))
        np.testing.assert_allclose(dscores, fn(scores, y)[1] * w[:, None])


# -- messages -----------------------------------------------------------------------------------------
def test_library_errors_name_parameters_and_the_cli_names_flags(runner, small_stream):
    from imgclf.nn.solver import Solver
    from imgclf_cli.main import cli, in_flags

    net = NeuralNet(hidden=(3,)).initialize(4, 2, np.random.default_rng(0))
    with pytest.raises(UsageError, match="^batch_size must be >= 1") as info:
        Solver(net, np.zeros((4, 4)), np.array([0, 1, 0, 1]), batch_size=0)
    assert in_flags(info.value) == "--batch-size must be >= 1, got 0"
    assert in_flags(UsageError("source and url exclude each other", param="source")).startswith("--from and url")
    res = runner.invoke(cli, ["train", "softmax", "--data", str(small_stream), "--class-weight", "nope=2", "-q"])
    assert res.exit_code == 2 and "--class-weight names 'nope'" in res.output
    res = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), "--augment", "spin", "-q"])
    assert res.exit_code == 2 and "Error: --augment: unknown augmentation 'spin'" in res.output


def test_cli_class_weight_by_class_name(runner, small_stream):
    import json

    from imgclf_cli.main import cli

    res = runner.invoke(cli, ["train", "softmax", "--data", str(small_stream), "--class-weight", "balanced",
                              "--epochs", "2", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["hyperparameters"]["class_weight"] == "balanced"
    res = runner.invoke(cli, ["train", "svm", "--data", str(small_stream), "--class-weight", "a=3,2=0.5",
                              "--epochs", "2", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["hyperparameters"]["class_weight"] == {"0": 3.0, "2": 0.5}
