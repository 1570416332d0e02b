"""Seeded k-means (Lloyd's algorithm) whose assignment step is one GEMM per block of rows.

The nearest centroid of x maximises x.c_k - |c_k|^2 / 2 (|x - c_k|^2 without the term common to all k),
so each block of rows costs one (rows x D) @ (D x K) product, which BLAS runs at full speed, plus an
argmax and a sum per row (a numba kernel). Used by the k-means features (imgclf.kmeans_features).
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

_BLOCK_BYTES = 32 * 2**20  # scores per block: large GEMMs, bounded memory


def kmeans(X: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """(centroids (k, D) float32, mean squared distance to the nearest centroid after each iteration).

    Starts from k distinct rows of X drawn by `rng`; each iteration assigns every row to its nearest
    centroid and moves each centroid to the mean of its rows. A centroid left with no row is moved to a
    row drawn at random (Coates et al. zero it; a fresh row keeps all k in use).
    """
    from .kernels.features import _assign_accumulate

    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    if not 1 <= k <= n:
        raise UsageError(f"k-means needs 1 <= k <= the number of samples ({n}), got k={k}")
    centroids = X[np.sort(rng.choice(n, size=k, replace=False))].copy()
    x2 = float(np.einsum("ij,ij->", X, X, dtype=np.float64))
    step = max(64, _BLOCK_BYTES // (4 * k))
    scores = np.empty((min(step, n), k), dtype=np.float32)
    labels = np.empty(min(step, n), dtype=np.int64)
    history = []
    for _ in range(iterations):
        ct = np.ascontiguousarray(centroids.T)
        half_c2 = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
        sums = np.zeros((k, d), dtype=np.float64)
        counts = np.zeros(k, dtype=np.int64)
        best = 0.0
        for start in range(0, n, step):
            block = X[start:start + step]
            s = scores[:len(block)]
            np.matmul(block, ct, out=s)
            s -= half_c2
            best += _assign_accumulate(s, block, labels[:len(block)], sums, counts)
        history.append(max(0.0, (x2 - 2 * best) / n))
        empty = counts == 0
        counts[empty] = 1
        centroids = (sums / counts[:, None]).astype(np.float32)
        if empty.any():
            centroids[empty] = X[rng.choice(n, size=int(empty.sum()), replace=False)]
    return centroids, history
