"""Exact Gram matrix X^T X of 8-bit data with AVX-512 VNNI `vpdpbusd`, chosen at run time.

`vpdpbusd` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four products into
one of 16 int32 lanes: 64 multiply-adds per instruction, four times a float32 FMA's 16, and exact.
Pixels x are unsigned; the signed side is y = x - 128 (x XOR 0x80), and
    sum_n x_ni x_nj = sum_n x_ni y_nj + 128 sum_n x_ni,
so the Gram matrix is the integer product P = X^T Y plus 128 times the column sums.

Layout: the rows are packed four at a time, so that a 32-bit word holds the four samples n..n+3 of one
feature (`pack_u8`): W[k, j] = bytes x[4k:4k+4, j]. One word of feature i broadcast to 16 lanes against
16 consecutive words of features j..j+15 then accumulates 4 samples of 16 entries P[i, j..j+15].
The micro-tile is MI rows x NV vectors (6 x 4 = 24 zmm accumulators, 4 vectors of y, 1 broadcast: 29 of
the 32 registers); the row stride of W is padded by one cache line so the kc rows of a tile's
column panel fall into different L1 sets instead of thrashing one.

Floats that are pixels minus a per-feature constant (a mean-subtracted stream of pixels) are shifted
back by their column minima while packing, exactly: a covariance does not change under a shift.

The portable path is the float32 covariance in `imgclf.eigen`; this one runs only when the CPU has
AVX-512 VNNI and numba is compiling (an LLVM intrinsic cannot run interpreted).
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .simd import counted_loop, target_has

MI = 6  # rows of P per micro-tile
NV = 4  # 16-lane vectors of P per micro-tile row
NC = 16 * NV  # columns of P per tile
KC = 512  # packed rows (4 samples each) per pass over a tile's column panel: 128 KB, stays in L2
# P's int32 entries grow by at most 255 * 128 per sample: 65536 samples stay below 2**31.
MAX_SAMPLES = 65536


@functools.cache
def has_vnni() -> bool:
    """True when the CPU numba compiles for has AVX-512 VNNI and BW (see `simd.target_has`)."""
    return target_has("avx512vnni", "avx512bw")


def padded_width(d: int) -> int:
    """Words per packed row: the columns rounded up to whole tiles, plus one cache line (16 words)."""
    return -(-d // NC) * NC + 16


@njit(parallel=True, cache=True)
def pack_u8(X, offset, W8):
    """Pack X - offset for `_gram_tiles`: feature j of samples 4k..4k+3 to word j + 1 of W8's row k,
    zero past the last sample and in the padding; word 0 is the ones column (bytes 129, y = 1), whose
    products P[i + 1, 0] are the column sums. X is uint8 (offset None), or floats whose values minus
    the per-feature offset (None: 0) are integers 0..255 — checked: False if any value is not, W8 then
    unusable. Written in parallel, so the pages of a fresh W8 are also first touched by both threads."""
    n, d = X.shape
    n4 = W8.shape[0]
    ok = np.ones(n4, dtype=np.bool_)
    for k in prange(n4):
        W8[k, :4] = 129
        W8[k, 4 * (d + 1):] = 0
        for t in range(4):
            row = 4 * k + t
            if row < n:
                for j in range(d):
                    v = X[row, j]
                    if offset is not None:
                        v = np.float64(v) - offset[j]  # exact: both are float32 values
                    b = np.uint8(0)
                    if v >= 0 and v <= 255:  # converting anything else to uint8 is undefined
                        b = np.uint8(v)
                    if b != v:
                        ok[k] = False
                    W8[k, 4 * (j + 1) + t] = b
            else:
                for j in range(d):
                    W8[k, 4 * (j + 1) + t] = 0
    return ok.all()


@njit(parallel=True, cache=True)
def _column_min(X):
    """Per-column minimum in float64 (NaN ignored: the packing check refuses it anyway)."""
    n, d = X.shape
    parts = 16
    mins = np.full((parts, d), np.inf)
    for p in prange(parts):
        for i in range(p * n // parts, (p + 1) * n // parts):
            for j in range(d):
                v = np.float64(X[i, j])
                if v < mins[p, j]:
                    mins[p, j] = v
    out = mins[0].copy()
    for p in range(1, parts):
        for j in range(d):
            out[j] = min(out[j], mins[p, j])
    return out


@intrinsic
def _dpbusd_tile(typingctx, W, k0, nsteps, i0, j0, P):
    """P[i0+r, j0+c] += sum over packed rows k0..k0+nsteps-1 of dot4(u8 W[k, i0+r], s8 (W[k, j0+c] ^ 0x80)),
    for r < MI, c < NC (rows of W and P C-contiguous)."""
    sig = types.void(W, k0, nsteps, i0, j0, P)

    def codegen(context, builder, signature, args):
        wa, k0v, nv, i0v, j0v, pa = args
        w_t, p_t = signature.args[0], signature.args[5]
        warr = context.make_array(w_t)(context, builder, wa)
        parr = context.make_array(p_t)(context, builder, pa)
        i64, i32, i8 = ir.IntType(64), ir.IntType(32), ir.IntType(8)
        v16 = ir.VectorType(i32, 16)
        mod = builder.module
        # Declared with three <16 x i32>, the form every LLVM since VNNI accepts (LLVM 21+ also takes
        # <64 x i8> byte operands and upgrades this one to it).
        name = "llvm.x86.avx512.vpdpbusd.512"
        dp = mod.globals.get(name) or ir.Function(mod, ir.FunctionType(v16, [v16, v16, v16]), name)

        wbase = builder.bitcast(warr.data, i8.as_pointer())
        wstride = builder.extract_value(warr.strides, 0)
        four = ir.Constant(i64, 4)
        flip = ir.Constant(v16, [ir.Constant(i32, 0x80808080 - 2**32)] * 16)
        undef = ir.Constant(v16, ir.Undefined)
        splat_mask = ir.Constant(ir.VectorType(i32, 16), [ir.Constant(i32, 0)] * 16)

        def step(k, carried):
            row, accs = carried[0], carried[1:]  # row: W's row k0 + k
            ys = []
            for v in range(NV):
                col = builder.mul(builder.add(j0v, ir.Constant(i64, 16 * v)), four)
                ptr = builder.bitcast(builder.gep(row, [col]), v16.as_pointer())
                ys.append(builder.xor(builder.load(ptr, align=4), flip))
            new = []
            for r in range(MI):
                col = builder.mul(builder.add(i0v, ir.Constant(i64, r)), four)
                word = builder.load(builder.bitcast(builder.gep(row, [col]), i32.as_pointer()), align=4)
                xs = builder.shuffle_vector(builder.insert_element(undef, word, ir.Constant(i32, 0)), undef,
                                            splat_mask)
                for v in range(NV):
                    new.append(builder.call(dp, [accs[r * NV + v], xs, ys[v]]))
            return [builder.gep(row, [wstride])] + new

        row0 = builder.gep(wbase, [builder.mul(k0v, wstride)])
        finals = counted_loop(builder, nv, [row0] + [ir.Constant(v16, None)] * (MI * NV), step)[1:]
        pbase = builder.bitcast(parr.data, i8.as_pointer())
        pstride = builder.extract_value(parr.strides, 0)
        for r in range(MI):
            prow = builder.gep(pbase, [builder.mul(builder.add(i0v, ir.Constant(i64, r)), pstride)])
            for v in range(NV):
                col = builder.mul(builder.add(j0v, ir.Constant(i64, 16 * v)), four)
                ptr = builder.bitcast(builder.gep(prow, [col]), v16.as_pointer())
                builder.store(builder.add(builder.load(ptr, align=4), finals[r * NV + v]), ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(parallel=True, cache=True)
def _gram_tiles(W, P, d):
    """P (int32, zeroed, at least d rounded up to MI rows and to NC columns) += X^T Y on the tiles that
    cover the lower triangle. Tiles pair up (t, last - t) so both threads get equal shares of it."""
    n4 = W.shape[0]
    tiles = -(-d // NC)
    rows = -(-d // MI) * MI
    for pair in prange((tiles + 1) // 2):
        p = np.int64(pair)  # prange's index may be unsigned: int64 - uint64 would be a float
        for side in range(2):
            t = p if side == 0 else tiles - 1 - p
            if side == 1 and t == p:
                break
            j0 = t * NC
            first = (j0 // MI) * MI
            for k0 in range(0, n4, KC):
                steps = min(KC, n4 - k0)
                for i0 in range(first, rows, MI):
                    _dpbusd_tile(W, k0, steps, i0, j0, P)


@njit(parallel=True, cache=True)
def _accumulate(P, G):
    """G[i, j] += the chunk's exact Gram entry sum_n x_ni x_nj = P[i+1, j+1] + 128 sum_n x_ni (j <= i),
    and G's last row += the chunk's column sums P[i+1, 0]."""
    d = G.shape[1]
    for i in prange(d):
        shift = 128 * np.int64(P[i + 1, 0])
        for j in range(i + 1):
            G[i, j] += P[i + 1, j + 1] + shift
        G[d, i] += P[i + 1, 0]


@njit(parallel=True, cache=True)
def _covariance(G, P, n, cov):
    """cov = (n S - s s^T) / (n (n - 1)) from the Gram matrix S and column sums s of the samples in G
    (accumulated chunks, or none: zero rows) plus those in P (the last chunk), both triangles written.
    The integer numerator is exact; its conversion to float64 (once beyond 2^53, from about 0.7M
    samples) and the division are the only roundings."""
    d = cov.shape[0]
    sums = np.empty(d, dtype=np.int64)
    for i in range(d):
        sums[i] = np.int64(P[i + 1, 0]) + (G[d, i] if G.shape[0] else 0)
    scale = np.float64(n) * np.float64(n - 1)
    for i in prange(d):
        shift = 128 * np.int64(P[i + 1, 0])
        for j in range(i + 1):
            gram = np.int64(P[i + 1, j + 1]) + shift + (G[i, j] if G.shape[0] else 0)
            cov[i, j] = np.float64(n * gram - sums[i] * sums[j]) / scale
    blocks = -(-d // 64)
    for ib in prange(blocks):  # mirror in 64 x 64 blocks, so the transposed writes stay in cache
        for jb in range(ib + 1):
            for i in range(ib * 64, min(d, ib * 64 + 64)):
                for j in range(jb * 64, min(i, jb * 64 + 64)):
                    cov[j, i] = cov[i, j]
    return sums


def _offset(X: np.ndarray, rows: int = 16):
    """(whether X is pixels, what to subtract from it to get them): None for uint8 and for floats holding
    integers 0..255; the column minima for floats that are pixels minus a per-feature constant (pixels
    minus a mean kept on a 2^-16 grid, as `MeanSubtraction` keeps it for uint8 input, are such floats,
    exactly). A look at the first rows decides, so other float data is turned away before the minima
    or the packed copy cost anything; the packing pass then checks every value."""
    if X.dtype == np.uint8:
        return True, None
    head = X[:rows].astype(np.float64)
    if np.all((head >= 0) & (head <= 255) & (head == np.round(head))):
        return True, None
    if not np.all(np.isfinite(head)):
        return False, None
    steps = head - head[0]
    if np.all((np.abs(steps) <= 255) & (steps == np.round(steps))):
        return True, _column_min(X)
    return False, None


# Native-order dtypes the packing kernel is compiled for; anything else (float16, big-endian, ...) takes
# the float path rather than a numba typing error or another compilation.
_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))

# n S - s s^T must stay within int64: n^2 * 255^2 < 2^63.
MAX_ROWS = 10_000_000


def covariance_u8(X: np.ndarray, max_samples: int = MAX_SAMPLES):
    """(the (d, d) sample covariance, divided by n - 1, in float64; the mean, float64) of the rows of X:
    a 2-D array of uint8, or of floats that hold integers 0..255 or such integers minus a per-feature
    constant (the covariance does not change under a shift, and the integers give it exactly) — or
    None when the values are not of that form, there are fewer than 2 rows or too many, or the CPU
    lacks VNNI."""
    if not has_vnni() or X.ndim != 2 or X.dtype not in _DTYPES or not 2 <= X.shape[0] <= MAX_ROWS:
        return None
    pixels, shift = _offset(X)
    if not pixels:
        return None
    n, d = X.shape
    width = padded_width(d + 1)
    chunk = max(4, min(max_samples, MAX_SAMPLES, n) // 4 * 4)
    W8 = np.empty((-(-chunk // 4), 4 * width), dtype=np.uint8)
    P = np.empty((-(-(d + 1) // MI) * MI, width), dtype=np.int32)
    G = np.zeros((d + 1, d) if n > chunk else (0, 0), dtype=np.int64)
    for start in range(0, n, chunk):
        block = X[start:start + chunk]
        W = W8[:-(-len(block) // 4)]
        if not pack_u8(block, shift, W):
            return None
        P[:] = 0
        _gram_tiles(W.view(np.uint32), P, d + 1)
        if start + chunk < n:
            _accumulate(P, G)
    cov = np.empty((d, d), dtype=np.float64)
    sums = _covariance(G, P, n, cov)
    return cov, sums / n + (0.0 if shift is None else shift)
