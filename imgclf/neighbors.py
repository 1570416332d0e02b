"""k-nearest-neighbour classification and cross-validation over k.

`fit` only stores the training set (uint8 stays uint8: exact integer distances, a quarter of the
memory). Neighbours are ordered by distance, then by training index; the vote is a majority among
the k nearest, and a tie between labels goes to the smallest label. `cross_validate_k` computes the
distances of each fold once, selects the kmax nearest, and scores every k from prefixes of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Classifier
from .config import DEFAULT_MEMORY_MB, METRICS
from .errors import UsageError
from .validation import check_array, check_fitted, check_labels, check_n_features, encode_labels, n_features



def _rows(X, name: str = "X", min_samples: int = 0) -> np.ndarray:
    """(N, D) view of images (N, H, W, C) or features (N, D); uint8 kept, anything else float32."""
    X = check_array(X, name, min_samples=min_samples)
    X = X.reshape(X.shape[0], n_features(X))
    return X if X.dtype == np.uint8 else X.astype(np.float32, copy=False)


def _check_k(k, n_train: int, what: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"{what} must be an integer >= 1, got {k!r}")
    if k > n_train:
        raise UsageError(f"{what}={k} is larger than the number of training examples ({n_train} sample"
                         f"{'s' if n_train != 1 else ''})")
    return int(k)


def _check_memory(memory_mb) -> int:
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, (int, np.integer)) or memory_mb < 1:
        raise UsageError(f"memory_mb must be an integer >= 1 (megabytes), got {memory_mb!r}", param="memory_mb")
    return int(memory_mb)


def _check_metric(metric) -> str:
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


def vote_counts(codes: np.ndarray, n_classes: int, k_values) -> np.ndarray:
    """Winning class index for every k in k_values from sorted neighbour codes (n, kmax).

    Returns (len(k_values), n). One running count per class, read at each k: every k costs one
    argmax, and argmax's first maximum is the smallest label, the documented tie rule.
    """
    n, kmax = codes.shape
    wanted = {int(k): i for i, k in enumerate(k_values)}
    out = np.empty((len(k_values), n), dtype=np.int64)
    counts = np.zeros((n, n_classes), dtype=np.int64)
    rows = np.arange(n)
    for t in range(kmax):
        counts[rows, codes[:, t]] += 1
        if t + 1 in wanted:
            out[wanted[t + 1]] = counts.argmax(axis=1)
    return out


class KNNClassifier(Classifier):
    """k-nearest-neighbour classifier (exact; L2 or L1 distance).

    Parameters
    ----------
    k : number of neighbours that vote.
    metric : "l2" (Euclidean) or "l1" (Manhattan).
    memory_mb : working-memory budget for the distance computation; queries are processed in
        blocks so the query x train distance matrix is never held whole unless it fits.

    Accepts X as (N, D) or images (N, H, W, C). uint8 data is kept as uint8 and its distances are
    exact integers; other data is compared as float32 values (sums in float64).
    """

    kind = "knn"

    def __init__(self, k=5, metric="l2", memory_mb=DEFAULT_MEMORY_MB):
        self.k = k
        self.metric = metric
        self.memory_mb = memory_mb

    # -- fitting and prediction -----------------------------------------------------------------
    def fit(self, X, y):
        """Store the training set. Returns self."""
        X = _rows(X, min_samples=1)
        y = check_labels(y, len(X))
        metric = _check_metric(self.metric)
        _check_k(self.k, len(X))
        _check_memory(self.memory_mb)  # also a model file's, which is loaded through fit
        self.classes_, self._codes = encode_labels(y)
        self.X_train_ = X
        self.y_train_ = self.classes_[self._codes]  # object arrays of strings become str arrays (model files)
        self.n_features_in_ = X.shape[1]
        # Now rather than at the first query, so that predicting leaves the fitted state untouched.
        self._sqnorms = None
        if metric == "l2":
            from .kernels.distances import sqnorms

            self._sqnorms = sqnorms(X)
        return self

    def _check_fitted(self):
        check_fitted(self, "X_train_")

    def _queries(self, X) -> np.ndarray:
        self._check_fitted()
        X = _rows(X)
        check_n_features(self, X)
        return X

    def _neighbors(self, X, k, progress=None, stats=None):
        """Sorted (squared-for-L2 distances, training indices), each (n, k)."""
        from .kernels.distances import kneighbors, sqnorms

        metric = _check_metric(self.metric)
        norms = None
        if metric == "l2":
            if self._sqnorms is None:
                self._sqnorms = sqnorms(self.X_train_)
            norms = self._sqnorms if X.dtype == self.X_train_.dtype else None
        return kneighbors(X, self.X_train_, k, metric, memory_mb=self.memory_mb, y_sqnorms=norms,
                          progress=progress, stats=stats)

    def kneighbors(self, X, n_neighbors=None, return_distance=True):
        """Distances (Euclidean for l2, Manhattan for l1) and indices of the nearest training rows."""
        X = self._queries(X)
        k = _check_k(self.k if n_neighbors is None else n_neighbors, len(self.X_train_), "n_neighbors")
        dist, idx = self._neighbors(X, k)
        if not return_distance:
            return idx
        return (np.sqrt(dist) if self.metric == "l2" else dist), idx

    def _vote(self, X, progress=None, stats=None) -> np.ndarray:
        X = self._queries(X)
        k = _check_k(self.k, len(self.X_train_))
        _, idx = self._neighbors(X, k, progress, stats)
        return self._codes[idx]

    def predict(self, X, progress=None, stats=None) -> np.ndarray:
        """Majority label among the k nearest; ties go to the smallest label."""
        codes = self._vote(X, progress, stats)
        return self.classes_[vote_counts(codes, len(self.classes_), [codes.shape[1]])[0]]

    def predict_proba(self, X) -> np.ndarray:
        """Share of the k votes for each class in classes_ (n, n_classes)."""
        codes = self._vote(X)
        n = len(codes)
        counts = np.zeros((n, len(self.classes_)))
        np.add.at(counts, (np.repeat(np.arange(n), codes.shape[1]), codes.ravel()), 1.0)
        return counts / codes.shape[1]

    # -- model files ------------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        self._check_fitted()
        return self.get_params(), {"X_train": self.X_train_, "y_train": self.y_train_}

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]):
        from .errors import ModelFileError

        missing = {"X_train", "y_train"} - set(arrays)
        if missing:
            raise ModelFileError(f"knn model file lacks the arrays {sorted(missing)}")
        if arrays["y_train"].ndim != 1:  # fit would flatten a column with a warning; a file holds what fit kept
            raise ModelFileError(f"knn model file: y_train has shape {arrays['y_train'].shape}, expected one label "
                                 f"per stored row")
        return cls(**params).fit(arrays["X_train"], arrays["y_train"])


@dataclass
class CVResult:
    k_values: list[int]
    accuracies: np.ndarray  # (len(k_values), folds)
    best_k: int

    @property
    def mean(self) -> np.ndarray:
        return self.accuracies.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        return self.accuracies.std(axis=1)


def fold_bounds(n: int, folds: int) -> list[tuple[int, int]]:
    """Consecutive folds, sizes differing by at most one (the first ones larger)."""
    edges = np.cumsum([0] + [len(a) for a in np.array_split(np.arange(n), folds)])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _cv_fold(task, data, progress=None) -> np.ndarray:
    """Accuracy of every k on one fold: the unit `cross_validate_k` maps over folds, here or on workers."""
    from .kernels.distances import kneighbors

    (a, b), k_values, metric, memory_mb, n_classes = task
    X, codes, norms = data["X"], data["codes"], data.get("norms")
    keep = np.r_[0:a, b:len(X)]
    _, idx = kneighbors(X[a:b], X[keep], k_values[-1], metric, memory_mb=memory_mb,
                        y_sqnorms=None if norms is None else norms[keep], progress=progress)
    votes = vote_counts(codes[keep][idx], n_classes, k_values)
    return (votes == codes[a:b]).mean(axis=1)


def cross_validate_k(X, y, k_values, folds: int = 5, *, metric: str = "l2", memory_mb: int = DEFAULT_MEMORY_MB,
                     progress=None, map_folds=None) -> CVResult:
    """n-fold cross-validation of kNN accuracy for every k in k_values, on consecutive folds.

    Each fold's distances are computed once and the kmax nearest selected once; every k is scored
    from prefixes of that sorted list. Best k: highest mean accuracy, ties to the smaller k.
    `progress(n_rows)` is called as validation rows are done. `map_folds(fn, tasks, data)`, e.g.
    `imgclf.executors.map_folds` with a Dask scheduler, runs the folds elsewhere (no progress then).
    """
    from .kernels.distances import sqnorms

    X = _rows(X)
    y = check_labels(y, len(X))
    _check_metric(metric)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= len(X):
        raise UsageError(f"the number of folds must be an integer between 2 and the number of examples ({len(X)}), "
                         f"got {folds!r}")
    k_values = sorted({int(k) for k in k_values}) if k_values is not None else []
    if not k_values:
        raise UsageError("give at least one k to cross-validate")
    bounds = fold_bounds(len(X), folds)
    smallest_train = len(X) - max(b - a for a, b in bounds)
    for k in k_values:
        _check_k(k, smallest_train, "every k")
    classes, codes = encode_labels(y)
    data = {"X": X, "codes": codes}
    if metric == "l2":
        data["norms"] = sqnorms(X)
    tasks = [((a, b), k_values, metric, memory_mb, len(classes)) for a, b in bounds]
    if map_folds is None:
        columns = [_cv_fold(task, data, progress) for task in tasks]
    else:
        columns = map_folds(_cv_fold, tasks, data)
    acc = np.stack(columns, axis=1)
    means = acc.mean(axis=1)
    best = k_values[int(np.flatnonzero(means == means.max())[0])]
    return CVResult(k_values, acc, best)
