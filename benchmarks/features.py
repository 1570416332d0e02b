"""Feature extraction speed: k-means features against the bare GEMM they contain, HOG and colour histograms.

Run from the checkout (CIFAR-10 when IMGCLF_DATA finds it, random images otherwise):
    IMGCLF_DATA=../shared/datasets python benchmarks/features.py [--centroids 1600 4000] [--images 2000]

For each K: fit KMeansFeatures(centroids=K) on the images (few patches and iterations: only the
extraction is timed), then time, interleaved and best of --repeat, (a) `transform` of the images
(patches, whitening GEMM, centroid GEMM, distances, triangle activations, pooling) and (b) the bare
centroid GEMMs alone, one (729 x D) @ (D x K) per image on the same threads. Prints
the GFLOP/s of both (2 * images * patches per image * D * K flops) and their ratio: how close
extraction runs to the BLAS floor. `--chunk-kb 64 256 ...` times the extraction with each size of the
L2-resident product chunk (imgclf.kmeans_features._CHUNK_BYTES) instead of the library's one. Then HOG
and colour-histogram throughput (images/s). Timings share the machine with whatever else runs: only
the ratios measured in this one run compare.
"""

from __future__ import annotations

import argparse

import imgclf  # noqa: F401 - first: its thread defaults apply only before numpy and numba start their pools
import numpy as np
from timing import best_time


def load_images(n: int) -> tuple[np.ndarray, str]:
    try:
        from imgclf.datasets import load

        return load("cifar10", n_train=n, n_test=1, val=0).get("train").X, "CIFAR-10"
    except Exception as exc:  # no data on this machine: random pixels time the same
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), f"random pixels ({type(exc).__name__})"


def bare_gemm(t, n: int):
    """A function running only the centroid GEMMs of t.transform on n images, one (patches of an image x
    D) @ (D x K) product per image (a size BLAS runs at full speed) on the threads the extraction uses:
    the floor, the same whatever blocks and chunks the library picks."""
    from imgclf.blas import run_on_threads

    _, shares = t.block_plan(n)
    workers = len(shares)
    rows, cols = t.grid()
    m = rows * cols
    rng = np.random.default_rng(1)
    white = [rng.standard_normal((m, t.centroids_.shape[1])).astype(np.float32) for _ in range(workers)]
    products = [np.empty((m, len(t.centroids_)), dtype=np.float32) for _ in range(workers)]

    def work(w):
        for _ in range(w, n, workers):
            np.matmul(white[w], t._centroids_t, out=products[w])

    return lambda: run_on_threads(workers, work)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--centroids", type=int, nargs="+", default=[1600, 4000])
    ap.add_argument("--images", type=int, default=2000, help="images to extract features from")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs per timing")
    ap.add_argument("--chunk-kb", type=int, nargs="+", default=None,
                    help="product chunk sizes (KiB) to time the extraction with (default: the library's)")
    args = ap.parse_args()

    from imgclf import kmeans_features
    from imgclf.colorhist import ColorHistogram
    from imgclf.hog import HOG
    from imgclf.kmeans_features import KMeansFeatures

    default_chunk = getattr(kmeans_features, "_CHUNK_BYTES", None)  # absent before the chunked extraction
    chunks = [None] if not args.chunk_kb or default_chunk is None else args.chunk_kb

    def use_chunk(kb):
        if default_chunk is not None:
            kmeans_features._CHUNK_BYTES = default_chunk if kb is None else kb * 1024

    X, source = load_images(args.images)
    print(f"{len(X)} images of {source}; best of {args.repeat}; the machine may be shared: compare ratios only")
    print(f"{'K':>6} {'chunk':>9} {'extract s':>10} {'GFLOP/s':>8} {'GEMM s':>8} {'GFLOP/s':>8} {'extract/GEMM':>13}")
    for k in args.centroids:
        t = KMeansFeatures(centroids=k, patches=max(4 * k, 20_000), iterations=1).fit(X)
        t.transform(X[:8])  # compile the kernels outside the timing
        gemm = bare_gemm(t, len(X))
        rows, cols = t.grid()
        flops = 2.0 * len(X) * rows * cols * t.centroids_.shape[1] * k
        t_ext = dict.fromkeys(chunks, float("inf"))
        t_gemm = float("inf")
        for _ in range(args.repeat):  # interleaved: all see the same load
            for kb in chunks:
                use_chunk(kb)
                t_ext[kb] = min(t_ext[kb], best_time(lambda: t.transform(X), 1))
            t_gemm = min(t_gemm, best_time(gemm, 1))
        for kb in chunks:
            use_chunk(kb)
            label = f"{t.chunk_rows()} rows" if hasattr(t, "chunk_rows") else "-"
            e = t_ext[kb]
            print(f"{k:>6} {label:>9} {e:>10.2f} {flops / e / 1e9:>8.1f} {t_gemm:>8.2f} {flops / t_gemm / 1e9:>8.1f} "
                  f"{e / t_gemm:>13.2f}")
        use_chunk(None)
    for step in (HOG(), HOG(cell=4), ColorHistogram()):
        step.fit(X[:8]).transform(X[:8])
        sec = best_time(lambda: step.transform(X), args.repeat)
        print(f"{step!r}: {len(X) / sec:,.0f} images/s ({sec:.2f} s)")


if __name__ == "__main__":
    main()
