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
