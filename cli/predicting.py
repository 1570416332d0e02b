"""Helpers for the commands that use saved models (predict, evaluate, ensemble, viz).

They live here, not in any one command, because commands never import each other.
"""

from __future__ import annotations


def model_inputs(bundle, X, chain: list, source: str):
    """What the bundle's model takes, from X that already went through `chain` (a stream's, maybe empty).

    Raw images go through the model's preprocessing chain; a stream preprocessed by exactly that chain is
    used as it is; anything else would be preprocessed twice or differently, and is refused.
    """
    from imgclf.errors import DataError
    from imgclf.preprocessing_chain import same_chain

    if chain:
        if same_chain(chain, bundle.chain):
            return X
        raise DataError(f"{source} was preprocessed with {[t.kind for t in chain]}, but the model expects raw "
                        f"images to go through its own chain {[t.kind for t in bundle.chain]}; give it raw data")
    if tuple(X.shape[1:]) != tuple(bundle.input_shape):
        raise DataError(f"{source}: images of shape {tuple(X.shape[1:])}, but the model takes "
                        f"{tuple(bundle.input_shape)} (resize image folders with --size)")
    return bundle.features(X)


def class_name(bundle, label) -> str:
    """A model label to the class name it stands for (labels are class indices for imgclf datasets)."""
    import numpy as np

    if isinstance(label, (int, np.integer)) and 0 <= int(label) < len(bundle.classes):
        return bundle.classes[int(label)]
    return str(label)


def scored(bundle, features, top: int):
    """Per row: [(label, value), ...] best first, and what the value is ('probability', 'score' or None)."""
    import numpy as np

    model = bundle.model
    for method, what in (("predict_proba", "probability"), ("decision_function", "score")):
        if hasattr(model, method):
            values = np.asarray(getattr(model, method)(features), dtype=np.float64)
            if values.ndim == 1:  # scikit-learn's binary decision_function: s_1 - s_0, shown as -d, +d
                values = np.column_stack([-values, values])
            labels = np.asarray(getattr(model, "classes_", np.arange(values.shape[1])))
            order = np.argsort(-values, axis=1, kind="stable")[:, :top]
            return [[(labels[j], float(values[i, j])) for j in row] for i, row in enumerate(order)], what
    if top > 1:
        from imgclf.errors import UsageError

        raise UsageError(f"a {bundle.kind} model gives neither probabilities nor scores; --top needs them")
    return [[(label, None)] for label in model.predict(features)], None
