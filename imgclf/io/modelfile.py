"""Model files: one .npz holding a model's arrays, its preprocessing chain and JSON metadata.

Every model kind goes through here. A model class provides `kind`, `to_arrays() -> (params, arrays)`
and `from_arrays(params, arrays)`; this module adds the chain, class names, input shape, history and
seed, writes atomically, and on load refuses unknown versions, foreign and truncated files.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelFileError
from . import npzfile

FORMAT = "imgclf-model"
VERSION = 1

# kind -> "module:Class"; imported only when a file of that kind is loaded.
MODEL_CLASSES = {
    "knn": "imgclf.neighbors:KNNClassifier",
    "svm": "imgclf.linear:LinearSVM",
    "softmax": "imgclf.linear:SoftmaxClassifier",
    "net": "imgclf.nn.net:NeuralNet",
    "convnet": "imgclf.nn.convnet:ConvNet",
    "ensemble": "imgclf.ensemble:Ensemble",
}


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


def model_class(kind: str):
    spec = MODEL_CLASSES.get(kind)
    if spec is None:
        raise ModelFileError(f"unknown model kind {kind!r} (known: {', '.join(MODEL_CLASSES)})")
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


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
    try:
        cls = model_class(meta["kind"])
        model_arrays = {k[len("model_"):]: v for k, v in arrays.items() if k.startswith("model_")}
        model = cls.from_arrays(meta.get("hyperparameters", {}), model_arrays)
        bundle = ModelBundle(
            model=model,
            classes=[str(c) for c in meta["classes"]],
            input_shape=tuple(int(v) for v in meta["input_shape"]),
            history=meta.get("history") or [],
            seed=meta.get("seed"),
            extra=meta.get("extra") or {},
        )
        return bundle, (meta.get("transforms", []), arrays)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{name}: malformed model file ({type(exc).__name__}: {exc})") from None
