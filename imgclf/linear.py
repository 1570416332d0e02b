"""Linear classifiers f(x) = x W + b: the multiclass SVM and softmax, trained by minibatch SGD or by
full-batch L-BFGS (`solver="lbfgs"`, imgclf/lbfgs.py).

Objective, for a batch of N examples with D features and C classes:

    L(W, b) = (1/N) * sum_i L_i(x_i W + b, y_i)  +  reg * sum_{d<D, c<C} W[d, c]^2

with L_i the hinge (Weston-Watkins or one-vs-rest) or cross-entropy of `imgclf.losses`. Only the weights are penalised, never the bias.
With the bias trick (`bias_trick=True`, the default) W has D+1 rows and its last row is b: the model is
exactly x' W for x' = [x, 1], and that last row is left out of the penalty. The ones column is never
materialised: scores are x W[:D] + W[D], so training reads the features in place.

The estimators follow scikit-learn's conventions: the constructor stores its arguments unchanged,
`fit` learns `params_`, `classes_`, `n_features_in_`, `history_`, `stopped_`, and returns self.
X is (N, D) or images (N, H, W, C) of any real dtype (flattened, computed in float32).
"""

from __future__ import annotations

import numpy as np

from .base import TrainedClassifier
from .blas import blas_threads
from .errors import ModelFileError, UsageError
from .losses import ovr_svm_loss, softmax, softmax_loss, svm_loss
from .mirror import append_mirrors, check_augment
from .validation import (check_array, check_fitted, check_flag, check_int, check_n_features, check_number,
                         check_random_state, rescale_u8)


def _is_auto(value) -> bool:
    return isinstance(value, str) and value == "auto"


class LinearClassifier(TrainedClassifier):
    """Shared machinery; subclasses set `kind`, `_data_loss`, `_AUTO_LR`, `_AUTO_REG`.

    `lr="auto"` and `reg="auto"` (the defaults) scale with the data: lr = _AUTO_LR / s and
    reg = _AUTO_REG * s, with s the mean squared norm of the training rows (the bias trick's 1
    included). Rescaling the features by a factor then rescales the learned W by its inverse and
    leaves the predictions as they were, so one default serves raw pixels, standardised or whitened
    features and small tabular data alike (`lr_`, `reg_` hold the values used). The constants were
    measured on CIFAR-10 raw pixels with mean subtraction (49000/1000/10000, s = 1.23e7: lr 9.8e-8 /
    2.9e-7, reg 980 / 98); docs/linear.md has the figures. `epochs="auto"` is 10 epochs, and at least
    600 steps on small data (imgclf.base.AUTO_MIN_STEPS).

    With solver="lbfgs", reg="auto" is _AUTO_REG_LBFGS * s instead (svm 7.8e-7: standardised
    1600-centroid k-means features, s ~ 6400, get reg 0.005, Coates, Lee and Ng's C = 100 as
    reg = 1 / (2C); softmax 7.8e-8, provisional). On those features (CIFAR-10) 0.005 beat 0.0005 and 0.05
    (docs/features.md).
    """

    kind = "linear"
    _AUTO_LR = 1.2
    _AUTO_REG = 8e-5
    # reg="auto" with solver="lbfgs": reg = _AUTO_REG_LBFGS * s. Coates, Lee and Ng's C = 100 on their
    # standardised 1600-centroid features (s ~ 6400) is reg = 1 / (2C) = 0.005 = 7.8e-7 * 6400.
    _AUTO_REG_LBFGS = 7.8e-7
    LBFGS_MAX_ITER = 1000  # iters=None with solver="lbfgs", as in the paper
    LBFGS_CHECK_EVERY = 10  # iterations between validation checks
    LBFGS_PATIENCE = 20  # checks without a better validation accuracy before stopping
    LBFGS_CORRECTIONS = 10  # L-BFGS memory (scipy's default; minFunc's is 100: 2 x 100 x D x C float64)

    def __init__(self, reg="auto", lr="auto", epochs="auto", iters=None, batch_size=200, lr_decay=0.95,
                 bias_trick=True, weight_scale=1e-4, solver="sgd", optim="sgd", class_weight=None,
                 augment=None, random_state=None):
        self.reg = reg
        self.lr = lr
        self.epochs = epochs
        self.iters = iters
        self.batch_size = batch_size
        self.lr_decay = lr_decay
        self.bias_trick = bias_trick
        self.weight_scale = weight_scale
        self.solver = solver
        self.optim = optim
        self.class_weight = class_weight
        self.augment = augment
        self.random_state = random_state

    # -- validation ------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if not _is_auto(self.reg):
            check_number(self.reg, "reg", "a number >= 0 or 'auto'", low=0)
        if not _is_auto(self.lr):
            check_number(self.lr, "lr", "a number > 0 or 'auto'", low=0, low_open=True)
        for name in ("weight_scale", "lr_decay"):
            check_number(getattr(self, name), name, "a number > 0", low=0, low_open=True)
        from .nn.optim import RULES

        if self.solver not in SOLVERS:
            raise UsageError(f"unknown solver {self.solver!r}; choose from {', '.join(SOLVERS)}", param="solver")
        check_int(self.iters, "iters", none=True)
        if self.optim not in RULES:
            raise UsageError(f"unknown optimiser {self.optim!r}; choose from {', '.join(RULES)}", param="optim")
        check_flag(self.bias_trick, "bias_trick")
        check_augment(self.augment)
        self._check_common_params()

    @staticmethod
    def _as_features(X, name: str = "X", min_samples: int = 0) -> np.ndarray:
        """(N, D) C-contiguous float32 view of X when possible, a converted copy otherwise."""
        X = check_array(X, name, min_samples=min_samples)
        return np.ascontiguousarray(X.reshape(len(X), -1), dtype=np.float32)

    def _check_fitted(self) -> None:
        check_fitted(self, "params_")

    def _features(self, X) -> np.ndarray:
        self._check_fitted()
        X = self._as_features(X)
        check_n_features(self, X)
        return X

    def _scale(self, X: np.ndarray) -> float:
        """Mean squared norm of the centred rows (bias feature included), on an evenly spaced sample of
        <= 2000 rows (training centres the features, see `fit`)."""
        sample = X[::max(1, len(X) // 2000)].astype(np.float64)
        sample -= sample.mean(axis=0)
        return float(np.einsum("ij,ij->", sample, sample) / len(sample)) + (1.0 if self.bias_trick else 0.0)

    def rates_for(self, X) -> tuple[float, float]:
        """(lr, reg) a fit on X trains with: the numbers given, or the "auto" values for X's scale."""
        if _is_auto(self.lr) or _is_auto(self.reg):
            scale = self._scale(np.asarray(X).reshape(len(X), -1))
        lr = self._AUTO_LR / scale if _is_auto(self.lr) else float(self.lr)
        auto_reg = self._AUTO_REG_LBFGS if self.solver == "lbfgs" else self._AUTO_REG
        return lr, auto_reg * scale if _is_auto(self.reg) else float(self.reg)

    # -- the model (the Solver protocol, imgclf/nn/solver.py) ------------------------------------
    def initialize(self, n_features: int, n_classes: int, rng: np.random.Generator, dtype=np.float32):
        """Fresh small random weights (zero bias) for n_features -> n_classes, without training."""
        self._check_params()
        d = n_features + 1 if self.bias_trick else n_features
        W = (self.weight_scale * rng.standard_normal((d, n_classes))).astype(dtype)
        if self.bias_trick:
            W[-1] = 0
            self.params_ = {"W": W}
        else:
            self.params_ = {"W": W, "b": np.zeros(n_classes, dtype)}
        self.n_features_in_ = n_features
        if not _is_auto(self.reg):
            self.reg_ = float(self.reg)
        elif not hasattr(self, "reg_"):
            self.reg_ = 0.0  # "auto" is resolved on the training data in fit

        return self

    def set_linear_weights(self, W: np.ndarray, b: np.ndarray) -> None:
        """Set the weights (D, C) and bias (C,) in the layout of params_."""
        weights, bias = self._split()
        weights[...] = W
        bias[...] = b

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        """(weights (D, C), bias (C,)) as views of the parameters."""
        W = self.params_["W"]
        if self.bias_trick:
            return W[:-1], W[-1]
        return W, self.params_["b"]

    def _scores(self, X: np.ndarray) -> np.ndarray:
        W, b = self._split()
        scores = X @ W
        scores += self._bias(W, b)
        return scores

    def _bias(self, W, b):
        """The bias the raw features take: in training, b - centre @ W (the model sees x - centre)."""
        centre = getattr(self, "_centre", None)
        return b if centre is None else b - centre @ W

    def _sample_weight(self, y):
        weights = getattr(self, "_weights", None)
        return None if weights is None else weights[y]

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray, mode: str = "train", rng=None,
                       l2: bool = True) -> tuple[float, dict]:
        """Objective and gradients for prepared features X (N, D) and encoded labels y (0..C-1); the
        penalty reg_ * sum W^2 is always included (the Solver folds no L2 term for linear models)."""
        data_loss, dscores = self._data_loss(self._scores(X), y, self._sample_weight(y))
        grads, dW, db = self._new_grads()
        np.matmul(X.T, dscores, out=dW)
        db[...] = dscores.sum(axis=0)
        self._centre_gradient(dW, db)
        return data_loss + self._add_penalty(dW), grads

    def _centre_gradient(self, dW, db) -> None:
        """(x - c)^T dS = x^T dS - c (sum dS): the weight gradient of centred features, in place."""
        centre = getattr(self, "_centre", None)
        if centre is not None:
            dW -= np.outer(centre, db).astype(dW.dtype, copy=False)

    def loss_rows(self, X: np.ndarray, idx: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
        """`loss_and_grads(X[idx], y)` without materialising X[idx]: for float32 features and weights
        the fused kernel (imgclf/kernels/linear.py) reads the rows in place. Class weights take the
        gather path (the kernel has no per-row weights)."""
        if X.dtype != np.float32 or self.params_["W"].dtype != np.float32 or X.ndim != 2 \
                or getattr(self, "_weights", None) is not None:
            return self.loss_and_grads(X[idx], y)
        import numba

        from .kernels import linear as kernel

        W, b = self._split()
        work = self.__dict__.setdefault("_work", {})  # the kernel's per-thread buffers, reused across steps
        if "G" not in work or work["G"].shape[1:] != W.T.shape:
            work["G"] = np.empty((numba.get_num_threads(),) + W.T.shape, np.float32)
        kind, delta = self._kernel_loss()
        grads, dW, db = self._new_grads()
        bias = np.ascontiguousarray(self._bias(W, b), dtype=np.float32)
        data_loss, penalty = kernel.loss_grad_rows(X, idx, y, W, bias, kind, delta, self.reg_, work["G"], dW, db)
        self._centre_gradient(dW, db)
        return data_loss + penalty, grads

    def _new_grads(self) -> tuple[dict, np.ndarray, np.ndarray]:
        """Gradient arrays shaped like params_, and views of their weight and bias parts."""
        grads = {"W": np.empty_like(self.params_["W"])}
        if self.bias_trick:
            return grads, grads["W"][:-1], grads["W"][-1]
        grads["b"] = np.empty_like(self.params_["b"])
        return grads, grads["W"], grads["b"]

    def _add_penalty(self, dW: np.ndarray) -> float:
        """Add the L2 gradient 2 reg W to dW; return the penalty reg sum W^2 (bias excluded)."""
        reg = self.reg_
        if not reg:
            return 0.0
        W, _ = self._split()
        dW += (2 * reg) * W
        # In W's own dtype: a float32 x float64 np.dot leaves BLAS and was 1000x slower.
        w = W.ravel()
        return reg * float(np.dot(w, w))

    def prepare_batch(self, X) -> np.ndarray:
        """A batch to the (N, D) features `loss_and_grads` takes, in the dtype of the parameters (a
        no-op on the float32 rows `fit` prepared)."""
        X = np.asarray(X)
        return X.reshape(len(X), -1).astype(self.params_["W"].dtype, copy=False)

    # -- public API ------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None, callback=None):
        """Train; keep the best-validation weights.

        solver="sgd": minibatch SGD through `imgclf.nn.solver.Solver`. Without a validation set the best
        training-sample accuracy chooses the epoch. A non-finite loss stops training: `stopped_` says why
        and the best weights so far are kept (if it happens before the first epoch ends there are none,
        and `Diverged` is raised).

        solver="lbfgs": full-batch L-BFGS from zero weights on the same objective (imgclf/lbfgs.py), at
        most `iters` iterations (None: LBFGS_MAX_ITER = 1000); `lr`, `epochs`, `batch_size`,
        `lr_decay`, `weight_scale`, `optim` and `random_state` play no part. With validation data the
        validation accuracy is scored every LBFGS_CHECK_EVERY iterations, the best check's weights are
        kept and LBFGS_PATIENCE checks without improvement stop the run; without, the last iterate is
        kept. L-BFGS keeps LBFGS_CORRECTIONS (10) update pairs. `history_` has one record per check
        ("epoch" is the check's number, "iteration" the L-BFGS iteration, "loss" the objective, "lr"
        None); `best_epoch_` the kept check.

        augment="flip" (X must be images (N, H, W, C)): train on X followed by its horizontal mirror images
        (imgclf.mirror.append_mirrors), 2N rows; the validation data is left as it is.
        """
        self._check_params()
        if self.augment == "flip":
            # The mirrors are training rows like any other (validation data is never augmented).
            X, y, _ = append_mirrors(X, y, param="augment")
        self.augment_ = self.augment
        X, y_enc, Xv, yv = self._fit_data(X, y, X_val, y_val, self._as_features)
        self.lr_, self.reg_ = self.rates_for(X)
        # Training sees the features centred (SGD on raw pixels, all positive, zig-zags along the mean
        # direction), without a centred copy: the bias absorbs -centre @ W in the scores and the weight
        # gradient takes a rank-one correction; at the end the bias is folded, so the model is x W + b
        # on the raw features like any other.
        self._centre = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        rng = check_random_state(self.random_state)
        self.initialize(X.shape[1], len(self.classes_), rng)
        self._weights = self._class_weights(y_enc)
        try:
            if self.solver == "lbfgs":
                return self._fit_lbfgs(X, y_enc, Xv, yv, callback)
            return self._fit_sgd(X, y_enc, Xv, yv, rng, callback)
        finally:
            for scratch in ("_work", "_weights", "_centre"):
                self.__dict__.pop(scratch, None)

    def _fit_sgd(self, X, y_enc, Xv, yv, rng, callback):
        """The sgd branch of `fit`, after the shared prologue (centre, initial params_, class weights)."""
        from .nn.solver import Solver

        epochs, patience = self.epochs_for(len(X))
        solver = Solver(
            self, X, y_enc, Xv, yv,
            optim=self.optim, lr=self.lr_, lr_decay=self.lr_decay, epochs=epochs, iters=self.iters,
            batch_size=self.batch_size, patience=patience, rng=rng, callback=callback, class_weights=self._weights,
        )
        # Overflow is caught as a non-finite loss by the Solver; numpy's warnings would only add noise.
        # The steps run in numba's threads (the fused kernel); BLAS only scores the per-epoch accuracy
        # samples, on one thread, because OpenBLAS's workers spin for a while after each product and
        # held back the next epoch's kernel threads (measured: 0.19-0.22 s epochs instead of 0.13 s).
        with np.errstate(over="ignore", invalid="ignore"), blas_threads(1):
            self._run_solver(solver)
        W, b = self._split()
        b[...] = self._bias(W, b)
        return self

    def _fit_lbfgs(self, X, y_enc, Xv, yv, callback):
        """The lbfgs branch of `fit`, after the shared prologue (centre, initial params_, class weights)."""
        from . import lbfgs

        weights = self._weights
        objective = lbfgs.LinearObjective(
            X, y_enc, len(self.classes_), self._data_loss, self.reg_,
            sample_weight=None if weights is None else weights[y_enc].astype(np.float32), centre=self._centre)
        self.result_ = lbfgs.train(
            self, objective, X, y_enc, Xv, yv, max_iter=self.iters or self.LBFGS_MAX_ITER,
            check_every=self.LBFGS_CHECK_EVERY, patience=self.LBFGS_PATIENCE,
            corrections=self.LBFGS_CORRECTIONS, class_weights=weights,
            callback=callback)
        self.history_, self.stopped_ = self.result_.history, self.result_.stopped
        self.best_epoch_ = self.result_.best_epoch
        if self.best_epoch_ is None:
            from .errors import Diverged

            raise Diverged(f"training {self.stopped_}")
        W, b = self._split()
        b[...] = self._bias(W, b)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Class scores (N, C), columns in the order of `classes_`; with two classes scikit-learn's
        convention: one score per row, s_1 - s_0, positive for classes_[1]."""
        scores = self._scores(self._features(X))
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X) -> np.ndarray:
        scores = self._scores(self._features(X))
        return self.classes_[np.argmax(scores, axis=1)]

    def weight_images(self, input_shape) -> tuple[np.ndarray, list]:
        """The class templates: column c of W as an image of `input_shape`, each rescaled to 0..255.

        Returns (images uint8 (C, *input_shape), labels = classes_).
        """
        self._check_fitted()
        shape = tuple(int(v) for v in input_shape)
        if int(np.prod(shape)) != self.n_features_in_:
            raise UsageError(f"the weights have {self.n_features_in_} inputs, which cannot be shown as "
                             f"{'x'.join(map(str, shape))} images (was the chain a projection such as PCA?)")
        W, _ = self._split()
        return rescale_u8(W.T).reshape((-1,) + shape), list(self.classes_)

    # -- model files -----------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        self._check_fitted()
        params = self._file_params()
        if isinstance(params.get("class_weight"), dict):  # JSON keys are strings; labels are matched as strings
            params["class_weight"] = {str(k): float(v) for k, v in params["class_weight"].items()}
        arrays = dict(self.params_)
        arrays["classes"] = np.asarray(self.classes_)
        return params, arrays

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]):
        params, learned = cls._split_file_params(params)
        model = cls(**params)
        model._check_params()  # a hand-edited file's hyperparameters are refused as the nets' are
        needed = ["W", "classes"] + ([] if model.bias_trick else ["b"])
        missing = [k for k in needed if k not in arrays]
        if missing:
            raise ModelFileError(f"{cls.kind} model file lacks the arrays {', '.join(missing)}")
        W = arrays["W"]
        d = learned["n_features_in_"]
        rows = d + 1 if model.bias_trick else d
        if W.ndim != 2 or W.shape[0] != rows or W.shape[1] != len(arrays["classes"]):
            raise ModelFileError(f"{cls.kind} model file: W has shape {W.shape}, expected ({rows}, "
                             f"{len(arrays['classes'])})")
        if not model.bias_trick and arrays["b"].shape != (W.shape[1],):
            raise ModelFileError(f"{cls.kind} model file: b has shape {arrays['b'].shape}, expected ({W.shape[1]},)")
        model.params_ = {"W": W} if model.bias_trick else {"W": W, "b": arrays["b"]}
        model.classes_ = arrays["classes"]
        model.n_features_in_ = d
        model._set_file_learned(learned)
        return model


SOLVERS = ("sgd", "lbfgs")
MULTICLASS = ("weston-watkins", "ovr")


class LinearSVM(LinearClassifier):
    """Multiclass SVM with margin `delta`, optionally squared, + L2 on W.

    multiclass="weston-watkins" (default): L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta).
    multiclass="ovr": one binary SVM per class against the rest, L_i = sum_j max(0, delta - t_ij s_j)
    with t_ij = +1 for the true class and -1 otherwise. With squared_hinge=True and solver="lbfgs" that
    is the L2-SVM of Coates, Lee and Ng (2011), whose 0.5 |W|^2 + C sum_i L_i / N is this objective
    times 2C with reg = 1 / (2C) (their C = 100: reg = 0.005).
    """

    kind = "svm"

    def __init__(self, reg="auto", lr="auto", epochs="auto", iters=None, batch_size=200, lr_decay=0.95,
                 delta=1.0, squared_hinge=False, multiclass="weston-watkins", bias_trick=True, weight_scale=1e-4,
                 solver="sgd", optim="sgd", class_weight=None, augment=None, random_state=None):
        super().__init__(reg=reg, lr=lr, epochs=epochs, iters=iters, batch_size=batch_size, lr_decay=lr_decay,
                         bias_trick=bias_trick, weight_scale=weight_scale, solver=solver, optim=optim,
                         class_weight=class_weight, augment=augment, random_state=random_state)
        self.delta = delta
        self.squared_hinge = squared_hinge
        self.multiclass = multiclass

    def _check_params(self) -> None:
        super()._check_params()
        check_number(self.delta, "delta", "a number > 0", low=0, low_open=True)
        check_flag(self.squared_hinge, "squared_hinge")
        if self.multiclass not in MULTICLASS:
            raise UsageError(f"unknown multiclass loss {self.multiclass!r}; choose from {', '.join(MULTICLASS)}",
                             param="multiclass")

    def _data_loss(self, scores, y, sample_weight=None):
        loss = ovr_svm_loss if self.multiclass == "ovr" else svm_loss
        return loss(scores, y, delta=self.delta, squared=bool(self.squared_hinge), sample_weight=sample_weight)

    def _kernel_loss(self) -> tuple[int, float]:
        from .kernels import linear as kernel

        if self.multiclass == "ovr":
            return (kernel.OVR_SQUARED_HINGE if self.squared_hinge else kernel.OVR_HINGE), float(self.delta)
        return (kernel.SQUARED_HINGE if self.squared_hinge else kernel.HINGE), float(self.delta)


class SoftmaxClassifier(LinearClassifier):
    """Softmax (multinomial logistic) regression: cross-entropy + L2 on W."""

    kind = "softmax"

    _AUTO_LR = 3.6
    _AUTO_REG = 8e-6
    _AUTO_REG_LBFGS = 7.8e-8  # provisional: the SVM's, scaled as the SGD constants are (8e-6 / 8e-5)

    def __init__(self, reg="auto", lr="auto", epochs="auto", iters=None, batch_size=200, lr_decay=0.95,
                 bias_trick=True, weight_scale=1e-4, solver="sgd", optim="sgd", class_weight=None,
                 augment=None, random_state=None):
        super().__init__(reg=reg, lr=lr, epochs=epochs, iters=iters, batch_size=batch_size, lr_decay=lr_decay,
                         bias_trick=bias_trick, weight_scale=weight_scale, solver=solver, optim=optim,
                         class_weight=class_weight, augment=augment, random_state=random_state)

    def _data_loss(self, scores, y, sample_weight=None):
        return softmax_loss(scores, y, sample_weight=sample_weight)

    def _kernel_loss(self) -> tuple[int, float]:
        from .kernels.linear import SOFTMAX

        return SOFTMAX, 0.0

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (N, C), columns in the order of `classes_`."""
        return softmax(self._scores(self._features(X)))
