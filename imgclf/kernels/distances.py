"""Exact k-nearest-neighbour search under L2 and L1, in bounded memory.

L2 (squared Euclidean): |x|^2 - 2 x.y + |y|^2 with the cross term from a float32 BLAS GEMM, then one
fused numba pass per query row over its GEMM row that adds the norms and keeps the K = k + extra
smallest *lower bounds* of the distance. float32 rounds x.y (up to ~2e8 on CIFAR pixels), so the
candidates are re-ranked with exact distances (float64 sums: exact integers for uint8 data), and
the classic dot-product error bound |fl(x.y) - x.y| <= gamma_D |x||y| proves the result exact: if the
K-th lower bound exceeds the exact k-th distance no other row can enter; otherwise (rare: near-ties)
a second pass over the same GEMM row re-ranks every row whose lower bound could. The answer is the
exact k nearest by (distance, training index), at the speed of the GEMM.

L1: exact integer sums of absolute differences on uint8 rows (AVX2 `vpsadbw` micro-tiles when the
CPU has them, else a loop LLVM vectorises itself), float64 sums on float32 rows; cache-blocked over
training tiles, parallel over query rows, neighbours selected in the same pass.

Memory: queries go through in blocks; the float32 copy of uint8 training rows and the GEMM block
are sized from `memory_mb`, so the query x train matrix is never materialised unless it fits.
"""

from __future__ import annotations

import numpy as np
import numba
from numba import njit, prange

from ..config import DEFAULT_MEMORY_MB, METRICS
from ..errors import UsageError
from .simd import TILE_C, TILE_R, VEC, _sad_tile, has_avx2
from .topk import EMPTY, _after, _push, empty_heaps, sort_heaps

_UNIT = 2.0 ** -24  # float32 unit roundoff
_SLACK = 1e-12  # relative allowance for the float64 arithmetic around the bound
_TILE_BYTES = 384 * 1024  # training rows per L1 tile: a few hundred KB stays in a core's L2 cache
_L1_BLOCK = 2048  # query rows per L1 call (progress granularity; the heaps are the only state)


# --------------------------------------------------------------------------------------------------
# exact pairwise pieces


@njit(cache=True, fastmath={"reassoc"})
def _sqdist(x, y):
    """Squared L2 in float64: exact for uint8 rows (integer sums below 2**53, so any summation
    order gives the same result, which is why reassociation - and with it SIMD - is allowed)."""
    s = 0.0
    for t in range(x.shape[0]):
        d = np.float64(x[t]) - np.float64(y[t])
        s += d * d
    return s


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _sqnorms(X):
    out = np.empty(X.shape[0])
    for i in prange(X.shape[0]):
        s = 0.0
        for t in range(X.shape[1]):
            v = np.float64(X[i, t])
            s += v * v
        out[i] = s
    return out


@njit(parallel=True, cache=True)
def _to_float32(src, dst):
    """dst[:] = src, on all cores (numpy's single-threaded cast would cost a tenth of the GEMM)."""
    for i in prange(src.shape[0]):
        for t in range(src.shape[1]):
            dst[i, t] = np.float32(src[i, t])


@njit(cache=True)
def _l1_u8(x, y, start):
    """Exact L1 of uint8 rows from `start`; int32 lanes so LLVM vectorises it (even into psadbw)."""
    s = np.int32(0)
    for t in range(start, x.shape[0]):
        d = np.int32(np.int16(x[t]) - np.int16(y[t]))
        s = np.int32(s + np.int32(abs(d)))
    return s


@njit(cache=True, fastmath={"reassoc"})
def _l1_float(x, y):
    """L1 of float rows, float64 sums; reassociation only here, so the sum vectorises."""
    s = 0.0
    for t in range(x.shape[0]):
        s += abs(np.float64(x[t]) - np.float64(y[t]))
    return s


# --------------------------------------------------------------------------------------------------
# L2: fused norms + lower bound + candidate selection over a GEMM block, exact re-ranking


@njit(cache=True, inline="always")
def _lower(xn, yn, g, cx, yr):
    """A lower bound of |x - y|^2 from the float32 cross term g (cx = 2 gamma |x|, yr = |y|)."""
    return (xn + yn - 2.0 * np.float64(g)) - cx * yr - _SLACK * (xn + yn)


@njit(parallel=True, cache=True)
def _l2_block(G, Xq, Y, j0, xn, yn, yr, coef, K, hd, hi, second):
    """Merge training rows j0 .. j0+G.shape[1] into the exact heaps hd/hi of the query rows.

    G[i, jj] = float32 x_i . y_(j0+jj); coef = 2 gamma_D; second[i] counts second passes (near-ties).
    A row whose lower bound exceeds the current exact k-th distance bd[0] can never enter, so it is
    not even a candidate: after the first chunk most rows cost one comparison.
    """
    nb, m = G.shape
    for i in prange(nb):
        cl = np.full(K, np.inf)
        cj = np.full(K, EMPTY)
        cx = coef * np.sqrt(xn[i])
        bd, bi = hd[i], hi[i]
        for jj in range(m):
            j = j0 + jj
            low = _lower(xn[i], yn[j], G[i, jj], cx, yr[j])
            # the root tests inline: a call per element (array arguments and all) would cost more
            # than the rest of the pass
            if low <= bd[0] and _after(cl[0], cj[0], low, j):
                _push(cl, cj, low, j)
        x = Xq[i]
        for s in range(K):
            if cj[s] != EMPTY and cl[s] <= bd[0]:
                _push(bd, bi, _sqdist(x, Y[cj[s]]), cj[s])
        # A full candidate heap whose K-th bound does not clear the exact k-th distance: rows pushed
        # out of it might still tie or win; re-rank every one whose bound allows it.
        if cj[0] != EMPTY and not cl[0] > bd[0]:
            second[i] += 1
            lb, jb = cl[0], cj[0]
            for jj in range(m):
                j = j0 + jj
                low = _lower(xn[i], yn[j], G[i, jj], cx, yr[j])
                if low <= bd[0] and _after(low, j, lb, jb):
                    _push(bd, bi, _sqdist(x, Y[j]), j)


def _candidates(k: int) -> int:
    return k + max(8, k // 4)


def _l2_plan(n_query: int, n_train: int, dim: int, memory_mb: int) -> tuple[int, int]:
    """(query block rows, training chunk rows): float32 copies + the GEMM block fit the budget.

    Training chunks of about an eighth of the budget leave the rest to a query block as tall as
    possible, ideally all queries, so that each chunk is converted to float32 once; the GEMM is as
    efficient on a few thousand columns as on all of them.
    """
    budget = max(int(memory_mb), 1) * 2 ** 20
    chunk = int(min(n_train, max(256, budget // 8 // (4 * dim))))
    rest = max(budget - 4 * chunk * dim, budget // 8)
    block = int(max(1, rest // (4 * dim + 4 * chunk)))
    return min(block, n_query), chunk


def _l2_search(Xq, Y, k, memory_mb, y_sqnorms, progress, stats):
    n, dim = Xq.shape
    m = Y.shape[0]
    block, chunk = _l2_plan(n, m, dim, memory_mb)
    yn = _sqnorms(Y) if y_sqnorms is None else y_sqnorms
    yr = np.sqrt(yn)
    gamma = (dim + 2) * _UNIT / (1 - (dim + 2) * _UNIT)
    K = _candidates(k)
    hd, hi = empty_heaps(n, k)
    second = np.zeros(n, dtype=np.int64)
    copy = Y.dtype != np.float32
    Yf = np.empty((chunk, dim), dtype=np.float32) if copy else None  # reused: one chunk alive at a time
    G = np.empty((block, chunk), dtype=np.float32)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        Xb = Xq[b0:b1]
        if copy:
            Xf = np.empty(Xb.shape, dtype=np.float32)
            _to_float32(Xb, Xf)
        else:
            Xf = Xb
        xn = _sqnorms(Xb)
        for c0 in range(0, m, chunk):
            c1 = min(m, c0 + chunk)
            if copy:
                Yc = Yf[: c1 - c0]
                _to_float32(Y[c0:c1], Yc)
            else:
                Yc = Y[c0:c1]
            Gb = G[: b1 - b0, : c1 - c0]
            np.matmul(Xf, Yc.T, out=Gb)
            _l2_block(Gb, Xb, Y, c0, xn, yn, yr, 2.0 * gamma, min(K, c1 - c0), hd[b0:b1], hi[b0:b1], second[b0:b1])
            if progress is not None:  # in query rows: one block may be all of them
                progress((b1 - b0) * (c1 - c0) / m)
    if stats is not None:
        stats.update(second_passes=int(second.sum()), query_block=block, train_chunk=chunk)
    return hd, hi


# --------------------------------------------------------------------------------------------------
# L1: tiled kernels with selection in the same pass


def _tile_rows(dim: int) -> int:
    rows = max(TILE_C, _TILE_BYTES // max(dim, 1))
    return rows - rows % TILE_C  # whole micro-tiles, so a tile never spills into the next one


@njit(parallel=True, cache=True)
def _l1_u8_avx2(Xq, Y, hd, hi, tile, nseg):
    """Exact uint8 L1 with vpsadbw micro-tiles; needs Xq.shape[0] >= TILE_R and Y.shape[0] >= TILE_C."""
    n, dim = Xq.shape
    m = Y.shape[0]
    nvec = dim // VEC
    body = nvec * VEC
    groups = (n + TILE_R - 1) // TILE_R
    nseg = min(groups, nseg)
    for s in prange(nseg):
        sums = np.empty(TILE_R * TILE_C, dtype=np.int64)
        g0, g1 = s * groups // nseg, (s + 1) * groups // nseg
        for t0 in range(0, m, tile):
            t1 = min(m, t0 + tile)
            for g in range(g0, g1):
                first = g * TILE_R
                i0 = min(first, n - TILE_R)  # the last group overlaps its neighbour; skip those rows
                for j in range(t0, t1, TILE_C):
                    jj = min(j, m - TILE_C)
                    _sad_tile(Xq, Y, i0, jj, nvec, sums)
                    for r in range(TILE_R):
                        i = i0 + r
                        if i < first:
                            continue
                        for c in range(TILE_C):
                            jc = jj + c
                            if jc < j:
                                continue
                            d = np.float64(sums[r * TILE_C + c] + _l1_u8(Xq[i], Y[jc], body))
                            if _after(hd[i, 0], hi[i, 0], d, jc):
                                _push(hd[i], hi[i], d, jc)


@njit(parallel=True, cache=True)
def _l1_portable(Xq, Y, hd, hi, tile, is_u8, nseg):
    n = Xq.shape[0]
    m = Y.shape[0]
    nseg = min(n, nseg)
    for s in prange(nseg):
        r0, r1 = s * n // nseg, (s + 1) * n // nseg
        for t0 in range(0, m, tile):
            t1 = min(m, t0 + tile)
            for i in range(r0, r1):
                x = Xq[i]
                bd, bi = hd[i], hi[i]
                for j in range(t0, t1):
                    if is_u8:
                        d = np.float64(_l1_u8(x, Y[j], 0))
                    else:
                        d = _l1_float(x, Y[j])
                    if _after(bd[0], bi[0], d, j):
                        _push(bd, bi, d, j)


def _l1_search(Xq, Y, k, progress, stats):
    n, dim = Xq.shape
    m = Y.shape[0]
    hd, hi = empty_heaps(n, k)
    tile = _tile_rows(dim)
    simd = Xq.dtype == np.uint8 and has_avx2() and dim >= VEC and m >= TILE_C
    # Several segments per thread: each walks the training tiles over its own query rows, and
    # the spare segments even out threads slowed by other work on the machine.
    nseg = 4 * numba.get_num_threads()
    for b0 in range(0, n, _L1_BLOCK):
        b1 = min(n, b0 + _L1_BLOCK)
        if simd and b1 - b0 >= TILE_R:
            _l1_u8_avx2(Xq[b0:b1], Y, hd[b0:b1], hi[b0:b1], tile, nseg)
        else:
            _l1_portable(Xq[b0:b1], Y, hd[b0:b1], hi[b0:b1], tile, Xq.dtype == np.uint8, nseg)
        if progress is not None:
            progress(b1 - b0)
    if stats is not None:
        stats.update(simd="avx2" if simd else "portable", query_block=_L1_BLOCK, train_tile=tile)
    return hd, hi


# --------------------------------------------------------------------------------------------------
# public entry point


def _as_rows(X, name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise UsageError(f"{name} must be 2-D (rows, features), got shape {X.shape}")
    if X.dtype == np.uint8:
        return np.ascontiguousarray(X)
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise UsageError(f"{name} must hold real numbers, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise UsageError(f"{name} contains NaN or infinite values")
    return X


def kneighbors(Xq, Y, k: int, metric: str = "l2", *, memory_mb: int = DEFAULT_MEMORY_MB,
               y_sqnorms: np.ndarray | None = None, progress=None, stats: dict | None = None):
    """The exact k nearest training rows of every query row.

    Xq (n, D) and Y (m, D): uint8 (exact integer distances) or float (computed as float32 data,
    distances summed in float64). Returns (distances, indices), both (n, k), each row sorted by
    distance then training index. L2 distances are *squared* Euclidean. `y_sqnorms` may pass
    precomputed float64 squared norms of Y; `progress(n_rows)` is called as query rows are done (fractions
    of rows for L2, per training chunk);
    `stats`, if given, receives block sizes and how often the exactness check needed a second pass.
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    Xq, Y = _as_rows(Xq, "the query data"), _as_rows(Y, "the training data")
    if Xq.shape[1] != Y.shape[1]:
        raise UsageError(f"the query rows have {Xq.shape[1]} features but the training rows {Y.shape[1]}")
    if Y.shape[0] == 0:
        raise UsageError("the training data is empty")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= Y.shape[0]:
        raise UsageError(f"k must be an integer between 1 and the number of training rows ({Y.shape[0]}), got {k!r}")
    if Xq.dtype != Y.dtype:  # one uint8, one float: compare as float32
        Xq, Y, y_sqnorms = Xq.astype(np.float32), Y.astype(np.float32), None
    if Xq.shape[0] == 0:
        return np.empty((0, k)), np.empty((0, k), dtype=np.int64)
    if metric == "l2":
        hd, hi = _l2_search(Xq, Y, int(k), memory_mb, y_sqnorms, progress, stats)
    else:
        hd, hi = _l1_search(Xq, Y, int(k), progress, stats)
    return sort_heaps(hd, hi)


def sqnorms(X: np.ndarray) -> np.ndarray:
    """float64 squared row norms (exact for uint8), to pass as `y_sqnorms`."""
    return _sqnorms(_as_rows(X, "the data"))
