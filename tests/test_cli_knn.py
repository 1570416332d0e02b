"""`imgclf knn` end to end on a small pipeline stream: tables, JSON, CV plot, predictions, model files, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgclf_cli.main import cli


def run(runner, *args):
    return runner.invoke(cli, list(args), catch_exceptions=False)


def test_json_result(runner, small_stream):
    res = run(runner, "knn", "--data", str(small_stream), "--k", "3", "--json", "-q")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("accuracy", "split", "n_train", "n_eval", "seconds", "per_class", "k", "metric"):
        assert key in out
    assert out["split"] == "test" and out["n_train"] == 150 and out["n_eval"] == 30  # train + val
    assert out["accuracy"] == 1.0 and out["k"] == 3 and set(out["per_class"]) == {"a", "b", "c"}


def test_table_and_val_split(runner, small_stream):
    res = run(runner, "knn", "--data", str(small_stream), "--k", "1", "--metric", "l1", "--val", "10", "--json")
    out = json.loads(res.stdout)
    assert out["split"] == "val" and out["n_train"] == 120 and out["n_eval"] == 30
    res = run(runner, "knn", "--data", str(small_stream), "--k", "1")
    assert res.exit_code == 0 and "accuracy" in res.stdout and "airplane" not in res.stdout


def test_cv_table_plot_and_best_k(runner, small_stream, tmp_path):
    png = tmp_path / "cv.png"
    res = run(runner, "knn", "--data", str(small_stream), "--cv", "3", "--k-values", "1,3,7", "--plot", str(png),
              "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["cv"]["k_values"] == [1, 3, 7] and out["k"] == out["cv"]["best_k"] == 1
    assert np.array(out["cv"]["fold_accuracies"]).shape == (3, 3)
    from PIL import Image

    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (640, 480)
    res = run(runner, "knn", "--data", str(small_stream), "--cv", "3", "--k-values", "1,3")
    assert "best k: 1" in res.stdout and "mean" in res.stdout


def test_predictions_and_model_file(runner, small_stream, tmp_path):
    preds, model = tmp_path / "p.txt", tmp_path / "m.npz"
    res = run(runner, "knn", "--data", str(small_stream), "--k", "3", "--predictions", str(preds),
              "-o", str(model), "-q")
    assert res.exit_code == 0, res.output
    labels = [int(v) for v in preds.read_text().split()]
    assert len(labels) == 30
    from imgclf import storage

    bundle = storage.load_model(model)
    assert bundle.kind == "knn" and bundle.classes == ["a", "b", "c"] and bundle.input_shape == (8, 8, 3)
    test = storage.read_stream(small_stream).get("test")
    np.testing.assert_array_equal(bundle.model.predict(bundle.features(test.X)), labels)
    res = run(runner, "knn", "--data", str(small_stream), "--predictions", "-", "-q")
    assert res.stdout.split() == [str(v) for v in labels]


def test_preprocess_chain_is_saved(runner, small_stream, tmp_path):
    model = tmp_path / "m.npz"
    res = run(runner, "knn", "--data", str(small_stream), "--preprocess", "mean", "--k", "1", "--output", str(model),
              "--json", "-q")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accuracy"] == 1.0
    from imgclf import storage

    bundle = storage.load_model(model)
    assert [t.kind for t in bundle.chain] == ["mean"] and bundle.model.X_train_.dtype == np.float32


def test_save_is_a_hidden_alias_of_output(runner, small_stream, tmp_path):
    """`knn --save` (its name before -o/--output) still writes the same model file; --help no longer shows it."""
    old, new = tmp_path / "old.npz", tmp_path / "new.npz"
    for flag, path in (("--save", old), ("-o", new)):
        assert run(runner, "knn", "--data", str(small_stream), "--k", "3", flag, str(path), "-q").exit_code == 0
    from imgclf import storage

    a, b = storage.load_model(old), storage.load_model(new)
    np.testing.assert_array_equal(a.model.X_train_, b.model.X_train_)
    assert a.extra == b.extra
    res = run(runner, "knn", "--data", str(small_stream), "--save", str(old), "-o", str(new), "-q")
    assert res.exit_code == 2 and "old name of -o/--output" in res.output
    help_text = run(runner, "knn", "--help").output
    assert "-o, --output" in help_text and "--save" not in help_text


@pytest.mark.parametrize("args,message", [
    (["--k", "0"], "k must be"),
    (["--k", "151"], "larger than the number of training"),
    (["--metric", "cosine"], "cosine"),
    (["--cv", "1"], "--cv"),
    (["--plot", "x.png"], "--cv"),
    (["--k-values", "1,a", "--cv", "2"], "whole numbers"),
    (["--cv", "3", "--k-values", "120"], "larger than"),
    (["--predictions", "-", "--json"], "stdout"),
    (["--preprocess", "bogus"], "unknown preprocessing step"),
])
def test_bad_input_exits_2(runner, small_stream, args, message):
    res = runner.invoke(cli, ["knn", "--data", str(small_stream), "-q", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_nan_and_empty_data(runner, tmp_path):
    from imgclf import storage
    from imgclf.datasets.base import Dataset, Split

    X = np.zeros((6, 4), np.float32)
    X[2, 1] = np.nan
    y = np.array([0, 1, 0, 1, 0, 1])
    path = tmp_path / "nan.npz"
    storage.write_stream(Dataset({"train": Split(X, y), "test": Split(np.zeros((2, 4), np.float32), y[:2])},
                           ["a", "b"], (2, 2, 1), [], "nan"), path)
    res = runner.invoke(cli, ["knn", "--data", str(path), "--k", "1"])
    assert res.exit_code == 2 and "NaN" in res.output
    empty = tmp_path / "empty.npz"
    storage.write_stream(Dataset({"train": Split(np.zeros((4, 4), np.float32), y[:4]),
                            "test": Split(np.zeros((0, 4), np.float32), y[:0])}, ["a", "b"], (2, 2, 1), [], "e"),
                   empty)
    res = runner.invoke(cli, ["knn", "--data", str(empty), "--k", "1"])
    assert res.exit_code == 2 and "no test images" in res.output


def test_help_has_examples(runner):
    res = run(runner, "knn", "--help")
    assert res.exit_code == 0 and "Examples:" in res.output and "--cv" in res.output
