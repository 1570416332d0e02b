"""Local executors: thread limits in spawned workers, shared data, dead workers, ordering, errors."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from dummy_estimator import SPEC

from imgclf.errors import UsageError
from imgclf.executors import (
    ProcessExecutor, SerialExecutor, make_executor, map_folds, map_ordered, parse_scheduler, threads_per_job,
)
from imgclf.tuning import SearchSpace, random_search


def probe(task, data):
    """Runs in a worker: what thread limits and data did it get?"""
    import numba

    info = {"env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                     "NUMBA_NUM_THREADS")},
            "numba": numba.config.NUMBA_NUM_THREADS, "pid": os.getpid(), "task": task,
            "sum": int(data["X"].sum()), "shared": not data["X"].flags.owndata}
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
    except ImportError:
        pass
    return info


def fold_sum(fold, data):
    return int(data["X"][fold::3].sum())


def boom(task, data):
    raise RuntimeError(f"task {task} broke")


def test_threads_per_job():
    assert threads_per_job(1, cores=2) == 2
    assert threads_per_job(2, cores=2) == 1
    assert threads_per_job(3, cores=8) == 2
    assert threads_per_job(4, cores=2) == 1


def test_make_executor_and_scheduler_specs(monkeypatch):
    monkeypatch.setenv("IMGCLF_MAX_WORKERS", "3")
    assert isinstance(make_executor(jobs=1), SerialExecutor)
    assert isinstance(make_executor(jobs=2), ProcessExecutor)
    with pytest.raises(UsageError, match="^jobs must be >= 1"):
        make_executor(jobs=0)
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    for bad in ("local:0", "local:x", "nowhere", "local:4", "tcp://host", "tcp://host:99999", "http://h:1",
                "tcp://h:1/x"):
        with pytest.raises(UsageError, match="^scheduler"):
            parse_scheduler(bad)


def test_missing_dask_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(UsageError, match=r"pip install 'imgclf\[dask\]'"):
        make_executor(scheduler="local:2")


def test_process_workers_limit_threads_and_share_data():
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    with ProcessExecutor(2, threads=1) as ex:
        shared = ex.share({"X": X})
        out = map_ordered(ex, probe, list(range(6)), shared)
        # errors inside a task come back as failed outcomes; the workers survive them
        errs = map_ordered(ex, boom, [1, 2], shared)
        again = map_ordered(ex, probe, [7], shared)
    assert all(o.ok for o in out) and [o.value["task"] for o in out] == list(range(6))
    assert len({o.value["pid"] for o in out}) == 2
    for o in out:
        assert o.value["env"] == dict.fromkeys(o.value["env"], "1")
        assert o.value["numba"] == 1 and o.value["sum"] == int(X.sum()) and o.value["shared"]
        assert o.value.get("blas", [1]) == [1]
    assert [e.ok for e in errs] == [False, False] and "RuntimeError: task 2 broke" in errs[1].reason
    assert again[0].value["pid"] in {o.value["pid"] for o in out}


def test_map_folds_in_order():
    X = np.arange(30).reshape(10, 3)
    expected = [int(X[f::3].sum()) for f in range(3)]
    assert map_folds(fold_sum, [0, 1, 2], {"X": X}) == expected
    assert map_folds(fold_sum, [0, 1, 2], {"X": X}, jobs=2) == expected
    # equal tasks are still distinct positions
    assert [o.value for o in map_ordered(SerialExecutor(), fold_sum, [1, 1, 0], {"X": X})] == \
           [expected[1], expected[1], expected[0]]


def test_killed_worker_is_replaced_and_its_trial_retried_or_reported(tmp_path):
    marker = str(tmp_path / "killed-once")
    data = {"X_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2, "X_val": np.zeros((2, 2)),
            "y_val": np.arange(2)}
    space = SearchSpace.parse(["mode=ok,kill-once,kill", "lr=1e-4:1e-2:log"])
    with ProcessExecutor(2, retries=1) as ex:
        res = random_search(SPEC, space, ex.share(data), ex, trials=8, fixed={"marker": marker}, seed=0)
    assert os.path.exists(marker)
    assert len(res.trials) == 8
    for t in res.trials:
        if t.params["mode"] == "kill":
            assert t.status == "failed" and "worker process died" in t.reason and "2 attempt(s)" in t.reason
        else:
            assert t.ok, t.reason
    assert {t.params["mode"] for t in res.trials} == {"ok", "kill-once", "kill"}


def nap(seconds, data):
    import time

    time.sleep(seconds)
    return seconds


def test_interrupt_terminates_the_running_workers():
    import time

    with ProcessExecutor(2) as ex:
        gen = ex.map_unordered(nap, [0, 30, 30], None)
        assert next(gen)[1].value == 0
        processes = [w.process for w in ex._pool]
        busy = [w.process for w in ex._pool if w.task is not None]
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            gen.throw(KeyboardInterrupt)
        assert busy and not any(p.is_alive() for p in busy)  # the running trial is abandoned at once
    assert time.perf_counter() - t0 < 10 and not any(p.is_alive() for p in processes)


def test_knn_cross_validation_folds_in_worker_processes():
    from functools import partial

    from imgclf.neighbors import cross_validate_k

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (60, 12), dtype=np.uint8)
    y = rng.integers(0, 3, 60)
    for metric in ("l1", "l2"):
        here = cross_validate_k(X, y, [1, 3, 5], 3, metric=metric)
        there = cross_validate_k(X, y, [1, 3, 5], 3, metric=metric, map_folds=partial(map_folds, jobs=2))
        np.testing.assert_array_equal(here.accuracies, there.accuracies)
        assert here.best_k == there.best_k
