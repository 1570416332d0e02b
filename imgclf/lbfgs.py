"""Full-batch L-BFGS for the linear classifiers: the whole objective and its gradient in one read of X.

`solver="lbfgs"` on `imgclf.linear.LinearClassifier` minimises exactly the objective SGD samples,

    L(W, b) = (1/N) sum_i w_i L_i(x_i W + b, y_i) + reg * sum W^2        (bias not penalised)

deterministically with scipy's L-BFGS-B (float64 optimiser state) from W = 0, as Coates, Lee and Ng
trained their L2-SVM with minFunc. On k-means features (49000 x 6400 or x 16000 float32, 1.3-3.1 GB)
an evaluation is two skinny GEMMs over the whole matrix, S = X W and G = X^T dS, both bound by reading
X from memory. `LinearObjective` reads it once: it walks row blocks small enough (4 MB; two threads'
blocks stay in the 32 MB L3) to be still in cache for the second product, with the block's scores,
loss and dS in between. Smaller blocks measured slower (per-block Python and loss overhead: 1 MB 1.24x,
2 MB 0.86x, 4 MB 0.83x, 8 MB 0.84x the bare full-matrix GEMMs at 49000 x 6400; benchmarks/linear.py). Blocks are
dealt to a fixed number of shares (`SHARES`), each with its own float64 accumulators, run on one
Python thread per BLAS thread with a one-thread BLAS (imgclf.blas.run_on_threads) and summed in share
order: the result depends neither on timing nor on the number of threads.

`train` drives the optimiser: with validation data it scores the validation accuracy every
`check_every` iterations, keeps the best weights, and stops once `patience` checks brought nothing
better; it records the checks as the Solver records epochs (imgclf.nn.solver.TrainResult).
"""

from __future__ import annotations

import time

import numpy as np

SHARES = 4  # fixed, so that 1, 2 or 4 threads sum the same partial results in the same order
_BLOCK_BYTES = 4 << 20  # features per block; see the module docstring for the measured sizes
_TRAIN_SAMPLE = 1000  # rows of the training set whose accuracy each check records


class LinearObjective:
    """f(w) = mean weighted data loss + reg * |W|^2 and its gradient, for the float64 vector
    w = [W.ravel(), b] (W (D, C), b (C,)), over float32 features X (N, D).

    `data_loss(scores, y, sample_weight)` returns (mean loss over the rows, its gradient on the scores),
    as `imgclf.losses` does. With `centre` (D,) the model sees x - centre, without a centred copy of X
    (the bias absorbs -centre @ W, the weight gradient takes a rank-one correction).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, n_classes: int, data_loss, reg: float,
                 sample_weight=None, centre=None, workers: int | None = None):
        from .blas import blas_thread_count

        self.X, self.y, self.data_loss, self.reg = X, y, data_loss, float(reg)
        self.sample_weight = sample_weight
        self.centre = centre
        n, d = X.shape
        self.shape = (d, n_classes)
        rows = max(8, _BLOCK_BYTES // (4 * max(d, 1)))
        starts = list(range(0, n, rows))
        self.rows = rows
        # Interleaved, so the shares stay balanced whatever the block count.
        self.shares = [starts[s::SHARES] for s in range(SHARES)]
        self.workers = max(1, min(workers or blas_thread_count(), SHARES))

    def unpack(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 (W (D, C), b (C,)) from the optimiser's vector."""
        d, c = self.shape
        return w[:d * c].reshape(d, c).astype(np.float32), w[d * c:].astype(np.float32)

    def __call__(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        from .blas import blas_threads, run_on_threads

        d, c = self.shape
        W, b = self.unpack(w)
        bias = b if self.centre is None else b - self.centre @ W
        losses = np.zeros(SHARES)
        dW = np.zeros((SHARES, d, c))
        db = np.zeros((SHARES, c))

        def work(t: int) -> None:
            for s in range(t, SHARES, self.workers):
                losses[s] = self._share(self.shares[s], W, bias, dW[s], db[s])

        with blas_threads(1):  # also when one worker runs inline: the same one-thread GEMMs as the others
            run_on_threads(self.workers, work)
        grad_W, grad_b = dW[0], db[0]
        for s in range(1, SHARES):  # in share order: the sum does not depend on which thread finished first
            grad_W += dW[s]
            grad_b += db[s]
        if self.centre is not None:
            grad_W -= np.outer(self.centre, grad_b)
        W64 = w[:d * c].reshape(d, c)
        grad_W += (2 * self.reg) * W64
        loss = float(sum(losses)) + self.reg * float(np.dot(w[:d * c], w[:d * c]))
        return loss, np.concatenate([grad_W.ravel(), grad_b])

    def _share(self, starts, W, bias, dW, db) -> float:
        """Data loss of the blocks at `starts` (a sum, already divided by N); their gradients added to
        the float64 accumulators dW (D, C) and db (C,)."""
        n = len(self.y)
        d, c = self.shape
        scores = np.empty((self.rows, c), np.float32)
        part = np.empty((d, c), np.float32)
        total = 0.0
        for lo in starts:
            Xb = self.X[lo:lo + self.rows]
            m = len(Xb)
            S = np.matmul(Xb, W, out=scores[:m])
            S += bias
            weight = None if self.sample_weight is None else self.sample_weight[lo:lo + m]
            loss, dS = self.data_loss(S, self.y[lo:lo + m], weight)
            dS *= np.float32(m / n)  # the block's mean -> its share of the mean over all N rows
            total += loss * m / n
            np.matmul(Xb.T, dS, out=part)
            dW += part
            db += dS.sum(axis=0, dtype=np.float64)
        return total


def minimize(objective, x0: np.ndarray, max_iter: int, on_iteration=None, corrections: int = 10):
    """scipy's L-BFGS-B on objective(w) -> (f, grad) from x0, at most max_iter iterations, keeping
    `corrections` update pairs (scipy's default 10; minFunc's, which the paper used, is 100).

    `on_iteration(iteration, x, f)` after every iteration; returning True stops the run there.
    Returns scipy's OptimizeResult (x, fun, nit, message).
    """
    from scipy.optimize import minimize as scipy_minimize

    count = [0]

    def callback(intermediate_result):
        count[0] += 1
        if on_iteration is not None and on_iteration(count[0], intermediate_result.x, intermediate_result.fun):
            raise StopIteration

    return scipy_minimize(objective, x0, jac=True, method="L-BFGS-B", callback=callback,
                          options={"maxiter": int(max_iter), "maxcor": int(corrections)})


def train(model, objective: LinearObjective, X, y, X_val, y_val, *, max_iter: int, check_every: int,
          patience: int, corrections: int = 10, class_weights=None, callback=None):
    """Minimise `objective` for `model` (a LinearClassifier whose params_ are set from each iterate)
    from zero weights. Returns the Solver's TrainResult; model.params_ hold the kept weights.

    Every `check_every` iterations (and at the end) a record like the Solver's epoch record:
    {"epoch": check number, "iteration", "loss" (the objective), "train_acc" (on <= 1000 evenly
    spaced training rows), "val_acc", "lr": None, "update_ratio": None, "seconds"}. With validation
    data the best check's weights are kept and `patience` checks without improvement stop the run;
    without, the last iterate is kept. callback("step", ...) after each iteration and
    callback("epoch", record) after each check, as the Solver calls it.
    """
    from .nn.solver import EpochRecord, TrainResult, accuracies

    result = TrainResult()
    d, c = objective.shape
    sample = np.arange(0, len(y), max(1, len(y) // _TRAIN_SAMPLE))[:_TRAIN_SAMPLE]
    have_val = X_val is not None and len(y_val) > 0
    state = {"best": None, "t0": time.perf_counter(), "last": 0}

    def set_weights(x) -> None:
        W, b = objective.unpack(x)
        model.set_linear_weights(W, b)

    def check(iteration: int, x, f: float) -> bool:
        set_weights(x)
        train_acc, score = accuracies(model, X[sample], y[sample], class_weights)
        val_acc = None
        if have_val:
            val_acc, score = accuracies(model, X_val, y_val, class_weights)
        now = time.perf_counter()
        rec = EpochRecord(len(result.history) + 1, float(f), train_acc, val_acc, None, None, now - state["t0"])
        state["t0"], state["last"] = now, iteration
        record = {**rec.as_dict(), "iteration": iteration}
        result.history.append(record)
        stop = False
        if not have_val or result.best_val_acc is None or score > result.best_val_acc:
            result.best_val_acc, result.best_epoch = score, rec.epoch
            state["best"] = np.array(x, copy=True)
            if have_val and score >= 1.0:
                result.stopped, stop = f"early stop: perfect score at check {rec.epoch} (iteration {iteration})", True
        elif rec.epoch - result.best_epoch >= patience:
            best_iteration = result.history[result.best_epoch - 1]["iteration"]
            result.stopped = (f"early stop: no val improvement for {patience} checks of {check_every} iterations "
                              f"(best {result.best_val_acc:.4f} at iteration {best_iteration})")
            stop = True
        if callback:
            callback("epoch", record)
        return stop

    def on_iteration(iteration: int, x, f: float) -> bool:
        result.loss_history.append(float(f))
        if callback:
            callback("step", {"epoch": len(result.history) + 1, "iteration": iteration, "loss": float(f)})
        return iteration % check_every == 0 and check(iteration, x, f)

    with np.errstate(over="ignore", invalid="ignore"):
        opt = minimize(objective, np.zeros(d * c + c), max_iter, on_iteration, corrections)
        if not np.isfinite(opt.fun):
            result.stopped = f"diverged: the objective became {opt.fun}"
        elif state["last"] != opt.nit or not result.history:
            check(opt.nit, opt.x, float(opt.fun))
    if state["best"] is not None:
        set_weights(state["best"])
    return result
