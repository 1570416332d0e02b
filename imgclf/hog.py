"""Histograms of oriented gradients (Dalal & Triggs 2005): the `hog` preprocessing step.

Per image: the grey level's centred gradients; per cell of cell x cell pixels, a histogram of the
gradient orientations (unsigned, 0..180 degrees, by default) weighted by magnitude, each vote split
between the two nearest bins; then every block of block x block cells (stride one cell) normalised on
its own (l2hys by default) and concatenated. norm="none" gives the cell histograms themselves (as
CS231n's hog_feature, divided by the cell area). Nothing is learned: fit only records the input shape.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError
from .preprocessing import Transform, _check_int


class HOG(Transform):
    """HOG descriptor of images (N, H, W, C) with C 1 or 3 (grey level 0.299 R + 0.587 G + 0.114 B)."""

    kind = "hog"

    def __init__(self, cell=8, bins=9, block=2, norm="l2hys", signed=False):
        self.cell = cell
        self.bins = bins
        self.block = block
        self.norm = norm
        self.signed = signed

    def _validate_params(self, X):
        if X.ndim != 4 or X.shape[-1] not in (1, 3):
            raise UsageError(f"hog needs images (N, H, W, C) with 1 or 3 channels, got data of shape {X.shape} "
                             "(put hog first in the chain, on pixels)")
        self._check_params(X.shape[1:])

    def _check_params(self, image_shape) -> None:
        """The hyperparameters' checks for images of `image_shape` (H, W, C): at fit, and on load (cell=0
        divided by zero in transform, an unknown norm failed there with a KeyError)."""
        from .kernels.features import NORMS

        if len(image_shape) != 3 or image_shape[-1] not in (1, 3):
            raise UsageError(f"input_shape_ must be (H, W, 1 or 3), got {tuple(image_shape)}")
        _check_int("cell", self.cell, 1, min(image_shape[:2]), " (the image side)")
        _check_int("bins", self.bins, 2, 360)
        if self.norm not in NORMS:
            raise UsageError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        cells = min(image_shape[0], image_shape[1]) // self.cell
        _check_int("block", self.block, 1, cells, f" (the cells across the image: {cells})")
        if not isinstance(self.signed, (bool, np.bool_)):
            raise UsageError(f"signed must be True or False, got {self.signed!r}")

    def _fit(self, X):
        pass

    def _cells(self) -> tuple[int, int]:
        return self.input_shape_[0] // self.cell, self.input_shape_[1] // self.cell

    @property
    def n_features_out_(self) -> int:
        ncy, ncx = self._cells()
        if self.norm == "none":
            return ncy * ncx * self.bins
        return (ncy - self.block + 1) * (ncx - self.block + 1) * self.block ** 2 * self.bins

    def _transform(self, X):
        from .blas import split_rows
        from .kernels.features import NORMS, _hog_blocks, _hog_cells

        ncy, ncx = self._cells()
        cells = np.empty((len(X), ncy, ncx, self.bins), dtype=np.float32)
        out = np.empty((len(X), self.n_features_out_), dtype=np.float32)

        def work(a, b):
            _hog_cells(X[a:b], self.cell, self.bins, bool(self.signed), cells[a:b])
            if self.norm == "none":
                out[a:b] = cells[a:b].reshape(b - a, -1) * np.float32(1.0 / self.cell ** 2)
            else:
                _hog_blocks(cells[a:b], self.block, NORMS[self.norm], out[a:b])

        split_rows(len(X), work)
        return out
