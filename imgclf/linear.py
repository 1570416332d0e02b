"""Linear classifiers f(x) = x W + b trained by minibatch SGD: the multiclass SVM and softmax.

Objective, for a batch of N examples with D features and C classes:

    L(W, b) = (1/N) * sum_i L_i(x_i W + b, y_i)  +  reg * sum_{d<D, c<C} W[d, c]^2

with L_i the hinge or cross-entropy of `imgclf.losses`. Only the weights are penalised, never the bias.
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
from .errors import Diverged, ModelFileError, UsageError
from .losses import softmax, softmax_loss, svm_loss
from .validation import check_array, check_fitted, check_labels, check_n_features, check_random_state, encode_labels


class LinearClassifier(TrainedClassifier):
    """Shared machinery; subclasses set `kind`, `_data_loss` and their own defaults.

    The defaults (reg, lr, epochs) were measured on CIFAR-10 raw pixels with mean subtraction
    (49000/1000/10000): they reach test accuracy 0.39 (SVM) / 0.40 (softmax) in 10 epochs.
    """

    kind = "linear"

    def __init__(self, reg=1e3, lr=1e-7, epochs=10, iters=None, batch_size=200, lr_decay=0.95,
                 bias_trick=True, weight_scale=1e-4, optim="sgd", random_state=None):
        self.reg = reg
        self.lr = lr
        self.epochs = epochs
        self.iters = iters
        self.batch_size = batch_size
        self.lr_decay = lr_decay
        self.bias_trick = bias_trick
        self.weight_scale = weight_scale
        self.optim = optim
        self.random_state = random_state

    # -- validation ------------------------------------------------------------------------------
    def _check_params(self) -> None:
        for name in ("reg",):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.number)) and np.isfinite(v) and v >= 0):
                raise UsageError(f"{name} must be a number >= 0, got {v!r}")
        for name in ("lr", "weight_scale", "lr_decay"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.number)) and np.isfinite(v) and v > 0):
                raise UsageError(f"{name} must be a number > 0, got {v!r}")

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

    # -- the model -------------------------------------------------------------------------------
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
        return self

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        """(weights (D, C), bias (C,)) as views of the parameters."""
        W = self.params_["W"]
        if self.bias_trick:
            return W[:-1], W[-1]
        return W, self.params_["b"]

    def _scores(self, X: np.ndarray) -> np.ndarray:
        W, b = self._split()
        scores = X @ W
        scores += b
        return scores

    def loss(self, X: np.ndarray, y: np.ndarray, mode: str = "train", rng=None) -> tuple[float, dict]:
        """Objective and gradients for prepared features X (N, D) and encoded labels y (0..C-1)."""
        data_loss, dscores = self._data_loss(self._scores(X), y)
        grads, dW, db = self._new_grads()
        np.matmul(X.T, dscores, out=dW)
        db[...] = dscores.sum(axis=0)
        return data_loss + self._add_penalty(dW), grads

    def loss_rows(self, X: np.ndarray, idx: np.ndarray, y: np.ndarray, work: dict | None = None) -> tuple[float, dict]:
        """`loss(X[idx], y)` without materialising X[idx]: for float32 features and weights the fused
        kernel (imgclf/kernels/linear.py) reads the rows in place. `work` caches its buffers."""
        if X.dtype != np.float32 or self.params_["W"].dtype != np.float32 or X.ndim != 2:
            return self.loss(X[idx], y)
        import numba

        from .kernels import linear as kernel

        W, b = self._split()
        work = {} if work is None else work
        if "G" not in work:
            work["G"] = np.empty((numba.get_num_threads(),) + W.T.shape, np.float32)
        kind, delta = self._kernel_loss()
        grads, dW, db = self._new_grads()
        data_loss, penalty = kernel.loss_grad_rows(X, idx, y, W, b, kind, delta, self.reg, work["G"], dW, db)
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
        reg = self.reg
        if not reg:
            return 0.0
        W, _ = self._split()
        dW += (2 * reg) * W
        # In W's own dtype: a float32 x float64 np.dot leaves BLAS and was 1000x slower.
        w = W.ravel()
        return reg * float(np.dot(w, w))

    def prepare(self, X) -> np.ndarray:
        """Raw X to the features `loss` takes, in the dtype of the parameters."""
        X = self._as_features(X)
        return X.astype(self.params_["W"].dtype, copy=False)

    # -- public API ------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None, callback=None):
        """Train by minibatch SGD through `imgclf.nn.solver.Solver`; keep the best-validation weights.

        Without a validation set the best training-sample accuracy chooses the epoch. A non-finite loss
        stops training: `stopped_` says why and the best weights so far are kept (if it happens before
        the first epoch ends there are none, and `Diverged` is raised).
        """
        from .nn.solver import Solver

        self._check_params()
        X = self._as_features(X, min_samples=1)
        self.classes_, y_enc = encode_labels(check_labels(y, len(X)), min_classes=2)
        Xv = yv = None
        if X_val is not None and y_val is not None and len(y_val):
            Xv = self._as_features(X_val, "X_val")
            if Xv.shape[1] != X.shape[1]:
                raise UsageError(f"X_val has {Xv.shape[1]} features, X has {X.shape[1]}")
            yv = self._encode(y_val)
        rng = check_random_state(self.random_state)
        self.initialize(X.shape[1], len(self.classes_), rng)
        solver = Solver(
            _Trainee(self), X, y_enc.astype(np.int64), Xv, yv,
            optim=self.optim, lr=self.lr, lr_decay=self.lr_decay, epochs=self.epochs, iters=self.iters,
            batch_size=self.batch_size, rng=rng, callback=callback,
        )
        # Overflow is caught as a non-finite loss by the Solver; numpy's warnings would only add noise.
        # The steps run in numba's threads (the fused kernel); BLAS only scores the per-epoch accuracy
        # samples, on one thread, because OpenBLAS's workers spin for a while after each product and
        # held back the next epoch's kernel threads (measured: 0.19-0.22 s epochs instead of 0.13 s).
        with np.errstate(over="ignore", invalid="ignore"), blas_threads(1):
            result = solver.train()
        self.history_ = result.history
        self.stopped_ = result.stopped
        self.best_epoch_ = result.best_epoch
        if result.stopped and result.stopped.startswith("diverged") and result.best_epoch is None:
            raise Diverged(f"training {result.stopped}")
        return self

    def _encode(self, y) -> np.ndarray:
        """Labels to indices into classes_; -1 for labels the model has never seen."""
        y = np.asarray(y)
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        return np.where(self.classes_[idx] == y, idx, -1).astype(np.int64)

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
        T = W.T.astype(np.float64)
        lo = T.min(axis=1, keepdims=True)
        span = T.max(axis=1, keepdims=True) - lo
        T = (T - lo) * (255.0 / np.where(span > 0, span, 1))
        return np.rint(T).astype(np.uint8).reshape((-1,) + shape), list(self.classes_)

    # -- model files -----------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        self._check_fitted()
        params = self._file_params()
        arrays = dict(self.params_)
        arrays["classes"] = np.asarray(self.classes_)
        return params, arrays

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]):
        params, learned = cls._split_file_params(params)
        model = cls(**params)
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
        model.params_ = {"W": W} if model.bias_trick else {"W": W, "b": arrays["b"]}
        model.classes_ = arrays["classes"]
        model.n_features_in_ = d
        model._set_file_learned(learned)
        return model


class _Trainee:
    """The estimator as the Solver sees it: features already prepared once in `fit` (so no batch is
    converted twice), labels encoded as 0..C-1, predictions as indices.

    `loss_rows` is the Solver's shortcut past the batch gather: the fused kernel of
    imgclf/kernels/linear.py reads the batch's rows from the training set in place."""

    def __init__(self, model: LinearClassifier):
        self.model = model
        self.params_ = model.params_
        self._work = {}  # the fused kernel's per-thread gradient buffers, reused across steps

    def prepare(self, X):
        return X

    def loss(self, X, y, mode="train", rng=None):
        return self.model.loss(X, y, mode, rng)

    def loss_rows(self, X, idx, y):
        return self.model.loss_rows(X, idx, y, self._work)

    def predict(self, X):
        return np.argmax(self.model._scores(X), axis=1)


class LinearSVM(LinearClassifier):
    """Multiclass SVM (Weston-Watkins hinge with margin `delta`, optionally squared) + L2 on W."""

    kind = "svm"

    def __init__(self, reg=1e3, lr=1e-7, epochs=10, iters=None, batch_size=200, lr_decay=0.95,
                 delta=1.0, squared_hinge=False, bias_trick=True, weight_scale=1e-4, optim="sgd",
                 random_state=None):
        super().__init__(reg=reg, lr=lr, epochs=epochs, iters=iters, batch_size=batch_size, lr_decay=lr_decay,
                         bias_trick=bias_trick, weight_scale=weight_scale, optim=optim,
                         random_state=random_state)
        self.delta = delta
        self.squared_hinge = squared_hinge

    def _check_params(self) -> None:
        super()._check_params()
        if not (isinstance(self.delta, (int, float, np.number)) and np.isfinite(self.delta) and self.delta > 0):
            raise UsageError(f"delta must be a number > 0, got {self.delta!r}")

    def _data_loss(self, scores, y):
        return svm_loss(scores, y, delta=self.delta, squared=bool(self.squared_hinge))

    def _kernel_loss(self) -> tuple[int, float]:
        from .kernels.linear import HINGE, SQUARED_HINGE

        return (SQUARED_HINGE if self.squared_hinge else HINGE), float(self.delta)


class SoftmaxClassifier(LinearClassifier):
    """Softmax (multinomial logistic) regression: cross-entropy + L2 on W."""

    kind = "softmax"

    def __init__(self, reg=1e2, lr=3e-7, epochs=10, iters=None, batch_size=200, lr_decay=0.95, bias_trick=True,
                 weight_scale=1e-4, optim="sgd", random_state=None):
        super().__init__(reg=reg, lr=lr, epochs=epochs, iters=iters, batch_size=batch_size, lr_decay=lr_decay,
                         bias_trick=bias_trick, weight_scale=weight_scale, optim=optim, random_state=random_state)

    def _data_loss(self, scores, y):
        return softmax_loss(scores, y)

    def _kernel_loss(self) -> tuple[int, float]:
        from .kernels.linear import SOFTMAX

        return SOFTMAX, 0.0

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (N, C), columns in the order of `classes_`."""
        return softmax(self._scores(self._features(X)))
