"""Classification losses on class scores, vectorised, averaged over the batch.

Both functions take `scores` (N, C) and integer labels `y` (N,) in 0..C-1 and return
`(loss, dscores)` where `dscores` is the gradient of the mean loss with respect to `scores`, in the
dtype of `scores`. They carry no regularisation: a model adds its own penalty. Linear classifiers
and the nets share them.

Multiclass SVM (Weston-Watkins):   L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta)      (hinge)
                                   L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta)^2    (squared)
One-vs-rest SVM (C binary SVMs):   L_i = sum_j max(0, delta - t_ij s_j),  t_ij = +1 if j == y_i else -1
                                   L_i = sum_j max(0, delta - t_ij s_j)^2                  (squared: the
                                   L2-SVM of Coates, Lee & Ng 2011 and of LinearSVC's default loss)
Softmax cross-entropy:             L_i = -s_{y_i} + log sum_j exp(s_j)
  with label smoothing e:          L_i = (1 - e) (-log p_{y_i}) + e mean_j (-log p_j)
                                   (the target is (1 - e) onehot(y_i) + e / C)
computed after subtracting max_j s_j from each row, which leaves L_i unchanged and keeps exp() from
overflowing.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError


def _check(scores, y) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    y = np.asarray(y)
    if scores.ndim != 2 or not np.issubdtype(scores.dtype, np.floating):
        raise UsageError(f"scores must be a float (N, C) array, got {scores.dtype} {scores.shape}")
    if y.ndim != 1 or len(y) != len(scores):
        raise UsageError(f"labels must be a 1-d array of {len(scores)} entries, got shape {y.shape}")
    if len(y) == 0:
        raise UsageError("the loss of an empty batch is undefined")
    if not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"labels must be integers, got {y.dtype}")
    if y.min() < 0 or y.max() >= scores.shape[1]:
        raise UsageError(f"labels must lie in 0..{scores.shape[1] - 1}")
    dtype = scores.dtype if scores.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(scores, dtype=dtype), y.astype(np.int64, copy=False)


def _weighted(result, rows, weight) -> tuple[float, np.ndarray]:
    """(mean loss, dscores) of the unweighted kernel -> those of (1/N) sum_i weight_i L_i."""
    if weight is None:
        return result
    _, dscores = result
    weight = np.asarray(weight, dtype=dscores.dtype)
    dscores *= weight[:, None]
    return float(np.mean(weight * rows())), dscores


def svm_loss(scores, y, delta: float = 1.0, squared: bool = False, sample_weight=None) -> tuple[float, np.ndarray]:
    """Mean multiclass hinge loss and its gradient on the scores; with `sample_weight` (N,) the mean of
    weight_i * L_i (class weights arrive this way).

    At a kink (a margin exactly 0) the subgradient 0 is used, as `max(0, m) > 0` is false there.
    """
    from .kernels import loss

    scores, y = _check(scores, y)

    def rows():
        m = np.maximum(0, scores - scores[np.arange(len(y)), y][:, None] + delta)
        m[np.arange(len(y)), y] = 0
        return (m * m if squared else m).sum(axis=1)

    return _weighted(loss.loss_rows(scores, y, loss.SQUARED_HINGE if squared else loss.HINGE, delta), rows,
                     sample_weight)


def ovr_svm_loss(scores, y, delta: float = 1.0, squared: bool = False,
                 sample_weight=None) -> tuple[float, np.ndarray]:
    """Mean one-vs-rest hinge loss (each class its own binary SVM against all others) and its gradient
    on the scores; `sample_weight` as in `svm_loss`. The subgradient at a kink is 0, as there."""
    from .kernels import loss

    scores, y = _check(scores, y)

    def rows():
        t = np.where(np.arange(scores.shape[1]) == y[:, None], 1.0, -1.0)
        m = np.maximum(0, delta - t * scores)
        return (m * m if squared else m).sum(axis=1)

    kind = loss.OVR_SQUARED_HINGE if squared else loss.OVR_HINGE
    return _weighted(loss.loss_rows(scores, y, kind, delta), rows, sample_weight)


def softmax(scores) -> np.ndarray:
    """Row-wise softmax probabilities with the max-shift; float64 unless the scores are float32."""
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    z = scores - scores.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def softmax_loss(scores, y, sample_weight=None, smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient on the scores: (p - onehot(y)) / N; with label
    `smoothing` e the target is (1 - e) onehot(y) + e / C, the gradient (p - target) / N; with
    `sample_weight` (N,) the mean of weight_i * L_i.

    Probabilities below the dtype's smallest normal number are flushed to 0 in the gradient (see
    imgclf/kernels/loss.py)."""
    from .kernels import loss

    scores, y = _check(scores, y)
    if not (0.0 <= smoothing < 1.0):
        raise UsageError(f"label smoothing must be in [0, 1), got {smoothing!r}")

    def rows():
        # With smoothing e, L_i = (1 - e) (lse - s_{y_i}) + e (lse - mean_j s_j), on the small (N, C) scores.
        z = scores.astype(np.float64) - scores.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return (1.0 - smoothing) * (lse - z[np.arange(len(y)), y]) + smoothing * (lse - z.mean(axis=1))

    result = loss.loss_rows(scores, y, loss.SOFTMAX)
    if smoothing:
        n, c = scores.shape
        dscores = result[1]
        dscores[np.arange(n), y] += dscores.dtype.type(smoothing / n)
        dscores -= dscores.dtype.type(smoothing / (n * c))
        result = (float(np.mean(rows())), dscores)
    return _weighted(result, rows, sample_weight)
