"""Saving and loading with the preprocessing chain: model files and pipeline streams.

The io layer (`io/modelfile.py`, `io/pipeline.py`) encodes the containers and carries the chain as
(meta, arrays); this module encodes the fitted chain on the way out (`chain_to_arrays`) and rebuilds it
on the way in (`chain_from_arrays`), so callers deal in ModelBundles and Datasets with live transforms.
"""

from __future__ import annotations

import math

import numpy as np

from .datasets.base import Dataset
from .errors import DataError, ModelFileError
from .io import modelfile, pipeline
from .io.modelfile import ModelBundle
from .preprocessing_chain import chain_from_arrays, chain_to_arrays


# -- model files ---------------------------------------------------------------------------------------
def save_model(bundle: ModelBundle, path) -> None:
    """Write a model file (atomically; `-` for stdout)."""
    modelfile.write(bundle, path, chain_to_arrays(bundle.chain))


def load_model(path) -> ModelBundle:
    """A model file as a ModelBundle; ModelFileError for foreign, truncated or newer files."""
    bundle, chain = modelfile.read(path)
    return _with_chain(bundle, chain, str(path))


def model_to_arrays(bundle: ModelBundle) -> tuple[dict, dict[str, np.ndarray]]:
    """A model file's (meta, arrays) without writing it (an ensemble nests its members this way)."""
    return modelfile.bundle_to_arrays(bundle, chain_to_arrays(bundle.chain))


def model_from_arrays(meta: dict, arrays: dict[str, np.ndarray], name: str) -> ModelBundle:
    bundle, chain = modelfile.bundle_from_arrays(meta, arrays, name)
    return _with_chain(bundle, chain, name)


def _with_chain(bundle: ModelBundle, chain, name: str) -> ModelBundle:
    try:
        bundle.chain = chain_from_arrays(*chain)
        _check_chain_feeds_model(bundle)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{name}: malformed model file ({type(exc).__name__}: {exc})") from None
    return bundle


def _check_chain_feeds_model(bundle: ModelBundle) -> None:
    """The chain's last step gives what the model takes: as many features (and, to a convnet, images of
    its shape). Without a chain the raw input shape is checked against the model (io/modelfile.py)."""
    if not bundle.chain:
        return
    gives = tuple(bundle.chain[-1].output_shape())
    takes = getattr(bundle.model, "n_features_in_", None)
    if isinstance(takes, int) and math.prod(gives) != takes:
        raise DataError(f"the stored chain gives {math.prod(gives)} features per sample, but the {bundle.kind} "
                        f"model takes {takes}")
    image = getattr(bundle.model, "input_shape_", None)
    if len(gives) == 3 and image is not None and tuple(image) != gives:
        raise DataError(f"the stored chain gives samples of shape {gives}, but the {bundle.kind} model takes "
                        f"images of shape {tuple(image)}")


# -- pipeline streams ----------------------------------------------------------------------------------
def write_stream(ds: Dataset, target) -> None:
    """Write a Dataset and its chain as a pipeline stream (a path, `-` for stdout, or a binary file)."""
    pipeline.write(ds, target, chain_to_arrays(ds.transforms))


def read_stream(source) -> Dataset:
    """A pipeline stream (a path, `-` for stdin, or a binary file) as a Dataset with its fitted chain."""
    ds, chain = pipeline.read(source)
    ds.transforms = chain_from_arrays(*chain)
    return ds
