"""im2col / col2im kernels (imgclf.kernels.im2col) against the naive loops, plus geometry errors."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from conftest import assert_runs_without_jit
from imgclf.errors import UsageError
from imgclf.kernels.im2col import col2im, im2col, output_size
from reference import im2col_naive

# (H, W, C, KH, KW, stride, pad, dilation): odd/even sizes, strides, pads larger than the filter, dilation.
GEOMETRIES = [
    (5, 5, 3, 3, 3, 1, 1, 1),
    (7, 6, 2, 3, 2, 1, 0, 1),
    (7, 7, 4, 3, 3, 2, 1, 1),
    (8, 8, 3, 3, 3, 1, 2, 2),
    (5, 5, 1, 1, 1, 1, 0, 1),
    (4, 4, 2, 3, 3, 1, 5, 1),
    (9, 9, 3, 3, 3, 2, 2, 2),
    (6, 10, 2, 2, 4, 2, 1, 3),
]


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_im2col_matches_naive_and_col2im_is_its_adjoint(geom, rng):
    H, W, C, kh, kw, s, p, d = geom
    x = rng.standard_normal((2, H, W, C))
    cols = im2col(x, kh, kw, s, p, d)
    np.testing.assert_array_equal(cols, im2col_naive(x, kh, kw, s, p, d))
    g = rng.standard_normal(cols.shape)
    dx = col2im(g, x.shape, kh, kw, s, p, d)
    # <im2col(x), g> == <x, col2im(g)> for every x, g: col2im is exactly the transpose of im2col.
    assert np.sum(cols * g) == pytest.approx(np.sum(x * dx), rel=1e-12, abs=1e-12)
    # and entry by entry: col2im(g)[pixel] sums g over every column that copied that pixel.
    idx = np.arange(x.size, dtype=np.float64).reshape(x.shape) + 1
    src = im2col_naive(idx, kh, kw, s, p, d).astype(np.int64)
    want = np.zeros(x.size + 1)
    np.add.at(want, src.ravel(), g.ravel())
    np.testing.assert_allclose(dx.ravel(), want[1:], rtol=1e-12, atol=1e-12)


def test_float32_and_reused_buffers(rng):
    x = rng.standard_normal((3, 6, 6, 4)).astype(np.float32)
    buf = np.full((3 * 36, 36), np.nan, np.float32)
    cols = im2col(x, 3, 3, 1, 1, out=buf)
    assert cols is buf and cols.dtype == np.float32
    np.testing.assert_array_equal(cols, im2col_naive(x, 3, 3, 1, 1))
    dxbuf = np.full(x.shape, np.nan, np.float32)
    assert col2im(cols, x.shape, 3, 3, 1, 1, out=dxbuf) is dxbuf
    assert np.isfinite(dxbuf).all()


@pytest.mark.parametrize("size,field,stride,pad,dil,want", [
    (32, 3, 1, 1, 1, 32), (32, 5, 1, 2, 1, 32), (7, 3, 2, 1, 1, 4), (8, 3, 1, 2, 2, 8), (5, 5, 1, 0, 1, 1)])
def test_output_size(size, field, stride, pad, dil, want):
    assert output_size(size, field, stride, pad, dil) == want


def test_bad_geometry_is_a_clear_usage_error(rng):
    x = rng.standard_normal((1, 8, 8, 3))
    with pytest.raises(UsageError, match=r"\(8 - 3 \+ 2\*0\)/2 \+ 1 = 3.5 is not an integer"):
        im2col(x, 3, 3, stride=2, pad=0)
    with pytest.raises(UsageError, match="does not fit"):
        im2col(x, 11, 11, 1, 1)
    with pytest.raises(UsageError, match="stride must be an integer >= 1"):
        im2col(x, 3, 3, stride=0)
    with pytest.raises(UsageError, match="dilation"):
        im2col(x, 3, 3, dilation=0)
    with pytest.raises(UsageError, match=r"\(N, H, W, C\)"):
        im2col(x[0], 3, 3)
    with pytest.raises(UsageError, match="float32 or float64"):
        im2col(x.astype(np.uint8), 3, 3, 1, 1)
    with pytest.raises(UsageError, match="expected columns of shape"):
        col2im(np.zeros((5, 27)), x.shape, 3, 3, 1, 1)
    with pytest.raises(UsageError, match="buffer must be"):
        im2col(x, 3, 3, 1, 1, out=np.zeros((3, 3)))


def test_kernels_match_naive_without_jit():
    """The kernels' Python source (NUMBA_DISABLE_JIT=1) gives the same answers on tiny inputs."""
    code = textwrap.dedent("""
        import numpy as np
        from imgclf.kernels.im2col import im2col, col2im
        from reference import im2col_naive
        r = np.random.default_rng(0)
        for H, W, C, kh, kw, s, p, d in [(5, 5, 2, 3, 3, 1, 1, 1), (7, 7, 2, 2, 2, 2, 1, 2)]:
            x = r.standard_normal((2, H, W, C))
            cols = im2col(x, kh, kw, s, p, d)
            assert np.array_equal(cols, im2col_naive(x, kh, kw, s, p, d))
            g = r.standard_normal(cols.shape)
            assert abs(np.sum(cols * g) - np.sum(x * col2im(g, x.shape, kh, kw, s, p, d))) < 1e-10
        print("ok")
    """)
    assert_runs_without_jit(code, timeout=120)
