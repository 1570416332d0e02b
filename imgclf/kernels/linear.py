"""One fused pass for a linear classifier's minibatch: gather, scores, loss, gradient.

An SGD step of a linear model on CIFAR-10 needs scores = X_b W (200 x 3073 by 3073 x 10) and
dW = X_b^T dS. With BLAS that is a batch gather (a full copy of the rows) and two skinny GEMMs that
each read the batch again; the gather alone costs half as much as the GEMMs because it cannot overlap
with arithmetic. Here every row is read from the training set once, in a group of R rows whose
features are processed in chunks that stay in L1 cache:

    for each chunk of features:  S[r, c] += x_r[chunk] . Wt[c, chunk]        (scores)
    row-wise loss and dS                                                      (softmax / hinge)
    for each chunk of features:  G[c, chunk] += sum_r dS[r, c] x_r[chunk]     (gradient)

so a chunk of the weights (and of the gradient) is loaded once per R rows, not once per row. Threads
take contiguous slices of the batch with private gradient buffers, summed at the end in a fixed order
(the result does not depend on timing). `reassoc` is allowed on the dot products only, so that LLVM
vectorises their sums; everything else is evaluated in source order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .elementwise import _sum_sq
from .loss import HINGE, OVR_HINGE, OVR_SQUARED_HINGE, SOFTMAX, SQUARED_HINGE, _row_loss  # noqa: F401 - the kinds are part of this API

R = 8  # rows per group: 8 x-chunks + a weight chunk + a gradient chunk fit in L1
CHUNK = 512  # features per chunk



# The chunk loops index slices with range(n), not the parent arrays with range(lo, hi): LLVM vectorised
# both, but the second form ran 18x slower (measured on 8 x 3072 by 10 x 3072).
@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _group_scores(xb, m, Wt, S):
    """S[r, c] = xb[r] . Wt[c] for the first m rows of the group buffer xb (R, D)."""
    C, D = Wt.shape
    S[:, :] = 0
    for k in range((D + CHUNK - 1) // CHUNK):
        lo = k * CHUNK
        n = min(CHUNK, D - lo)
        for c in range(C):
            w = Wt[c, lo:lo + n]
            r = 0
            while r + 4 <= m:  # four rows per pass: each weight load feeds four products
                x0, x1, x2, x3 = xb[r, lo:lo + n], xb[r + 1, lo:lo + n], xb[r + 2, lo:lo + n], xb[r + 3, lo:lo + n]
                a0 = a1 = a2 = a3 = np.float32(0)
                for d in range(n):
                    wd = w[d]
                    a0 += x0[d] * wd
                    a1 += x1[d] * wd
                    a2 += x2[d] * wd
                    a3 += x3[d] * wd
                S[r, c] += a0
                S[r + 1, c] += a1
                S[r + 2, c] += a2
                S[r + 3, c] += a3
                r += 4
            for r in range(r, m):
                x = xb[r, lo:lo + n]
                acc = np.float32(0)
                for d in range(n):
                    acc += x[d] * w[d]
                S[r, c] += acc


@njit(cache=True, error_model="numpy")
def _group_gradient(xb, m, dS, G):
    """G[c] += sum_r dS[r, c] xb[r] over the first m rows of the group."""
    C, D = G.shape
    if m == R:
        for k in range((D + CHUNK - 1) // CHUNK):
            lo = k * CHUNK
            n = min(CHUNK, D - lo)
            x0, x1, x2, x3 = xb[0, lo:lo + n], xb[1, lo:lo + n], xb[2, lo:lo + n], xb[3, lo:lo + n]
            x4, x5, x6, x7 = xb[4, lo:lo + n], xb[5, lo:lo + n], xb[6, lo:lo + n], xb[7, lo:lo + n]
            for c in range(C):
                g = G[c, lo:lo + n]
                a0, a1, a2, a3 = dS[0, c], dS[1, c], dS[2, c], dS[3, c]
                a4, a5, a6, a7 = dS[4, c], dS[5, c], dS[6, c], dS[7, c]
                for d in range(n):
                    g[d] += (a0 * x0[d] + a1 * x1[d] + a2 * x2[d] + a3 * x3[d]
                             + a4 * x4[d] + a5 * x5[d] + a6 * x6[d] + a7 * x7[d])
    else:
        for r in range(m):
            x = xb[r]
            for c in range(C):
                a = dS[r, c]
                g = G[c]
                for d in range(D):
                    g[d] += a * x[d]


@njit(parallel=True, cache=True, error_model="numpy")
def _loss_grad_rows(X, idx, y, W, b, kind, delta, reg, n_threads, G, dW, db):
    """Mean data loss over rows idx, and reg * sum(W^2); dW <- the data gradient + 2 reg W, db <- the
    bias gradient. Thread t accumulates its rows' share in G[t]; the shares are summed in thread order
    while being written to dW in W's (D, C) layout."""
    n = idx.shape[0]
    D, C = W.shape
    # Class-major weights, so that the dot products run over contiguous features. Here and in the
    # epilogue the loops run class-outer: feature-outer, the same copies took 5x longer.
    Wt = np.empty((C, D), np.float32)
    for c in range(C):
        for d in range(D):
            Wt[c, d] = W[d, c]
    inv_n = np.float32(1.0 / n)
    per = (n + n_threads - 1) // n_threads
    losses = np.zeros(n_threads)
    gbs = np.zeros((n_threads, C), np.float32)
    for t in prange(n_threads):
        G[t, :, :] = 0
        gbt = np.zeros(C, np.float32)  # local: threads writing one shared cache line per row would bounce it
        xb = np.empty((R, D), np.float32)
        S = np.empty((R, C), np.float32)
        dS = np.empty((R, C), np.float32)
        s = np.empty(C, np.float32)
        total = 0.0
        for lo in range(t * per, min(n, (t + 1) * per), R):
            hi = min(min(n, (t + 1) * per), lo + R)
            m = hi - lo
            for r in range(m):
                xb[r, :] = X[idx[lo + r], :]
            _group_scores(xb, m, Wt, S)
            for r in range(m):
                for c in range(C):
                    s[c] = S[r, c] + b[c]
                total += _row_loss(s, y[lo + r], kind, delta, inv_n, dS[r])
                for c in range(C):
                    gbt[c] += dS[r, c]
            _group_gradient(xb, m, dS, G[t])
        losses[t] = total
        gbs[t, :] = gbt
    for t in range(1, n_threads):
        for c in range(C):
            G0, Gt = G[0, c], G[t, c]
            for d in range(D):
                G0[d] += Gt[d]
    two_reg = np.float32(2 * reg)
    for c in range(C):
        G0 = G[0, c]
        for d in range(D):
            dW[d, c] = G0[d] + two_reg * W[d, c]
    for c in range(C):
        g = gbs[0, c]
        for t in range(1, n_threads):
            g += gbs[t, c]
        db[c] = g
    return losses.sum() / n, reg * _sum_sq(W.ravel())


def loss_grad_rows(X, idx, y, W, b, kind: int, delta: float, reg: float, G, dW, db) -> tuple[float, float]:
    """Private entry point for imgclf.linear (which validates): X (N, D) float32 C-contiguous, idx int64,
    y int64 labels of the rows idx, W (D, C) C-contiguous and b (C,) float32, G (T, C, D) float32 work
    space for T threads, dW (D, C) and db (C,) float32 outputs. Returns (mean data loss, reg * sum W^2)."""
    import numba

    n_threads = min(G.shape[0], numba.get_num_threads(), max(1, len(idx) // (4 * R)))
    data, penalty = _loss_grad_rows(X, idx, y, W, b, kind, np.float32(delta), float(reg), n_threads, G, dW, db)
    return float(data), float(penalty)
