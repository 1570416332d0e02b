"""Hand-edited and forged checkpoints given to `--resume`: each is refused before any of its state is
restored, with one line on stderr naming the file, exit status 2, no traceback and no Python warning
(imgclf/nn/checkpoint_state.py). Also a model file given to --resume and a checkpoint given to predict.

The checkpoint is a real one (train twolayer with Adam, batch norm, a weight average, Lookahead and
alternating flips, so that every kind of state is in it), edited one field at a time.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import hostile as H
from imgclf.io import npzfile
from imgclf_cli.main import cli

TRAIN = ["-q", "train", "twolayer", "--hidden", "4", "--batchnorm", "--epochs", "2", "--batch-size", "5",
         "--optim", "adam", "--ema", "0.9", "--lookahead", "2:0.5", "--augment", "flip:alt"]
STEPS = 24 // 5  # steps per epoch


def _first_epoch(tmp_path_factory, name, train, model=False):
    """(stream, checkpoint meta, arrays, model file or None) of a 1-epoch run of `train` resumable for a
    second, on 24 random 4x4 images."""
    d = tmp_path_factory.mktemp(name)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (24, 4, 4, 3)).astype(np.uint8)
    stream = H.write(d / "s.npz", H.stream_bytes(X, np.arange(24) % 3))
    out = ["-o", str(d / "m.npz")] if model else []
    res = CliRunner().invoke(cli, [*train, "--epochs", "1", "--data", str(stream), "--checkpoint-dir", str(d / "ck"),
                                   *out])
    assert res.exit_code == 0, res.output
    meta, arrays = npzfile.read(next((d / "ck").iterdir()))
    return stream, meta, arrays, d / "m.npz" if model else None


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(stream, checkpoint meta, arrays, model file) of a 1-epoch run resumable for a second."""
    return _first_epoch(tmp_path_factory, "ckpt", TRAIN, model=True)


def _write_checkpoint(path: Path, meta: dict, arrays: dict) -> Path:
    return H.write(path, npzfile.to_bytes(arrays, {k: v for k, v in meta.items()}))


def _resume(made, tmp_path, edit=None, train=TRAIN, output=True):
    """Resume `train` from the made checkpoint after `edit(meta, arrays)`: (result, warnings caught)."""
    stream, meta, arrays = made[:3]
    meta, arrays = copy.deepcopy(meta), {k: v.copy() for k, v in arrays.items()}
    if edit is not None:
        edit(meta, arrays)
    ck = _write_checkpoint(tmp_path / "ck.npz", meta, arrays)
    out = ["-o", str(tmp_path / "out.npz")] if output else []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = CliRunner().invoke(cli, [*train, "--data", str(stream), "--resume", str(ck), *out])
    return res, caught


def mid_epoch(meta, arrays):
    """An interrupt's checkpoint: two steps into the second epoch (a valid state)."""
    arrays["order"] = np.random.default_rng(1).permutation(24)
    meta["position"] = 2
    meta["iteration"] += 2
    meta["loss_history"] += [1.0, 1.0]
    for config in meta["optim_state"].values():
        config["t"] += 2


def setm(path, value):
    """meta[a][b]... = value for `a.b`; numbers in the path index lists."""
    def edit(meta, arrays):
        *head, last = path.split(".")
        node = meta
        for key in head:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return edit


def dropm(path):
    def edit(meta, arrays):
        *head, last = path.split(".")
        node = meta
        for key in head:
            node = node[key]
        del node[last]
    return edit


def seta(key, fn):
    """arrays[key] = fn(arrays[key]) (fn(None) for a new one)."""
    def edit(meta, arrays):
        arrays[key] = fn(arrays.get(key))
    return edit


def dropa(key):
    def edit(meta, arrays):
        del arrays[key]
    return edit


def both(*edits):
    def edit(meta, arrays):
        for e in edits:
            e(meta, arrays)
    return edit


def _poke(value, at=0):
    def fn(a):
        a = a.copy()
        a.reshape(-1)[at] = value
        return a
    return fn


HOSTILE = {
    # counters
    "epoch-negative": setm("epoch", -1),
    "epoch-float": setm("epoch", 1.0),
    "epoch-text": setm("epoch", "1"),
    "epoch-huge": setm("epoch", 10 ** 30),
    "epoch-beyond-history": setm("epoch", 5),
    "iteration-negative": setm("iteration", -1),
    "iteration-bool": setm("iteration", True),
    "iteration-not-the-steps-taken": setm("iteration", 3),
    "position-negative": setm("position", -1),
    "position-between-epochs": setm("position", 2),
    "position-beyond-the-epoch": both(mid_epoch, setm("position", STEPS + 1)),
    "position-text": both(mid_epoch, setm("position", "2")),
    # order of the epoch and the accuracy sample
    "order-not-a-permutation": both(mid_epoch, seta("order", lambda a: np.zeros(24, np.int64))),
    "order-wrong-length": both(mid_epoch, seta("order", lambda a: np.arange(23))),
    "order-float": both(mid_epoch, seta("order", lambda a: a.astype(np.float64))),
    "order-out-of-range": both(mid_epoch, seta("order", _poke(10 ** 9))),
    "train-sample-out-of-range": seta("train_sample", _poke(10 ** 9, -1)),
    "train-sample-negative": seta("train_sample", _poke(-1)),
    "train-sample-float": seta("train_sample", lambda a: a.astype(np.float64)),
    "train-sample-repeated": seta("train_sample", lambda a: np.zeros(24, np.int64)),
    "train-sample-empty": seta("train_sample", lambda a: a[:0]),
    # history
    "history-not-a-list": setm("history", {"epoch": 1}),
    "history-entry-not-a-record": setm("history.0", 1.5),
    "history-loss-nan": setm("history.0.loss", float("nan")),
    "history-loss-text": setm("history.0.loss", "x"),
    "history-train-acc-inf": setm("history.0.train_acc", float("inf")),
    "history-epoch-misnumbered": setm("history.0.epoch", 7),
    "history-extra-field": setm("history.0.junk", 1),
    "loss-history-not-a-list": setm("loss_history", 4),
    "loss-history-text": setm("loss_history.0", "x"),
    "loss-history-inf": setm("loss_history.0", float("inf")),
    "best-epoch-zero": setm("best_epoch", 0),
    "best-epoch-beyond-epoch": setm("best_epoch", 2),
    "best-epoch-float": setm("best_epoch", 1.0),
    "best-val-acc-nan": setm("best_val_acc", float("nan")),
    "best-val-acc-text": setm("best_val_acc", "x"),
    "best-val-acc-without-epoch": setm("best_epoch", None),
    "best-weights-missing": both(setm("best_epoch", None), setm("best_val_acc", None)),
    # weight-shaped state: shapes, dtypes, finite values
    "param-nan": seta("param/W1", _poke(np.nan)),
    "param-float64": seta("param/W1", lambda a: a.astype(np.float64)),
    "adam-m-wrong-shape": seta("opt/W1/m", lambda a: a[:1]),
    "adam-m-float64": seta("opt/W1/m", lambda a: a.astype(np.float64)),
    "adam-m-inf": seta("opt/W1/m", _poke(np.inf)),
    "adam-v-negative": seta("opt/W1/v", _poke(-1.0)),
    "adam-moment-of-no-parameter": seta("opt/W9/m", lambda a: np.zeros(3, np.float32)),
    "momentum-velocity-in-an-adam-run": seta("opt/W1/velocity", lambda a: np.zeros((48, 4), np.float32)),
    "ema-wrong-shape": seta("ema/W1", lambda a: a[:2]),
    "ema-missing": dropa("ema/W2"),
    "ema-nan": seta("ema/b2", _poke(np.nan)),
    "lookahead-wrong-dtype": seta("lookahead/W1", lambda a: a.astype(np.float16)),
    "best-wrong-shape": seta("best/W2", lambda a: a.T.copy()),
    "best-partial": dropa("best/b2"),
    "running-var-negative": seta("buffer/running_var1", _poke(-4.0)),
    "best-running-var-negative": seta("best/buffer:running_var1", _poke(-4.0)),
    "running-mean-nan": seta("buffer/running_mean1", _poke(np.nan)),
    "unknown-array": seta("junk", lambda a: np.zeros(3)),
    # the update rule's scalars
    "optim-state-not-a-dict": setm("optim_state", [1]),
    "optim-state-missing-a-parameter": dropm("optim_state.W1"),
    "optim-state-unknown-parameter": setm("optim_state.W9", {}),
    "optim-state-unknown-setting": setm("optim_state.W1.momentum", 0.9),
    "beta1-one": setm("optim_state.W1.beta1", 1.0),
    "beta2-bool": setm("optim_state.b2.beta2", True),
    "epsilon-negative": setm("optim_state.W2.epsilon", -1.0),
    "adam-t-negative": setm("optim_state.W1.t", -1),
    "adam-t-float": setm("optim_state.W1.t", 4.5),
    "learning-rate-text": setm("optim_state.W1.learning_rate", "x"),
    "learning-rate-negative": setm("optim_state.W1.learning_rate", -0.1),
    "l2-nan": setm("optim_state.W1.l2", float("nan")),
    "sum-sq-negative": setm("optim_state.W1.sum_sq", -1.0),
    # the random generator
    "rng-not-a-dict": setm("rng", 5),
    "rng-other-bit-generator": setm("rng.bit_generator", "MT19937"),
    "rng-state-missing": dropm("rng.state"),
    "rng-state-text": setm("rng.state.state", "x"),
    "rng-inc-negative": setm("rng.state.inc", -1),
    "rng-state-float": setm("rng.state.state", 1.5),
    "rng-has-uint32-not-a-flag": setm("rng.has_uint32", 7),
}


def _assert_refused(res, caught, says=r"malformed checkpoint"):
    lines = res.stderr.strip().splitlines()
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and re.search(says, lines[0]), lines
    assert "Traceback" not in res.stderr
    assert not caught, [str(w.message) for w in caught]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hand_edited_checkpoint_is_refused_before_resuming(name, made, tmp_path):
    res, caught = _resume(made, tmp_path, HOSTILE[name])
    _assert_refused(res, caught, r"ck\.npz: malformed checkpoint \(")


@pytest.mark.parametrize("edit", [None, mid_epoch], ids=["end-of-epoch", "mid-epoch"])
def test_valid_checkpoints_still_resume(edit, made, tmp_path):
    res, caught = _resume(made, tmp_path, edit)
    assert res.exit_code == 0, res.output
    assert not caught, [str(w.message) for w in caught]


EXTRA = {
    "seed-text": setm("extra.seed", "x"),
    "seed-negative": setm("extra.seed", -1),
    "preprocess-number": setm("extra.preprocess", 5),
}


@pytest.mark.parametrize("name", list(EXTRA))
def test_hand_edited_checkpoint_extra_is_refused(name, made, tmp_path):
    res, caught = _resume(made, tmp_path, EXTRA[name])
    _assert_refused(res, caught, r"ck\.npz: the checkpoint's 'extra' field")


def test_a_model_file_given_to_resume_says_so(made, tmp_path):
    stream, _, _, model = made
    res = CliRunner().invoke(cli, [*TRAIN, "--data", str(stream), "--resume", str(model)])
    _assert_refused(res, [], r"m\.npz: a model file, not a training checkpoint \(.*checkpoint directory")


def test_a_checkpoint_given_to_predict_says_so(made, tmp_path):
    stream, meta, arrays, _ = made
    ck = _write_checkpoint(tmp_path / "ck.npz", meta, arrays)
    for argv in (["predict", "-m", str(ck), str(stream)], ["evaluate", "-m", str(ck), "--data", str(stream)]):
        res = CliRunner().invoke(cli, argv)
        _assert_refused(res, [], r"ck\.npz: a training checkpoint, not a model file \(.*--resume")


@pytest.mark.parametrize("kind", ["convnet", "svm", None])
def test_a_checkpoint_of_another_kind_of_run_says_so(kind, made, tmp_path):
    """A twolayer checkpoint given to train convnet (or a hand-edited kind) failed with 'the hyperparameters
    ask for more weights than the file holds', about a weight matrix of the defaults."""
    res, caught = _resume(made, tmp_path, setm("model.kind", kind))
    _assert_refused(res, caught, rf"ck\.npz: a checkpoint of a {kind} run, not a twolayer one")


# airbench's averaging (lookahead K:ramp: batch-norm statistics in the slow state) and per-parameter rates
TRAIN_RAMP = ["-q", "train", "twolayer", "--hidden", "4", "--batchnorm", "--epochs", "2", "--batch-size", "5",
              "--optim", "nesterov", "--lookahead", "2:ramp", "--bias-lr-scale", "4"]


@pytest.fixture(scope="module")
def made_ramp(tmp_path_factory):
    stream, meta, arrays, _ = _first_epoch(tmp_path_factory, "ckpt_ramp", TRAIN_RAMP)
    assert meta["lookahead"] == [2, "ramp"] and meta["lr_scales"] == {"beta1": 4.0, "b2": 4.0}
    assert "lookahead/buffer:running_var1" in arrays
    return stream, meta, arrays


def _resume_ramp(made_ramp, tmp_path, edit=None):
    return _resume(made_ramp, tmp_path, edit, TRAIN_RAMP, output=False)


HOSTILE_RAMP = {
    "slow-running-var-negative": (seta("lookahead/buffer:running_var1", _poke(-4.0)), r"malformed checkpoint"),
    "slow-running-mean-nan": (seta("lookahead/buffer:running_mean1", _poke(np.nan)), r"malformed checkpoint"),
    "slow-statistics-missing": (dropa("lookahead/buffer:running_mean1"), r"malformed checkpoint"),
    "slow-statistics-wrong-shape": (seta("lookahead/buffer:running_var1", lambda a: a[:2]), r"malformed checkpoint"),
    "ramp-made-fixed": (setm("lookahead", [2, 0.5]), r"lookahead=\[2, 0\.5\]"),
    "ramp-text": (setm("lookahead", [2, "Ramp"]), r"lookahead"),
    "bias-rate-edited": (setm("lr_scales.b2", 8.0), r"bias_lr_scale"),
    "bias-rate-dropped": (dropm("lr_scales"), r"bias_lr_scale"),
    "bias-rate-not-a-dict": (setm("lr_scales", [4.0]), r"bias_lr_scale"),
}


@pytest.mark.parametrize("name", list(HOSTILE_RAMP))
def test_hand_edited_ramp_checkpoint_is_refused(name, made_ramp, tmp_path):
    edit, says = HOSTILE_RAMP[name]
    res, caught = _resume_ramp(made_ramp, tmp_path, edit)
    _assert_refused(res, caught, r"ck\.npz: .*" + says)


def test_valid_ramp_checkpoint_resumes(made_ramp, tmp_path):
    res, caught = _resume_ramp(made_ramp, tmp_path)
    assert res.exit_code == 0, res.output
    assert not caught, [str(w.message) for w in caught]
