"""Search spaces, seeded sampling, refinement and failure handling of imgclf.tuning (dummy estimator)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dummy_estimator import SPEC

from imgclf.errors import UsageError
from imgclf.executors import SerialExecutor
from imgclf.tuning import Choice, Range, SearchSpace, parse_param, random_search, run_trial, TrialSpec


def data():
    X = np.zeros((20, 4), np.float32)
    y = np.arange(20) % 2
    return {"X_train": X, "y_train": y, "X_val": X[:6], "y_val": y[:6]}


def test_parse_param_kinds():
    assert parse_param("lr=1e-5:1e-2:log") == ("lr", Range(1e-5, 1e-2, log=True, integer=False))
    assert parse_param("dropout=0:0.5") == ("dropout", Range(0.0, 0.5, log=False, integer=False))
    assert parse_param("hidden=50:1000:log") == ("hidden", Range(50, 1000, log=True, integer=True))
    assert parse_param("hidden=100,200,500") == ("hidden", Choice((100, 200, 500)))
    assert parse_param("metric=l1,l2") == ("metric", Choice(("l1", "l2")))
    assert parse_param("batch-size=64") == ("batch_size", Choice((64,)))
    assert parse_param("hidden=500|1024,512") == ("hidden", Choice((500, (1024, 512))))


@pytest.mark.parametrize("spec, message", [
    ("lr", "expects NAME="),
    ("lr=", "expects NAME="),
    ("lr=1:2:3", "LOW:HIGH"),
    ("lr=1e-2:1e-5:log", "low bound must be below"),
    ("lr=0:1:log", "positive bounds"),
    ("lr=a:b", "must be numbers"),
    ("k=1,1,3", "repeated"),
])
def test_parse_param_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_param(spec)


def test_sampling_types_and_bounds():
    space = SearchSpace.parse(["lr=1e-5:1e-2:log", "hidden=50:1000:log", "d=0:0.5", "k=1,3,5"])
    rng = np.random.default_rng(0)
    draws = [space.sample(rng) for _ in range(300)]
    assert all(type(d["hidden"]) is int and 50 <= d["hidden"] <= 1000 for d in draws)
    assert all(type(d["lr"]) is float and 1e-5 <= d["lr"] <= 1e-2 for d in draws)
    assert {d["k"] for d in draws} == {1, 3, 5}
    # log-uniform: about a third of the draws in each decade
    decades = np.floor(np.log10([d["lr"] for d in draws]))
    assert all(60 < np.sum(decades == e) < 140 for e in (-5, -4, -3))


def test_same_seed_same_trials():
    space = SearchSpace.parse(["lr=1e-5:1e-1:log", "reg=0:0.1"])
    a = random_search(SPEC, space, data(), SerialExecutor(), trials=6, seed=3)
    b = random_search(SPEC, space, data(), SerialExecutor(), trials=6, seed=3)
    c = random_search(SPEC, space, data(), SerialExecutor(), trials=6, seed=4)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]
    assert [t.val_acc for t in a.ranked()] == sorted((t.val_acc for t in a.trials), reverse=True)


def test_refine_narrows_around_the_best():
    space = SearchSpace.parse(["lr=1e-6:1e0:log", "hidden=100,200,500"])
    res = random_search(SPEC, space, data(), SerialExecutor(), trials=12, refine=2, refine_trials=6, seed=0)
    assert len(res.trials) == 24 and [t.round for t in res.trials] == [0] * 12 + [1] * 6 + [2] * 6
    widths = [math.log(s.params["lr"].high / s.params["lr"].low) for s in res.spaces]
    assert widths[1] == pytest.approx(widths[0] / 2) and widths[2] == pytest.approx(widths[0] / 4)
    # every refined range still contains the optimum (1e-3) and stays inside the first range
    for s in res.spaces:
        assert s.params["lr"].low <= 1e-3 <= s.params["lr"].high
        assert 1e-6 <= s.params["lr"].low and s.params["lr"].high <= 1.0
    best0 = max(t.val_acc for t in res.trials if t.round == 0)
    assert res.best.val_acc >= best0


def test_narrow_integer_and_choice():
    space = SearchSpace.parse(["hidden=10:20", "act=relu,tanh,elu"])
    narrow = space.narrow([{"hidden": 19, "act": "tanh"}, {"hidden": 20, "act": "relu"}], shrink=0.5)
    assert narrow.params["hidden"] == Range(15, 20, False, True)
    assert narrow.params["act"] == Choice(("relu", "tanh"))
    tiny = SearchSpace.parse(["k=1:2"]).narrow([{"k": 2}], shrink=0.5)
    assert tiny.params["k"] == Choice((2,))


def test_failed_and_diverged_trials_are_recorded():
    space = SearchSpace.parse(["mode=ok,fail,diverge", "lr=1e-4:1e-2:log"])
    res = random_search(SPEC, space, data(), SerialExecutor(), trials=12, seed=1)
    by = {m: [t for t in res.trials if t.params["mode"] == m] for m in ("ok", "fail", "diverge")}
    assert all(by.values())
    assert all(t.status == "failed" and "always fails" in t.reason for t in by["fail"])
    assert all(t.status == "diverged" and "nan" in t.reason for t in by["diverge"])
    assert all(t.ok and t.val_acc is not None for t in by["ok"])
    assert res.ranked()[: len(by["ok"])] == sorted(by["ok"], key=lambda t: -t.val_acc)


def test_unknown_parameter_is_a_usage_error():
    with pytest.raises(UsageError, match="no parameter 'lrr'.*known: "):
        random_search(SPEC, SearchSpace.parse(["lrr=1:2"]), data(), SerialExecutor(), trials=2)


def test_interrupt_keeps_finished_trials():
    class Interrupting(SerialExecutor):
        def map_unordered(self, fn, tasks, shared):
            for i, item in enumerate(super().map_unordered(fn, tasks, shared)):
                if i == 3:
                    raise KeyboardInterrupt
                yield item

    res = random_search(SPEC, SearchSpace.parse(["lr=1e-4:1e-2:log"]), data(), Interrupting(), trials=8, refine=1)
    assert res.interrupted and len(res.trials) == 3 and len(res.spaces) == 1


def test_run_trial_keeps_the_model_and_uses_the_seed():
    t = run_trial(TrialSpec(0, 0, SPEC, {"lr": 1e-3}, {"reg": 0.1}, seed=7, keep_model=True), data())
    kind, params, arrays, history = t.model
    assert t.ok and t.val_acc == pytest.approx(0.9) and kind == "dummy"
    assert params["random_state"] == 7 and params["reg"] == 0.1
