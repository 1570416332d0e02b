"""Partial selection of the k nearest: a bounded max-heap per query row, keyed by (distance, index).

The heap's root is the worst of the best k found so far, so a new candidate costs one comparison
unless it beats the root. Keys compare by distance, then by training index, which is what makes
"ties in distance go to the lower training index" hold whatever order candidates arrive in.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..errors import UsageError

# Index of an empty heap slot: larger than any real training index, so real entries beat it.
EMPTY = np.iinfo(np.int64).max


@njit(cache=True, inline="always")
def _after(d1, j1, d2, j2):
    """True when (d1, j1) sorts after (d2, j2)."""
    return d1 > d2 or (d1 == d2 and j1 > j2)


@njit(cache=True)
def _push(hd, hi, d, j):
    """Offer (d, j) to the max-heap rows hd/hi of fixed size; keep it if it beats the root."""
    if not _after(hd[0], hi[0], d, j):
        return
    k = hd.shape[0]
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= k:
            break
        if c + 1 < k and _after(hd[c + 1], hi[c + 1], hd[c], hi[c]):
            c += 1
        if _after(hd[c], hi[c], d, j):
            hd[pos] = hd[c]
            hi[pos] = hi[c]
            pos = c
        else:
            break
    hd[pos] = d
    hi[pos] = j


def empty_heaps(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """n heaps of size k, every slot (inf, EMPTY): a valid max-heap any real entry beats."""
    return np.full((n, k), np.inf), np.full((n, k), EMPTY, dtype=np.int64)


def sort_heaps(hd: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows in ascending (distance, index) order."""
    order = np.lexsort((hi, hd), axis=-1)
    return np.take_along_axis(hd, order, -1), np.take_along_axis(hi, order, -1)


def smallest_k(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest entries of each row of a distance matrix, ties to the lower column index.

    Returns (distances, indices), each (n, k), sorted by (distance, index).
    """
    dist = np.asarray(dist)
    if dist.ndim != 2:
        raise UsageError(f"smallest_k expects a 2-D distance matrix, got shape {dist.shape}")
    if not 1 <= k <= dist.shape[1]:
        raise UsageError(f"k must be between 1 and {dist.shape[1]}, got {k}")
    if np.isnan(dist).any():
        raise UsageError("the distance matrix contains NaN")
    hd, hi = empty_heaps(dist.shape[0], k)
    _select_rows(np.ascontiguousarray(dist, dtype=np.float64), hd, hi)
    return sort_heaps(hd, hi)


@njit(cache=True)
def _select_rows(dist, hd, hi):
    for i in range(dist.shape[0]):
        for j in range(dist.shape[1]):
            _push(hd[i], hi[i], dist[i, j], j)
