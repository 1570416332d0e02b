"""`imgclf train twolayer` and the shared training options: output, files, errors, Ctrl-C and --resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from imgclf_cli.main import cli

FAST = ["--hidden", "16", "--epochs", "3", "--batch-size", "30", "--preprocess", "mean,normalize", "--augment", "none"]


def test_help_has_examples(runner):
    result = runner.invoke(cli, ["train", "twolayer", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--resume" in result.output and "--checkpoint-dir" in result.output


def test_json_result_model_file_log_and_plot(runner, small_stream, tmp_path):
    out, log, plot = tmp_path / "net.npz", tmp_path / "train.jsonl", tmp_path / "curves.png"
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), *FAST, "--json", "-o", str(out),
                                 "--log", str(log), "--plot", str(plot), "--checkpoint-dir", str(tmp_path / "ck")])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert {"accuracy", "split", "n_train", "n_eval", "seconds"} <= set(d)
    assert d["split"] == "test" and d["n_train"] == 120 and d["accuracy"] > 0.5
    assert d["hyperparameters"]["hidden"] == [16] and len(d["history"]) == 3
    from imgclf import storage

    bundle = storage.load_model(out)
    assert bundle.kind == "twolayer" and len(bundle.chain) == 2
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2, 3]
    from PIL import Image

    assert Image.open(plot).size == (720, 640)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir())[-1].startswith("ckpt_epoch003_val")


def test_table_output_and_deeper_net(runner, small_stream):
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), *FAST, "--hidden", "12,8",
                                 "--batchnorm", "--dropout", "0.1", "--optim", "nesterov", "--momentum", "0.8",
                                 "--lr", "0.01", "--lr-schedule", "inv:0.5"])
    assert result.exit_code == 0, result.output
    assert "net 12,8 on tiny" in result.stdout and "accuracy" in result.stdout


@pytest.mark.parametrize("args,msg", [
    (["--optim", "adam", "--momentum", "0.9"], "--momentum applies to momentum, nesterov"),
    (["--hidden", "10,0"], "layer sizes"),
    (["--activation", "swish"], "unknown activation"),
    (["--init", "zeros"], "unknown init"),
    (["--lr-schedule", "cosine"], "unknown learning-rate schedule"),
    (["--augment", "rotate"], "unknown augmentation"),
])
def test_bad_options_exit_2(runner, small_stream, args, msg):
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), *FAST, *args])
    assert result.exit_code == 2
    assert msg in result.output


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_reported(runner, small_stream):
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), *FAST, "--optim", "sgd",
                                 "--lr", "1e30"])
    assert result.exit_code == 1
    assert "diverged: the loss became" in result.output and "no epoch finished" in result.output


def test_check_commands_know_twolayer(runner, small_stream):
    result = runner.invoke(cli, ["check", "grad", "twolayer", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"]
    result = runner.invoke(cli, ["check", "overfit", "twolayer", "--data", str(small_stream), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["train_accuracy"] == 1.0


def test_ctrl_c_writes_checkpoint_exits_130_and_resume_matches(runner, small_stream, tmp_path):
    """A real SIGINT to a real process, then --resume in-process: the final weights equal those of a
    run that was never interrupted."""
    args = ["train", "twolayer", "--data", str(small_stream), "--hidden", "16", "--epochs", "80", "--batch-size", "10",
            "--preprocess", "mean,normalize", "--dropout", "0.2", "--augment", "flip,crop:1", "--seed", "4"]
    ck = tmp_path / "ck"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "imgclf_cli.main", *args, "--checkpoint-dir", str(ck),
                             "--keep-checkpoints", "1", "-q"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (ck.is_dir() and any(ck.glob("ckpt_epoch*.npz"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted: checkpoint written to" in err
    ckpt = err.split("continue with --resume ")[1].strip()
    assert os.path.exists(ckpt)

    resumed, full = tmp_path / "resumed.npz", tmp_path / "full.npz"
    r = runner.invoke(cli, [*args, "--resume", ckpt, "-o", str(resumed), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, [*args, "-o", str(full), "-q"])
    assert r.exit_code == 0, r.output
    from imgclf import storage

    a, b = storage.load_model(resumed).model, storage.load_model(full).model
    for k in b.params_:
        np.testing.assert_array_equal(a.params_[k], b.params_[k], err_msg=k)


def test_auto_augment_flips_colour_images_only(runner, small_stream, tmp_path):
    fast = [a for a in FAST if a not in ("--augment", "none")]
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), *fast, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["hyperparameters"]["augment"] == "auto" and out["augmentation"] == "flip"
    from imgclf import storage
    from imgclf.datasets.base import Dataset, Split

    from conftest import make_images

    X, y = make_images(60, shape=(6, 6, 1))
    gray = tmp_path / "gray.npz"
    storage.write_stream(Dataset({"train": Split(X, y), "test": Split(X[:20], y[:20])}, ["a", "b", "c"], (6, 6, 1), [], "g"),
                   gray)
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(gray), *fast, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["augmentation"] is None


def test_label_smoothing_and_weight_averaging_options(runner, small_stream):
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), "--hidden", "16", "--epochs", "2",
                                 "--label-smoothing", "0.1", "--ema", "0.9", "--lookahead", "3:0.5", "--json", "-q"])
    assert result.exit_code == 0, result.output
    hp = json.loads(result.stdout)["hyperparameters"]
    assert hp["label_smoothing"] == 0.1 and hp["ema"] == 0.9 and hp["lookahead"] == "3:0.5"
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), "--lookahead", "3:2"])
    assert result.exit_code == 2 and "--lookahead" in result.output
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), "--ema", "1"])
    assert result.exit_code == 2


def test_bias_lr_scale_and_ramped_lookahead_options(runner, small_stream):
    result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), "--hidden", "16", "--epochs", "2",
                                 "--batchnorm", "--optim", "nesterov", "--momentum", "0.85", "--lr", "0.05",
                                 "--bias-lr-scale", "8", "--lookahead", "5:ramp", "--lr-schedule",
                                 "warmup:0.23:0.2:0.07", "--json", "-q"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    hp = d["hyperparameters"]
    assert hp["bias_lr_scale"] == 8.0 and hp["lookahead"] == "5:ramp" and hp["lr_schedule"] == "warmup:0.23:0.2:0.07"
    assert d["history"][-1]["lr"] > 0  # the triangle ends at 0.07 lr, not 0
    for args, msg in [(["--bias-lr-scale", "0"], "--bias-lr-scale"), (["--bias-lr-scale", "x"], "--bias-lr-scale"),
                      (["--lookahead", "5:rampx"], "K:ramp")]:
        result = runner.invoke(cli, ["train", "twolayer", "--data", str(small_stream), *args])
        assert result.exit_code == 2 and msg in result.output, result.output
    help_text = runner.invoke(cli, ["train", "twolayer", "--help"]).output
    assert "--bias-lr-scale" in help_text and "K:ramp" in help_text
