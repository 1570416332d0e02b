"""Preprocessing transforms and the chain that carries them from training data to prediction.

A Transform is fitted on the training split only (`fit(X) -> self`) and then applied to any data
(`transform(X)`). Its learned state is a few arrays plus JSON parameters (`to_arrays` / `from_arrays`),
so a chain can be written into a pipeline stream or a model file and rebuilt without pickle.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError, UsageError

TRANSFORMS: dict[str, type] = {}


def register(cls):
    TRANSFORMS[cls.kind] = cls
    return cls


class Transform:
    """Base class. Subclasses set `kind`, implement `_fit`, `_transform`, and list their learned arrays."""

    kind = "transform"
    _array_names: tuple[str, ...] = ()

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self._param_names():
                raise UsageError(f"{type(self).__name__} has no parameter {k!r}")
            setattr(self, k, v)
        return self

    @classmethod
    def _param_names(cls) -> list[str]:
        import inspect

        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    # -- state -------------------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        params = self.get_params()
        params["input_shape_"] = list(self.input_shape_)
        return params, {name: getattr(self, name) for name in self._array_names}

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]):
        params = dict(params)
        input_shape = tuple(params.pop("input_shape_"))
        obj = cls(**params)
        obj.input_shape_ = input_shape
        for name in cls._array_names:
            if name not in arrays:
                raise DataError(f"{cls.kind} transform is missing its array {name!r}")
            setattr(obj, name, arrays[name])
        return obj

    def describe(self) -> dict:
        return {"kind": self.kind, **self.get_params()}


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
    for entry in meta:
        kind = entry.get("kind")
        cls = TRANSFORMS.get(kind)
        if cls is None:
            raise DataError(f"unknown transform {kind!r} in the stored chain")
        try:
            arrs = {name: arrays[key] for name, key in entry.get("arrays", {}).items()}
        except KeyError as exc:
            raise DataError(f"stored chain refers to a missing array {exc}") from None
        chain.append(cls.from_arrays(entry.get("params", {}), arrs))
    return chain


def apply_chain(chain: list[Transform], X: np.ndarray) -> np.ndarray:
    for t in chain:
        X = t.transform(X)
    return X
