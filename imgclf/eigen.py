"""PCA's numerical linear algebra: the covariance (or Gram matrix) of the training rows and its leading eigenpairs.

`principal_components` is what the PCA and whitening transforms in `imgclf.preprocessing` call: the covariance
accumulated from float32 blocks summed in float64 (`covariance`), the N x N Gram route for fewer samples than
features, LAPACK's full or subset symmetric eigensolvers, and the mixed-precision subset solver (float32
`ssyevr` refined in float64 by Rayleigh-Ritz and Chebyshev filtering, `top_eigenpairs`). scipy is imported
inside the functions that use it.
"""

from __future__ import annotations

import numpy as np

# Rows per block when a transform walks the data: ~64 MB of float32 per block keeps the peak memory
# of PCA on full CIFAR-10 low while the GEMMs stay large enough to run at BLAS speed.
_BLOCK_BYTES = 64 * 2**20


def _block_rows(n_features: int) -> int:
    return max(64, _BLOCK_BYTES // (4 * max(n_features, 1)))


def covariance(X2: np.ndarray, mean: np.ndarray, work_dtype=None) -> np.ndarray:
    """(D, D) sample covariance (divided by N - 1) of the rows of X2, accumulated in float64.

    Each block of rows is centred and multiplied by itself (BLAS syrk, one triangle, half the work of
    a general product) in `work_dtype` — float32 unless the data is float64 — and
    the block products are summed in float64. Centring before multiplying avoids the cancellation of
    E[xx^T] - mu mu^T; float32 products of centred blocks of a few thousand rows keep ~6 significant
    digits, far below the gaps between the leading eigenvalues (benchmarks/preprocess.py measures the
    difference to all-float64).

    With OpenBLAS running T > 1 threads, T Python threads each take every T-th block with a
    one-thread BLAS and their own float64 sum: the centring copies and float64 additions, which a
    threaded BLAS leaves on one core, then run in parallel too. The blocks are split evenly and
    statically, so the summation order, and the result, does not depend on timing.
    """
    from .blas import gram_lower, run_on_threads

    n, d = X2.shape
    if work_dtype is None:
        work_dtype = np.float64 if X2.dtype == np.float64 else np.float32
    mu = mean.astype(work_dtype)
    step = _block_rows(d)
    workers = min(_blas_thread_count(), -(-n // step))
    n_blocks = -(-n // step)
    n_blocks = -(-n_blocks // workers) * workers  # a multiple of the workers: equal shares
    edges = np.linspace(0, n, n_blocks + 1).astype(np.int64)
    rows = int(np.max(np.diff(edges)))
    sums = [np.zeros((d, d), dtype=np.float64) for _ in range(workers)]

    def accumulate(w: int) -> None:
        block_buf = np.empty((rows, d), dtype=work_dtype)
        product = np.zeros((d, d), dtype=work_dtype)  # syrk fills the lower triangle, the upper stays 0
        for i in range(w, n_blocks, workers):
            block = block_buf[:edges[i + 1] - edges[i]]
            np.subtract(X2[edges[i]:edges[i + 1]], mu, out=block, dtype=work_dtype)
            if not gram_lower(block, product):  # no direct OpenBLAS: numpy's syrk, both triangles
                np.matmul(block.T, block, out=product)
            sums[w] += product

    run_on_threads(workers, accumulate)
    cov = sums[0]
    for other in sums[1:]:
        cov += other
    cov /= n - 1
    upper = np.triu_indices(d, 1)
    cov[upper] = cov.T[upper]  # mirror the lower triangle
    return cov


def _blas_thread_count() -> int:
    from .blas import blas_thread_count

    return blas_thread_count()


# A subset eigensolver pays off while few eigenvectors are kept: on the 3072 x 3072 CIFAR-10 covariance
# (one core) LAPACK dsyevr for the top 144 took 3.2 s against 6.4 s for all vectors with syevd, 4.4 s
# for the top 500 and 7.2 s (slower) for 1000, as inverse iteration then dominates.
_SUBSET_MAX_FRACTION = 1 / 5


def principal_components(X2: np.ndarray, dims=None, variance=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, the kept eigenvalues descending, the kept eigenvectors as rows, the total variance), float64.

    Keeps `dims` components, or the fewest holding `variance` of the total, or all. Exact: a symmetric
    eigendecomposition by LAPACK, not a randomized approximation — of the D x D covariance, or of the
    N x N Gram matrix when there are fewer samples than features (same nonzero spectrum, far cheaper).
    The total variance is the trace of the covariance (the sum of all eigenvalues). Signs are fixed so
    that each vector's largest entry is positive, making the result deterministic across BLAS builds.
    """
    from .kernels.gram_u8 import covariance_u8

    n, d = X2.shape
    # 8-bit data (pixels, or pixels minus a per-feature constant) on a CPU with AVX-512 VNNI: the exact
    # integer covariance and the mean from one pass; anything else: None.
    exact = covariance_u8(X2) if n - 1 >= d else None
    if exact is not None:
        cov, mean = exact
    else:
        mean = X2.mean(axis=0, dtype=np.float64)
    found = _gram_components(X2, mean, dims, variance) if n - 1 < d else None
    if found is None:
        # Unless the data is float64, its leading eigenpairs come from float32 LAPACK refined against
        # the float64 covariance (to a residual far below the float32 products' error, and faster).
        # Float64 data, pixels or not, gets float64 LAPACK alone, as a float64 user expects.
        if exact is None:
            cov = covariance(X2, mean)
        found = _covariance_components(cov, dims, variance, mixed=X2.dtype != np.float64)
    values, vectors, total = found
    rows = np.arange(len(vectors))
    signs = np.sign(vectors[rows, np.argmax(np.abs(vectors), axis=1)])
    vectors *= np.where(signs == 0, 1.0, signs)[:, None]
    return mean, values, vectors, total


def _covariance_components(cov: np.ndarray, dims, variance, mixed: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Leading eigenpairs of a covariance matrix (overwritten): (values descending, vectors as rows, trace).

    With `dims` at most a fifth of D, LAPACK dsyevr through scipy computes only those eigenpairs
    (tridiagonal reduction, bisection and inverse iteration on the kept part of the spectrum,
    back-transformation of the kept vectors): exact like the full solver, about half its cost. With
    `mixed`, the same subset solver runs in float32 and `top_eigenpairs` refines its result against
    the float64 matrix (about twice as fast again). Otherwise (`variance`, which needs the spectrum
    before it knows how many vectors to keep, or many components) all eigenpairs come from
    numpy.linalg.eigh (LAPACK syevd).
    """
    d = len(cov)
    total = float(np.trace(cov))
    if dims is not None and dims <= d * _SUBSET_MAX_FRACTION:
        values, vectors = top_eigenpairs(cov, dims, mixed=mixed)
    else:
        values, vectors = np.linalg.eigh(cov)
        values, vectors = values[::-1], vectors[:, ::-1]
    values = np.clip(values, 0.0, None)  # rounding can leave tiny negative eigenvalues
    k = _n_components(dims, variance, _ratios(values, total))
    return values[:k], np.ascontiguousarray(vectors[:, :k].T), total


# Mixed-precision subset solver: extra columns beyond the k wanted (they protect the cut between kept
# and dropped eigenvalues), Chebyshev filter degree per refinement round, rounds before giving up, and
# the residual tolerance (see top_eigenpairs).
_MIXED_EXTRA = (32, 2 / 3)
_MIXED_DEGREE = 4
_MIXED_ROUNDS = 3
_MIXED_TOL = 1e-5


def top_eigenpairs(C: np.ndarray, k: int, mixed: bool = False, tol: float = _MIXED_TOL) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending) and their eigenvectors (columns) of a covariance matrix
    (symmetric positive semidefinite, float64).

    Plain: LAPACK dsyevr (scipy.linalg.eigh with subset_by_index), which may overwrite C. Mixed:
    1. ssyevr computes the m = k + max(32, 2k/3) leading eigenpairs of C in float32 — a full LAPACK
       subset decomposition (tridiagonal reduction, bisection, inverse iteration), whose float32
       tridiagonal reduction, the dominant cost, moves half the bytes of the float64 one;
    2. in float64 against C itself: Rayleigh–Ritz on their span (orthonormalise, the m x m projected
       eigenproblem, rotate), then rounds of a degree-4 Chebyshev filter that damps the spectrum
       below the m-th eigenvalue (the float32 vectors' errors along those directions), each followed by
       Rayleigh–Ritz again, until the residual R = C X - X diag(values) of the k kept pairs satisfies
       ||R||_F <= tol * (value_k - value_(k+1)), a Davis–Kahan bound on the sine of the angle between
       the computed and the exact k-dimensional eigenspace of C. Eigenvalue errors are then
       of order ||R||^2 / gap.
    Deterministic (no random start). When that does not converge in 3 rounds (no gap at the k-th
    eigenvalue, a flat spectrum), it falls back to the plain float64 solver.
    """
    from scipy.linalg import eigh

    d = len(C)
    if mixed:
        found = _mixed_top_eigenpairs(C, k, tol)
        if found is not None:
            return found
    values, vectors = eigh(C, subset_by_index=[d - k, d - 1], driver="evr", overwrite_a=True, check_finite=False)
    return values[::-1], vectors[:, ::-1]


def _mixed_top_eigenpairs(C: np.ndarray, k: int, tol: float):
    from scipy.linalg import eigh, qr

    d = len(C)
    m = min(d, k + max(_MIXED_EXTRA[0], int(_MIXED_EXTRA[1] * k)))
    low32, V32 = eigh(C.astype(np.float32), subset_by_index=[d - m, d - 1], driver="evr",
                      overwrite_a=True, check_finite=False)
    # Damped interval [0, b]: a covariance has no negative eigenvalues, and those dropped are at most the
    # m-th, b. (Were C indefinite, the filter would not converge and the plain solver would answer.)
    a, b = 0.0, float(low32[0])
    # The products below go through scipy's BLAS, the library its LAPACK just used: numpy's own
    # OpenBLAS would start a second thread pool competing with the first one's still spinning threads.
    C = C.T  # C itself (symmetric), in the column-major order BLAS takes without a copy
    # The float32 vectors are orthonormal to ~1e-7: one Cholesky QR makes them so in float64.
    Q = np.asfortranarray(V32[:, ::-1], dtype=np.float64)
    Q = _solve_upper_right(Q, np.linalg.cholesky(_gemm(Q, Q, trans_a=True)).T)
    values, X, CX = _rayleigh_ritz(C, Q)
    for round_ in range(_MIXED_ROUNDS + 1):
        if m == d:
            return values[:k], X[:, :k]
        gap = values[k - 1] - values[k]
        residual = np.linalg.norm(CX[:, :k] - X[:, :k] * values[:k])
        if gap > 0 and residual <= tol * gap:
            return values[:k], X[:, :k]
        if round_ == _MIXED_ROUNDS or not b > a:
            return None
        Q = qr(_chebyshev_filter(C, X, CX, _MIXED_DEGREE, a, b), mode="economic", overwrite_a=True,
               check_finite=False)[0]
        values, X, CX = _rayleigh_ritz(C, Q)
    return None


def _gemm(A: np.ndarray, B: np.ndarray, trans_a: bool = False) -> np.ndarray:
    """A @ B (or A.T @ B) in float64 through scipy's BLAS; column-major result."""
    from scipy.linalg.blas import dgemm

    return dgemm(1.0, A, B, trans_a=trans_a)


def _solve_upper_right(Q: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Q @ inv(R) for upper triangular R."""
    from scipy.linalg.blas import dtrsm

    return dtrsm(1.0, R, Q, side=1, lower=0)


def _rayleigh_ritz(C: np.ndarray, Q: np.ndarray):
    """Ritz values (descending), Ritz vectors and C times them, from an orthonormal basis Q."""
    from scipy.linalg import eigh

    CQ = _gemm(C, Q)
    H = _gemm(Q, CQ, trans_a=True)
    values, U = eigh((H + H.T) / 2, check_finite=False)
    U = np.asfortranarray(U[:, ::-1])
    return values[::-1], _gemm(Q, U), _gemm(CQ, U)


def _chebyshev_filter(C: np.ndarray, X: np.ndarray, CX: np.ndarray, degree: int, a: float, b: float) -> np.ndarray:
    """T_degree applied to C mapped from [a, b] onto [-1, 1], times X (CX = C @ X given): components
    along eigenvalues in [a, b] keep at most their size, those above grow like T_degree."""
    half, centre = (b - a) / 2, (b + a) / 2
    prev, cur = X, (CX - centre * X) / half
    for _ in range(degree - 1):
        prev, cur = cur, 2 * (_gemm(C, cur) - centre * cur) / half - prev
    return cur


def _gram_components(X2, mean, dims, variance):
    """Leading eigenpairs through the Gram matrix Xc Xc^T; None when a kept component has (almost) zero
    variance, as such directions are not determined by the data and need the full covariance."""
    n, d = X2.shape
    Xc = np.subtract(X2, mean, dtype=np.float64)
    gram_values, U = np.linalg.eigh(Xc @ Xc.T)
    values = np.zeros(d)
    values[:n] = np.clip(gram_values[::-1], 0.0, None) / (n - 1)
    total = float(values.sum())
    k = _n_components(dims, variance, _ratios(values, total))
    if k > n - 1 or values[k - 1] <= 1e-10 * values[0]:
        return None
    vectors = (Xc.T @ U[:, ::-1][:, :k]).T
    vectors /= np.linalg.norm(vectors, axis=1)[:, None]
    return values[:k], vectors, total


def _ratios(values: np.ndarray, total: float) -> np.ndarray:
    return values / total if total > 0 else np.zeros_like(values)


def _n_components(dims, variance, ratios: np.ndarray) -> int:
    if dims is not None:
        return int(dims)
    if variance is not None:
        k = int(np.searchsorted(np.cumsum(ratios), float(variance) - 1e-12)) + 1
        return min(k, len(ratios))
    return len(ratios)
