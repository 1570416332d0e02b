"""Numerical gradient checks: centered differences in float64 on a random subset of entries.

Generic over models and layers: give `check_gradients` a function `f(params) -> loss` over a dict of
arrays and the analytic gradients you computed for those arrays. Each sampled entry x is moved to
x+h and x-h, the numerical derivative is (f(x+h) - f(x-h)) / 2h, and the relative error against the
analytic one a is

    rel = |a - n| / max(|a|, |n|)          (0 when both are 0)

Thresholds from the CS231n notes: rel > 1e-2 means the gradient is probably wrong; 1e-2 > rel > 1e-4
is uncomfortable; rel < 1e-4 is fine for objectives with kinks (hinge, ReLU), and rel < 1e-7 is good.
A kink is where the one-sided slopes (f(x+h) - f(x))/h and (f(x) - f(x-h))/h differ: there
the centered difference averages two different slopes and need not match any subgradient, so such
entries are reported separately and never fail the check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError

WRONG = 1e-2
UNCOMFORTABLE = 1e-4
GOOD = 1e-7


def relative_error(analytic, numeric) -> np.ndarray:
    """Elementwise |a - n| / max(|a|, |n|), 0 where both are 0."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    denom = np.maximum(np.abs(a), np.abs(n))
    return np.divide(np.abs(a - n), denom, out=np.zeros(np.broadcast(a, n).shape), where=denom > 0)


def verdict(rel: float) -> str:
    if rel > WRONG:
        return "wrong"
    if rel > UNCOMFORTABLE:
        return "uncomfortable"
    if rel > GOOD:
        return "ok"
    return "good"


@dataclass
class ParamReport:
    name: str
    shape: tuple[int, ...]
    checked: int
    max_rel_error: float
    mean_rel_error: float
    kinks: int
    worst_index: tuple[int, ...] | None

    @property
    def status(self) -> str:
        return verdict(self.max_rel_error)

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= WRONG

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "checked": self.checked,
                "max_rel_error": self.max_rel_error, "mean_rel_error": self.mean_rel_error,
                "kinks": self.kinks, "status": self.status,
                "worst_index": list(self.worst_index) if self.worst_index is not None else None}


@dataclass
class GradReport:
    params: list[ParamReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.params)

    @property
    def max_rel_error(self) -> float:
        return max((p.max_rel_error for p in self.params), default=0.0)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "max_rel_error": self.max_rel_error, "params": [p.as_dict() for p in self.params]}


def check_gradients(f, params: dict, grads: dict, *, n_checks: int = 10, h: float = 1e-5,
                    rng: np.random.Generator | None = None, kink_tol: float = 1e-3) -> GradReport:
    """Compare `grads` with centered differences of `f` on `n_checks` random entries of each parameter.

    `params` is copied to float64 first; `f` receives that dict (entries are modified in place and
    restored) and must compute in the dtype it is given. An entry whose error exceeds 1e-4 while its
    one-sided slopes disagree by more than `kink_tol` (relative) sits on a kink: it is counted in
    `kinks` instead of the error figures.
    """
    if n_checks < 1:
        raise UsageError(f"n_checks must be >= 1, got {n_checks}")
    if not h > 0:
        raise UsageError(f"h must be > 0, got {h}")
    missing = set(params) - set(grads)
    if missing:
        raise UsageError(f"no analytic gradient for {', '.join(sorted(missing))}")
    rng = rng if rng is not None else np.random.default_rng(0)
    p64 = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    f0 = float(f(p64))
    if not np.isfinite(f0):
        raise UsageError(f"the function to check is not finite at the given point ({f0})")
    report = GradReport()
    for name, x in p64.items():
        g = np.asarray(grads[name], dtype=np.float64)
        if g.shape != x.shape:
            raise UsageError(f"gradient of {name!r} has shape {g.shape}, the parameter {x.shape}")
        flat_x, flat_g = x.reshape(-1), g.reshape(-1)
        picks = rng.choice(flat_x.size, size=min(n_checks, flat_x.size), replace=False)
        errors, kinks, worst, worst_err = [], 0, None, -1.0
        for i in picks:
            old = flat_x[i]
            flat_x[i] = old + h
            fp = float(f(p64))
            flat_x[i] = old - h
            fm = float(f(p64))
            flat_x[i] = old
            err = float(relative_error(flat_g[i], (fp - fm) / (2 * h)))
            # Only a mismatch is examined for a kink: on a smooth function the one-sided slopes differ
            # by about f''h, which can be large relative to a tiny f' without meaning anything.
            if err > UNCOMFORTABLE and float(relative_error((fp - f0) / h, (f0 - fm) / h)) > kink_tol:
                kinks += 1
                continue
            errors.append(err)
            if err > worst_err:
                worst_err, worst = err, tuple(int(v) for v in np.unravel_index(i, x.shape))
        report.params.append(ParamReport(
            name, tuple(x.shape), len(picks),
            max(errors) if errors else 0.0, float(np.mean(errors)) if errors else 0.0, kinks, worst))
    return report
