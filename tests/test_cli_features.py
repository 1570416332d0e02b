"""`imgclf preprocess hog | colorhist | kmeans | standardize`, inline `--preprocess` feature chains, and
`imgclf viz centroids`: pipes and inline specs agree, model files predict image files like the pipeline."""

import numpy as np
import pytest
from PIL import Image

from conftest import make_images
from imgclf.datasets.base import Dataset, Split
from imgclf.storage import load_model, read_stream, write_stream
from imgclf_cli.main import cli

KMEANS = ["--centroids", "6", "--patch", "4", "--patches", "400", "--iterations", "3"]
KMEANS_SPEC = "kmeans:6:patch=4:patches=400:iterations=3"


@pytest.fixture
def stream16(tmp_path):
    """Separable 16x16x3 images (3 classes), train/val/test."""
    splits = {}
    for key, n, seed in (("train", 90, 1), ("val", 30, 2), ("test", 30, 3)):
        X, y = make_images(n, shape=(16, 16, 3), seed=seed)
        splits[key] = Split(X, y)
    path = tmp_path / "tiny16.npz"
    write_stream(Dataset(splits, ["a", "b", "c"], (16, 16, 3), [], "tiny16"), path)
    return path


def _run(runner, args, input=None):
    res = runner.invoke(cli, args, input=input)
    assert res.exit_code == 0, res.output
    return res


def test_preprocess_hog_colorhist_pipe_equals_inline_spec(runner, stream16, tmp_path):
    piped = tmp_path / "hog.npz"
    first = _run(runner, ["preprocess", "hog", "--data", str(stream16), "--cell", "4", "--colorhist", "8", "-q"])
    _run(runner, ["preprocess", "standardize", "--data", "-", "-o", str(piped), "-q"], input=first.stdout_bytes)
    ds = read_stream(piped)
    assert [t.kind for t in ds.transforms] == ["union", "standardize"]
    assert ds.get("train").X.shape == (90, 9 * 4 * 9 + 8)
    model = tmp_path / "svm.npz"
    res = _run(runner, ["train", "svm", "--data", str(stream16), "--preprocess", "hog:cell=4+colorhist:bins=8,standardize",
                        "--lr", "1e-2", "--reg", "1e-3", "--epochs", "3", "-o", str(model), "-q", "--json"])
    assert '"accuracy"' in res.stdout
    # the model's chain, applied to the raw test split, equals the piped features
    bundle = load_model(model)
    np.testing.assert_array_equal(bundle.features(read_stream(stream16).get("test").X), ds.get("test").X)


def test_preprocess_colorhist_and_errors(runner, stream16, tmp_path):
    out = tmp_path / "hist.npz"
    _run(runner, ["preprocess", "colorhist", "--data", str(stream16), "--bins", "6", "--space", "hsv", "-o", str(out),
                  "-q"])
    X = read_stream(out).get("train").X
    assert X.shape == (90, 18)
    np.testing.assert_allclose(X.sum(axis=1), 3, rtol=1e-5)
    res = runner.invoke(cli, ["train", "svm", "--data", str(stream16), "--preprocess", "hog:cell=x", "-q"])
    assert res.exit_code == 2 and "hog" in res.output
    res = runner.invoke(cli, ["preprocess", "hog", "--data", str(out), "-q", "-o", str(tmp_path / "x.npz")])
    assert res.exit_code == 2 and "images" in res.output


def test_kmeans_model_predicts_image_files_like_the_pipeline(runner, stream16, tmp_path):
    feats = tmp_path / "km.npz"
    _run(runner, ["preprocess", "kmeans", "--data", str(stream16), *KMEANS, "--seed", "3", "-o", str(feats), "-q"])
    ds = read_stream(feats)
    assert ds.get("train").X.shape == (90, 24) and ds.transforms[0].random_state == 3
    model = tmp_path / "svm.npz"
    _run(runner, ["train", "svm", "--data", str(stream16), "--preprocess", f"{KMEANS_SPEC}:seed=3,standardize:0.01",
                  "--lr", "1e-2", "--reg", "1e-3", "--epochs", "3", "-o", str(model), "-q"])
    bundle = load_model(model)
    np.testing.assert_array_equal(bundle.chain[0].centroids_, ds.transforms[0].centroids_)
    # an image file through `predict` gives the label the model gives the pipeline's features
    test_x = read_stream(stream16).get("test").X
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(test_x[i]).save(paths[i])
    res = _run(runner, ["predict", "-m", str(model), *map(str, paths), "--format", "csv"])
    labels = [row.split(",")[1] for row in res.stdout.strip().splitlines()[1:]]
    want = bundle.model.predict(bundle.features(test_x[:3]))
    assert labels == [bundle.classes[int(v)] for v in want]
    # and evaluate on the pipeline stream it was trained from agrees with the model's own score
    res = _run(runner, ["evaluate", "-m", str(model), "--data", str(stream16), "--json"])
    assert '"accuracy"' in res.stdout


def test_train_seed_reaches_the_kmeans_step(runner, stream16, tmp_path):
    """`train --seed S --preprocess kmeans:...` seeds k-means with S unless the spec sets its own seed."""
    def chain_of(spec, seed):
        model = tmp_path / f"m{seed}_{len(spec)}.npz"
        _run(runner, ["train", "svm", "--data", str(stream16), "--preprocess", spec, "--seed", str(seed),
                      "--epochs", "1", "-o", str(model), "-q"])
        return load_model(model).chain[0]

    a, b, c = chain_of(KMEANS_SPEC, 5), chain_of(KMEANS_SPEC, 5), chain_of(KMEANS_SPEC, 6)
    assert a.random_state == 5 and c.random_state == 6
    np.testing.assert_array_equal(a.centroids_, b.centroids_)  # same seed, same result
    assert not np.array_equal(a.centroids_, c.centroids_)
    pinned = chain_of(f"{KMEANS_SPEC}:seed=3", 6)  # the spec's own seed wins
    piped = tmp_path / "km3.npz"
    _run(runner, ["preprocess", "kmeans", "--data", str(stream16), *KMEANS, "--seed", "3", "-o", str(piped), "-q"])
    assert pinned.random_state == 3
    np.testing.assert_array_equal(pinned.centroids_, read_stream(piped).transforms[0].centroids_)
    rows = chain_of(f"{KMEANS_SPEC}:init=rows", 5)
    assert rows.init == "rows" and not np.array_equal(rows.centroids_, a.centroids_)


def _assert_malformed(runner, meta, arrays, path, data, field):
    """The hand-edited model (meta, arrays) written to path is refused naming `field`: by load_model, and by
    `evaluate` with exit 2 and one line, no traceback."""
    from imgclf.errors import ModelFileError
    from imgclf.io import npzfile

    npzfile.write(path, arrays, meta)
    with pytest.raises(ModelFileError, match=f"malformed model file.*{field}"):
        load_model(path)
    res = runner.invoke(cli, ["evaluate", "-m", str(path), "--data", str(data), "-q"])
    assert res.exit_code == 2 and "malformed model file" in res.output and field in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("field,value", [("init", "bogus"), ("stride", 0), ("zca_eps", -1.0), ("iterations", 0)])
def test_hand_edited_kmeans_hyperparameters_are_a_malformed_model_file(runner, stream16, tmp_path, field, value):
    """A model file whose kmeans step has a bad hyperparameter is refused on load (exit 2), as a fit would
    refuse it, also those transform never reads (init) or that would only fail inside it (stride=0)."""
    from imgclf.io import npzfile

    model = tmp_path / "svm.npz"
    _run(runner, ["train", "svm", "--data", str(stream16), "--preprocess", f"{KMEANS_SPEC},standardize:0.01",
                  "--epochs", "1", "-o", str(model), "-q"])
    meta, arrays = npzfile.read(model)
    assert meta["transforms"][0]["kind"] == "kmeans" and meta["transforms"][0]["params"]["init"] == "gaussian"
    meta["transforms"][0]["params"][field] = value
    _assert_malformed(runner, meta, arrays, tmp_path / "edited.npz", stream16, field)
    # the same edit in a pipeline stream's chain is refused as malformed data
    feats = tmp_path / "km.npz"
    _run(runner, ["preprocess", "kmeans", "--data", str(stream16), *KMEANS, "-o", str(feats), "-q"])
    meta, arrays = npzfile.read(feats)
    meta["transforms"][0]["params"][field] = value
    npzfile.write(feats, arrays, meta)
    res = runner.invoke(cli, ["knn", "--data", str(feats), "-q"])
    assert res.exit_code == 2 and "stored kmeans transform" in res.output and field in res.output


@pytest.mark.parametrize("part,field,value", [(0, "norm", "bogus"), (0, "cell", 0), (0, "signed", "yes"),
                                              (1, "bins", 0), (1, "space", "rgb")])
def test_hand_edited_hog_colorhist_hyperparameters_are_a_malformed_model_file(runner, stream16, tmp_path, part,
                                                                              field, value):
    """hog and colorhist parameters are checked on load as at fit: colorhist bins=0 used to make its kernel
    write outside the output array (heap corruption, abort), hog cell=0 divided by zero in transform."""
    from imgclf.io import npzfile

    model = tmp_path / "svm.npz"
    _run(runner, ["train", "svm", "--data", str(stream16), "--preprocess", "hog:cell=4+colorhist:bins=8,standardize",
                  "--epochs", "1", "-o", str(model), "-q"])
    meta, arrays = npzfile.read(model)
    assert meta["transforms"][0]["kind"] == "union"
    meta["transforms"][0]["params"]["parts"][part]["params"][field] = value
    _assert_malformed(runner, meta, arrays, tmp_path / "edited.npz", stream16, field)


def test_preprocess_kmeans_options_show_the_library_defaults():
    import inspect

    import click

    from imgclf.kmeans_features import KMeansFeatures

    cmd = cli.commands["preprocess"].commands["kmeans"]
    signature = inspect.signature(KMeansFeatures.__init__).parameters
    shown = {opt.name: opt.default for opt in cmd.params if isinstance(opt, click.Option)}
    for name in ("centroids", "patch", "stride", "patches", "iterations", "init"):
        assert shown[name] == signature[name].default, name


def test_viz_centroids(runner, stream16, tmp_path):
    feats = tmp_path / "km.npz"
    _run(runner, ["preprocess", "kmeans", "--data", str(stream16), *KMEANS, "-o", str(feats), "-q"])
    png = tmp_path / "c.png"
    res = _run(runner, ["viz", "centroids", str(feats), "-o", str(png), "--scale", "2"])
    img = Image.open(png)
    assert img.size[0] > 20 and "6 of 6 centroids" in res.output
    res = runner.invoke(cli, ["viz", "centroids", str(stream16), "-o", str(png)])
    assert res.exit_code == 2


def test_help_texts_have_examples(runner):
    for cmd in (["preprocess", "hog"], ["preprocess", "colorhist"], ["preprocess", "kmeans"],
                ["preprocess", "standardize"], ["viz", "centroids"]):
        res = _run(runner, [*cmd, "--help"])
        assert "Examples:" in res.output
