"""`imgclf tune`: table/JSON, reproducibility, the printed command, failures, saving, plots, Ctrl-C."""

from __future__ import annotations

import json
import shlex
import sys

import pytest

from imgclf_cli.main import cli

SEARCH = ["--param", "lr=1e-6:1e-3:log", "--param", "reg=1e-4:1e-1:log", "--epochs", "2"]


def tune(runner, stream, *args):
    return runner.invoke(cli, ["tune", "softmax", "--data", str(stream), *SEARCH, *args])


def tune_json(runner, stream, *args):
    res = tune(runner, stream, "--json", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_table_best_command_and_reproduction(runner, small_stream):
    res = tune(runner, small_stream, "--trials", "3", "-q")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("tune softmax: 3 trials (120 train / 30 val)")
    assert lines[1].split()[:7] == ["rank", "trial", "round", "lr", "reg", "val_acc", "train_acc"]
    command = next(line.strip() for line in lines if line.strip().startswith("imgclf train softmax"))
    out = tune_json(runner, small_stream, "--trials", "3", "-q")
    assert out["command"] == command and out["split"] == "val" and out["n_train"] == 120 and out["n_eval"] == 30
    accs = [t["val_acc"] for t in out["trials"]]
    assert accs == sorted(accs, reverse=True) and out["accuracy"] == accs[0] == out["best"]["val_acc"]
    # the printed command trains exactly the best trial
    argv = shlex.split(command)[1:]
    assert "--epochs" in argv and "--seed" in argv
    trained = runner.invoke(cli, argv + ["--json", "-q"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["val_accuracy"] == pytest.approx(out["accuracy"])


def test_same_seed_same_trials_whatever_the_jobs(runner, small_stream):
    a = tune_json(runner, small_stream, "--trials", "4", "--seed", "3", "-q")
    b = tune_json(runner, small_stream, "--trials", "4", "--seed", "3", "--jobs", "2", "-q")
    c = tune_json(runner, small_stream, "--trials", "4", "--seed", "4", "-q")
    assert [(t["index"], t["params"], t["val_acc"]) for t in a["trials"]] == \
           [(t["index"], t["params"], t["val_acc"]) for t in b["trials"]]
    assert [t["params"] for t in a["trials"]] != [t["params"] for t in c["trials"]]
    assert "2 local processes" in b["executor"]


def test_failed_trials_are_listed_and_the_search_goes_on(runner, small_stream):
    res = tune(runner, small_stream, "--trials", "6", "--param", "batch_size=0,50", "--seed", "1", "-q")
    assert res.exit_code == 0, res.output
    assert "failed: UsageError: batch_size must be an integer >= 1" in res.stdout  # --param speaks parameter names
    out = tune_json(runner, small_stream, "--trials", "6", "--param", "batch_size=0,50", "--seed", "1", "-q")
    statuses = {t["params"]["batch_size"]: t["status"] for t in out["trials"]}
    assert statuses == {0: "failed", 50: "ok"}
    assert "--batch-size 50" in out["command"]


def test_refine_rounds_save_dir_ensemble_and_plot(runner, small_stream, tmp_path):
    from imgclf import storage

    plot, saved = tmp_path / "search.png", tmp_path / "trials"
    out = tune_json(runner, small_stream, "--trials", "4", "--refine", "1", "--refine-trials", "2",
                    "--save-dir", str(saved), "--plot", str(plot), "-q")
    assert [t["round"] for t in sorted(out["trials"], key=lambda t: t["index"])] == [0, 0, 0, 0, 1, 1]
    wide, narrow = out["spaces"]
    assert wide["lr"] == "1e-06:0.001:log" and narrow["lr"] != wide["lr"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    files = sorted(p.name for p in saved.iterdir())
    assert files == [f"trial-{i:03d}.npz" for i in range(6)]
    bundle = storage.load_model(saved / "trial-000.npz")
    assert bundle.kind == "softmax" and [t.kind for t in bundle.chain] == ["mean"]
    assert bundle.extra["tuning_trial"] == 0
    ens = shlex.split(out["ensemble_command"])
    res = runner.invoke(cli, ens[1:] + ["--data", str(small_stream), "--json"])
    assert res.exit_code == 0, res.output


def test_knn_search_prints_a_knn_command(runner, small_stream):
    res = runner.invoke(cli, ["tune", "knn", "--data", str(small_stream), "--param", "k=1,3", "--param",
                              "metric=l1,l2", "--trials", "3", "--json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["command"].startswith("imgclf knn --k ") and "--metric" in out["command"]
    res = runner.invoke(cli, shlex.split(out["command"])[1:] + ["-q"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("args, message", [
    (["--param", "lr=1e-2:1e-5:log"], "low bound must be below"),
    (["--param", "nope=1,2"], "SoftmaxClassifier has no parameter 'nope'"),
    (["--data", "shapes", "--n-train", "60", "--val", "0"], "no non-empty val split"),
])
def test_bad_input_exits_2(runner, small_stream, args, message):
    res = runner.invoke(cli, ["tune", "softmax", "--data", str(small_stream), "--trials", "2", *args, "-q"])
    assert res.exit_code == 2 and message in res.output, res.output


def test_scheduler_without_dask_says_what_to_install(runner, small_stream, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    res = tune(runner, small_stream, "--trials", "2", "--scheduler", "local:2")
    assert res.exit_code == 2 and "pip install 'imgclf[dask]'" in res.output


def test_ctrl_c_prints_the_finished_trials(runner, small_stream, monkeypatch):
    import imgclf.tuning as tuning

    real, calls = tuning.run_trial, []

    def interrupted_third(spec, data):
        calls.append(spec.index)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(spec, data)

    monkeypatch.setattr(tuning, "run_trial", interrupted_third)
    res = tune(runner, small_stream, "--trials", "5", "-q")
    assert res.exit_code == 130
    assert "tune softmax: 2 trials" in res.stdout and "best: trial" in res.stdout
    assert "Interrupted: 2 of 5 trials finished." in res.stderr


@pytest.mark.parametrize("kind, args", [
    ("twolayer", ["--param", "hidden=8,16", "--param", "lr=1e-4:1e-2:log"]),
    ("svm", []),
])
def test_train_command_defaults_make_valid_trials(runner, small_stream, kind, args):
    res = runner.invoke(cli, ["tune", kind, "--data", str(small_stream), "--trials", "2", "--epochs", "1", *args,
                              "--json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [t["status"] for t in out["trials"]] == ["ok", "ok"], out["trials"]
    assert out["command"].startswith(f"imgclf train {kind} --epochs 1")
