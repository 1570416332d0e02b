"""Fully-connected nets: affine - activation - [batchnorm] - [dropout] - ... - affine - loss.

`NeuralNet(hidden=(500,))` is the two-layer net; `hidden=(1024, 512)` a deeper one. Training goes through
the one Solver (imgclf/nn/solver.py); the estimator follows scikit-learn's idiom (parameters stored
unchanged, learned attributes ending in `_`). Weights and activations are float32 in training
(`dtype="float64"` exists for gradient checks).

Parameter names: W1, b1, ..., W{L}, b{L} for the affine layers, gamma{i}, beta{i} for batch norm after
hidden layer i; buffers running_mean{i}, running_var{i}. The L2 penalty is reg * sum(W^2) over the W's
(the convention of the linear classifiers: gradient 2 * reg * W). The estimator's `loss` parameter
names the loss function; the Solver-facing `loss(X, y, mode, rng)` is `loss_and_grads`.
"""

from __future__ import annotations

import numpy as np

from ..base import TrainedClassifier
from ..errors import UsageError
from ..validation import check_array, check_fitted, check_labels, check_n_features, check_random_state, encode_labels
from . import layers

LOSSES = ("softmax", "svm")
OPTIMS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


class NeuralNet(TrainedClassifier):
    """A fully-connected net: hidden layers of affine -> [batch norm] -> activation -> [dropout], then
    an affine output layer and the loss. `hidden=(500,)` is the two-layer net.

    Parameters
    ----------
    hidden : int or sequence of int, default=(500,)
        The hidden layers' sizes, e.g. 500 or (1024, 512).
    activation : str, default="relu"
        "relu", "leaky_relu[:SLOPE]", "tanh", "sigmoid" or "elu[:ALPHA]".
    batchnorm : bool, default=False
        Batch normalisation in every hidden layer (running statistics at prediction time).
    dropout : float, default=0.0
        Inverted dropout: the probability of zeroing a hidden unit in training, in [0, 1).
    init : str, default="he"
        Weight initialisation: "he" (std sqrt(2/fan_in)), "xavier" (std sqrt(1/fan_in)) or "normal:STD".
    loss : {"softmax", "svm"}, default="softmax"
        The data loss on the output scores (cross-entropy, or the multiclass hinge).
    reg : float, default=1e-4
        L2 penalty reg * sum(W**2) over the weight matrices (not biases or batch-norm parameters).
    optim : {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}, default="adam"
        The update rule (imgclf/nn/optim.py).
    lr : float, default=1e-3
        The base learning rate.
    optim_options : dict, default=None
        The update rule's settings, e.g. {"beta1": 0.9, "beta2": 0.999} or {"momentum": 0.95}.
    lr_schedule : str, default=None
        "step:F[:E]" (times F every E epochs), "exp:K", "inv:K", "warmup:P[:S]" (per step: linear from S*lr
        to lr over the first fraction P of the run, then linear to 0) or "none"/None (constant).
    epochs : int, default=10
        Passes over the training set; the best epoch's weights are kept.
    batch_size : int, default=200
        Rows per step.
    augment : str, default=None
        Training-time augmentation of image batches: "flip" (horizontal, probability 1/2), "crop:P" (pad by
        P, crop back at random), both as "flip,crop:4", or None/"none". Needs (N, H, W, C) images.
    patience : int, default=None
        Stop when the validation score has not improved for this many epochs (None: run every epoch).
    train_acc_sample : int, default=1000
        Training rows the per-epoch training accuracy is measured on.
    dtype : {"float32", "float64"}, default="float32"
        Weights and activations; float64 is for gradient checks.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds initialisation, shuffling, augmentation and dropout; the same seed gives the same model.
    label_smoothing : float, default=0.0
        Softmax loss against (1 - e) onehot + e / classes instead of onehot, e in [0, 1).
    ema : float, default=None
        Keep a moving average of the weights (and batch-norm statistics) with this decay per step, e.g.
        0.999; the average is what is scored per epoch, kept as the best and returned (imgclf/nn/solver.py).

    Attributes
    ----------
    params_, buffers_ : dict of ndarray
        The trained parameters (W1, b1, ..., gamma{i}, beta{i}) and batch-norm running statistics.
    classes_ : ndarray
        The class labels, sorted; `predict` returns them.
    history_ : list of dict
        One record per epoch (loss, train and validation accuracy, learning rate, seconds).
    stopped_ : str or None
        Why training ended early ("early stop: ...", "diverged: ...", "interrupted"), None when it ran out.
    """

    kind = "net"

    def __init__(self, hidden=(500,), activation="relu", batchnorm=False, dropout=0.0, init="he", loss="softmax",
                 reg=1e-4, optim="adam", lr=1e-3, optim_options=None, lr_schedule=None, epochs=10, batch_size=200,
                 augment=None, patience=None, train_acc_sample=1000, dtype="float32", random_state=None,
                 label_smoothing=0.0, ema=None):
        self.hidden = hidden
        self.activation = activation
        self.batchnorm = batchnorm
        self.dropout = dropout
        self.init = init
        self.loss = loss
        self.reg = reg
        self.optim = optim
        self.lr = lr
        self.optim_options = optim_options
        self.lr_schedule = lr_schedule
        self.epochs = epochs
        self.batch_size = batch_size
        self.augment = augment
        self.patience = patience
        self.train_acc_sample = train_acc_sample
        self.dtype = dtype
        self.random_state = random_state
        self.label_smoothing = label_smoothing
        self.ema = ema

    # -- validation ------------------------------------------------------------------------------
    def hidden_sizes(self) -> tuple[int, ...]:
        """The hidden layer sizes `hidden` stands for, e.g. (500,) for hidden=500; UsageError if invalid."""
        return self._hidden()

    def _hidden(self) -> tuple[int, ...]:
        h = self.hidden
        if isinstance(h, (int, np.integer)):
            h = (h,)
        try:
            h = tuple(int(v) for v in h)
        except (TypeError, ValueError):
            raise UsageError(f"hidden must be a sequence of layer sizes such as (500,) or (1024, 512), got {self.hidden!r}") from None
        if any(v < 1 for v in h):
            raise UsageError(f"hidden layer sizes must be >= 1, got {h}")
        return h

    def _check_params(self) -> None:
        self._hidden()
        self._act = layers.parse_activation(self.activation)
        from . import init

        init.parse(self.init)
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        if self.optim not in OPTIMS:
            raise UsageError(f"unknown optimiser {self.optim!r}; choose from {', '.join(OPTIMS)}")
        if not (isinstance(self.dropout, (int, float, np.number)) and 0 <= self.dropout < 1):
            raise UsageError(f"dropout must be a probability in [0, 1), got {self.dropout!r}")
        if not (isinstance(self.reg, (int, float, np.number)) and np.isfinite(self.reg) and self.reg >= 0):
            raise UsageError(f"reg must be a finite number >= 0, got {self.reg!r}")
        if self.dtype not in ("float32", "float64"):
            raise UsageError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not (isinstance(self.label_smoothing, (int, float, np.number)) and 0 <= self.label_smoothing < 1):
            raise UsageError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.label_smoothing and self.loss != "softmax":
            raise UsageError("label_smoothing applies to the softmax loss only")
        if self.ema is not None and not (isinstance(self.ema, (int, float, np.number)) and 0 < self.ema < 1):
            raise UsageError(f"ema must be a decay in (0, 1) (e.g. 0.999) or None, got {self.ema!r}")

    def _features(self, X, name="X", min_samples=0) -> np.ndarray:
        """X validated, (N, D) or (N, H, W, C); float arrays keep their dtype until `prepare`."""
        return check_array(X, name, min_samples=min_samples)

    def _check_fitted(self) -> None:
        check_fitted(self, "params_")

    # -- the model the Solver trains ---------------------------------------------------------------
    def initialize(self, n_features: int, n_classes: int, rng: np.random.Generator) -> "_Trainee":
        """Fresh parameters for n_features inputs and n_classes outputs; returns the Solver's view."""
        from . import init

        self._check_params()
        dt = np.dtype(self.dtype)
        sizes = (n_features,) + self._hidden() + (n_classes,)
        self.params_, self.buffers_ = {}, {}
        for i in range(1, len(sizes)):
            self.params_[f"W{i}"] = init.weight(self.init, sizes[i - 1], sizes[i], rng, dt)
            self.params_[f"b{i}"] = np.zeros(sizes[i], dt)
            if self.batchnorm and i < len(sizes) - 1:
                self.params_[f"gamma{i}"] = np.ones(sizes[i], dt)
                self.params_[f"beta{i}"] = np.zeros(sizes[i], dt)
                self.buffers_[f"running_mean{i}"] = np.zeros(sizes[i], dt)
                self.buffers_[f"running_var{i}"] = np.ones(sizes[i], dt)
        self.n_features_in_ = int(n_features)
        self.classes_ = getattr(self, "classes_", np.arange(n_classes))
        return _Trainee(self)

    @property
    def n_layers(self) -> int:
        return sum(1 for k in self.params_ if k.startswith("W"))

    def prepare(self, X) -> np.ndarray:
        """Raw batch to contiguous (N, D) in the weights' dtype (a view when it already is)."""
        X = self._features(X)
        check_n_features(self, X.reshape(len(X), -1))
        return self._as_input(X)

    def _as_input(self, X) -> np.ndarray:
        """`prepare` without the checks, for batches of data `fit` has validated as a whole (the
        finiteness scan alone would cost about as much as a small layer's forward pass, every step)."""
        return np.ascontiguousarray(X.reshape(len(X), -1), dtype=self.params_["W1"].dtype)

    def _forward(self, X, mode, rng):
        """Scores and the caches of every layer."""
        act, alpha = getattr(self, "_act", None) or layers.parse_activation(self.activation)
        h, caches = X, []
        p = float(self.dropout) if mode == "train" else 0.0
        L = self.n_layers
        for i in range(1, L):
            W, b = self.params_[f"W{i}"], self.params_[f"b{i}"]
            if self.batchnorm:
                # Dropout must follow batch norm, so the fused layer stops at the activation here.
                h, c1 = layers.affine_act_forward(h, W, b, act, alpha)
                h, c2 = layers.batchnorm_forward(h, self.params_[f"gamma{i}"], self.params_[f"beta{i}"],
                                                 self.buffers_[f"running_mean{i}"], self.buffers_[f"running_var{i}"],
                                                 mode)
                h, c3 = layers.dropout_forward(h, p, mode, rng)
                caches.append((c1, c2, c3))
            else:
                h, c1 = layers.affine_act_forward(h, W, b, act, alpha, p, mode, rng)
                caches.append((c1,))
        scores, c = layers.affine_forward(h, self.params_[f"W{L}"], self.params_[f"b{L}"])
        caches.append(c)
        return scores, caches

    def loss_and_grads(self, X, y, mode="train", rng=None, l2=True):
        """(mean data loss + reg * sum W^2, grads keyed like params_) on a prepared batch; with
        l2=False the data term alone (the Solver then folds the penalty into the update)."""
        scores, caches = self._forward(X, mode, rng)
        data_loss, dscores = self._data_loss(scores, y)
        L = self.n_layers
        grads = {}
        dh, g = layers.affine_backward(dscores, caches[-1], need_dx=L > 1)
        grads[f"W{L}"], grads[f"b{L}"] = g["w"], g["b"]
        for i in range(L - 1, 0, -1):
            cache = caches[i - 1]
            if self.batchnorm:
                dh, _ = layers.dropout_backward(dh, cache[2])
                dh, g = layers.batchnorm_backward(dh, cache[1])
                grads[f"gamma{i}"], grads[f"beta{i}"] = g["gamma"], g["beta"]
                dh, g = layers.affine_act_backward(dh, cache[0], need_dx=i > 1)
            else:
                dh, g = layers.affine_act_backward(dh, cache[0], need_dx=i > 1)
            grads[f"W{i}"], grads[f"b{i}"] = g["w"], g["b"]
        return data_loss + (self._add_l2(grads) if l2 else 0.0), grads

    def _data_loss(self, scores, y):
        from .. import losses

        if self.loss == "softmax":
            return losses.softmax_loss(scores, y, float(self.label_smoothing or 0.0))
        return losses.svm_loss(scores, y)

    def _add_l2(self, grads) -> float:
        """Add reg * d(sum W^2) to every weight gradient in place; return the penalty reg * sum W^2."""
        reg = float(self.reg)
        if not reg:
            return 0.0
        from ..kernels.elementwise import add_l2

        return sum(add_l2(grads[f"W{i}"], self.params_[f"W{i}"], reg) for i in range(1, self.n_layers + 1))

    def _scores(self, Xp) -> np.ndarray:
        return self._forward(Xp, "test", None)[0]

    # -- public API ------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None, *, callback=None, checkpoint_dir=None, keep_checkpoints=3,
            resume=None, log=None, stop_signal=False, checkpoint_extra=None):
        """Train through the Solver; afterwards the best-validation weights are in params_.

        X: (N, D) features or (N, H, W, C) images (uint8 or float); validation data optional (without it,
        accuracy on a fixed training sample chooses the best epoch). The keyword arguments pass through
        to the Solver: `callback(event, info)`, `checkpoint_dir`, `keep_checkpoints`, `resume` (a
        checkpoint path), `log` (a JSON-lines file), `stop_signal` (SIGINT handling), `checkpoint_extra`
        (JSON stored in every checkpoint). `result_` holds the Solver's result
        (`stopped`, history); `history_` the per-epoch records.
        """
        from . import augment as augment_mod
        from .solver import Solver

        self._check_params()
        X = self._features(X, min_samples=1)
        self.classes_, y_enc = encode_labels(check_labels(y, len(X)), min_classes=2)
        Xv = yv = None
        if X_val is not None and y_val is not None and len(y_val):
            Xv = self._features(X_val, "X_val")
            if int(np.prod(Xv.shape[1:])) != int(np.prod(X.shape[1:])):
                raise UsageError(f"X_val has {int(np.prod(Xv.shape[1:]))} features, X has {int(np.prod(X.shape[1:]))}")
            yv = self._encode(y_val)
        aug = augment_mod.parse(self.augment)
        if aug is not None and X.ndim != 4:
            raise UsageError(f"augment={self.augment!r} needs image data (N, H, W, C), got shape {X.shape}")
        rng = check_random_state(self.random_state)
        trainee = self.initialize(int(np.prod(X.shape[1:])), len(self.classes_), rng)
        # Convert once (e.g. uint8 -> float32) so that batches are plain gathers.
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if Xv is not None:
            Xv = np.ascontiguousarray(Xv, dtype=self.dtype)
        solver = Solver(
            trainee, X, y_enc.astype(np.int64), Xv, yv,
            optim=self.optim, lr=self.lr, optim_options=self.optim_options, lr_schedule=self.lr_schedule,
            epochs=self.epochs, batch_size=self.batch_size, augment=aug, patience=self.patience, rng=rng,
            train_acc_sample=self.train_acc_sample, callback=callback, checkpoint_dir=checkpoint_dir,
            keep_checkpoints=keep_checkpoints, checkpoint_extra=checkpoint_extra, log=log, stop_signal=stop_signal,
            ema=float(self.ema) if self.ema else None,
        )
        if resume is not None:
            solver.load_checkpoint(resume)
        self.result_ = solver.train()
        self.history_ = self.result_.history
        self.stopped_ = self.result_.stopped
        self.best_epoch_ = self.result_.best_epoch
        return self

    def _encode(self, y) -> np.ndarray:
        y = np.asarray(y)
        idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        return np.where(self.classes_[idx] == y, idx, -1).astype(np.int64)

    def decision_function(self, X, batch: int = 2000) -> np.ndarray:
        """Class scores (N, C); with two classes scikit-learn's convention: one score per row, s_1 - s_0,
        positive for classes_[1]."""
        scores = self._class_scores(X, batch)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def _class_scores(self, X, batch: int = 2000) -> np.ndarray:
        """Class scores (N, C), in batches (the hidden activations of a whole test set can be large)."""
        self._check_fitted()
        X = self._features(X)
        check_n_features(self, X)
        if len(X) == 0:
            return np.empty((0, len(self.classes_)), self.params_["W1"].dtype)
        return np.concatenate([self._scores(self.prepare(X[i:i + batch])) for i in range(0, len(X), batch)])

    def predict_proba(self, X) -> np.ndarray:
        from ..losses import softmax

        return softmax(self._class_scores(X))

    def predict(self, X) -> np.ndarray:
        scores = self._class_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def weight_images(self, input_shape) -> tuple[np.ndarray, list]:
        """First-layer weights, one image per hidden unit (column of W1 reshaped to `input_shape`),
        each rescaled to 0..255. Returns (uint8 (H1, *input_shape), labels "unit i")."""
        self._check_fitted()
        shape = tuple(int(v) for v in input_shape)
        W = self.params_["W1"]
        if int(np.prod(shape)) != W.shape[0]:
            raise UsageError(f"the first layer has {W.shape[0]} inputs, which cannot be shown as "
                             f"{'x'.join(map(str, shape))} images (was the chain a projection such as PCA?)")
        T = W.T.astype(np.float64)
        lo = T.min(axis=1, keepdims=True)
        span = T.max(axis=1, keepdims=True) - lo
        T = (T - lo) * (255.0 / np.where(span > 0, span, 1))
        return np.rint(T).astype(np.uint8).reshape((-1,) + shape), [f"unit {i}" for i in range(W.shape[1])]

    # -- model files -----------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        self._check_fitted()
        params = self._file_params()
        params["hidden"] = list(self._hidden())
        arrays = dict(self.params_)
        arrays.update(self.buffers_)
        arrays["classes"] = np.asarray(self.classes_)
        return params, arrays

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]):
        params, learned = cls._split_file_params(params)
        if isinstance(params.get("hidden"), list):
            params["hidden"] = tuple(params["hidden"])
        model = cls(**params)
        model._check_params()
        if "classes" not in arrays or learned["n_features_in_"] is None:
            raise UsageError("net model file lacks its classes or input size")
        model.initialize(int(learned["n_features_in_"]), len(arrays["classes"]), np.random.default_rng(0))
        for store in (model.params_, model.buffers_):
            for name, ref in store.items():
                arr = arrays.get(name)
                if arr is None or arr.shape != ref.shape:
                    got = "missing" if arr is None else f"shape {arr.shape}"
                    raise UsageError(f"net model file: {name} is {got}, expected shape {ref.shape}")
                store[name] = np.ascontiguousarray(arr, dtype=ref.dtype)
        model.classes_ = arrays["classes"]
        model._set_file_learned(learned)
        return model


class _Trainee:
    """The estimator as the Solver (and imgclf.sanity) sees it: `loss(X, y, mode, rng)`, labels as
    0..C-1, predictions as indices; `params_` and `buffers_` are the estimator's own dicts."""

    def __init__(self, model: NeuralNet):
        self.model = model

    @property
    def params_(self):
        return self.model.params_

    @params_.setter
    def params_(self, value):
        self.model.params_ = value

    @property
    def buffers_(self):
        return self.model.buffers_

    def prepare(self, X):
        return self.model._as_input(X)

    @property
    def l2_(self):
        reg = float(self.model.reg)
        return {k: reg for k in self.model.params_ if k.startswith("W")} if reg else {}

    def loss(self, X, y, mode="train", rng=None, l2=True):
        return self.model.loss_and_grads(X, y, mode, rng, l2)

    def predict(self, X):
        return np.argmax(self.model._scores(self.model._as_input(X)), axis=1)

    def to_arrays(self):
        return self.model.to_arrays()

    def fit(self, X, y, **kwargs):
        self.model.fit(X, y, **kwargs)
        return self

    def score(self, X, y):
        return self.model.score(X, y)

    def __getattr__(self, name):
        # Everything else (history_, classes_, stopped_, ...) is the estimator's.
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)
