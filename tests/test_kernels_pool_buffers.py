"""kernels/buffers.py's recycled output arrays (kernels/batchnorm.py's outputs): a big array is handed out again only when nothing else
references it (not the caller, not a view of it), and results through recycled buffers are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

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


@pytest.mark.parametrize("kw", [
    dict(filters=("32x2", "128x2", "128x2"), pool_position="first", batchnorm=True, hidden=0, stem="whiten:2",
         activation="gelu", bn_scale=False, bn_momentum=0.6, dirac=True, head="maxpool", logit_scale=1 / 9,
         classifier_bias=False),  # the airbench layout (presets' convnet), at 16x16
    dict(filters=(32, 64, 128), batchnorm=True, hidden=64),
], ids=["airbench", "32-64-128-bn"])
def test_a_convnet_training_step_needs_far_fewer_pooled_arrays_than_the_pool_keeps(kw, monkeypatch):
    """A training step asks for the same pooled shapes every step: if it needed more arrays than POOL_SIZE,
    the least recently handed out (the big maps) would be dropped and re-faulted every step. Counted with an
    unbounded, empty pool over two steps (and fit's evaluation): it ends with, for each shape, as many arrays
    as were held at once."""
    from conftest import make_images
    from imgclf.nn.convnet import ConvNet

    limit = buffers.POOL_SIZE
    monkeypatch.setattr(buffers, "_POOL", [])
    monkeypatch.setattr(buffers, "POOL_SIZE", 1 << 30)
    X, y = make_images(128, n_classes=3, shape=(16, 16, 3), seed=0)
    ConvNet(**kw, epochs=1, batch_size=64, random_state=0, dtype="float32").fit(X, y)
    pooled = list(buffers._POOL)
    assert pooled, "no array reached the pool: the test no longer measures anything"
    n_shapes = len({(p.shape, p.dtype) for p in pooled})
    assert len(pooled) <= limit // 2, f"{len(pooled)} pooled arrays ({n_shapes} shapes), POOL_SIZE {limit}"
