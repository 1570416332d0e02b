"""imgclf.images: tile rescaling, grids, labels, upscaling, atomic PNG writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgclf.errors import UsageError
from imgclf.images import LABEL_HEIGHT, grid, save_png, to_uint8


def test_per_tile_rescaling_stretches_each_tile_to_full_range():
    stack = np.stack([np.linspace(-1, 1, 16).reshape(4, 4), np.linspace(100, 101, 16).reshape(4, 4)])
    out = to_uint8(stack, "tile")
    assert out.shape == (2, 4, 4, 1) and out.dtype == np.uint8
    for tile in out:
        assert tile.min() == 0 and tile.max() == 255
    shared = to_uint8(stack, "all")
    assert shared[0].min() == 0 and shared[0].max() <= 5 and shared[1].max() == 255  # one range for all
    assert np.all(to_uint8(np.full((1, 2, 2), 7.0), "tile") == 128)  # constant tile: mid grey
    np.testing.assert_array_equal(to_uint8(np.array([[[-5.0, 300.0]]]), "none")[0, 0, :, 0], [0, 255])


def test_grid_layout_padding_and_upscaling():
    tiles = np.zeros((5, 3, 2, 3), dtype=np.uint8)
    tiles[:, :, :, 0] = 200
    img = grid(tiles, ncols=3, rescale="none", scale=2, pad=1)
    assert img.size == (3 * (4 + 1) + 1, 2 * (6 + 1) + 1)
    px = np.asarray(img)
    np.testing.assert_array_equal(px[1:7, 1:5], np.broadcast_to([200, 0, 0], (6, 4, 3)))
    assert np.all(px[0] == 255)  # padding is the background
    assert grid(np.zeros((9, 2, 2))).size == (3 * 3 + 1, 3 * 3 + 1)  # default: near-square


def test_grid_labels_add_a_text_row():
    img = grid(np.zeros((2, 10, 10, 1)), ncols=2, labels=["cat", "dog"])
    assert img.size == (2 * 11 + 1, 11 + LABEL_HEIGHT + 1)
    with pytest.raises(UsageError, match="1 labels for 2 images"):
        grid(np.zeros((2, 4, 4)), labels=["x"])


@pytest.mark.parametrize("bad,kw,match", [
    (np.zeros((2, 4, 4, 2)), {}, "expected a non-empty stack"),
    (np.zeros((0, 4, 4)), {}, "expected a non-empty stack"),
    (np.zeros((4, 4)), {}, "expected a non-empty stack"),
    (np.zeros((1, 4, 4)), {"scale": 0}, "scale must be"),
    (np.zeros((1, 4, 4)), {"ncols": 0}, "ncols must be"),
    (np.zeros((1, 4, 4)), {"rescale": "log"}, "rescale must be one of"),
])
def test_grid_rejects_bad_input(bad, kw, match):
    with pytest.raises(UsageError, match=match):
        grid(bad, **kw)


def test_save_png_is_atomic_and_readable(tmp_path):
    path = tmp_path / "sub" / "g.png"
    save_png(grid(np.random.default_rng(0).random((4, 5, 5, 3))), path)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (2 * 6 + 1, 2 * 6 + 1)
    assert [p.name for p in path.parent.iterdir()] == ["g.png"]  # no temporary left behind
    save_png(np.zeros((3, 3, 3), dtype=np.uint8), path)
    with Image.open(path) as im:
        assert im.size == (3, 3)


def test_neighbor_grid_lays_out_rows_and_frames():
    from imgclf.images import LABEL_HEIGHT, neighbor_grid

    q = np.full((2, 4, 4, 3), 10, np.uint8)
    nb = np.full((2, 3, 4, 4, 3), 200, np.uint8)
    img = neighbor_grid(q, nb, ["a", "b"], [["a 1", "b 2", "a 3"]] * 2, [[True, False, True]] * 2, scale=2)
    arr = np.asarray(img)
    assert arr.shape == (2 * (8 + 1 + LABEL_HEIGHT) + 1, 4 * 9 + 1, 3)
    assert tuple(arr[1 + 3, 1 + 3]) == (10, 10, 10)  # the query, unframed
    assert tuple(arr[1, 1 + 9]) == (0, 160, 0) and tuple(arr[1, 1 + 18]) == (220, 0, 0)  # match, mismatch
    assert tuple(arr[1 + 3, 1 + 9 + 3]) == (200, 200, 200)
    with pytest.raises(UsageError, match="neighbors must be"):
        neighbor_grid(q, nb[:1], ["a", "b"], [["x"] * 3])
