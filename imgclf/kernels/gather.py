"""The Solver's batch gather, X[idx] for a C-contiguous X, copied row by row on numba's thread team.

numpy's fancy index copies the rows on one thread. A fully-connected epoch's batches (200 rows of 3072
float32 from a 49000-row training set, every row a cache miss) took about 0.4 ms each that way, 0.1 s an
epoch: as much as the net's forward product at H=100. Copied on both threads into the Solver's reused
buffer the epoch ran 60-75 ms faster (benchmarks/torch_peer.py's fc net, H=100 and H=500, 2 threads);
copying on one thread into the buffer (or np.take(..., out=)) was slower than numpy (108 against 86 ms
an epoch at H=100), so the Solver copies on the team only when `team_gather_pays`.
"""

from __future__ import annotations

import numpy as np
import numba
from numba import njit, prange

from ..errors import UsageError
from .threads import PARALLEL_MIN_WORK, threads_for


def team_gather_pays(n_values: int) -> bool:
    """Whether gather_rows of a batch of `n_values` values beats numpy's X[idx]: on two or more numba
    threads and batches big enough to wake the team for (kernels/threads.py)."""
    return numba.get_num_threads() > 1 and n_values >= PARALLEL_MIN_WORK


@njit(cache=True, parallel=True)
def _gather_rows(X2, idx, out2):
    for i in prange(idx.size):
        out2[i, :] = X2[idx[i]]


def gather_rows(X, idx, out=None) -> np.ndarray:
    """X[idx] along the first axis, into `out` when given (C-contiguous, shape (len(idx),) + X.shape[1:],
    X's dtype); X C-contiguous with at least one axis, idx 1-D integers in [0, len(X))."""
    if not isinstance(X, np.ndarray) or X.ndim < 1 or not X.flags.c_contiguous:
        raise UsageError(f"gather_rows takes a C-contiguous array, got {type(X).__name__} "
                         f"{getattr(X, 'shape', '')}", param="X")
    idx = np.asarray(idx)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise UsageError(f"gather_rows takes a 1-D array of row indices, got {idx.dtype} {idx.shape}", param="idx")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= len(X)):
        raise UsageError(f"row indices must be in [0, {len(X)}), got {int(idx.min())}..{int(idx.max())}",
                         param="idx")
    shape = (idx.size,) + X.shape[1:]
    if out is None:
        out = np.empty(shape, X.dtype)
    elif (not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != X.dtype
          or not out.flags.c_contiguous or not out.flags.writeable):
        raise UsageError(f"out must be a writeable C-contiguous {X.dtype} array of shape {shape}, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}", param="out")
    if idx.size == 0 or out.size == 0:
        return out
    X2, out2 = X.reshape(len(X), -1), out.reshape(idx.size, -1)
    with threads_for(out2.size):
        _gather_rows(X2, idx.astype(np.int64, copy=False), out2)
    return out
