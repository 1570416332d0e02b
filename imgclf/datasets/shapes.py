"""`shapes`: a small built-in dataset generated on the fly, so every command works with no download.

Ten classes of 32x32 RGB images: a shape or texture drawn in a random colour at a random place and
size over a random background, with pixel noise. Same seed, same bytes.
"""

from __future__ import annotations

import numpy as np

CLASSES = [
    "disc", "square", "triangle", "ring", "cross",
    "hstripes", "vstripes", "diagonal", "checker", "diamond",
]
SIZE = 32
N_TRAIN = 5000
N_TEST = 1000
SEED = 20261123


def _mask(label: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cy, cx = rng.uniform(10, 22, size=2)
    r = rng.uniform(6, 11)
    dy, dx = yy - cy, xx - cx
    period = rng.uniform(4, 8)
    phase = rng.uniform(0, period)
    if label == 0:
        return dy**2 + dx**2 <= r**2
    if label == 1:
        return (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8)
    if label == 2:
        return (dy <= r * 0.7) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if label == 3:
        d = np.sqrt(dy**2 + dx**2)
        return (d <= r) & (d >= r * 0.55)
    if label == 4:
        w = r * 0.3
        return ((np.abs(dy) <= w) & (np.abs(dx) <= r)) | ((np.abs(dx) <= w) & (np.abs(dy) <= r))
    if label == 5:
        return ((yy + phase) % period) < period / 2
    if label == 6:
        return ((xx + phase) % period) < period / 2
    if label == 7:
        return ((xx + yy + phase) % period) < period / 2
    if label == 8:
        return (((yy + phase) // (period / 1.5) + (xx + phase) // (period / 1.5)) % 2) == 0
    return np.abs(dy) + np.abs(dx) <= r


def _image(label: int, rng: np.random.Generator) -> np.ndarray:
    bg = rng.uniform(0, 255, size=3)
    fg = rng.uniform(0, 255, size=3)
    # Keep foreground and background apart so every image is legible.
    while np.abs(fg - bg).sum() < 150:
        fg = rng.uniform(0, 255, size=3)
    mask = _mask(label, rng)[..., None]
    img = np.where(mask, fg, bg) + rng.normal(0, 12, size=(SIZE, SIZE, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def generate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` images with balanced labels (0..9 repeating in a shuffled order)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    X = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        X[i] = _image(int(label), rng)
    return X, labels


def load(seed: int = SEED, n_train: int = N_TRAIN, n_test: int = N_TEST):
    """(X_train, y_train, X_test, y_test, classes)."""
    Xtr, ytr = generate(n_train, seed)
    Xte, yte = generate(n_test, seed + 1)
    return Xtr, ytr, Xte, yte, list(CLASSES)
