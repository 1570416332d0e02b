"""`imgclf train convnet`: output, model files used by predict/evaluate, geometry errors, resume, checks."""

import json

import numpy as np
import pytest

from imgclf_cli.main import cli

FAST = ["--filters", "4,8", "--hidden", "16", "--epochs", "3", "--batch-size", "20", "--augment", "none"]


def test_help_has_examples(runner):
    result = runner.invoke(cli, ["train", "convnet", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--filters" in result.output and "32x2,64x2" in result.output


def test_json_model_file_predict_and_evaluate(runner, small_stream, tmp_path):
    out = tmp_path / "conv.npz"
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, "--batchnorm", "--json",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert {"accuracy", "split", "n_train", "n_eval", "seconds"} <= set(d)
    assert d["split"] == "test" and d["n_train"] == 120 and d["accuracy"] > 0.6
    assert d["hyperparameters"]["filters"] == [4, 8] and d["hyperparameters"]["batchnorm"] is True
    from imgclf import storage

    bundle = storage.load_model(out)
    assert bundle.kind == "convnet" and bundle.model.params_["W1"].shape == (3, 3, 3, 4)

    ev = runner.invoke(cli, ["evaluate", "-m", str(out), "--data", str(small_stream), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(d["accuracy"])
    pr = runner.invoke(cli, ["predict", "-m", str(out), str(small_stream), "--format", "jsonl"])
    assert pr.exit_code == 0, pr.output
    rows = [json.loads(line) for line in pr.stdout.splitlines()]
    assert len(rows) == 30
    from imgclf import storage

    test = storage.read_stream(small_stream).get("test")
    want = np.asarray(bundle.classes)[bundle.model.predict(test.X)]
    assert [r.get("label", r.get("class")) for r in rows] == want.tolist()


def test_table_output_stacked_convolutions(runner, small_stream):
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, "--filters", "4x2",
                                 "--dropout", "0.2", "--optim", "momentum", "--lr", "0.01"])
    assert result.exit_code == 0, result.output
    assert "convnet 4x2 on tiny" in result.stdout and "accuracy" in result.stdout


@pytest.mark.parametrize("args,msg", [
    (["--filters", "4,4,4,4"], "convolution layer 4 of filters=(4, 4, 4, 4) on 8x8x3 images: max pooling height"),
    (["--filters", "32y"], "filters must be filter counts"),
    (["--hidden", "8,0"], "hidden layer sizes"),
    (["--pool", "3"], "is not an integer"),
    (["--preprocess", "pca:10"], "a convnet needs images"),
    (["--optim", "adam", "--momentum", "0.9"], "--momentum applies to momentum, nesterov"),
])
def test_bad_options_exit_2(runner, small_stream, args, msg):
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, *args])
    assert result.exit_code == 2, result.output
    assert msg in result.output


def _full_and_resumed(runner, args, tmp_path, full_flags=(), resume_flags=()):
    """Run `args` to the end with a checkpoint every epoch, then again from the first epoch's checkpoint:
    (the full run's result, its saved model, the resumed run's saved model)."""
    from imgclf import storage

    ck, full, resumed = tmp_path / "ck", tmp_path / "full.npz", tmp_path / "resumed.npz"
    r = runner.invoke(cli, [*args, "--checkpoint-dir", str(ck), "--keep-checkpoints", "0", "-o", str(full),
                            *full_flags])
    assert r.exit_code == 0, r.output
    first = sorted(ck.glob("ckpt_epoch001*.npz"))[0]
    again = runner.invoke(cli, [*args, "--resume", str(first), "-o", str(resumed), *resume_flags])
    assert again.exit_code == 0, again.output
    return r, storage.load_model(full).model, storage.load_model(resumed).model


def _assert_same_weights_and_statistics(a, b):
    for store in ("params_", "buffers_"):
        for k, v in getattr(b, store).items():
            np.testing.assert_array_equal(getattr(a, store)[k], v, err_msg=k)


def test_resume_from_a_checkpoint_gives_the_uninterrupted_weights(runner, small_stream, tmp_path):
    args = ["train", "convnet", "--data", str(small_stream), *FAST, "--batchnorm", "--dropout", "0.2", "--augment",
            "flip,crop:1", "--seed", "3", "-q"]
    _, full, resumed = _full_and_resumed(runner, args, tmp_path)
    _assert_same_weights_and_statistics(resumed, full)


def test_alternating_flips_and_lookahead_flags_resume_bit_exact_and_load(runner, small_stream, tmp_path):
    """--augment flip:alt,crop:1 and --lookahead reach the model, are saved in its file (evaluate loads it),
    and --resume from the first epoch's checkpoint (the flips of epoch 0 and the slow weights mid-cycle in it)
    gives the uninterrupted run's weights."""
    args = ["train", "convnet", "--data", str(small_stream), *FAST, "--batchnorm", "--augment", "flip:alt,crop:1",
            "--lookahead", "4:0.5", "--ema", "0.9", "--seed", "3"]
    r, b, a = _full_and_resumed(runner, args, tmp_path, ["--json"], ["-q"])
    d = json.loads(r.stdout)
    assert d["hyperparameters"]["lookahead"] == "4:0.5" and d["hyperparameters"]["augment"] == "flip:alt,crop:1"
    assert d["augmentation"] == "flip:alt,crop:1"
    assert b.lookahead == "4:0.5" and b.augment == "flip:alt,crop:1"
    _assert_same_weights_and_statistics(a, b)
    ev = runner.invoke(cli, ["evaluate", "-m", str(tmp_path / "full.npz"), "--data", str(small_stream), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(d["accuracy"])


AIRBENCH_FLAGS = ["--optim", "nesterov", "--momentum", "0.85", "--lr", "0.2", "--bias-lr-scale", "16",
                  "--label-smoothing", "0.2", "--lookahead", "5:ramp", "--lr-schedule", "warmup:0.23:0.2:0.07",
                  "--tta", "flip+shift", "--augment", "flip:alt,crop:2:reflect", "--reg", "6.65e-4"]


def test_airbench_training_flags_reach_the_model_resume_bit_exact_and_load(runner, small_stream, tmp_path):
    """The whole airbench set (--bias-lr-scale, --lookahead K:ramp, warmup:P:S:E, --tta flip+shift, crop:P:reflect)
    trains, is saved in the model file (evaluate scores it the same), and --resume from the first epoch's
    checkpoint gives the uninterrupted run's weights and statistics."""
    args = ["train", "convnet", "--data", str(small_stream), "--filters", "4,8", "--hidden", "0", "--epochs", "3",
            "--batch-size", "20", "--batchnorm", *AIRBENCH_FLAGS, "--seed", "3"]
    r, b, a = _full_and_resumed(runner, args, tmp_path, ["--json"], ["-q"])
    d = json.loads(r.stdout)
    hp = d["hyperparameters"]
    assert (hp["bias_lr_scale"], hp["lookahead"], hp["lr_schedule"], hp["tta"], hp["augment"]) == \
        (16.0, "5:ramp", "warmup:0.23:0.2:0.07", "flip+shift", "flip:alt,crop:2:reflect")
    assert d["augmentation"] == "flip:alt,crop:2:reflect" and d["accuracy"] > 0.5
    _assert_same_weights_and_statistics(a, b)
    ev = runner.invoke(cli, ["evaluate", "-m", str(tmp_path / "full.npz"), "--data", str(small_stream), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(d["accuracy"])


@pytest.mark.parametrize("args, msg", [
    (["--bias-lr-scale", "0"], "--bias-lr-scale"),
    (["--bias-lr-scale", "-2"], "--bias-lr-scale"),
    (["--lookahead", "5:rampx"], "K:ramp"),
    (["--lookahead", "0:ramp"], "--lookahead"),
    (["--tta", "shift"], "--tta"),
    (["--augment", "crop:2:mirror"], "crop:PAD:reflect"),
    (["--augment", "crop:8:reflect"], "reflect"),
    (["--lr-schedule", "warmup:0.2:0.2:2"], "warmup:P[:S[:E]]"),
])
def test_bad_airbench_training_options_exit_2(runner, small_stream, args, msg):
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, *args])
    assert result.exit_code == 2, result.output
    assert msg in result.output and "Traceback" not in result.output


def test_convnet_help_shows_the_airbench_options(runner):
    out = runner.invoke(cli, ["train", "convnet", "--help"]).output
    for text in ("--bias-lr-scale", "flip+shift", "K:ramp", "crop:PAD:reflect", "warmup:P[:S[:E]]"):
        assert text in out, text


@pytest.mark.parametrize("args, msg", [
    (["--lookahead", "0:0.5"], "--lookahead"),
    (["--lookahead", "5"], "K:ALPHA"),
    (["--augment", "flip,flip:alt"], "not both"),
    (["--augment", "flip:sometimes"], "unknown augmentation"),
])
def test_bad_alternating_flip_and_lookahead_options_exit_2(runner, small_stream, args, msg):
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, *args])
    assert result.exit_code == 2, result.output
    assert msg in result.output and "Traceback" not in result.output


def test_check_commands_know_convnet(runner, small_stream):
    result = runner.invoke(cli, ["check", "grad", "convnet", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"]
    result = runner.invoke(cli, ["check", "overfit", "convnet", "--data", str(small_stream), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["train_accuracy"] == 1.0


def test_viz_weights_draws_the_first_layer_filters(runner, small_stream, tmp_path):
    model, png = tmp_path / "conv.npz", tmp_path / "filters.png"
    r = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, "-o", str(model), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["viz", "weights", str(model), "-o", str(png)])
    assert r.exit_code == 0, r.output
    from PIL import Image

    assert Image.open(png).mode == "RGB"
    assert "4 convnet weight images" in r.output


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_reported(runner, small_stream):
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, "--optim", "sgd",
                                 "--lr", "1e30"])
    assert result.exit_code == 1
    assert "diverged: the loss became" in result.output


def test_auto_augment_flips_and_crops_colour_images_only(runner, small_stream, tmp_path):
    fast = [a for a in FAST if a not in ("--augment", "none")]
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *fast, "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["hyperparameters"]["augment"] == "auto" and out["augmentation"] == "flip,crop:1"  # 8x8 images
    from conftest import make_images
    from imgclf import storage
    from imgclf.datasets.base import Dataset, Split

    X, y = make_images(60, shape=(8, 8, 1))
    gray = tmp_path / "gray.npz"
    storage.write_stream(Dataset({"train": Split(X, y), "test": Split(X[:20], y[:20])}, ["a", "b", "c"], (8, 8, 1), [], "g"),
                   gray)
    result = runner.invoke(cli, ["train", "convnet", "--data", str(gray), *fast, "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["augmentation"] is None


@pytest.mark.parametrize("name", ["fast", "best"])
def test_presets_on_the_built_in_shapes_are_reproducible_and_flags_win(runner, name):
    from imgclf.nn.presets import PRESETS, preset

    small = ["--data", "shapes", "--n-train", "120", "--n-test", "40", "--val", "40", "--filters", "4,8", "--hidden",
             "8", "--epochs", "2", "--json", "-q"]
    runs = []
    for _ in range(2):
        result = runner.invoke(cli, ["train", "convnet", "--preset", name, *small])
        assert result.exit_code == 0, result.output
        runs.append(json.loads(result.stdout))
    hp = runs[0]["hyperparameters"]
    recipe = preset("convnet", name)
    for key, value in recipe.items():
        if key not in ("filters", "hidden", "epochs"):
            assert hp[key] == (list(value) if isinstance(value, tuple) else value), key
    assert hp["filters"] == [4, 8] and hp["hidden"] == [8] and hp["epochs"] == 2  # command-line flags win
    assert runs[0]["accuracy"] == runs[1]["accuracy"] and runs[0]["history"] == [
        dict(h, seconds=runs[0]["history"][i]["seconds"]) for i, h in enumerate(runs[1]["history"])]
    assert set(PRESETS["convnet"]) == {"fast", "best"}
    result = runner.invoke(cli, ["train", "convnet", "--preset", "slow", *small])
    assert result.exit_code == 2 and "slow" in result.output


def test_preset_momentum_from_the_command_line_wins(runner):
    small = ["--data", "shapes", "--n-train", "60", "--n-test", "20", "--val", "20", "--filters", "4,8", "--epochs", "1",
             "--json", "-q"]
    result = runner.invoke(cli, ["train", "convnet", "--preset", "fast", "--momentum", "0.9", *small])
    assert result.exit_code == 0, result.output
    hp = json.loads(result.stdout)["hyperparameters"]
    assert hp["optim"] == "nesterov" and hp["optim_options"] == {"momentum": 0.9}
    result = runner.invoke(cli, ["train", "convnet", "--preset", "fast", "--optim", "adam", *small])
    assert result.exit_code == 0, result.output
    hp = json.loads(result.stdout)["hyperparameters"]
    assert hp["optim"] == "adam" and not hp["optim_options"]  # the recipe's momentum stays with its nesterov


def test_airbench_options_reach_the_model(runner, small_stream):
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, "--batchnorm", "--json",
                                 "--tta", "flip", "--bn-momentum", "0.6", "--patch-whiten", "--label-smoothing",
                                 "0.1", "--ema", "0.9", "--optim", "nesterov", "--lr", "0.02", "--lr-schedule",
                                 "warmup:0.3"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    hp = d["hyperparameters"]
    assert (hp["tta"], hp["bn_momentum"], hp["patch_whiten"], hp["label_smoothing"], hp["ema"]) == \
        ("flip", 0.6, True, 0.1, 0.9)
    assert d["accuracy"] > 0.6
    assert d["history"][-1]["lr"] < d["history"][0]["lr"]  # warm-up then linear decay towards 0


def test_pool_position_option_reaches_the_model_and_its_file(runner, small_stream, tmp_path):
    out = tmp_path / "conv.npz"
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), "--filters", "4x2,8x2", "--hidden",
                                 "0", "--epochs", "2", "--batch-size", "20", "--batchnorm", "--pool-position",
                                 "first", "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["hyperparameters"]["pool_position"] == "first"
    from imgclf import storage

    model = storage.load_model(out).model
    assert model.pool_position == "first" and model.params_["W2"].shape == (3, 3, 4, 4)
    bad = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, "--pool-position", "middle"])
    assert bad.exit_code == 2 and "--pool-position" in bad.output


@pytest.mark.parametrize("value", ["middle", 3])
def test_hand_edited_pool_position_is_a_malformed_model_file(value, runner, tmp_path):
    import hostile as H

    model = H.write(tmp_path / "m.npz",
                    H.model_file("convnet", meta_edit=H.set_path("hyperparameters.pool_position", value)))
    stream = H.write(tmp_path / "s.npz", H.stream_bytes())
    res = runner.invoke(cli, ["predict", "-m", str(model), str(stream)])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "malformed model file" in lines[0], res.output
    assert "pool_position" in lines[0]
    ok = H.write(tmp_path / "ok.npz", H.model_file("convnet", meta_edit=H.set_path("hyperparameters.pool_position",
                                                                                    "first")))
    assert runner.invoke(cli, ["predict", "-m", str(ok), str(stream)]).exit_code == 0


AIRBENCH = ["--filters", "4x2,6x2", "--pool-position", "first", "--batchnorm", "--hidden", "0", "--stem", "whiten:2",
            "--activation", "gelu", "--no-bn-scale", "--bn-momentum", "0.6", "--dirac", "--head", "maxpool",
            "--logit-scale", "0.1111", "--no-classifier-bias", "--stem-bias-epochs", "2", "--epochs", "3",
            "--batch-size", "20",
            "--augment", "none"]


def test_airbench_options_train_save_and_load(runner, small_stream, tmp_path):
    out = tmp_path / "air.npz"
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *AIRBENCH, "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    hp = json.loads(result.stdout)["hyperparameters"]
    assert hp["stem"] == "whiten:2" and hp["stem_bias_epochs"] == 2 and hp["bn_scale"] is False
    assert hp["dirac"] is True and hp["head"] == "maxpool" and hp["logit_scale"] == pytest.approx(0.1111)
    assert hp["activation"] == "gelu" and hp["classifier_bias"] is False
    from imgclf import storage

    model = storage.load_model(out).model
    assert model.stem_w_.shape == (2, 2, 3, 24) and model.params_["W1"].shape == (3, 3, 24, 4)
    assert all(np.all(v == 1) for k, v in model.params_.items() if k.startswith("gamma"))
    ev = runner.invoke(cli, ["evaluate", "-m", str(out), "--data", str(small_stream), "--json"])
    assert ev.exit_code == 0, ev.output


def test_airbench_options_default_off(runner, small_stream):
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, "--json"])
    assert result.exit_code == 0, result.output
    hp = json.loads(result.stdout)["hyperparameters"]
    assert hp["stem"] is None and hp["bn_scale"] is True and hp["dirac"] is False and hp["head"] == "flatten"
    assert hp["logit_scale"] == 1.0


@pytest.mark.parametrize("args,msg", [
    (["--stem", "whiten:x"], "--stem"),
    (["--stem", "whiten:9"], "whiten:K"),
    (["--stem", "whiten:2", "--patch-whiten"], "--patch-whiten"),
    (["--head", "avg"], "--head"),
    (["--logit-scale", "0"], "--logit-scale"),
    (["--stem-bias-epochs", "-1"], "--stem-bias-epochs"),
    (["--dirac", "--filter-size", "2"], "--dirac"),
    (["--activation", "gelu:2"], "takes no parameter"),
])
def test_bad_airbench_network_options_exit_2(runner, small_stream, args, msg):
    result = runner.invoke(cli, ["train", "convnet", "--data", str(small_stream), *FAST, *args])
    assert result.exit_code == 2, result.output
    assert msg in result.output


def test_airbench_resume_gives_the_uninterrupted_weights(runner, small_stream, tmp_path):
    args = ["train", "convnet", "--data", str(small_stream), *AIRBENCH, "--seed", "3", "-q"]
    _, a, b = _full_and_resumed(runner, args, tmp_path)
    _assert_same_weights_and_statistics(b, a)
    np.testing.assert_array_equal(a.stem_w_, b.stem_w_)
