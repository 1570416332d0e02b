"""The one training loop, shared by linear classifiers and nets.

A trainable model provides:
  - `params_`: dict name -> float array, updated in place by the optimiser;
  - `buffers_` (optional): dict of non-trained state arrays (e.g. batch-norm running statistics);
  - `prepare(X) -> array`: raw batch (uint8 images or float features) to the model's input dtype/layout;
  - `loss(Xp, y, mode="train", rng=None) -> (loss, grads)` with grads keyed like params_;
  - `predict(X)` on raw X.
The Solver shuffles with its own Generator, applies augmentation to raw image batches, steps the
optimiser, evaluates per epoch, keeps the best-validation weights and stops on a non-finite loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
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


def batched_predict(model, X: np.ndarray, batch: int = 1000) -> np.ndarray:
    return np.concatenate([model.predict(X[i:i + batch]) for i in range(0, len(X), batch)]) if len(X) else np.empty(0, np.int64)


def accuracy(model, X, y, batch: int = 1000) -> float:
    return float(np.mean(batched_predict(model, X, batch) == y)) if len(y) else float("nan")


class Solver:
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
        callback=None,
    ):
        if batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
        if epochs < 1 and iters is None:
            raise UsageError(f"--epochs must be >= 1, got {epochs}")
        if iters is not None and iters < 1:
            raise UsageError(f"--iters must be >= 1, got {iters}")
        if patience is not None and patience < 1:
            raise UsageError(f"--patience must be >= 1, got {patience}")
        if len(y_train) == 0:
            raise UsageError("the training split is empty")
        self.model = model
        self.X_train, self.y_train = X_train, y_train
        self.X_val, self.y_val = X_val, y_val
        self.optim_name = optim
        self.rule = optim_rules.RULES.get(optim)
        self.base_config = optim_rules.make_config(optim, lr, **(optim_options or {}))
        self.schedule = schedules.parse(lr_schedule, lr_decay)
        self.lr = lr
        self.batch_size = min(batch_size, len(y_train))
        self.steps_per_epoch = max(1, len(y_train) // self.batch_size)
        self.epochs = epochs if iters is None else -(-iters // self.steps_per_epoch)
        self.iters = iters
        self.augment = augment
        self.patience = patience
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.callback = callback
        # A fixed sample for the per-epoch training accuracy, so epochs compare like with like.
        n_sample = min(train_acc_sample, len(y_train))
        self.train_sample = np.sort(self.rng.choice(len(y_train), n_sample, replace=False))
        self.configs = {name: dict(self.base_config) for name in model.params_}
        self.result = TrainResult()
        self.epoch = 0
        self.iteration = 0
        self.best_state = None

    # -- state -----------------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        state = {k: v.copy() for k, v in self.model.params_.items()}
        state.update({f"buffer:{k}": v.copy() for k, v in getattr(self.model, "buffers_", {}).items()})
        return state

    def _restore(self, state: dict) -> None:
        for k, v in state.items():
            if k.startswith("buffer:"):
                self.model.buffers_[k[7:]][...] = v
            else:
                self.model.params_[k][...] = v

    # -- loop ------------------------------------------------------------------------------------
    def _step(self, idx: np.ndarray, lr: float) -> tuple[float, float | None]:
        Xb = self.X_train[idx]
        if self.augment is not None:
            Xb = self.augment(Xb, self.rng)
        Xp = self.model.prepare(Xb)
        loss, grads = self.model.loss(Xp, self.y_train[idx], mode="train", rng=self.rng)
        if not np.isfinite(loss):
            return float(loss), None
        first = next(iter(self.model.params_))
        before = self.model.params_[first].copy()
        for name, w in self.model.params_.items():
            config = self.configs[name]
            config["learning_rate"] = lr
            self.rule(w, grads[name], config)
        delta = self.model.params_[first] - before
        ratio = float(np.linalg.norm(delta) / (np.linalg.norm(before) + 1e-12))
        return float(loss), ratio

    def train(self) -> TrainResult:
        res = self.result
        while self.epoch < self.epochs:
            t0 = time.perf_counter()
            lr = self.lr * self.schedule(self.epoch)
            order = self.rng.permutation(len(self.y_train))
            losses, ratio = [], None
            for s in range(self.steps_per_epoch):
                if self.iters is not None and self.iteration >= self.iters:
                    break
                idx = order[s * self.batch_size:(s + 1) * self.batch_size]
                loss, r = self._step(idx, lr)
                self.iteration += 1
                res.loss_history.append(loss)
                if r is None:
                    res.stopped = f"diverged: the loss became {loss} at iteration {self.iteration}"
                    break
                ratio = r
                losses.append(loss)
                if self.callback:
                    self.callback("step", {"epoch": self.epoch + 1, "iteration": self.iteration, "loss": loss})
            if res.stopped:
                break
            self.epoch += 1
            self._end_epoch(float(np.mean(losses)) if losses else float("nan"), lr, ratio, time.perf_counter() - t0)
            if res.stopped:
                break
        if self.best_state is not None:
            self._restore(self.best_state)
        return res

    def _end_epoch(self, loss, lr, ratio, seconds) -> None:
        res = self.result
        idx = self.train_sample
        train_acc = accuracy(self.model, self.X_train[idx], self.y_train[idx])
        val_acc = None
        if self.X_val is not None and len(self.y_val):
            val_acc = accuracy(self.model, self.X_val, self.y_val)
        rec = EpochRecord(self.epoch, loss, train_acc, val_acc, lr, ratio, seconds)
        res.history.append(rec.as_dict())
        score = val_acc if val_acc is not None else train_acc
        if res.best_val_acc is None or score > res.best_val_acc:
            res.best_val_acc, res.best_epoch = score, self.epoch
            self.best_state = self._snapshot()
        elif self.patience is not None and self.epoch - res.best_epoch >= self.patience:
            res.stopped = f"early stop: no val improvement for {self.patience} epochs (best {res.best_val_acc:.4f} at epoch {res.best_epoch})"
        if self.callback:
            self.callback("epoch", rec.as_dict())
