"""Input validation shared by every public estimator and transformer (their bases are in base.py).

One place decides what the public boundary accepts, so every class gives the same clear errors:
X is (N, D) features or (N, H, W, C) images of any real dtype (object arrays of numbers are
converted), finite, with enough samples and features; y is one hashable label per row (strings
included), encoded internally as 0..C-1 with `classes_` holding the original values in sorted order.
"""

from __future__ import annotations

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


def check_class_weight(spec) -> None:
    """`class_weight` is None, "balanced" or a dict {label: finite number >= 0} (a bool is no weight);
    the labels are matched against the training labels by `class_weights` at fit."""
    if spec is None or (isinstance(spec, str) and spec == "balanced"):
        return
    if not isinstance(spec, dict):
        raise UsageError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, got {spec!r}",
                         param="class_weight")
    for label, weight in spec.items():
        if not (is_real(weight) and _finite(weight) and weight >= 0):
            raise UsageError(f"class_weight for {label!r} must be a finite number >= 0, got {weight!r}",
                             param="class_weight")


def class_weights(spec, classes: np.ndarray, codes: np.ndarray) -> np.ndarray | None:
    """(C,) weights of the classes for `class_weight` = None, "balanced" (n / (C * count), scikit-learn's
    rule) or a dict {label: weight} (labels not named weigh 1); None when every weight would be 1."""
    check_class_weight(spec)
    if spec is None:
        return None
    if isinstance(spec, str):
        counts = np.bincount(codes, minlength=len(classes)).astype(np.float64)
        return len(codes) / (len(classes) * np.maximum(counts, 1))
    w = np.ones(len(classes))
    known = {str(c): i for i, c in enumerate(classes.tolist())}
    for label, weight in spec.items():
        i = known.get(str(label))
        if i is None:
            raise UsageError(f"class_weight names the class {label!r}, which is not in the training labels "
                             f"({', '.join(map(str, classes.tolist()))})", param="class_weight")
        w[i] = float(weight)
    if not np.any(w > 0):
        raise UsageError("class_weight gives every class a weight of 0: nothing would be learned",
                         param="class_weight")
    return w


# -- hyperparameters -----------------------------------------------------------------------------------
# The checks every estimator's parameters go through, at fit and when a model file is loaded: numbers
# are real numbers, never bools (True is no regularisation strength), integers are whole numbers of
# an integer type (a float 8.0 or a string "8" is refused, as `fit` refuses it).
def is_real(value) -> bool:
    """A Python or numpy real number that is not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_integer(value) -> bool:
    """A Python or numpy integer that is not a bool (8.0, "8" and True are not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _finite(value) -> bool:
    # Python ints are exact (and may exceed a float); the rest must be finite.
    return isinstance(value, (int, np.integer)) or bool(np.isfinite(value))


def check_number(value, name: str, what: str, *, low=None, high=None, low_open: bool = False,
                 high_open: bool = False) -> float:
    """`value` as a float: a finite real number (not a bool) within low..high (each bound included
    unless `low_open`/`high_open`); else UsageError "{name} must be {what}, got {value!r}" naming `name`."""
    ok = is_real(value) and _finite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise UsageError(f"{name} must be {what}, got {value!r}", param=name)
    return float(value)


def check_int(value, name: str, low: int = 1, *, none: bool = False, what: str | None = None) -> int | None:
    """`value` as an int: a whole number of an integer type (not a bool, a float or a string) >= low;
    None too when `none`. Else UsageError naming `name`."""
    if value is None and none:
        return None
    if not (is_integer(value) and value >= low):
        what = what or f"an integer >= {low}" + (" or None" if none else "")
        raise UsageError(f"{name} must be {what}, got {value!r}", param=name)
    return int(value)


def check_flag(value, name: str) -> bool:
    """`value` as a bool: True or False only (a string "no" would be true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise UsageError(f"{name} must be True or False, got {value!r}", param=name)
    return bool(value)


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
