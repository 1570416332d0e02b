"""Preprocessing transforms, fitted on training data and carried to prediction in a chain.

A Transform is fitted on the training split only (`fit(X) -> self`) and then applied to any data
(`transform(X)`). Its learned state is a few arrays plus JSON parameters (`to_arrays` / `from_arrays`),
so a chain can be written into a pipeline stream or a model file and rebuilt without pickle (the
chain, its registry of kinds and its encoding live in preprocessing_chain.py).

`transform` reads only the stored arrays (and what `_derive` computes from them), never a float64
intermediate kept from `fit`: a chain rebuilt from a file gives bit-identical output to the chain
that was fitted in memory, so a pipe, an inline `--preprocess` and a model file agree exactly.
"""

from __future__ import annotations

import numpy as np

from .base import Estimator
from .eigen import _block_rows, _ratios, principal_components
from .errors import DataError, UsageError
from .validation import check_array, check_fitted, check_number, is_integer, n_features


def check_data(X, what: str = "X", min_samples: int = 1) -> np.ndarray:
    """A real-valued (N, D) or (N, H, W, C) array with at least `min_samples` rows and no NaN or inf."""
    return check_array(X, what, min_samples=min_samples)


def _check_int(name: str, value, low: int, high: int | None = None, high_what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        limit = f" and at most {high}{high_what}" if high is not None else ""
        raise UsageError(f"{name} must be at least {low}{limit}, got {value}")
    return int(value)


def _check_eps(value) -> float:
    return check_number(value, "eps", "a finite number >= 0", low=0)


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not 0 < float(value) <= 1:
        raise UsageError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


class Transform(Estimator):
    """Base class. Subclasses set `kind`, implement `_fit`, `_transform`, and list their learned arrays.

    Estimator idiom (scikit-learn's, without importing it; parameters and repr from
    `imgclf.base.Estimator`): `__init__` stores parameters unchanged, `fit` validates them and
    returns self, learned attributes end in `_`.
    """

    kind = "transform"
    _estimator_type = "transformer"
    _array_names: tuple[str, ...] = ()

    # -- fitting and applying ----------------------------------------------------------------------
    @property
    def n_features_in_(self) -> int:
        if not hasattr(self, "input_shape_"):
            raise AttributeError(f"{type(self).__name__} is not fitted")
        return int(np.prod(self.input_shape_))

    def keeps_shape(self) -> bool:
        """Whether the output has the input's shape (images stay images), known from the parameters
        alone, before fitting: true for elementwise steps, false for the feature steps that define
        `n_features_out_` (hog, colorhist, kmeans), for projections (PCA, whitening but ZCA) and unions."""
        return not isinstance(getattr(type(self), "n_features_out_", None), property)

    def output_shape(self) -> tuple[int, ...]:
        """The shape of one sample of the fitted transform's output: the input's for elementwise steps,
        (n_features_out_,) for the feature steps that define it (hog, colorhist, kmeans)."""
        self._check_fitted()
        if not self.keeps_shape():
            return (int(self.n_features_out_),)
        return tuple(self.input_shape_)

    def fit(self, X, y=None):
        """Learn the transform's statistics from X (the training split only)."""
        X = check_data(X)
        self._validate_params(X)
        self.input_shape_ = tuple(int(v) for v in X.shape[1:])
        self._fit(X)
        self._derive()
        return self

    def transform(self, X) -> np.ndarray:
        """Apply the fitted transform; float32 output."""
        X = self._check_input(X)
        return self._transform(X)

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).transform(X)

    def _check_fitted(self) -> None:
        check_fitted(self, "input_shape_")

    def _check_input(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_data(X, min_samples=0)
        if tuple(X.shape[1:]) != tuple(self.input_shape_):
            # scikit-learn's wording when the feature count differs, then the shapes, which say more
            count = "" if n_features(X) == self.n_features_in_ else (
                f"X has {n_features(X)} features, but {type(self).__name__} is expecting {self.n_features_in_} "
                f"features as input: ")
            raise DataError(
                f"{count}{self.kind} transform was fitted on samples of shape {tuple(self.input_shape_)}, "
                f"got data of shape {tuple(X.shape[1:])}"
            )
        return X

    def _validate_params(self, X: np.ndarray) -> None:
        """Raise UsageError for parameters that do not fit this data (at fit): by default the
        hyperparameters' checks for its samples' shape, `_check_params`."""
        self._check_params(tuple(X.shape[1:]))

    def _check_params(self, input_shape: tuple[int, ...]) -> None:
        """Raise UsageError for hyperparameters that do not fit samples of `input_shape` (H, W, C) or (D,):
        at fit, and when a stored transform is loaded (`from_arrays`), so a hand-edited file is refused as
        a fit would refuse it instead of failing, or giving NaN or wrong features, inside transform."""

    def _fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _transform(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _derive(self) -> None:
        """Compute working arrays from the stored ones (after fit and after loading alike)."""

    def _transform_inplace(self, X: np.ndarray) -> np.ndarray | None:
        """The transform of checked input X written over X itself, or None when this step cannot.

        Only the chain calls it, on arrays an earlier step of the chain produced (never the caller's
        data): it spares one copy of the largest arrays (k-means features). Default: cannot.
        """
        return None

    # -- state -------------------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        self._check_fitted()
        params = self.get_params()
        params["input_shape_"] = list(self.input_shape_)
        return params, {name: getattr(self, name) for name in self._array_names}

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]):
        params = dict(params)
        try:
            input_shape = _stored_shape(params.pop("input_shape_"))
            obj = cls(**params)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"stored {cls.kind} transform has malformed parameters ({exc})") from None
        obj.input_shape_ = input_shape
        try:
            obj._check_params(input_shape)
        except UsageError as exc:
            raise DataError(f"stored {cls.kind} transform has a bad hyperparameter: {exc}") from None
        for name in cls._array_names:
            if name not in arrays:
                raise DataError(f"{cls.kind} transform is missing its array {name!r}")
            setattr(obj, name, np.asarray(arrays[name]))
        obj._check_state()
        obj._derive()
        return obj

    def _check_state(self) -> None:
        """Raise DataError when loaded arrays do not fit together."""

    def describe(self) -> dict:
        return {"kind": self.kind, **self.get_params()}


def _stored_shape(value) -> tuple[int, ...]:
    """A stored transform's `input_shape_`: a list of whole sizes >= 1 (as `fit` records it)."""
    if not isinstance(value, (list, tuple)) or not value or not all(
            is_integer(v) and v >= 1 for v in value):
        raise ValueError(f"input_shape_ must be a non-empty list of sizes >= 1, got {value!r}")
    return tuple(int(v) for v in value)


def _flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), int(np.prod(X.shape[1:])))


# -- mean subtraction and normalisation ----------------------------------------------------------------
class _Elementwise(Transform):
    """Shared by mean subtraction and normalisation: one statistic per feature or per channel."""

    _stat_name = ""

    def _check_params(self, input_shape):
        if not isinstance(self.per_channel, (bool, np.bool_)):
            raise UsageError(f"per_channel must be True or False, got {self.per_channel!r}")
        if self.per_channel and len(input_shape) != 3:
            raise UsageError(f"per_channel needs images (N, H, W, C), got samples of shape {tuple(input_shape)}")

    def _axes(self) -> tuple[int, ...]:
        return (0, 1, 2) if self.per_channel else (0,)

    def _stat_shape(self) -> tuple[int, ...]:
        return (self.input_shape_[-1],) if self.per_channel else tuple(self.input_shape_)

    def _check_state(self):
        stat = getattr(self, self._stat_name)
        if stat.shape != self._stat_shape():
            raise DataError(f"stored {self.kind} transform: {self._stat_name} has shape {stat.shape}, "
                            f"expected {self._stat_shape()}")


class MeanSubtraction(_Elementwise):
    """Subtract the training mean: per feature (pixel and channel), or one mean per colour channel."""

    kind = "mean"
    _array_names = ("mean_",)
    _stat_name = "mean_"

    def __init__(self, per_channel=False):
        self.per_channel = per_channel

    def _fit(self, X):
        mean = X.mean(axis=self._axes(), dtype=np.float64)
        if X.dtype == np.uint8:
            # On a 2^-16 grid (at most 7.6e-6 from the exact mean): pixel - mean then needs at most 24
            # bits, so the float32 output is exact and a PCA after it still finds the integers (the
            # exact 8-bit covariance, imgclf.kernels.gram_u8); inverse_transform gives the pixels back.
            mean = np.round(mean * 65536) / 65536
        self.mean_ = mean

    def _derive(self):
        self._mean32 = self.mean_.astype(np.float32)

    def _transform(self, X):
        return np.subtract(X, self._mean32, dtype=np.float32)

    def inverse_transform(self, X):
        X = self._check_input(X)
        return np.add(X, self._mean32, dtype=np.float32)


class Normalization(_Elementwise):
    """Divide by the training standard deviation (per feature or per channel); constant features keep scale 1.

    It does not centre: put `mean` before it for zero-mean, unit-variance features.
    """

    kind = "normalize"
    _array_names = ("scale_",)
    _stat_name = "scale_"

    def __init__(self, per_channel=False):
        self.per_channel = per_channel

    def _fit(self, X):
        axes = self._axes()
        mean = X.mean(axis=axes, dtype=np.float64)
        # two-pass variance, block by block so no float64 copy of the whole training set is made
        sq = np.zeros_like(mean)
        step = _block_rows(int(np.prod(X.shape[1:])))
        for start in range(0, len(X), step):
            sq += np.square(np.subtract(X[start:start + step], mean, dtype=np.float64)).sum(axis=axes)
        std = np.sqrt(sq / (X.size / mean.size))
        self.std_ = std
        # A constant feature's float64 std is 0 or rounding noise far below its mean: dividing by it
        # would blow up every other split, so it is left unscaled.
        constant = std <= 1e-10 * np.maximum(np.abs(mean), np.finfo(np.float64).tiny)
        self.scale_ = np.where(constant, 1.0, std)

    def _derive(self):
        self._scale32 = self.scale_.astype(np.float32)

    def _check_state(self):
        super()._check_state()
        if not (np.all(np.isfinite(self.scale_)) and np.all(self.scale_ > 0)):
            raise DataError("stored normalize transform has a non-positive or non-finite scale")

    def _transform(self, X):
        return np.divide(X, self._scale32, dtype=np.float32)

    def inverse_transform(self, X):
        X = self._check_input(X)
        return np.multiply(X, self._scale32, dtype=np.float32)


class Standardization(Transform):
    """Zero mean and unit variance per feature in one pass: (x - mean) / sqrt(var + eps).

    What linear models need after feature extractors (hog, colorhist, kmeans), whose features have
    very different scales; one output array instead of the two of `mean,normalize`, which matters
    for the 16000 k-means features. eps (Coates et al. use 0.01 on k-means features) damps features
    of tiny variance; features constant on the training split keep scale 1 as in `normalize`.
    """

    kind = "standardize"
    _array_names = ("mean_", "scale_")

    def __init__(self, eps=0.0):
        self.eps = eps

    def _check_params(self, input_shape):
        _check_eps(self.eps)

    def _fit(self, X):
        X2 = _flat(X)
        mean = X2.mean(axis=0, dtype=np.float64)
        sq = np.zeros_like(mean)
        # one float64 work block of ~16 MB, squared in place (two 128 MB temporaries before: on small
        # runs they, not the features, set the peak memory)
        step = max(1, _block_rows(X2.shape[1]) // 8)
        for start in range(0, len(X2), step):
            diff = np.subtract(X2[start:start + step], mean, dtype=np.float64)
            sq += np.square(diff, out=diff).sum(axis=0)
        var = sq / len(X2)
        constant = var <= (1e-10 * np.maximum(np.abs(mean), np.finfo(np.float64).tiny)) ** 2
        self.mean_ = mean
        self.scale_ = np.where(constant & (self.eps == 0), 1.0, np.sqrt(var + float(self.eps)))

    def _check_state(self):
        d = int(np.prod(self.input_shape_))
        if self.mean_.shape != (d,) or self.scale_.shape != (d,):
            raise DataError("stored standardize transform has inconsistent array shapes")
        if not (np.all(np.isfinite(self.scale_)) and np.all(self.scale_ > 0)):
            raise DataError("stored standardize transform has a non-positive or non-finite scale")

    def _derive(self):
        self._mean32 = self.mean_.astype(np.float32)
        self._inv32 = (1.0 / self.scale_).astype(np.float32)

    def _transform(self, X):
        return self._standardize_into(X, np.empty(X.shape, dtype=np.float32))

    def _transform_inplace(self, X):
        if X.dtype != np.float32 or not X.flags.c_contiguous or not X.flags.writeable:
            return None
        return self._standardize_into(X, X)

    def _standardize_into(self, X, out):
        """out = (X - mean) / scale in float32, block by block (out may be X itself)."""
        X2, out2 = _flat(X), out.reshape(len(out), -1)
        step = _block_rows(X2.shape[1])
        for start in range(0, len(X2), step):
            block = out2[start:start + step]
            np.subtract(X2[start:start + step], self._mean32, out=block, dtype=np.float32)
            block *= self._inv32
        return out

    def inverse_transform(self, X):
        X = self._check_input(X)
        return np.add(np.multiply(X, self.scale_.astype(np.float32).reshape(X.shape[1:]), dtype=np.float32),
                      self._mean32.reshape(X.shape[1:]), dtype=np.float32)


# -- PCA and whitening ---------------------------------------------------------------------------------
class _Projection(Transform):
    """Shared by PCA and whitening: a centred projection onto the leading principal components."""

    _array_names = ("mean_", "components_", "explained_variance_", "explained_variance_ratio_")

    def _check_params(self, input_shape):
        n_features = int(np.prod(input_shape))
        if self.dims is not None and self.variance is not None:
            raise UsageError("give dims or variance, not both")
        if self.dims is not None:
            _check_int("dims", self.dims, 1, n_features, f", the number of features (X has {n_features} feature(s))")
        if self.variance is not None:
            _check_fraction("variance", self.variance)

    def _validate_params(self, X):
        super()._validate_params(X)
        if len(X) < 2:
            raise DataError(f"{self.kind} needs at least 2 training samples to estimate a covariance, "
                            f"got {len(X)} sample")

    def _fit(self, X):
        mean, values, vectors, total = principal_components(_flat(X), self.dims, self.variance)
        self.mean_ = mean
        self.components_ = vectors.astype(np.float32)
        self.explained_variance_ = values
        self.explained_variance_ratio_ = _ratios(values, total)

    @property
    def n_components_(self) -> int:
        return len(self.components_)

    def keeps_shape(self) -> bool:
        return bool(getattr(self, "zca", False))

    def output_shape(self) -> tuple[int, ...]:
        self._check_fitted()
        return tuple(self.input_shape_) if self.keeps_shape() else (self.n_components_,)

    @property
    def retained_variance_(self) -> float:
        """Fraction of the training variance the kept components hold."""
        return float(np.sum(self.explained_variance_ratio_))

    def _check_state(self):
        d = int(np.prod(self.input_shape_))
        k = len(self.components_)
        ok = (self.mean_.shape == (d,) and self.components_.ndim == 2 and self.components_.shape[1] == d
              and 1 <= k <= d and self.explained_variance_.shape == (k,)
              and self.explained_variance_ratio_.shape == (k,))
        if not ok:
            raise DataError(f"stored {self.kind} transform has inconsistent array shapes")
        if self.dims is not None and k != self.dims:
            raise DataError(f"stored {self.kind} transform keeps {k} components, but its dims is {self.dims}")
        if np.any(self.explained_variance_ < 0):  # eigenvalues of a covariance (fit clips rounding's)
            raise DataError(f"stored {self.kind} transform has a negative explained_variance_")

    def _project(self, X: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """(X - mean) @ matrix in float32, block by block to bound the centred copy."""
        X2 = _flat(X)
        out = np.empty((len(X2), matrix.shape[1]), dtype=np.float32)
        step = _block_rows(X2.shape[1])
        for start in range(0, len(X2), step):
            block = np.subtract(X2[start:start + step], self._mean32, dtype=np.float32)
            np.matmul(block, matrix, out=out[start:start + step])
        return out

    def _check_codes(self, Z) -> np.ndarray:
        self._check_fitted()
        Z = np.asarray(Z)
        if Z.ndim != 2 or Z.shape[1] != self.n_components_:
            raise DataError(f"expected (N, {self.n_components_}) {self.kind} outputs, got shape {Z.shape}")
        return check_data(Z)

    def describe(self) -> dict:
        out = super().describe()
        if hasattr(self, "components_"):
            out["n_components"] = self.n_components_
            out["retained_variance"] = round(self.retained_variance_, 6)
        return out


class PCA(_Projection):
    """Project centred data onto its top principal components (exact eigendecomposition).

    dims: number of components to keep; variance: keep the fewest components holding at least this
    fraction of the training variance; neither: keep all.
    """

    kind = "pca"

    def __init__(self, dims=None, variance=None):
        self.dims = dims
        self.variance = variance

    def _derive(self):
        self._mean32 = self.mean_.astype(np.float32)
        self._project_matrix = np.ascontiguousarray(self.components_.T)

    def _transform(self, X):
        return self._project(X, self._project_matrix)

    def inverse_transform(self, Z) -> np.ndarray:
        """Back to the input space (and shape): the reconstruction from the kept components."""
        Z = self._check_codes(Z)
        X = np.add(Z.astype(np.float32) @ self.components_, self._mean32, dtype=np.float32)
        return X.reshape((len(Z),) + tuple(self.input_shape_))


class Whitening(_Projection):
    """PCA whitening: rotate onto the principal components and divide each by sqrt(eigenvalue + eps).

    With zca=True the whitened data is rotated back to pixel space (same shape as the input), the
    whitening closest to the original images. dims (or variance) keeps only the leading components.
    """

    kind = "whiten"

    def __init__(self, dims=None, eps=1e-5, zca=False, variance=None):
        self.dims = dims
        self.eps = eps
        self.zca = zca
        self.variance = variance

    def _check_params(self, input_shape):
        super()._check_params(input_shape)
        _check_eps(self.eps)
        if not isinstance(self.zca, (bool, np.bool_)):
            raise UsageError(f"zca must be True or False, got {self.zca!r}")

    def _fit(self, X):
        super()._fit(X)
        self._check_variance()

    def _check_state(self):
        super()._check_state()
        self._check_variance()

    def _check_variance(self):
        if self.eps == 0 and np.any(self.explained_variance_ <= 0):
            raise DataError("a kept component has zero variance; whitening it needs eps > 0 or fewer dims")

    def _derive(self):
        self._mean32 = self.mean_.astype(np.float32)
        scale = 1.0 / np.sqrt(self.explained_variance_ + float(self.eps))
        components = self.components_.astype(np.float64)
        matrix = components.T * scale  # (D, k): rotate, then scale
        if self.zca:
            matrix = matrix @ components  # (D, D): ... then rotate back
        self._project_matrix = np.ascontiguousarray(matrix, dtype=np.float32)

    def _transform(self, X):
        out = self._project(X, self._project_matrix)
        return out.reshape((len(X),) + tuple(self.input_shape_)) if self.zca else out

    def inverse_transform(self, Z) -> np.ndarray:
        self._check_fitted()
        Z = np.asarray(Z)
        if self.zca:
            if tuple(Z.shape[1:]) != tuple(self.input_shape_):
                raise DataError(f"expected ZCA outputs of shape {tuple(self.input_shape_)}, got {tuple(Z.shape[1:])}")
            Z = check_data(Z)
            codes = _flat(Z).astype(np.float64) @ self.components_.T.astype(np.float64)
        else:
            codes = self._check_codes(Z).astype(np.float64)
        unscaled = codes * np.sqrt(self.explained_variance_ + float(self.eps))
        X = (unscaled @ self.components_.astype(np.float64) + self.mean_).astype(np.float32)
        return X.reshape((len(Z),) + tuple(self.input_shape_))

