"""Fully-connected nets: affine - activation - [batchnorm] - [dropout] - ... - affine - loss.

`NeuralNet(hidden=(500,))` is the two-layer net; `hidden=(1024, 512)` a deeper one. Training goes through
the one Solver (imgclf/nn/solver.py); the estimator follows scikit-learn's idiom (parameters stored
unchanged, learned attributes ending in `_`). Weights and activations are float32 in training
(`dtype="float64"` exists for gradient checks).

Parameter names: W1, b1, ..., W{L}, b{L} for the affine layers, gamma{i}, beta{i} for batch norm after
hidden layer i; buffers running_mean{i}, running_var{i}. The L2 penalty is reg * sum(W^2) over the W's
(the convention of the linear classifiers: gradient 2 * reg * W). The hidden layers are the shared
block of imgclf/nn/dense.py (affine -> [batchnorm] -> activation -> [dropout]).

The net standardises its input with the training set's statistics (per channel for images
(N, H, W, C), per feature for (N, D) rows), so raw pixels, standardised, whitened or tabular features
need no preprocessing. The defaults were measured on CIFAR-10 (49000/1000/10000) and checked on
MNIST, a 28x28 grey set and small tabular blobs (docs/recipes.md).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..base import TrainedClassifier
from ..blas import blas_threads
from ..errors import UsageError
from ..validation import (check_array, check_fitted, check_flag, check_int, check_n_features, check_number,
                          check_random_state, is_integer, is_real, rescale_u8)
from . import dense, layers
from .optim import RULES, parse_lookahead

LOSSES = ("softmax", "svm")
# The precision of the training steps' matrix products (imgclf/bf16.py); the weights are float32 in both.
PRECISIONS = ("float32", "bf16")
# Images used to estimate the input statistics.
STATS_SAMPLE = 10000
# Training sets of at most this many values train with one BLAS thread.
SMALL_DATA = 1_000_000


class NeuralNet(TrainedClassifier):
    """A fully-connected net: hidden layers of affine -> [batch norm] -> activation -> [dropout], then
    an affine output layer and the loss. `hidden=(500,)` is the two-layer net.

    Parameters
    ----------
    hidden : int or sequence of int, default=(500,)
        The hidden layers' sizes, e.g. 500 or (1024, 512).
    activation : str, default="relu"
        "relu", "leaky_relu[:SLOPE]", "tanh", "sigmoid", "elu[:ALPHA]" or "gelu" (exact, x * Phi(x)).
    batchnorm : bool, default=False
        Batch normalisation in every hidden layer (running statistics at prediction time).
    dropout : float, default=0.2
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
    lr_schedule : str, default="step:0.9"
        "step:F[:E]" (times F every E epochs), "exp:K", "inv:K", "warmup:P[:S[:E]]" (per step: linear from
        S*lr to lr over the first fraction P of the run, then linear to E*lr, default 0) or "none"/None
        (constant).
    epochs : int or "auto", default="auto"
        Passes over the training set; the best epoch's weights are kept. "auto": 8, and at least 600 steps
        on small data, with an early stop for the extra epochs (imgclf.base.AUTO_MIN_STEPS).
    batch_size : int, default=200
        Rows per step.
    augment : str, default="auto"
        Training-time augmentation of image batches: "flip" (horizontal, probability 1/2), "flip:alt"
        (alternating per epoch), "crop:P" (pad by P zeros, crop back at random), "crop:P:reflect" (reflect
        padding instead, as airbench), combined as "flip,crop:4", or None/"none". Needs (N, H, W, C) images.
        "auto": flips for colour images, none for grey images (a mirrored digit is another digit) and
        feature rows.
    patience : int, default=None
        Stop when the validation score has not improved for this many epochs (None: run every epoch).
    train_acc_sample : int, default=1000
        Training rows the per-epoch training accuracy is measured on.
    dtype : {"float32", "float64"}, default="float32"
        Weights and activations; float64 is for gradient checks.
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes' losses, as in scikit-learn ("balanced": n / (classes * count)); the best
        epoch is then the one with the best class-weighted accuracy.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds initialisation, shuffling, augmentation and dropout; the same seed gives the same model.
    label_smoothing : float, default=0.0
        Softmax loss against (1 - e) onehot + e / classes instead of onehot, e in [0, 1).
    ema : float, default=None
        Keep a moving average of the weights (and batch-norm statistics) with this decay per step, e.g.
        0.999; the average is what is scored per epoch, kept as the best and returned (imgclf/nn/solver.py).
    lookahead : str or (int, float), default=None
        Lookahead (Zhang et al. 2019) around the update rule: "K:ALPHA" or (k, alpha), e.g. "5:0.5": slow
        weights that after every k-th step move alpha of the way to the live weights, which then restart
        from them. With `ema` the average is of the live weights after that step (imgclf/nn/solver.py).
        "K:ramp" (e.g. "5:ramp") is airbench's averaging: every k steps slow += (1 - rho)(live - slow),
        live = slow, with rho = 0.95**k * (t/T)**3 at step t of the run's T, batch-norm statistics
        included, and live = slow at every epoch's end (what is scored and kept is the average).
    bias_lr_scale : float, default=1.0
        The learning rate of the biases and batch-norm betas is lr * bias_lr_scale (airbench trains its
        batch-norm biases at 64 times the rate); the other parameters train at lr.
    precision : {"float32", "bf16"}, default="float32"
        The training steps' matrix products: "bf16" rounds their inputs to bfloat16 and accumulates in
        float32 (Intel MKL on CPUs with AVX512-BF16 or AMX-BF16: `pip install 'imgclf[bf16]'`;
        `imgclf.errors.Unsupported` elsewhere); weights, optimiser state, batch norm and the loss stay
        float32. Scoring (predict, the per-epoch accuracies) always runs in float32/float64, so a bf16-trained
        model predicts the same on any machine. docs/bf16.md measures speed and accuracy.

    The input is standardised with the training set's statistics (per channel of images, per feature
    of rows: `input_mean_`, `input_scale_`), so raw pixels and features of any scale need no
    preprocessing. Scores are computed in float64 (the same whatever the batch), training in `dtype`.

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

    kind = "twolayer"
    _AUTO_EPOCHS = 8
    _LEGACY_LAYOUT = dense.BN_AFTER_ACTIVATION  # of model files that record none

    def __init__(self, hidden=(500,), activation="relu", batchnorm=False, dropout=0.2, init="he", loss="softmax",
                 reg=1e-4, optim="adam", lr=1e-3, optim_options=None, lr_schedule="step:0.9", epochs="auto",
                 batch_size=200, augment="auto", patience=None, train_acc_sample=1000, dtype="float32",
                 class_weight=None, random_state=None, label_smoothing=0.0, ema=None, lookahead=None,
                 precision="float32", bias_lr_scale=1.0):
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
        self.class_weight = class_weight
        self.random_state = random_state
        self.label_smoothing = label_smoothing
        self.ema = ema
        self.lookahead = lookahead
        self.precision = precision
        self.bias_lr_scale = bias_lr_scale

    # -- validation ------------------------------------------------------------------------------
    def hidden_sizes(self) -> tuple[int, ...]:
        """`hidden` as a tuple of layer sizes (validated): an integer or a sequence of integers >= 1, as
        a model file stores it; a float (8.0, 8.5) or a string ("8", whose characters would be read as
        layers) is refused."""
        h = self.hidden
        if is_integer(h):
            h = (h,)
        elif isinstance(h, np.ndarray) and h.ndim == 1:
            h = h.tolist()
        if not isinstance(h, (list, tuple)) or not all(is_integer(v) for v in h):
            raise UsageError(f"hidden must be a sequence of layer sizes such as (500,) or (1024, 512), got "
                             f"{self.hidden!r}", param="hidden")
        if any(v < 1 for v in h):
            raise UsageError(f"hidden layer sizes must be >= 1, got {tuple(h)}", param="hidden")
        return tuple(int(v) for v in h)

    def _check_params(self) -> None:
        self.hidden_sizes()
        self._act = layers.parse_activation(self.activation)
        from . import init

        init.parse(self.init)
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}", param="loss")
        if self.optim not in RULES:
            raise UsageError(f"unknown optimiser {self.optim!r}; choose from {', '.join(RULES)}", param="optim")
        check_flag(self.batchnorm, "batchnorm")
        check_number(self.dropout, "dropout", "a probability in [0, 1)", low=0, high=1, high_open=True)
        check_number(self.reg, "reg", "a finite number >= 0", low=0)
        if self.dtype not in ("float32", "float64"):
            raise UsageError(f"dtype must be float32 or float64, got {self.dtype!r}", param="dtype")
        self._train_precision("train")
        check_number(self.label_smoothing, "label_smoothing", "in [0, 1)", low=0, high=1, high_open=True)
        if self.label_smoothing and self.loss != "softmax":
            raise UsageError("label_smoothing applies to the softmax loss only", param="label_smoothing")
        if self.ema is not None:
            check_number(self.ema, "ema", "a decay in (0, 1) (e.g. 0.999) or None", low=0, high=1, low_open=True,
                         high_open=True)
        parse_lookahead(self.lookahead)
        check_number(self.bias_lr_scale, "bias_lr_scale", "a number > 0", low=0, low_open=True)
        self._check_training_params()

    def _check_training_params(self) -> None:
        """What fit's Solver set-up checks (augmentation, learning rate, schedule, optimiser settings,
        epochs, patience, seed, class weights, training-accuracy sample), checked with the rest: a model
        file's are then refused on load as a fit would refuse them, not kept to fail a later refit (or
        never)."""
        from . import augment as augment_mod
        from . import optim, schedules

        if not (isinstance(self.augment, str) and self.augment == "auto"):
            if self.augment is not None and not isinstance(self.augment, str):
                raise UsageError(f"augment must be a string such as 'flip,crop:4', 'auto' or None, got "
                                 f"{self.augment!r}", param="augment")
            augment_mod.parse(self.augment)
        if self.lr_schedule is not None and not isinstance(self.lr_schedule, str):
            raise UsageError(f"lr_schedule must be a string such as 'step:0.9' or None, got {self.lr_schedule!r}",
                             param="lr_schedule")
        schedules.parse(self.lr_schedule)
        if not is_real(self.lr):
            raise UsageError(f"lr must be a number > 0, got {self.lr!r}", param="lr")
        if self.optim_options is not None and not isinstance(self.optim_options, dict):
            raise UsageError(f"optim_options must be a dict of the optimiser's settings or None, got "
                             f"{self.optim_options!r}", param="optim_options")
        optim.make_config(self.optim, self.lr, **(self.optim_options or {}))
        self._check_common_params()
        check_int(self.patience, "patience", none=True)
        check_int(self.train_acc_sample, "train_acc_sample")

    def _features(self, X, name="X", min_samples=0) -> np.ndarray:
        """X validated, (N, D) or (N, H, W, C); float arrays keep their dtype until `prepare`."""
        return check_array(X, name, min_samples=min_samples)

    def _check_fitted(self) -> None:
        check_fitted(self, "params_")

    # -- the model the Solver trains (imgclf/nn/solver.py) ------------------------------------------
    def initialize(self, n_features: int, n_classes: int, rng: np.random.Generator):
        """Fresh parameters for n_features inputs and n_classes outputs (identity input scaling until
        `fit` measures the data); returns the estimator, ready for the Solver."""
        self._check_params()
        dt = np.dtype(self.dtype)
        layout = getattr(self, "layout_", dense.BN_BEFORE_ACTIVATION)
        sizes = (n_features,) + self.hidden_sizes() + (n_classes,)
        self.params_, self.buffers_ = {}, {}
        for i in range(1, len(sizes) - 1):
            dense.add_params(self.params_, self.buffers_, i, sizes[i - 1], sizes[i], self.init, self.batchnorm,
                             rng, dt, layout)
        self._add_output(len(sizes) - 1, sizes[-2], n_classes, rng, dt)
        self.n_features_in_ = int(n_features)
        self.classes_ = getattr(self, "classes_", np.arange(n_classes))
        if getattr(self, "input_mean_", None) is None or len(self.input_mean_) != self._stats_size():
            self.input_mean_, self.input_scale_ = None, None
        return self

    def _add_output(self, i, n_in, n_classes, rng, dt):
        from . import init

        self.params_[f"W{i}"] = init.weight(self.init, n_in, n_classes, rng, dt)
        self.params_[f"b{i}"] = np.zeros(n_classes, dt)

    def _stats_size(self) -> int:
        return self.n_features_in_

    @property
    def n_layers(self) -> int:
        return sum(1 for k in self.params_ if k.startswith("W"))

    def _learn_input_stats(self, X: np.ndarray) -> None:
        """input_mean_, input_scale_ (1/std) of the training data: per channel of images, tiled over the
        pixels of a flattened row (NHWC order), or per feature of (N, D) rows; on <= STATS_SAMPLE rows."""
        rng = np.random.default_rng(0)
        sample = X if len(X) <= STATS_SAMPLE else X[np.sort(rng.choice(len(X), STATS_SAMPLE, replace=False))]
        sample = sample.reshape(-1, X.shape[-1] if X.ndim == 4 else X.shape[1]).astype(np.float64)
        std = sample.std(axis=0)
        mean, scale = sample.mean(axis=0), 1.0 / np.where(std > 1e-8, std, 1.0)
        repeat = self._stats_size() // len(mean)
        self.input_mean_ = np.tile(mean, repeat).astype(self.dtype)
        self.input_scale_ = np.tile(scale, repeat).astype(self.dtype)

    def prepare(self, X, dtype=None) -> np.ndarray:
        """Raw batch (validated here) to the standardised input of the first layer."""
        X = self._features(X)
        check_n_features(self, X.reshape(len(X), -1))
        return self.prepare_batch(X, dtype)

    def prepare_batch(self, X, dtype=None) -> np.ndarray:
        """`prepare` without the checks, for batches of data `fit` has validated as a whole (the
        finiteness scan alone would cost about as much as a small layer's forward pass, every step);
        in the weights' dtype unless `dtype` is given."""
        dt = np.dtype(dtype or self.params_["W1"].dtype)
        if self.input_mean_ is None:  # an initialised model, or a file from before input scaling: a view
            return np.ascontiguousarray(X.reshape(len(X), -1), dtype=dt)
        return self._standardise(np.array(X.reshape(len(X), -1), dtype=dt, order="C", copy=True))

    def _standardise(self, out: np.ndarray) -> np.ndarray:
        if self.input_mean_ is not None:
            out -= self.input_mean_.astype(out.dtype, copy=False)
            out *= self.input_scale_.astype(out.dtype, copy=False)
        return out

    def _train_precision(self, mode: str) -> str:
        """The products' precision in `mode`: `precision` for training steps, float32 (or the data's
        float64) for scoring, so a model predicts the same whatever it was trained with and wherever."""
        precision = getattr(self, "precision", "float32")  # estimators pickled before the parameter
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}",
                             param="precision")
        if precision == "bf16" and self.dtype != "float32":
            raise UsageError(f"precision='bf16' trains float32 master weights; it needs dtype='float32', got "
                             f"{self.dtype!r}", param="precision")
        return precision if mode == "train" else "float32"

    def _forward(self, X, mode, rng, state=None):
        """Scores and the caches of every layer; `state` (params, buffers) replaces the model's own."""
        act, alpha = getattr(self, "_act", None) or layers.parse_activation(self.activation)
        layout = getattr(self, "layout_", dense.BN_BEFORE_ACTIVATION)
        P, B = state or (self.params_, self.buffers_)
        prec = self._train_precision(mode)
        h, caches = X, []
        L = self.n_layers
        for i in range(1, L):
            h, c = dense.forward(h, i, P, B, act, alpha, float(self.dropout), mode, rng, layout, prec)
            caches.append(c)
        scores, c = layers.affine_forward(h, P[f"W{L}"], P[f"b{L}"], prec)
        caches.append(c)
        return scores, caches

    def _data_loss(self, scores, y):
        from .. import losses

        weights = getattr(self, "_weights", None)
        sample_weight = None if weights is None else weights[y]
        if self.loss == "softmax":
            return losses.softmax_loss(scores, y, sample_weight, float(self.label_smoothing or 0.0))
        return losses.svm_loss(scores, y, sample_weight=sample_weight)

    def loss_and_grads(self, X, y, mode="train", rng=None, l2=True, sgd=None):
        """(mean data loss + reg * sum W^2, grads keyed like params_) on a prepared batch; with
        l2=False the data term alone (the Solver then folds the penalty into the update).

        `sgd` (the Solver's, for plain SGD): {weight name: (lr, c)} for weights named by `sgd_fusable`,
        each stepped in place inside its gradient's product, w := w - lr * (dw + c * w)
        (layers.affine_backward), and left out of grads; with a non-finite loss nothing is stepped."""
        scores, caches = self._forward(X, mode, rng)
        data_loss, dscores = self._data_loss(scores, y)
        if sgd:
            if l2 or not set(sgd) <= set(self.sgd_fusable()):
                raise UsageError(f"sgd steps the weights {', '.join(self.sgd_fusable())} with the penalty folded "
                                 f"in (l2=False); got {sorted(sgd)} with l2={l2!r}", param="sgd")
            if not np.isfinite(data_loss):
                sgd = None
        sgd = sgd or {}
        L = self.n_layers
        dh, g = layers.affine_backward(dscores, caches[-1], need_dx=L > 1, sgd=sgd.get(f"W{L}"))
        grads = {f"b{L}": g["b"]} if g["w"] is None else {f"W{L}": g["w"], f"b{L}": g["b"]}
        for i in range(L - 1, 0, -1):
            dh, g = dense.backward(dh, caches[i - 1], need_dx=i > 1, sgd=sgd.get(f"W{i}"))
            grads.update(g)
        return data_loss + (self._add_l2(grads) if l2 else 0.0), grads

    def sgd_fusable(self) -> tuple[str, ...]:
        """The weights whose plain-SGD step `loss_and_grads(..., sgd=...)` can take inside their
        gradient's product (the Solver's protocol, imgclf/nn/solver.py): every W{i}; none for a subclass
        with a loss_and_grads of its own (ConvNet), which takes no `sgd`."""
        if type(self).loss_and_grads is not NeuralNet.loss_and_grads:
            return ()
        return tuple(f"W{i}" for i in range(1, self.n_layers + 1))

    def l2_penalties(self) -> dict:
        """reg for every weight matrix: the Solver folds reg * sum W^2 into the update."""
        reg = float(self.reg)
        return {k: reg for k in self.params_ if k.startswith("W")} if reg else {}

    def lr_scales(self) -> dict:
        """bias_lr_scale for every bias (b{i}) and batch-norm beta: the Solver steps them at lr * scale."""
        scale = float(self.bias_lr_scale)
        if scale == 1.0:
            return {}
        return {k: scale for k in self.params_ if k.startswith("beta") or (k[:1] == "b" and k[1:].isdigit())}

    def _add_l2(self, grads) -> float:
        """Add reg * d(sum W^2) to every weight gradient in place; return the penalty reg * sum W^2."""
        reg = float(self.reg)
        if not reg:
            return 0.0
        from ..kernels.elementwise import add_l2

        return sum(add_l2(grads[f"W{i}"], self.params_[f"W{i}"], reg) for i in range(1, self.n_layers + 1))

    def _scores(self, Xp, state=None) -> np.ndarray:
        return self._forward(Xp, "test", None, state)[0]

    # -- public API ------------------------------------------------------------------------------
    def _resolve_augment(self, X):
        """The augmentation to train with: `augment="auto"` is flips for colour images (natural photos
        look alike mirrored), none for grey ones (a mirrored 3 is no 3) or feature rows."""
        from . import augment as augment_mod

        spec = self.augment
        if isinstance(spec, str) and spec == "auto":
            spec = self._auto_augment(X.shape[1:3]) if X.ndim == 4 and X.shape[-1] == 3 else None
        aug = augment_mod.parse(spec)
        if aug is not None and X.ndim != 4:
            raise UsageError(f"augment={self.augment!r} needs image data (N, H, W, C), got shape {X.shape}",
                             param="augment")
        return aug

    def _auto_augment(self, size) -> str:
        return "flip"

    def fit(self, X, y, X_val=None, y_val=None, *, callback=None, checkpoint_dir=None, keep_checkpoints=3,
            resume=None, log=None, stop_signal=False, checkpoint_extra=None):
        """Train through the Solver; afterwards the best-validation weights are in params_.

        X: (N, D) features or (N, H, W, C) images (uint8 or float); validation data optional (without it,
        accuracy on a fixed training sample chooses the best epoch). The keyword arguments pass through
        to the Solver: `callback(event, info)`, `checkpoint_dir`, `keep_checkpoints`, `resume` (a
        checkpoint path), `log` (a JSON-lines file), `stop_signal` (SIGINT handling), `checkpoint_extra`
        (JSON stored in every checkpoint). `result_` holds the Solver's result
        (`stopped`, history); `history_` the per-epoch records. A run that diverges before its first
        epoch ends raises `Diverged`; a later divergence keeps the best epoch and says so in `stopped_`.
        """
        from .solver import Solver

        self._check_params()
        X, y_enc, Xv, yv = self._fit_data(X, y, X_val, y_val, self._features)
        return self._fit_prepared(X, y_enc, Xv, yv, callback=callback, checkpoint_dir=checkpoint_dir,
                                  keep_checkpoints=keep_checkpoints, resume=resume, log=log,
                                  stop_signal=stop_signal, checkpoint_extra=checkpoint_extra, solver_cls=Solver)

    def _fit_prepared(self, X, y_enc, Xv, yv, *, solver_cls, resume=None, **solver_options):
        """The part of fit every net shares, once X and the labels are validated and encoded."""
        if self._train_precision("train") == "bf16":
            from .. import bf16

            bf16.require("precision")
        aug = self._resolve_augment(X)
        self.augment_ = aug.spec if aug is not None else None  # what augment (e.g. "auto") came to
        epochs, patience = self.epochs_for(len(X))
        rng = check_random_state(self.random_state)
        self.__dict__.pop("layout_", None)  # a fresh model takes the current layout
        self.input_mean_ = None
        self.initialize(int(np.prod(X.shape[1:])), len(self.classes_), rng)
        self._learn_input_stats(X)
        # Convert once (e.g. uint8 -> float32) so that batches are plain gathers.
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if Xv is not None:
            Xv = np.ascontiguousarray(Xv, dtype=self.dtype)
        self._weights = self._class_weights(y_enc)
        solver = solver_cls(
            self, X, y_enc, Xv, yv,
            optim=self.optim, lr=self.lr, optim_options=self.optim_options, lr_schedule=self.lr_schedule,
            epochs=epochs, batch_size=self.batch_size, augment=aug, patience=patience, rng=rng,
            train_acc_sample=self.train_acc_sample, class_weights=self._weights,
            ema=float(self.ema) if self.ema else None, lookahead=parse_lookahead(self.lookahead), **solver_options,
        )
        # On small data a step's products are too small to share between BLAS threads: waking OpenBLAS's
        # second thread cost 20-40 ms per product on the busy 2-core machine (80 x 64 @ 64 x 256, the
        # head of a default ConvNet on scikit-learn's toy problems), 1000x the product itself.
        threads = blas_threads(1) if X.size <= SMALL_DATA else contextlib.nullcontext()
        try:
            with threads:
                return self._run_solver(solver, resume)
        finally:
            self.__dict__.pop("_weights", None)

    def decision_function(self, X, batch: int = 2000) -> np.ndarray:
        """Class scores (N, C); with two classes scikit-learn's convention: one score per row, s_1 - s_0,
        positive for classes_[1]."""
        scores = self._class_scores(X, batch)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def _class_scores(self, X, batch: int = 2000) -> np.ndarray:
        """Class scores (N, C), in batches (the hidden activations of a whole test set can be large).

        Computed in float64 whatever the training dtype: a float32 GEMM rounds a row differently
        depending on where it falls in BLAS's blocks, so an image would score a few ulp differently
        in another batch or order (scikit-learn's sample-order check); in float64 the scores agree to
        1e-15. Training and its per-epoch accuracies stay in float32."""
        self._check_fitted()
        X = self._features(X)
        check_n_features(self, X)
        if len(X) == 0:
            return np.empty((0, len(self.classes_)), np.float64)
        state = ({k: v.astype(np.float64) for k, v in self.params_.items()},
                 {k: v.astype(np.float64) for k, v in self.buffers_.items()})
        return np.concatenate([self._scores(self.prepare(X[i:i + batch], np.float64), state)
                               for i in range(0, len(X), batch)])

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
        return rescale_u8(W.T).reshape((-1,) + shape), [f"unit {i}" for i in range(W.shape[1])]

    # -- model files -----------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        self._check_fitted()
        params = self._file_params()
        params["hidden"] = list(self.hidden_sizes())
        if isinstance(params.get("class_weight"), dict):
            params["class_weight"] = {str(k): float(v) for k, v in params["class_weight"].items()}
        params["layout_"] = getattr(self, "layout_", dense.BN_BEFORE_ACTIVATION)
        arrays = dict(self.params_)
        arrays.update(self.buffers_)
        arrays["classes"] = np.asarray(self.classes_)
        if self.input_mean_ is not None:
            arrays["input_mean"] = np.asarray(self.input_mean_)
            arrays["input_scale"] = np.asarray(self.input_scale_)
        return params, arrays

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]):
        params = dict(params)
        # Files written before the shared dense block record no layout: their batch norm followed the
        # activation (imgclf/nn/dense.py), and they did not standardise their input.
        layout = params.pop("layout_", cls._LEGACY_LAYOUT)
        if layout not in (dense.BN_BEFORE_ACTIVATION, dense.BN_AFTER_ACTIVATION):
            raise UsageError(f"{cls.kind} model file: unknown layer layout {layout!r}")
        params, learned = cls._split_file_params(params)
        if isinstance(params.get("hidden"), list):
            params["hidden"] = tuple(params["hidden"])
        model = cls(**params)
        model._check_params()
        if "classes" not in arrays or learned["n_features_in_"] is None:
            raise UsageError(f"{cls.kind} model file lacks its classes or input size")
        model.layout_ = layout
        model.initialize(int(learned["n_features_in_"]), len(arrays["classes"]), np.random.default_rng(0))
        for store in (model.params_, model.buffers_):
            for name, ref in store.items():
                arr = arrays.get(name)
                if arr is None or arr.shape != ref.shape:
                    got = "missing" if arr is None else f"shape {arr.shape}"
                    raise UsageError(f"{cls.kind} model file: {name} is {got}, expected shape {ref.shape}")
                store[name] = np.ascontiguousarray(arr, dtype=ref.dtype)
        model.check_buffers(model.buffers_, f"{cls.kind} model file")
        model._load_input_stats(arrays)
        model.classes_ = arrays["classes"]
        model._set_file_learned(learned)
        return model

    @staticmethod
    def check_buffers(buffers: dict, where: str) -> None:
        """Batch-norm statistics as training leaves them (a model file's, a checkpoint's): finite, and
        the variances >= 0 (sqrt(var + eps) at prediction). UsageError naming `where` and the buffer."""
        for name, buf in buffers.items():
            if not np.isfinite(buf).all():
                raise UsageError(f"{where}: {name} holds NaN or infinite values")
            if name.startswith("running_var") and np.any(buf < 0):
                raise UsageError(f"{where}: {name} holds negative variances")

    def _load_input_stats(self, arrays: dict) -> None:
        mean, scale = arrays.get("input_mean"), arrays.get("input_scale")
        if mean is None and scale is None:
            self.input_mean_ = self.input_scale_ = None
            return
        size = self._stats_size()
        if mean is None or scale is None or mean.shape != (size,) or scale.shape != (size,):
            raise UsageError(f"{self.kind} model file: input_mean/input_scale are missing or not of shape ({size},)")
        if np.any(scale <= 0):  # 1 / std, as fit learns it
            raise UsageError(f"{self.kind} model file: input_scale must be > 0 (1 / the input's standard deviation)")
        self.input_mean_ = np.asarray(mean, dtype=self.dtype)
        self.input_scale_ = np.asarray(scale, dtype=self.dtype)
