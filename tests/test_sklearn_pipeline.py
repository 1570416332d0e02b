"""The estimators inside scikit-learn's Pipeline and GridSearchCV, and the Python API giving exactly the
CLI's results for the same data and seed (the CLI calls these same classes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from imgclf import (PCA, ConvNet, KNNClassifier, LinearSVM, MeanSubtraction, NeuralNet, Normalization,
                    SoftmaxClassifier, Whitening)
from imgclf_cli.main import cli

pytestmark = pytest.mark.filterwarnings("ignore:Estimator .* does not inherit:UserWarning")


def noisy_images(n, seed, shape=(6, 6, 3), n_classes=3, spread=(110, 146), noise=70.0):
    """uint8 images: a fixed random prototype per class plus heavy noise, so accuracy is well below 1."""
    r = np.random.default_rng(seed)
    protos = np.random.default_rng(99).integers(*spread, size=(n_classes,) + shape)
    y = r.integers(0, n_classes, n)
    X = np.clip(protos[y] + r.normal(0, noise, size=(n,) + shape), 0, 255).astype(np.uint8)
    return X, y


SEARCHES = {
    "knn": (Pipeline([("mean", MeanSubtraction()), ("pca", PCA(dims=8)), ("clf", KNNClassifier())]),
            {"clf__k": [1, 7], "pca__dims": [4, 16]}),
    "svm": (Pipeline([("mean", MeanSubtraction()), ("norm", Normalization()),
                      ("clf", LinearSVM(epochs=5, batch_size=30, random_state=0))]),
            {"clf__lr": [1e-4, 1e-2], "clf__reg": [0.0, 1e-2]}),
    "softmax": (Pipeline([("mean", MeanSubtraction()), ("norm", Normalization()),
                          ("clf", SoftmaxClassifier(epochs=5, batch_size=30, random_state=0))]),
                {"clf__lr": [1e-4, 1e-2], "clf__reg": [0.0, 1e-2]}),
    "net": (Pipeline([("mean", MeanSubtraction(per_channel=True)), ("white", Whitening(dims=20)),
                      ("clf", NeuralNet(epochs=4, batch_size=30, lr=3e-3, random_state=0))]),
            {"clf__hidden": [(8,), (32, 16)]}),
    "convnet": (Pipeline([("mean", MeanSubtraction(per_channel=True)),
                          ("clf", ConvNet(filters=(4,), hidden=8, epochs=6, batch_size=30, lr=1e-2, random_state=0))]),
                {"clf__filter_size": [1, 3]}),
}


@pytest.mark.parametrize("kind", sorted(SEARCHES))
def test_grid_search_over_a_pipeline_on_images(kind):
    pipe, grid = SEARCHES[kind]
    X, y = noisy_images(150, seed=1, spread=(80, 176))
    names = np.array(["airplane", "bird", "cat"])[y]  # string classes all the way through
    search = GridSearchCV(pipe, grid, cv=StratifiedKFold(3), error_score="raise").fit(X, names)
    assert len(search.cv_results_["params"]) == np.prod([len(v) for v in grid.values()])
    Xt, yt = noisy_images(60, seed=2, spread=(80, 176))
    best = search.best_estimator_
    assert list(best.classes_) == ["airplane", "bird", "cat"]
    assert best.score(Xt, np.array(["airplane", "bird", "cat"])[yt]) > 0.5
    # the refit best pipeline is an ordinary fit of the same settings
    again = clone(pipe).set_params(**search.best_params_).fit(X, names)
    np.testing.assert_array_equal(again.predict(Xt), best.predict(Xt))


@pytest.fixture
def tiny(tmp_path):
    """A stream with train/val/test splits, and its arrays."""
    from imgclf import storage
    from imgclf.datasets.base import Dataset, Split

    splits = {"train": noisy_images(150, 1), "val": noisy_images(40, 2), "test": noisy_images(60, 3)}
    ds = Dataset({k: Split(X, y) for k, (X, y) in splits.items()}, ["a", "b", "c"], (6, 6, 3), [], "tiny")
    path = tmp_path / "tiny.npz"
    storage.write_stream(ds, path)
    return path, splits


def _cli_json(runner, args):
    result = runner.invoke(cli, args + ["--json", "-q"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind,cls", [("softmax", SoftmaxClassifier), ("svm", LinearSVM)])
def test_linear_cli_equals_python(runner, tiny, kind, cls):
    path, s = tiny
    out = _cli_json(runner, ["train", kind, "--data", str(path), "--seed", "3", "--lr", "2e-6", "--epochs", "4",
                             "--batch-size", "50"])
    # The CLI's default chain is `--preprocess mean`, fitted on the training split; val picks the epoch.
    mean = MeanSubtraction().fit(s["train"][0])
    model = cls(lr=2e-6, epochs=4, batch_size=50, random_state=3)
    model.fit(mean.transform(s["train"][0]), s["train"][1], mean.transform(s["val"][0]), s["val"][1])
    assert out["hyperparameters"] == model.get_params()
    assert out["accuracy"] == model.score(mean.transform(s["test"][0]), s["test"][1])
    assert 0.4 < out["accuracy"] < 1.0
    assert [h["loss"] for h in out["history"]] == [h["loss"] for h in model.history_]


def test_softmax_pipeline_equals_cli_without_validation(runner, tmp_path, tiny):
    from imgclf import storage
    from imgclf.datasets.base import Dataset, Split

    _, s = tiny
    path = tmp_path / "noval.npz"
    storage.write_stream(Dataset({"train": Split(*s["train"]), "test": Split(*s["test"])}, ["a", "b", "c"], (6, 6, 3), [],
                           "tiny"), path)
    out = _cli_json(runner, ["train", "softmax", "--data", str(path), "--seed", "3", "--lr", "2e-6"])
    pipe = Pipeline([("mean", MeanSubtraction()), ("clf", SoftmaxClassifier(lr=2e-6, random_state=3))])
    assert out["accuracy"] == pipe.fit(*s["train"]).score(*s["test"])


def test_knn_cli_equals_python(runner, tiny, tmp_path):
    path, s = tiny
    preds = tmp_path / "pred.txt"
    out = _cli_json(runner, ["knn", "--k", "5", "--metric", "l2", "--data", str(path),
                             "--predictions", str(preds)])
    # Without --val the CLI fits on train + val and scores test.
    X = np.concatenate([s["train"][0], s["val"][0]])
    y = np.concatenate([s["train"][1], s["val"][1]])
    model = KNNClassifier(k=5, metric="l2").fit(X, y)
    assert out["n_train"] == len(X)
    assert out["accuracy"] == model.score(*s["test"])
    assert 0.4 < out["accuracy"] < 1.0
    np.testing.assert_array_equal(np.loadtxt(preds, dtype=int), model.predict(s["test"][0]))


def test_twolayer_cli_equals_python(runner, tiny):
    path, s = tiny
    out = _cli_json(runner, ["train", "twolayer", "--data", str(path), "--seed", "3", "--hidden", "16",
                             "--epochs", "3", "--batch-size", "30"])
    # The CLI's defaults: mean and normalisation per channel, flip augmentation for colour images,
    # dropout 0.2 and a step learning-rate schedule.
    params = dict(out["hyperparameters"], hidden=(16,))
    model = NeuralNet(**params)
    assert params == dict(model.get_params(), hidden=(16,))
    mean = MeanSubtraction(per_channel=True).fit(s["train"][0])
    norm = Normalization(per_channel=True).fit(mean.transform(s["train"][0]))

    def prep(X):
        return norm.transform(mean.transform(X))

    model.fit(prep(s["train"][0]), s["train"][1], prep(s["val"][0]), s["val"][1])
    assert out["accuracy"] == model.score(prep(s["test"][0]), s["test"][1])
