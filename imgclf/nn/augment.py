"""Seeded training-time augmentation of image batches: `flip` (horizontal, probability 1/2) and
`crop:P` (pad by P zeros on each side, then a random crop back to the original size).

`parse("flip,crop:4")` returns an `Augment` (callable `(X, rng) -> X'`) or None for no augmentation.
Every batch draws the same numbers from the Generator whatever the options (flips, then offsets), so a
run's random stream does not depend on them in surprising ways and a resumed run repeats it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class Augment:
    flip: bool = False
    crop: int = 0

    def __call__(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from ..kernels.augment import flip_crop

        if X.ndim != 4:
            raise UsageError(f"augment needs image data (N, H, W, C); these features have shape {X.shape[1:]} "
                             f"(a projection such as PCA removes the image layout)", param="augment")
        if self.crop > min(X.shape[1:3]):
            raise UsageError(f"augment crop:{self.crop} pads by more than the {X.shape[1]}x{X.shape[2]} images "
                             "themselves; use a padding of at most their side", param="augment")
        n = len(X)
        flips = rng.random(n) < 0.5
        offsets = rng.integers(0, 2 * self.crop + 1, size=(2, n))
        if not self.flip:
            flips[:] = False
        return flip_crop(X, flips, offsets[0], offsets[1], self.crop)

    @property
    def spec(self) -> str:
        parts = (["flip"] if self.flip else []) + ([f"crop:{self.crop}"] if self.crop else [])
        return ",".join(parts)


def parse(spec: str | None) -> Augment | None:
    if spec in (None, "", "none"):
        return None
    flip, crop = False, 0
    for part in str(spec).split(","):
        name, _, arg = part.strip().partition(":")
        if name == "flip" and not arg:
            flip = True
        elif name == "crop":
            try:
                crop = int(arg) if arg else 4
            except ValueError:
                raise UsageError(f"bad augmentation {part!r}: crop:PAD with an integer PAD") from None
            if crop < 0:
                raise UsageError(f"bad augmentation {part!r}: PAD must be >= 0")
        else:
            raise UsageError(f"augment: unknown augmentation {part!r}; use flip, crop:PAD (e.g. flip,crop:4)",
                             param="augment")
    return Augment(flip, crop)
