"""Single-layer k-means features (Coates, Lee & Ng, AISTATS 2011): the `kmeans` preprocessing step.

fit: draw `patches` random p x p patches from the training images, normalise each (subtract its mean,
divide by sqrt(variance + patch_eps)), learn a ZCA whitening of them (the `whiten` transform,
zca=True, eps=zca_eps), and cluster the whitened patches into `centroids` centres (seeded Lloyd
k-means on GEMMs, imgclf.kmeans; `init` 'gaussian', Coates et al.'s small random centres, or 'rows').

transform: every p x p patch at `stride` (dense, stride 1 by default) is normalised and whitened the
same way; its K features are the "triangle" activations f_k = max(0, mean_j(z_j) - z_k) with z_k its
distance to centroid k; they are summed over the four quadrants of the image: 4K features per image.

The extraction, per block of images: patches (numba) and the whitening GEMM (patches x D x D,
D = p*p*C); then per chunk of patch rows, the centroid GEMM (rows x D x K, the bulk of the work) and
the distances, activations and pooling (numba), which read the chunk's product while it is still in
cache instead of from a product of the whole block. Blocks go to one Python thread per core with a
one-thread BLAS, in a fixed order, so the output does not depend on timing (benchmarks/features.py
times it against the bare centroid GEMM).
"""

from __future__ import annotations

import numpy as np

from .errors import DataError, UsageError
from .kmeans import INITS
from .preprocessing import Transform, Whitening, _check_int

_ZCA_ARRAYS = ("mean_", "components_", "explained_variance_", "explained_variance_ratio_")
_BLOCK_BYTES = 4 * 2**20  # patches + whitened patches per block and thread (about 6 images)
# Centroid products per chunk of patch rows (648 rows at K = 1600, 256 at K = 4000), read back by the
# triangle pass from this core's cache right after the GEMM wrote them. A whole block's product (28 MB per
# thread) ran 1.2x slower; chunks that fit the 1 MiB L2 (64 rows) lost more in the GEMM (small M, the
# centroids repacked on every call) than they gained. docs/features.md has the measurements.
_CHUNK_BYTES = 4 * 2**20


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise UsageError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class KMeansFeatures(Transform):
    """Coates et al.'s single-layer network: whitened patches -> k-means -> triangle -> quadrant sums.

    Input: images (N, H, W, C) on the 0..255 pixel scale (patch_eps=10 is in those units). Output:
    (N, 4 * centroids) float32. Put `standardize` after it for linear models.

    Defaults: 400,000 patches as in the paper, 20 k-means iterations (the paper's 50 scored the same
    on a CIFAR-10 subset at twice the fitting time; 100,000 patches scored about a point lower:
    docs/features.md).
    """

    kind = "kmeans"
    _array_names = tuple(f"zca_{name}" for name in _ZCA_ARRAYS) + ("centroids_",)

    def __init__(self, centroids=1600, patch=6, stride=1, patches=400_000, iterations=20, patch_eps=10.0,
                 zca_eps=0.1, init="gaussian", random_state=0):
        self.centroids = centroids
        self.patch = patch
        self.stride = stride
        self.patches = patches
        self.iterations = iterations
        self.patch_eps = patch_eps
        self.zca_eps = zca_eps
        self.init = init
        self.random_state = random_state

    # -- parameters ------------------------------------------------------------------------------
    def _validate_params(self, X):
        if X.ndim != 4:
            raise UsageError(f"kmeans features need images (N, H, W, C), got data of shape {X.shape} "
                             "(put kmeans first in the chain, on raw pixels)")
        self._check_params(X.shape[1:])

    def _check_params(self, image_shape) -> None:
        """The hyperparameters' checks for images of `image_shape` (H, W, C): at fit, and on load (init is
        not used by transform, stride=0 would divide by zero in it, a negative eps give NaN features)."""
        if len(image_shape) != 3:
            raise UsageError(f"input_shape_ must be (H, W, C), got {tuple(image_shape)}")
        _check_int("patch", self.patch, 2, min(image_shape[:2]), " (the image side)")
        _check_int("stride", self.stride, 1)
        _check_int("centroids", self.centroids, 1)
        _check_int("patches", self.patches, 2)
        _check_int("iterations", self.iterations, 1)
        if self.centroids > self.patches:
            raise UsageError(f"centroids ({self.centroids}) must not exceed the number of patches ({self.patches})")
        _check_positive("patch_eps", self.patch_eps)
        _check_positive("zca_eps", self.zca_eps)
        if self.init not in INITS:
            raise UsageError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.random_state is not None:
            _check_int("random_state", self.random_state, 0)

    @classmethod
    def from_arrays(cls, params, arrays):
        # files written before `init` existed were fitted from K distinct patches: say so
        if isinstance(params, dict) and "init" not in params:
            params = {**params, "init": "rows"}
        return super().from_arrays(params, arrays)

    @property
    def n_features_out_(self) -> int:
        return 4 * len(self.centroids_)

    # -- fit -------------------------------------------------------------------------------------
    def _fit(self, X):
        from .kernels.features import _sampled_patches
        from .kmeans import kmeans

        rng = np.random.default_rng(self.random_state)
        n, h, w, c = X.shape
        p = self.patch
        index = rng.integers(0, n, size=self.patches)
        ys = rng.integers(0, h - p + 1, size=self.patches)
        xs = rng.integers(0, w - p + 1, size=self.patches)
        patches = np.empty((self.patches, p * p * c), dtype=np.float32)
        _sampled_patches(X, index, ys, xs, p, np.float32(self.patch_eps), patches)
        zca = Whitening(eps=self.zca_eps, zca=True).fit(patches)
        for name in _ZCA_ARRAYS:
            setattr(self, f"zca_{name}", getattr(zca, name))
        white = zca.transform(patches)
        del patches
        self.centroids_, self.distortion_ = kmeans(white, self.centroids, self.iterations, rng, self.init)

    def _check_state(self):
        shape = tuple(self.input_shape_)  # hyperparameters: checked by from_arrays, as at fit
        d = self.patch * self.patch * (shape[-1] if len(shape) == 3 else 0)
        c = self.centroids_
        if len(shape) != 3 or c.ndim != 2 or c.shape[1] != d or c.shape[0] != self.centroids \
                or self.zca_components_.shape != (d, d) or self.zca_mean_.shape != (d,):
            raise DataError("stored kmeans transform has inconsistent array shapes")

    def _derive(self):
        arrays = {name: getattr(self, f"zca_{name}") for name in _ZCA_ARRAYS}
        d = len(arrays["mean_"])
        zca = Whitening.from_arrays({"eps": self.zca_eps, "zca": True, "input_shape_": [d]}, arrays)
        # whitened = patch @ M - mean @ M: the mean folds into one offset row
        self._zca_matrix = zca._project_matrix
        self._zca_offset = (zca._mean32 @ zca._project_matrix).astype(np.float32)
        self._centroids_t = np.ascontiguousarray(self.centroids_.T, dtype=np.float32)
        self._c2 = np.einsum("ij,ij->i", self.centroids_, self.centroids_).astype(np.float32)

    # -- transform -------------------------------------------------------------------------------
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of patch positions per image."""
        h, w = self.input_shape_[:2]
        return (h - self.patch) // self.stride + 1, (w - self.patch) // self.stride + 1

    def block_plan(self, n: int) -> tuple[int, list[list[int]]]:
        """(images per block, the block starts of each worker thread) for n images."""
        from .blas import blas_thread_count

        rows, cols = self.grid()
        d = self.centroids_.shape[1]
        step = max(1, _BLOCK_BYTES // (2 * 4 * rows * cols * d))
        starts = list(range(0, n, step))
        workers = max(1, min(blas_thread_count(), len(starts)))
        return step, [starts[w::workers] for w in range(workers)]

    def chunk_rows(self) -> int:
        """Patch rows per centroid GEMM: its (rows x K) float32 output is still in cache for the triangle pass."""
        return max(8, _CHUNK_BYTES // (4 * len(self.centroids_)) // 8 * 8)

    def _transform(self, X):
        from .blas import run_on_threads

        out = np.empty((len(X), 4 * len(self.centroids_)), dtype=np.float32)
        step, shares = self.block_plan(len(X))
        run_on_threads(len(shares), lambda w: self._extract_blocks(X, out, shares[w], step))
        return out

    def _extract_blocks(self, X, out, starts, step):
        """Features of the images X[s:s + step] for each s in `starts`, written into out.

        Per block: its patches (numba) and their whitening (one GEMM); then, chunk by chunk of patch rows,
        the centroid GEMM and the triangle pass that consumes its product while it is in cache.
        """
        from .kernels.features import _dense_patches, _triangle_pool

        rows, cols = self.grid()
        per_image = rows * cols
        d = self._zca_matrix.shape[0]
        k = len(self._c2)
        chunk = self.chunk_rows()
        patches = np.empty((step * per_image, d), dtype=np.float32)
        white = np.empty_like(patches)
        products = np.empty((chunk, k), dtype=np.float32)
        eps = np.float32(self.patch_eps)
        for s in starts:
            block = X[s:s + step]
            m = len(block) * per_image
            dst = out[s:s + len(block)]
            dst[:] = 0
            _dense_patches(block, self.patch, self.stride, eps, patches[:m])
            np.matmul(patches[:m], self._zca_matrix, out=white[:m])
            white[:m] -= self._zca_offset
            for t in range(0, m, chunk):
                rows_t = min(chunk, m - t)
                np.matmul(white[t:t + rows_t], self._centroids_t, out=products[:rows_t])
                _triangle_pool(products[:rows_t], white[t:t + rows_t], self._c2, rows, cols, t, dst)

    # -- pictures --------------------------------------------------------------------------------
    def filters(self) -> np.ndarray:
        """The centroids as (K, p, p, C) patches in whitened space (the paper's figure of learned filters)."""
        self._check_fitted()
        c = self.input_shape_[-1]
        return self.centroids_.reshape(len(self.centroids_), self.patch, self.patch, c)

    def describe(self) -> dict:
        out = super().describe()
        if hasattr(self, "centroids_"):
            out["n_features_out"] = self.n_features_out_
        return out
