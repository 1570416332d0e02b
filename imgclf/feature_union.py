"""Side-by-side transforms: `hog+colorhist` fits each part on the same input and concatenates their outputs.

The parts are stored inside the union's own entry of the chain (their parameters in its JSON, their
arrays under `part{i}_{name}`), so a model file carries them like any other step.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError, UsageError
from .preprocessing import Transform, _flat


class FeatureUnion(Transform):
    """Concatenate the (flattened) outputs of several transforms fitted on the same data, CS231n's
    `extract_features(imgs, [hog_feature, color_histogram_hsv])`."""

    kind = "union"

    def __init__(self, transforms=()):
        self.transforms = transforms

    def _validate_params(self, X):
        if not self.transforms or not all(isinstance(t, Transform) for t in self.transforms):
            raise UsageError("a feature union needs a non-empty list of transforms")

    def _fit(self, X):
        for t in self.transforms:
            t.fit(X)

    def _transform(self, X):
        return np.concatenate([_flat(t.transform(X)) for t in self.transforms], axis=1).astype(np.float32, copy=False)

    def keeps_shape(self) -> bool:
        return False  # the parts' outputs are flattened and concatenated

    def output_shape(self) -> tuple[int, ...]:
        self._check_fitted()
        return (sum(int(np.prod(t.output_shape())) for t in self.transforms),)

    def _check_fitted(self):
        super()._check_fitted()
        for t in self.transforms:
            t._check_fitted()

    def to_arrays(self):
        self._check_fitted()
        parts, arrays = [], {}
        for i, t in enumerate(self.transforms):
            params, arrs = t.to_arrays()
            parts.append({"kind": t.kind, "params": params, "arrays": sorted(arrs)})
            arrays.update({f"part{i}_{name}": a for name, a in arrs.items()})
        return {"parts": parts, "input_shape_": list(self.input_shape_)}, arrays

    @classmethod
    def from_arrays(cls, params, arrays):
        from .preprocessing_chain import transform_class

        try:
            parts = params["parts"]
            input_shape = tuple(int(v) for v in params["input_shape_"])
            transforms = []
            for i, part in enumerate(parts):
                if part["kind"] == "union":  # unions are flat: a nested one is a crafted file
                    raise ValueError("a union inside a union")
                arrs = {name: arrays[f"part{i}_{name}"] for name in part["arrays"]}
                transforms.append(transform_class(part["kind"]).from_arrays(part["params"], arrs))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"stored union transform is malformed ({type(exc).__name__}: {exc})") from None
        obj = cls(transforms)
        obj.input_shape_ = input_shape
        if not transforms or any(tuple(t.input_shape_) != input_shape for t in transforms):
            raise DataError("stored union transform: its parts were fitted on other shapes")
        return obj

    def describe(self) -> dict:
        return {"kind": self.kind, "parts": [t.describe() for t in self.transforms]}
