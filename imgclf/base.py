"""The bases of every public estimator and transformer, and the model-file metadata they share.

`Estimator` is the scikit-learn estimator idiom without importing scikit-learn: parameters are the
constructor's arguments, stored unchanged; `get_params`/`set_params`/`repr` read the signature.
`__sklearn_tags__` imports scikit-learn only when scikit-learn itself asks for the tags.
`Classifier` adds `score`; `TrainedClassifier` what every Solver-trained kind shares: the fit prologue
(validation, label encoding, class weights, `epochs="auto"`), the Solver run, and the hyperparameters
and learned scalars its model file keeps.
"""

from __future__ import annotations

import inspect

import numpy as np

from .errors import DataError, ModelFileError, UsageError
from .validation import (check_class_weight, check_int, check_labels, check_random_state, class_weights,
                         encode_labels, n_features)


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


# `epochs="auto"`: a kind's measured number of epochs, but at least this many steps, so small data sets
# (a few hundred rows: one or two steps per epoch) train as far as large ones; the extra epochs stop
# once the score has not improved for a tenth of that many steps (at least 10 epochs).
AUTO_MIN_STEPS = 600


class TrainedClassifier(Classifier):
    """A Solver-trained classifier: the fit prologue, the Solver run and the model-file metadata every
    such kind shares. Subclasses set `_AUTO_EPOCHS` (what `epochs="auto"` means on large data)."""

    _FILE_LEARNED = ("n_features_in_", "stopped_", "best_epoch_")
    _AUTO_EPOCHS = 10

    def check_params(self):
        """Validate the parameters now, before any data is converted (fit does it too); UsageError names
        the bad parameter. Returns self."""
        self._check_params()
        return self

    def _check_common_params(self) -> None:
        """The parameters every Solver-trained kind has: batch_size, epochs, class_weight and random_state;
        checked at fit and when a model file is loaded (a hand-edited one is refused as a fit would
        refuse it)."""
        check_int(self.batch_size, "batch_size")
        if not (isinstance(self.epochs, str) and self.epochs == "auto"):
            check_int(self.epochs, "epochs", what="an integer >= 1 or 'auto'")
        check_class_weight(getattr(self, "class_weight", None))
        if not isinstance(self.random_state, np.random.Generator):
            check_random_state(self.random_state)

    # -- fit -------------------------------------------------------------------------------------------
    def _fit_data(self, X, y, X_val, y_val, features):
        """(X, codes, X_val, val codes) through `features(X, name, min_samples)`; learns classes_.
        Validation labels the training set lacks are coded -1 (never predicted, so counted wrong)."""
        X = features(X, "X", 1)
        self.classes_, codes = encode_labels(check_labels(y, len(X)), min_classes=2)
        Xv = yv = None
        if X_val is not None and y_val is not None and len(y_val):
            Xv = features(X_val, "X_val", 0)
            if n_features(Xv) != n_features(X):
                raise DataError(f"X_val has {n_features(Xv)} features, X has {n_features(X)}")
            yv = self._encode(check_labels(y_val, len(Xv), "y_val"))
        return X, codes, Xv, yv

    def _encode(self, y) -> np.ndarray:
        """Labels to indices into classes_; -1 for labels the model has never seen."""
        y = np.asarray(y)
        idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        return np.where(self.classes_[idx] == y, idx, -1).astype(np.int64)

    def _class_weights(self, codes: np.ndarray) -> np.ndarray | None:
        """Per-class loss weights from `class_weight` (None, "balanced" or {label: weight}), or None."""
        return class_weights(getattr(self, "class_weight", None), self.classes_, codes)

    def epochs_for(self, n_train: int) -> tuple[int, int | None]:
        """(epochs, patience) for the Solver: `epochs="auto"` is `_AUTO_EPOCHS`, stretched to at least
        AUTO_MIN_STEPS steps on small data with an early stop for the stretch (unless patience is set)."""
        patience = getattr(self, "patience", None)
        if not (isinstance(self.epochs, str) and self.epochs == "auto"):
            return check_int(self.epochs, "epochs", what="an integer >= 1 or 'auto'"), patience
        steps = max(1, n_train // max(1, min(int(self.batch_size), n_train)))
        epochs = max(self._AUTO_EPOCHS, -(-AUTO_MIN_STEPS // steps))
        if epochs > self._AUTO_EPOCHS and patience is None:
            patience = max(10, -(-AUTO_MIN_STEPS // (10 * steps)))
        return epochs, patience

    def _run_solver(self, solver, resume=None):
        """Train; keep the Solver's result. A run that diverged before any epoch finished has no
        weights worth keeping: `Diverged`. Otherwise `stopped_` says why a run ended early."""
        if resume is not None:
            solver.load_checkpoint(resume)
        self.result_ = solver.train()
        self.history_ = self.result_.history
        self.stopped_ = self.result_.stopped
        self.best_epoch_ = self.result_.best_epoch
        if self.stopped_ and self.stopped_.startswith("diverged") and self.best_epoch_ is None:
            from .errors import Diverged

            raise Diverged(f"training {self.stopped_}")
        return self

    def predict_codes(self, X) -> np.ndarray:
        """Class indices 0..C-1 of a batch of data `fit` has validated (the Solver's accuracy)."""
        return np.argmax(self._scores(self.prepare_batch(X)), axis=1)

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
        cls._check_file_learned(learned)
        return params, learned

    @staticmethod
    def _check_file_learned(learned: dict) -> None:
        """The learned scalars as fit leaves them: the input size an integer >= 1, the best epoch an
        integer >= 1 (epochs count from 1) or None, why training stopped a text or None."""
        check_int(learned["n_features_in_"], "n_features_in_")
        check_int(learned["best_epoch_"], "best_epoch_", none=True)
        if learned["stopped_"] is not None and not isinstance(learned["stopped_"], str):
            raise ModelFileError(f"stopped_ must be a text or None, got {learned['stopped_']!r}")

    def _set_file_learned(self, learned: dict) -> None:
        self.stopped_ = learned["stopped_"]
        self.best_epoch_ = learned["best_epoch_"]
        self.history_ = []
