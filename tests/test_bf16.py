"""bfloat16 support (imgclf/bf16.py, imgclf/mkl.py, imgclf/kernels/bf16.py): rounding and the bfloat16 im2col
against naive references (also under NUMBA_DISABLE_JIT=1), the boundary checks, MKL's GEMM where the CPU
and the library have it (skipped otherwise), and numba / numpy still working once MKL is loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import assert_runs_without_jit
from imgclf import bf16, mkl
from imgclf.errors import Unsupported, UsageError
from reference import bf16_round_naive, im2col_naive

needs_bf16 = pytest.mark.skipif(not bf16.available(), reason=f"bf16 GEMM unavailable: {bf16.unavailable_reason()}")

SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan, 3.4e38, -3.4e38, 3.3e38, 1e-40,
                     -1e-45, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, 65504.0, 2.0**-126], np.float32)


def _bits(values):
    return np.array(values, np.uint32).view(np.float32)


def test_rounding_matches_naive_on_specials_and_random_bits(rng):
    # every kind of float32: random bit patterns (NaNs with payloads, subnormals, huge), ties, specials
    patterns = rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)
    ties = (rng.integers(0, 2**16, 2000, dtype=np.uint32) << 16) | 0x8000
    nans = _bits([0x7F800001, 0xFF800001, 0x7FFFFFFF, 0x7FC00000, 0x7F80FFFF, 0xFFFF8000])
    x = np.concatenate([SPECIALS, patterns.view(np.float32), ties.view(np.float32), nans])
    got = bf16.to_bf16(x)
    np.testing.assert_array_equal(got, bf16_round_naive(x))
    back = bf16.from_bf16(got)
    isnan = np.isnan(x)
    assert np.isnan(back[isnan]).all(), "a NaN rounded to a number"
    assert np.array_equal(np.signbit(back[isnan]), np.signbit(x[isnan]))
    finite = np.isfinite(x) & (np.abs(x) < 3e38)
    np.testing.assert_array_less(np.abs(back[finite] - x[finite]), np.abs(x[finite]) * 2.0**-8 + 1e-38)


def test_rounding_ties_to_even_and_overflow():
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, np.finfo(np.float32).max], np.float32)
    np.testing.assert_array_equal(bf16.to_bf16(x), [0x3F80, 0x3F82, 0x7F80])


def test_rounding_keeps_shape_and_reuses_out(rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    out = np.zeros((3, 4, 5), np.uint16)
    assert bf16.to_bf16(x, out=out) is out
    np.testing.assert_array_equal(out, bf16_round_naive(x))
    np.testing.assert_array_equal(bf16.to_bf16(x[:, ::2]), bf16_round_naive(x[:, ::2]))  # non-contiguous input


@pytest.mark.parametrize("geom", [(5, 5, 3, 3, 3, 1, 1, 1), (7, 6, 2, 3, 2, 1, 0, 1), (7, 7, 4, 3, 3, 2, 1, 1),
                                  (8, 8, 3, 3, 3, 1, 2, 2), (4, 4, 2, 3, 3, 1, 5, 1), (6, 10, 2, 2, 4, 2, 1, 3)])
def test_im2col_bf16_is_rounded_im2col(geom, rng):
    H, W, C, kh, kw, s, p, d = geom
    x = rng.standard_normal((2, H, W, C)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    cols = bf16.im2col(x, kh, kw, s, p, d)
    assert cols.dtype == np.uint16
    np.testing.assert_array_equal(cols, bf16_round_naive(im2col_naive(x, kh, kw, s, p, d)))
    buf = np.full(cols.shape, 7, np.uint16)
    assert bf16.im2col(x, kh, kw, s, p, d, out=buf) is buf
    np.testing.assert_array_equal(buf, cols)


def test_boundary_checks(rng):
    with pytest.raises(UsageError, match="float32"):
        bf16.to_bf16(np.ones(3))
    with pytest.raises(UsageError, match="uint16"):
        bf16.from_bf16(np.ones(3, np.float32))
    with pytest.raises(UsageError, match="float32 images"):
        bf16.im2col(np.ones((1, 3, 3, 1)), 3, 3, 1, 1)
    with pytest.raises(UsageError, match="out must be"):
        bf16.im2col(np.ones((1, 3, 3, 1), np.float32), 3, 3, 1, 1, out=np.empty((9, 9), np.float32))
    with pytest.raises(UsageError, match="out must be"):
        bf16.to_bf16(np.ones((2, 2), np.float32), out=np.empty((2, 3), np.uint16))
    a = np.zeros((4, 3), np.uint16)
    with pytest.raises(UsageError, match="A must be a 2-d bfloat16"):
        bf16.gemm(np.zeros((4, 3), np.float32), a.T.copy())
    with pytest.raises(UsageError, match="B must be C-contiguous"):
        bf16.gemm(a, np.zeros((5, 3), np.uint16).T)
    with pytest.raises(UsageError, match="inner sizes") as err:
        bf16.gemm(a, a)
    assert err.value.param == "B"
    with pytest.raises(UsageError, match="out must be"):
        bf16.gemm(a, a, transb=True, out=np.empty((4, 4), np.float64))
    # empty products need no library
    assert bf16.gemm(np.zeros((0, 3), np.uint16), a, transb=True).shape == (0, 4)
    np.testing.assert_array_equal(bf16.gemm(np.zeros((2, 0), np.uint16), np.zeros((0, 3), np.uint16)), 0)


def test_cpu_flags_and_reasons(tmp_path, monkeypatch):
    f = tmp_path / "cpuinfo"
    f.write_text("processor : 0\nflags\t\t: fpu sse2 avx512f amx_bf16\n")
    assert "amx_bf16" in bf16.cpu_flags(str(f))
    assert bf16.cpu_flags(str(tmp_path / "none")) == frozenset()
    monkeypatch.setattr(bf16, "_cpu_reason", lambda: "this CPU has neither AVX512-BF16 nor AMX-BF16")
    assert not bf16.available()
    with pytest.raises(Unsupported, match=r"precision='bf16' needs .*pip install 'imgclf\[bf16\]'.*neither") as err:
        bf16.require()
    assert err.value.param == "precision" and err.value.exit_code == 2
    with pytest.raises(Unsupported):
        bf16.gemm(np.zeros((2, 2), np.uint16), np.zeros((2, 2), np.uint16))


def test_mkl_not_found_and_bad_override(tmp_path, monkeypatch):
    monkeypatch.setattr(mkl, "_load", mkl._load.__wrapped__)
    monkeypatch.setenv(mkl.ENV_PATH, str(tmp_path / "libmkl_rt.so.3"))
    assert "could not be loaded" in mkl.reason_missing()
    with pytest.raises(mkl.Missing):
        mkl.library()
    monkeypatch.delenv(mkl.ENV_PATH)
    monkeypatch.setattr(mkl, "candidate_paths", lambda: [])
    monkeypatch.setattr(mkl.ctypes.util, "find_library", lambda name: None)
    assert mkl.reason_missing() == "Intel MKL's runtime (libmkl_rt) was not found"


def test_candidate_paths_finds_prefix_lib(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libmkl_rt.so.2").write_bytes(b"")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert str(lib / "libmkl_rt.so.2") in mkl.candidate_paths()


@needs_bf16
@pytest.mark.parametrize("transa,transb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_accumulates_bf16_products_in_float32(transa, transb, rng):
    A = rng.standard_normal((300, 70)).astype(np.float32)
    B = rng.standard_normal((70, 50)).astype(np.float32)
    Ab, Bb = bf16.to_bf16(A), bf16.to_bf16(B)
    exact = bf16.from_bf16(Ab).astype(np.float64) @ bf16.from_bf16(Bb).astype(np.float64)
    a = np.ascontiguousarray(Ab.T) if transa else Ab
    b = np.ascontiguousarray(Bb.T) if transb else Bb
    out = np.empty((300, 50), np.float32)
    C = bf16.gemm(a, b, transa, transb, out=out)
    assert C is out
    # the bf16 inputs' products are exact in float32; only the float32 accumulation rounds
    np.testing.assert_allclose(C, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    err = np.abs(C - A @ B).max() / np.abs(A @ B).max()
    assert 1e-4 < err < 2e-2


@needs_bf16
def test_gemm_respects_imgclf_blas_threads(rng):
    from imgclf.blas import blas_threads

    A = bf16.to_bf16(rng.standard_normal((512, 256)).astype(np.float32))
    want = bf16.gemm(A, A, transb=True)
    with blas_threads(1):
        np.testing.assert_array_equal(bf16.gemm(A, A, transb=True), want)


@needs_bf16
def test_numba_parallel_and_numpy_work_after_mkl_in_one_process():
    """MKL loaded (GNU OpenMP layer) next to numba's thread pool and numpy's OpenBLAS, alternating."""
    code = textwrap.dedent("""
        import numpy as np, numba
        from imgclf import bf16
        from imgclf.kernels.im2col import im2col, col2im
        r = np.random.default_rng(0)
        x = r.standard_normal((32, 16, 16, 8)).astype(np.float32)
        cols = im2col(x, 3, 3, 1, 1)
        for _ in range(3):
            c = bf16.gemm(bf16.im2col(x, 3, 3, 1, 1), bf16.to_bf16(r.standard_normal((72, 16)).astype(np.float32)))
            dx = col2im(cols, x.shape, 3, 3, 1, 1)
            y = cols @ cols.T[:, :64]
            assert np.isfinite(c).all() and np.isfinite(dx).all() and np.isfinite(y).all()
        assert numba.get_num_threads() >= 1
        print("ok", numba.threading_layer())
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok")


def test_kernels_match_naive_without_jit():
    code = textwrap.dedent("""
        import numpy as np
        from imgclf import bf16
        from reference import bf16_round_naive, im2col_naive
        r = np.random.default_rng(0)
        x = np.concatenate([r.standard_normal(50).astype(np.float32),
                            np.array([np.nan, np.inf, -np.inf, 1 + 2**-8, 1 + 3 * 2**-8], np.float32)])
        assert np.array_equal(bf16.to_bf16(x), bf16_round_naive(x))
        im = r.standard_normal((2, 4, 5, 2)).astype(np.float32)
        for s, p, d in ((1, 1, 1), (1, 2, 2)):
            assert np.array_equal(bf16.im2col(im, 3, 3, s, p, d), bf16_round_naive(im2col_naive(im, 3, 3, s, p, d)))
        print("ok")
    """)
    assert_runs_without_jit(code)
