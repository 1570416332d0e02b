"""The kNN kernels against the naive references: exact neighbours, ties, budgets, SIMD and portable paths."""

from __future__ import annotations


import numpy as np
import pytest

from conftest import assert_runs_without_jit
from imgclf.errors import UsageError
from imgclf.kernels.distances import _l1_portable, _tile_rows, kneighbors, sqnorms
from imgclf.kernels.simd import has_avx2
from imgclf.kernels.topk import empty_heaps, smallest_k, sort_heaps
from reference import knn_distances_naive, knn_select_naive



def _data(rng, n, m, d, dtype, levels=256):
    if dtype == np.uint8:
        Xq = rng.integers(0, levels, (n, d)).astype(np.uint8)
        Y = rng.integers(0, levels, (m, d)).astype(np.uint8)
    else:
        Xq = rng.standard_normal((n, d)).astype(np.float32)
        Y = rng.standard_normal((m, d)).astype(np.float32)
    Y[1::4] = Y[0]  # duplicate rows: equal distances, decided by index
    return Xq, Y


def _check(Xq, Y, k, metric, **kw):
    dist, idx = kneighbors(Xq, Y, k, metric, **kw)
    rd, ri = knn_select_naive(knn_distances_naive(Xq, Y, metric), k)
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_allclose(dist, rd, rtol=1e-9 if Xq.dtype == np.uint8 else 1e-6)
    if Xq.dtype == np.uint8:
        np.testing.assert_array_equal(dist, rd)  # integers: exact


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("n,m,d,k", [(9, 13, 70, 1), (9, 13, 70, 5), (6, 11, 33, 11), (5, 7, 3, 7), (1, 1, 1, 1)])
def test_matches_reference(rng, metric, dtype, n, m, d, k):
    Xq, Y = _data(rng, n, m, d, dtype)
    _check(Xq, Y, k, metric)


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_many_ties_go_to_lower_index(rng, metric):
    Xq, Y = _data(rng, 12, 40, 6, np.uint8, levels=2)  # few distinct distances
    _check(Xq, Y, 1, metric)
    _check(Xq, Y, 17, metric)
    _check(Xq, Y, 40, metric)


def test_l2_exact_where_float32_rounds(rng):
    """Norms near 1e8 with neighbours 1, 2, 3 ... apart: float32 cross terms cannot order these."""
    x = rng.integers(100, 156, 3072).astype(np.uint8)
    Y = np.repeat(x[None], 30, axis=0)
    for j in range(30):  # row j differs from x by sqrt(30 - j) units in a few pixels
        Y[j, : 30 - j] += 1
    Y = Y[rng.permutation(30)]
    stats = {}
    dist, idx = kneighbors(x[None], Y, 5, "l2", stats=stats)
    rd, ri = knn_select_naive(knn_distances_naive(x[None], Y, "l2"), 5)
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_array_equal(dist, rd)
    assert stats["second_passes"] >= 1  # the error bound caught the near-ties


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_small_budget_blocks_and_chunks(rng, dtype):
    Xq, Y = _data(rng, 40, 600, 1100, dtype)
    stats = {}
    dist, idx = kneighbors(Xq, Y, 4, "l2", memory_mb=1, stats=stats)
    assert stats["train_chunk"] < 600 and stats["query_block"] < 40
    # exact squared distances row by row (int64 for uint8): the naive loops are too slow at this size
    ref = np.array([((Y.astype(np.int64 if dtype == np.uint8 else np.float64) - x) ** 2).sum(1) for x in Xq])
    rd, ri = knn_select_naive(ref, 4)
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_allclose(dist, rd, rtol=1e-6)


def test_l1_simd_and_portable_agree(rng):
    """Row counts off the micro-tile grid and a feature count off the 32-byte vector width."""
    Xq, Y = _data(rng, 2053 + 6, 301, 3 * 32 + 7, np.uint8)
    dist, idx = kneighbors(Xq, Y, 3, "l1")
    hd, hi = empty_heaps(len(Xq), 3)
    _l1_portable(Xq, Y, hd, hi, _tile_rows(Xq.shape[1]), True, 4)
    pd, pi = sort_heaps(hd, hi)
    np.testing.assert_array_equal(idx, pi)
    np.testing.assert_array_equal(dist, pd)
    rd, ri = knn_select_naive(knn_distances_naive(Xq[:7], Y, "l1"), 3)
    np.testing.assert_array_equal(idx[:7], ri)


@pytest.mark.skipif(not has_avx2(), reason="no AVX2 on this CPU")
def test_l1_kernels_use_psadbw():
    """Both uint8 L1 paths end up in vpsadbw: the intrinsic, and LLVM's own vectorisation of the loop."""
    from numba import njit

    from imgclf.kernels import distances
    from imgclf.kernels.simd import _sad_tile

    @njit
    def tile(X, out):
        _sad_tile(X, X, 0, 0, 2, out)

    X = np.arange(8 * 64, dtype=np.uint8).reshape(8, 64)
    out = np.empty(12, np.int64)
    tile(X, out)
    assert out[1] == np.abs(X[0].astype(int) - X[1]).sum()
    row = njit(distances._l1_u8.py_func)  # fresh: cached code cannot be inspected
    assert row(X[0], X[1], 0) == out[1]
    for fn in (tile, row):
        assert "psadbw" in "\n".join(fn.inspect_asm().values()), fn


def test_mixed_dtypes_compare_as_float(rng):
    Xq, Y = _data(rng, 5, 9, 8, np.uint8)
    a = kneighbors(Xq.astype(np.float64), Y, 3, "l2")
    b = kneighbors(Xq, Y, 3, "l2")
    np.testing.assert_array_equal(a[1], b[1])


def test_precomputed_norms(rng):
    Xq, Y = _data(rng, 5, 9, 8, np.uint8)
    np.testing.assert_array_equal(kneighbors(Xq, Y, 3, y_sqnorms=sqnorms(Y))[1], kneighbors(Xq, Y, 3)[1])


def test_empty_queries():
    d, i = kneighbors(np.zeros((0, 4), np.uint8), np.zeros((3, 4), np.uint8), 2)
    assert d.shape == (0, 2) and i.shape == (0, 2)


def test_smallest_k_matches_reference(rng):
    D = rng.integers(0, 5, (7, 20)).astype(np.float64)
    for k in (1, 6, 20):
        got = smallest_k(D, k)
        want = knn_select_naive(D, k)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("call,message", [
    (lambda X: kneighbors(X, X, 0), "k must be"),
    (lambda X: kneighbors(X, X, 5), "k must be"),
    (lambda X: kneighbors(X, X, 1, "cosine"), "unknown metric"),
    (lambda X: kneighbors(X, X[:, :2], 1), "features"),
    (lambda X: kneighbors(np.full((2, 3), np.nan), X.astype(np.float32), 1), "NaN"),
    (lambda X: kneighbors(X, X[:0], 1), "empty"),
    (lambda X: kneighbors(X[0], X, 1), "2-D"),
    (lambda X: smallest_k(np.zeros((2, 3)), 4), "k must be"),
])
def test_bad_input(call, message):
    X = np.arange(12, dtype=np.uint8).reshape(4, 3)
    with pytest.raises(UsageError, match=message):
        call(X)


def test_without_jit_matches_reference():
    """The same kernels interpreted (NUMBA_DISABLE_JIT=1): the portable paths, small sizes."""
    code = """
import numpy as np, sys
sys.path.insert(0, 'tests')
from imgclf.kernels.distances import kneighbors
from imgclf.kernels.topk import smallest_k
from reference import knn_distances_naive, knn_select_naive
rng = np.random.default_rng(3)
for dtype in (np.uint8, np.float32):
    for metric in ('l2', 'l1'):
        Xq = (rng.integers(0, 3, (5, 9)) if dtype == np.uint8 else rng.standard_normal((5, 9))).astype(dtype)
        Y = (rng.integers(0, 3, (12, 9)) if dtype == np.uint8 else rng.standard_normal((12, 9))).astype(dtype)
        Y[1::3] = Y[0]
        for k in (1, 4, 12):
            d, i = kneighbors(Xq, Y, k, metric, memory_mb=1)
            rd, ri = knn_select_naive(knn_distances_naive(Xq, Y, metric), k)
            assert np.array_equal(i, ri), (dtype, metric, k)
            assert np.allclose(d, rd)
D = rng.integers(0, 4, (3, 10)).astype(float)
assert np.array_equal(smallest_k(D, 4)[1], knn_select_naive(D, 4)[1])
print("ok")
"""
    assert_runs_without_jit(code)
