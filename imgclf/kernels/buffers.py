"""Recycled big output arrays for the kernels' wrappers.

A fresh numpy array of tens of MB is mmapped by malloc and every page faults on first write; on the
2-core VM (transparent huge pages on madvise, which numpy asks for) that cost more than the
kernels writing them: the dx pass over a 512x15x15x256 map ran 143 ms in a training step, 18 ms on a warm
buffer. So the big arrays the wrappers return (kernels/batchnorm.py's) come from a small pool, and a pooled array is handed out
again only once nothing but the pool references it (its reference count: views of it count too), so an
array a caller still holds is never overwritten. Each training step frees and asks for the same shapes.
The pool keeps at most POOL_SIZE arrays alive (least recently handed out dropped first).
Arrays from 256 KB up are pooled: the convnet's 2 MB pooled outputs and winners (64x16x16x32 float32)
still faulted every page when fresh (the forward pass of a 64x32x32x32 batch norm + ReLU + pool took
3.1 ms with a 4 MB threshold, 1.1 ms with this one).
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

POOL_MIN_BYTES = 1 << 18
POOL_SIZE = 64
_POOL: list = []  # most recently handed out last
_LOCK = threading.Lock()  # a search and its removal must not interleave with another thread's


def empty(shape, dtype):
    """np.empty(shape, dtype), for arrays of POOL_MIN_BYTES or more a recycled one when one is free."""
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    if math.prod(shape) * dtype.itemsize < POOL_MIN_BYTES:  # math.prod: np.prod costs ~4 us a call
        return np.empty(shape, dtype)
    with _LOCK:
        return _take(shape, dtype)


def _free_references() -> int:
    """sys.getrefcount of an array only a list holds, read as _take reads it (the list, a local name,
    getrefcount's argument: 3 on CPython up to 3.13); measured, not assumed, so an interpreter that counts
    borrowed references differently never sees a held array as free."""
    pool = [np.empty(0)]
    buf = pool[0]
    return sys.getrefcount(buf)


_FREE = _free_references()


def _take(shape, dtype):
    for i in range(len(_POOL)):
        buf = _POOL[i]
        if buf.shape == shape and buf.dtype == dtype and sys.getrefcount(buf) == _FREE:
            del _POOL[i]
            break
    else:
        buf = np.empty(shape, dtype)
        if len(_POOL) >= POOL_SIZE:
            del _POOL[0]
    _POOL.append(buf)
    return buf
