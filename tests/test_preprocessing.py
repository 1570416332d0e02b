"""Preprocessing transforms against plain numpy references; chains, train-only fitting, validation, images."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf import eigen
from imgclf.datasets.base import Dataset, Split
from imgclf.errors import DataError, UsageError
from imgclf.preprocessing import PCA, MeanSubtraction, Normalization, Whitening
from imgclf.preprocessing_chain import (apply_chain, apply_to_dataset, chain_from_arrays, chain_to_arrays, fit_chain,
                                        parse_chain_spec, read_chain)

ALL = [MeanSubtraction(), MeanSubtraction(per_channel=True), Normalization(), Normalization(per_channel=True),
       PCA(dims=7), PCA(variance=0.8), PCA(), Whitening(dims=9), Whitening(zca=True, eps=1e-2)]


def images(n=200, shape=(6, 5, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n,) + shape).astype(np.uint8)


def correlated(n=400, d=12, seed=0):
    """Features with a spread-out spectrum, so principal components are well separated."""
    r = np.random.default_rng(seed)
    return (r.standard_normal((n, d)) * np.geomspace(10, 0.5, d)) @ np.linalg.qr(r.standard_normal((d, d)))[0] + 3.0


def dataset(train, val, test):
    n = lambda X: np.arange(len(X)) % 2  # noqa: E731
    return Dataset({"train": Split(train, n(train)), "val": Split(val, n(val)), "test": Split(test, n(test))},
                   ["a", "b"], train.shape[1:] if train.ndim == 4 else (1, 1, train.shape[1]), [], "t")


# -- references -----------------------------------------------------------------------------------------
def test_mean_of_pixels_is_kept_on_a_grid_that_makes_the_subtraction_exact():
    X = images()
    t = MeanSubtraction().fit(X)
    exact = X.mean(axis=0, dtype=np.float64)
    assert np.max(np.abs(t.mean_ - exact)) <= 2.0 ** -17
    out = t.transform(X)
    np.testing.assert_array_equal(out.astype(np.float64), X - t.mean_)  # no float32 rounding at all
    np.testing.assert_array_equal(t.inverse_transform(out), X)
    floats = MeanSubtraction().fit(X.astype(np.float32))  # other input: the mean as it is
    np.testing.assert_allclose(floats.mean_, exact, rtol=1e-12)


def test_pca_after_mean_subtraction_of_pixels_equals_pca_of_the_pixels():
    """Same components either way; with AVX-512 VNNI both take the exact 8-bit covariance."""
    X = images()
    direct = PCA(dims=6).fit(X)
    centred = PCA(dims=6).fit(MeanSubtraction().fit_transform(X))
    np.testing.assert_allclose(centred.explained_variance_, direct.explained_variance_, rtol=1e-12)
    np.testing.assert_allclose(np.abs(centred.components_ @ direct.components_.T), np.eye(6), atol=1e-6)


def test_mean_subtraction_matches_numpy():
    X = images()
    out = MeanSubtraction().fit_transform(X)
    assert out.dtype == np.float32 and out.shape == X.shape
    np.testing.assert_allclose(out, X - X.astype(np.float64).mean(axis=0), atol=1e-4)
    per_channel = MeanSubtraction(per_channel=True).fit(X)
    np.testing.assert_allclose(per_channel.mean_, X.reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(per_channel.transform(X), X - X.reshape(-1, 3).mean(axis=0), atol=1e-4)


@pytest.mark.parametrize("block_bytes", [None, 1], ids=["one block", "blocks of 64 rows"])
def test_normalization_matches_numpy_std_and_guards_constant_features(block_bytes, monkeypatch):
    if block_bytes:
        monkeypatch.setattr(eigen, "_BLOCK_BYTES", block_bytes)
    X = images().astype(np.float64)
    X[:, 0, 0, 0] = 7.0  # a constant feature
    out = Normalization().fit_transform(X)
    std = X.std(axis=0)
    std[0, 0, 0] = 1.0
    np.testing.assert_allclose(out, X / std, rtol=1e-6)
    assert np.all(np.isfinite(out)) and np.all(out[:, 0, 0, 0] == 7.0)
    np.testing.assert_allclose(Normalization(per_channel=True).fit(X).std_, X.reshape(-1, 3).std(axis=0))


def test_normalization_leaves_an_all_constant_input_finite():
    X = np.full((10, 4), 3.25)
    np.testing.assert_array_equal(Normalization().fit_transform(X), X.astype(np.float32))


def test_pca_matches_svd_reference_up_to_sign():
    X = correlated()
    p = PCA(dims=5).fit(X)
    Xc = X - X.mean(axis=0)
    _, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    signs = np.sign(np.sum(p.components_ * Vt[:5], axis=1))
    np.testing.assert_allclose(p.components_, Vt[:5] * signs[:, None], atol=1e-6)
    np.testing.assert_allclose(p.explained_variance_, s[:5] ** 2 / (len(X) - 1), rtol=1e-10)
    np.testing.assert_allclose(p.explained_variance_ratio_, s[:5] ** 2 / np.sum(s**2), rtol=1e-10)
    np.testing.assert_allclose(p.transform(X), Xc @ Vt[:5].T * signs, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kw", [{"dims": 10}, {"variance": 0.95}, {"dims": 29}])
def test_fewer_samples_than_features_matches_svd_and_the_covariance_path(kw, monkeypatch):
    X = correlated(n=30, d=80)
    p = PCA(**kw).fit(X)  # the N x N Gram route
    k = p.n_components_
    _, s, Vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    signs = np.sign(np.sum(p.components_ * Vt[:k], axis=1))
    np.testing.assert_allclose(p.components_, Vt[:k] * signs[:, None], atol=1e-5)
    np.testing.assert_allclose(p.explained_variance_, s[:k] ** 2 / 29, rtol=1e-9)
    monkeypatch.setattr(eigen, "_gram_components", lambda *a: None)
    q = PCA(**kw).fit(X)  # the D x D covariance route
    np.testing.assert_allclose(q.components_, p.components_, atol=1e-5)
    np.testing.assert_allclose(q.explained_variance_ratio_, p.explained_variance_ratio_, rtol=1e-8)


def test_components_beyond_the_data_rank_fall_back_to_the_full_covariance():
    X = correlated(n=30, d=80)
    p = PCA(dims=50).fit(X)
    np.testing.assert_allclose(p.components_.astype(np.float64) @ p.components_.T, np.eye(50), atol=1e-5)
    assert np.all(p.explained_variance_[29:] < 1e-8 * p.explained_variance_[0])
    dup = np.repeat(correlated(n=5, d=80), 6, axis=0)  # 30 rows, rank 4
    q = PCA(dims=10).fit(dup)
    np.testing.assert_allclose(q.components_.astype(np.float64) @ q.components_.T, np.eye(10), atol=1e-5)
    np.testing.assert_allclose(q.inverse_transform(q.transform(dup)), dup, atol=1e-3)


def test_pca_components_are_orthonormal_and_deterministic():
    X = images(300)
    p = PCA(dims=40).fit(X)
    gram = p.components_.astype(np.float64) @ p.components_.T
    np.testing.assert_allclose(gram, np.eye(40), atol=1e-6)
    again = PCA(dims=40).fit(X.copy())
    np.testing.assert_array_equal(p.components_, again.components_)
    # sign convention: the largest entry of each component is positive
    rows = np.arange(40)
    assert np.all(p.components_[rows, np.abs(p.components_).argmax(axis=1)] > 0)


def test_pca_variance_selects_fewest_components():
    X = correlated()
    full = PCA().fit(X)
    cum = np.cumsum(full.explained_variance_ratio_)
    k = int(np.argmax(cum >= 0.9)) + 1
    p = PCA(variance=0.9).fit(X)
    assert p.n_components_ == k and p.retained_variance_ >= 0.9
    assert PCA(variance=1.0).fit(X).n_components_ == X.shape[1]


def test_pca_with_all_components_inverts_exactly():
    X = correlated()
    p = PCA().fit(X)
    np.testing.assert_allclose(p.inverse_transform(p.transform(X)), X, atol=1e-4)
    img = images(100, shape=(3, 3, 2))
    q = PCA(dims=4).fit(img)
    assert q.inverse_transform(q.transform(img)).shape == img.shape


@pytest.mark.parametrize("k", [1, 7, 20])
def test_subset_eigensolver_matches_the_full_eigh(k, monkeypatch):
    d = 100  # dims up to d / 5 take the subset solver
    r = np.random.default_rng(1)
    Q = np.linalg.qr(r.standard_normal((d, d)))[0]
    cov = (Q * np.geomspace(1e3, 1e-2, d)) @ Q.T
    cov = (cov + cov.T) / 2
    ref_values, ref_vectors = np.linalg.eigh(cov)
    ref_values, ref_vectors = ref_values[::-1][:k], ref_vectors[:, ::-1][:, :k].T

    def no_full_eigh(*a, **kw):
        raise AssertionError("the full eigendecomposition was used")

    monkeypatch.setattr(np.linalg, "eigh", no_full_eigh)
    values, vectors, total = eigen._covariance_components(cov.copy(), k, None)
    np.testing.assert_allclose(values, ref_values, rtol=1e-10)
    assert total == pytest.approx(np.trace(cov), rel=1e-14)
    signs = np.sign(np.sum(vectors * ref_vectors, axis=1))
    np.testing.assert_allclose(vectors * signs[:, None], ref_vectors, atol=1e-10)
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(k), atol=1e-12)


def _spectrum_cov(d, values, seed=1):
    Q = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))[0]
    cov = (Q * values) @ Q.T
    return (cov + cov.T) / 2


@pytest.mark.parametrize("k", [1, 7, 20])
@pytest.mark.parametrize("tol", [eigen._MIXED_TOL, 1e-12])
def test_mixed_precision_subset_solver_matches_numpy_eigh(k, tol):
    d = 120
    cov = _spectrum_cov(d, np.geomspace(1e3, 1e-2, d))
    ref_values, ref_vectors = np.linalg.eigh(cov)
    ref_values, ref_vectors = ref_values[::-1][:k], ref_vectors[:, ::-1][:, :k]
    found = eigen._mixed_top_eigenpairs(cov.copy(), k, tol)
    assert found is not None  # converged: float32 LAPACK + float64 refinement, no float64 fallback
    values, vectors = found
    np.testing.assert_allclose(values, ref_values, rtol=1e-10)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=1e-12)
    signs = np.sign(np.sum(vectors * ref_vectors, axis=0))
    # the stopping rule bounds the subspace angle by tol; individual vectors here have wide gaps
    np.testing.assert_allclose(vectors * signs, ref_vectors, atol=max(1e-10, 10 * tol))
    # the public entry point gives the same
    np.testing.assert_array_equal(eigen.top_eigenpairs(cov.copy(), k, mixed=True, tol=tol)[0], values)


def test_mixed_precision_subset_solver_falls_back_to_float64_without_a_gap():
    d, k = 100, 10
    values = np.geomspace(1e3, 1e-2, d)
    values[k - 3:k + 3] = values[k - 3]  # a cluster straddling the cut: the kept space is not unique
    cov = _spectrum_cov(d, values, seed=2)
    assert eigen._mixed_top_eigenpairs(cov.copy(), k, eigen._MIXED_TOL) is None
    got, vectors = eigen.top_eigenpairs(cov.copy(), k, mixed=True)
    np.testing.assert_allclose(got, np.linalg.eigvalsh(cov)[::-1][:k], rtol=1e-10)
    np.testing.assert_allclose(cov @ vectors, vectors * got, atol=1e-9)


def test_pca_of_float32_data_takes_the_mixed_solver(monkeypatch):
    X = correlated(n=500, d=60)
    calls = []
    real = eigen._mixed_top_eigenpairs
    monkeypatch.setattr(eigen, "_mixed_top_eigenpairs", lambda *a: calls.append(1) or real(*a))
    p32 = PCA(dims=8).fit(X.astype(np.float32))
    assert calls == [1]
    p64 = PCA(dims=8).fit(X.astype(np.float64))  # float64 data: float64 LAPACK only
    assert calls == [1]
    np.testing.assert_allclose(p32.explained_variance_, p64.explained_variance_, rtol=1e-5)
    np.testing.assert_allclose(p32.components_, p64.components_, atol=1e-4)


def test_pca_by_dims_through_the_subset_solver_matches_variance_through_the_full_one():
    X = correlated(n=500, d=60)
    by_variance = PCA(variance=0.5).fit(X)  # all eigenpairs (syevd)
    k = by_variance.n_components_
    assert 1 < k <= 60 // 5
    by_dims = PCA(dims=k).fit(X)  # top k only (dsyevr)
    np.testing.assert_allclose(by_dims.explained_variance_, by_variance.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(by_dims.explained_variance_ratio_, by_variance.explained_variance_ratio_, rtol=1e-10)
    np.testing.assert_allclose(by_dims.components_, by_variance.components_, atol=1e-6)
    # rank 4 with n > d: the kept components reach into the cluster of zero eigenvalues
    dup = np.repeat(correlated(n=5, d=60), 20, axis=0)
    q = PCA(dims=10).fit(dup)
    np.testing.assert_allclose(q.components_.astype(np.float64) @ q.components_.T, np.eye(10), atol=1e-5)
    np.testing.assert_allclose(q.inverse_transform(q.transform(dup)), dup, atol=1e-3)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("direct_syrk", [True, False])
def test_covariance_blocks_match_numpy_cov(monkeypatch, workers, direct_syrk):
    import imgclf.blas

    monkeypatch.setattr(eigen, "_BLOCK_BYTES", 4 * 12 * 70)  # several blocks of 70 rows
    monkeypatch.setattr(eigen, "_blas_thread_count", lambda: workers)  # blocks shared by this many threads
    if not direct_syrk:  # numpy's matmul (both triangles) where OpenBLAS cannot be called directly
        monkeypatch.setattr(imgclf.blas, "gram_lower", lambda A, out: False)
    X = correlated(n=333).astype(np.float32)
    ref = np.cov(X.astype(np.float64), rowvar=False)
    mean = X.mean(axis=0, dtype=np.float64)
    cov = eigen.covariance(X, mean)
    np.testing.assert_array_equal(cov, cov.T)
    np.testing.assert_allclose(cov, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eigen.covariance(X, mean, work_dtype=np.float64), ref, rtol=1e-12)
    np.testing.assert_allclose(eigen.covariance(X.astype(np.float64), mean), ref, rtol=1e-12)


def test_whitened_training_data_has_identity_covariance():
    X = correlated()
    eps = 1e-5
    w = Whitening(eps=eps).fit(X)
    Z = w.transform(X).astype(np.float64)
    expected = np.diag(w.explained_variance_ / (w.explained_variance_ + eps))
    np.testing.assert_allclose(np.cov(Z, rowvar=False), expected, atol=1e-5)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(X.shape[1]), atol=1e-4)
    zca = Whitening(eps=eps, zca=True).fit(X).transform(X).astype(np.float64)
    np.testing.assert_allclose(np.cov(zca, rowvar=False), np.eye(X.shape[1]), atol=1e-4)


def test_zca_stays_close_to_the_input_in_pixel_space():
    X = correlated()
    Xc = X - X.mean(axis=0)
    w = Whitening(zca=True).fit(X)
    Z = w.transform(X).astype(np.float64)
    assert Z.shape == X.shape
    # ZCA is the whitening with the least rotation: among Z @ R for orthogonal R it correlates best with the input.
    r = np.random.default_rng(1)
    for _ in range(5):
        R = np.linalg.qr(r.standard_normal((X.shape[1], X.shape[1])))[0]
        assert np.sum(Z * Xc) > np.sum((Z @ R) * Xc)
    # PCA whitening (a rotation of ZCA) correlates worse; with a huge eps ZCA tends to a scaled input.
    pca_white = Whitening().fit(X).transform(X).astype(np.float64)
    assert np.sum(Z * Xc) > np.sum(pca_white * Xc)
    eps = 1e8
    np.testing.assert_allclose(Whitening(zca=True, eps=eps).fit(X).transform(X) * np.sqrt(eps), Xc,
                               rtol=1e-3, atol=1e-3)


def test_whitening_inverse_transform():
    X = correlated()
    for w in (Whitening(), Whitening(zca=True)):
        w.fit(X)
        np.testing.assert_allclose(w.inverse_transform(w.transform(X)), X, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_])
def test_any_real_dtype_gives_float32(dtype):
    X = images(50).astype(dtype)
    for t in (MeanSubtraction(), Normalization(), PCA(dims=3), Whitening(dims=3, zca=True)):
        assert t.fit_transform(X).dtype == np.float32


# -- train-only fitting and chains ------------------------------------------------------------------------
def test_fit_chain_uses_only_the_training_split():
    tr, va, te = images(100, seed=1), images(40, seed=2), images(40, seed=3)
    out = fit_chain(parse_chain_spec("mean,normalize,pca:10"), dataset(tr, va, te))
    # Wildly different val/test must not change anything that was learned.
    loud = dataset(tr, (va // 2 + 120).astype(np.uint8), np.full_like(te, 255))
    out_loud = fit_chain(parse_chain_spec("mean,normalize,pca:10"), loud)
    for a, b in zip(out.transforms, out_loud.transforms):
        for name in a._array_names:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    mean = out.transforms[0].mean_  # the exact mean on a 2^-16 grid, for uint8 input
    np.testing.assert_allclose(mean, tr.mean(axis=0, dtype=np.float64), rtol=0, atol=2.0 ** -17)
    np.testing.assert_array_equal(mean * 65536, np.round(mean * 65536))
    np.testing.assert_array_equal(out.get("train").X, out_loud.get("train").X)
    # each split is the fitted chain applied to its raw images
    for key, raw in (("val", va), ("test", te)):
        np.testing.assert_array_equal(out.get(key).X, apply_chain(out.transforms, raw))


def test_fit_chain_appends_and_does_not_modify_its_input():
    ds = dataset(images(60), images(10, seed=4), images(10, seed=5))
    first = fit_chain([MeanSubtraction()], ds)
    second = fit_chain([PCA(dims=4)], first)
    assert ds.transforms == [] and [t.kind for t in first.transforms] == ["mean"]
    assert [t.kind for t in second.transforms] == ["mean", "pca"]
    assert second.get("test").X.shape == (10, 4)
    np.testing.assert_array_equal(apply_to_dataset(second.transforms, ds).get("test").X, second.get("test").X)


def test_fit_chain_needs_a_training_split():
    ds = Dataset({"test": Split(images(10), np.zeros(10, dtype=np.int64))}, ["a"], (6, 5, 3), [], "t")
    with pytest.raises(DataError, match="training split"):
        fit_chain([MeanSubtraction()], ds)


def test_chain_round_trips_through_a_pipeline_file_bit_exactly(tmp_path):
    from imgclf import storage

    ds = dataset(images(150), images(20, seed=4), images(20, seed=5))
    out = fit_chain(parse_chain_spec("mean,normalize,pca:12,whiten:8,zca"), ds)
    path = tmp_path / "chain.npz"
    storage.write_stream(out, path)
    back = storage.read_stream(path)
    assert [t.describe() for t in back.transforms] == [t.describe() for t in out.transforms]
    raw = images(20, seed=6)
    np.testing.assert_array_equal(apply_chain(back.transforms, raw), apply_chain(out.transforms, raw))
    np.testing.assert_array_equal(apply_chain(read_chain(path), raw), apply_chain(out.transforms, raw))
    np.testing.assert_array_equal(back.get("test").X, out.get("test").X)


@pytest.mark.parametrize("t", ALL, ids=repr)
def test_every_transform_round_trips_through_arrays(t):
    X = images(120)
    Z = t.fit_transform(X)
    meta, arrays = chain_to_arrays([t])
    (back,) = chain_from_arrays(meta, {k: v.copy() for k, v in arrays.items()})
    np.testing.assert_array_equal(back.transform(X), Z)
    assert back.n_features_in_ == X[0].size


def test_read_chain_rejects_files_without_a_chain(tmp_path):
    from imgclf import storage

    path = tmp_path / "raw.npz"
    storage.write_stream(dataset(images(10), images(4), images(4)), path)
    with pytest.raises(DataError, match="no preprocessing chain"):
        read_chain(path)


def test_stored_chain_with_wrong_array_shape_is_refused():
    meta, arrays = chain_to_arrays([PCA(dims=3).fit(images(50))])
    arrays["transform0_components_"] = arrays["transform0_components_"][:, :5]
    with pytest.raises(DataError, match="inconsistent"):
        chain_from_arrays(meta, arrays)


# -- spec parsing -------------------------------------------------------------------------------------------
def test_parse_chain_spec():
    chain = parse_chain_spec("mean,normalize:channel,pca:144,pca:0.99,whiten:100,zca")
    assert [repr(t) for t in chain] == ["MeanSubtraction()", "Normalization(per_channel=True)", "PCA(dims=144)",
                                        "PCA(variance=0.99)", "Whitening(dims=100)", "Whitening(zca=True)"]


@pytest.mark.parametrize("spec", ["", "mean,,pca", "pca:0", "pca:-3", "pca:1.5", "pca:x", "blur", "mean:5"])
def test_parse_chain_spec_rejects(spec):
    with pytest.raises(UsageError):
        parse_chain_spec(spec)


# -- validation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(bad):
    X = images(20).astype(np.float32)
    X[3, 1, 1, 0] = bad
    for t in (MeanSubtraction(), PCA(dims=2)):
        with pytest.raises(DataError, match="NaN or infinite"):
            t.fit(X)
    fitted = MeanSubtraction().fit(images(20))
    with pytest.raises(DataError, match="NaN or infinite"):
        fitted.transform(X)


def test_values_beyond_float32_range_are_refused_not_mistaken_for_inf():
    X = np.full((4, 3), 1e308)
    X[0] = -1e308
    with pytest.raises(DataError, match="beyond the float32 range"):
        MeanSubtraction().fit(X)
    X = np.full((4, 3), 1e38)  # large but representable
    assert np.all(np.isfinite(MeanSubtraction().fit_transform(X)))


@pytest.mark.parametrize("t,match", [
    (PCA(dims=0), "dims must be at least 1"),
    (PCA(dims=181), "at most 180"),
    (PCA(dims=2.5), "dims must be an integer"),
    (PCA(dims=3, variance=0.5), "not both"),
    (PCA(variance=0), r"variance must be a number in \(0, 1\]"),
    (Whitening(eps=-1), "eps must be"),
    (MeanSubtraction(per_channel="yes"), "per_channel"),
])
def test_bad_parameters_raise_usage_error_at_fit(t, match):
    with pytest.raises(UsageError, match=match):
        t.fit(images(20, shape=(6, 10, 3)))


def test_shape_mismatch_between_fitted_transform_and_data():
    t = PCA(dims=3).fit(images(30))
    with pytest.raises(DataError, match=r"fitted on samples of shape \(6, 5, 3\), got data of shape \(5, 6, 3\)"):
        t.transform(images(5, shape=(5, 6, 3)))
    with pytest.raises(DataError, match="fitted on samples"):
        apply_chain([MeanSubtraction().fit(images(30)), t], images(5).reshape(5, -1))


@pytest.mark.parametrize("X,match", [
    (np.zeros((0, 4)), "no samples"),
    (np.zeros(5), r"\(N, D\) features or \(N, H, W, C\) images"),
    (np.zeros((3, 4, 4)), r"\(N, D\) features"),
    (np.zeros((3, 4), dtype=complex), "real numbers"),
    (np.array([["a", "b"]]), "real numbers"),
])
def test_bad_arrays(X, match):
    with pytest.raises(DataError, match=match):
        MeanSubtraction().fit(X)


def test_other_errors():
    with pytest.raises(UsageError, match="not fitted"):
        PCA(dims=2).transform(images(3))
    with pytest.raises(DataError, match="at least 2 training samples"):
        PCA().fit(images(1))
    with pytest.raises(UsageError, match="per_channel needs images"):
        MeanSubtraction(per_channel=True).fit(np.zeros((4, 3)))
    with pytest.raises(DataError, match="zero variance"):
        Whitening(eps=0).fit(np.ones((5, 3)))


def test_estimator_idiom():
    p = PCA(dims="anything")  # __init__ stores, fit validates
    assert p.get_params() == {"dims": "anything", "variance": None}
    p.set_params(dims=3)
    assert not hasattr(p, "n_features_in_")
    assert p.fit(images(20)) is p and p.n_features_in_ == 90
    with pytest.raises(UsageError, match="no parameter"):
        p.set_params(bogus=1)
    assert Whitening().get_params() == {"dims": None, "eps": 1e-5, "zca": False, "variance": None}
