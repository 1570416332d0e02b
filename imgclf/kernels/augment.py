"""Training-time augmentation of an image batch in one pass: horizontal flip and shifted crop.

The image is mirrored (if flipped), padded with `pad` zeros and cropped at (dy, dx) in 0..2*pad:
`out[n, i, j] = X[n, i + dy - pad, J]` with `J = W-1-(j + dx - pad)` when flipped, else `j + dx - pad`,
zero where the source falls outside the image. With `reflect` the padding mirrors the image at its edges
instead (numpy's and PyTorch's "reflect", the edge pixel not repeated: source row -1 is row 1, row H is
row H-2), as airbench pads; pad must then be < H and < W (one reflection).
Numpy would pad (a copy), gather the crops (a second copy) and flip (a third).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..errors import UsageError


@njit(cache=True)
def _reflect(i, n):
    if i < 0:
        return -i
    if i >= n:
        return 2 * (n - 1) - i
    return i


@njit(cache=True)
def _flip_crop(X, flip, dy, dx, pad, reflect, out):
    n, h, w, c = X.shape
    for k in range(n):
        oy = dy[k] - pad
        ox = dx[k] - pad
        for i in range(h):
            si = i + oy
            if si < 0 or si >= h:
                if not reflect:
                    for j in range(w):
                        for ch in range(c):
                            out[k, i, j, ch] = 0
                    continue
                si = _reflect(si, h)
            for j in range(w):
                sj = j + ox
                if sj < 0 or sj >= w:
                    if not reflect:
                        for ch in range(c):
                            out[k, i, j, ch] = 0
                        continue
                    sj = _reflect(sj, w)
                if flip[k]:
                    sj = w - 1 - sj
                for ch in range(c):
                    out[k, i, j, ch] = X[k, si, sj, ch]


def flip_crop(X: np.ndarray, flip: np.ndarray, dy: np.ndarray, dx: np.ndarray, pad: int,
              reflect: bool = False) -> np.ndarray:
    """Mirror (where `flip`), then crop at offsets dy, dx in 0..2*pad from the zero-padded batch (with
    `reflect`, the reflect-padded one)."""
    if X.ndim != 4:
        raise UsageError(f"augmentation needs an image batch (N, H, W, C), got shape {X.shape}")
    n = len(X)
    if flip.shape != (n,) or dy.shape != (n,) or dx.shape != (n,):
        raise UsageError("flip, dy and dx need one entry per image")
    if pad < 0 or (n and (dy.min() < 0 or dx.min() < 0 or dy.max() > 2 * pad or dx.max() > 2 * pad)):
        raise UsageError(f"crop offsets must lie in 0..{2 * pad}")
    if reflect and pad >= min(X.shape[1:3]):
        raise UsageError(f"a reflect padding of {pad} needs images larger than {pad}x{pad}, got "
                         f"{X.shape[1]}x{X.shape[2]}")
    out = np.empty_like(X)
    _flip_crop(np.ascontiguousarray(X), flip.astype(np.bool_), dy.astype(np.int64), dx.astype(np.int64), int(pad),
               bool(reflect), out)
    return out
