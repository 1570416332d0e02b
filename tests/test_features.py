"""HOG, colour histograms, k-means features, standardisation and feature unions: kernels against the naive
loops of tests/reference.py (also under NUMBA_DISABLE_JIT=1), chains through files, the Python API."""

import os

import numpy as np
import pytest

from conftest import assert_runs_without_jit
from imgclf.colorhist import ColorHistogram
from imgclf.errors import DataError, UsageError
from imgclf.feature_union import FeatureUnion
from imgclf.hog import HOG
from imgclf.kmeans import kmeans
from imgclf.kmeans_features import KMeansFeatures
from imgclf.preprocessing import Standardization
from imgclf.preprocessing_chain import apply_chain, chain_from_arrays, chain_to_arrays, parse_chain_spec

from reference import color_hist_naive, hog_naive, kmeans_features_naive, kmeans_naive


def _images(n=3, h=16, w=16, c=3, seed=0):
    rng = np.random.default_rng(seed)
    # smooth-ish images (a gradient plus noise) so that HOG sees structure, not only noise
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy * 7 + xx * 3)[None, :, :, None] % 256
    return np.clip(base + rng.integers(-40, 41, size=(n, h, w, c)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("norm", ["l2hys", "l2", "l1", "l1sqrt", "none"])
@pytest.mark.parametrize("signed", [False, True])
def test_hog_matches_naive_loop(norm, signed):
    X = _images()
    got = HOG(cell=4, bins=9, block=2, norm=norm, signed=signed).fit_transform(X)
    want = hog_naive(X, cell=4, bins=9, block=2, norm=norm, signed=signed)
    assert got.dtype == np.float32 and got.shape == want.shape
    if norm == "l1sqrt":  # the square root magnifies float32 rounding of near-empty bins: compare squares
        got, want = got.astype(np.float64) ** 2, want ** 2
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_hog_grey_images_float_input_and_shape():
    X = _images(c=1, h=12, w=20).astype(np.float32)
    t = HOG(cell=4, bins=6, block=3).fit(X)
    got = t.transform(X)
    assert got.shape == (3, t.n_features_out_) == (3, 1 * 3 * 9 * 6)
    np.testing.assert_allclose(got, hog_naive(X, cell=4, bins=6, block=3), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("space", ["hue", "hsv"])
def test_color_histogram_matches_colorsys(space):
    X = _images(n=4, h=8, w=8, seed=3)
    X[0, :2] = 128  # grey pixels: hue 0, saturation 0
    got = ColorHistogram(bins=10, space=space).fit_transform(X)
    np.testing.assert_allclose(got, color_hist_naive(X, bins=10, space=space), atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 3 if space == "hsv" else 1, rtol=1e-5)


@pytest.mark.parametrize("init", ["gaussian", "rows"])
def test_kmeans_matches_lloyd_loop(init):
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(c, 0.3, size=(40, 3)) for c in (-2, 0, 2)]).astype(np.float32)
    C, history = kmeans(X, 4, 5, np.random.default_rng(7), init=init)
    if init == "gaussian":  # Coates et al.: randn(k, D) * 0.1
        start = np.random.default_rng(7).standard_normal((4, 3)) * 0.1
    else:
        start = X[np.sort(np.random.default_rng(7).choice(len(X), size=4, replace=False))]
    np.testing.assert_allclose(C, kmeans_naive(X, start, 5), rtol=1e-5, atol=1e-5)
    assert len(history) == 5 and history[-1] <= history[0]
    again, _ = kmeans(X, 4, 5, np.random.default_rng(7), init=init)
    np.testing.assert_array_equal(C, again)  # same seed, same centroids


def test_kmeans_empty_cluster_is_zeroed():
    """Two far clusters, 3 centres: the Gaussian start near the origin leaves one centre empty -> zero."""
    X = np.array([[10.0, 0], [10.1, 0], [-10.0, 0], [-10.1, 0]], dtype=np.float32)
    start = np.random.default_rng(0).standard_normal((3, 2)) * 0.1
    C, _ = kmeans(X, 3, 2, np.random.default_rng(0))
    np.testing.assert_allclose(C, kmeans_naive(X, start, 2), atol=1e-5)
    assert (np.abs(C).sum(axis=1) == 0).sum() >= 1
    with pytest.raises(UsageError, match="init"):
        kmeans(X, 2, 1, np.random.default_rng(0), init="kmeans++")


def _fitted_kmeans(X, **kw):
    params = dict(centroids=6, patch=4, patches=300, iterations=4, random_state=3)
    params.update(kw)
    return KMeansFeatures(**params).fit(X)


@pytest.mark.parametrize("stride, small_chunks", [(1, False), (3, False), (1, True)])
def test_kmeans_features_match_naive_extraction(stride, small_chunks, monkeypatch):
    X = _images(n=5, h=11, w=10)
    t = _fitted_kmeans(X, stride=stride)
    if small_chunks:  # chunks of 8 patch rows that straddle images and quadrants, one image per block
        import imgclf.kmeans_features as kf

        monkeypatch.setattr(kf, "_CHUNK_BYTES", 4 * 6 * 8)
        monkeypatch.setattr(kf, "_BLOCK_BYTES", 1)
        assert t.chunk_rows() == 8 and t.block_plan(3)[0] == 1
    got = t.transform(X[:3])
    want = kmeans_features_naive(X[:3], t.centroids_, t.zca_mean_, t._zca_matrix, 4, stride, 10.0)
    assert got.shape == (3, 24)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)


def test_kmeans_features_seeded_and_whitened():
    X = _images(n=6, h=12, w=12)
    a, b = _fitted_kmeans(X), _fitted_kmeans(X)
    np.testing.assert_array_equal(a.centroids_, b.centroids_)
    assert not np.array_equal(a.centroids_, _fitted_kmeans(X, random_state=4).centroids_)
    assert a.filters().shape == (6, 4, 4, 3)
    with pytest.raises(UsageError, match="images"):
        KMeansFeatures().fit(X.reshape(6, -1))
    with pytest.raises(UsageError, match="centroids"):
        KMeansFeatures(centroids=500, patches=100).fit(X)
    with pytest.raises(UsageError, match="init"):
        KMeansFeatures(init="random").fit(X)
    assert a.init == "gaussian" and a.to_arrays()[0]["init"] == "gaussian"
    rows = _fitted_kmeans(X, init="rows")
    assert not np.array_equal(rows.centroids_, a.centroids_)


def test_kmeans_model_without_init_loads_as_rows():
    """Files written before `init` existed were fitted from data rows: they load and say so."""
    X = _images(n=4, h=10, w=10)
    t = _fitted_kmeans(X, init="rows")
    meta, arrays = chain_to_arrays([t])
    del meta[0]["params"]["init"]
    old = chain_from_arrays(meta, arrays)[0]
    assert old.init == "rows"
    np.testing.assert_array_equal(old.transform(X), t.transform(X))


def test_chains_round_trip_bit_identical():
    X = _images(n=6, h=12, w=12)
    chain = parse_chain_spec("hog:cell=4:block=2+colorhist:bins=8,standardize")
    first = parse_chain_spec("kmeans:5:patch=4:patches=200:iterations=3:init=rows:seed=2,standardize:0.01")
    for steps in (chain, first):
        out = X
        for t in steps:
            out = t.fit(out).transform(out)
        meta, arrays = chain_to_arrays(steps)
        rebuilt = chain_from_arrays(meta, arrays)
        np.testing.assert_array_equal(apply_chain(rebuilt, X), out)
    assert isinstance(chain[0], FeatureUnion) and chain[0].transforms[1].bins == 8
    assert first[0].random_state == 2 and first[0].init == "rows" and first[1].eps == 0.01


def test_chain_standardizes_its_own_arrays_in_place(monkeypatch):
    """standardize after another step overwrites that step's output (no second copy), never the caller's
    data, and gives the same numbers as the copying transform."""
    from imgclf.datasets.base import Dataset, Split
    from imgclf.preprocessing_chain import fit_chain

    rng = np.random.default_rng(0)
    F = {key: rng.normal(3, 2, size=(n, 7)).astype(np.float32) for key, n in (("train", 40), ("test", 9))}
    given = {key: v.copy() for key, v in F.items()}
    ds = Dataset({key: Split(v, np.zeros(len(v), dtype=np.int64)) for key, v in F.items()}, ["a"], (1, 1, 7))
    made = []
    original = Standardization._transform
    monkeypatch.setattr(Standardization, "_transform", lambda self, X: made.append(original(self, X)) or made[-1])
    out = fit_chain(parse_chain_spec("standardize,standardize:0.5"), ds)
    assert len(made) == 2  # the first step copied each split (given data); the second did not copy
    assert out.get("train").X is made[0]  # it wrote over the first step's output
    for key in F:
        np.testing.assert_array_equal(F[key], given[key])  # the caller's arrays are untouched
        first = out.transforms[0].transform(given[key])
        np.testing.assert_array_equal(out.get(key).X, out.transforms[1].transform(first))
    # apply_chain likewise: the caller's X stays, the result equals step by step
    made.clear()
    Y = apply_chain(out.transforms, F["test"])
    np.testing.assert_array_equal(F["test"], given["test"])
    assert len(made) == 1 and Y is made[0]


def test_chain_checks_each_step_input_once(monkeypatch):
    """_apply_step checks its input once (not again inside transform), on the in-place and the copying
    path alike, and the check still refuses what it refused: NaN, a wrong shape."""
    from imgclf.datasets.base import Dataset, Split
    from imgclf.preprocessing import Transform
    from imgclf.preprocessing_chain import _apply_step, fit_chain

    rng = np.random.default_rng(0)
    X = rng.normal(3, 2, size=(30, 5)).astype(np.float32)
    ds = Dataset({"train": Split(X, np.zeros(30, dtype=np.int64))}, ["a"], (1, 1, 5))
    calls = []
    original = Transform._check_input
    monkeypatch.setattr(Transform, "_check_input", lambda self, A: calls.append(self.kind) or original(self, A))
    # mean copies the caller's data, normalize copies the chain's own (no in-place form), standardize
    # writes over it
    out = fit_chain(parse_chain_spec("mean,normalize,standardize"), ds)
    assert calls == ["mean", "normalize", "standardize"]
    calls.clear()
    Y = apply_chain(out.transforms, X)
    assert calls == ["mean", "normalize", "standardize"]
    np.testing.assert_array_equal(Y, out.get("train").X)
    bad = X.copy()
    bad[3, 2] = np.nan
    for given in ([bad], []):  # the copying path (caller's data) and the in-place path (the chain's own)
        with pytest.raises(DataError, match="NaN"):
            _apply_step(out.transforms[2], bad.copy(), given)
        with pytest.raises(DataError, match="shape"):
            _apply_step(out.transforms[2], X[:, :4].copy(), given)


def test_standardization_and_spec_errors():
    rng = np.random.default_rng(0)
    X = rng.normal(5, 3, size=(200, 4)).astype(np.float32)
    X[:, 3] = 1.0
    Z = Standardization().fit_transform(X)
    np.testing.assert_allclose(Z[:, :3].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Z[:, :3].std(axis=0), 1, rtol=1e-4)
    np.testing.assert_array_equal(Z[:, 3], 0)
    t = Standardization(eps=0.5).fit(X)
    np.testing.assert_allclose(t.inverse_transform(t.transform(X)), X, rtol=1e-5)
    for bad in ("hog:cell=x", "hog:size=3", "kmeans:1600:foo=1", "hog+", "standardize:abc"):
        with pytest.raises(UsageError):
            parse_chain_spec(bad)
    with pytest.raises(UsageError, match="norm"):
        HOG(norm="l3").fit(_images())
    with pytest.raises(UsageError, match="RGB"):
        ColorHistogram().fit(_images(c=1))
    with pytest.raises(DataError, match="unknown transform"):
        chain_from_arrays([{"kind": "nope", "params": {}, "arrays": {}}], {})


def test_transformers_in_a_scikit_learn_pipeline():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline

    from conftest import make_images
    from imgclf.linear import LinearSVM

    X, y = make_images(60, shape=(8, 8, 3), seed=4)
    pipe = make_pipeline(FeatureUnion([HOG(cell=4), ColorHistogram(bins=6)]), Standardization(),
                         LinearSVM(lr=1e-2, reg=1e-3, epochs=3, random_state=0))
    assert pipe.fit(X, y).score(X, y) > 0.6
    km = clone(KMeansFeatures(centroids=4, patch=4, patches=200, iterations=2))
    assert km.fit_transform(X[:10]).shape == (10, 16)
    with pytest.raises(UsageError, match="patch"):
        KMeansFeatures(patch=9).fit(X)
    assert sklearn.__version__


_NO_JIT = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
from test_features import _images, _fitted_kmeans
from reference import hog_naive, color_hist_naive, kmeans_features_naive
from imgclf.hog import HOG
from imgclf.colorhist import ColorHistogram
X = _images(n=2, h=8, w=8)
for norm in ("l2hys", "l1", "none"):
    np.testing.assert_allclose(HOG(cell=4, bins=5, norm=norm).fit_transform(X),
                               hog_naive(X, cell=4, bins=5, norm=norm), rtol=2e-4, atol=2e-5)
np.testing.assert_allclose(ColorHistogram(bins=5, space="hsv").fit_transform(X),
                           color_hist_naive(X, bins=5, space="hsv"), atol=1e-6)
t = _fitted_kmeans(_images(n=3, h=8, w=8), centroids=3, patches=60, iterations=2)
import imgclf.kmeans_features as kf
kf._CHUNK_BYTES = 4 * 3 * 8  # chunks of 8 patch rows, straddling the images
np.testing.assert_allclose(t.transform(X), kmeans_features_naive(X, t.centroids_, t.zca_mean_, t._zca_matrix,
                           4, 1, 10.0), rtol=2e-3, atol=2e-3)
print("ok")
"""


def test_kernels_without_jit():
    """NUMBA_DISABLE_JIT=1: the kernels' Python source is what gets compiled; it must agree too."""
    tests = os.path.dirname(__file__)
    code = _NO_JIT.format(tests=tests)
    assert_runs_without_jit(code)
