"""The preprocessing chain: built from a short spec, fitted on a Dataset, applied, and encoded for files.

`parse_chain_spec("mean,normalize,pca:144")` gives unfitted transforms; `fit_chain(transforms, ds)`
fits each on the TRAIN split only and applies it to every split. `imgclf preprocess` in a pipe and an
inline `--preprocess SPEC` both go through `fit_chain`, so they produce identical numbers.

Spec grammar (steps separated by commas):
  mean | mean:channel              MeanSubtraction(per_channel=...)
  normalize | normalize:channel    Normalization(per_channel=...)   (alias: std)
  pca | pca:144 | pca:0.99         PCA(dims=144) or PCA(variance=0.99); none: all components
  whiten | whiten:100 | whiten:0.99   Whitening(dims=... or variance=...)
  zca | zca:100                    Whitening(zca=True, dims=...)
  standardize | standardize:0.01   Standardization(eps=...)   (zero mean, unit variance per feature)
  hog[:cell=8][:bins=9][:block=2][:norm=l2hys][:signed]        HOG (imgclf.hog)
  colorhist[:bins=10][:space=hue|hsv]                           ColorHistogram (imgclf.colorhist)
  kmeans[:1600][:patch=6][:stride=1][:patches=400000][:iterations=20][:init=gaussian|rows][:seed=0]
                                   KMeansFeatures(centroids=1600, ...) (imgclf.kmeans_features)
A count is a whole number; a fraction (0 < v <= 1, written with a dot) is a variance to keep.
Steps joined by `+` run side by side on the same input and their features are concatenated
(FeatureUnion): `hog+colorhist,standardize` is the CS231n features exercise.

A chain is stored as (meta, arrays): `chain_to_arrays` gives JSON-able step descriptions and arrays keyed
`transform{i}_{name}`; `chain_from_arrays` rebuilds it through TRANSFORMS (kind -> class). The io layer
(pipeline streams, model files) carries that pair and never imports the transforms.
"""

from __future__ import annotations

import numpy as np

from .datasets.base import Dataset, Split
from .errors import DataError, UsageError
from .preprocessing import PCA, MeanSubtraction, Normalization, Standardization, Transform, Whitening

# kind -> class: what a stored chain may name.
TRANSFORMS: dict[str, type] = {cls.kind: cls for cls in (MeanSubtraction, Normalization, PCA, Whitening,
                                                         Standardization)}
# The feature transforms live in their own modules, imported when a spec or a stored chain names them.
_LAZY_TRANSFORMS = {
    "hog": "imgclf.hog:HOG",
    "colorhist": "imgclf.colorhist:ColorHistogram",
    "union": "imgclf.feature_union:FeatureUnion",
    "kmeans": "imgclf.kmeans_features:KMeansFeatures",
}

SPEC_HELP = ("mean[:channel], normalize[:channel], pca[:DIMS|:FRACTION], whiten[:DIMS|:FRACTION], zca[:DIMS], "
             "standardize[:EPS], hog[:cell=8:bins=9:block=2:norm=l2hys:signed], colorhist[:bins=10:space=hue], "
             "kmeans[:K:patch=6:stride=1:patches=N:iterations=N:init=gaussian:seed=S]; join steps with + to concatenate")

# feature steps: spec name (= kind) -> ({option: (parameter, type)}, the option a bare value stands for)
_FEATURE_STEPS = {
    "hog": ({"cell": ("cell", int), "bins": ("bins", int), "block": ("block", int), "norm": ("norm", str),
             "signed": ("signed", bool)}, "cell"),
    "colorhist": ({"bins": ("bins", int), "space": ("space", str)}, "bins"),
    "kmeans": ({"centroids": ("centroids", int), "patch": ("patch", int), "stride": ("stride", int),
                "patches": ("patches", int), "iterations": ("iterations", int), "seed": ("random_state", int),
                "patch_eps": ("patch_eps", float), "zca_eps": ("zca_eps", float), "init": ("init", str)},
               "centroids"),
}


def transform_class(kind: str):
    """The Transform class a stored chain names by `kind` (DataError for an unknown kind)."""
    if not isinstance(kind, str):
        raise DataError(f"unknown transform {kind!r} in the stored chain")
    if kind not in TRANSFORMS and kind in _LAZY_TRANSFORMS:
        import importlib

        module, name = _LAZY_TRANSFORMS[kind].split(":")
        TRANSFORMS[kind] = getattr(importlib.import_module(module), name)
    cls = TRANSFORMS.get(kind)
    if cls is None:
        raise DataError(f"unknown transform {kind!r} in the stored chain")
    return cls


def _size_arg(step: str, arg: str) -> dict:
    """`144` -> dims, `0.99` -> variance."""
    try:
        if "." in arg or "e" in arg.lower():
            value = float(arg)
            if not 0 < value <= 1:
                raise ValueError
            return {"variance": value}
        value = int(arg)
        if value < 1:
            raise ValueError
        return {"dims": value}
    except ValueError:
        raise UsageError(f"bad preprocessing step {step!r}: expected a component count >= 1 or a variance "
                         f"fraction in (0, 1] after ':'") from None


def _feature_step(step: str, name: str, arg: str, seed: int | None) -> Transform:
    """hog:cell=4:bins=9, kmeans:1600:seed=3 ...: options key=value separated by ':' (a flag alone is True).

    A step with randomness whose spec sets no seed gets `seed` (when not None) as its random_state."""
    options, bare = _FEATURE_STEPS[name]
    kwargs = {} if seed is None or "seed" not in options else {"random_state": seed}
    for item in filter(None, (a.strip() for a in arg.split(":"))):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq and key not in options:
            key, value = bare, item
        if key not in options:
            raise UsageError(f"bad preprocessing step {step!r}: {name} has no option {key!r} "
                             f"(options: {', '.join(options)})")
        param, kind = options[key]
        try:
            if kind is bool:
                kwargs[param] = not eq or value.strip().lower() in ("1", "true", "yes")
            else:
                kwargs[param] = kind(value.strip())
        except ValueError:
            raise UsageError(f"bad preprocessing step {step!r}: {key} needs a {kind.__name__}, got {value!r}") from None
    return transform_class(name)(**kwargs)


def _parse_step(step: str, seed: int | None) -> Transform:
    if "+" in step:
        parts = [p.strip() for p in step.split("+")]
        if any(not p for p in parts):
            raise UsageError(f"bad preprocessing step {step!r}: empty part around '+'")
        return transform_class("union")([_parse_step(p, seed) for p in parts])
    name, _, arg = step.partition(":")
    name = name.strip().lower()
    arg = arg.strip()
    if name in _FEATURE_STEPS:
        return _feature_step(step, name, arg, seed)
    if name == "standardize":
        try:
            return Standardization(eps=float(arg)) if arg else Standardization()
        except ValueError:
            raise UsageError(f"bad preprocessing step {step!r}: standardize takes an eps number") from None
    if name in ("mean", "normalize", "std"):
        if arg not in ("", "channel"):
            raise UsageError(f"bad preprocessing step {step!r}: {name} takes only ':channel'")
        cls = MeanSubtraction if name == "mean" else Normalization
        return cls(per_channel=arg == "channel")
    if name in ("pca", "whiten", "zca"):
        kwargs = _size_arg(step, arg) if arg else {}
        if name == "pca":
            return PCA(**kwargs)
        return Whitening(zca=name == "zca", **kwargs)
    raise UsageError(f"unknown preprocessing step {step!r}; steps: {SPEC_HELP}")


def parse_chain_spec(spec: str, seed: int | None = None) -> list[Transform]:
    """Unfitted transforms for a spec such as "mean,normalize,pca:144".

    `seed` (a training command's --seed) becomes the random_state of every step that has one and whose
    spec does not set it (`kmeans:1600` takes it, `kmeans:1600:seed=3` keeps 3); None keeps the steps'
    own default."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"empty preprocessing spec; steps: {SPEC_HELP}")
    steps = [s.strip() for s in spec.split(",")]
    if any(not s for s in steps):
        raise UsageError(f"empty step in preprocessing spec {spec!r}")
    return [_parse_step(s, seed) for s in steps]


def fit_chain(transforms: list[Transform], dataset: Dataset, on_fit=None) -> Dataset:
    """Fit each transform on the training split only, apply it to every split, append it to the chain.

    `on_fit(transform)` is called after each fit (the CLI reports retained variance through it).
    Returns a new Dataset; the input is not modified.
    """
    if not dataset.has("train"):
        raise DataError("preprocessing needs a training split to fit on, and the data has none "
                        f"(splits present: {', '.join(dataset.splits) or 'none'})")
    splits = dict(dataset.splits)
    given = [s.X for s in splits.values()]
    chain = list(dataset.transforms)
    for t in transforms:
        t.fit(splits["train"].X)
        if on_fit is not None:
            on_fit(t)
        splits = {key: Split(_apply_step(t, s.X, given), s.y) for key, s in splits.items()}
        chain.append(t)
    return Dataset(splits, dataset.classes, dataset.image_shape, chain, dataset.name)


def _apply_step(t: Transform, X: np.ndarray, given: list[np.ndarray]) -> np.ndarray:
    """t.transform(X), written over X when the chain made X (it shares no memory with the `given`
    input arrays) and the step can: standardize on 16000 k-means features then needs no second copy.

    X is checked once (`_check_input`, what `transform` does first), then goes to the in-place or the
    copying path unchecked: a second check would scan every value for NaN/inf again."""
    X = t._check_input(X)
    if not any(np.may_share_memory(X, g) for g in given):
        out = t._transform_inplace(X)
        if out is not None:
            return out
    return t._transform(X)


def apply_to_dataset(chain: list[Transform], dataset: Dataset) -> Dataset:
    """Apply an already fitted chain to every split (no fitting), appending it to the dataset's chain."""
    splits = {key: Split(apply_chain(chain, s.X), s.y) for key, s in dataset.splits.items()}
    return Dataset(splits, dataset.classes, dataset.image_shape, list(dataset.transforms) + list(chain),
                   dataset.name)



def apply_chain(chain: list[Transform], X: np.ndarray) -> np.ndarray:
    given = [X]
    for t in chain:
        X = _apply_step(t, X, given)
    return X


def same_chain(a: list[Transform], b: list[Transform]) -> bool:
    """True when two fitted chains are the same steps with the same learned arrays."""
    if len(a) != len(b):
        return False
    for s, t in zip(a, b):
        (pa, aa), (pb, ab) = s.to_arrays(), t.to_arrays()
        if s.kind != t.kind or pa != pb or aa.keys() != ab.keys():
            return False
        if not all(np.array_equal(aa[k], ab[k]) for k in aa):
            return False
    return True


# -- encoding ------------------------------------------------------------------------------------------
def chain_to_arrays(chain: list[Transform]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """JSON-able descriptions plus arrays keyed `transform{i}_{name}`."""
    meta, arrays = [], {}
    for i, t in enumerate(chain):
        params, arrs = t.to_arrays()
        keys = {}
        for name, arr in arrs.items():
            key = f"transform{i}_{name}"
            arrays[key] = arr
            keys[name] = key
        meta.append({"kind": t.kind, "params": params, "arrays": keys})
    return meta, arrays


def chain_from_arrays(meta: list[dict], arrays: dict[str, np.ndarray]) -> list[Transform]:
    chain = []
    if not isinstance(meta, list) or not all(isinstance(e, dict) for e in meta):
        raise DataError("the stored chain ('transforms') must be a list of objects")
    for entry in meta:
        kind = entry.get("kind")
        cls = transform_class(kind)
        names, params = entry.get("arrays", {}), entry.get("params", {})
        if not isinstance(names, dict) or not isinstance(params, dict) or \
                not all(isinstance(v, str) for v in names.values()):
            raise DataError(f"stored {kind} transform: 'arrays' and 'params' must be objects")
        try:
            arrs = {name: arrays[key] for name, key in names.items()}
        except KeyError as exc:
            raise DataError(f"stored chain refers to a missing array {exc}") from None
        try:
            chain.append(cls.from_arrays(params, arrs))
        except (TypeError, ValueError, AttributeError, IndexError, KeyError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"stored {kind} transform is malformed ({type(exc).__name__}: {exc})") from None
    check_chain_shapes(chain)
    return chain


def check_chain_shapes(chain: list[Transform]) -> None:
    """Each step takes what the step before it gives: a stored chain whose steps were fitted on other
    shapes (hand-edited, or spliced from two files) is refused when it is loaded, not when it runs."""
    for i in range(1, len(chain)):
        gives, takes = tuple(chain[i - 1].output_shape()), tuple(chain[i].input_shape_)
        if gives != takes:
            raise DataError(f"the stored chain's step {i} ({chain[i - 1].kind}) gives samples of shape {gives}, but "
                            f"step {i + 1} ({chain[i].kind}) was fitted on samples of shape {takes}")


def read_chain(source) -> list[Transform]:
    """The fitted chain stored in a model file or a pipeline stream (path, `-` or a binary file)."""
    from .io import modelfile, npzfile, pipeline

    meta, arrays = npzfile.read(source)
    if meta.get("format") not in (pipeline.FORMAT, modelfile.FORMAT):
        raise DataError(f"{source}: expected a model file or a pipeline stream, found {meta.get('format')!r}")
    chain = chain_from_arrays(meta.get("transforms", []), arrays)
    if not chain:
        raise DataError(f"{source}: holds no preprocessing chain (nothing to apply)")
    return chain
