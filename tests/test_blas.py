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
