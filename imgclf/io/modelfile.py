"""Model files: one .npz holding a model's arrays, its preprocessing chain and JSON metadata.

Every model kind goes through here. A model class provides `kind`, `to_arrays() -> (params, arrays)`
and `from_arrays(params, arrays)`; this module adds the chain, class names, input shape, history and
seed, writes atomically, and on load refuses unknown versions, foreign and truncated files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import limits
from ..errors import ModelFileError
from . import npzfile

FORMAT = "imgclf-model"
VERSION = 1



@dataclass
class ModelBundle:
    """A model with everything needed to use it on raw images."""

    model: object
    classes: list[str]
    input_shape: tuple[int, ...]
    chain: list = field(default_factory=list)
    history: list = field(default_factory=list)
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.model.kind

    def features(self, X: np.ndarray) -> np.ndarray:
        """X through the fitted chain: what the model takes."""
        for t in self.chain:
            X = t.transform(X)
        return X

    def label_indices(self, labels) -> np.ndarray:
        """The model's labels as indices into `classes` (int64): integer labels are the indices, text
        labels (a model fitted on class names) are looked up by name (loading checked that they are names
        of `classes`)."""
        labels = np.asarray(labels)
        if labels.dtype.kind in "iub":
            return labels.astype(np.int64)
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[str(v)] for v in labels.tolist()], dtype=np.int64).reshape(labels.shape)


def model_class(kind: str):
    """The class of a model file's kind (imgclf/kinds.py; old names such as "net" included)."""
    from ..kinds import estimator_class

    return estimator_class(kind)


Chain = tuple[list, dict[str, np.ndarray]]  # (JSON step descriptions, arrays keyed transform{i}_{name})


def bundle_to_arrays(bundle: ModelBundle, chain: Chain) -> tuple[dict, dict[str, np.ndarray]]:
    """The file's (meta, arrays) for `bundle` and its encoded chain (`bundle.chain` is not read)."""
    params, model_arrays = bundle.model.to_arrays()
    chain_meta, chain_arrays = chain
    arrays = dict(chain_arrays)
    arrays.update({f"model_{k}": v for k, v in model_arrays.items()})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "kind": bundle.model.kind,
        "hyperparameters": params,
        "classes": list(bundle.classes),
        "input_shape": list(bundle.input_shape),
        "transforms": chain_meta,
        "history": bundle.history,
        "seed": bundle.seed,
        "extra": bundle.extra,
    }
    return meta, arrays


def write(bundle: ModelBundle, path, chain: Chain) -> None:
    meta, arrays = bundle_to_arrays(bundle, chain)
    npzfile.write(path, arrays, meta)


def read(path) -> tuple[ModelBundle, Chain]:
    """(the bundle without its chain, the encoded chain)."""
    meta, arrays = npzfile.read(path, expect_format=FORMAT, error=ModelFileError)
    return bundle_from_arrays(meta, arrays, str(path))


def bundle_from_arrays(meta: dict, arrays: dict[str, np.ndarray], name: str) -> tuple[ModelBundle, Chain]:
    """(the bundle without its chain, the encoded chain) from a file's meta and arrays."""
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{name}: unsupported model format version {meta.get('version')!r} (this imgclf reads {VERSION})")
    classes, input_shape = check_meta(meta, name)
    check_arrays(arrays, name)
    model_arrays = {k[len("model_"):]: v for k, v in arrays.items() if k.startswith("model_")}
    try:
        cls = model_class(meta["kind"])
        # The model's weights are allocated from its hyperparameters before the file's arrays replace
        # them: they may not ask for more than the file holds.
        with limits.parameter_budget(sum(a.size for a in model_arrays.values())):
            model = cls.from_arrays(meta["hyperparameters"], model_arrays)
        bundle = ModelBundle(model=model, classes=classes, input_shape=input_shape, history=meta["history"],
                             seed=meta.get("seed"), extra=meta["extra"])
    except ModelFileError as exc:
        # The model's own refusals ("W has shape ..."), said as every other refusal of a file's content;
        # an ensemble member's already name the member.
        text = str(exc)
        raise ModelFileError(f"{name}: {text}" if "malformed model file" in text else
                             f"{name}: malformed model file ({text})") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ModelFileError(f"{name}: malformed model file ({type(exc).__name__}: {exc})") from None
    _check_labels(bundle, name)
    _check_members(bundle, name)
    _check_input_shape(bundle, meta["transforms"], name)
    _check_extra(bundle.extra, name)
    return bundle, (meta["transforms"], arrays)


def _check_extra(extra: dict, name: str) -> None:
    """The metadata the commands read back: `n_train` (rows trained on), `stopped`, `trained_on`, and
    `augmentation`, the record `train svm --augment flip` writes ({"kind": "flip", "before_chain": true,
    "n_images": N}: the N training images were followed by their mirrors, 2N rows = n_train)."""
    def bad(what: str):
        raise ModelFileError(f"{name}: malformed model file (extra field {what})")

    n_train = extra.get("n_train")
    if n_train is not None and not (type(n_train) is int and n_train >= 1):
        bad(f"'n_train' must be a number of rows >= 1 or null, got {n_train!r}")
    for key in ("stopped", "trained_on"):
        if extra.get(key) is not None and not isinstance(extra[key], str):
            bad(f"{key!r} must be a text or null, got {extra[key]!r}")
    if "augmentation" not in extra:
        return
    from ..mirror import AUGMENTS

    aug = extra["augmentation"]
    if not (isinstance(aug, dict) and set(aug) == {"kind", "before_chain", "n_images"}):
        bad(f"'augmentation' must be an object of kind, before_chain and n_images, got {aug!r}")
    if not (isinstance(aug["kind"], str) and aug["kind"] in AUGMENTS):
        bad(f"'augmentation' kind must be one of {', '.join(AUGMENTS)}, got {aug['kind']!r}")
    if not isinstance(aug["before_chain"], bool):
        bad(f"'augmentation' before_chain must be true or false, got {aug['before_chain']!r}")
    n = aug["n_images"]
    if not (type(n) is int and n >= 1):
        bad(f"'augmentation' n_images must be a number of images >= 1, got {n!r}")
    if n_train is not None and n_train != 2 * n:
        bad(f"'augmentation' says {n} images and their mirrors, but n_train is {n_train}, not {2 * n}")


def _check_members(bundle: ModelBundle, name: str) -> None:
    """An ensemble's members predict the file's classes, from its raw input shape."""
    for i, m in enumerate(getattr(bundle.model, "members", None) or (), start=1):
        if list(m.classes) != list(bundle.classes) or tuple(m.input_shape) != tuple(bundle.input_shape):
            raise ModelFileError(f"{name}: malformed model file (member {i} has classes {m.classes} and input shape "
                                 f"{list(m.input_shape)}, the ensemble {bundle.classes} and {list(bundle.input_shape)})")


def _check_input_shape(bundle: ModelBundle, transforms: list[dict], name: str) -> None:
    """`input_shape` is what raw images are resized to before the chain: it must be exactly the shape the
    chain's first step was fitted on (its transform refuses any other: [3, 2, 2] over a chain fitted on
    (2, 2, 3) holds as many values, but no image of that shape goes through), or with no chain hold as
    many values as the model takes (a model takes rows; a convnet folds them)."""
    size = math.prod(bundle.input_shape)
    if transforms:
        first = transforms[0].get("params", {}).get("input_shape_")
        if isinstance(first, list) and all(type(v) is int for v in first) and list(first) != list(bundle.input_shape):
            raise ModelFileError(f"{name}: malformed model file (field 'input_shape' {list(bundle.input_shape)} is not "
                                 f"the shape {first} the chain's first step ({transforms[0].get('kind')}) was fitted on)")
        return
    takes = getattr(bundle.model, "n_features_in_", None)
    if isinstance(takes, int) and takes != size:
        raise ModelFileError(f"{name}: model file field 'input_shape' {list(bundle.input_shape)} holds {size} "
                             f"values, but the model takes {takes}")


# meta key -> (type, default); a missing optional entry gets its default, a wrong type is refused.
_META_TYPES = {"kind": (str, None), "classes": (list, None), "input_shape": (list, None),
               "hyperparameters": (dict, {}), "transforms": (list, []), "history": (list, []),
               "extra": (dict, {})}


def check_meta(meta: dict, name: str) -> tuple[list[str], tuple[int, ...]]:
    """The metadata's types, classes and input shape, each refused with the field's name."""
    for key, (kind, default) in _META_TYPES.items():
        if meta.get(key) is None and default is not None:
            meta[key] = type(default)()
        if not isinstance(meta.get(key), kind):
            raise ModelFileError(f"{name}: model file field {key!r} must be a {kind.__name__}, "
                                 f"got {type(meta.get(key)).__name__}")
    classes = meta["classes"]
    if not classes or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise ModelFileError(f"{name}: model file field 'classes' must be a non-empty list of distinct names")
    shape = meta["input_shape"]
    if not (1 <= len(shape) <= 3 and all(type(v) is int and v >= 1 for v in shape)):
        raise ModelFileError(f"{name}: model file field 'input_shape' must be 1 to 3 sizes >= 1, got {shape!r}")
    for v in shape[:2] if len(shape) == 3 else ():
        limits.check("image_side", v, f"{name}: model file field 'input_shape' side", ModelFileError)
    limits.check("array_elements", math.prod(shape), f"{name}: model file field 'input_shape' size", ModelFileError)
    if not all(isinstance(t, dict) for t in meta["transforms"]):
        raise ModelFileError(f"{name}: model file field 'transforms' must be a list of objects")
    return list(classes), tuple(shape)


def check_arrays(arrays: dict[str, np.ndarray], name: str) -> None:
    """Weights are real numbers, finite; class lists are integers or text."""
    for key, arr in arrays.items():
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all():
                raise ModelFileError(f"{name}: array {key!r} contains NaN or infinite values")
            # Finite is not enough: weights of 1e38 overflow every product (trained ones stay near 1).
            if arr.size:
                limits.check("feature_magnitude", int(np.abs(arr).max()), f"{name}: the largest value in "
                             f"array {key!r}", ModelFileError)
        elif arr.dtype.kind in "iu" or (arr.dtype.kind == "U" and key.endswith(("classes", "y_train"))):
            continue
        else:
            raise ModelFileError(f"{name}: array {key!r} has dtype {arr.dtype}; model files hold real numbers")


def _check_labels(bundle: ModelBundle, name: str) -> None:
    """Integer labels a model predicts (kNN's stored labels, a linear model's classes) must index
    the file's class list; a model's classes are distinct and sorted, as fit learns them."""
    n = len(bundle.classes)
    classes = getattr(bundle.model, "classes_", None)
    if isinstance(classes, np.ndarray) and (classes.ndim != 1 or np.any(classes[1:] <= classes[:-1])):
        raise ModelFileError(f"{name}: malformed model file (the model's classes must be distinct and sorted, got "
                             f"{classes.tolist()[:20]})")
    for attr in ("_y", "y_train_", "classes_"):
        values = getattr(bundle.model, attr, None)
        if isinstance(values, np.ndarray) and values.dtype.kind in "iu" and values.size:
            if values.min() < 0 or values.max() >= n:
                raise ModelFileError(f"{name}: model labels ({attr.strip('_')}) range over "
                                     f"{values.min()}..{values.max()}, but the file names {n} classes")
        elif isinstance(values, np.ndarray) and values.dtype.kind == "U":
            # a model fitted on class names (the Python API's string labels) predicts names of the list
            unknown = sorted(set(values.tolist()) - set(bundle.classes))
            if unknown:
                raise ModelFileError(f"{name}: malformed model file (model labels ({attr.strip('_')}) "
                                     f"{', '.join(map(repr, unknown[:5]))} are not among the file's classes)")
