"""The Solver: exact resume after an interrupt, SIGINT, checkpoints, divergence, early stop, logs."""

import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from imgclf.errors import ModelFileError, UsageError
from imgclf.io.checkpoint import checkpoint_name
from imgclf.io.checkpoint import read as read_checkpoint
from imgclf.nn.net import NeuralNet
from imgclf.nn.optim import parse_lookahead
from imgclf.nn.solver import Solver

sys.path.insert(0, str(Path(__file__).parent))
from conftest import assert_same_state, full_and_resumed, interrupt_at, make_images  # noqa: E402
import reference  # noqa: E402


def _data(n=200, seed=0):
    X, y = make_images(n, n_classes=4, shape=(4, 4, 3), seed=seed)
    return ((X.astype(np.float32) - 100) / 60), y


# Every source of randomness in play: dropout, augmentation, Adam state, batch norm buffers.
NET = dict(hidden=(12,), batchnorm=True, dropout=0.3, augment="flip,crop:1", epochs=4, batch_size=30,
           random_state=3, optim="adam", lr=3e-3, lr_schedule="step:0.7")


@pytest.mark.parametrize("stop_at", [9, 6])  # mid-epoch (6 steps per epoch: 9 is mid-epoch 2) and at an epoch end
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, stop_at):
    X, y = _data()
    Xv, yv = _data(40, seed=5)
    full = NeuralNet(**NET).fit(X, y, Xv, yv)

    # Whatever the process started with (a shell's background job starts with SIGINT ignored).
    handler = signal.getsignal(signal.SIGINT)
    first = NeuralNet(**NET).fit(X, y, Xv, yv, checkpoint_dir=tmp_path, stop_signal=True, callback=interrupt_at(stop_at))
    assert first.stopped_ == "interrupted"
    ckpt = first.result_.checkpoint
    assert ckpt and Path(ckpt).exists()
    assert signal.getsignal(signal.SIGINT) is handler  # handler restored

    resumed = NeuralNet(**NET).fit(X, y, Xv, yv, resume=ckpt)
    assert resumed.stopped_ is None
    for k in full.params_:
        np.testing.assert_array_equal(resumed.params_[k], full.params_[k], err_msg=k)
    for k in full.buffers_:
        np.testing.assert_array_equal(resumed.buffers_[k], full.buffers_[k], err_msg=k)
    assert [h["val_acc"] for h in resumed.history_] == [h["val_acc"] for h in full.history_]
    assert resumed.result_.loss_history == full.result_.loss_history


def test_checkpoint_contents_names_and_pruning(tmp_path):
    X, y = _data()
    Xv, yv = _data(40, seed=5)
    net = NeuralNet(**{**NET, "epochs": 5}).fit(X, y, Xv, yv, checkpoint_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.glob("*.npz"))
    # The newest three are kept, plus the best epoch's.
    assert 3 <= len(names) <= 4
    for h in net.history_[-3:]:
        assert checkpoint_name(h["epoch"], 0, h["val_acc"]) in names
    assert not list(tmp_path.glob(".*.tmp"))  # no leftovers of the atomic writes
    meta, arrays = read_checkpoint(tmp_path / names[-1])
    assert meta["kind"] == "checkpoint" and meta["epoch"] == 5
    assert meta["model"]["kind"] == "twolayer" and meta["model"]["hyperparameters"]["hidden"] == [12]
    assert {"param/W1", "best/W1", "opt/W1/m", "opt/W1/v", "buffer/running_mean1", "train_sample"} <= set(arrays)
    assert meta["optim_state"]["W1"]["t"] == 5 * 6
    assert meta["rng"]["bit_generator"] == "PCG64"
    assert checkpoint_name(3, 0, 0.51234) == "ckpt_epoch003_val0.5123.npz"
    assert checkpoint_name(2, 17, None) == "ckpt_epoch002_step00017_valna.npz"


def test_resume_refuses_other_data_and_foreign_files(tmp_path):
    X, y = _data()
    net = NeuralNet(**{**NET, "epochs": 1}).fit(X, y, checkpoint_dir=tmp_path)
    ckpt = net.result_.checkpoint
    with pytest.raises(ModelFileError, match="same data"):
        NeuralNet(**NET).fit(X[:150], y[:150], resume=ckpt)
    with pytest.raises(ModelFileError, match="optimiser"):
        NeuralNet(**{**NET, "optim": "sgd"}).fit(X, y, resume=ckpt)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a readable"):
        NeuralNet(**NET).fit(X, y, resume=tmp_path / "junk.npz")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    X, y = _data()
    calls = {"n": 0}
    net = NeuralNet(hidden=(8,), epochs=5, batch_size=50, random_state=0)

    class Exploding:
        """Wraps the net's Solver view; the loss turns NaN in the 7th step (the 2nd epoch)."""

        def __init__(self, inner):
            self.inner = inner
            self.params_ = inner.params_
            self.buffers_ = inner.buffers_

        def prepare_batch(self, X):
            return self.inner.prepare_batch(X)

        def loss_and_grads(self, X, y, mode="train", rng=None, l2=True):
            calls["n"] += 1
            loss, grads = self.inner.loss_and_grads(X, y, mode, rng)
            return (float("nan") if calls["n"] == 7 else loss), grads

        def predict_codes(self, X):
            return self.inner.predict_codes(X)

    net.classes_ = np.arange(4)
    trainee = net.initialize(48, 4, np.random.default_rng(0))
    solver = Solver(Exploding(trainee), X, y, optim="adam", epochs=5, batch_size=50, checkpoint_dir=tmp_path)
    res = solver.train()
    assert res.stopped.startswith("diverged: the loss became nan at iteration 7 (epoch 2)")
    assert "weights of epoch 1 are kept" in res.stopped and "ckpt_epoch001" in res.stopped
    assert [p.name for p in tmp_path.glob("*.npz")] == [Path(res.checkpoint).name]
    assert len(res.history) == 1


def test_early_stopping_keeps_the_best_weights():
    X, y = _data()
    Xv, yv = _data(40, seed=5)
    # With a learning rate this small the val accuracy soon stops moving: a plateau to stop on.
    net = NeuralNet(hidden=(6,), epochs=30, batch_size=50, lr=1e-6, patience=2, random_state=0).fit(X, y, Xv, yv)
    assert net.stopped_.startswith("early stop: no val improvement for 2 epochs")
    best = net.best_epoch_
    assert len(net.history_) == best + 2
    assert net.score(Xv, yv) == pytest.approx(net.history_[best - 1]["val_acc"])


def test_json_lines_log(tmp_path):
    X, y = _data()
    log = tmp_path / "train.jsonl"
    NeuralNet(hidden=(6,), epochs=3, batch_size=50, random_state=0).fit(X, y, log=log)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["event"] for r in lines] == ["epoch"] * 3
    assert lines[-1]["epoch"] == 3 and lines[-1]["iteration"] == 12
    assert 0 < lines[0]["update_ratio"] < 1


def test_solver_validation():
    X, y = _data(20)
    net = NeuralNet(hidden=(3,))
    net.classes_ = np.arange(4)
    t = net.initialize(48, 4, np.random.default_rng(0))
    for kwargs, msg in [({"batch_size": 0}, "batch_size"), ({"epochs": 0}, "epochs"), ({"patience": 0}, "patience"),
                        ({"keep_checkpoints": -1}, "keep_checkpoints"), ({"optim": "x"}, "unknown optimiser")]:
        with pytest.raises(UsageError, match=msg):
            Solver(t, X, y, **kwargs)
    with pytest.raises(UsageError, match="no checkpoint directory"):
        Solver(t, X, y).save_checkpoint()


def test_l2_folded_into_the_update_matches_l2_in_the_loss():
    """The Solver folds the net's L2 term into the optimiser pass; a view of the same net without
    `l2_penalties` gets it inside loss_and_grads(): the same losses and weights up to float32 rounding."""
    X, y = _data()

    class Unfolded:
        def __init__(self, inner):
            self.inner = inner
            self.params_, self.buffers_ = inner.params_, inner.buffers_

        def prepare_batch(self, X):
            return self.inner.prepare_batch(X)

        def loss_and_grads(self, X, y, mode="train", rng=None, l2=True):
            return self.inner.loss_and_grads(X, y, mode, rng)

        def predict_codes(self, X):
            return self.inner.predict_codes(X)

    results = []
    for wrap in (lambda t: t, Unfolded):
        net = NeuralNet(hidden=(10,), reg=0.05)
        net.classes_ = np.arange(4)
        trainee = net.initialize(48, 4, np.random.default_rng(0))
        res = Solver(wrap(trainee), X, y, optim="adam", lr=1e-2, epochs=3, batch_size=50,
                     rng=np.random.default_rng(1)).train()
        results.append((res.loss_history, net.params_["W1"].copy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-3, atol=1e-5)


# Every new training state in play: the weight average (ema), the per-step warm-up schedule, label smoothing.
AIRBENCH = dict(NET, optim="nesterov", lr=0.05, lr_schedule="warmup:0.3", ema=0.9, label_smoothing=0.2)


@pytest.mark.parametrize("stop_at", [9, 6])
def test_resume_is_bit_exact_with_weight_averaging_and_warmup(tmp_path, stop_at):
    X, y = _data()
    Xv, yv = _data(40, seed=5)
    full, first, resumed = full_and_resumed(lambda: NeuralNet(**AIRBENCH), (X, y, Xv, yv), tmp_path, stop_at)
    meta, arrays = read_checkpoint(first.result_.checkpoint)
    assert meta["ema"] == 0.9 and "ema/W1" in arrays and "ema/buffer:running_mean1" in arrays
    assert_same_state(full, resumed)
    def same(h):  # wall time differs; the update ratio of an epoch resumed at its very end is not recorded
        return {k: v for k, v in h.items() if k not in ("seconds", "update_ratio")}

    assert [same(h) for h in resumed.history_] == [same(h) for h in full.history_]
    assert resumed.result_.loss_history == full.result_.loss_history
    with pytest.raises(ModelFileError, match="ema"):
        NeuralNet(**{**AIRBENCH, "ema": 0.99}).fit(X, y, Xv, yv, resume=first.result_.checkpoint)


def test_weight_average_is_what_is_scored_and_kept():
    X, y = _data()
    net = NeuralNet(hidden=(8,), epochs=1, batch_size=50, optim="sgd", lr=0.1, random_state=0)
    trainee = net.initialize(48, 4, np.random.default_rng(0))
    start = {k: v.copy() for k, v in net.params_.items()}
    solver = Solver(trainee, X.reshape(len(X), -1), y, optim="sgd", lr=0.1, epochs=1, batch_size=50,
                    rng=np.random.default_rng(0), ema=0.5)
    live = []
    solver.callback = lambda event, info: live.append({k: v.copy() for k, v in net.params_.items()}) \
        if event == "step" else None
    solver.train()
    # The average by hand: decay min(0.5, (1 + t) / (10 + t)) after step t = 0, 1, 2, 3.
    for k in start:
        avg = start[k].astype(np.float32)
        for t, w in enumerate(live):
            d = np.float32(min(0.5, (1 + t) / (10 + t)))
            avg = avg * d + np.float32(1 - d) * w[k]
        np.testing.assert_allclose(net.params_[k], avg, rtol=1e-6, err_msg=k)
        assert not np.array_equal(net.params_[k], live[-1][k])
    with pytest.raises(UsageError, match="ema"):
        Solver(trainee, X.reshape(len(X), -1), y, ema=1.0)


# Alternating flips (per-row state across epochs) and lookahead (slow weights), each alone and together
# with the weight average and the warm-up; 200 rows in batches of 30 leave 20 rows over every epoch.
ALT = dict(NET, augment="flip:alt,crop:1")
LOOK = dict(AIRBENCH, lookahead="4:0.5")  # synchronisations at steps 4, 8, ...: not on epoch ends
BOTH = dict(AIRBENCH, augment="flip:alt,crop:1", lookahead=(4, 0.5))


# airbench's methods together: ramped averaging (batch-norm statistics included, epoch-end copies), biases at
# 8x the rate, the triangle schedule with an end value, reflect-padded crops.
RAMP = dict(AIRBENCH, augment="flip:alt,crop:1:reflect", lookahead="4:ramp", bias_lr_scale=8.0,
            lr_schedule="warmup:0.3:0.2:0.1")


@pytest.mark.parametrize("params", [ALT, LOOK, BOTH, RAMP], ids=["flip-alt", "lookahead", "both", "ramp"])
@pytest.mark.parametrize("stop_at", [3, 9, 6, 8])  # mid-epoch 1 (state half filled), mid-epoch 2, epoch end, on a sync
def test_resume_is_bit_exact_with_alternating_flips_and_lookahead(tmp_path, params, stop_at):
    full, first, resumed = full_and_resumed(lambda: NeuralNet(**params), _data() + _data(40, seed=5), tmp_path, stop_at)
    meta, arrays = read_checkpoint(first.result_.checkpoint)
    if "alt" in str(params["augment"]):
        assert arrays["augment_state"].shape == (200,) and arrays["augment_state"].dtype == np.bool_
    if params.get("lookahead"):
        assert meta["lookahead"] == list(parse_lookahead(params["lookahead"]))
        assert "lookahead/W1" in arrays and "lookahead/gamma1" in arrays
        assert ("lookahead/buffer:running_var1" in arrays) == (params is RAMP)
    assert meta.get("lr_scales") == ({"b2": 8.0, "beta1": 8.0} if params is RAMP else None)
    assert_same_state(full, resumed)
    assert [h["val_acc"] for h in resumed.history_] == [h["val_acc"] for h in full.history_]


def test_resume_refuses_another_flip_scheme_or_lookahead(tmp_path):
    X, y = _data()
    ckpt = NeuralNet(**{**BOTH, "epochs": 1}).fit(X, y, checkpoint_dir=tmp_path).result_.checkpoint
    for other, msg in [({"augment": "flip,crop:1"}, "alternating flips"), ({"lookahead": None}, "lookahead"),
                       ({"lookahead": "4:0.8"}, "lookahead")]:
        with pytest.raises(ModelFileError, match=msg):
            NeuralNet(**{**BOTH, **other}).fit(X, y, resume=ckpt)
    plain = NeuralNet(**{**NET, "epochs": 1}).fit(X, y, checkpoint_dir=tmp_path / "p").result_.checkpoint
    with pytest.raises(ModelFileError, match="alternating flips"):
        NeuralNet(**ALT).fit(X, y, resume=plain)


def test_alternating_flips_in_the_solver_show_each_row_both_ways():
    """The Solver passes each batch's training rows and the epoch: a row seen in two consecutive epochs
    is seen once as it is and once mirrored; `flip` alone has no such pairing."""
    from imgclf.nn.augment import parse

    X, y = _data()
    seen = []

    class Spy:
        def __init__(self, spec):
            self.inner = parse(spec)
            self.new_state = self.inner.new_state

        def __call__(self, Xb, rng, **kw):
            out = self.inner(Xb, rng, **kw)
            rows = [int(np.flatnonzero((X == Xb[k]).all(axis=(1, 2, 3)))[0]) for k in range(len(Xb))]
            seen.append((kw.get("epoch"), rows, [not np.array_equal(o, x) for o, x in zip(out, Xb)]))
            return out

    net = NeuralNet(hidden=(6,))
    net.classes_ = np.arange(4)
    trainee = net.initialize(48, 4, np.random.default_rng(0))
    Solver(trainee, X, y, epochs=4, batch_size=30, augment=Spy("flip:alt"), rng=np.random.default_rng(2)).train()
    assert [e for e, _, _ in seen] == [e for e in range(4) for _ in range(6)]
    flips = [{} for _ in range(4)]
    for e, rows, fl in seen:
        flips[e].update(zip(rows, fl))
    pairs = 0
    for e in range(1, 4):
        for row, f in flips[e].items():
            if row in flips[e - 1]:
                assert f != flips[e - 1][row]
                pairs += 1
    assert pairs > 400
    # Rows epoch 0 never drew count as unflipped there: flipped in epoch 1, unflipped in epoch 2.
    unseen = set(range(200)) - set(flips[0])
    assert len(unseen) == 20
    assert all(flips[1][r] for r in unseen & set(flips[1])) and not any(flips[2][r] for r in unseen & set(flips[2]))


class _Quadratic:
    """A model with loss 0.5 |w - target|^2 whatever the batch: the gradient is w - target."""

    def __init__(self, w0, target):
        self.params_ = {"w": np.array(w0, np.float64)}
        self.target = np.asarray(target, np.float64)

    def prepare_batch(self, X):
        return X

    def loss_and_grads(self, X, y, mode="train", rng=None, l2=True):
        d = self.params_["w"] - self.target
        return 0.5 * float(d @ d), {"w": d.copy()}

    def predict_codes(self, X):
        return np.zeros(len(X), np.int64)


@pytest.mark.parametrize("optim, options", [("sgd", {}), ("momentum", {"momentum": 0.8})])
@pytest.mark.parametrize("ema", [None, 0.9])
def test_lookahead_matches_the_naive_algorithm(optim, options, ema):
    rng = np.random.default_rng(0)
    w0, target = rng.normal(size=5), rng.normal(size=5)
    X, y = np.zeros((40, 1)), np.zeros(40, np.int64)
    model = _Quadratic(w0, target)
    trace = []
    solver = Solver(model, X, y, optim=optim, lr=0.3, optim_options=options, epochs=3, batch_size=4,
                    lookahead=(3, 0.4), ema=ema,
                    callback=lambda ev, info: trace.append(model.params_["w"].copy()) if ev == "step" else None)
    solver.train()
    ref_trace, ref_slow, ref_avg = reference.lookahead_naive(w0, lambda w: w - target, 30, 0.3, 3, 0.4,
                                                             options.get("momentum", 0.0), ema)
    np.testing.assert_allclose(np.array(trace), ref_trace, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(solver.slow_state["w"], ref_slow, rtol=1e-12, atol=1e-14)
    if ema is not None:  # the average of the weights after each step, lookahead included
        np.testing.assert_allclose(solver.ema_state["w"], ref_avg, rtol=1e-12, atol=1e-14)
    # Lookahead off and k=1, alpha=1 are the plain update rule.
    plain, same = _Quadratic(w0, target), _Quadratic(w0, target)
    Solver(plain, X, y, optim=optim, lr=0.3, optim_options=options, epochs=3, batch_size=4).train()
    Solver(same, X, y, optim=optim, lr=0.3, optim_options=options, epochs=3, batch_size=4, lookahead="1:1").train()
    np.testing.assert_array_equal(plain.params_["w"], same.params_["w"])
    assert not np.allclose(plain.params_["w"], model.params_["w"])


def test_lookahead_settings_are_checked():
    from imgclf.nn.optim import parse_lookahead

    assert parse_lookahead(None) is None and parse_lookahead("none") is None
    assert parse_lookahead("5:0.5") == (5, 0.5) and parse_lookahead((6, 1)) == (6, 1.0)
    assert parse_lookahead([2, 0.25]) == (2, 0.25)  # as a model file's JSON gives it back
    for bad in ("5", "0:0.5", "5:0", "5:1.5", "x:0.5", "5:nan", (5,), (True, 0.5), (2.5, 0.5), 3):
        with pytest.raises(UsageError) as exc:
            parse_lookahead(bad)
        assert exc.value.param == "lookahead"
    X, y = _data(20)
    with pytest.raises(UsageError, match="lookahead"):
        NeuralNet(hidden=(3,), lookahead="5:2").fit(X, y)


def test_resume_refuses_another_averaging_or_bias_rate(tmp_path):
    X, y = _data()
    ckpt = NeuralNet(**{**RAMP, "epochs": 1}).fit(X, y, checkpoint_dir=tmp_path).result_.checkpoint
    for other, msg in [({"lookahead": "4:0.5"}, "lookahead"), ({"lookahead": "5:ramp"}, "lookahead"),
                       ({"bias_lr_scale": 1.0}, "bias_lr_scale"), ({"bias_lr_scale": 4.0}, "bias_lr_scale")]:
        with pytest.raises(ModelFileError, match=msg):
            NeuralNet(**{**RAMP, **other}).fit(X, y, resume=ckpt)
    plain = NeuralNet(**{**LOOK, "epochs": 1}).fit(X, y, checkpoint_dir=tmp_path / "p").result_.checkpoint
    with pytest.raises(ModelFileError, match="bias_lr_scale"):
        NeuralNet(**{**LOOK, "bias_lr_scale": 2.0}).fit(X, y, resume=plain)


@pytest.mark.parametrize("optim, options", [("sgd", {}), ("momentum", {"momentum": 0.85})])
def test_ramped_lookahead_matches_the_naive_algorithm(optim, options):
    """"K:ramp": slow += (1 - rho)(fast - slow), rho = 0.95**k (t/T)**3, fast = slow every k steps, and
    fast = slow at every epoch's end (30 steps, 10 an epoch, k = 3 and 4: epoch ends on and off a sync)."""
    rng = np.random.default_rng(1)
    w0, target = rng.normal(size=5), rng.normal(size=5)
    X, y = np.zeros((40, 1)), np.zeros(40, np.int64)
    for k in (3, 4):
        model = _Quadratic(w0, target)
        trace = []
        solver = Solver(model, X, y, optim=optim, lr=0.3, optim_options=options, epochs=3, batch_size=4,
                        lookahead=f"{k}:ramp",
                        callback=lambda ev, info: trace.append(model.params_["w"].copy()) if ev == "step" else None)
        solver.train()
        ref_trace, ref_slow, ref_fast = reference.lookahead_ramp_naive(w0, lambda w: w - target, 30, 10, 0.3, k,
                                                                      options.get("momentum", 0.0))
        np.testing.assert_allclose(np.array(trace), ref_trace, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(solver.slow_state["w"], ref_slow, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(ref_fast, ref_slow)  # the run ends on the average
    # iters (not whole epochs): T is the iteration count, and the last (partial) epoch ends on the average.
    model = _Quadratic(w0, target)
    ends = []
    solver = Solver(model, X, y, optim=optim, lr=0.3, optim_options=options, iters=25, batch_size=4,
                    lookahead="5:ramp",
                    callback=lambda ev, info: ends.append(model.params_["w"].copy()) if ev == "epoch" else None)
    solver.train()
    _, ref_slow, _ = reference.lookahead_ramp_naive(w0, lambda w: w - target, 25, 10, 0.3, 5,
                                                    options.get("momentum", 0.0))
    assert len(ends) == 3
    np.testing.assert_allclose(ends[-1], ref_slow, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(solver.slow_state["w"], ref_slow, rtol=1e-12, atol=1e-14)


def test_ramped_lookahead_averages_batchnorm_statistics_and_ends_epochs_on_them():
    from imgclf.nn.optim import ramp_rho

    assert ramp_rho(5, 0, 100) == 0 and ramp_rho(5, 100, 100) == pytest.approx(0.95 ** 5)
    assert ramp_rho(5, 50, 100) == pytest.approx(0.95 ** 5 / 8)
    X, y = _data()
    net = NeuralNet(hidden=(8,), batchnorm=True, optim="nesterov", lr=0.05, dropout=0.0)
    net.classes_ = np.arange(4)
    trainee = net.initialize(48, 4, np.random.default_rng(0))
    seen = []

    def callback(event, info):
        if event == "epoch":  # scored on the average: live weights and statistics are the slow ones
            seen.append(all(np.array_equal(net.params_[k], solver.slow_state[k]) for k in net.params_)
                        and all(np.array_equal(net.buffers_[k], solver.slow_state[f"buffer:{k}"]) for k in net.buffers_))

    solver = Solver(trainee, X.reshape(len(X), -1), y, optim="nesterov", lr=0.05, epochs=3, batch_size=30,
                    lookahead="4:ramp", rng=np.random.default_rng(0), callback=callback)
    assert set(solver.slow_state) == set(net.params_) | {f"buffer:{k}" for k in net.buffers_}
    solver.train()
    assert seen == [True, True, True]
    # The fixed-alpha form keeps its state: trained parameters only.
    fixed = Solver(trainee, X.reshape(len(X), -1), y, epochs=1, batch_size=30, lookahead="4:0.5")
    assert set(fixed.slow_state) == set(net.params_)


def test_ramp_settings_are_checked():
    assert parse_lookahead("5:ramp") == (5, "ramp") and parse_lookahead((5, "ramp")) == (5, "ramp")
    assert parse_lookahead([3, "ramp"]) == (3, "ramp")  # as a checkpoint's JSON gives it back
    for bad in ("0:ramp", "5:Ramp", "ramp", "5:ramp:2", ("5", "ramp"), (5, "rampx"), (True, "ramp")):
        with pytest.raises(UsageError) as exc:
            parse_lookahead(bad)
        assert exc.value.param == "lookahead" and "K:ramp" in str(exc.value)


@pytest.mark.parametrize("optim", ["sgd", "nesterov", "adam"])
def test_bias_lr_scale_steps_biases_and_betas_at_a_multiple_of_the_rate(optim):
    """One step from the same weights on the same batch: the weights and gammas move as without the scale,
    the biases and betas by the scale times as far (the rules are linear in lr on a first step; Adam's first
    step is lr * sign-like, linear in lr too)."""
    X, y = _data()
    moves = []
    for scale in (1.0, 8.0):
        net = NeuralNet(hidden=(8, 6), batchnorm=True, dropout=0.0, reg=1e-3, bias_lr_scale=scale)
        net.classes_ = np.arange(4)
        trainee = net.initialize(48, 4, np.random.default_rng(0))
        start = {k: v.copy() for k, v in net.params_.items()}
        Solver(trainee, X.reshape(len(X), -1), y, optim=optim, lr=0.01, epochs=1, iters=1, batch_size=50,
               rng=np.random.default_rng(0)).train()
        moves.append({k: net.params_[k].astype(np.float64) - start[k] for k in start})
    plain, scaled = moves
    assert set(NeuralNet(hidden=(8, 6), batchnorm=True, bias_lr_scale=8.0).initialize(48, 4, np.random.default_rng(0))
               .lr_scales()) == {"beta1", "beta2", "b3"}
    for k in plain:
        if k in ("beta1", "beta2", "b3"):
            np.testing.assert_allclose(scaled[k], 8 * plain[k], rtol=1e-4, atol=1e-7, err_msg=k)
            assert np.abs(plain[k]).max() > 0
        else:
            np.testing.assert_array_equal(scaled[k], plain[k], err_msg=k)


def test_bias_lr_scale_default_is_bit_exact_and_is_checked():
    X, y = _data()
    a = NeuralNet(**{**AIRBENCH, "epochs": 2}).fit(X, y)
    b = NeuralNet(**{**AIRBENCH, "epochs": 2, "bias_lr_scale": 1.0}).fit(X, y)
    for k in a.params_:
        np.testing.assert_array_equal(a.params_[k], b.params_[k])
    assert NeuralNet(hidden=(3,)).initialize(4, 2, np.random.default_rng(0)).lr_scales() == {}
    for bad in (0, -1.0, float("nan"), float("inf"), True, "8", None):
        with pytest.raises(UsageError) as exc:
            NeuralNet(hidden=(3,), bias_lr_scale=bad).fit(X, y)
        assert exc.value.param == "bias_lr_scale" and "bias_lr_scale must be a number > 0" in str(exc.value)
