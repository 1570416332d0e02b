"""First-order update rules in the CS231n form `update(w, dw, config) -> (next_w, config)`.

`config` holds the hyperparameters and the rule's state (arrays and step counts), so a checkpoint can
store it as plain arrays and numbers. Updates are applied in place on `w` (the Solver owns the arrays),
in one fused pass each (imgclf/kernels/elementwise.py), in w's dtype. An optional `config["l2"] = c`
adds c * w to the gradient inside that pass and leaves sum(w^2) before the step in
`config["sum_sq"]` (the Solver uses it for models whose L2 term it folds into the update).
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError

DEFAULTS = {
    "sgd": {},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9},
    "adagrad": {"epsilon": 1e-8},
    "rmsprop": {"decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
}


def _flat(w, dw):
    """Flat views the kernels update in place; w must be contiguous so that the view writes through."""
    if not w.flags.c_contiguous or w.shape != dw.shape or w.dtype != dw.dtype:
        raise UsageError(f"optimiser expects a contiguous weight and a gradient of the same shape and dtype, "
                         f"got {w.shape} {w.dtype} and {dw.shape} {dw.dtype}")
    return w.reshape(-1), np.ascontiguousarray(dw).reshape(-1), w.dtype.type


def _l2(config, f):
    return f(config.get("l2", 0.0))


def _done(config, total):
    """Record sum(w^2) before the step when an L2 term was folded in (the Solver adds the penalty)."""
    if config.get("l2"):
        config["sum_sq"] = float(total)


def _state(config, key, w):
    arr = config.get(key)
    if arr is None:
        arr = config[key] = np.zeros_like(w)
    return arr.reshape(-1)


def sgd(w, dw, config):
    wf, g, f = _flat(w, dw)
    _done(config, _kernels()._sgd(wf, g, f(config["learning_rate"]), _l2(config, f)))
    return w, config


def momentum(w, dw, config):
    wf, g, f = _flat(w, dw)
    _done(config, _kernels()._momentum(wf, g, _state(config, "velocity", w), f(config["learning_rate"]),
                                       f(config["momentum"]), _l2(config, f)))
    return w, config


def nesterov(w, dw, config):
    """Nesterov momentum in the 'look-ahead folded into the update' form (CS231n notes):
    v' = mu v - lr dw;  w += -mu v + (1 + mu) v'."""
    wf, g, f = _flat(w, dw)
    _done(config, _kernels()._nesterov(wf, g, _state(config, "velocity", w), f(config["learning_rate"]),
                                       f(config["momentum"]), _l2(config, f)))
    return w, config


def adagrad(w, dw, config):
    wf, g, f = _flat(w, dw)
    _done(config, _kernels()._adagrad(wf, g, _state(config, "cache", w), f(config["learning_rate"]),
                                      f(config["epsilon"]), _l2(config, f)))
    return w, config


def rmsprop(w, dw, config):
    wf, g, f = _flat(w, dw)
    _done(config, _kernels()._rmsprop(wf, g, _state(config, "cache", w), f(config["learning_rate"]),
                                      f(config["decay_rate"]), f(config["epsilon"]), _l2(config, f)))
    return w, config


def adam(w, dw, config):
    wf, g, f = _flat(w, dw)
    m, v = _state(config, "m", w), _state(config, "v", w)
    config["t"] = t = config.get("t", 0) + 1
    b1, b2 = config["beta1"], config["beta2"]
    # Bias correction folded into the step size and epsilon (one fewer full-array pass):
    # lr * m_hat / (sqrt(v_hat) + eps) == step * m / (sqrt(v) + eps * sqrt(1 - b2^t)).
    step = config["learning_rate"] * np.sqrt(1 - b2**t) / (1 - b1**t)
    _done(config, _kernels()._adam(wf, g, m, v, f(step), f(b1), f(b2), f(config["epsilon"] * np.sqrt(1 - b2**t)),
                                   _l2(config, f)))
    return w, config


def _kernels():
    from ..kernels import elementwise

    return elementwise


RULES = {"sgd": sgd, "momentum": momentum, "nesterov": nesterov, "adagrad": adagrad, "rmsprop": rmsprop, "adam": adam}


def make_config(name: str, learning_rate: float, **overrides) -> dict:
    if name not in RULES:
        raise UsageError(f"unknown optimiser {name!r}; choose from {', '.join(RULES)}")
    if not (learning_rate > 0 and np.isfinite(learning_rate)):
        raise UsageError(f"learning rate must be a positive number, got {learning_rate!r}")
    config = dict(DEFAULTS[name])
    unknown = set(overrides) - set(config)
    if unknown:
        raise UsageError(f"optimiser {name!r} has no setting {', '.join(sorted(unknown))}")
    config.update(overrides)
    config["learning_rate"] = float(learning_rate)
    return config
