"""Seeded training-time augmentation of image batches: `flip` (horizontal, probability 1/2), `flip:alt`
(alternating flips) and `crop:P` (pad by P zeros on each side, then a random crop back to the original size;
`crop:P:reflect` pads by reflecting the image at its edges instead, as airbench does, so a shifted image
shows no black band).

`parse("flip,crop:4")` returns an `Augment` (callable `(X, rng) -> X'`) or None for no augmentation.
Every batch draws the same numbers from the Generator whatever the options (flips, then offsets), so a
run's random stream does not depend on them in surprising ways and a resumed run repeats it exactly.

`flip:alt` is airbench's alternating flip (Keller Jordan, arXiv 2404.00498): in the first epoch (epoch 0)
each image is flipped with probability 1/2, by the numbers the batch draws anyway (so epoch 0 is the very
epoch of `flip`); in every later epoch an image is flipped exactly when it was not flipped in the epoch
before, i.e. in epoch e it is flipped iff (flipped in epoch 0) XOR (e odd), and any two consecutive
epochs show every image both ways. An image that no step of epoch 0 drew (the N mod batch_size rows left
over) counts as not flipped in epoch 0. This depends on the image's row in the training set and on the
epoch, so the caller passes them with a state array of one flag per row (`new_state(n)`), which the Solver
keeps and checkpoints: `aug(X[idx], rng, index=idx, epoch=e, state=s)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class Augment:
    flip: bool = False
    crop: int = 0
    alternate: bool = False  # flip:alt (implies flip)
    reflect: bool = False  # crop:P:reflect

    def new_state(self, n: int) -> np.ndarray | None:
        """The per-row state `flip:alt` needs (each row's flip in epoch 0), None for stateless options."""
        return np.zeros(n, np.bool_) if self.alternate else None

    def __call__(self, X: np.ndarray, rng: np.random.Generator, index=None, epoch: int = 0,
                 state: np.ndarray | None = None) -> np.ndarray:
        from ..kernels.augment import flip_crop

        if X.ndim != 4:
            raise UsageError(f"augment needs image data (N, H, W, C); these features have shape {X.shape[1:]} "
                             f"(a projection such as PCA removes the image layout)", param="augment")
        if self.crop > min(X.shape[1:3]):
            raise UsageError(f"augment crop:{self.crop} pads by more than the {X.shape[1]}x{X.shape[2]} images "
                             "themselves; use a padding of at most their side", param="augment")
        if self.reflect and self.crop >= min(X.shape[1:3]):
            raise UsageError(f"augment crop:{self.crop}:reflect reflects the {X.shape[1]}x{X.shape[2]} images by "
                             f"more than their side less one; use a padding below their side", param="augment")
        n = len(X)
        flips = rng.random(n) < 0.5
        offsets = rng.integers(0, 2 * self.crop + 1, size=(2, n))
        if self.alternate:
            flips = self._alternating(flips, index, epoch, state)
        elif not self.flip:
            flips[:] = False
        return flip_crop(X, flips, offsets[0], offsets[1], self.crop, self.reflect)

    @staticmethod
    def _alternating(drawn, index, epoch, state) -> np.ndarray:
        if index is None or state is None:
            raise UsageError("augment flip:alt needs each image's training row and the epoch (index=, epoch=, "
                             "state=new_state(n)); the Solver passes them", param="augment")
        index = np.asarray(index)
        if index.shape != drawn.shape or state.ndim != 1 or state.dtype != np.bool_ or \
                (len(index) and (index.min() < 0 or index.max() >= len(state))):
            raise UsageError(f"augment flip:alt: index must give one training row per image (< {len(state)}) "
                             f"and state be new_state(n)'s flags", param="augment")
        if epoch < 0:
            raise UsageError(f"augment flip:alt: epoch must be >= 0, got {epoch}", param="augment")
        if epoch == 0:
            state[index] = drawn  # the epoch-0 flips, remembered for the later epochs
            return drawn
        return state[index] ^ bool(epoch % 2)

    @property
    def spec(self) -> str:
        parts = (["flip:alt" if self.alternate else "flip"] if self.flip else []) + \
            ([f"crop:{self.crop}" + (":reflect" if self.reflect else "")] if self.crop else [])
        return ",".join(parts)


def parse(spec: str | None) -> Augment | None:
    if spec in (None, "", "none"):
        return None
    flip, alternate, crop, reflect = False, False, 0, False
    for part in str(spec).split(","):
        name, _, arg = part.strip().partition(":")
        if name == "flip" and arg in ("", "alt"):
            if flip and alternate != (arg == "alt"):
                raise UsageError(f"augment: give flip or flip:alt, not both (in {spec!r})", param="augment")
            flip, alternate = True, arg == "alt"
        elif name == "crop":
            arg, _, mode = arg.partition(":")
            if mode not in ("", "reflect"):
                raise UsageError(f"bad augmentation {part!r}: crop:PAD or crop:PAD:reflect", param="augment")
            try:
                crop = int(arg) if arg else 4
            except ValueError:
                raise UsageError(f"bad augmentation {part!r}: crop:PAD with an integer PAD", param="augment") from None
            if crop < 0:
                raise UsageError(f"bad augmentation {part!r}: PAD must be >= 0", param="augment")
            reflect = mode == "reflect"
        else:
            raise UsageError(f"augment: unknown augmentation {part!r}; use flip, flip:alt (alternating flips), "
                             f"crop:PAD, crop:PAD:reflect (e.g. flip:alt,crop:2:reflect)", param="augment")
    return Augment(flip, crop, alternate, reflect)
