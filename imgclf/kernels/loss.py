"""The classification losses row by row: loss and gradient on the scores in one pass.

Shared by `imgclf.losses` (whole score matrices, for the nets and the gradient checks) and the fused
linear-classifier step (imgclf/kernels/linear.py, one row at a time). The formulas are documented in
imgclf/losses.py. numpy needed about ten passes over the (N, C) scores for the same result.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SOFTMAX, HINGE, SQUARED_HINGE = 0, 1, 2
# One-vs-rest: C binary hinges, target +1 for the true class and -1 for the others (imgclf/losses.py).
OVR_HINGE, OVR_SQUARED_HINGE = 3, 4


@njit(cache=True, error_model="numpy")
def _row_loss(s, yi, kind, delta, inv_n, ds):
    """Loss of one row of scores `s` and its gradient, already divided by n, written to ds.

    Softmax works in float64 after the max-shift (exp cannot overflow); gradients below the smallest
    normal number of ds's dtype are flushed to 0: they carry nothing, and subnormal operands made the
    BLAS product that follows many times slower."""
    C = s.shape[0]
    tiny = np.finfo(ds.dtype).tiny
    if kind == SOFTMAX:
        m = s[0]
        for c in range(1, C):
            m = max(m, s[c])
        z = 0.0
        for c in range(C):
            e = np.exp(np.float64(s[c] - m))
            ds[c] = e
            z += e
        for c in range(C):
            p = ds[c] / z * inv_n
            ds[c] = p if p >= tiny else 0.0
        ds[yi] -= inv_n
        return np.log(z) - np.float64(s[yi] - m)
    loss = 0.0
    if kind == OVR_HINGE or kind == OVR_SQUARED_HINGE:
        for c in range(C):
            t = 1.0 if c == yi else -1.0
            margin = delta - t * np.float64(s[c])
            if margin > 0:
                if kind == OVR_SQUARED_HINGE:
                    loss += margin * margin
                    ds[c] = -2 * t * margin * inv_n
                else:
                    loss += margin
                    ds[c] = -t * inv_n
            else:
                ds[c] = 0.0
        return loss
    total = 0.0
    for c in range(C):
        if c == yi:
            ds[c] = 0.0
            continue
        margin = np.float64(s[c] - s[yi]) + delta
        if margin > 0:
            if kind == SQUARED_HINGE:
                loss += margin * margin
                ds[c] = 2 * margin * inv_n
            else:
                loss += margin
                ds[c] = inv_n
        else:
            ds[c] = 0.0
        total += ds[c]
    ds[yi] = -total
    return loss


@njit(cache=True, error_model="numpy")
def _loss_rows(scores, y, kind, delta, dscores):
    """Mean loss over the rows of scores (N, C); its gradient (N, C) into dscores."""
    n = scores.shape[0]
    inv_n = 1.0 / n
    total = 0.0
    for i in range(n):
        total += _row_loss(scores[i], y[i], kind, delta, inv_n, dscores[i])
    return total / n


def loss_rows(scores: np.ndarray, y: np.ndarray, kind: int, delta: float = 1.0) -> tuple[float, np.ndarray]:
    """Private entry point for imgclf.losses (which validates): scores C-contiguous float (N, C), y
    int64 in 0..C-1. Returns (mean loss, dscores in scores' dtype)."""
    dscores = np.empty_like(scores)
    return float(_loss_rows(scores, y, kind, float(delta), dscores)), dscores
