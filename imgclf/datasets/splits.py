"""Deterministic train / val / test splits and subsampling.

The validation split is the tail of the training set (CS231n's 49000/1000 on CIFAR-10); `n_train` and
`n_test` keep the first rows, so a quick run sees the same images every time and the reference figures
("first 5000 train vs first 500 test") are reproducible.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from .base import Dataset, Split


def _check_count(name: str, value, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if value is not None and (not isinstance(value, (int, np.integer)) or value < low):
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}", param=name)


def make_splits(
    train: Split | None,
    test: Split | None,
    *,
    val: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
) -> dict[str, Split]:
    """Cut `val` rows off the end of `train`, then keep the first `n_train` / `n_test` rows."""
    _check_count("val", val, allow_zero=True)
    _check_count("n_train", n_train)
    _check_count("n_test", n_test)
    splits: dict[str, Split] = {}
    if train is not None:
        n_val = val or 0
        if n_val >= len(train):
            raise UsageError(f"val {n_val} leaves no training images (the training set has {len(train)})", param="val")
        cut = len(train) - n_val
        splits["train"] = Split(train.X[:cut], train.y[:cut])
        if n_val:
            splits["val"] = Split(train.X[cut:], train.y[cut:])
    if test is not None:
        splits["test"] = test
    return subsample(splits, n_train=n_train, n_test=n_test)


def subsample(splits: dict[str, Split], *, n_train=None, n_test=None, n_val=None) -> dict[str, Split]:
    """Keep the first rows of each split (never more than it has)."""
    limits = {"train": n_train, "test": n_test, "val": n_val}
    out = {}
    for key, split in splits.items():
        n = limits.get(key)
        out[key] = split if n is None else Split(split.X[:n], split.y[:n])
    return out


def carve_val(ds: Dataset, val: int) -> Dataset:
    """Give a dataset without a val split one, from the tail of its training split."""
    train = ds.get("train")
    splits = dict(ds.splits)
    new = make_splits(train, None, val=val)
    splits.update(new)
    return Dataset(splits, ds.classes, ds.image_shape, ds.transforms, ds.name)


def merge_val_into_train(ds: Dataset) -> Dataset:
    """Train on train+val (kNN has no use for a val split unless asked)."""
    if "val" not in ds.splits:
        return ds
    tr, va = ds.get("train"), ds.splits["val"]
    splits = {k: v for k, v in ds.splits.items() if k != "val"}
    splits["train"] = Split(np.concatenate([tr.X, va.X]), np.concatenate([tr.y, va.y]))
    return Dataset(splits, ds.classes, ds.image_shape, ds.transforms, ds.name)
