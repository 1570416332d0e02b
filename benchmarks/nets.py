"""Fully-connected net training speed: seconds per epoch on 49000 x 3072 float32 (CIFAR-10's training
split size), batch 200, hidden H in {100, 500}, all in this one run so the ratios compare like with like:

  imgclf      one epoch of NeuralNet through the Solver (gather, forward, backward, fused kernels,
              update; plus the per-epoch accuracy on a 1000-example sample), float32
  numpy       the same net written plainly in numpy (same GEMMs, numpy elementwise and update)
  gemms       the bare float32 GEMMs of one epoch timed alone: X@W1, h@W2 forward, h.T@ds, ds@W2.T,
              X.T@dh backward (dx of the first layer is not needed), on contiguous batches
  sklearn     MLPClassifier(solver="sgd", one epoch), when scikit-learn is importable

The optimiser is plain SGD everywhere (as MLPClassifier's baseline); imgclf with Adam is shown too.
Targets: imgclf's epoch within 1.2x of the GEMMs, and >= 2.5x faster than MLPClassifier. MLPClassifier
keeps float32 data in float32 and runs the same GEMMs, so sklearn/gemms is the ceiling of sklearn/imgclf
for any implementation that does these products (printed as the last column).

    python benchmarks/nets.py [--n 49000] [--hidden 100,500] [--clock wall|cpu]

On a busy machine wall-clock times mostly measure the other jobs; `OPENBLAS_NUM_THREADS=1 python
benchmarks/nets.py --clock cpu` then compares the work itself (process CPU time, one thread each, so no
spinning BLAS threads are counted).
"""

from __future__ import annotations

import argparse
import time
import warnings

import imgclf  # noqa: F401 - first: its thread-spin defaults (imgclf/_threading.py) apply only before numpy and numba start their pools
import numpy as np


CLOCK = time.perf_counter


def timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def imgclf_epoch(X, y, h, optim):
    """One Solver epoch of NeuralNet (input checks and initialisation, done once per fit, not timed)."""
    from imgclf.nn.net import NeuralNet
    from imgclf.nn.solver import Solver

    net = NeuralNet(hidden=(h,), batch_size=200, optim=optim, lr=1e-3, reg=1e-4, dropout=0.0, random_state=0)
    net.classes_ = np.arange(10)
    rng = np.random.default_rng(0)
    solver = Solver(net.initialize(X.shape[1], 10, rng), X, y, optim=optim, lr=1e-3, epochs=1, batch_size=200, rng=rng)
    return timed(solver.train)


def numpy_epoch(X, y, h, rng):
    n, d = X.shape
    W1 = (rng.standard_normal((d, h)) * np.sqrt(2 / d)).astype(np.float32)
    b1 = np.zeros(h, np.float32)
    W2 = (rng.standard_normal((h, 10)) * np.sqrt(2 / h)).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    lr, reg = np.float32(1e-3), np.float32(1e-4)

    def run():
        order = rng.permutation(n)
        for s in range(n // 200):
            idx = order[s * 200:(s + 1) * 200]
            xb, yb = X[idx], y[idx]
            hid = np.maximum(xb @ W1 + b1, 0)
            scores = hid @ W2 + b2
            scores -= scores.max(axis=1, keepdims=True)
            p = np.exp(scores)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(200), yb] -= 1
            p /= 200
            dW2 = hid.T @ p + 2 * reg * W2
            dh = p @ W2.T
            dh[hid <= 0] = 0
            dW1 = xb.T @ dh + 2 * reg * W1
            for w, g in ((W1, dW1), (b1, dh.sum(axis=0)), (W2, dW2), (b2, p.sum(axis=0))):
                w -= lr * g

    return timed(run)


def gemm_epoch(X, h, rng):
    n, d = X.shape
    W1 = rng.standard_normal((d, h)).astype(np.float32)
    W2 = rng.standard_normal((h, 10)).astype(np.float32)
    hid = np.empty((200, h), np.float32)
    sc = np.empty((200, 10), np.float32)
    dW1 = np.empty_like(W1)
    dW2 = np.empty_like(W2)
    dh = np.empty_like(hid)

    def run():
        for s in range(n // 200):
            xb = X[s * 200:(s + 1) * 200]
            np.matmul(xb, W1, out=hid)
            np.matmul(hid, W2, out=sc)
            np.matmul(hid.T, sc, out=dW2)
            np.matmul(sc, W2.T, out=dh)
            np.matmul(xb.T, dh, out=dW1)

    return timed(run)


def sklearn_epoch(X, y, h):
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    mlp = MLPClassifier(hidden_layer_sizes=(h,), solver="sgd", batch_size=200, max_iter=1, momentum=0.0,
                        learning_rate_init=1e-3, alpha=1e-4, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return timed(lambda: mlp.fit(X, y))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=49000)
    ap.add_argument("--hidden", default="100,500")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, 3072), dtype=np.float32)
    y = rng.integers(0, 10, args.n)
    # Compile the kernels (numba cache) outside the timings.
    imgclf_epoch(X[:400], y[:400], 8, "sgd")
    imgclf_epoch(X[:400], y[:400], 8, "adam")
    print(f"seconds per epoch ({args.clock} clock), {args.n} x 3072 float32, batch 200, one run each")
    print(f"{'H':>4} {'gemms':>7} {'imgclf':>7} {'adam':>7} {'numpy':>7} {'sklearn':>8}   "
          f"{'imgclf/gemms':>12} {'numpy/imgclf':>12} {'sklearn/imgclf':>14} {'sklearn/gemms':>13}")
    for h in (int(v) for v in args.hidden.split(",")):
        g = gemm_epoch(X, h, rng)
        ours = imgclf_epoch(X, y, h, "sgd")
        ours_adam = imgclf_epoch(X, y, h, "adam")
        plain = numpy_epoch(X, y, h, rng)
        skl = sklearn_epoch(X, y, h)
        skl_txt = f"{skl:8.2f}" if skl is not None else f"{'-':>8}"
        ratio_txt = f"{skl / ours:14.2f} {skl / g:13.2f}" if skl is not None else f"{'-':>14} {'-':>13}"
        print(f"{h:4d} {g:7.2f} {ours:7.2f} {ours_adam:7.2f} {plain:7.2f} {skl_txt}   {ours / g:12.2f} "
              f"{plain / ours:12.2f} {ratio_txt}", flush=True)


if __name__ == "__main__":
    main()
