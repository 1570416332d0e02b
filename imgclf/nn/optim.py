"""First-order update rules in the CS231n form `update(w, dw, config) -> (next_w, config)`.

`config` holds the hyperparameters and the rule's state (arrays and step counts), so a checkpoint can
store it as plain arrays and numbers. Updates are applied in place on `w` (the Solver owns the arrays).
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


def sgd(w, dw, config):
    w -= config["learning_rate"] * dw
    return w, config


def momentum(w, dw, config):
    v = config.get("velocity")
    if v is None:
        v = config["velocity"] = np.zeros_like(w)
    v *= config["momentum"]
    v -= config["learning_rate"] * dw
    w += v
    return w, config


def nesterov(w, dw, config):
    """Nesterov momentum in the 'look-ahead folded into the update' form (CS231n notes)."""
    v = config.get("velocity")
    if v is None:
        v = config["velocity"] = np.zeros_like(w)
    mu = config["momentum"]
    v_prev = v.copy()
    v *= mu
    v -= config["learning_rate"] * dw
    w += -mu * v_prev + (1 + mu) * v
    return w, config


def adagrad(w, dw, config):
    cache = config.get("cache")
    if cache is None:
        cache = config["cache"] = np.zeros_like(w)
    cache += dw * dw
    w -= config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"])
    return w, config


def rmsprop(w, dw, config):
    cache = config.get("cache")
    if cache is None:
        cache = config["cache"] = np.zeros_like(w)
    rho = config["decay_rate"]
    cache *= rho
    cache += (1 - rho) * dw * dw
    w -= config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"])
    return w, config


def adam(w, dw, config):
    if config.get("m") is None:
        config["m"] = np.zeros_like(w)
        config["v"] = np.zeros_like(w)
        config["t"] = 0
    b1, b2 = config["beta1"], config["beta2"]
    config["t"] += 1
    m, v = config["m"], config["v"]
    m *= b1
    m += (1 - b1) * dw
    v *= b2
    v += (1 - b2) * dw * dw
    t = config["t"]
    # Bias correction folded into the step size (one fewer full-array pass).
    step = config["learning_rate"] * np.sqrt(1 - b2**t) / (1 - b1**t)
    w -= step * m / (np.sqrt(v) + config["epsilon"] * np.sqrt(1 - b2**t))
    return w, config


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
