"""The exact 8-bit covariance (AVX-512 VNNI) against naive integer references, and its refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_runs_without_jit
from imgclf.kernels import gram_u8 as g

needs_vnni = pytest.mark.skipif(not g.has_vnni(), reason="this CPU has no AVX-512 VNNI (or numba is not compiling)")


def naive_covariance(X):
    """Exact integer sums, one division: what the kernel must reproduce."""
    Xi = X.astype(np.int64)
    n = len(Xi)
    s = Xi.sum(axis=0)
    S = Xi.T @ Xi
    return (n * S - np.outer(s, s)) / (n * (n - 1.0)), s


def naive_tiles(W8, d):
    """What `_gram_tiles` computes, entry by entry: P[a, b] = sum over bytes of u8 word a times s8 (word b ^ 0x80)."""
    words = W8.reshape(W8.shape[0], -1, 4)[:, :d + 1, :]
    u = words.transpose(0, 2, 1).reshape(-1, d + 1).astype(np.int64)
    return u.T @ (u - 128)


@needs_vnni
@pytest.mark.parametrize("n,d,chunk", [(2, 1, 65536), (7, 5, 65536), (101, 70, 65536), (64, 63, 65536),
                                       (333, 130, 64), (1001, 64, 100), (1003, 200, 12)])
def test_covariance_matches_integer_reference(n, d, chunk):
    rng = np.random.default_rng(n + d)
    X = rng.integers(0, 256, (n, d), dtype=np.uint8)
    X[0] = 255  # the extremes of both operands
    X[-1] = 0
    cov, mean = g.covariance_u8(X, chunk)
    ref, ref_sums = naive_covariance(X)
    np.testing.assert_array_equal(mean, ref_sums / n)
    np.testing.assert_array_equal(cov, ref)  # exact numerator, one rounding: bit-identical
    assert np.array_equal(cov, cov.T)


@needs_vnni
def test_float_data_holding_pixels_takes_the_same_path():
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (50, 9), dtype=np.uint8)
    cov, mean = g.covariance_u8(X)
    for dtype in (np.float32, np.float64):
        c2, m2 = g.covariance_u8(X.astype(dtype))
        np.testing.assert_array_equal(c2, cov)
        np.testing.assert_array_equal(m2, mean)
    np.testing.assert_array_equal(g.covariance_u8(X[:, ::2])[0], naive_covariance(X[:, ::2])[0])  # strided view


@needs_vnni
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixels_minus_a_grid_mean_are_recovered_exactly(dtype):
    """A mean-subtracted stream of pixels (the mean on MeanSubtraction's 2^-16 grid) gives the
    integers back, so the same exact covariance; the mean is that of the shifted data."""
    from imgclf.preprocessing import MeanSubtraction

    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (301, 37), dtype=np.uint8)
    X[5, :] = 255  # pixels far above means below 128: x - mean needs 24 bits
    X[6, :] = 0
    centred = MeanSubtraction().fit_transform(X).astype(dtype)
    cov, mean = g.covariance_u8(centred, 64)
    np.testing.assert_array_equal(cov, naive_covariance(X)[0])
    np.testing.assert_allclose(mean, centred.mean(axis=0, dtype=np.float64), rtol=0, atol=1e-12)


@needs_vnni
@pytest.mark.parametrize("bad", [0.5, np.nan, np.inf, -0.25])
@pytest.mark.parametrize("row", [0, 40])
def test_values_that_are_not_pixels_are_refused(bad, row):
    X = np.full((41, 3), 7.0)
    X[row, 1] = bad
    assert g.covariance_u8(X) is None


@needs_vnni
@pytest.mark.parametrize("bad", [256.0, -1.0, 300.5])
def test_a_late_value_out_of_the_8_bit_range_is_refused(bad):
    X = np.full((41, 3), 7.0)
    X[40, 1] = bad
    assert g.covariance_u8(X) is None
    X[0, 2] = 6.0  # the first rows now look like pixels minus a shift: the column range is checked
    assert g.covariance_u8(X) is None


@needs_vnni
def test_a_shifted_column_spanning_at_most_255_is_exact():
    """256 and -1 next to 7 are pixels shifted by a constant: the covariance is exact through the shift."""
    X = np.full((41, 3), 7.0)
    X[0, 1], X[3, 2] = 256.0, -1.0
    cov, mean = g.covariance_u8(X)
    np.testing.assert_allclose(cov, np.cov(X, rowvar=False), rtol=1e-13)
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-15)


def test_too_few_rows_wrong_rank_or_other_dtypes_are_refused():
    assert g.covariance_u8(np.zeros((1, 4), np.uint8)) is None
    assert g.covariance_u8(np.zeros(4, np.uint8)) is None
    pixels = np.arange(12.0).reshape(6, 2)
    for dtype in (np.float16, ">f8", np.int64, np.longdouble):  # the float path takes these
        assert g.covariance_u8(pixels.astype(dtype)) is None


@needs_vnni
def test_chunks_never_exceed_the_int32_bound():
    """A larger max_samples is clamped to MAX_SAMPLES: 65537 rows of 255 would wrap an int32 entry."""
    X = np.full((g.MAX_SAMPLES + 1, 1), 255, np.uint8)
    X[0] = 0
    cov, mean = g.covariance_u8(X, max_samples=4 * g.MAX_SAMPLES)
    np.testing.assert_array_equal(cov, naive_covariance(X)[0])
    assert mean[0] == 255 * g.MAX_SAMPLES / len(X)


def test_features_listed_for_numba_but_missing_on_this_cpu_do_not_count(monkeypatch):
    """NUMBA_CPU_FEATURES may list +avx512vnni for a shared cache: running it here would be SIGILL."""
    from llvmlite import binding
    from numba.core import config

    from imgclf.kernels.simd import target_has

    monkeypatch.setattr(config, "DISABLE_JIT", False)
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+avx512vnni")
    monkeypatch.setattr(binding, "get_host_cpu_features", lambda: {"avx2": True, "avx512vnni": False})
    assert target_has("avx2") and not target_has("avx512vnni")
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2")
    monkeypatch.setattr(binding, "get_host_cpu_features", lambda: {"avx2": True, "avx512vnni": True})
    assert not target_has("avx512vnni")


@needs_vnni
def test_packing_and_tiles_against_naive_loops():
    rng = np.random.default_rng(3)
    n, d = 37, 21
    X = rng.integers(0, 256, (n, d), dtype=np.uint8)
    W8 = np.full((-(-n // 4), 4 * g.padded_width(d + 1)), 77, np.uint8)
    assert g.pack_u8(X, None, W8)
    for k in range(W8.shape[0]):
        for t in range(4):
            row = 4 * k + t
            assert W8[k, t] == 129
            for j in range(d):
                assert W8[k, 4 * (j + 1) + t] == (X[row, j] if row < n else 0)
    assert not W8[:, 4 * (d + 1):].any()
    P = np.zeros((-(-(d + 1) // g.MI) * g.MI, g.padded_width(d + 1)), np.int32)
    g._gram_tiles(W8.view(np.uint32), P, d + 1)
    ref = naive_tiles(W8, d)
    lower = np.tril_indices(d + 1)
    np.testing.assert_array_equal(P[:d + 1, :d + 1][lower], ref[lower])


def test_kernels_without_jit_match_naive_loops():
    """NUMBA_DISABLE_JIT=1: the Python source of packing and of the integer-to-covariance steps is what
    numba compiles; check it on a tiny input, with the tile products from the naive reference (the
    VNNI intrinsic itself cannot run interpreted, and the public function then declines)."""
    code = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_kernels_gram_u8 import naive_covariance, naive_tiles
from imgclf.kernels import gram_u8 as g
assert g.covariance_u8(np.zeros((5, 3), np.uint8)) is None
rng = np.random.default_rng(4)
n, d = 13, 6
X = rng.integers(0, 256, (n, d), dtype=np.uint8)
W8 = np.empty((-(-n // 4), 4 * g.padded_width(d + 1)), np.uint8)
assert g.pack_u8(X, None, W8) and not g.pack_u8(X + 0.5, None, W8.copy())
assert g.pack_u8(X - 0.25, np.full(d, -0.25), W8.copy())
assert np.array_equal(g._column_min(X.astype(np.float32)), X.min(axis=0))
P = naive_tiles(W8, d).astype(np.int32)
ref, sums = naive_covariance(X)
cov = np.empty((d, d))
assert np.array_equal(g._covariance(np.zeros((0, 0), np.int64), P, n, cov), sums)
assert np.array_equal(cov, ref), (cov, ref)
G = np.zeros((d + 1, d), np.int64)  # two chunks: the first accumulated, the second in P
Wa = np.empty((2, W8.shape[1]), np.uint8); Wb = np.empty((2, W8.shape[1]), np.uint8)
g.pack_u8(X[:8], None, Wa); g.pack_u8(X[8:], None, Wb)
g._accumulate(naive_tiles(Wa, d).astype(np.int32), G)
cov2 = np.empty((d, d))
g._covariance(G, naive_tiles(Wb, d).astype(np.int32), n, cov2)
assert np.array_equal(cov2, ref)

def tile(W, k0, steps, i0, j0, P):  # the intrinsic's contract, in Python, to check the tiling around it
    u = W[k0:k0 + steps].view(np.uint8).reshape(steps, -1, 4).astype(np.int64)
    a = u[:, i0:i0 + g.MI, :]
    b = u[:, j0:j0 + g.NC, :] - 128
    P[i0:i0 + g.MI, j0:j0 + g.NC] += np.einsum("kit,kjt->ij", a, b).astype(np.int32)

g._dpbusd_tile = tile
n, d = 45, 70  # two column tiles, a partial row tile
X = rng.integers(0, 256, (n, d), dtype=np.uint8)
W8 = np.empty((-(-n // 4), 4 * g.padded_width(d + 1)), np.uint8)
g.pack_u8(X, None, W8)
P = np.zeros((-(-(d + 1) // g.MI) * g.MI, g.padded_width(d + 1)), np.int32)
g._gram_tiles(W8.view(np.uint32), P, d + 1)
lower = np.tril_indices(d + 1)
assert np.array_equal(P[:d + 1, :d + 1][lower], naive_tiles(W8, d)[lower])
print("ok")
""".format(tests=str(Path(__file__).parent))
    assert_runs_without_jit(code)


@needs_vnni
def test_pca_on_pixels_agrees_with_the_float_path():
    """The same components from the exact integer covariance and from the float32-block one."""
    from imgclf.preprocessing import PCA

    rng = np.random.default_rng(7)
    base = rng.integers(0, 200, (600, 1, 1, 1)) + rng.integers(0, 56, (600, 3, 4, 4))
    X = base.astype(np.uint8)
    exact = PCA(dims=5).fit(X)
    shifted = PCA(dims=5).fit(X.astype(np.float64) + 0.5)  # not integers: the float path
    np.testing.assert_allclose(exact.mean_.ravel() + 0.5, shifted.mean_.ravel(), rtol=1e-12)
    np.testing.assert_allclose(exact.explained_variance_, shifted.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(np.abs(exact.components_ @ shifted.components_.T), np.eye(5), atol=1e-6)


def test_a_generic_numba_target_takes_the_portable_paths(tmp_path):
    """NUMBA_CPU_NAME=generic (portable caches): the SIMD intrinsics would abort the process inside LLVM,
    so the probes must look at numba's target, not at the host CPU."""
    code = """
import numpy as np
from imgclf.kernels.gram_u8 import covariance_u8, has_vnni
from imgclf.kernels.simd import has_avx2
from imgclf.kernels.distances import kneighbors
X = np.random.default_rng(0).integers(0, 256, (40, 33), dtype=np.uint8)
assert not has_vnni() and not has_avx2()
assert covariance_u8(X) is None
d = np.abs(X[:3, None, :].astype(np.int64) - X[None, :, :]).sum(-1)
assert np.array_equal(kneighbors(X[:3], X, 2, "l1")[0], np.sort(d, axis=1)[:, :2])
print("ok")
"""
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
