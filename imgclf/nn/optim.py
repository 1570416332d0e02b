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
from ..validation import check_number

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


def _run(rule, w, dw, config, a=None, b=None, lr=None, h1=0.0, h2=0.0, h3=0.0):
    """One fused step of kernel rule `rule` (imgclf/kernels/elementwise.py) on w in place."""
    wf, g, f = _flat(w, dw)
    empty = np.empty(0, w.dtype)
    a = empty if a is None else a
    b = empty if b is None else b
    lr = config["learning_rate"] if lr is None else lr
    k = _kernels()
    step = k._step_parallel if wf.size >= k.PARALLEL_STEP_MIN else k._step  # the same numbers either way
    _done(config, step(rule, wf, g, a, b, f(lr), f(h1), f(h2), f(h3), _l2(config, f)))
    return w, config


def sgd(w, dw, config):
    return _run(_kernels().SGD, w, dw, config)


def momentum(w, dw, config):
    return _run(_kernels().MOMENTUM, w, dw, config, _state(config, "velocity", w), h1=config["momentum"])


def nesterov(w, dw, config):
    """Nesterov momentum in the 'look-ahead folded into the update' form (CS231n notes):
    v' = mu v - lr dw;  w += -mu v + (1 + mu) v'."""
    return _run(_kernels().NESTEROV, w, dw, config, _state(config, "velocity", w), h1=config["momentum"])


def adagrad(w, dw, config):
    return _run(_kernels().ADAGRAD, w, dw, config, _state(config, "cache", w), h1=1.0, h2=1.0,
                h3=config["epsilon"])


def rmsprop(w, dw, config):
    rho = config["decay_rate"]
    return _run(_kernels().RMSPROP, w, dw, config, _state(config, "cache", w), h1=rho, h2=1 - rho,
                h3=config["epsilon"])


def adam(w, dw, config):
    config["t"] = t = config.get("t", 0) + 1
    b1, b2 = config["beta1"], config["beta2"]
    # Bias correction folded into the step size and epsilon (one fewer full-array pass):
    # lr * m_hat / (sqrt(v_hat) + eps) == step * m / (sqrt(v) + eps * sqrt(1 - b2^t)).
    step = config["learning_rate"] * np.sqrt(1 - b2**t) / (1 - b1**t)
    return _run(_kernels().ADAM, w, dw, config, _state(config, "m", w), _state(config, "v", w), lr=step, h1=b1,
                h2=b2, h3=config["epsilon"] * np.sqrt(1 - b2**t))


def _kernels():
    from ..kernels import elementwise

    return elementwise


# The arrays each rule keeps per weight (shaped and typed like it); the ones named in NONNEGATIVE_STATE are
# running sums of squares (a square root is taken of them).
STATE = {"sgd": (), "momentum": ("velocity",), "nesterov": ("velocity",), "adagrad": ("cache",),
         "rmsprop": ("cache",), "adam": ("m", "v")}
NONNEGATIVE_STATE = ("cache", "v")


def check_setting(key: str, value, name: str | None = None) -> float:
    """One of DEFAULTS' settings: decays in [0, 1) as the CLI's options take them, epsilon > 0 (it guards
    a division); a real number, not a bool. UsageError naming `name` (default `key`)."""
    if key == "epsilon":
        return check_number(value, name or key, "a number > 0", low=0, low_open=True)
    return check_number(value, name or key, "a decay in [0, 1)", low=0, high=1, high_open=True)


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
    for key, value in overrides.items():
        check_setting(key, value)
    config.update({k: float(v) for k, v in overrides.items()})
    config["learning_rate"] = float(learning_rate)
    return config


RAMP = "ramp"  # lookahead "K:ramp": airbench's averaging, see parse_lookahead
RAMP_BASE, RAMP_POWER = 0.95, 3


def ramp_rho(k: int, step: int, total: int) -> float:
    """The slow weights' decay of lookahead "K:ramp" at step `step` (counted from 1) of `total`:
    0.95**k * (step / total)**3 (airbench's schedule: the slow weights follow the live ones early on and
    average over more and more of the run towards its end)."""
    return RAMP_BASE**k * (min(step, total) / total) ** RAMP_POWER


def parse_lookahead(value, param: str = "lookahead") -> tuple[int, float | str] | None:
    """Lookahead's settings (Zhang et al. 2019) as (k, alpha): None/"none" (off), "K:ALPHA" such as "5:0.5",
    or a pair (k, alpha); k an integer >= 1 (steps between synchronisations), alpha in (0, 1] (the slow
    weights' step towards the fast ones). "K:ramp" (or (k, "ramp")) is airbench's weight averaging: alpha
    = 1 - rho with rho = 0.95**k * (t/T)**3 at step t of the run's T, the batch-norm statistics averaged
    too, and the live weights set to the slow ones at every epoch's end (imgclf/nn/solver.py)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    bad = UsageError(f"{param} must be K:ALPHA (e.g. 5:0.5), K:ramp (airbench's averaging) or a pair (k, alpha) "
                     f"with an integer k >= 1 and alpha in (0, 1] or 'ramp', or None; got {value!r}", param=param)
    if isinstance(value, str):
        k, sep, alpha = value.partition(":")
        if not sep:
            raise bad
        try:
            k, alpha = int(k), (RAMP if alpha.strip() == RAMP else float(alpha))
        except ValueError:
            raise bad from None
    else:
        try:
            k, alpha = value
        except (TypeError, ValueError):
            raise bad from None
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise bad
        if not (alpha == RAMP if isinstance(alpha, str)
                else not isinstance(alpha, (bool, np.bool_)) and isinstance(alpha, (int, float, np.number))):
            raise bad
    if alpha == RAMP:
        if k < 1:
            raise bad
        return int(k), RAMP
    if not (k >= 1 and np.isfinite(alpha) and 0 < alpha <= 1):
        raise bad
    return int(k), float(alpha)
