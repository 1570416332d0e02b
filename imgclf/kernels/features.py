"""Kernels of the classic image features: HOG cells and blocks, colour histograms, and the patch and
triangle-pooling steps around the k-means feature GEMM (imgclf.hog, imgclf.colorhist, imgclf.kmeans_features).

All take NHWC images of any real dtype (uint8 pixels or float) and write into float32 outputs the caller
allocated. They run serially and release the GIL (`nogil=True`): the callers hand image blocks to one
Python thread per core, each with a one-thread BLAS for its GEMMs, so the whole extraction runs on every
core and the result does not depend on timing. `error_model="numpy"` lets LLVM vectorise (no
ZeroDivisionError checks).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# -- HOG ---------------------------------------------------------------------------------------------
NORMS = {"none": 0, "l1": 1, "l1sqrt": 2, "l2": 3, "l2hys": 4}
_HOG_EPS = 1e-3  # keeps flat (gradient-free) blocks at zero instead of 0/0


@njit(cache=True, nogil=True, error_model="numpy")
def _hog_cells(images, cell, bins, signed, out):
    """out[n, cy, cx, b] = sum of gradient magnitudes in cell (cy, cx) voting for orientation bin b.

    Grey level 0.299 R + 0.587 G + 0.114 B; centred differences [-1, 0, 1] inside the image and zero
    gradient on its border rows and columns; each pixel's magnitude is split linearly between the two
    orientation bins nearest its angle (bin centres at (b + 1/2) * range / bins, wrapping around).
    """
    n, h, w, c = images.shape
    ncy, ncx = out.shape[1], out.shape[2]
    span = 2 * math.pi if signed else math.pi
    gray = np.empty((h, w), dtype=np.float32)
    for i in range(n):
        for y in range(h):
            for x in range(w):
                if c == 3:
                    gray[y, x] = (np.float32(0.299) * np.float32(images[i, y, x, 0])
                                  + np.float32(0.587) * np.float32(images[i, y, x, 1])
                                  + np.float32(0.114) * np.float32(images[i, y, x, 2]))
                else:
                    gray[y, x] = np.float32(images[i, y, x, 0])
        hist = out[i]
        hist[:] = 0
        for y in range(ncy * cell):
            for x in range(ncx * cell):
                gx = np.float32(0.0)
                gy = np.float32(0.0)
                if 0 < x < w - 1:
                    gx = gray[y, x + 1] - gray[y, x - 1]
                if 0 < y < h - 1:
                    gy = gray[y + 1, x] - gray[y - 1, x]
                mag = math.sqrt(gx * gx + gy * gy)
                if mag == 0:
                    continue
                angle = math.atan2(gy, gx)
                if angle < 0:
                    angle += span  # signed: [0, 2 pi); unsigned: pi is added or atan2 was already >= 0
                if angle >= span:
                    angle -= span
                t = angle / span * bins - 0.5
                lo = int(math.floor(t))
                frac = t - lo
                b0 = lo % bins
                b1 = (lo + 1) % bins
                cy, cx = y // cell, x // cell
                hist[cy, cx, b0] += np.float32(mag * (1 - frac))
                hist[cy, cx, b1] += np.float32(mag * frac)


@njit(cache=True, nogil=True, error_model="numpy")
def _hog_blocks(cells, block, norm, out):
    """out[n] = every block of block x block cells (stride one cell), each normalised on its own.

    norm: 1 l1 (v / (|v|_1 + eps)), 2 l1sqrt (its square root), 3 l2 (v / sqrt(|v|^2 + eps^2)), 4 l2hys
    (l2, clipped at 0.2, l2 again).
    """
    n, ncy, ncx, bins = cells.shape
    size = block * block * bins
    eps = np.float32(_HOG_EPS)
    for i in range(n):
        k = 0
        for by in range(ncy - block + 1):
            for bx in range(ncx - block + 1):
                v = out[i, k:k + size]
                j = 0
                for dy in range(block):
                    for dx in range(block):
                        for b in range(bins):
                            v[j] = cells[i, by + dy, bx + dx, b]
                            j += 1
                if norm == 1 or norm == 2:
                    s = np.float32(0.0)
                    for j in range(size):
                        s += abs(v[j])
                    for j in range(size):
                        v[j] = v[j] / (s + eps)
                        if norm == 2:
                            v[j] = math.sqrt(v[j])
                else:
                    rounds = 2 if norm == 4 else 1
                    for r in range(rounds):
                        s = np.float32(0.0)
                        for j in range(size):
                            s += v[j] * v[j]
                        scale = np.float32(1.0) / math.sqrt(s + eps * eps)
                        for j in range(size):
                            v[j] = v[j] * scale
                            if norm == 4 and r == 0 and v[j] > 0.2:
                                v[j] = np.float32(0.2)
                k += size


# -- colour histograms --------------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def _color_hist(images, bins, hsv, out):
    """out[n] = the fraction of pixels in each of `bins` equal-width hue bins (hsv: then saturation and value).

    Hue, saturation and value as matplotlib's rgb_to_hsv defines them (grey pixels have hue 0), value
    on the 0..255 scale. Each bin index is floor(numerator * bins / denominator) of a ratio of pixel
    differences, computed in float64 where 8-bit pixels make it exact: a hue on a bin edge (e.g. 0.3
    for 10 bins) lands in the upper bin, whatever rounding a hue computed first would have done.
    """
    n, h, w, _ = images.shape
    inv = np.float32(1.0 / (h * w))
    for i in range(n):
        hist = out[i]
        hist[:] = 0
        for y in range(h):
            for x in range(w):
                r = np.float64(images[i, y, x, 0])
                g = np.float64(images[i, y, x, 1])
                b = np.float64(images[i, y, x, 2])
                hi = max(r, g, b)
                delta = hi - min(r, g, b)
                hue_bin = 0
                if delta > 0:
                    if r == hi:
                        num = g - b
                    elif g == hi:
                        num = 2 * delta + b - r
                    else:
                        num = 4 * delta + r - g
                    if num < 0:
                        num += 6 * delta
                    hue_bin = _bin(num * bins, 6 * delta, bins)
                hist[hue_bin] += inv
                if hsv:
                    hist[bins + (_bin(delta * bins, hi, bins) if hi > 0 else 0)] += inv
                    hist[2 * bins + _bin(hi * bins, 255.0, bins)] += inv


@njit(cache=True, inline="always")
def _bin(scaled, denominator, bins):
    """floor(scaled / denominator) clamped to 0..bins-1 (a value of exactly 1 falls in the last bin)."""
    return min(max(int(math.floor(scaled / denominator)), 0), bins - 1)


# -- k-means features -----------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _normalise_patch(row, eps):
    """In place: subtract the patch mean, divide by sqrt(variance + eps) (unbiased variance, Coates et al.)."""
    d = row.shape[0]
    s = np.float32(0.0)
    for j in range(d):
        s += row[j]
    mean = s / np.float32(d)  # float32 / int64 would be float64: keep the arithmetic in float32
    ss = np.float32(0.0)
    for j in range(d):
        row[j] -= mean
        ss += row[j] * row[j]
    scale = np.float32(1.0) / np.float32(math.sqrt(ss / np.float32(d - 1) + eps))
    for j in range(d):
        row[j] *= scale


@njit(cache=True, nogil=True, error_model="numpy")
def _copy_patch(images, i, y, x, p, row):
    c = images.shape[3]
    j = 0
    for dy in range(p):
        for dx in range(p):
            for ch in range(c):
                row[j] = np.float32(images[i, y + dy, x + dx, ch])
                j += 1


@njit(cache=True, nogil=True, error_model="numpy")
def _sampled_patches(images, index, ys, xs, p, eps, out):
    """out[t] = the normalised p x p patch of image index[t] at (ys[t], xs[t]), values ordered (dy, dx, c)."""
    for t in range(len(index)):
        _copy_patch(images, index[t], ys[t], xs[t], p, out[t])
        _normalise_patch(out[t], eps)


@njit(cache=True, nogil=True, error_model="numpy")
def _dense_patches(images, p, stride, eps, out):
    """out[(i * rows + r) * cols + q] = the normalised patch of image i at (r * stride, q * stride)."""
    n, h, w, _ = images.shape
    rows = (h - p) // stride + 1
    cols = (w - p) // stride + 1
    t = 0
    for i in range(n):
        for r in range(rows):
            for q in range(cols):
                _copy_patch(images, i, r * stride, q * stride, p, out[t])
                _normalise_patch(out[t], eps)
                t += 1


@njit(cache=True, nogil=True, error_model="numpy")
def _triangle_pool(products, white, c2, rows, cols, t0, out):
    """Add the triangle activations max(0, mean_k(z) - z_k) of a run of patches into their quadrants.

    products: (m, K) whitened patches times centroids for the patches t0 .. t0 + m - 1 of a block of
    images (patch t = (i * rows + r) * cols + q: image i, position (r, q)); white: those whitened patches
    (their squared norms); c2: squared centroid norms. z_k = sqrt(|x|^2 - 2 x.c_k + |c_k|^2) is the
    distance of patch x to centroid k. out (images of the block, 4K), zeroed by the caller: quadrant
    (top-left, top-right, bottom-left, bottom-right) in out[:, q K:(q + 1) K]; the top and left halves
    take the middle row and column when the count is odd. The caller hands in row chunks small enough
    that products is still in cache between the GEMM that writes it and this pass.

    The distance and activation loops have no reduction and no branch, and every operand is float32
    (a bare 2 or a division by K would widen them to float64, half the vector lanes and the slow
    double sqrt), so LLVM vectorises them at 16 lanes; the mean is summed in 8 independent partial
    sums, which keeps the one serial reduction from setting the pace (in a fixed order, whatever the
    data).
    """
    k = c2.shape[0]
    per_image = rows * cols
    half_r = (rows + 1) // 2
    half_c = (cols + 1) // 2
    z = np.empty(k, dtype=np.float32)
    zero = np.float32(0.0)
    two = np.float32(2.0)
    inv_k = np.float32(1.0) / np.float32(k)
    for u in range(products.shape[0]):
        t = t0 + u
        i = t // per_image
        r = (t - i * per_image) // cols
        q = t - i * per_image - r * cols
        x2 = np.float32(0.0)
        for j in range(white.shape[1]):
            x2 += white[u, j] * white[u, j]
        prod = products[u]
        for j in range(k):
            z[j] = np.sqrt(max(x2 + c2[j] - two * prod[j], zero))
        mean = _sum8(z) * inv_k
        base = ((r >= half_r) * 2 + (q >= half_c)) * k
        dst = out[i, base:base + k]
        for j in range(k):
            dst[j] += max(mean - z[j], zero)


@njit(cache=True, inline="always")
def _sum8(v):
    """Sum of a float32 vector in 8 interleaved partial sums (a fixed order, independent of the data)."""
    s = np.zeros(8, dtype=np.float32)
    m = v.shape[0] - v.shape[0] % 8
    for j in range(0, m, 8):
        for u in range(8):
            s[u] += v[j + u]
    total = np.float32(0.0)
    for u in range(8):
        total += s[u]
    for j in range(m, v.shape[0]):
        total += v[j]
    return total


@njit(cache=True, nogil=True, error_model="numpy")
def _assign_accumulate(scores, x, labels, sums, counts):
    """k-means step for a block: label = argmax_k scores (x.c_k - |c_k|^2 / 2), add x to its cluster's sum.

    Returns the block's sum of max scores (the caller turns it into the distortion)."""
    best_total = 0.0
    for t in range(scores.shape[0]):
        row = scores[t]
        best = 0
        for j in range(1, row.shape[0]):
            if row[j] > row[best]:
                best = j
        labels[t] = best
        best_total += row[best]
        counts[best] += 1
        for j in range(x.shape[1]):
            sums[best, j] += x[t, j]
    return best_total
