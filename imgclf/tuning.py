"""Hyperparameter search: search spaces, seeded random search, coarse-to-fine refinement, trials.

A search space maps parameter names to distributions, written the way the CLI takes them:

    lr=1e-5:1e-2:log     log-uniform between the bounds
    dropout=0:0.5        uniform
    hidden=50:1000:log   integer bounds give integers (log-uniform, rounded)
    hidden=100,200,500   a choice among the listed values (ints stay ints, words stay strings)
    hidden=500|1024,512  choices separated by | when a value is itself a list
    epochs=5             a single value: fixed for every trial

Every trial trains on the training split and is scored on the validation split. Trials are drawn from
`numpy.random.default_rng([seed, round])` before any runs, so the same command gives the same trials
whatever order the workers finish in; every trial trains with the same `seed`, so the best one is
reproduced exactly by the `imgclf train` command line it prints. `refine` rounds shrink each range around
the best trials of all rounds so far.

Trials run through `imgclf.executors` (in-process, local worker processes or Dask). A trial that raises or
diverges is recorded with its reason; the search goes on. An interrupted search returns what finished.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from dataclasses import dataclass, field

import numpy as np

from . import kinds
from .errors import Diverged, Interrupted, UsageError

# Model kind -> "module:Class" of the estimator a trial fits (the kinds of imgclf/kinds.py that train).
ESTIMATORS = {k: kinds.ESTIMATORS[k] for k in kinds.TRAINED + ("knn",)}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_INT = re.compile(r"^[+-]?\d+$")


# -- distributions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Range:
    """Uniform (or log-uniform) on [low, high]; integer-valued when both bounds were written as ints."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def _t(self, x):
        return math.log(x) if self.log else x

    def _inv(self, t):
        return math.exp(t) if self.log else t

    def sample(self, rng: np.random.Generator):
        v = self._inv(rng.uniform(self._t(self.low), self._t(self.high)))
        return self._cast(v)

    def _cast(self, v):
        if self.integer:
            return int(round(min(max(v, self.low), self.high)))
        # Four significant digits: a value that prints short and exact in the suggested command line.
        return min(max(float(f"{v:.4g}"), self.low), self.high)

    def narrow(self, best_values: list, shrink: float) -> "Range | Choice":
        """A range `shrink` times as wide (in log space for log ranges), centred on the mean of the best
        values and moved inside the current range."""
        lo, hi = self._t(self.low), self._t(self.high)
        width = (hi - lo) * shrink
        centre = float(np.mean([self._t(v) for v in best_values]))
        new_lo = min(max(centre - width / 2, lo), hi - width)
        low, high = self._inv(new_lo), self._inv(new_lo + width)
        if self.integer:
            low, high = math.ceil(low - 1e-9), math.floor(high + 1e-9)
            if low >= high:
                return Choice((int(round(self._inv(centre))),))
        else:
            low, high = max(low, self.low), min(high, self.high)
        return Range(low, high, self.log, self.integer)

    def spec(self) -> str:
        fmt = (lambda v: str(int(v))) if self.integer else (lambda v: f"{v:.3g}")
        return f"{fmt(self.low)}:{fmt(self.high)}" + (":log" if self.log else "")


@dataclass(frozen=True)
class Choice:
    values: tuple

    def sample(self, rng: np.random.Generator):
        if len(self.values) == 1:
            return self.values[0]
        return self.values[int(rng.integers(len(self.values)))]

    def narrow(self, best_values: list, shrink: float) -> "Choice":
        kept = tuple(v for v in self.values if v in best_values)
        return Choice(kept or self.values)

    @property
    def log(self) -> bool:
        return False

    def spec(self) -> str:
        return ",".join(str(v) for v in self.values)


def _scalar(text: str):
    """'100' -> 100, '1e-3' -> 0.001, 'true' -> True, anything else stays a string."""
    text = text.strip()
    if _INT.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_param(spec: str) -> tuple[str, Range | Choice]:
    """`name=low:high[:log]`, `name=a,b,c` or `name=value` -> (name, distribution)."""
    name, sep, body = spec.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not _NAME.match(name) or not body.strip():
        raise UsageError(f"param expects NAME=LOW:HIGH[:log], NAME=A,B,C or NAME=VALUE, got {spec!r}", param="param")
    if ":" in body:
        parts = body.split(":")
        log = parts[-1].strip().lower() == "log"
        if log:
            parts = parts[:-1]
        if len(parts) != 2:
            raise UsageError(f"param {name}: a range is LOW:HIGH or LOW:HIGH:log, got {body!r}", param="param")
        try:
            low, high = (_number(p) for p in parts)
        except ValueError:
            raise UsageError(f"param {name}: range bounds must be numbers, got {body!r}", param="param") from None
        if not low < high:
            raise UsageError(f"param {name}: the low bound must be below the high bound, got {body!r}", param="param")
        if log and low <= 0:
            raise UsageError(f"param {name}: a log range needs positive bounds, got {body!r}", param="param")
        integer = all(_INT.match(p.strip()) for p in parts)
        return name, Range(float(low), float(high), log, integer)
    if "|" in body:  # choices that are themselves lists: hidden=500|1024,512
        values = tuple(_compound(v) for v in body.split("|") if v.strip())
    else:
        values = tuple(_scalar(v) for v in body.split(",") if v.strip())
    if len(set(values)) != len(values):
        raise UsageError(f"param {name}: repeated values in {body!r}", param="param")
    flat = [x for v in values for x in (v if isinstance(v, tuple) else (v,))]
    if any(isinstance(v, float) and not math.isfinite(v) for v in flat):
        raise UsageError(f"param {name}: values must be finite numbers, got {body!r}", param="param")
    return name, Choice(values)


def _compound(text: str):
    """'1024,512' -> (1024, 512); a single item stays a scalar."""
    items = tuple(_scalar(v) for v in text.split(",") if v.strip())
    return items if len(items) > 1 else items[0]


def _number(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError
    return v


class SearchSpace:
    """An ordered mapping name -> distribution."""

    def __init__(self, params: dict):
        self.params = dict(params)

    @classmethod
    def parse(cls, specs) -> "SearchSpace":
        params = {}
        for spec in specs:
            name, dist = parse_param(spec)
            if name in params:
                raise UsageError(f"param {name} given twice", param="param")
            params[name] = dist
        return cls(params)

    def sample(self, rng: np.random.Generator) -> dict:
        return {name: dist.sample(rng) for name, dist in self.params.items()}

    def searched(self) -> list[str]:
        """Names that actually vary (not single-valued choices)."""
        return [n for n, d in self.params.items() if not (isinstance(d, Choice) and len(d.values) == 1)]

    def log_scaled(self) -> list[str]:
        return [n for n in self.searched() if self.params[n].log]

    def narrow(self, best: list[dict], shrink: float = 0.5) -> "SearchSpace":
        return SearchSpace({n: d.narrow([p[n] for p in best], shrink) for n, d in self.params.items()})

    def describe(self) -> dict[str, str]:
        return {n: d.spec() for n, d in self.params.items()}


# -- trials ------------------------------------------------------------------------------------------

@dataclass
class TrialSpec:
    """What a worker needs to run one trial (small and picklable; the data travels separately)."""

    index: int
    round: int
    estimator: str  # "module:Class"
    params: dict
    fixed: dict
    seed: int
    keep_model: bool = False


@dataclass
class Trial:
    index: int
    round: int
    params: dict
    status: str = "ok"  # ok | diverged | failed
    val_acc: float | None = None
    train_acc: float | None = None
    seconds: float = 0.0
    reason: str | None = None
    epochs_run: int | None = None
    model: tuple | None = field(default=None, repr=False)  # (kind, hyperparameters, arrays, history) if kept
    path: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "model"}


def estimator_params(spec: str) -> dict:
    """The constructor parameters (with defaults) of an estimator class."""
    return kinds.load_class(spec)().get_params()


def check_names(spec: str, names) -> None:
    known = estimator_params(spec)
    unknown = [n for n in names if n not in known]
    if unknown:
        cls = spec.split(":")[1]
        raise UsageError(f"{cls} has no parameter {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(sorted(known))})")


def run_trial(spec: TrialSpec, data: dict) -> Trial:
    """Fit one configuration on data["X_train"] and score it on data["X_val"]. Never raises for the
    trial's own failures: they come back as a Trial with status and reason."""
    trial = Trial(spec.index, spec.round, dict(spec.params))
    t0 = time.perf_counter()
    try:
        cls = kinds.load_class(spec.estimator)
        est = cls(**{**spec.fixed, **spec.params})
        seed_name = next((n for n in ("random_state", "seed") if n in est.get_params()), None)
        if seed_name:
            est.set_params(**{seed_name: spec.seed})
        Xtr, ytr, Xva, yva = data["X_train"], data["y_train"], data["X_val"], data["y_val"]
        if "X_val" in inspect.signature(est.fit).parameters:
            est.fit(Xtr, ytr, X_val=Xva, y_val=yva)
        else:
            est.fit(Xtr, ytr)
        trial.val_acc = float(est.score(Xva, yva))
        n = min(1000, len(ytr))
        trial.train_acc = float(est.score(Xtr[:n], ytr[:n]))
        history = getattr(est, "history_", None)
        trial.epochs_run = len(history) if history else None
        stopped = getattr(est, "stopped_", None)
        if not math.isfinite(trial.val_acc):
            trial.status, trial.reason = "failed", "validation accuracy is not finite"
        elif stopped and str(stopped).startswith("diverged"):
            trial.status, trial.reason = "diverged", str(stopped)
        if spec.keep_model and trial.status != "failed":
            hyper, arrays = est.to_arrays()
            trial.model = (est.kind, hyper, arrays, history or [])
    except Interrupted:
        raise KeyboardInterrupt from None  # in-process Ctrl-C caught by a training loop: stop the search
    except Diverged as exc:
        trial.status, trial.reason = "diverged", str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad configuration must not stop the search
        trial.status, trial.reason = "failed", f"{type(exc).__name__}: {exc}"
    trial.seconds = time.perf_counter() - t0
    return trial


# -- the search ---------------------------------------------------------------------------------------

@dataclass
class SearchResult:
    trials: list[Trial]
    spaces: list[SearchSpace]  # the space of each round
    interrupted: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def ranked(self) -> list[Trial]:
        """Successful trials by validation accuracy (best first, ties by trial index), then the rest."""
        ok = sorted((t for t in self.trials if t.ok), key=lambda t: (-t.val_acc, t.index))
        rest = sorted((t for t in self.trials if not t.ok), key=lambda t: t.index)
        return ok + rest

    @property
    def best(self) -> Trial | None:
        ranked = self.ranked()
        return ranked[0] if ranked and ranked[0].ok else None


def sample_round(space: SearchSpace, n: int, seed: int, round_: int) -> list[dict]:
    rng = np.random.default_rng([seed, round_])
    return [space.sample(rng) for _ in range(n)]


def top_trials(trials: list[Trial], fraction: float = 0.25, at_most: int = 5) -> list[Trial]:
    ok = sorted((t for t in trials if t.ok), key=lambda t: (-t.val_acc, t.index))
    k = min(at_most, max(1, round(len(ok) * fraction)))
    return ok[:k]


def random_search(estimator: str, space: SearchSpace, data, executor, *, trials: int, refine: int = 0,
                  refine_trials: int | None = None, fixed: dict | None = None, seed: int = 0,
                  shrink: float = 0.5, keep_models: bool = False, on_trial=None) -> SearchResult:
    """Run `trials` random configurations, then `refine` narrowed rounds of `refine_trials` each.

    `data` is the dict (X_train, y_train, X_val, y_val) already shared through `executor.share`.
    `on_trial(trial)` is called as each trial finishes (in completion order). Ctrl-C stops the search:
    the result holds the trials that finished and `interrupted=True`.
    """
    if trials < 1:
        raise UsageError(f"trials must be >= 1, got {trials}", param="trials")
    if refine < 0:
        raise UsageError(f"refine must be >= 0, got {refine}", param="refine")
    fixed = dict(fixed or {})
    check_names(estimator, list(space.params) + list(fixed))
    result = SearchResult([], [])
    t0 = time.perf_counter()
    try:
        for round_ in range(refine + 1):
            if round_:
                best = top_trials(result.trials)
                if not best:
                    result.notes.append("no successful trial to refine around; refinement skipped")
                    break
                space = space.narrow([t.params for t in best], shrink)
            result.spaces.append(space)
            n = trials if round_ == 0 else (refine_trials or trials)
            start = len(result.trials)
            specs = [TrialSpec(start + i, round_, estimator, p, fixed, seed, keep_models)
                     for i, p in enumerate(sample_round(space, n, seed, round_))]
            for spec, outcome in executor.map_unordered(run_trial, specs, data):
                trial = outcome.value if outcome.ok else Trial(spec.index, spec.round, dict(spec.params),
                                                               status="failed", reason=outcome.reason)
                result.trials.append(trial)
                if on_trial:
                    on_trial(trial)
            # Completion order varies with the workers; the record does not.
            result.trials.sort(key=lambda t: t.index)
    except KeyboardInterrupt:
        result.interrupted = True
        result.trials.sort(key=lambda t: t.index)
    result.seconds = time.perf_counter() - t0
    return result
