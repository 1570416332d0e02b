"""Linear classifier training speed: seconds per epoch against the GEMMs an epoch cannot avoid.

Run from the checkout with the data on the search path:
    IMGCLF_DATA=../shared/datasets python benchmarks/linear.py [--epochs 3] [--batch-size 200]

On 49,000 x 3,073 (CIFAR-10 training split, mean-subtracted float32, bias trick) one SGD epoch of
LinearSVM and SoftmaxClassifier (the Solver loop: shuffle, then per step the fused kernel of
imgclf/kernels/linear.py reading the batch's rows in place for scores, loss and gradient, then the
update; the per-epoch accuracy evaluation is not counted) is compared, in this one run, with:
  - the two float32 GEMMs every step needs, on contiguous batch slices: scores = X_b W and
    dW = X_b^T dS (a lower bound for a BLAS step: no shuffling, no loss, no update), with one BLAS
    thread and with the default thread pool, the faster counting;
  - the same two products as single full-matrix GEMMs (the best BLAS can do with the data);
  - scikit-learn's SGDClassifier(hinge), one epoch, and LogisticRegression (lbfgs, multinomial), time
    per iteration, when scikit-learn is installed (they run in float64: their own choice).
The target is an epoch within 1.5x of the batched GEMM time. Timings are the best of --repeat runs.

With --lbfgs FEATURES it measures instead one evaluation of the full-batch objective and gradient that
solver="lbfgs" minimises (imgclf/lbfgs.py: row blocks, one read of X, two threads), on random float32
data of 49000 x FEATURES (6400: the 1600-centroid k-means features; 16000: 4000 centroids), 10 classes,
the one-vs-rest squared hinge, against in the same run:
  - the naive evaluation: S = X W and dW = X^T dS as full-matrix GEMMs with the loss in between;
  - the bare GEMMs alone, X W + X^T D (the faster of one BLAS thread and the default pool).
    IMGCLF_DATA is not needed for it:  python benchmarks/linear.py --lbfgs 6400
"""

from __future__ import annotations

import argparse
import time

import imgclf  # noqa: F401 - first: its thread-spin defaults (imgclf/_threading.py) apply only before numpy and numba start their pools
import numpy as np
from timing import best_time


def load_features(n_train: int) -> tuple[np.ndarray, np.ndarray]:
    from imgclf.datasets import load
    from imgclf.preprocessing_chain import fit_chain, parse_chain_spec

    ds = fit_chain(parse_chain_spec("mean"), load("cifar10", val=1000, n_train=n_train, n_test=1))
    train = ds.get("train")
    return np.ascontiguousarray(train.X.reshape(len(train), -1), dtype=np.float32), train.y


def batched_gemms(X: np.ndarray, C: int, batch: int) -> None:
    W = np.zeros((X.shape[1], C), np.float32)
    dW = np.empty_like(W)
    for i in range(0, len(X) - batch + 1, batch):
        Xb = X[i:i + batch]
        S = Xb @ W
        np.matmul(Xb.T, S, out=dW)


def full_gemms(X: np.ndarray, C: int) -> None:
    W = np.zeros((X.shape[1], C), np.float32)
    S = X @ W
    _ = X.T @ S


def gather(X: np.ndarray, batch: int, rng) -> None:
    order = rng.permutation(len(X))
    for i in range(0, len(X) - batch + 1, batch):
        X[order[i:i + batch]]


def _one_thread(fn, *args):
    from imgclf.blas import blas_threads

    with blas_threads(1):
        fn(*args)


def epoch_seconds(cls, X, y, epochs: int, batch: int, **params) -> float:
    model = cls(epochs=epochs, batch_size=batch, random_state=0, **params).fit(X, y)
    return min(h["seconds"] for h in model.history_)


def lbfgs_evaluation(features: int, n: int, repeat: int) -> None:
    """Seconds per objective + gradient evaluation against the naive and the bare GEMMs (see --lbfgs)."""
    from imgclf.lbfgs import LinearObjective
    from imgclf.linear import LinearSVM
    from imgclf.losses import ovr_svm_loss

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, features), dtype=np.float32)
    y = rng.integers(0, 10, n)
    model = LinearSVM(multiclass="ovr", squared_hinge=True)
    w = 0.001 * rng.standard_normal(features * 10 + 10)
    W = w[:-10].reshape(features, 10).astype(np.float32)
    print(f"data: {n} x {features} random float32 ({X.nbytes / 1e9:.2f} GB), 10 classes, OvR squared hinge")

    def bare():
        S = X @ W
        _ = X.T @ S

    def naive():
        S = X @ W
        S += w[-10:].astype(np.float32)
        _, dS = ovr_svm_loss(S, y, squared=True)
        _ = X.T @ dS

    objective = LinearObjective(X, y, 10, model._data_loss, 0.005, centre=X.mean(axis=0))
    t_bare1 = best_time(lambda: _one_thread(bare), repeat)
    t_bare_n = best_time(bare, repeat)
    t_bare = min(t_bare1, t_bare_n)
    t_naive = best_time(naive, repeat)
    t_ours = best_time(lambda: objective(w), repeat)
    print(f"bare GEMMs X W + X^T D:              {t_bare:8.3f} s   (1 BLAS thread {t_bare1:.3f}, default pool "
          f"{t_bare_n:.3f})")
    print(f"naive evaluation (two full GEMMs):   {t_naive:8.3f} s   {t_naive / t_bare:5.2f}x the bare GEMMs")
    print(f"imgclf LinearObjective ({objective.workers} threads, {objective.rows}-row blocks): {t_ours:8.3f} s   "
          f"{t_ours / t_bare:5.2f}x the bare GEMMs, {t_naive / t_ours:5.2f}x faster than naive")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3, help="Epochs per model; the fastest counts.")
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=None, help="Fewer training rows (default all 49000).")
    ap.add_argument("--lbfgs", type=int, default=None, metavar="FEATURES",
                    help="Time the L-BFGS objective evaluation on random data of this many features instead.")
    args = ap.parse_args()
    if args.lbfgs:
        lbfgs_evaluation(args.lbfgs, args.n_train or 49000, args.repeat)
        return

    from imgclf.linear import LinearSVM, SoftmaxClassifier

    X, y = load_features(args.n_train)
    C = int(y.max()) + 1
    b = args.batch_size
    print(f"data: {X.shape[0]} x {X.shape[1] + 1} (with the bias column), float32, {C} classes, batch {b}")
    rng = np.random.default_rng(0)
    # The baselines get the faster of one BLAS thread and the default pool, so the ratios never flatter imgclf.
    t_gemm1 = best_time(lambda: _one_thread(batched_gemms, X, C, b), args.repeat)
    t_gemm_n = best_time(lambda: batched_gemms(X, C, b), args.repeat)
    t_full = min(best_time(lambda: _one_thread(full_gemms, X, C), args.repeat),
                 best_time(lambda: full_gemms(X, C), args.repeat))
    t_gemm = min(t_gemm1, t_gemm_n)
    t_gather = best_time(lambda: gather(X, b, rng), args.repeat)
    print(f"two GEMMs per step, contiguous batches:  {t_gemm:8.3f} s/epoch   (1 BLAS thread {t_gemm1:.3f}, "
          f"default pool {t_gemm_n:.3f})")
    print(f"two full-matrix GEMMs:                   {t_full:8.3f} s/epoch")
    print(f"shuffled batch gathers X[idx] alone:     {t_gather:8.3f} s/epoch")
    rows = []
    for name, cls, params in (("svm", LinearSVM, {"reg": 1e3, "lr": 1e-7}),
                              ("softmax", SoftmaxClassifier, {"reg": 1e2, "lr": 3e-7})):
        t = epoch_seconds(cls, X, y, args.epochs, b, **params)
        rows.append((name, t))
        print(f"imgclf {name:8s} epoch:                  {t:8.3f} s   {t / t_gemm:5.2f}x the batched GEMMs "
              f"(target <= 1.5x)   {t / t_full:5.2f}x the full-matrix GEMMs")
    try:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression, SGDClassifier
    except ImportError:
        print("scikit-learn not installed: its baselines are skipped")
        return
    X64 = X.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t_sgd = best_time(lambda: SGDClassifier(loss="hinge", max_iter=1, tol=None, alpha=1e-4,
                                                random_state=0).fit(X64, y), 1)
        iters = 5
        t_lr = best_time(lambda: LogisticRegression(max_iter=iters, tol=0).fit(X64, y), 1) / iters
    svm_t = dict(rows)["svm"]
    soft_t = dict(rows)["softmax"]
    print(f"sklearn SGDClassifier(hinge), 1 epoch:   {t_sgd:8.3f} s   imgclf svm is {t_sgd / svm_t:5.1f}x faster")
    print(f"sklearn LogisticRegression, per lbfgs it: {t_lr:7.3f} s   imgclf softmax epoch is "
          f"{t_lr / soft_t:5.1f}x that")


if __name__ == "__main__":
    main()
