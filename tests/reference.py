"""Naive loop references for kernels, losses and layers: slow, obvious, and what the fast code is tested against.

Shared by every helper: add a section for your functions, leave the others' alone.
"""

from __future__ import annotations

import math

import numpy as np


# -- linear classifier losses (imgclf.losses, imgclf.linear) ---------------------------------------------

def _mean_plus_penalty(loss, dW, n, W, reg, rows):
    """(loss / n + reg * sum of W[:rows]^2, dW / n + its gradient): the naive losses' common ending."""
    loss /= n
    dW /= n
    for k in range(rows):
        for j in range(W.shape[1]):
            loss += reg * float(W[k, j]) ** 2
            dW[k, j] += 2 * reg * float(W[k, j])
    return loss, dW


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
    return _mean_plus_penalty(loss, dW, n, W, reg, d if bias_row else W.shape[0])


def ovr_svm_loss_naive(W, X, y, reg, delta=1.0, squared=False, bias_row=False, sample_weight=None):
    """One-vs-rest hinge (sum over classes of max(0, delta - t_j s_j), t_j = +1 for the true class, -1
    otherwise; squared if asked) averaged with optional per-row weights, + reg * sum(W^2); layout as
    svm_loss_naive."""
    n, d = X.shape
    c = W.shape[1]
    dW = np.zeros(W.shape, dtype=np.float64)
    loss = 0.0
    for i in range(n):
        weight = 1.0 if sample_weight is None else float(sample_weight[i])
        x = [float(v) for v in X[i]] + ([1.0] if bias_row else [])
        for j in range(c):
            t = 1.0 if j == y[i] else -1.0
            score = sum(x[k] * float(W[k, j]) for k in range(len(x)))
            margin = delta - t * score
            if margin > 0:
                loss += weight * (margin * margin if squared else margin)
                slope = weight * (2 * margin if squared else 1.0)
                for k in range(len(x)):
                    dW[k, j] -= slope * t * x[k]
    return _mean_plus_penalty(loss, dW, n, W, reg, d if bias_row else W.shape[0])


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
    return _mean_plus_penalty(loss, dW, n, W, reg, d if bias_row else W.shape[0])


# -- fully-connected layers, fused kernels, optimisers, augmentation (imgclf.nn, imgclf.kernels.elementwise) --

def activation_naive(z, name, alpha=0.0):
    """Elementwise activation by the textbook formula, one value at a time."""
    out = np.empty(z.shape, dtype=np.float64)
    for idx, v in np.ndenumerate(z):
        v = float(v)
        if name == "identity":
            out[idx] = v
        elif name == "relu":
            out[idx] = max(v, 0.0)
        elif name == "leaky_relu":
            out[idx] = v if v > 0 else alpha * v
        elif name == "tanh":
            out[idx] = math.tanh(v)
        elif name == "sigmoid":
            out[idx] = 1.0 / (1.0 + math.exp(-v))
        elif name == "elu":
            out[idx] = v if v > 0 else alpha * (math.exp(v) - 1.0)
        elif name == "gelu":
            out[idx] = 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))
    return out


def activation_grad_naive(z, name, alpha=0.0):
    """d act / d z at z, by the textbook derivative (0 for ReLU at 0)."""
    out = np.empty(z.shape, dtype=np.float64)
    for idx, v in np.ndenumerate(z):
        v = float(v)
        if name == "identity":
            out[idx] = 1.0
        elif name == "relu":
            out[idx] = 1.0 if v > 0 else 0.0
        elif name == "leaky_relu":
            out[idx] = 1.0 if v > 0 else alpha
        elif name == "tanh":
            out[idx] = 1.0 - math.tanh(v) ** 2
        elif name == "sigmoid":
            s = 1.0 / (1.0 + math.exp(-v))
            out[idx] = s * (1 - s)
        elif name == "elu":
            out[idx] = 1.0 if v > 0 else alpha * math.exp(v)
        elif name == "gelu":
            out[idx] = 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi)
    return out


def bias_act_dropout_naive(z, b, name, alpha, u, keep):
    """(a, out): a = act(z + b); out = a * [u < keep] / keep (inverted dropout), u None for no dropout."""
    a = activation_naive(np.asarray(z, np.float64) + np.asarray(b, np.float64), name, alpha)
    if u is None:
        return a, a
    out = np.zeros_like(a)
    for i, j in np.ndindex(a.shape):
        if u[i, j] < keep:
            out[i, j] = a[i, j] / keep
    return a, out


def batchnorm_train_naive(x, gamma, beta, eps=1e-5):
    """Batch normalisation with the batch's own mean and (biased) variance, column by column."""
    n, d = x.shape
    out = np.empty((n, d))
    for j in range(d):
        col = [float(v) for v in x[:, j]]
        mu = sum(col) / n
        var = sum((v - mu) ** 2 for v in col) / n
        for i in range(n):
            out[i, j] = gamma[j] * (col[i] - mu) / math.sqrt(var + eps) + beta[j]
    return out


def optim_step_naive(name, w, dw, state, lr, **h):
    """One update of rule `name` on float64 copies, element by element; returns (w, state)."""
    w = np.array(w, np.float64)
    state = {k: (np.array(v, np.float64) if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    for k in ("velocity", "cache", "m", "v"):
        state.setdefault(k, np.zeros_like(w))
    state.setdefault("t", 0)
    state["t"] += 1
    t = state["t"]
    for i in np.ndindex(w.shape):
        g = float(dw[i])
        if name == "sgd":
            w[i] -= lr * g
        elif name == "momentum":
            state["velocity"][i] = h["momentum"] * state["velocity"][i] - lr * g
            w[i] += state["velocity"][i]
        elif name == "nesterov":
            prev = state["velocity"][i]
            state["velocity"][i] = h["momentum"] * prev - lr * g
            w[i] += -h["momentum"] * prev + (1 + h["momentum"]) * state["velocity"][i]
        elif name == "adagrad":
            state["cache"][i] += g * g
            w[i] -= lr * g / (math.sqrt(state["cache"][i]) + h["epsilon"])
        elif name == "rmsprop":
            state["cache"][i] = h["decay_rate"] * state["cache"][i] + (1 - h["decay_rate"]) * g * g
            w[i] -= lr * g / (math.sqrt(state["cache"][i]) + h["epsilon"])
        elif name == "adam":
            state["m"][i] = h["beta1"] * state["m"][i] + (1 - h["beta1"]) * g
            state["v"][i] = h["beta2"] * state["v"][i] + (1 - h["beta2"]) * g * g
            mhat = state["m"][i] / (1 - h["beta1"] ** t)
            vhat = state["v"][i] / (1 - h["beta2"] ** t)
            w[i] -= lr * mhat / (math.sqrt(vhat) + h["epsilon"])
    return w, state


def flip_crop_naive(X, flip, dy, dx, pad, reflect=False):
    """Mirror each image if `flip`, pad it with `pad` zeros (with `reflect`, by numpy's reflect padding),
    and crop the window at (dy, dx)."""
    n, h, w, c = X.shape
    out = np.zeros_like(X)
    for k in range(n):
        img = X[k, :, ::-1] if flip[k] else X[k]
        if reflect:
            padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        else:
            padded = np.zeros((h + 2 * pad, w + 2 * pad, c), X.dtype)
            padded[pad:pad + h, pad:pad + w] = img
        out[k] = padded[dy[k]:dy[k] + h, dx[k]:dx[k] + w]
    return out



def alternating_flips_naive(n, epoch_batches, drawn):
    """airbench's alternating flips by the definition, epoch by epoch: `epoch_batches[e]` lists the
    batches (training rows) of epoch e and `drawn[e][b]` the coin flips batch b drew (< 0.5 as bools).
    Epoch 0 flips a row by its coin; every later epoch flips each row exactly when the epoch before did
    not (a row no batch of epoch 0 drew was not flipped in it). Returns, per epoch and batch, the flags."""
    previous = [False] * n
    out = []
    for e, batches in enumerate(epoch_batches):
        if e == 0:
            current = [False] * n
            for rows, coins in zip(batches, drawn[0]):
                for row, coin in zip(rows, coins):
                    current[int(row)] = bool(coin)
        else:
            current = [not f for f in previous]
        out.append([[current[int(row)] for row in rows] for rows in batches])
        previous = current
    return out


def lookahead_naive(w0, grad, steps, lr, k, alpha, momentum=0.0, ema=None):
    """Lookahead (Zhang et al. 2019) around SGD or momentum (v = mu v - lr g; w += v) by the paper's
    algorithm, in float64 one value at a time: fast weights take k inner steps, then slow += alpha (fast -
    slow) and fast restarts from slow; the inner rule's velocity carries on. `grad(w)` is the gradient.
    With `ema` also the weight average of imgclf's Solver (decay min(ema, (1+t)/(10+t)) after step t) of
    the weights after each step. Returns (fast weights after each step, slow, average)."""
    fast = [float(v) for v in w0]
    slow = list(fast)
    vel = [0.0] * len(fast)
    avg = list(fast)
    trace = []
    for t in range(steps):
        g = [float(v) for v in grad(np.array(fast))]
        for i in range(len(fast)):
            vel[i] = momentum * vel[i] - lr * g[i]
            fast[i] += vel[i]
        if (t + 1) % k == 0:
            for i in range(len(fast)):
                slow[i] = slow[i] + alpha * (fast[i] - slow[i])
                fast[i] = slow[i]
        if ema is not None:
            d = min(ema, (1.0 + t) / (10.0 + t))
            avg = [d * a + (1 - d) * f for a, f in zip(avg, fast)]
        trace.append(list(fast))
    return np.array(trace), np.array(slow), np.array(avg)


def lookahead_ramp_naive(w0, grad, steps, steps_per_epoch, lr, k, momentum=0.0, lr_scale=1.0):
    """airbench's weight averaging ("K:ramp") around SGD or momentum, one value at a time in float64:
    after every k-th step t of the T = `steps` (t from 1) rho = 0.95**k * (t/T)**3, slow = slow + (1 - rho)
    (fast - slow), fast = slow; at the end of every epoch (each `steps_per_epoch` steps) fast = slow.
    `lr_scale` multiplies the rate of every weight. Returns (fast weights after each step, before an
    epoch's end copy, slow weights, the fast weights at the end)."""
    fast = [float(v) for v in w0]
    slow = list(fast)
    vel = [0.0] * len(fast)
    trace = []
    for t in range(1, steps + 1):
        g = [float(v) for v in grad(np.array(fast))]
        for i in range(len(fast)):
            vel[i] = momentum * vel[i] - lr * lr_scale * g[i]
            fast[i] += vel[i]
        if t % k == 0:
            rho = 0.95 ** k * (t / steps) ** 3
            for i in range(len(fast)):
                slow[i] = slow[i] + (1 - rho) * (fast[i] - slow[i])
                fast[i] = slow[i]
        trace.append(list(fast))
        if t % steps_per_epoch == 0:
            fast = list(slow)
    return np.array(trace), np.array(slow), np.array(fast)


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


# -- convolution and pooling on NHWC images (imgclf.kernels.im2col, .pool, .batchnorm, imgclf.nn.conv) ----

def _pad_nhwc(x, pad):
    return np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def conv_out_size_naive(size, field, stride, pad, dilation=1):
    return (size + 2 * pad - dilation * (field - 1) - 1) // stride + 1


def im2col_naive(x, kh, kw, stride=1, pad=0, dilation=1):
    """Row (n, i, j) holds the receptive field of output pixel (i, j) of image n, ordered (p, q, c)."""
    N, H, W, C = x.shape
    Ho = conv_out_size_naive(H, kh, stride, pad, dilation)
    Wo = conv_out_size_naive(W, kw, stride, pad, dilation)
    xp = _pad_nhwc(x, pad)
    rows = []
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                rows.append([xp[n, i * stride + p * dilation, j * stride + q * dilation, c]
                             for p in range(kh) for q in range(kw) for c in range(C)])
    return np.array(rows, dtype=x.dtype).reshape(N * Ho * Wo, kh * kw * C)


def conv_forward_naive(x, w, b, stride=1, pad=0, dilation=1):
    """out[n, i, j, f] = b[f] + sum_{p, q, c} xpad[n, i*S + p*D, j*S + q*D, c] * w[p, q, c, f], loops."""
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    Ho = conv_out_size_naive(H, KH, stride, pad, dilation)
    Wo = conv_out_size_naive(W, KW, stride, pad, dilation)
    xp = _pad_nhwc(x.astype(np.float64), pad)
    out = np.zeros((N, Ho, Wo, F))
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for f in range(F):
                    total = 0.0 if b is None else float(b[f])
                    for p in range(KH):
                        for q in range(KW):
                            for c in range(C):
                                total += xp[n, i * stride + p * dilation, j * stride + q * dilation, c] * w[p, q, c, f]
                    out[n, i, j, f] = total
    return out


def conv_backward_naive(dout, x, w, stride=1, pad=0, dilation=1):
    """(dx, dw, db) of conv_forward_naive by the chain rule, one multiply-add at a time."""
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    _, Ho, Wo, _ = dout.shape
    xp = _pad_nhwc(x.astype(np.float64), pad)
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    db = np.zeros(F)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for f in range(F):
                    g = dout[n, i, j, f]
                    db[f] += g
                    for p in range(KH):
                        for q in range(KW):
                            for c in range(C):
                                h, v = i * stride + p * dilation, j * stride + q * dilation
                                dw[p, q, c, f] += xp[n, h, v, c] * g
                                dxp[n, h, v, c] += w[p, q, c, f] * g
    return dxp[:, pad:pad + H, pad:pad + W, :], dw, db


def max_pool_forward_naive(x, size=2, stride=None):
    """Max over each size x size window every `stride` pixels, per image and channel."""
    stride = size if stride is None else stride
    N, H, W, C = x.shape
    Ho, Wo = (H - size) // stride + 1, (W - size) // stride + 1
    out = np.zeros((N, Ho, Wo, C), x.dtype)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    out[n, i, j, c] = max(x[n, i * stride + p, j * stride + q, c]
                                          for p in range(size) for q in range(size))
    return out


def max_pool_backward_naive(dout, x, size=2, stride=None):
    """The gradient goes to the first maximum of each window (row-major order), summed over windows."""
    stride = size if stride is None else stride
    N, Ho, Wo, C = dout.shape
    dx = np.zeros(x.shape, dout.dtype)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for c in range(C):
                    best, at = None, None
                    for p in range(size):
                        for q in range(size):
                            v = x[n, i * stride + p, j * stride + q, c]
                            if best is None or v > best:
                                best, at = v, (i * stride + p, j * stride + q)
                    dx[n, at[0], at[1], c] += dout[n, i, j, c]
    return dx


def spatial_batchnorm_train_naive(x, gamma, beta, eps=1e-5):
    """Per-channel statistics over (N, H, W), loops; returns (out, mean, biased var)."""
    N, H, W, C = x.shape
    mean = np.zeros(C)
    var = np.zeros(C)
    m = N * H * W
    for c in range(C):
        mean[c] = sum(float(v) for v in x[..., c].ravel()) / m
        var[c] = sum((float(v) - mean[c]) ** 2 for v in x[..., c].ravel()) / m
    out = np.empty(x.shape)
    for c in range(C):
        out[..., c] = gamma[c] * (x[..., c] - mean[c]) / math.sqrt(var[c] + eps) + beta[c]
    return out, mean, var


def bn_relu_pool_train_naive(x, gamma, beta, eps=1e-5):
    """Spatial batch norm, then ReLU, then 2x2 max pooling: the fused layer as its three naive parts."""
    out, mean, var = spatial_batchnorm_train_naive(x, gamma, beta, eps)
    return max_pool_forward_naive(np.maximum(out, 0), 2), mean, var


# -- classic image features (imgclf.hog, imgclf.colorhist, imgclf.kmeans_features, imgclf.kmeans) -----------

def hog_naive(images, cell=8, bins=9, block=2, norm="l2hys", signed=False):
    """HOG with plain loops: grey level, [-1, 0, 1] gradients (zero on the border), linear votes into the
    two nearest orientation bins, cell histograms, then blocks of cells normalised one by one."""
    n, h, w, c = images.shape
    span = 2 * math.pi if signed else math.pi
    ncy, ncx = h // cell, w // cell
    out = []
    for i in range(n):
        img = images[i].astype(np.float64)
        gray = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114 if c == 3 else img[..., 0]
        hist = np.zeros((ncy, ncx, bins))
        for y in range(ncy * cell):
            for x in range(ncx * cell):
                gx = gray[y, x + 1] - gray[y, x - 1] if 0 < x < w - 1 else 0.0
                gy = gray[y + 1, x] - gray[y - 1, x] if 0 < y < h - 1 else 0.0
                mag = math.hypot(gx, gy)
                if mag == 0:
                    continue
                angle = math.atan2(gy, gx) % span
                t = angle / span * bins - 0.5
                lo = math.floor(t)
                hist[y // cell, x // cell, lo % bins] += mag * (1 - (t - lo))
                hist[y // cell, x // cell, (lo + 1) % bins] += mag * (t - lo)
        if norm == "none":
            out.append(hist.ravel() / cell ** 2)
            continue
        feats = []
        for by in range(ncy - block + 1):
            for bx in range(ncx - block + 1):
                v = hist[by:by + block, bx:bx + block].ravel().copy()
                if norm in ("l1", "l1sqrt"):
                    v = v / (np.abs(v).sum() + 1e-3)
                    if norm == "l1sqrt":
                        v = np.sqrt(v)
                else:
                    v = v / math.sqrt((v ** 2).sum() + 1e-6)
                    if norm == "l2hys":
                        v = np.minimum(v, 0.2)
                        v = v / math.sqrt((v ** 2).sum() + 1e-6)
                feats.append(v)
        out.append(np.concatenate(feats))
    return np.array(out)


def color_hist_naive(images, bins=10, space="hue"):
    """Fractions of pixels per hue bin, then saturation and value bins for space='hsv': matplotlib's HSV
    definitions in exact rational arithmetic (a hue on a bin edge belongs to the upper bin)."""
    from fractions import Fraction

    n, h, w, _ = images.shape
    channels = 3 if space == "hsv" else 1
    out = np.zeros((n, channels * bins))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                r, g, b = (Fraction(int(v), 255) for v in images[i, y, x])
                hi, lo = max(r, g, b), min(r, g, b)
                hue = Fraction(0)
                if hi > lo:
                    d = hi - lo
                    hue = ((g - b) / d if r == hi else 2 + (b - r) / d if g == hi else 4 + (r - g) / d) / 6 % 1
                sat = (hi - lo) / hi if hi > 0 else Fraction(0)
                for ch, v in enumerate((hue, sat, hi)[:channels]):
                    out[i, ch * bins + min(math.floor(v * bins), bins - 1)] += 1.0 / (h * w)
    return out


def normalized_patch_naive(patch, eps):
    v = patch.astype(np.float64).ravel()
    return (v - v.mean()) / math.sqrt(v.var(ddof=1) + eps)


def kmeans_features_naive(images, centroids, zca_mean, zca_matrix, patch, stride, eps):
    """Coates et al.'s extraction with loops: every patch normalised, whitened ((x - mean) @ M), its
    distances to the centroids, triangle activations max(0, mean(z) - z_k), summed per quadrant."""
    n, h, w, _ = images.shape
    k = len(centroids)
    rows, cols = (h - patch) // stride + 1, (w - patch) // stride + 1
    out = np.zeros((n, 4 * k))
    for i in range(n):
        for r in range(rows):
            for q in range(cols):
                y, x = r * stride, q * stride
                v = normalized_patch_naive(images[i, y:y + patch, x:x + patch], eps)
                white = (v - zca_mean) @ zca_matrix
                z = np.array([np.linalg.norm(white - centroids[j]) for j in range(k)])
                act = np.maximum(z.mean() - z, 0)
                quadrant = (2 if r >= (rows + 1) // 2 else 0) + (1 if q >= (cols + 1) // 2 else 0)
                out[i, quadrant * k:(quadrant + 1) * k] += act
    return out


def kmeans_naive(X, centroids, iterations):
    """Lloyd's iterations from the given centroids with explicit distances (an empty cluster's centre is
    set to zero, as in Coates et al.'s run_kmeans.m)."""
    C = centroids.astype(np.float64).copy()
    for _ in range(iterations):
        labels = np.array([np.argmin([np.sum((x - c) ** 2) for c in C]) for x in X.astype(np.float64)])
        for j in range(len(C)):
            C[j] = X[labels == j].astype(np.float64).mean(axis=0) if np.any(labels == j) else 0.0
    return C


def bf16_round_naive(x):
    """float32 -> bfloat16 bits (uint16), one value at a time in Python integers: round to nearest, ties to
    even; NaN keeps its sign and upper payload with the quiet bit set."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).ravel()
    out = np.empty(bits.shape, np.uint16)
    for i, b in enumerate(bits.tolist()):
        if (b & 0x7FFFFFFF) > 0x7F800000:
            out[i] = (b >> 16) | 0x40
            continue
        keep, rest = b >> 16, b & 0xFFFF
        if rest > 0x8000 or (rest == 0x8000 and keep & 1):
            keep += 1
        out[i] = keep
    return out.reshape(np.shape(x))
