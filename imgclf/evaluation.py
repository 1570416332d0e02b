"""Scoring predictions: accuracy, confusion matrix, per-class accuracy, precision and recall.

Labels are integers 0 .. n_classes-1 (the dataset's class indices). A class with no true examples
has no recall (NaN), one never predicted has no precision (NaN): the caller decides how to show it.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError


def _labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.shape != y_true.shape:
        raise UsageError(f"expected two 1-D label arrays of the same length, got {y_true.shape} and {y_pred.shape}")
    if len(y_true) == 0:
        raise UsageError("cannot score an empty set of predictions")
    return y_true, y_pred


def accuracy(y_true, y_pred) -> float:
    """Fraction of predictions equal to the truth."""
    y_true, y_pred = _labels(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """counts[t, p]: how many examples of true class t were predicted as p."""
    y_true, y_pred = _labels(y_true, y_pred)
    for name, y in (("true", y_true), ("predicted", y_pred)):
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise UsageError(f"{name} labels must be non-negative integers")
    if n_classes is None:
        n_classes = int(max(y_true.max(), y_pred.max())) + 1
    if max(y_true.max(), y_pred.max()) >= n_classes:
        raise UsageError(f"labels must be below n_classes={n_classes}")
    flat = y_true.astype(np.int64) * n_classes + y_pred
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_class_accuracy(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Accuracy on the examples of each true class (the class's recall); NaN for absent classes."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    return _ratio(np.diag(cm).astype(np.float64), cm.sum(axis=1))


def precision_recall(y_true, y_pred, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision (of the predictions of a class, how many were right) and recall."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    hits = np.diag(cm).astype(np.float64)
    return _ratio(hits, cm.sum(axis=0)), _ratio(hits, cm.sum(axis=1))


def report(y_true, y_pred, classes: list[str]) -> dict:
    """Accuracy and per-class figures keyed by class name, ready for JSON or a table."""
    n = len(classes)
    cm = confusion_matrix(y_true, y_pred, n)
    precision, recall = precision_recall(y_true, y_pred, n)
    per_class = {
        name: {"accuracy": recall[c], "precision": precision[c], "support": int(cm[c].sum())}
        for c, name in enumerate(classes)
    }
    return {"accuracy": accuracy(y_true, y_pred), "per_class": per_class, "confusion": cm}
