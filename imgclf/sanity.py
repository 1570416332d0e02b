"""Sanity checks every trainable model kind should pass (the library side of `imgclf check`).

  - grad:    analytic gradients of the full objective against centered differences (imgclf.gradcheck);
  - loss:    the data loss with small random weights is close to its known value (ln C for softmax);
  - overfit: with no regularisation the model fits a tiny training set perfectly.

A model kind joins by adding a `Case` to `CASES`: a factory building an untrained model with fresh
parameters, the expected initial loss, and the hyperparameters that make the checks meaningful. The
model must follow the Solver protocol (imgclf/nn/solver.py: `params_`, `prepare_batch`, `loss_and_grads`,
`fit`, `score`) and `prepare_batch(X)` must cast to the dtype of its parameters, so that float64
parameters give a float64 gradient check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import UsageError
from .gradcheck import GradReport, check_gradients


@dataclass(frozen=True)
class Case:
    build: Callable                    # build(input_shape, n_classes, rng, **params) -> untrained model
    expected_loss: Callable[[int], float]
    expected_text: str                 # how the expected value follows from C, for the report
    grad_params: dict = field(default_factory=dict)     # for the gradient check (some regularisation)
    no_reg_params: dict = field(default_factory=dict)   # the loss check measures the data loss alone
    overfit_params: dict = field(default_factory=dict)  # fits a handful of examples to 100%


def _linear(cls_name: str):
    def build(input_shape, n_classes, rng, **params):
        from . import linear

        model = getattr(linear, cls_name)(random_state=int(rng.integers(2**31)), **params)
        return model.initialize(int(np.prod(input_shape)), n_classes, rng)
    return build


def _net(input_shape, n_classes, rng, **params):
    from .nn.net import NeuralNet

    return NeuralNet(random_state=int(rng.integers(2**31)), **params).initialize(int(np.prod(input_shape)), n_classes, rng)


def _convnet(input_shape, n_classes, rng, **params):
    from .nn.convnet import ConvNet

    model = ConvNet(random_state=int(rng.integers(2**31)), input_shape=tuple(input_shape), **params)
    return model.initialize(int(np.prod(input_shape)), n_classes, rng)


# The two-layer net's checks use every part of the layer stack: batch norm and dropout in the
# gradient check, small weights (normal:0.001) for the initial loss, no regularisation to overfit.
_TWOLAYER_GRAD = {"hidden": (7,), "reg": 0.05, "batchnorm": True, "dropout": 0.2, "dtype": "float64"}
_TWOLAYER_OVERFIT = {"hidden": (100,), "reg": 0.0, "lr": 1e-3, "epochs": 60, "batch_size": 20, "dropout": 0.0,
                     "lr_schedule": None, "augment": None}

# Convnet: two stages (the first of two convolutions) with spatial batch norm on 4x4x3 inputs. The
# fully-connected head has no hidden layer there: a batch norm right after the convolutions would make
# some conv-layer gradients exactly 0, where a relative error means nothing.
_CONVNET_GRAD = {"filters": ("3x2", 4), "hidden": 0, "reg": 0.05, "batchnorm": True, "dtype": "float64"}
_CONVNET_OVERFIT = {"filters": (8, 16), "hidden": 32, "reg": 0.0, "lr": 1e-3, "epochs": 40, "batch_size": 20,
                    "augment": None}

# Adam's per-weight step sizes make one setting work whatever the feature scale (raw or normalised).
_LINEAR_OVERFIT = {"reg": 0.0, "optim": "adam", "lr": 1e-3, "epochs": 50, "batch_size": 20, "lr_decay": 1.0}

CASES: dict[str, Case] = {
    "svm": Case(_linear("LinearSVM"), lambda c: c - 1.0, "C - 1 (every margin about delta = 1)",
                grad_params={"reg": 0.1}, no_reg_params={"reg": 0.0}, overfit_params=_LINEAR_OVERFIT),
    "softmax": Case(_linear("SoftmaxClassifier"), math.log, "ln C (uniform probabilities)",
                    grad_params={"reg": 0.1}, no_reg_params={"reg": 0.0}, overfit_params=_LINEAR_OVERFIT),
    "twolayer": Case(_net, math.log, "ln C (uniform probabilities with small weights)",
                     grad_params=_TWOLAYER_GRAD, no_reg_params={"reg": 0.0, "init": "normal:0.001"},
                     overfit_params=_TWOLAYER_OVERFIT),
    "convnet": Case(_convnet, math.log, "ln C (uniform probabilities with small weights)",
                    grad_params=_CONVNET_GRAD, no_reg_params={"reg": 0.0, "init": "normal:0.001"},
                    overfit_params=_CONVNET_OVERFIT),
}


def case(kind: str) -> Case:
    if kind not in CASES:
        raise UsageError(f"no sanity checks for model kind {kind!r} (known: {', '.join(CASES)})")
    return CASES[kind]


def grad_check(kind: str, *, input_shape=(4, 4, 3), n_classes: int = 5, n_examples: int = 8,
               n_checks: int = 10, rng: np.random.Generator | None = None) -> GradReport:
    """Check the gradients of `kind`'s objective (data loss + regularisation) on random float64 data."""
    rng = rng if rng is not None else np.random.default_rng(0)
    c = case(kind)
    model = c.build(tuple(input_shape), n_classes, rng, **c.grad_params)
    X = rng.standard_normal((n_examples,) + tuple(input_shape))
    y = rng.integers(0, n_classes, n_examples)
    model.params_ = {k: np.asarray(v, dtype=np.float64) for k, v in model.params_.items()}
    Xp = model.prepare_batch(X)
    return check_model_gradients(model, Xp, y, n_checks=n_checks, rng=rng, seed=int(rng.integers(2**31)))


def check_model_gradients(model, X: np.ndarray, y: np.ndarray, *, n_checks: int = 10,
                          rng: np.random.Generator | None = None, seed: int = 0) -> GradReport:
    """Check a Solver-protocol model's `loss_and_grads` on a prepared batch (X, y) at its current
    `params_` against centred differences (the model's params_ are left as the checked values)."""
    rng = rng if rng is not None else np.random.default_rng(0)

    def objective(params):
        model.params_ = params
        # A fresh generator per call: stochastic layers (dropout) see the same masks every time.
        return model.loss_and_grads(X, y, mode="train", rng=np.random.default_rng(seed))

    _, grads = objective(model.params_)
    return check_gradients(lambda p: objective(p)[0], dict(model.params_), grads, n_checks=n_checks, rng=rng)


def initial_loss(kind: str, X: np.ndarray, y: np.ndarray, n_classes: int,
                 rng: np.random.Generator | None = None) -> tuple[float, float]:
    """(measured, expected) data loss of a freshly initialised, unregularised model on (X, y)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    c = case(kind)
    model = c.build(tuple(X.shape[1:]), n_classes, rng, **c.no_reg_params)
    loss, _ = model.loss_and_grads(model.prepare_batch(X), np.asarray(y, dtype=np.int64), mode="train", rng=rng)
    return float(loss), float(c.expected_loss(n_classes))


def overfit(kind: str, X: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None,
            callback=None, **params):
    """Fit `kind` without regularisation on a small (X, y); returns (model, training accuracy)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    c = case(kind)
    model = c.build(tuple(X.shape[1:]), len(np.unique(y)), rng, **{**c.overfit_params, **params})
    model.fit(X, y, callback=callback)
    return model, float(model.score(X, y))
