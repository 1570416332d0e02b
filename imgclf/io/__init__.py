"""File formats: the pipeline stream, model files and checkpoints, all .npz + JSON metadata, never pickle.

The io layer imports no estimator or transform: a preprocessing chain crosses it as (meta, arrays)."""
