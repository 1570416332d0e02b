"""kernels/gather.py: the Solver's batch gather X[idx] on the thread team, and its reused buffer."""

import sys
from pathlib import Path

import numpy as np
import pytest

from imgclf.errors import UsageError
from imgclf.kernels.gather import gather_rows

sys.path.insert(0, str(Path(__file__).parent))
from conftest import assert_runs_without_jit  # noqa: E402


def _naive(X, idx):
    return np.stack([X[i].copy() for i in idx]) if len(idx) else np.empty((0,) + X.shape[1:], X.dtype)


@pytest.mark.parametrize("shape,dtype", [((50, 7), np.float32), ((40, 4, 4, 3), np.uint8), ((300, 300), np.float64),
                                         ((9,), np.float32)])
def test_gather_rows_is_the_naive_gather(shape, dtype):
    r = np.random.default_rng(0)
    X = (r.standard_normal(shape) * 50).astype(dtype)
    for idx in (r.permutation(len(X))[:len(X) // 2], np.array([3, 3, 0], np.int32), np.array([], np.int64),
                np.arange(len(X), dtype=np.uint16)):
        np.testing.assert_array_equal(gather_rows(X, idx), _naive(X, idx))
        out = np.full((len(idx),) + X.shape[1:], 7, dtype)
        assert gather_rows(X, idx, out) is out
        np.testing.assert_array_equal(out, _naive(X, idx))


def test_gather_rows_validates():
    X = np.zeros((5, 3), np.float32)
    for bad in (np.array([5]), np.array([-1]), np.array([[0]]), np.array([0.5])):
        with pytest.raises(UsageError):
            gather_rows(X, bad)
    with pytest.raises(UsageError):
        gather_rows(X.T, np.array([0]))
    for out in (np.zeros((1, 3), np.float64), np.zeros((2, 3), np.float32), np.zeros((1, 6), np.float32)[:, ::2]):
        with pytest.raises(UsageError):
            gather_rows(X, np.array([0]), out)


def test_gather_rows_runs_without_jit():
    assert_runs_without_jit(
        "import numpy as np\n"
        "from imgclf.kernels.gather import gather_rows\n"
        "X = np.arange(60, dtype=np.float32).reshape(10, 2, 3)\n"
        "idx = np.array([4, 1, 1, 9])\n"
        "assert np.array_equal(gather_rows(X, idx), np.stack([X[i] for i in idx]))\n"
        "print('ok')\n")


def test_solver_reuses_its_batch_buffer_only_when_nothing_holds_it(monkeypatch):
    import numba

    from imgclf.nn.solver import Solver

    class Model:
        params_ = {"w": np.zeros(1)}

    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    X = np.arange(20 * 16384, dtype=np.float32).reshape(20, 16384)  # batches of 5 rows: 81920 values, team-sized
    s = Solver(Model(), X, np.zeros(20, np.int64), batch_size=5)
    a = s._gather(np.array([1, 2, 3, 4, 5]))
    np.testing.assert_array_equal(a, X[1:6])
    b = s._gather(np.array([0, 6, 7, 8, 9]))  # `a` is still held: a new buffer
    assert b is not a
    np.testing.assert_array_equal(a, X[1:6])
    np.testing.assert_array_equal(b, X[[0, 6, 7, 8, 9]])
    ptrs = {a.ctypes.data, b.ctypes.data}
    del a, b
    c = s._gather(np.array([19, 18, 17, 16, 15]))  # nothing holds the buffers: one is reused (kernels/buffers.py)
    assert c.ctypes.data in ptrs
    np.testing.assert_array_equal(c, X[[19, 18, 17, 16, 15]])
    s.X_train = X.view(type("Sub", (np.ndarray,), {}))  # not a plain array: numpy's gather
    np.testing.assert_array_equal(s._gather(np.array([2, 3])), X[[2, 3]])


def test_solver_gathers_with_numpy_on_one_thread_or_small_batches(monkeypatch):
    import numba

    import imgclf.kernels.gather as gather
    from imgclf.nn.solver import Solver

    class Model:
        params_ = {"w": np.zeros(1)}

    calls = []
    monkeypatch.setattr(gather, "gather_rows", lambda *a: calls.append(1))
    X = np.arange(20 * 16384, dtype=np.float32).reshape(20, 16384)
    s = Solver(Model(), X, np.zeros(20, np.int64), batch_size=5)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)
    np.testing.assert_array_equal(s._gather(np.array([3, 1])), X[[3, 1]])
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    np.testing.assert_array_equal(s._gather(np.array([3])), X[[3]])  # 16384 values: below the team's threshold
    assert not calls
    assert gather.team_gather_pays(1 << 16) and not gather.team_gather_pays((1 << 16) - 1)
