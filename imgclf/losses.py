"""Classification losses on class scores, vectorised, averaged over the batch.

Both functions take `scores` (N, C) and integer labels `y` (N,) in 0..C-1 and return
`(loss, dscores)` where `dscores` is the gradient of the mean loss with respect to `scores`, in the
dtype of `scores`. They carry no regularisation: a model adds its own penalty. Linear classifiers
and the nets share them.

Multiclass SVM (Weston-Watkins):   L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta)      (hinge)
                                   L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta)^2    (squared)
Softmax cross-entropy:             L_i = -s_{y_i} + log sum_j exp(s_j)
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
    return scores, y


def svm_loss(scores, y, delta: float = 1.0, squared: bool = False) -> tuple[float, np.ndarray]:
    """Mean multiclass hinge loss and its gradient on the scores.

    At a kink (a margin exactly 0) the subgradient 0 is used, as `max(0, m) > 0` is false there.
    """
    scores, y = _check(scores, y)
    n = len(y)
    rows = np.arange(n)
    margins = scores - scores[rows, y][:, None]
    margins += scores.dtype.type(delta)
    np.maximum(margins, 0, out=margins)
    margins[rows, y] = 0
    if squared:
        loss = float(np.sum(margins * margins)) / n
        dscores = margins * scores.dtype.type(2.0 / n)
    else:
        loss = float(np.sum(margins)) / n
        dscores = (margins > 0).astype(scores.dtype)
        dscores *= scores.dtype.type(1.0 / n)
    # Each positive margin also pushes the correct-class score down.
    dscores[rows, y] = -dscores.sum(axis=1)
    return loss, dscores


def softmax(scores) -> np.ndarray:
    """Row-wise softmax probabilities with the max-shift; float64 unless the scores are float32."""
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    z = scores - scores.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def softmax_loss(scores, y) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient on the scores: (p - onehot(y)) / N."""
    scores, y = _check(scores, y)
    n = len(y)
    rows = np.arange(n)
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1)
    # -log p_y = log(sum exp) - shifted_y, without forming p_y (which may underflow to 0).
    loss = float(np.sum(np.log(sums) - shifted[rows, y], dtype=np.float64)) / n
    dscores = exp
    dscores /= sums[:, None]
    dscores[rows, y] -= 1
    dscores *= scores.dtype.type(1.0 / n)
    # Probabilities far below the top one come out subnormal; BLAS runs many times slower on
    # subnormal operands (the X^T dscores product that follows), and they carry nothing: flush them.
    dscores[np.abs(dscores) < np.finfo(dscores.dtype).tiny] = 0
    return loss, dscores
