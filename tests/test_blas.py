import numpy as np

from imgclf.blas import _openblas, blas_threads


def test_blas_threads_is_restored_and_products_still_right():
    api = _openblas()
    before = api[1]() if api else None
    a = np.arange(12.0).reshape(3, 4)
    with blas_threads(1):
        if api:
            assert api[1]() == 1
        np.testing.assert_array_equal(a @ a.T, np.einsum("ij,kj->ik", a, a))
    if api:
        assert api[1]() == before


def test_gram_lower_is_the_lower_triangle_of_a_transposed_product():
    from imgclf.blas import gram_lower

    r = np.random.default_rng(0)
    for dtype, tol in [(np.float32, 1e-5), (np.float64, 1e-13)]:
        A = r.standard_normal((50, 7)).astype(dtype)
        out = np.full((7, 7), -1.0, dtype=dtype)
        if not gram_lower(A, out):
            continue  # no OpenBLAS to call directly: callers fall back to numpy
        ref = A.T.astype(np.float64) @ A
        np.testing.assert_allclose(np.tril(out), np.tril(ref), rtol=tol)
        assert np.all(out[np.triu_indices(7, 1)] == -1.0)  # the upper triangle is left alone
    assert not gram_lower(np.zeros((3, 4), dtype=np.float32).T, np.zeros((3, 3), dtype=np.float32))
    A = np.zeros((5, 3), np.float32)
    assert not gram_lower(A, np.zeros((4, 4), np.float32))  # out of the wrong shape
    assert not gram_lower(A, np.zeros((3, 3), np.float64))  # or dtype
    assert not gram_lower(A, A[:3])  # out overlapping A
    unaligned = np.frombuffer(np.zeros(10 * 4 + 1, np.uint8).data, np.float32, 9, offset=1).reshape(3, 3)
    assert not gram_lower(A, unaligned)


def test_numpys_openblas_is_found_by_path_component_not_substring(monkeypatch):
    from imgclf import blas

    site = "/home/numpyfan/venv-numpy2/lib/python3.11/site-packages"
    assert blas._is_numpys(f"{site}/numpy.libs/libscipy_openblas64_-32a4b2a6.so")
    assert blas._is_numpys("/opt/py/site-packages/numpy/.dylibs/libscipy_openblas64_.dylib")
    assert not blas._is_numpys(f"{site}/scipy.libs/libscipy_openblas-c128ec02.so")
    assert not blas._is_numpys("/usr/lib/numpy-openblas/libopenblas.so.0")
    assert not blas._is_numpys("/usr/lib/libnumpy.so")
    opened = []

    def cdll(path):
        opened.append(path)
        raise OSError(path)

    monkeypatch.setattr(blas, "_openblas_paths", lambda: [f"{site}/scipy.libs/libscipy_openblas-c128ec02.so",
                                                          f"{site}/numpy.libs/libscipy_openblas64_-32a4b2a6.so"])
    monkeypatch.setattr(blas.ctypes, "CDLL", cdll)
    assert blas._cblas.__wrapped__("gemm", "s") is None
    assert opened == [f"{site}/numpy.libs/libscipy_openblas64_-32a4b2a6.so"]  # scipy's library left alone
