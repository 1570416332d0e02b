"""The pipeline stream: a Dataset (splits, classes, image shape, fitted chain) as one .npz.

See docs/format.md. Keys: X_train, y_train, X_val, y_val, X_test, y_test (any may be absent), the
chain's arrays `transform{i}_{name}`, and `meta` (JSON).

The chain crosses this layer as (meta, arrays), as `imgclf.preprocessing_chain.chain_to_arrays` encodes it:
a Dataset read here has no transforms, and the caller rebuilds them (`imgclf.storage.read_stream` does).
"""

from __future__ import annotations

import numpy as np

from .. import limits
from ..datasets.base import SPLITS, Dataset, Split
from ..errors import DataError
from . import npzfile

FORMAT = "imgclf-pipeline"
VERSION = 1


Chain = tuple[list, dict[str, np.ndarray]]  # (JSON step descriptions, arrays keyed transform{i}_{name})


def dataset_to_arrays(ds: Dataset, chain: Chain) -> tuple[dict, dict[str, np.ndarray]]:
    """The stream's (meta, arrays) for `ds`'s splits and its encoded chain (`ds.transforms` is not read)."""
    chain_meta, chain_arrays = chain
    arrays = dict(chain_arrays)
    for key, split in ds.splits.items():
        arrays[f"X_{key}"] = split.X
        arrays[f"y_{key}"] = split.y.astype(np.int64)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "name": ds.name,
        "classes": list(ds.classes),
        "image_shape": list(ds.image_shape),
        "transforms": chain_meta,
    }
    return meta, arrays


def _check_values(X: np.ndarray, name: str) -> None:
    """Float features are finite and of a sane size: 1e38 is finite, but its square is not, and every
    distance or score computed from it would be inf or NaN."""
    if X.dtype.kind != "f" or X.size == 0:
        return
    lo, hi = float(X.min()), float(X.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.count_nonzero(~np.isfinite(X)))
        raise DataError(f"{name} contains {bad} NaN or infinite value{'s' if bad != 1 else ''}")
    limits.check("feature_magnitude", int(max(-lo, hi)), f"{name}: the largest absolute value", DataError)


def write(ds: Dataset, target, chain: Chain) -> None:
    meta, arrays = dataset_to_arrays(ds, chain)
    npzfile.write(target, arrays, meta)


def read(source) -> tuple[Dataset, Chain]:
    """(the Dataset without transforms, its encoded chain)."""
    meta, arrays = npzfile.read(source, expect_format=FORMAT)
    return dataset_from_arrays(meta, arrays, str(source))


def dataset_from_arrays(meta: dict, arrays: dict[str, np.ndarray], name: str) -> tuple[Dataset, Chain]:
    if meta.get("version") != VERSION:
        raise DataError(f"{name}: unsupported pipeline format version {meta.get('version')!r} (this imgclf reads {VERSION})")
    classes, image_shape = meta.get("classes"), meta.get("image_shape")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)
            and len(set(classes)) == len(classes)):
        raise DataError(f"{name}: pipeline metadata field 'classes' must be a non-empty list of distinct names")
    if not (isinstance(image_shape, list) and 1 <= len(image_shape) <= 3
            and all(type(v) is int and 1 <= v <= limits.get("image_side") for v in image_shape)):
        raise DataError(f"{name}: pipeline metadata field 'image_shape' must be 1 to 3 sizes from 1 to "
                        f"{limits.get('image_side')}, got {image_shape!r}")
    image_shape = tuple(image_shape)
    splits = {}
    for key in SPLITS:
        has_x, has_y = f"X_{key}" in arrays, f"y_{key}" in arrays
        if has_x != has_y:
            raise DataError(f"{name}: split {key!r} has {'X' if has_x else 'y'} but not {'y' if has_x else 'X'}")
        if has_x:
            X, y = arrays[f"X_{key}"], arrays[f"y_{key}"]
            if X.dtype not in (np.uint8, np.float32, np.float64) or X.ndim < 2:
                raise DataError(f"{name}: X_{key} must be uint8 or float (N, ...), got {X.dtype} {X.shape}")
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"{name}: y_{key} must be a 1-d integer array")
            if len(y) != len(X):
                raise DataError(f"{name}: X_{key} holds {len(X)} rows but y_{key} {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= len(classes)):
                raise DataError(f"{name}: labels in y_{key} outside 0..{len(classes) - 1}")
            if X.ndim == 4 and X.shape[1:] != image_shape:
                raise DataError(f"{name}: X_{key} holds {'x'.join(map(str, X.shape[1:]))} images but the metadata "
                                f"says image_shape {'x'.join(map(str, image_shape))}")
            _check_values(X, f"{name}: X_{key}")
            splits[key] = Split(X, y.astype(np.int64))
    if not splits:
        raise DataError(f"{name}: the stream holds no split (expected X_train/y_train, X_test/y_test ...)")
    return Dataset(splits, classes, image_shape, [], meta.get("name", "")), (meta.get("transforms", []), arrays)
