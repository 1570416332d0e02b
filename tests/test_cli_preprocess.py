"""`imgclf preprocess ...` and `imgclf viz pca` through CliRunner, plus real shell pipelines."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_images
from imgclf import storage
from imgclf.datasets.base import Dataset, Split
from imgclf.preprocessing_chain import apply_chain, fit_chain, parse_chain_spec
from imgclf_cli.main import cli


def run_ok(runner, args, **kw):
    result = runner.invoke(cli, [str(a) for a in args], **kw)
    assert result.exit_code == 0, result.output
    return result


def write_stream(path, splits, shape=(8, 8, 3)):
    ds = Dataset({k: Split(X, y) for k, (X, y) in splits.items()}, ["a", "b", "c"], shape, [], "t")
    storage.write_stream(ds, path)
    return path


def assert_same_splits(a: Dataset, b: Dataset):
    assert set(a.splits) == set(b.splits)
    for key in a.splits:
        assert a.splits[key].X.dtype == b.splits[key].X.dtype == np.float32
        np.testing.assert_array_equal(a.splits[key].X, b.splits[key].X)
        np.testing.assert_array_equal(a.splits[key].y, b.splits[key].y)


def test_pipe_steps_equal_the_inline_chain_bit_for_bit(runner, small_stream, tmp_path):
    m, n, p = tmp_path / "m.npz", tmp_path / "n.npz", tmp_path / "p.npz"
    run_ok(runner, ["preprocess", "mean", "--data", small_stream, "-o", m])
    run_ok(runner, ["preprocess", "normalize", "--data", m, "-o", n])
    run_ok(runner, ["preprocess", "pca", "--dims", 5, "--data", n, "-o", p])
    piped = storage.read_stream(p)
    inline = fit_chain(parse_chain_spec("mean,normalize,pca:5"), storage.read_stream(small_stream))
    assert_same_splits(piped, inline)
    assert [t.describe() for t in piped.transforms] == [t.describe() for t in inline.transforms]
    assert piped.get("test").X.shape == (30, 5)


def test_stdin_to_stdout(runner, small_stream):
    result = run_ok(runner, ["preprocess", "mean", "--per-channel", "--data", "-"], input=small_stream.read_bytes())
    out = storage.read_stream(io.BytesIO(result.stdout_bytes))
    assert [t.describe() for t in out.transforms] == [{"kind": "mean", "per_channel": True}]
    assert out.get("train").X.shape == (120, 8, 8, 3)


def test_pca_and_whiten_report_retained_variance_on_stderr(runner, small_stream, tmp_path):
    result = run_ok(runner, ["preprocess", "pca", "--variance", "0.9", "--data", small_stream, "-o", tmp_path / "p.npz"])
    assert "% of the training variance" in result.stderr and result.stdout == ""
    result = run_ok(runner, ["preprocess", "whiten", "--dims", 10, "--data", small_stream, "-o", tmp_path / "w.npz"])
    assert "whiten: 10 of 192 components keep" in result.stderr
    assert storage.read_stream(tmp_path / "w.npz").get("val").X.shape == (30, 10)
    quiet = run_ok(runner, ["-q", "preprocess", "pca", "--dims", 3, "--data", small_stream, "-o", tmp_path / "q.npz"])
    assert quiet.stderr == ""


def test_zca_keeps_the_image_shape(runner, small_stream, tmp_path):
    out = tmp_path / "z.npz"
    run_ok(runner, ["preprocess", "whiten", "--zca", "--eps", "0.1", "--data", small_stream, "-o", out])
    ds = storage.read_stream(out)
    assert ds.get("train").X.shape == (120, 8, 8, 3)
    assert ds.transforms[0].describe()["zca"] is True and ds.transforms[0].eps == 0.1


def test_apply_a_stored_chain_to_raw_images_equals_the_stream(runner, small_stream, tmp_path):
    chained = tmp_path / "c.npz"
    inline = fit_chain(parse_chain_spec("mean,pca:6,whiten"), storage.read_stream(small_stream))
    storage.write_stream(inline, chained)
    out = tmp_path / "applied.npz"
    run_ok(runner, ["preprocess", "apply", chained, "--data", small_stream, "-o", out])
    applied = storage.read_stream(out)
    assert_same_splits(applied, inline)
    raw = make_images(7, seed=9)[0]
    np.testing.assert_array_equal(apply_chain(storage.read_stream(chained).transforms, raw),
                                  apply_chain(inline.transforms, raw))


def test_apply_a_chain_from_a_model_file(runner, small_stream, tmp_path):
    neighbors = pytest.importorskip("imgclf.neighbors")
    from imgclf.io import modelfile

    ds = fit_chain(parse_chain_spec("mean,pca:4"), storage.read_stream(small_stream))
    train = ds.get("train")
    model = neighbors.KNNClassifier(k=1).fit(train.X, train.y)
    path = tmp_path / "model.npz"
    storage.save_model(modelfile.ModelBundle(model, ds.classes, (8, 8, 3), ds.transforms), path)
    out = tmp_path / "applied.npz"
    run_ok(runner, ["preprocess", "apply", path, "--data", small_stream, "-o", out])
    assert_same_splits(storage.read_stream(out), ds)
    raw = make_images(5, seed=11)[0]
    np.testing.assert_array_equal(storage.load_model(path).features(raw), apply_chain(ds.transforms, raw))


# -- bad input: one clear line, exit 2 -------------------------------------------------------------
def _nan_stream(tmp_path):
    X, y = make_images(20)
    X = X.astype(np.float32)
    X[2, 3, 3, 1] = np.nan
    return write_stream(tmp_path / "nan.npz", {"train": (X, y)})


def _test_only_stream(tmp_path):
    return write_stream(tmp_path / "t.npz", {"test": make_images(10)})


def _other_shape_stream(tmp_path):
    X, y = make_images(10, shape=(4, 4, 3))
    return write_stream(tmp_path / "o.npz", {"train": (X, y)}, shape=(4, 4, 3))


@pytest.mark.parametrize("args,message", [
    (["pca", "--dims", "193"], "dims must be at least 1 and at most 192, the number of features (X has 192 feature(s))"),
    (["pca", "--dims", "0"], "0 is not in the range x>=1"),
    (["pca", "--dims", "3", "--variance", "0.5"], "give --dims or --variance, not both"),
    (["whiten", "--variance", "1.5"], "1.5 is not in the range"),
    (["whiten", "--eps", "-1"], "-1.0 is not in the range"),
    (["pca", "--dims", "3", "--data", "{nan}"], "contains 1 NaN or infinite value"),
    (["mean", "--data", "{test_only}"], "needs a training split"),
    (["apply", "{chain}", "--data", "{other}"], "fitted on samples of shape (8, 8, 3), got data of shape (4, 4, 3)"),
    (["apply", "{stream}"], "holds no preprocessing chain"),
    (["apply", "{missing}"], "no such file"),
])
def test_bad_input_exits_2(runner, small_stream, tmp_path, args, message):
    chain = tmp_path / "chain.npz"
    storage.write_stream(fit_chain(parse_chain_spec("mean"), storage.read_stream(small_stream)), chain)
    paths = {"nan": _nan_stream(tmp_path), "test_only": _test_only_stream(tmp_path), "chain": chain,
             "other": _other_shape_stream(tmp_path), "stream": small_stream, "missing": tmp_path / "nope.npz"}
    args = [a.format(**paths) for a in args]
    if "--data" not in args:
        args += ["--data", str(small_stream)]
    result = runner.invoke(cli, ["preprocess", *args, "-o", str(tmp_path / "out.npz")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "out.npz").exists()


def test_per_channel_needs_images(runner, small_stream, tmp_path):
    flat = tmp_path / "flat.npz"
    run_ok(runner, ["preprocess", "pca", "--dims", 4, "--data", small_stream, "-o", flat])
    result = runner.invoke(cli, ["preprocess", "mean", "--per-channel", "--data", str(flat), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "per_channel needs images" in result.stderr


def test_empty_stdin_is_a_clear_error(runner):
    result = runner.invoke(cli, ["preprocess", "mean", "--data", "-"], input=b"")
    assert result.exit_code == 2 and "empty input" in result.stderr


@pytest.mark.parametrize("sub", ["mean", "normalize", "pca", "whiten", "apply"])
def test_help_has_examples(runner, sub):
    result = run_ok(runner, ["preprocess", sub, "--help"])
    assert "Examples:" in result.stdout and "imgclf" in result.stdout


# -- viz pca -----------------------------------------------------------------------------------------
def test_viz_pca_draws_the_component_grid(runner, small_stream, tmp_path):
    from PIL import Image

    out = tmp_path / "eigen.png"
    result = run_ok(runner, ["viz", "pca", "--data", small_stream, "--dims", 16, "--scale", 2, "-o", out])
    assert "the top 16 eigenvectors" in result.stderr
    with Image.open(out) as im:  # 4x4 tiles of 16 px with 1 px gaps
        assert im.size == (4 * 17 + 1, 4 * 17 + 1) and im.mode == "RGB"


def test_viz_pca_reconstruct(runner, small_stream, tmp_path):
    from PIL import Image

    out = tmp_path / "recon.png"
    run_ok(runner, ["viz", "pca", "--data", small_stream, "--dims", 10, "--reconstruct", 5, "--scale", 1, "-o", out])
    with Image.open(out) as im:
        px = np.asarray(im)
    assert px.shape == (2 * 9 + 1, 5 * 9 + 1, 3)
    X = storage.read_stream(small_stream).get("test").X
    np.testing.assert_array_equal(px[1:9, 1:9], X[0])  # raw images are drawn unscaled


def test_viz_pca_needs_image_shaped_data(runner, small_stream, tmp_path):
    flat = tmp_path / "flat.npz"
    run_ok(runner, ["preprocess", "pca", "--dims", 4, "--data", small_stream, "-o", flat])
    result = runner.invoke(cli, ["viz", "pca", "--data", str(flat), "-o", str(tmp_path / "e.png")])
    assert result.exit_code == 2 and "needs image-shaped data" in result.stderr
    result = runner.invoke(cli, ["viz", "pca", "--data", str(small_stream), "--dims", 500, "-o", str(tmp_path / "e.png")])
    assert result.exit_code == 2 and "at most 192" in result.stderr
    assert not (tmp_path / "e.png").exists()


# -- real shell pipelines ----------------------------------------------------------------------------
def _shell(cmd: str, cwd, data_dir=None) -> subprocess.CompletedProcess:
    """Run `cmd` (with `imgclf` standing for the CLI) through bash with pipefail and real OS pipes."""
    if shutil.which("imgclf") is None:
        cmd = cmd.replace("imgclf ", f"{shlex.quote(sys.executable)} -c 'from imgclf_cli.main import main; main()' ")
    env = dict(os.environ)
    if data_dir is not None:
        env["IMGCLF_DATA"] = str(data_dir)
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_shell_pipeline_with_shapes_equals_inline_preprocess(tmp_path):
    pipe = _shell("imgclf data export shapes --n-train 400 --n-test 100 --val 0 -q | imgclf preprocess mean -q"
                  " | imgclf preprocess pca --dims 20 | imgclf knn --k 5 --json", tmp_path)
    assert "pca: 20 of 3072 components keep" in pipe.stderr
    inline = _shell("imgclf knn --data shapes --n-train 400 --n-test 100 --preprocess mean,pca:20 --k 5 --json -q",
                    tmp_path)
    a, b = json.loads(pipe.stdout), json.loads(inline.stdout)
    assert a["n_train"] == b["n_train"] == 400 and a["n_eval"] == 100
    assert a["accuracy"] == b["accuracy"] and a["per_class"] == b["per_class"]


def test_shell_pipeline_chain_reaches_the_end(tmp_path):
    proc = _shell("imgclf data export shapes --n-train 200 --n-test 50 -q | imgclf preprocess mean -q"
                  " | imgclf preprocess whiten --dims 12 -q | imgclf data info - --json", tmp_path)
    info = json.loads(proc.stdout)
    assert [t["kind"] for t in info["transforms"]] == ["mean", "whiten"]
    assert info["feature_shape"] == [12] and info["dtype"] == "float32"


def test_issue_example_on_real_cifar(cifar_dir, tmp_path):
    proc = _shell("imgclf data export cifar10 --n-train 5000 --n-test 500 | imgclf preprocess mean"
                  " | imgclf preprocess pca --dims 144 | imgclf knn --k 5 --json", tmp_path, data_dir=cifar_dir.parent)
    out = json.loads(proc.stdout)
    assert out["n_eval"] == 500 and out["split"] == "test" and 0.2 < out["accuracy"] < 0.45
    assert "pca: 144 of 3072 components keep" in proc.stderr


def test_model_file_chain_at_predict_matches_the_pipeline_exactly(runner, small_stream, tmp_path):
    """Raw images through a saved model's chain give the stream's features bit for bit, and the same labels."""
    pytest.importorskip("imgclf_cli.commands.predict")
    from imgclf import storage

    m, p, model = tmp_path / "m.npz", tmp_path / "p.npz", tmp_path / "model.npz"
    run_ok(runner, ["preprocess", "mean", "--data", small_stream, "-o", m])
    run_ok(runner, ["preprocess", "pca", "--dims", 6, "--data", m, "-o", p])
    run_ok(runner, ["knn", "--k", 1, "--data", p, "-o", model, "-q"])
    bundle, stream, raw = storage.load_model(model), storage.read_stream(p), storage.read_stream(small_stream)
    assert [t.kind for t in bundle.chain] == ["mean", "pca"]
    np.testing.assert_array_equal(bundle.features(raw.get("test").X), stream.get("test").X)
    result = run_ok(runner, ["predict", "-m", model, small_stream, "--split", "test", "--format", "jsonl", "-q"])
    labels = [json.loads(line)["label"] for line in result.stdout.splitlines()]
    expected = bundle.model.predict(stream.get("test").X)
    assert labels == [bundle.classes[i] for i in expected]
