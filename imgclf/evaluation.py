"""Scoring predictions: accuracy, confusion matrix, per-class accuracy, precision, recall and F1; and the
error analysis built on them: balanced and top-k accuracy, the most confused class pairs, the most
confident mistakes.

Labels are integers 0 .. n_classes-1 (the dataset's class indices). A class with no true examples
has no recall (NaN), one never predicted has no precision (NaN): the caller decides how to show it.
Scores are (n, n_classes) arrays, column c for class c (probabilities or any scores, higher is likelier).
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


def f1_scores(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Per-class F1 = 2 TP / (2 TP + FP + FN): 0 for a class never hit, NaN only for a class neither
    present nor predicted."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    hits = np.diag(cm).astype(np.float64)
    return _ratio(2 * hits, cm.sum(axis=0) + cm.sum(axis=1))


def balanced_accuracy(y_true, y_pred, n_classes: int | None = None) -> float:
    """The mean recall over the classes present in y_true (each class counts the same, whatever its size)."""
    recall = per_class_accuracy(y_true, y_pred, n_classes)
    return float(np.nanmean(recall))


def _scores(scores, n: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != n or scores.shape[1] < 1:
        raise UsageError(f"expected scores of shape ({n}, n_classes), got {scores.shape}")
    if not np.isfinite(scores).all():
        raise UsageError("scores contain NaN or infinite values")
    return scores


def top_k_accuracy(y_true, scores, k: int) -> float:
    """Fraction of examples whose true class is among the k best-scored; equal scores rank the smaller
    class index first (as argmax does for the top-1 prediction)."""
    y_true, _ = _labels(y_true, y_true)
    scores = _scores(scores, len(y_true))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k:
        raise UsageError(f"k must be an integer >= 1, got {k!r}")
    if y_true.min() < 0 or y_true.max() >= scores.shape[1]:
        raise UsageError(f"labels must lie in 0..{scores.shape[1] - 1}")
    mine = scores[np.arange(len(y_true)), y_true][:, None]
    cols = np.arange(scores.shape[1])
    # classes ranked before the true one: a higher score, or the same score and a smaller index
    ahead = (scores > mine) | ((scores == mine) & (cols < y_true[:, None]))
    return float(np.mean(ahead.sum(axis=1) < k))


def confused_pairs(cm, n: int | None = None) -> list[tuple[int, int, int]]:
    """The off-diagonal cells of a confusion matrix as (true, predicted, count), most frequent first
    (ties in row-major order), without zero cells; at most n of them."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise UsageError(f"expected a square confusion matrix, got shape {cm.shape}")
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")
    pairs = [(int(i // cm.shape[1]), int(i % cm.shape[1]), int(off.flat[i])) for i in flat if off.flat[i] > 0]
    return pairs if n is None else pairs[:n]


def confident_mistakes(y_true, scores, n: int | None = None) -> np.ndarray:
    """Indices of the wrongly predicted examples (prediction = best score), the most confident first:
    ordered by the predicted class's score, then by index."""
    y_true, _ = _labels(y_true, y_true)
    scores = _scores(scores, len(y_true))
    pred = scores.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    order = np.lexsort((wrong, -scores[wrong, pred[wrong]]))
    out = wrong[order]
    return out if n is None else out[:n]


def report(y_true, y_pred, classes: list[str], *, pairs: int = 5) -> dict:
    """Accuracy, balanced accuracy, macro F1, per-class figures keyed by class name and the `pairs`
    most confused (true, predicted) class pairs, ready for JSON or a table."""
    n = len(classes)
    cm = confusion_matrix(y_true, y_pred, n)
    precision, recall = precision_recall(y_true, y_pred, n)
    f1 = f1_scores(y_true, y_pred, n)
    per_class = {
        name: {"accuracy": recall[c], "precision": precision[c], "f1": f1[c], "support": int(cm[c].sum())}
        for c, name in enumerate(classes)
    }
    confused = [{"true": classes[t], "predicted": classes[p], "count": c, "share": float(c / cm[t].sum())}
                for t, p, c in confused_pairs(cm, pairs)]
    return {"accuracy": accuracy(y_true, y_pred), "balanced_accuracy": balanced_accuracy(y_true, y_pred, n),
            "macro_f1": float(np.nanmean(f1)), "per_class": per_class, "confused": confused, "confusion": cm}
