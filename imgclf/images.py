"""Pillow helpers for pictures of image stacks: grids of images, eigenvectors or filters, saved as PNG.

`grid(stack)` lays (N, H, W[, C]) arrays out in rows with optional per-tile rescaling (weights and
eigenvectors have no natural pixel range), nearest-neighbour upscaling and a label under each tile;
`save_png` writes atomically.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import UsageError
from .io.atomic import atomic_open

RESCALE_MODES = ("tile", "all", "none")
LABEL_HEIGHT = 12  # pixels under each tile for Pillow's default bitmap font


def as_tiles(images) -> np.ndarray:
    """(N, H, W, C) with C 1 or 3, from (N, H, W), (N, H, W, 1) or (N, H, W, 3) real arrays."""
    arr = np.asarray(images)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise UsageError(f"images must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or len(arr) == 0:
        raise UsageError(f"expected a non-empty stack of images (N, H, W) or (N, H, W, 1|3), got shape {arr.shape}")
    return arr


def to_uint8(images, rescale: str = "tile") -> np.ndarray:
    """Map a stack to 0..255: each tile's own min..max ("tile"), the stack's ("all"), or clip ("none").

    Constant tiles (nothing to stretch) become mid grey; NaN becomes 0.
    """
    if rescale not in RESCALE_MODES:
        raise UsageError(f"rescale must be one of {', '.join(RESCALE_MODES)}, got {rescale!r}")
    arr = as_tiles(images).astype(np.float64)
    arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
    if rescale == "none":
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    axes = (1, 2, 3) if rescale == "tile" else None
    lo = arr.min(axis=axes, keepdims=True)
    span = arr.max(axis=axes, keepdims=True) - lo
    scaled = np.where(span > 0, (arr - lo) / np.where(span > 0, span, 1.0) * 255.0, 127.5)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def grid(images, ncols: int | None = None, *, rescale: str = "tile", scale: int = 1, pad: int = 1,
         labels=None, background: int = 255):
    """A Pillow image of the stack laid out in rows of `ncols` tiles (default: a near-square grid).

    scale: integer nearest-neighbour upscaling of each tile; pad: pixels between tiles;
    labels: one short string per tile, drawn below it.
    """
    from PIL import Image, ImageDraw

    tiles = to_uint8(images, rescale)
    n, h, w, c = tiles.shape
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise UsageError(f"scale must be an integer >= 1, got {scale!r}")
    if ncols is None:
        ncols = math.ceil(math.sqrt(n))
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise UsageError(f"ncols must be an integer >= 1, got {ncols!r}")
    if labels is not None and len(labels) != n:
        raise UsageError(f"{len(labels)} labels for {n} images")
    if scale > 1:
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    cell_h = h + pad + (LABEL_HEIGHT if labels is not None else 0)
    canvas = np.full((nrows * cell_h + pad, ncols * (w + pad) + pad, 3), background, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = pad + r * cell_h, pad + col * (w + pad)
        canvas[y:y + h, x:x + w] = tiles[i]  # a grey tile broadcasts over the three channels
    img = Image.fromarray(canvas, "RGB")
    if labels is not None:
        draw = ImageDraw.Draw(img)
        for i, text in enumerate(labels):
            r, col = divmod(i, ncols)
            draw.text((pad + col * (w + pad), pad + r * cell_h + h), _fit_text(draw, str(text), w), fill=(0, 0, 0))
    return img


def _fit_text(draw, text: str, width: int) -> str:
    while text and draw.textlength(text) > width:
        text = text[:-1]
    return text


def save_png(image, path) -> None:
    """Write a Pillow image (or a uint8 (H, W[, 3]) array) as PNG, atomically."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    with atomic_open(path, "wb") as f:
        image.save(f, format="PNG")


def neighbor_grid(queries, neighbors, query_labels, neighbor_labels, matches=None, *, scale: int = 2,
                  rescale: str = "none"):
    """The kNN figure: one row per query, the query image first, then its k nearest images.

    queries (n, H, W[, C]); neighbors (n, k, H, W[, C]); labels: n strings and n x k strings drawn under
    the tiles; matches (n, k) booleans, if given, frame each neighbour green (same label) or red.
    """
    from PIL import ImageDraw

    q = as_tiles(queries)
    nb = np.asarray(neighbors)
    if nb.ndim not in (4, 5) or nb.shape[0] != len(q) or nb.shape[2:4] != q.shape[1:3]:
        raise UsageError(f"neighbors must be (n, k, H, W[, C]) matching queries {q.shape}, got {nb.shape}")
    n, k = nb.shape[:2]
    tiles = np.concatenate([q[:, None].astype(np.float64),
                            as_tiles(nb.reshape((n * k,) + nb.shape[2:])).reshape((n, k) + q.shape[1:])], axis=1)
    labels = [text for i in range(n) for text in [query_labels[i]] + list(neighbor_labels[i])]
    pad = 1
    img = grid(tiles.reshape((n * (k + 1),) + q.shape[1:]), k + 1, rescale=rescale, scale=scale, pad=pad,
               labels=labels)
    if matches is not None:
        h, w = q.shape[1] * scale, q.shape[2] * scale
        draw = ImageDraw.Draw(img)
        for i in range(n):
            for j in range(k):
                x, y = pad + (j + 1) * (w + pad), pad + i * (h + pad + LABEL_HEIGHT)
                colour = (0, 160, 0) if matches[i][j] else (220, 0, 0)
                draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=max(1, scale // 2))
    return img
