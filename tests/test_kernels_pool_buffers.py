"""kernels/buffers.py's recycled output arrays (kernels/batchnorm.py's outputs): a big array is handed out again only when nothing else
references it (not the caller, not a view of it), and results through recycled buffers are unchanged."""

from __future__ import annotations

import numpy as np

from imgclf.kernels import buffers
from imgclf.nn import conv


def test_a_held_buffer_is_never_handed_out_again():
    shape = (1 << 20,)
    a = buffers.empty(shape, np.float32)
    b = buffers.empty(shape, np.float32)
    assert not np.shares_memory(a, b)
    view = b.reshape(1024, 1024)
    del b
    c = buffers.empty(shape, np.float32)
    assert not np.shares_memory(c, view) and not np.shares_memory(c, a)
    pa = a.ctypes.data
    del a
    assert buffers.empty(shape, np.float32).ctypes.data == pa  # free again: recycled
    small = buffers.empty((10,), np.float32)
    assert all(small is not p for p in buffers._POOL)
    assert len(buffers._POOL) <= buffers.POOL_SIZE


def test_repeated_steps_through_recycled_buffers_give_the_same_numbers(rng, monkeypatch):
    monkeypatch.setattr(buffers, "POOL_MIN_BYTES", 64)  # small arrays go through the pool too
    x = (rng.standard_normal((4, 7, 6, 8)) * 2 + 0.3).astype(np.float32)
    gamma, beta = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)

    def step(fwd, bwd):
        out, cache = fwd(x, gamma, beta, np.zeros(8, np.float32), np.ones(8, np.float32), "train")
        dx, g = bwd(np.ones_like(out), cache)
        return out, dx, g

    for fwd, bwd in ((conv.bn_gelu_pool_forward, conv.bn_gelu_pool_backward),
                     (conv.bn_gelu_forward, conv.bn_gelu_backward)):
        first = step(fwd, bwd)  # held while the second step runs: the second must not write into it
        kept = [first[0].copy(), first[1].copy()]
        second = step(fwd, bwd)
        np.testing.assert_array_equal(first[0], kept[0])
        np.testing.assert_array_equal(first[1], kept[1])
        np.testing.assert_array_equal(second[0], kept[0])
        np.testing.assert_array_equal(second[1], kept[1])
        del first, second
        third = step(fwd, bwd)  # through recycled buffers
        np.testing.assert_array_equal(third[0], kept[0])
        np.testing.assert_array_equal(third[1], kept[1])
