"""Ensembles of trained models: average the class probabilities, or vote.

Members are `ModelBundle`s, each with its own preprocessing chain, so an ensemble takes raw images and
every member sees them the way it was trained. With `voting="auto"` the probabilities are averaged when
every member has `predict_proba` (softmax-type models) and the members vote otherwise (ties go to the
smallest label). An ensemble is itself a model kind ("ensemble"): its file nests every member's arrays
and metadata, so one .npz holds the whole ensemble.
"""

from __future__ import annotations

import numpy as np

from .errors import ModelFileError, UsageError

VOTING = ("auto", "soft", "hard")


class Ensemble:
    """Combine trained models: average their class probabilities, or let them vote.

    Parameters
    ----------
    members : sequence of ModelBundle, default=()
        The trained models, each with its own preprocessing chain (`storage.load_model` gives one per
        model file). They must share the class names and the raw input shape.
    voting : {"auto", "soft", "hard"}, default="auto"
        "soft" averages `predict_proba` (every member must have it); "hard" takes the majority label (ties
        to the smallest); "auto" is soft when every member gives probabilities, else hard.
    """

    kind = "ensemble"

    def __init__(self, members=(), voting="auto"):
        self.members = members
        self.voting = voting

    # -- scikit-learn estimator idiom ------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {"members": self.members, "voting": self.voting}

    def set_params(self, **params):
        for key, value in params.items():
            if key not in ("members", "voting"):
                raise UsageError(f"Ensemble has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def fit(self, X=None, y=None):
        """Members come trained; fitting only checks that they fit together."""
        self._check()
        return self

    def _check(self) -> list:
        members = list(self.members)
        if not members:
            raise UsageError("an ensemble needs at least one member model")
        if self.voting not in VOTING:
            raise UsageError(f"voting must be one of {', '.join(VOTING)}, got {self.voting!r}")
        first = members[0]
        for i, m in enumerate(members[1:], start=2):
            if list(m.classes) != list(first.classes):
                raise UsageError(f"member {i} has classes {m.classes}, member 1 has {first.classes}")
            if tuple(m.input_shape) != tuple(first.input_shape):
                raise UsageError(f"member {i} takes inputs of shape {tuple(m.input_shape)}, "
                                 f"member 1 takes {tuple(first.input_shape)}")
        if self.voting == "soft" and not self.soft_capable(members):
            kinds = [m.kind for m in members if not hasattr(m.model, "predict_proba")]
            raise UsageError(f"soft voting needs class probabilities, which {', '.join(kinds)} models do not give")
        return members

    @staticmethod
    def soft_capable(members) -> bool:
        return all(hasattr(m.model, "predict_proba") for m in members)

    @property
    def classes_(self) -> np.ndarray:
        return np.arange(len(self._check()[0].classes))

    @property
    def soft(self) -> bool:
        return self.voting == "soft" or (self.voting == "auto" and self.soft_capable(self._check()))

    # -- prediction ------------------------------------------------------------------------------
    def member_predictions(self, X) -> list[np.ndarray]:
        """Each member's predictions for raw X (through its own chain), as indices into the class list."""
        return [m.label_indices(m.model.predict(m.features(X))) for m in self._check()]

    def predict_proba(self, X) -> np.ndarray:
        """The mean of the members' class probabilities, (N, C) in class order."""
        members = self._check()
        if not self.soft_capable(members):
            raise UsageError("this ensemble votes: not every member gives class probabilities")
        n_classes = len(members[0].classes)
        total = np.zeros((len(X), n_classes), np.float64)
        for m in members:
            proba = np.asarray(m.model.predict_proba(m.features(X)), np.float64)
            cols = m.label_indices(getattr(m.model, "classes_", np.arange(proba.shape[1])))
            total[:, cols] += proba
        return total / len(members)

    def predict(self, X) -> np.ndarray:
        return self.predict_all(X)[0]

    def predict_all(self, X) -> tuple[np.ndarray, list[np.ndarray]]:
        """(ensemble predictions, each member's predictions), running every member once.

        With soft voting a member's prediction is the argmax of its probabilities, which for
        softmax-type models is its `predict`."""
        members = self._check()
        n_classes = len(members[0].classes)
        if not self.soft:
            preds = self.member_predictions(X)
            return self._vote(preds, n_classes), preds
        total = np.zeros((len(X), n_classes), np.float64)
        preds = []
        for m in members:
            proba = np.asarray(m.model.predict_proba(m.features(X)), np.float64)
            cols = m.label_indices(getattr(m.model, "classes_", np.arange(proba.shape[1])))
            total[:, cols] += proba
            preds.append(cols[np.argmax(proba, axis=1)])
        return np.argmax(total, axis=1).astype(np.int64), preds

    @staticmethod
    def _vote(predictions: list[np.ndarray], n_classes: int) -> np.ndarray:
        """Majority label per row; argmax takes the first maximum, so ties go to the smallest label."""
        counts = np.zeros((len(predictions[0]), n_classes), np.int64)
        rows = np.arange(len(predictions[0]))
        for p in predictions:
            np.add.at(counts, (rows, p.astype(np.int64)), 1)
        return np.argmax(counts, axis=1).astype(np.int64)

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # -- model files -----------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        from .storage import model_to_arrays

        params, arrays = {"voting": self.voting, "members": []}, {}
        for i, m in enumerate(self._check()):
            meta, arrs = model_to_arrays(m)
            params["members"].append(meta)
            arrays.update({f"member{i}_{k}": v for k, v in arrs.items()})
        return params, arrays

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict[str, np.ndarray]):
        from .storage import model_from_arrays

        metas = params.get("members")
        if not isinstance(metas, list) or not metas:
            raise ModelFileError("ensemble model file lists no members")
        members = []
        for i, meta in enumerate(metas):
            prefix = f"member{i}_"
            arrs = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            members.append(model_from_arrays(meta, arrs, f"ensemble member {i + 1}"))
        unknown = set(params) - {"members", "voting"}
        if unknown:
            raise ModelFileError(f"ensemble model file has unknown hyperparameters {', '.join(sorted(unknown))}")
        model = cls(members, params.get("voting", "auto"))
        model._check()  # the voting rule, and members that fit together, as `fit` checks them
        return model


def ensemble_bundle(members, voting: str = "auto", extra: dict | None = None):
    """A ModelBundle for an ensemble of member bundles: raw images in, no chain of its own."""
    from .io.modelfile import ModelBundle

    model = Ensemble(list(members), voting).fit()
    first = model.members[0]
    return ModelBundle(model=model, classes=list(first.classes), input_shape=tuple(first.input_shape),
                       chain=[], history=[], seed=None, extra=dict(extra or {}))
