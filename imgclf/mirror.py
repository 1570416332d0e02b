"""Dataset-level horizontal-flip augmentation: the training images followed by their mirror images.

Unlike the nets' per-batch random flips (imgclf/nn/augment.py), a full-batch learner such as the linear
models' L-BFGS sees every row at once, so the mirrors are materialised: 2N rows, labels and sample weights
repeated. They are added before any preprocessing, because features of a mirror image (k-means, HOG) are
not a permutation of the original's.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

AUGMENTS = ("flip",)


def check_augment(augment, param: str = "augment") -> None:
    """Refuse anything but None or one of AUGMENTS."""
    if augment is not None and not (isinstance(augment, str) and augment in AUGMENTS):
        raise UsageError(f"{param} must be None or {' or '.join(map(repr, AUGMENTS))}, got {augment!r}", param=param)


def append_mirrors(X, y=None, sample_weight=None, param: str = "X"):
    """(X2, y2, w2): images X (N, H, W, C) and their horizontal mirrors, X2[N + i] = X[i, :, ::-1].

    X2 is one new (2N, H, W, C) array in X's dtype (uint8 stays uint8); y and sample_weight, when given,
    are repeated to 2N (else None). Raises UsageError naming `param` for anything but 4-d image data.
    """
    X = np.asarray(X)
    if X.ndim != 4:
        raise UsageError(f"{param}: horizontal mirrors need images (N, H, W, C), got data of shape {X.shape} "
                         "(feature rows have no left and right; augment the images before a projection such "
                         "as PCA)", param=param)
    n = len(X)
    out = np.empty((2 * n,) + X.shape[1:], X.dtype)
    out[:n] = X
    out[n:] = X[:, :, ::-1]
    return out, _twice(y, n, "y"), _twice(sample_weight, n, "sample_weight")


def _twice(a, n: int, name: str):
    if a is None:
        return None
    a = np.asarray(a)
    if a.ndim < 1 or len(a) != n:
        raise UsageError(f"{name} has {len(a) if a.ndim else 0} entries for {n} images", param=name)
    return np.concatenate([a, a])
