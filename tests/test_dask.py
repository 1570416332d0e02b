"""Trials and folds on a real dask.distributed LocalCluster (two worker processes on 127.0.0.1)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from dummy_estimator import SPEC

from imgclf.executors import DaskExecutor, SerialExecutor, map_folds
from imgclf.tuning import SearchSpace, random_search

dd = pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed (pip install 'imgclf[dask]')")


def data():
    rng = np.random.default_rng(0)
    return {"X_train": rng.random((30, 4)), "y_train": np.arange(30) % 3, "X_val": rng.random((9, 4)),
            "y_val": np.arange(9) % 3}


def fold_info(fold, data):
    return fold, int(data["X"][fold::2].sum()), os.environ.get("OMP_NUM_THREADS"), os.environ.get("NUMBA_NUM_THREADS")


@pytest.fixture(scope="module")
def cluster():
    import dask

    # Dask gives up on a task at its first worker death (KilledWorker), so the executor's own retry is what
    # reruns it: one death per killed trial keeps these tests short on busy machines.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with dd.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                             dashboard_address=None) as c:
            yield c


def test_search_on_the_cluster_matches_the_serial_search(cluster):
    space = SearchSpace.parse(["lr=1e-5:1e-1:log", "reg=0:0.2", "hidden=10,20"])
    with DaskExecutor(cluster.scheduler_address) as ex:
        assert ex.workers == 2
        shared = ex.share(data())
        # broadcast: one scatter, a replica on every worker, tasks get the future, not the arrays
        assert len(ex.client.who_has(shared)[shared.key]) == 2
        res = random_search(SPEC, space, shared, ex, trials=8, refine=1, refine_trials=4, seed=5)
    ref = random_search(SPEC, space, data(), SerialExecutor(), trials=8, refine=1, refine_trials=4, seed=5)
    assert [(t.params, t.val_acc, t.status) for t in res.trials] == [(t.params, t.val_acc, t.status) for t in ref.trials]


def test_tune_command_on_the_cluster(cluster, runner, small_stream):
    import json

    from imgclf_cli.main import cli

    args = ["tune", "softmax", "--data", str(small_stream), "--param", "lr=1e-6:1e-3:log", "--epochs", "2",
            "--trials", "4", "--json", "-q"]
    on_cluster = runner.invoke(cli, args + ["--scheduler", cluster.scheduler_address])
    assert on_cluster.exit_code == 0, on_cluster.output
    here = json.loads(runner.invoke(cli, args).stdout)
    there = json.loads(on_cluster.stdout)
    assert there["executor"].startswith("Dask cluster at tcp://127.0.0.1")
    assert [(t["params"], t["val_acc"]) for t in there["trials"]] == [(t["params"], t["val_acc"]) for t in here["trials"]]


def test_knn_cv_folds_on_the_cluster(cluster, runner, small_stream):
    import json

    from imgclf_cli.main import cli

    args = ["knn", "--data", str(small_stream), "--cv", "3", "--k-values", "1,3,5", "--json", "-q"]
    here = json.loads(runner.invoke(cli, args).stdout)
    res = runner.invoke(cli, args + ["--scheduler", cluster.scheduler_address])
    assert res.exit_code == 0, res.output
    there = json.loads(res.stdout)
    assert there["cv"]["fold_accuracies"] == here["cv"]["fold_accuracies"] and there["k"] == here["k"]
    res = runner.invoke(cli, ["knn", "--data", str(small_stream), "--scheduler", "local:2"])
    assert res.exit_code == 2 and "--scheduler runs the --cv folds" in res.output


def test_worker_killed_mid_search_trial_retried(cluster, tmp_path):
    marker = str(tmp_path / "killed")
    space = SearchSpace.parse(["mode=ok,kill-once", "lr=1e-4:1e-2:log"])
    with DaskExecutor(cluster.scheduler_address) as ex:
        res = random_search(SPEC, space, ex.share(data()), ex, trials=6, fixed={"marker": marker, "sleep": 0.2},
                            seed=0)
    assert os.path.exists(marker) and len(res.trials) == 6
    assert {t.params["mode"] for t in res.trials} == {"ok", "kill-once"}
    assert all(t.ok for t in res.trials), [t.reason for t in res.trials]


def test_trial_that_always_kills_its_worker_is_reported(cluster):
    space = SearchSpace.parse(["mode=ok,kill", "lr=1e-4:1e-2:log"])
    with DaskExecutor(cluster.scheduler_address, retries=1) as ex:
        res = random_search(SPEC, space, ex.share(data()), ex, trials=4, fixed={"sleep": 0.2}, seed=2)
    assert len(res.trials) == 4 and {t.params["mode"] for t in res.trials} == {"ok", "kill"}
    for t in res.trials:
        if t.params["mode"] == "kill":
            assert t.status == "failed" and "(attempt 2)" in t.reason
        else:
            # retried, or (when both workers died at once, twice) reported with Dask's reason
            assert t.ok or "Error" in t.reason or "KilledWorker" in t.reason, t.reason
    assert any(t.ok for t in res.trials)


def test_local_n_scheduler_runs_folds_with_limited_threads():
    X = np.arange(20.0).reshape(10, 2)
    out = map_folds(fold_info, [0, 1], {"X": X}, scheduler="local:2")
    assert [o[:2] for o in out] == [(0, int(X[0::2].sum())), (1, int(X[1::2].sum()))]
    assert all(o[2] == "1" and o[3] == "1" for o in out)


