"""The one list of model kinds: the names `imgclf train KIND`, `imgclf tune KIND`, model files and
checkpoints use, each with its estimator class (imported only when asked for)."""

from __future__ import annotations

import importlib

from .errors import ModelFileError

# kind -> "module:Class"
ESTIMATORS = {
    "knn": "imgclf.neighbors:KNNClassifier",
    "svm": "imgclf.linear:LinearSVM",
    "softmax": "imgclf.linear:SoftmaxClassifier",
    "twolayer": "imgclf.nn.net:NeuralNet",
    "convnet": "imgclf.nn.convnet:ConvNet",
    "ensemble": "imgclf.ensemble:Ensemble",
}
# Names older model files use for a kind.
ALIASES = {"net": "twolayer"}
# The kinds trained by the Solver (and searched by `imgclf tune`, with knn).
TRAINED = ("svm", "softmax", "twolayer", "convnet")


def estimator_class(kind: str, error=ModelFileError):
    """The class of a kind (or of an old alias); `error` for an unknown one."""
    spec = ESTIMATORS.get(ALIASES.get(kind, kind))
    if spec is None:
        raise error(f"unknown model kind {kind!r} (known: {', '.join(ESTIMATORS)})")
    return load_class(spec)


def load_class(spec: str):
    """The class a "module:Name" spec names (specs, not classes, travel to worker processes)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)
