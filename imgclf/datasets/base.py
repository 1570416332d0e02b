"""The Dataset: named splits of images or features, class names and the chain applied so far."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    """Splits keyed by "train", "val", "test" (any may be absent).

    X is uint8 or float32, shaped (N, H, W, C) for images or (N, D) for features after a projection.
    `image_shape` is the (H, W, C) of the raw images the chain starts from; `transforms` is the fitted
    preprocessing chain (a list of `imgclf.preprocessing.Transform`) that produced X from them.
    """

    splits: dict[str, Split]
    classes: list[str]
    image_shape: tuple[int, int, int]
    transforms: list = field(default_factory=list)
    name: str = ""
    report: object = None  # what the reader read and skipped (datasets.folder.FolderReport), if it says

    def __post_init__(self):
        for key, split in self.splits.items():
            if key not in SPLITS:
                raise DataError(f"unknown split {key!r}; expected one of {', '.join(SPLITS)}")
            if split.X.shape[0] != split.y.shape[0]:
                raise DataError(
                    f"split {key!r} has {split.X.shape[0]} images but {split.y.shape[0]} labels"
                )

    def has(self, key: str) -> bool:
        return key in self.splits and len(self.splits[key]) > 0

    def get(self, key: str) -> Split:
        if key not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DataError(f"the data has no {key!r} split (splits present: {have})")
        return self.splits[key]

    @property
    def feature_shape(self) -> tuple[int, ...]:
        first = next(iter(self.splits.values()), None)
        return tuple(first.X.shape[1:]) if first is not None else tuple(self.image_shape)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """What a model file records as `input_shape`, the shape raw samples must have: with a chain,
        exactly what its first step was fitted on (its transform takes no other; a stream of feature
        rows may carry an `image_shape` that is not the rows' shape); without one `image_shape`, whose
        images a model taking rows flattens."""
        if self.transforms:
            return tuple(self.transforms[0].input_shape_)
        return tuple(self.image_shape)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "classes": list(self.classes),
            "image_shape": list(self.image_shape),
            "feature_shape": list(self.feature_shape),
            "dtype": str(next(iter(self.splits.values())).X.dtype) if self.splits else None,
            "splits": {k: len(v) for k, v in self.splits.items()},
            "label_counts": {
                k: np.bincount(v.y, minlength=len(self.classes)).tolist() for k, v in self.splits.items()
            },
            "transforms": [t.describe() for t in self.transforms],
        }


def check_images(X: np.ndarray, y: np.ndarray, n_classes: int, source: str) -> None:
    """Validate what a reader produced: uint8 (N, H, W, C) images, int labels within range."""
    if X.dtype != np.uint8 or X.ndim != 4:
        raise DataError(f"{source}: expected uint8 images (N, H, W, C), got {X.dtype} {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise DataError(f"{source}: {len(X)} images but labels of shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"{source}: labels outside 0..{n_classes - 1}")
