"""Preprocessing figures: exact PCA fit time on CIFAR-10 against scikit-learn, and kNN accuracy per chain.

Run from the checkout with the data on the search path:
    IMGCLF_DATA=../shared/datasets python benchmarks/preprocess.py [--repeat 2] [--skip-full]

Part 1: PCA(dims=144) fit on the 49000 x 3072 float32 CIFAR-10 training split: imgclf's time (the
exact 8-bit covariance when the CPU has AVX-512 VNNI, and the float32-block path on the same pixels
times 1.25, which are neither integers nor integers shifted by a constant), the ratio to
scikit-learn's PCA(n_components=144) with svd_solver 'full', 'randomized' and (sklearn >= 1.5)
'covariance_eigh' when scikit-learn is importable, and the precision of every result against an
all-float64 covariance. Part 2: on the first 5000 training / 500 test images, kNN accuracy
(L2, k = 1 and 5; imgclf's KNNClassifier, or plain numpy without it) on raw, mean-subtracted,
PCA-144 and whitened data, and the variance 144 components keep.
Timings are best of --repeat runs (methods interleaved), wall-clock or, with --clock cpu, process
CPU time, measured in this one run so the ratios compare like with like on a shared machine:
    OPENBLAS_NUM_THREADS=1 IMGCLF_DATA=../shared/datasets python benchmarks/preprocess.py --clock cpu
"""

from __future__ import annotations

import argparse
import os
import time

import imgclf  # noqa: F401 - first: its thread-spin defaults (imgclf/_threading.py) apply only before numpy and numba start their pools
import numpy as np


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = clock()
        out = fn()
        best = min(best, clock() - t0)
    return best, out


def subspace_error(A: np.ndarray, B: np.ndarray) -> float:
    """sin of the largest principal angle between the row spaces of two orthonormal (k, D) bases."""
    s = np.linalg.svd(A.astype(np.float64) @ B.astype(np.float64).T, compute_uv=False)
    return float(np.sqrt(max(0.0, 1.0 - s.min() ** 2)))


def knn_accuracy(Xtr, ytr, Xte, yte, ks=(1, 5)) -> tuple[dict[int, float], str]:
    """L2 kNN accuracy per k, with imgclf's KNNClassifier when present, else plain numpy."""
    try:
        from imgclf.neighbors import KNNClassifier
    except ImportError:
        return numpy_knn_accuracy(Xtr, ytr, Xte, yte, ks), "plain numpy"
    return {k: KNNClassifier(k=k, metric="l2").fit(Xtr, ytr).score(Xte, yte) for k in ks}, "imgclf KNNClassifier"


def numpy_knn_accuracy(Xtr, ytr, Xte, yte, ks=(1, 5)) -> dict[int, float]:
    """Plain numpy kNN, L2; neighbours ordered by distance then training index, vote ties to the smallest label."""
    A = Xtr.reshape(len(Xtr), -1).astype(np.float64)
    B = Xte.reshape(len(Xte), -1).astype(np.float64)
    d = (B * B).sum(1)[:, None] - 2 * B @ A.T + (A * A).sum(1)[None, :]
    order = np.argsort(d, axis=1, kind="stable")
    n_classes = int(max(ytr.max(), yte.max())) + 1
    out = {}
    for k in ks:
        votes = np.zeros((len(B), n_classes), dtype=np.int64)
        np.add.at(votes, (np.arange(len(B))[:, None], ytr[order[:, :k]]), 1)
        out[k] = float(np.mean(votes.argmax(1) == yte))
    return out


def pca_timings(repeat: int, skip_full: bool) -> None:
    from imgclf.datasets import load
    from imgclf.eigen import covariance
    from imgclf.preprocessing import PCA

    ds = load("cifar10")
    X = ds.get("train").X.reshape(len(ds.get("train")), -1).astype(np.float32)
    print(f"PCA fit, dims 144, on {X.shape[0]} x {X.shape[1]} float32 CIFAR-10 training images "
          f"(best of {repeat}, methods interleaved, {'CPU' if clock is time.process_time else 'wall'} time)")
    # The pixels hold integers 0..255: with AVX-512 VNNI, imgclf takes its exact 8-bit covariance.
    # The same pixels times 1.25 (exact in float32; covariance times 1.5625, same vectors) are neither
    # integers nor integers minus a constant: they time imgclf's float32-block path.
    X_float = X * np.float32(1.25)
    fits = {"imgclf": lambda: PCA(dims=144).fit(X), "imgclf float path": lambda: PCA(dims=144).fit(X_float)}
    try:
        import sklearn
        from sklearn.decomposition import PCA as SkPCA

        solvers = ["randomized", "covariance_eigh"] + ([] if skip_full else ["full"])
        for solver in solvers:
            fits[solver] = lambda solver=solver: SkPCA(n_components=144, svd_solver=solver, random_state=0).fit(X)
        version = sklearn.__version__
    except ImportError:
        print("  scikit-learn not importable: no baseline ratios")
        version = None
    times, models = {}, {}
    for r in range(repeat):
        for name, fit in fits.items():
            if name == "full" and r > 0:
                continue  # minutes per run; once is enough for the ratio
            try:
                t, models[name] = best_time(fit, 1)
            except ValueError as exc:  # covariance_eigh needs scikit-learn >= 1.5
                print(f"  sklearn {version} {name}: not available ({exc})")
                fits = {k: v for k, v in fits.items() if k != name}
                break
            times[name] = min(t, times.get(name, float("inf")))
    from imgclf.kernels.gram_u8 import has_vnni

    ours = models["imgclf"]
    t_ours = times["imgclf"]
    eigen = ("float32 LAPACK ssyevr for the top 240, refined against the covariance in float64; "
             f"144 components keep {100 * ours.retained_variance_:.2f}% of the variance")
    path = ("exact integer covariance of the 8-bit pixels (AVX-512 VNNI)" if has_vnni()
            else "no AVX-512 VNNI here: float32-block covariance summed in float64")
    print(f"  imgclf PCA ({path}; {eigen}): {t_ours:7.2f} s")
    # Precision of each result against an all-float64 covariance (float64 blocks, float64 eigh).
    mean = X.mean(axis=0, dtype=np.float64)
    w64, v64 = np.linalg.eigh(covariance(X, mean, work_dtype=np.float64))
    w64, v64 = w64[::-1][:144], v64[:, ::-1][:, :144].T

    def error(model, scale=1.0):
        ev = np.max(np.abs(model.explained_variance_ / scale ** 2 - w64) / w64)
        cos = np.abs(np.sum(model.components_.astype(np.float64)[:20] * v64[:20], axis=1))
        return (f"eigenvalue rel. error {ev:.1e}, top-20 vectors sin(angle) <= "
                f"{np.sqrt(max(0.0, 1 - cos.min() ** 2)):.1e}, 144-subspace sin(angle) "
                f"{subspace_error(model.components_, v64):.1e}")

    print(f"    vs all-float64 covariance: {error(ours)}")
    t_float = times["imgclf float path"]
    print(f"  imgclf PCA on the pixels x 1.25 (not integers: float32-block covariance summed in float64): "
          f"{t_float:7.2f} s")
    print(f"    vs all-float64 covariance: {error(models['imgclf float path'], 1.25)}")
    for name in fits:
        if name.startswith("imgclf"):
            continue
        print(f"  sklearn {version} svd_solver={name!r}: {times[name]:7.2f} s   imgclf is "
              f"{times[name] / t_ours:5.2f}x faster ({times[name] / t_float:5.2f}x on the float path)")
        print(f"    vs all-float64 covariance: {error(models[name])}")


def knn_table() -> None:
    from imgclf.datasets import load
    from imgclf.preprocessing_chain import fit_chain, parse_chain_spec

    ds = load("cifar10", n_train=5000, n_test=500)
    print(f"\nkNN (L2) on CIFAR-10, first {len(ds.get('train'))} train / {len(ds.get('test'))} test; "
          "chains fitted on the 5000 training images")
    print(f"{'chain':<16} {'features':>9} {'k=1':>7} {'k=5':>7} {'variance kept':>14}")
    for spec in ["raw", "mean", "mean,normalize", "pca:144", "whiten:144", "whiten", "zca"]:
        out = ds if spec == "raw" else fit_chain(parse_chain_spec(spec), ds)
        tr, te = out.get("train"), out.get("test")
        acc, how = knn_accuracy(tr.X, tr.y, te.X, te.y)
        last = out.transforms[-1] if out.transforms else None
        kept = f"{100 * last.retained_variance_:.2f}%" if hasattr(last, "retained_variance_") else "-"
        print(f"{spec:<16} {int(np.prod(tr.X.shape[1:])):>9} {acc[1]:>7.3f} {acc[5]:>7.3f} {kept:>14}")
    print(f"(kNN by {how})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs per timing")
    ap.add_argument("--skip-full", action="store_true", help="skip sklearn's slow 'full' solver")
    ap.add_argument("--only", choices=["pca", "knn"], default=None)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall-clock time, or process CPU time (steadier on a busy machine; pair it with "
                         "OPENBLAS_NUM_THREADS=1 so that spinning BLAS threads are not counted)")
    args = ap.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    print(f"clock: {args.clock}; BLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}")
    if args.only in (None, "pca"):
        pca_timings(args.repeat, args.skip_full)
    if args.only in (None, "knn"):
        knn_table()


if __name__ == "__main__":
    main()
