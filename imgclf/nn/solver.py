"""The one training loop, shared by linear classifiers and nets.

A trainable model (every estimator's `initialize(n_features, n_classes, rng)` returns one: the estimator
itself, no adapter) provides:
  - `params_`: dict name -> float array, updated in place by the optimiser;
  - `buffers_` (optional): dict of non-trained state arrays (e.g. batch-norm running statistics);
  - `prepare_batch(X) -> array`: a batch of the training data (validated as a whole by `fit`) to the
    model's input dtype/layout;
  - `loss_and_grads(Xp, y, mode="train", rng=None, l2=True) -> (loss, grads)`, grads keyed like params_,
    y encoded as 0..C-1;
  - `predict_codes(X) -> (N,) int`: class indices 0..C-1 of a batch of the training data;
  - `frozen_params(epoch)` (optional): names of parameters this (0-based) epoch's steps leave alone;
  - `loss_rows(X, idx, y)` (optional): `loss_and_grads(prepare_batch(X[idx]), y)` without the gather;
  - `kind` and `to_arrays()` (optional): recorded in checkpoints, so a run can be rebuilt;
  - `lr_scales()` (optional): dict param name -> factor; those parameters step at lr * factor (the nets'
    `bias_lr_scale`: biases and batch-norm betas at a multiple of the rate, as airbench's bias_scaler);
  - `l2_penalties()` (optional): dict param name -> reg for an L2 penalty reg * sum(w^2) that the Solver
    folds into the optimiser's pass over w (then it calls `loss_and_grads(..., l2=False)` for the data
    term alone and adds the penalty of the weights before the step to the reported loss: the same
    numbers, two fewer passes over the largest arrays per step);
  - `sgd_fusable()` (optional, with `l2_penalties`): names of weights whose plain-SGD step the model can
    take itself, inside the product that computes their gradient. With optim="sgd" and no `ema`,
    `lookahead` or lr scale on them, the Solver then calls `loss_and_grads(..., l2=False, sgd={name: (lr,
    c)})` (c = 2 * reg, or 0; l2=False even with reg = 0), which steps those weights in place,
    w := w - lr * (dw + c * w), as one GEMM w := (1 - lr c) w - lr x.T @ dz (no gradient array, no
    separate update pass), leaves them out of grads, and steps nothing when its data loss is not finite.
    The step equals the rule's to a few ulps of the weights' dtype, not bit for bit (the BLAS adds into
    w, once per block of the batch for large batches); where numpy's OpenBLAS cannot be found (another
    BLAS) the layer takes the rule's step itself, so runs agree bit for bit only within one BLAS set-up.
    The Solver adds their penalties, summed before the call, to the loss as for the other weights.
    (`loss_and_grads` without `sgd` still returns every gradient, for gradient checks.)
The Solver shuffles with its own Generator, applies augmentation to raw image batches, steps the
optimiser, evaluates per epoch, keeps the best-validation weights, stops early (`patience`) or on a
non-finite loss, writes checkpoints, and on SIGINT (`stop_signal=True`) finishes the current step,
writes a checkpoint and returns with `stopped="interrupted"`. The Solver decides what a checkpoint
holds and restores it; io/checkpoint.py names, writes, reads and prunes the files.

With `ema=d` the Solver also keeps an exponential moving average of the weights and buffers, updated
after every step with decay min(d, (1 + t) / (10 + t)) at step t (so the first steps are not anchored to
the random initialisation); the averaged weights are the ones evaluated, kept as the best epoch's and
returned (weight averaging as in fast CIFAR-10 recipes; the live weights keep training).

With `lookahead=(k, alpha)` (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back") the
Solver keeps slow weights, starting at the initial ones, and after every k-th step of the run (counted
over the whole run, so a resumed run keeps the count) moves them slow += alpha * (fast - slow) and resets
the live (fast) weights to them; the update rule's own state (Adam's moments, momentum) carries on
untouched. It applies to the trained parameters, not to buffers such as batch-norm statistics. The live
weights are what is scored, kept and returned; with `ema` as well the average is taken after the
lookahead step, i.e. of the live weights as they stand after each step (on a k-th step, the new slow
weights).

With `lookahead=(k, "ramp")` ("K:ramp") the same synchronisation is airbench's weight averaging: after
every k-th step t of the run's T steps (t counted from 1, T = epochs x steps per epoch, or `iters`)
slow += (1 - rho) (live - slow), live = slow, with rho = 0.95**k * (t/T)**3, so the slow weights follow
the live ones closely early on (rho ~ 0: no separate start epoch is needed) and average over more and more
steps towards the end (rho -> 0.95**k); the batch-norm running statistics are averaged alike (airbench
averages the whole state dict), and at the end of every epoch the live weights and statistics are set to
the slow ones, so what is scored, kept and returned is the average. (airbench94 makes that last copy at the
end of the run only, hlb-cifar10 at every epoch's end; here it is the epoch's end, where imgclf scores.)

An augmentation that needs per-row state (`flip:alt`, imgclf/nn/augment.py: its `new_state(n)` returns an
array) is called with the batch's training rows, the epoch (0-based) and that state, which the Solver
keeps and checkpoints.

Resuming is exact: a checkpoint holds the weights, the optimiser state, the weight average, the
Generator's state, the epoch's permutation and position, the history and the best weights, so a resumed
run takes the very same steps as one that was never interrupted.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelFileError, UsageError
from ..io import checkpoint
from . import checkpoint_state
from .checkpoint_state import BUFFER
from . import optim as optim_rules
from . import schedules


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    train_acc: float
    val_acc: float | None
    lr: float
    update_ratio: float | None
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    loss_history: list[float] = field(default_factory=list)
    best_val_acc: float | None = None
    best_epoch: int | None = None
    stopped: str | None = None  # None, "diverged: ...", "early stop: ...", "interrupted"
    checkpoint: str | None = None  # the last checkpoint written


def batched_predict(model, X: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Class indices of `model.predict_codes` over X in batches."""
    if not len(X):
        return np.empty(0, np.int64)
    return np.concatenate([model.predict_codes(X[i:i + batch]) for i in range(0, len(X), batch)])


def accuracy(model, X, y, batch: int = 1000) -> float:
    return float(np.mean(batched_predict(model, X, batch) == y)) if len(y) else float("nan")


def accuracies(model, X, y, class_weights=None, batch: int = 1000) -> tuple[float, float]:
    """(accuracy, class-weighted accuracy sum_i w[y_i] [correct_i] / sum_i w[y_i]); labels the
    training set lacks (-1) weigh 1. Without class weights both are the plain accuracy."""
    if not len(y):
        return float("nan"), float("nan")
    correct = batched_predict(model, X, batch) == y
    plain = float(np.mean(correct))
    if class_weights is None:
        return plain, plain
    w = np.where(y >= 0, np.asarray(class_weights, np.float64)[np.maximum(y, 0)], 1.0)
    return plain, float(np.sum(w * correct) / np.sum(w)) if np.sum(w) > 0 else plain


class Solver:
    """Train one model (see the module docstring for what it must provide) on one training set.

    Parameters
    ----------
    model : object
        The model to train; its `params_` are updated in place.
    X_train : ndarray of shape (N, ...)
        Training inputs as the model's `prepare_batch` takes them (batches are gathered by row).
    y_train : ndarray of shape (N,)
        Class indices 0..C-1 (int64).
    X_val, y_val : ndarray, default=None
        Validation data, scored after every epoch; the best-scoring epoch's weights are kept. Without it,
        the accuracy on a fixed sample of the training rows chooses the best epoch.
    optim : str, default="sgd"
        The update rule: "sgd", "momentum", "nesterov", "adagrad", "rmsprop" or "adam" (imgclf/nn/optim.py).
    lr : float, default=1e-3
        The base learning rate.
    optim_options : dict, default=None
        The update rule's settings, e.g. {"momentum": 0.95} or {"beta1": 0.9, "beta2": 0.999}.
    lr_schedule : str, default=None
        How the learning rate changes per epoch: "step:F[:E]" (times F every E epochs), "exp:K", "inv:K",
        per step "warmup:P[:S[:E]]", or "none" (imgclf/nn/schedules.py). None: times `lr_decay` every epoch.
    lr_decay : float, default=1.0
        The per-epoch factor when `lr_schedule` is None.
    epochs : int, default=10
        Passes over the training set.
    iters : int, default=None
        Stop after this many steps instead (the epochs then run as far as needed).
    batch_size : int, default=200
        Rows per step (at most N; an epoch is N // batch_size steps).
    augment : callable, default=None
        `augment(X_batch, rng) -> X_batch` applied to each raw batch before `prepare` (e.g.
        `imgclf.nn.augment.parse("flip,crop:4")`).
    patience : int, default=None
        Stop early when the validation score has not improved for this many epochs.
    rng : numpy.random.Generator, default=None
        The run's only source of randomness (shuffling, augmentation, dropout); None: a Generator seeded 0.
    train_acc_sample : int, default=1000
        Training rows the per-epoch training accuracy is measured on (fixed for the run).
    class_weights : array of float, default=None
        Per-class weights (index = encoded label): the best epoch is then the one with the best
        class-weighted accuracy, the measure a class-weighted loss optimises.
    callback : callable, default=None
        `callback(event, info)` with event "step" (epoch, iteration, loss) or "epoch" (the epoch's record).
    checkpoint_dir : str or Path, default=None
        Write a checkpoint into this folder after every epoch (and on an interrupt); docs/format.md.
    keep_checkpoints : int, default=3
        Keep the newest N checkpoints this run wrote and the best epoch's; 0 keeps all.
    checkpoint_extra : dict, default=None
        JSON stored in every checkpoint's `extra` (the CLI keeps its preprocessing spec and seed there).
    log : str, Path or text file, default=None
        Append one JSON line per epoch and per stop.
    stop_signal : bool, default=False
        On SIGINT, finish the current step, write a checkpoint and return with `stopped="interrupted"`
        (a second SIGINT raises KeyboardInterrupt). Only in the main thread.
    ema : float, default=None
        Keep a moving average of the weights and buffers with this decay (see the module docstring); it is
        scored, kept as the best and restored at the end, and checkpointed.
    lookahead : (int, float) or (int, "ramp"), default=None
        (k, alpha): Lookahead around the update rule, slow weights synchronised every k steps with step
        alpha; (k, "ramp"): airbench's ramped weight averaging (see the module docstring); checkpointed.
        None: off.
    """

    def __init__(
        self,
        model,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        *,
        optim: str = "sgd",
        lr: float = 1e-3,
        optim_options: dict | None = None,
        lr_schedule: str | None = None,
        lr_decay: float = 1.0,
        epochs: int = 10,
        iters: int | None = None,
        batch_size: int = 200,
        augment=None,
        patience: int | None = None,
        rng: np.random.Generator | None = None,
        train_acc_sample: int = 1000,
        class_weights=None,
        callback=None,
        checkpoint_dir=None,
        keep_checkpoints: int = 3,
        checkpoint_extra: dict | None = None,
        log=None,
        stop_signal: bool = False,
        ema: float | None = None,
        lookahead: tuple[int, float] | None = None,
    ):
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}", param="batch_size")
        if epochs < 1 and iters is None:
            raise UsageError(f"epochs must be >= 1, got {epochs}", param="epochs")
        if iters is not None and iters < 1:
            raise UsageError(f"iters must be >= 1, got {iters}", param="iters")
        if patience is not None and patience < 1:
            raise UsageError(f"patience must be >= 1, got {patience}", param="patience")
        if keep_checkpoints < 0:
            raise UsageError(f"keep_checkpoints must be >= 0 (0 keeps all), got {keep_checkpoints}",
                             param="keep_checkpoints")
        if len(y_train) == 0:
            raise UsageError("the training split is empty")
        if ema is not None and not (isinstance(ema, (int, float)) and 0 < ema < 1):
            raise UsageError(f"ema must be a decay in (0, 1) or None, got {ema!r}")
        self.model = model
        self.X_train, self.y_train = X_train, y_train
        self.X_val, self.y_val = X_val, y_val
        self.optim_name = optim
        self.rule = optim_rules.RULES.get(optim)
        self.base_config = optim_rules.make_config(optim, lr, **(optim_options or {}))
        self.lr = lr
        self.batch_size = min(batch_size, len(y_train))
        self.steps_per_epoch = max(1, len(y_train) // self.batch_size)
        self.epochs = epochs if iters is None else -(-iters // self.steps_per_epoch)
        self.schedule = schedules.parse(lr_schedule, lr_decay, self.epochs)
        self.ema = ema
        self.ema_state = self._snapshot() if ema else None
        self.lookahead = optim_rules.parse_lookahead(lookahead)
        self.ramp = bool(self.lookahead) and self.lookahead[1] == optim_rules.RAMP
        self.total_steps = iters if iters is not None else self.epochs * self.steps_per_epoch
        if self.ramp:  # airbench averages the batch-norm statistics too
            self.slow_state = self._snapshot()
        else:
            self.slow_state = {k: v.copy() for k, v in model.params_.items()} if self.lookahead else None
        self.iters = iters
        self.augment = augment
        new_state = getattr(augment, "new_state", None)
        self.augment_state = new_state(len(y_train)) if new_state is not None else None
        self.patience = patience
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.callback = callback
        self.class_weights = class_weights
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.keep_checkpoints = keep_checkpoints
        self.checkpoint_extra = checkpoint_extra or {}
        self.log = log
        self.stop_signal = stop_signal
        # A fixed sample for the per-epoch training accuracy, so epochs compare like with like.
        n_sample = min(train_acc_sample, len(y_train))
        self.train_sample = np.sort(self.rng.choice(len(y_train), n_sample, replace=False))
        self.configs = {name: dict(self.base_config) for name in model.params_}
        penalties = model.l2_penalties() if hasattr(model, "l2_penalties") else {}
        self.l2 = {k: float(v) for k, v in penalties.items() if v}
        for name, reg in self.l2.items():
            self.configs[name]["l2"] = 2 * reg
        scales = model.lr_scales() if hasattr(model, "lr_scales") else {}
        self.lr_scales = {k: float(v) for k, v in scales.items() if float(v) != 1.0}
        for name, scale in self.lr_scales.items():
            if name not in model.params_ or not (np.isfinite(scale) and scale > 0):
                raise UsageError(f"lr_scales must map parameters to factors > 0, got {name!r}: {scale!r}",
                                 param="lr_scales")
        # Plain SGD steps these weights inside the model's products (the module docstring's `sgd_fusable`).
        fusable = model.sgd_fusable() if hasattr(model, "sgd_fusable") and hasattr(model, "l2_penalties") else ()
        plain = optim == "sgd" and not self.ema and not self.lookahead
        self.fused_sgd = tuple(n for n in fusable if n in model.params_ and n not in self.lr_scales) if plain else ()
        self.result = TrainResult()
        self.epoch = 0  # completed epochs
        self.iteration = 0
        self.order = None  # the current epoch's permutation, None between epochs
        self.position = 0  # steps taken in the current epoch
        self.best_state = None
        self._stop_requested = False
        self._written: list[Path] = []

    # -- state -----------------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        state = {k: v.copy() for k, v in self.model.params_.items()}
        state.update({f"{BUFFER}{k}": v.copy() for k, v in getattr(self.model, "buffers_", {}).items()})
        return state

    def _live(self, key: str) -> np.ndarray:
        """The model's array behind a snapshot key: a parameter, or "buffer:NAME" a batch-norm statistic."""
        if key.startswith(BUFFER):
            return self.model.buffers_[key[len(BUFFER):]]
        return self.model.params_[key]

    def _restore(self, state: dict) -> None:
        for k, v in state.items():
            self._live(k)[...] = v

    def request_stop(self) -> None:
        """Stop after the current step with a checkpoint (what SIGINT does); safe from a signal handler."""
        self._stop_requested = True

    # -- checkpoints -------------------------------------------------------------------------------
    def _checkpoint_payload(self) -> tuple[dict, dict[str, np.ndarray]]:
        res = self.result
        arrays = {f"param/{k}": v for k, v in self.model.params_.items()}
        arrays.update({f"buffer/{k}": v for k, v in getattr(self.model, "buffers_", {}).items()})
        if self.best_state is not None:
            arrays.update({f"best/{k}": v for k, v in self.best_state.items()})
        if self.ema_state is not None:
            arrays.update({f"ema/{k}": v for k, v in self.ema_state.items()})
        if self.slow_state is not None:
            arrays.update({f"lookahead/{k}": v for k, v in self.slow_state.items()})
        if self.augment_state is not None:
            arrays["augment_state"] = self.augment_state
        scalars = {}
        for name, config in self.configs.items():
            scalars[name] = {}
            for key, value in config.items():
                if isinstance(value, np.ndarray):
                    arrays[f"opt/{name}/{key}"] = value
                else:
                    scalars[name][key] = value
        if self.order is not None:
            arrays["order"] = self.order
        arrays["train_sample"] = self.train_sample
        meta = {
            "epoch": self.epoch,
            "iteration": self.iteration,
            "position": self.position if self.order is not None else 0,
            "n_train": int(len(self.y_train)),
            "batch_size": self.batch_size,
            "optim": self.optim_name,
            "optim_state": scalars,
            "ema": self.ema,
            "lookahead": list(self.lookahead) if self.lookahead else None,
            "rng": self.rng.bit_generator.state,
            "history": res.history,
            "loss_history": res.loss_history,
            "best_val_acc": res.best_val_acc,
            "best_epoch": res.best_epoch,
            "extra": self.checkpoint_extra,
        }
        if self.lr_scales:  # absent when every parameter steps at lr, as in checkpoints from before
            meta["lr_scales"] = dict(self.lr_scales)
        if hasattr(self.model, "to_arrays"):
            params, _ = self.model.to_arrays()
            meta["model"] = {"kind": getattr(self.model, "kind", None), "hyperparameters": params}
        return meta, arrays

    def save_checkpoint(self, path=None) -> Path:
        """Write the full training state atomically (to `path`, or a name in checkpoint_dir)."""
        if path is None:
            if self.checkpoint_dir is None:
                raise UsageError("no checkpoint directory was given")
            last_val = self.result.history[-1]["val_acc"] if self.result.history else None
            step = self.position if self.order is not None else 0
            path = self.checkpoint_dir / checkpoint.checkpoint_name(self.epoch, step, last_val)
        path = checkpoint.write(path, *self._checkpoint_payload())
        self.result.checkpoint = str(path)
        self._written = checkpoint.prune(self._written + [path], self.keep_checkpoints, self.result.best_epoch)
        return path

    def load_checkpoint(self, source) -> dict:
        """Restore everything `save_checkpoint` wrote; the data and batch size must be the same."""
        meta, arrays = checkpoint.read(source)
        if meta.get("n_train") != len(self.y_train) or meta.get("batch_size") != self.batch_size:
            raise ModelFileError(
                f"{source}: checkpoint of a run on {meta.get('n_train')} training examples with batch size "
                f"{meta.get('batch_size')}; this run has {len(self.y_train)} and {self.batch_size} (use the same data "
                f"options)")
        if meta.get("optim") != self.optim_name:
            raise ModelFileError(f"{source}: checkpoint of a run with optimiser {meta.get('optim')!r}, not {self.optim_name!r}")
        if meta.get("ema") != self.ema:
            raise ModelFileError(f"{source}: checkpoint of a run with ema={meta.get('ema')!r}, not {self.ema!r}")
        mine = list(self.lookahead) if self.lookahead else None
        if meta.get("lookahead") != mine:
            raise ModelFileError(f"{source}: checkpoint of a run with lookahead={meta.get('lookahead')!r}, not {mine!r}")
        if (meta.get("lr_scales") or {}) != self.lr_scales:
            raise ModelFileError(f"{source}: checkpoint of a run with learning-rate factors "
                                 f"{meta.get('lr_scales') or {}!r}, not {self.lr_scales!r} (bias_lr_scale)")
        if ("augment_state" in arrays) != (self.augment_state is not None):
            has = "with" if "augment_state" in arrays else "without"
            raise ModelFileError(f"{source}: checkpoint of a run {has} alternating flips (augment flip:alt); use "
                                 f"the run's augmentation")
        checkpoint_state.checked(source, self, meta, arrays)  # the whole state, before any of it is restored
        try:
            for store, prefix in ((self.model.params_, "param/"), (getattr(self.model, "buffers_", {}), "buffer/")):
                for k, v in store.items():
                    saved = arrays[prefix + k]
                    if saved.shape != v.shape:
                        raise ModelFileError(f"{source}: {k} has shape {saved.shape} in the checkpoint, the model has {v.shape}")
                    v[...] = saved
            best = {k[5:]: v for k, v in arrays.items() if k.startswith("best/")}
            self.best_state = {k: v.copy() for k, v in best.items()} or None
            if self.ema_state is not None:
                self.ema_state = {k: arrays[f"ema/{k}"].copy() for k in self.ema_state}
            if self.slow_state is not None:
                self.slow_state = {k: self._saved(source, arrays[f"lookahead/{k}"], v)
                                   for k, v in self.slow_state.items()}
            if self.augment_state is not None:
                self.augment_state = self._saved(source, arrays["augment_state"], self.augment_state)
            for name, config in self.configs.items():
                config.update(meta["optim_state"][name])
                for key in [k for k in arrays if k.startswith(f"opt/{name}/")]:
                    config[key.split("/", 2)[2]] = arrays[key].copy()
            self.rng.bit_generator.state = meta["rng"]
            self.epoch, self.iteration = int(meta["epoch"]), int(meta["iteration"])
            self.order = arrays["order"].copy() if "order" in arrays else None
            self.position = int(meta["position"])
            self.train_sample = arrays["train_sample"]
        except KeyError as exc:
            raise ModelFileError(f"{source}: incomplete checkpoint (missing {exc})") from None
        res = self.result
        res.history = list(meta["history"])
        res.loss_history = [float("nan") if v is None else v for v in meta["loss_history"]]
        res.best_val_acc, res.best_epoch = meta["best_val_acc"], meta["best_epoch"]
        res.stopped = None
        return meta

    @staticmethod
    def _saved(source, saved: np.ndarray, like: np.ndarray) -> np.ndarray:
        """A copy of a checkpoint's array for state shaped and typed like `like`."""
        if saved.shape != like.shape or saved.dtype != like.dtype:
            raise ModelFileError(f"{source}: checkpoint state of shape {saved.shape} {saved.dtype}, the run "
                                 f"needs {like.shape} {like.dtype}")
        return saved.copy()

    # -- loop ------------------------------------------------------------------------------------
    def _step(self, idx: np.ndarray, lr: float, want_ratio: bool) -> tuple[float, float | None]:
        """One update; returns (loss, update/weight ratio of the first parameter when asked).
        A non-finite loss leaves the weights untouched."""
        first = next(iter(self.model.params_))
        # copied first: with fused SGD the weight changes inside loss_and_grads
        before = self.model.params_[first].copy() if want_ratio else None
        frozen = self.model.frozen_params(self.epoch) if hasattr(self.model, "frozen_params") else ()
        fused = {}
        if self.augment is None and hasattr(self.model, "loss_rows"):
            loss, grads = self.model.loss_rows(self.X_train, idx, self.y_train[idx])
        else:
            Xb = self._gather(idx)
            if self.augment_state is not None:
                Xb = self.augment(Xb, self.rng, index=idx, epoch=self.epoch, state=self.augment_state)
            elif self.augment is not None:
                Xb = self.augment(Xb, self.rng)
            Xp = self.model.prepare_batch(Xb)
            fused = self._fused_steps(lr, frozen)
            extra = {"sgd": fused} if fused else {}
            # l2=False whenever weights are stepped in the model (their c carries the penalty, 0 with reg=0)
            loss, grads = self.model.loss_and_grads(Xp, self.y_train[idx], mode="train", rng=self.rng,
                                                    l2=not (self.l2 or fused), **extra)
        if not np.isfinite(loss):
            return float(loss), None
        scales = self.lr_scales
        for name, w in self.model.params_.items():
            if name in frozen:  # e.g. ConvNet's batch-norm gammas with bn_scale=False: never updated
                continue
            config = self.configs[name]
            config["learning_rate"] = lr * scales[name] if name in scales else lr
            if name not in grads and name in fused:  # stepped inside the model's product
                continue
            self.rule(w, grads[name], config)
        loss += sum(reg * self.configs[name]["sum_sq"] for name, reg in self.l2.items())
        if self.slow_state is not None and (self.iteration + 1) % self.lookahead[0] == 0:
            self._lookahead_sync()
        if self.ema_state is not None:
            self._ema_update()
        ratio = None
        if want_ratio:
            w = self.model.params_[first]
            ratio = float(np.linalg.norm(w - before) / (np.linalg.norm(before) + 1e-12))
        return float(loss), ratio

    def _gather(self, idx: np.ndarray) -> np.ndarray:
        """X_train[idx]: for a plain C-contiguous array copied on the thread team (kernels/gather.py) into a
        recycled buffer (kernels/buffers.py: handed out again only once nothing holds it, i.e. once the last
        step's caches are gone); numpy's X[idx] on one numba thread or for small batches, where it is faster."""
        X = self.X_train
        if type(X) is not np.ndarray or not X.flags.c_contiguous or X.ndim < 2:
            return X[idx]
        from ..kernels import buffers
        from ..kernels.gather import gather_rows, team_gather_pays

        shape = (len(idx),) + X.shape[1:]
        if not team_gather_pays(math.prod(shape)):
            return X[idx]
        return gather_rows(X, idx, buffers.empty(shape, X.dtype))

    def _fused_steps(self, lr: float, frozen) -> dict:
        """{name: (lr, c)} for the weights the model steps itself this step (`fused_sgd` less the `frozen`
        ones), their penalties' sum(w^2) before the step recorded as the rule would; {} when a sum is not
        finite (the unfused path then handles the step)."""
        if not self.fused_sgd:
            return {}
        from ..kernels.elementwise import sum_sq

        steps, sums = {}, {}
        for name in self.fused_sgd:
            if name in frozen:
                continue
            c = self.configs[name].get("l2", 0.0)
            if c:
                sums[name] = sum_sq(self.model.params_[name])
                if not np.isfinite(sums[name]):
                    return {}
            steps[name] = (lr, c)
        for name, total in sums.items():
            self.configs[name]["sum_sq"] = total
        return steps

    def _lookahead_sync(self) -> None:
        """slow += alpha * (fast - slow); fast = slow (after every k-th step); "ramp": alpha = 1 - rho(t)."""
        k, alpha = self.lookahead
        if alpha == optim_rules.RAMP:
            alpha = 1.0 - optim_rules.ramp_rho(k, self.iteration + 1, self.total_steps)
        for key, slow in self.slow_state.items():
            fast = self._live(key)
            slow += slow.dtype.type(alpha) * (fast - slow)
            fast[...] = slow

    def _ema_update(self) -> None:
        t = self.iteration  # steps before this one
        d = min(self.ema, (1.0 + t) / (10.0 + t))
        for k, avg in self.ema_state.items():
            w = self._live(k)
            avg *= avg.dtype.type(d)
            avg += avg.dtype.type(1.0 - d) * w

    def train(self) -> TrainResult:
        previous = self._install_handler()
        try:
            self._loop()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if self.best_state is not None:
            self._restore(self.best_state)
        return self.result

    def _install_handler(self):
        if not self.stop_signal or threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_requested:  # a second Ctrl-C: stop now, without a checkpoint
                raise KeyboardInterrupt
            self.request_stop()

        return signal.signal(signal.SIGINT, handler)

    def _loop(self) -> None:
        res = self.result
        n = len(self.y_train)
        while self.epoch < self.epochs:
            t0 = time.perf_counter()
            if self.order is None:
                self.order = self.rng.permutation(n)
                self.position = 0
            ratio = None
            while self.position < self.steps_per_epoch:
                if self.iters is not None and self.iteration >= self.iters:
                    break
                s = self.position
                lr = self._lr_at(s)
                idx = self.order[s * self.batch_size:(s + 1) * self.batch_size]
                loss, r = self._step(idx, lr, want_ratio=s == self.steps_per_epoch - 1)
                if not np.isfinite(loss):
                    self._diverged(f"the loss became {loss} at iteration {self.iteration + 1}")
                    return
                self.position += 1
                self.iteration += 1
                res.loss_history.append(loss)
                ratio = r if r is not None else ratio
                if self.callback:
                    self.callback("step", {"epoch": self.epoch + 1, "iteration": self.iteration, "loss": loss})
                if self._stop_requested:
                    res.stopped = "interrupted"
                    if self.checkpoint_dir is not None:
                        self.save_checkpoint()
                    self._log({"event": "stop", "reason": res.stopped, "iteration": self.iteration,
                               "checkpoint": res.checkpoint})
                    return
            # An update can overflow the weights while its loss was still finite: never keep or score those.
            if not all(np.isfinite(w).all() for w in self.model.params_.values()):
                self._diverged(f"the weights became non-finite by iteration {self.iteration}")
                return
            if self.ramp:  # airbench's averaging: the epoch ends on the slow weights
                self._restore(self.slow_state)
            losses = res.loss_history[len(res.loss_history) - self.position:]
            lr = self._lr_at(max(self.position - 1, 0))  # the last step's (per-step schedules change within an epoch)
            self.epoch += 1
            self.order = None
            self._end_epoch(float(np.mean(losses)) if losses else float("nan"), lr, ratio, time.perf_counter() - t0)
            if self.checkpoint_dir is not None:
                self.save_checkpoint()
            if res.stopped:
                self._log({"event": "stop", "reason": res.stopped})
                return

    def _lr_at(self, step: int) -> float:
        """The learning rate of step `step` of the current epoch."""
        if getattr(self.schedule, "per_step", False):
            return self.lr * self.schedule(self.epoch + step / self.steps_per_epoch)
        return self.lr * self.schedule(self.epoch)

    def _diverged(self, what: str) -> None:
        res = self.result
        kept = (f"the weights of epoch {res.best_epoch} are kept" if res.best_epoch is not None
                else "no epoch finished, so there are no good weights")
        if res.checkpoint:
            kept += f"; last good checkpoint: {res.checkpoint}"
        res.stopped = (f"diverged: {what} (epoch {self.epoch + 1}); "
                       f"{kept}; try a lower learning rate")
        self._log({"event": "stop", "reason": res.stopped})

    def _end_epoch(self, loss, lr, ratio, seconds) -> None:
        res = self.result
        live = None
        if self.ema_state is not None:
            # Score (and keep as the best) the averaged weights; training continues from the live ones.
            live = self._snapshot()
            self._restore(self.ema_state)
        idx = self.train_sample
        # With class weights the best epoch is the one with the best class-weighted accuracy, the
        # measure the weighted loss optimises; the history records plain accuracies.
        train_acc, score = accuracies(self.model, self.X_train[idx], self.y_train[idx], self.class_weights)
        val_acc = None
        if self.X_val is not None and len(self.y_val):
            val_acc, score = accuracies(self.model, self.X_val, self.y_val, self.class_weights)
        rec = EpochRecord(self.epoch, loss, train_acc, val_acc, lr, ratio, seconds)
        res.history.append(rec.as_dict())
        if res.best_val_acc is None or score > res.best_val_acc:
            res.best_val_acc, res.best_epoch = score, self.epoch
            self.best_state = self._snapshot()
            if self.patience is not None and score >= 1.0:
                # Nothing can beat a perfect score, so no later epoch would be kept: with early stopping
                # on, waiting `patience` epochs for an improvement would only cost time.
                res.stopped = f"early stop: perfect score at epoch {self.epoch}"
        elif self.patience is not None and self.epoch - res.best_epoch >= self.patience:
            res.stopped = f"early stop: no val improvement for {self.patience} epochs (best {res.best_val_acc:.4f} at epoch {res.best_epoch})"
        if live is not None:
            self._restore(live)
        self._log({"event": "epoch", "iteration": self.iteration, **rec.as_dict()})
        if self.callback:
            self.callback("epoch", rec.as_dict())

    def _log(self, record: dict) -> None:
        """One JSON line per event to `log` (a path, appended to, or a text file object)."""
        if self.log is None:
            return
        line = json.dumps({k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in record.items()})
        if hasattr(self.log, "write"):
            self.log.write(line + "\n")
            self.log.flush()
        else:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
