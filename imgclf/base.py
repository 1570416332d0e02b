"""The bases of every public estimator and transformer, and the model-file metadata they share.

`Estimator` is the scikit-learn estimator idiom without importing scikit-learn: parameters are the
constructor's arguments, stored unchanged; `get_params`/`set_params`/`repr` read the signature.
`__sklearn_tags__` imports scikit-learn only when scikit-learn itself asks for the tags.
`Classifier` adds `score`; `TrainedClassifier` the hyperparameters and learned scalars that the model
file of every Solver-trained kind keeps.
"""

from __future__ import annotations

import inspect

import numpy as np

from .errors import ModelFileError, UsageError
from .validation import check_labels


# -- the estimator idiom -------------------------------------------------------------------------------
class Estimator:
    """get_params/set_params/repr from the constructor's signature; scikit-learn's tags on request.

    Subclasses set `_estimator_type` ("classifier" or "transformer").
    """

    _estimator_type: str | None = None

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        names = self._param_names()
        for key, value in params.items():
            if key not in names:
                raise UsageError(f"{type(self).__name__} has no parameter {key!r}; its parameters are "
                                 f"{', '.join(names)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        # Like scikit-learn: only the parameters that differ from their defaults.
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        shown = [f"{k}={v!r}" for k, v in self.get_params().items() if repr(v) != repr(defaults.get(k))]
        return f"{type(self).__name__}({', '.join(shown)})"

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags, TransformerTags

        classifier = self._estimator_type == "classifier"
        return Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=classifier),
            classifier_tags=ClassifierTags() if classifier else None,
            # transforms compute in float32 and hand back float32, whatever came in
            transformer_tags=TransformerTags(preserves_dtype=["float32"]) if hasattr(self, "transform") else None,
            input_tags=InputTags(),
        )


class Classifier(Estimator):
    """Adds scikit-learn's classifier `score` (mean accuracy)."""

    _estimator_type = "classifier"

    def score(self, X, y) -> float:
        """Mean accuracy of predict(X) against y."""
        pred = self.predict(X)
        y = check_labels(y, len(pred))
        return float(np.mean(pred == y))


class TrainedClassifier(Classifier):
    """A Solver-trained classifier: the metadata its model file shares with every other such kind."""

    _FILE_LEARNED = ("n_features_in_", "stopped_", "best_epoch_")

    def _file_params(self) -> dict:
        """JSON-able hyperparameters plus the learned scalars a model file keeps."""
        params = self.get_params()
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = None  # a Generator has no JSON form
        params["n_features_in_"] = int(self.n_features_in_)
        params["stopped_"] = getattr(self, "stopped_", None)
        params["best_epoch_"] = getattr(self, "best_epoch_", None)
        return params

    @classmethod
    def _split_file_params(cls, params: dict) -> tuple[dict, dict]:
        """(constructor arguments, learned scalars) from a model file's params; unknown names refused."""
        params = dict(params)
        learned = {k: params.pop(k, None) for k in cls._FILE_LEARNED}
        unknown = set(params) - set(cls._param_names())
        if unknown:
            raise ModelFileError(f"{cls.kind} model file has unknown hyperparameters {', '.join(sorted(unknown))}")
        return params, learned

    def _set_file_learned(self, learned: dict) -> None:
        self.stopped_ = learned["stopped_"]
        self.best_epoch_ = learned["best_epoch_"]
        self.history_ = []
