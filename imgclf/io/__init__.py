"""File formats: the pipeline stream and model files, both .npz + JSON metadata, never pickle."""
