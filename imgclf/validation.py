"""Input validation and the estimator base shared by every public estimator and transformer.

One place decides what the public boundary accepts, so every class gives the same clear errors:
X is (N, D) features or (N, H, W, C) images of any real dtype (object arrays of numbers are
converted), finite, with enough samples and features; y is one hashable label per row (strings
included), encoded internally as 0..C-1 with `classes_` holding the original values in sorted order.

`Estimator` is the scikit-learn estimator idiom without importing scikit-learn: parameters are the
constructor's arguments, stored unchanged; `get_params`/`set_params`/`repr` read the signature.
`__sklearn_tags__` imports scikit-learn only when scikit-learn itself asks for the tags.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from .errors import DataError, UsageError

_FLOAT32_MAX = float(np.finfo(np.float32).max)


class NotFittedError(UsageError, AttributeError):
    """predict/transform/score before fit (an AttributeError too, as scikit-learn expects). What is
    raised is also scikit-learn's NotFittedError when scikit-learn is installed (see `sklearn_flavour`)."""


class DataConversionWarning(UserWarning):
    """The input had to be reshaped (a column vector y given where one label per row is expected);
    also scikit-learn's DataConversionWarning when scikit-learn is installed."""


_FLAVOURED: dict = {}


def sklearn_flavour(cls):
    """`cls`, or where scikit-learn is installed a subclass of both `cls` and scikit-learn's class of
    the same name in sklearn.exceptions, so that code written for scikit-learn catches imgclf's errors
    and warnings. The library never imports scikit-learn otherwise: it is looked for
    (importlib.util.find_spec) and imported only when such an error or warning is raised."""
    if cls not in _FLAVOURED:
        import importlib.util

        flavoured = cls
        if importlib.util.find_spec("sklearn") is not None:
            try:
                from sklearn import exceptions

                flavoured = type(cls.__name__, (cls, getattr(exceptions, cls.__name__)),
                                 {"__module__": cls.__module__, "__doc__": cls.__doc__})
            except (ImportError, AttributeError, TypeError):  # a broken or unusual installation
                pass
        _FLAVOURED[cls] = flavoured
    return _FLAVOURED[cls]


# -- X -------------------------------------------------------------------------------------------------
def check_array(X, name: str = "X", *, min_samples: int = 1) -> np.ndarray:
    """X as a real-valued (N, D) or (N, H, W, C) ndarray with no NaN or inf, its dtype kept.

    Object arrays are converted to float64 (a non-number inside raises numpy's TypeError).
    """
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise DataError(f"{name} is a sparse matrix; imgclf needs dense arrays (use {name}.toarray())")
    X = np.asarray(X)
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except ValueError as exc:  # strings; other non-numbers raise numpy's TypeError, as scikit-learn expects
            raise DataError(f"{name} must hold real numbers ({exc})") from None
    if X.dtype.kind == "c":
        raise DataError(f"Complex data not supported: {name} must hold real numbers, got dtype {X.dtype}")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim not in (2, 4):
        hint = "; Reshape your data: X.reshape(-1, 1) for one feature, X.reshape(1, -1) for one sample" \
            if X.ndim < 2 else ""
        raise DataError(f"{name} must be (N, D) features or (N, H, W, C) images, got shape {X.shape}{hint}")
    if X.shape[0] == 0 and min_samples > 0:
        raise DataError(f"{name} holds no samples (it is empty, shape={X.shape})")
    if X.shape[0] < min_samples:
        raise DataError(f"{name} has {X.shape[0]} sample(s) (shape={X.shape}) while a minimum of {min_samples} "
                        f"is required.")
    if n_features(X) < 1:
        raise DataError(f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if X.dtype.kind == "f":
        _check_finite(X, name)
    return X


def _check_finite(X: np.ndarray, name: str) -> None:
    # One float64 sum finds NaN/inf cheaply: it is finite unless an element is NaN/inf or the data holds
    # values beyond float32's range (N * 3.4e38 cannot overflow float64), which float32 work arrays
    # could not hold either.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(X, axis=None, dtype=np.float64)
    if np.isfinite(total) and (X.dtype.itemsize <= 4 or np.max(np.abs(X), initial=0.0) <= _FLOAT32_MAX):
        return
    bad = int(np.count_nonzero(~np.isfinite(X)))
    if bad:
        raise DataError(f"{name} contains {bad} NaN or infinite value{'s' if bad != 1 else ''}")
    raise DataError(f"{name} holds values beyond the float32 range (|x| > {_FLOAT32_MAX:.3g})")


def n_features(X: np.ndarray) -> int:
    """Features per row: D, or H*W*C for images."""
    return int(np.prod(X.shape[1:]))


def check_n_features(estimator, X: np.ndarray, name: str = "X") -> None:
    """X must have the number of features the estimator was fitted on."""
    d = n_features(X)
    if d != estimator.n_features_in_:
        raise DataError(f"{name} has {d} features, but {type(estimator).__name__} is expecting "
                        f"{estimator.n_features_in_} features as input")


def check_fitted(estimator, attribute: str) -> None:
    if not hasattr(estimator, attribute):
        raise sklearn_flavour(NotFittedError)(f"this {type(estimator).__name__} is not fitted yet; call fit first")


# -- y -------------------------------------------------------------------------------------------------
def check_labels(y, n_samples: int, name: str = "y") -> np.ndarray:
    """One class label per row: a 1-D array (a column vector is accepted with a warning)."""
    if y is None:
        raise DataError(f"a classifier requires {name} to be passed, but the target {name} is None")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; it was flattened",
                      sklearn_flavour(DataConversionWarning), stacklevel=3)
        y = y.ravel()
    if y.ndim != 1 or len(y) != n_samples:
        raise DataError(f"{name} must be a 1-d array of {n_samples} labels, one label per row of X, "
                        f"got shape {y.shape}")
    if y.dtype.kind == "c":
        raise DataError(f"Complex data not supported: {name} must hold class labels, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{name} contains NaN or infinite values")
        if np.any(y != np.round(y)):
            raise DataError(f"Unknown label type: continuous ({name} holds fractional numbers; a classifier "
                            f"needs class labels such as integers or strings)")
    return y


def encode_labels(y: np.ndarray, min_classes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(classes sorted, codes 0..C-1 int64) for labels of any one orderable kind (numbers or strings).

    Object arrays of strings become a str array, so that classes_ can be stored without pickle.
    """
    if y.dtype == object:
        values = y.tolist()
        if all(isinstance(v, str) for v in values):
            y = np.asarray(values, dtype=str)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            y = np.asarray(values, dtype=np.int64)
    try:
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError:
        raise DataError("y mixes labels of kinds that cannot be ordered (e.g. numbers and strings); "
                        "use one kind of label") from None
    if len(classes) < min_classes:
        raise DataError(f"need at least {min_classes} classes to fit, y has only {len(classes)} class")
    return classes, codes.reshape(-1).astype(np.int64)


def check_X_y(X, y, *, min_samples: int = 1, min_classes: int = 1):
    """(X as check_array gives it, classes, codes) for fitting a classifier."""
    X = check_array(X, min_samples=min_samples)
    y = check_labels(y, len(X))
    classes, codes = encode_labels(y, min_classes)
    return X, classes, codes


def class_weights(spec, classes: np.ndarray, codes: np.ndarray) -> np.ndarray | None:
    """(C,) weights of the classes for `class_weight` = None, "balanced" (n / (C * count), scikit-learn's
    rule) or a dict {label: weight} (labels not named weigh 1); None when every weight would be 1."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != "balanced":
            raise UsageError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, got {spec!r}",
                             param="class_weight")
        counts = np.bincount(codes, minlength=len(classes)).astype(np.float64)
        return len(codes) / (len(classes) * np.maximum(counts, 1))
    if not isinstance(spec, dict):
        raise UsageError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, got {spec!r}",
                         param="class_weight")
    w = np.ones(len(classes))
    known = {str(c): i for i, c in enumerate(classes.tolist())}
    for label, weight in spec.items():
        i = known.get(str(label))
        if i is None:
            raise UsageError(f"class_weight names the class {label!r}, which is not in the training labels "
                             f"({', '.join(map(str, classes.tolist()))})", param="class_weight")
        if not (isinstance(weight, (int, float, np.number)) and np.isfinite(weight) and weight >= 0):
            raise UsageError(f"class_weight for {label!r} must be a finite number >= 0, got {weight!r}",
                             param="class_weight")
        w[i] = float(weight)
    return w


def rescale_u8(T: np.ndarray) -> np.ndarray:
    """Each row of T stretched to 0..255 on its own and rounded to uint8 (weights shown as images)."""
    T = T.reshape(len(T), -1).astype(np.float64)
    lo = T.min(axis=1, keepdims=True)
    span = T.max(axis=1, keepdims=True) - lo
    return np.rint((T - lo) * (255.0 / np.where(span > 0, span, 1))).astype(np.uint8)


def check_random_state(seed) -> np.random.Generator:
    """None (fresh entropy), an int seed, or a numpy Generator (used as is) -> Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        return np.random.default_rng(seed)
    raise UsageError(f"random_state must be None, an int >= 0 or a numpy.random.Generator, got {seed!r}")


# -- the estimator idiom -------------------------------------------------------------------------------
class Estimator:
    """get_params/set_params/repr from the constructor's signature; scikit-learn's tags on request.

    Subclasses set `_estimator_type` ("classifier" or "transformer").
    """

    _estimator_type: str | None = None

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        names = self._param_names()
        for key, value in params.items():
            if key not in names:
                raise UsageError(f"{type(self).__name__} has no parameter {key!r}; its parameters are "
                                 f"{', '.join(names)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        # Like scikit-learn: only the parameters that differ from their defaults.
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        shown = [f"{k}={v!r}" for k, v in self.get_params().items() if repr(v) != repr(defaults.get(k))]
        return f"{type(self).__name__}({', '.join(shown)})"

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags, TransformerTags

        classifier = self._estimator_type == "classifier"
        return Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=classifier),
            classifier_tags=ClassifierTags() if classifier else None,
            # transforms compute in float32 and hand back float32, whatever came in
            transformer_tags=TransformerTags(preserves_dtype=["float32"]) if hasattr(self, "transform") else None,
            input_tags=InputTags(),
        )


class Classifier(Estimator):
    """Adds scikit-learn's classifier `score` (mean accuracy)."""

    _estimator_type = "classifier"

    def score(self, X, y) -> float:
        """Mean accuracy of predict(X) against y."""
        pred = self.predict(X)
        y = check_labels(y, len(pred))
        return float(np.mean(pred == y))


# `epochs="auto"`: a kind's measured number of epochs, but at least this many steps, so small data sets
# (a few hundred rows: one or two steps per epoch) train as far as large ones; the extra epochs stop
# once the score has not improved for a tenth of that many steps (at least 10 epochs).
AUTO_MIN_STEPS = 600


class TrainedClassifier(Classifier):
    """A Solver-trained classifier: the fit prologue, the Solver run and the model-file metadata every
    such kind shares. Subclasses set `_AUTO_EPOCHS` (what `epochs="auto"` means on large data)."""

    _FILE_LEARNED = ("n_features_in_", "stopped_", "best_epoch_")
    _AUTO_EPOCHS = 10

    # -- fit -------------------------------------------------------------------------------------------
    def _fit_data(self, X, y, X_val, y_val, features):
        """(X, codes, X_val, val codes) through `features(X, name, min_samples)`; learns classes_.
        Validation labels the training set lacks are coded -1 (never predicted, so counted wrong)."""
        X = features(X, "X", 1)
        self.classes_, codes = encode_labels(check_labels(y, len(X)), min_classes=2)
        Xv = yv = None
        if X_val is not None and y_val is not None and len(y_val):
            Xv = features(X_val, "X_val", 0)
            if n_features(Xv) != n_features(X):
                raise DataError(f"X_val has {n_features(Xv)} features, X has {n_features(X)}")
            yv = self._encode(check_labels(y_val, len(Xv), "y_val"))
        return X, codes, Xv, yv

    def _encode(self, y) -> np.ndarray:
        """Labels to indices into classes_; -1 for labels the model has never seen."""
        y = np.asarray(y)
        idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        return np.where(self.classes_[idx] == y, idx, -1).astype(np.int64)

    def _class_weights(self, codes: np.ndarray) -> np.ndarray | None:
        """Per-class loss weights from `class_weight` (None, "balanced" or {label: weight}), or None."""
        return class_weights(getattr(self, "class_weight", None), self.classes_, codes)

    def epochs_for(self, n_train: int) -> tuple[int, int | None]:
        """(epochs, patience) for the Solver: `epochs="auto"` is `_AUTO_EPOCHS`, stretched to at least
        AUTO_MIN_STEPS steps on small data with an early stop for the stretch (unless patience is set)."""
        patience = getattr(self, "patience", None)
        if not (isinstance(self.epochs, str) and self.epochs == "auto"):
            if not isinstance(self.epochs, (int, np.integer)) or isinstance(self.epochs, bool) or self.epochs < 1:
                raise UsageError(f"epochs must be an integer >= 1 or 'auto', got {self.epochs!r}", param="epochs")
            return int(self.epochs), patience
        steps = max(1, n_train // max(1, min(int(self.batch_size), n_train)))
        epochs = max(self._AUTO_EPOCHS, -(-AUTO_MIN_STEPS // steps))
        if epochs > self._AUTO_EPOCHS and patience is None:
            patience = max(10, -(-AUTO_MIN_STEPS // (10 * steps)))
        return epochs, patience

    def _run_solver(self, solver, resume=None):
        """Train; keep the Solver's result. A run that diverged before any epoch finished has no
        weights worth keeping: `Diverged`. Otherwise `stopped_` says why a run ended early."""
        if resume is not None:
            solver.load_checkpoint(resume)
        self.result_ = solver.train()
        self.history_ = self.result_.history
        self.stopped_ = self.result_.stopped
        self.best_epoch_ = self.result_.best_epoch
        if self.stopped_ and self.stopped_.startswith("diverged") and self.best_epoch_ is None:
            from .errors import Diverged

            raise Diverged(f"training {self.stopped_}")
        return self

    def predict_codes(self, X) -> np.ndarray:
        """Class indices 0..C-1 of a batch of data `fit` has validated (the Solver's accuracy)."""
        return np.argmax(self._scores(self.prepare_batch(X)), axis=1)

    def _file_params(self) -> dict:
        """JSON-able hyperparameters plus the learned scalars a model file keeps."""
        params = self.get_params()
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = None  # a Generator has no JSON form
        params["n_features_in_"] = int(self.n_features_in_)
        params["stopped_"] = getattr(self, "stopped_", None)
        params["best_epoch_"] = getattr(self, "best_epoch_", None)
        return params

    @classmethod
    def _split_file_params(cls, params: dict) -> tuple[dict, dict]:
        """(constructor arguments, learned scalars) from a model file's params; unknown names refused."""
        from .errors import ModelFileError

        params = dict(params)
        learned = {k: params.pop(k, None) for k in cls._FILE_LEARNED}
        unknown = set(params) - set(cls._param_names())
        if unknown:
            raise ModelFileError(f"{cls.kind} model file has unknown hyperparameters {', '.join(sorted(unknown))}")
        return params, learned

    def _set_file_learned(self, learned: dict) -> None:
        self.stopped_ = learned["stopped_"]
        self.best_epoch_ = learned["best_epoch_"]
        self.history_ = []
