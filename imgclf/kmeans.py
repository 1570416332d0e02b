"""Seeded k-means (Lloyd's algorithm) whose assignment step is one GEMM per block of rows.

The nearest centroid of x maximises x.c_k - |c_k|^2 / 2 (|x - c_k|^2 without the term common to all k),
so each block of rows costs one (rows x D) @ (D x K) product, which BLAS runs at full speed, plus an
argmax and a sum per row (a numba kernel). Used by the k-means features (imgclf.kmeans_features).
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

INITS = ("gaussian", "rows")
_BLOCK_BYTES = 32 * 2**20  # scores per block: large GEMMs, bounded memory
_GAUSSIAN_SCALE = 0.1  # Coates et al.'s run_kmeans.m: centroids = randn(k, D) * 0.1


def initial_centroids(X: np.ndarray, k: int, init: str, rng: np.random.Generator) -> np.ndarray:
    """The k starting centroids, float32: 'gaussian' (Coates et al.) or 'rows' (k distinct rows of X)."""
    if init == "gaussian":
        return (rng.standard_normal((k, X.shape[1])) * _GAUSSIAN_SCALE).astype(np.float32)
    if init == "rows":
        return X[np.sort(rng.choice(len(X), size=k, replace=False))].copy()
    raise UsageError(f"init must be one of {', '.join(INITS)}, got {init!r}")


def kmeans(X: np.ndarray, k: int, iterations: int, rng: np.random.Generator,
           init: str = "gaussian") -> tuple[np.ndarray, list[float]]:
    """(centroids (k, D) float32, mean squared distance to the nearest centroid after each iteration).

    init 'gaussian' (the default) starts from small random centres, N(0, 0.1^2) per coordinate, drawn by
    `rng`, as Coates et al. do; 'rows' starts from k distinct rows of X. Each iteration assigns every row
    to its nearest centroid and moves each centroid to the mean of its rows. A centroid left with no row
    is set to zero, as Coates et al. do: it then scores 0 against every row, so it catches the rows far
    from all other centres on the next iteration. Moving it to a random row instead scored the same on
    the CIFAR-10 subset check (0.6440 against 0.6450, docs/features.md; only 3 of 1600 centres emptied,
    all in the first iteration), so the simpler rule, which draws nothing from `rng`, stays.
    """
    from .kernels.features import _assign_accumulate

    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    if not 1 <= k <= n:
        raise UsageError(f"k-means needs 1 <= k <= the number of samples ({n}), got k={k}")
    centroids = initial_centroids(X, k, init, rng)
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
        centroids = (sums / counts[:, None]).astype(np.float32)  # empty: 0 / 1 = zero
    return centroids, history
