"""Colour histograms: the `colorhist` preprocessing step (CS231n's color_histogram_hsv).

The hue of every pixel (HSV, as matplotlib computes it) counted in `bins` equal bins over the colour
circle, as fractions of the image's pixels; space="hsv" appends saturation and value histograms of
the same bin count. Nothing is learned: fit only records the input shape. Combine with HOG as
`hog+colorhist` (imgclf.feature_union).
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError
from .preprocessing import Transform, _check_int

SPACES = ("hue", "hsv")


class ColorHistogram(Transform):
    """Per-image hue (or hue, saturation, value) histograms of RGB images (N, H, W, 3) on 0..255."""

    kind = "colorhist"

    def __init__(self, bins=10, space="hue"):
        self.bins = bins
        self.space = space

    def _validate_params(self, X):
        if X.ndim != 4 or X.shape[-1] != 3:
            raise UsageError(f"colorhist needs RGB images (N, H, W, 3), got data of shape {X.shape}")
        self._check_params(X.shape[1:])

    def _check_params(self, input_shape) -> None:
        """The hyperparameters' checks: at fit, and on load (bins=0 made the histogram kernel of a
        hand-edited file write outside its output array)."""
        if len(input_shape) != 3 or input_shape[-1] != 3:
            raise UsageError(f"input_shape_ must be (H, W, 3), got {tuple(input_shape)}")
        _check_int("bins", self.bins, 1, 1000)
        if self.space not in SPACES:
            raise UsageError(f"space must be one of {', '.join(SPACES)}, got {self.space!r}")

    def _fit(self, X):
        pass

    @property
    def n_features_out_(self) -> int:
        return self.bins * (3 if self.space == "hsv" else 1)

    def _transform(self, X):
        from .blas import split_rows
        from .kernels.features import _color_hist

        out = np.empty((len(X), self.n_features_out_), dtype=np.float32)
        split_rows(len(X), lambda a, b: _color_hist(X[a:b], self.bins, self.space == "hsv", out[a:b]))
        return out
