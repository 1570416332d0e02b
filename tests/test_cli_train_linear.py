import json

import numpy as np
import pytest

from imgclf_cli.main import cli

# Normalised features let one learning rate suit both the weights and the bias on these tiny images.
FAST = ["--preprocess", "mean,normalize", "--lr", "0.05", "--reg", "1e-3", "--epochs", "5", "--batch-size", "30", "-q"]


def _train(runner, kind, stream, *args):
    result = runner.invoke(cli, ["train", kind, "--data", str(stream), *FAST, *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_train_json_and_model_file(runner, small_stream, tmp_path, kind):
    out = tmp_path / f"{kind}.npz"
    res = json.loads(_train(runner, kind, small_stream, "--json", "-o", str(out)).output)
    for key in ("accuracy", "split", "n_train", "n_eval", "seconds", "val_accuracy", "history"):
        assert key in res
    assert res["split"] == "test" and res["n_train"] == 120 and res["n_eval"] == 30
    assert res["accuracy"] > 0.9
    assert len(res["history"]) == 5 and {"epoch", "loss", "train_acc", "val_acc"} <= set(res["history"][0])
    assert [t["kind"] for t in res["preprocess"]] == ["mean", "normalize"]

    from imgclf import storage

    bundle = storage.load_model(out)
    assert bundle.kind == kind and bundle.classes == ["a", "b", "c"] and bundle.input_shape == (8, 8, 3)
    assert [t.kind for t in bundle.chain] == ["mean", "normalize"]
    assert bundle.extra["n_train"] == 120 and bundle.history == res["history"]
    # the saved weights are those of the best validation epoch
    best = max(h["val_acc"] for h in res["history"])
    assert res["val_accuracy"] == best
    assert res["history"][res["best_epoch"] - 1]["val_acc"] == best


def test_svm_options_reach_the_model(runner, small_stream, tmp_path):
    out = tmp_path / "svm.npz"
    _train(runner, "svm", small_stream, "--no-bias-trick", "--squared-hinge", "--delta", "0.5", "-o", str(out))
    from imgclf import storage

    model = storage.load_model(out).model
    assert model.bias_trick is False and model.squared_hinge is True and model.delta == 0.5
    assert set(model.params_) == {"W", "b"}


def test_table_output_and_preprocess_none(runner, small_stream):
    res = runner.invoke(cli, ["train", "softmax", "--data", str(small_stream), "--preprocess", "none", "-q",
                              "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output and "val_accuracy" in res.output


def test_help_documents_the_objective(runner):
    res = runner.invoke(cli, ["train", "softmax", "--help"])
    assert res.exit_code == 0
    assert "reg * sum_{d,c} W[d,c]^2" in res.output and "never penalised" in res.output
    assert "imgclf train softmax" in res.output


@pytest.mark.parametrize("args,msg", [
    (["--lr", "0"], "--lr"),
    (["--epochs", "0"], "--epochs"),
    (["--preprocess", "bogus"], "unknown preprocessing step"),
])
def test_bad_options_exit_2(runner, small_stream, args, msg):
    res = runner.invoke(cli, ["train", "svm", "--data", str(small_stream), "-q", *args])
    assert res.exit_code == 2
    assert msg in res.output


def test_divergence_in_the_first_epoch_is_an_error(runner, small_stream):
    # an absurd learning rate overflows float32 within the first epoch: nothing to keep, exit 1
    res = runner.invoke(cli, ["train", "softmax", "--data", str(small_stream), "-q", "--lr", "1e30",
                              "--reg", "1e30", "--batch-size", "30"])
    assert res.exit_code == 1
    assert "diverged: the loss became" in res.output and "lower learning rate" in res.output


def test_divergence_later_keeps_the_best_epoch(runner, small_stream, tmp_path, monkeypatch):
    from imgclf import storage
    from imgclf.linear import SoftmaxClassifier

    real, calls = SoftmaxClassifier.loss_rows, []

    def nan_from_step_9(self, X, idx, y):
        calls.append(1)
        loss, grads = real(self, X, idx, y)
        return (float("nan") if len(calls) >= 9 else loss), grads

    monkeypatch.setattr(SoftmaxClassifier, "loss_rows", nan_from_step_9)
    out = tmp_path / "m.npz"
    res = runner.invoke(cli, ["train", "softmax", "--data", str(small_stream), *FAST[:-1], "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    # 4 steps per epoch: epochs 1 and 2 finish, the NaN comes in epoch 3
    assert summary["stopped"].startswith("diverged: the loss became nan at iteration 9 (epoch 3)")
    assert len(summary["history"]) == 2
    assert "training stopped early" in res.stderr
    assert np.isfinite(storage.load_model(out).model.params_["W"]).all()


def test_real_cifar_subset(runner, cifar_dir):
    res = runner.invoke(cli, ["train", "softmax", "--data", str(cifar_dir), "--n-train", "3000", "--n-test", "500",
                              "--epochs", "3", "--json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["n_train"] == 3000 and out["n_eval"] == 500
    assert out["accuracy"] > 0.2


def test_svm_lbfgs_ovr_squared_hinge_trains_and_saves(runner, small_stream, tmp_path):
    out = tmp_path / "l2svm.npz"
    res = runner.invoke(cli, ["train", "svm", "--data", str(small_stream), "--preprocess", "mean,normalize", "-q",
                              "--solver", "lbfgs", "--multiclass", "ovr", "--squared-hinge", "--reg", "0.005",
                              "--iters", "30", "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["accuracy"] > 0.9
    hyper = rep["hyperparameters"]
    assert (hyper["solver"], hyper["multiclass"], hyper["squared_hinge"], hyper["iters"]) == ("lbfgs", "ovr", True, 30)
    assert rep["history"][0]["iteration"] == 10 and rep["history"][-1]["iteration"] <= 30
    assert rep["history"][rep["best_epoch"] - 1]["val_acc"] == rep["val_accuracy"]
    from imgclf import storage

    model = storage.load_model(out).model
    assert (model.solver, model.multiclass, model.squared_hinge) == ("lbfgs", "ovr", True)


def test_softmax_lbfgs_table_and_progress_lines(runner, small_stream):
    res = runner.invoke(cli, ["train", "softmax", "--data", str(small_stream), "--preprocess", "mean,normalize",
                              "--solver", "lbfgs", "--iters", "20"])
    assert res.exit_code == 0, res.output
    assert "iteration   10" in res.output and "accuracy" in res.output and " lr " not in res.output


@pytest.mark.parametrize("args,flag", [(["--solver", "newton"], "--solver"), (["--multiclass", "crammer"], "--multiclass")])
def test_bad_solver_and_multiclass_are_usage_errors(runner, small_stream, args, flag):
    res = runner.invoke(cli, ["train", "svm", "--data", str(small_stream), "-q", *args])
    assert res.exit_code == 2 and flag in res.output


@pytest.mark.parametrize("kind", ["svm", "softmax"])
@pytest.mark.parametrize("preprocess", ["mean,normalize", "none"])
def test_augment_flip_trains_on_mirrors_before_the_chain(runner, small_stream, tmp_path, monkeypatch, kind,
                                                        preprocess):
    import imgclf.preprocessing_chain as chain_mod
    from imgclf import storage

    seen = []
    fit_chain = chain_mod.fit_chain
    monkeypatch.setattr(chain_mod, "fit_chain", lambda t, ds, *a, **k: seen.append(ds) or fit_chain(t, ds, *a, **k))
    out = tmp_path / "m.npz"
    res = runner.invoke(cli, ["train", kind, "--data", str(small_stream), *FAST, "--preprocess", preprocess,
                              "--augment", "flip", "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    res = json.loads(res.output)
    # 120 training images + their 120 mirrors; validation and test are left alone
    assert res["n_train"] == 240 and res["n_eval"] == 30 and res["augmentation"] == "flip"
    assert res["hyperparameters"]["augment"] is None  # the estimator did not mirror: the command did
    if preprocess != "none":  # the chain saw the mirrors (fitted on and transforming 2N rows)
        train = seen[0].get("train")
        assert len(train) == 240 and len(seen[0].get("val")) == 30
        np.testing.assert_array_equal(train.X[120:], train.X[:120, :, ::-1])
        assert res["accuracy"] > 0.9  # (FAST's --lr suits the normalised pixels only)
    bundle = storage.load_model(out)
    assert bundle.model.augment is None and bundle.extra["n_train"] == 240
    assert bundle.extra["augmentation"] == {"kind": "flip", "before_chain": True, "n_images": 120}


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_augment_flip_refuses_data_already_preprocessed(runner, small_stream, tmp_path, kind):
    """Mirrors go in before the chain: a piped stream or .npz that carries a chain (from `imgclf preprocess`)
    is a usage error naming --augment and the chain; raw images, piped or not, train with their mirrors."""
    piped = runner.invoke(cli, ["preprocess", "mean", "--data", str(small_stream), "-q"])
    assert piped.exit_code == 0
    both = tmp_path / "mean_normalize.npz"
    res = runner.invoke(cli, ["preprocess", "normalize", "--data", "-", "-q", "-o", str(both)],
                        input=piped.stdout_bytes)
    assert res.exit_code == 0, res.output
    for data, stdin, chain in (("-", piped.stdout_bytes, "mean"), (str(both), None, "mean -> normalize")):
        for preprocess in ("none", "normalize"):
            res = runner.invoke(cli, ["train", kind, "--data", data, *FAST, "--preprocess", preprocess,
                                      "--augment", "flip"], input=stdin)
            assert res.exit_code == 2, res.output
            lines = res.output.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in res.output
            assert lines[0].startswith("Error: --augment flip: the data was already preprocessed by " + chain + ";")
            assert "mirror the images before preprocessing" in lines[0]
    # the same data without --augment trains; raw images piped in train with their mirrors
    res = runner.invoke(cli, ["train", kind, "--data", str(both), *FAST, "--preprocess", "none"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["train", kind, "--data", "-", *FAST, "--augment", "flip", "--json"],
                        input=small_stream.read_bytes())
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["n_train"] == 240 and out["augmentation"] == "flip" and out["accuracy"] > 0.9


@pytest.mark.parametrize("kind", ["svm", "softmax"])
def test_augment_flip_model_file_tells_the_mirrors_went_in_before_the_chain(runner, small_stream, tmp_path, kind):
    """The estimator in the file was fitted on the chain's output with augment=None (refitting it on features
    mirrors nothing); the file's metadata says the training images were mirrored before the chain."""
    from imgclf import storage

    out = tmp_path / "flip.npz"
    _train(runner, kind, small_stream, "--augment", "flip", "-o", str(out))
    bundle = storage.load_model(out)
    assert bundle.model.augment is None and bundle.model.get_params()["augment"] is None
    assert bundle.extra["augmentation"] == {"kind": "flip", "before_chain": True, "n_images": 120}
    assert bundle.extra["n_train"] == 240 and [t.kind for t in bundle.chain] == ["mean", "normalize"]
    # a Python user refitting the loaded estimator's settings on the chain's features: no mirrors of rows
    ds = storage.read_stream(small_stream)
    features = bundle.features(ds.get("train").X)
    refit = type(bundle.model)(**bundle.model.get_params()).fit(features, ds.get("train").y)
    assert refit.augment_ is None and refit.score(bundle.features(ds.get("test").X), ds.get("test").y) > 0.9
    # evaluate reads it back, its n_train the rows the model trained on
    res = runner.invoke(cli, ["evaluate", "-m", str(out), "--data", str(small_stream), "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["n_train"] == 240
    # without --augment the metadata has no augmentation entry
    plain = tmp_path / "plain.npz"
    _train(runner, kind, small_stream, "-o", str(plain))
    assert "augmentation" not in storage.load_model(plain).extra


def test_augment_flip_needs_images(runner, tmp_path):
    from imgclf import storage
    from imgclf.datasets.base import Dataset, Split

    rows = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    ds = Dataset({"train": Split(rows[:30], np.arange(30) % 2), "test": Split(rows[30:], np.arange(10) % 2)},
                 ["a", "b"], (1, 1, 6), [], "rows")
    path = tmp_path / "rows.npz"
    storage.write_stream(ds, path)
    res = runner.invoke(cli, ["train", "svm", "--data", str(path), "--preprocess", "none", "-q", "--augment", "flip"])
    assert res.exit_code == 2
    assert "--augment: horizontal mirrors need images" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["train", "svm", "--data", str(path), "-q", "--augment", "crop:4"])
    assert res.exit_code == 2 and "--augment" in res.output
