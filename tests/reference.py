"""Naive loop references for kernels, losses and layers: slow, obvious, and what the fast code is tested against.

Shared by every helper: add a section for your functions, leave the others' alone.
"""

from __future__ import annotations

import math

import numpy as np


# -- linear classifier losses (imgclf.losses, imgclf.linear) ---------------------------------------------

def svm_loss_naive(W, X, y, reg, delta=1.0, squared=False, bias_row=False):
    """Multiclass hinge + reg * sum(W^2) with loops, CS231n style; W is (D, C) or (D+1, C) with the bias
    as its last row when `bias_row` (then X is (N, D) and the bias row is not penalised)."""
    n, d = X.shape
    c = W.shape[1]
    dW = np.zeros(W.shape, dtype=np.float64)
    loss = 0.0
    for i in range(n):
        x = [float(v) for v in X[i]] + ([1.0] if bias_row else [])
        scores = [sum(x[k] * float(W[k, j]) for k in range(len(x))) for j in range(c)]
        for j in range(c):
            if j == y[i]:
                continue
            margin = scores[j] - scores[y[i]] + delta
            if margin > 0:
                loss += margin * margin if squared else margin
                slope = 2 * margin if squared else 1.0
                for k in range(len(x)):
                    dW[k, j] += slope * x[k]
                    dW[k, y[i]] -= slope * x[k]
    loss /= n
    dW /= n
    rows = d if bias_row else W.shape[0]
    for k in range(rows):
        for j in range(c):
            loss += reg * float(W[k, j]) ** 2
            dW[k, j] += 2 * reg * float(W[k, j])
    return loss, dW


def softmax_loss_naive(W, X, y, reg, bias_row=False):
    """Softmax cross-entropy + reg * sum(W^2) with loops, with the max-shift; same layout as svm_loss_naive."""
    n, d = X.shape
    c = W.shape[1]
    dW = np.zeros(W.shape, dtype=np.float64)
    loss = 0.0
    for i in range(n):
        x = [float(v) for v in X[i]] + ([1.0] if bias_row else [])
        scores = [sum(x[k] * float(W[k, j]) for k in range(len(x))) for j in range(c)]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        loss += -(scores[y[i]] - top) + math.log(total)
        for j in range(c):
            p = exps[j] / total
            for k in range(len(x)):
                dW[k, j] += (p - (j == y[i])) * x[k]
    loss /= n
    dW /= n
    rows = d if bias_row else W.shape[0]
    for k in range(rows):
        for j in range(c):
            loss += reg * float(W[k, j]) ** 2
            dW[k, j] += 2 * reg * float(W[k, j])
    return loss, dW


# -- k-nearest neighbours (imgclf.kernels.distances, imgclf.kernels.topk, imgclf.neighbors) -------------

def knn_distances_naive(Xq, Y, metric):
    """Exact pairwise distances by explicit loops over rows: squared L2 or L1, in Python ints for
    integer data (no rounding at all) and float64 otherwise."""
    exact = np.issubdtype(np.asarray(Xq).dtype, np.integer)
    out = np.empty((len(Xq), len(Y)), dtype=np.float64)
    for i, x in enumerate(Xq):
        xv = [int(v) for v in x] if exact else [float(v) for v in x]
        for j, y in enumerate(Y):
            yv = [int(v) for v in y] if exact else [float(v) for v in y]
            if metric == "l2":
                out[i, j] = sum((a - b) * (a - b) for a, b in zip(xv, yv))
            else:
                out[i, j] = sum(abs(a - b) for a, b in zip(xv, yv))
    return out


def knn_select_naive(dist, k):
    """The k nearest per row by a full sort on (distance, index): ties go to the lower index."""
    order = [sorted(range(len(row)), key=lambda j: (row[j], j))[:k] for row in dist]
    idx = np.array(order, dtype=np.int64).reshape(len(dist), k)
    return np.take_along_axis(np.asarray(dist), idx, 1), idx


def knn_vote_naive(neighbor_labels):
    """Majority label of each row; a tie goes to the smallest label."""
    out = []
    for row in neighbor_labels:
        counts = {}
        for lab in row:
            counts[lab] = counts.get(lab, 0) + 1
        best = max(counts.values())
        out.append(min(lab for lab, c in counts.items() if c == best))
    return np.array(out)


def knn_predict_naive(Xtr, ytr, Xq, k, metric):
    _, idx = knn_select_naive(knn_distances_naive(Xq, Xtr, metric), k)
    return knn_vote_naive(np.asarray(ytr)[idx])
