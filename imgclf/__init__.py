"""imgclf: classic image classifiers with numba kernels.

Importing the package is cheap; the estimators load their modules on first use.
"""

from ._threading import set_spin_defaults

__version__ = "0.1.0"

set_spin_defaults()

_LAZY = {
    "KNNClassifier": "imgclf.neighbors",
    "LinearSVM": "imgclf.linear",
    "SoftmaxClassifier": "imgclf.linear",
    "NeuralNet": "imgclf.nn.net",
    "ConvNet": "imgclf.nn.convnet",
    "MeanSubtraction": "imgclf.preprocessing",
    "Normalization": "imgclf.preprocessing",
    "PCA": "imgclf.preprocessing",
    "Whitening": "imgclf.preprocessing",
    "Standardization": "imgclf.preprocessing",
    "HOG": "imgclf.hog",
    "ColorHistogram": "imgclf.colorhist",
    "FeatureUnion": "imgclf.feature_union",
    "KMeansFeatures": "imgclf.kmeans_features",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")
