"""Convolution layer figures: forward and backward time per image, imgclf's numba im2col path against
a naive numpy loop, a numpy im2col baseline and the layer's bare GEMMs, all in this one run.

    python benchmarks/conv.py [--repeat 7] [--batch 50]

Layers (NHWC, 3x3 filters, stride 1, pad 1, float32, batch 50):
  - 3x32x32 input, 32 filters (the first layer of the default net);
  - 32x16x16 input, 64 filters (the default net's second convolution, after the 2x2 pool).
Implementations:
  - imgclf:   imgclf.nn.conv.conv_forward/conv_backward (numba im2col/col2im into reused buffers + BLAS GEMMs);
  - gemm:     the three GEMMs alone on ready-made operands (cols @ w; cols.T @ dout; dout @ w.T), the floor;
  - numpy:    stride-tricks im2col (one as_strided view, one copy) + GEMM; col2im by nine slice-adds
              (already ~4x faster than np.add.at);
  - loop:     a naive numpy loop over the output positions, each a (N, 27C) x (27C, F) product.
Each figure is the best of --repeat runs, reported in microseconds per image; the load average is
printed with the results. On cores shared with other busy processes, wall-clock times of anything
longer than a scheduler slice are inflated by however long the process waited; `--clock cpu` measures
the process's CPU time instead, which is the compute time when everything runs on one thread
(OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1; with more threads it sums them, spinning included).
Targets (issue 8): imgclf fwd+bwd within 3x of the GEMMs, and at least 3x faster than the numpy baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import imgclf  # noqa: F401 - first: its thread-spin defaults (imgclf/_threading.py) apply only before numpy and numba start their pools
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import load_average  # noqa: E402


CLOCK = time.perf_counter


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up: JIT caches, buffers, BLAS threads
    best = float("inf")
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best


# -- numpy baseline ------------------------------------------------------------------------------------
def np_im2col(x, K, pad):
    N, H, W, C = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    Ho, Wo = H + 2 * pad - K + 1, W + 2 * pad - K + 1
    s = xp.strides
    view = np.lib.stride_tricks.as_strided(xp, (N, Ho, Wo, K, K, C), (s[0], s[1], s[2], s[1], s[2], s[3]))
    return view.reshape(N * Ho * Wo, K * K * C)


def np_forward(x, w, b, pad):
    K, _, C, F = w.shape
    cols = np_im2col(x, K, pad)
    N, H, W, _ = x.shape
    out = cols @ w.reshape(-1, F) + b
    return out.reshape(N, H + 2 * pad - K + 1, W + 2 * pad - K + 1, F), cols


def np_backward(dout, cols, x_shape, w, pad):
    K, _, C, F = w.shape
    N, H, W, _ = x_shape
    d2 = dout.reshape(-1, F)
    dw = (cols.T @ d2).reshape(w.shape)
    db = d2.sum(0)
    Ho, Wo = dout.shape[1:3]
    dcols = (d2 @ w.reshape(-1, F).T).reshape(N, Ho, Wo, K, K, C)
    dxp = np.zeros((N, H + 2 * pad, W + 2 * pad, C), dout.dtype)
    for p in range(K):
        for q in range(K):
            dxp[:, p:p + Ho, q:q + Wo] += dcols[:, :, :, p, q]
    return dxp[:, pad:pad + H, pad:pad + W], dw, db


# -- naive loop ------------------------------------------------------------------------------------------
def loop_forward(x, w, b, pad):
    K, _, C, F = w.shape
    N, H, W, _ = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    Ho, Wo = H + 2 * pad - K + 1, W + 2 * pad - K + 1
    w2 = w.reshape(-1, F)
    out = np.empty((N, Ho, Wo, F), x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            out[:, i, j] = xp[:, i:i + K, j:j + K].reshape(N, -1) @ w2 + b
    return out


def loop_backward(dout, x, w, pad):
    K, _, C, F = w.shape
    N, H, W, _ = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dxp = np.zeros_like(xp)
    w2 = w.reshape(-1, F)
    dw = np.zeros_like(w2)
    for i in range(dout.shape[1]):
        for j in range(dout.shape[2]):
            g = dout[:, i, j]
            dw += xp[:, i:i + K, j:j + K].reshape(N, -1).T @ g
            dxp[:, i:i + K, j:j + K] += (g @ w2.T).reshape(N, K, K, C)
    return dxp[:, pad:pad + H, pad:pad + W], dw.reshape(w.shape), dout.sum((0, 1, 2))


def bench_layer(name, N, H, C, F, repeat, rng):
    from imgclf.nn import conv

    K, pad = 3, 1
    x = rng.standard_normal((N, H, H, C)).astype(np.float32)
    w = (rng.standard_normal((K, K, C, F)) * 0.1).astype(np.float32)
    b = np.zeros(F, np.float32)
    dout = rng.standard_normal((N, H, H, F)).astype(np.float32)
    ws = conv.Workspace()

    # Check that the four implementations agree before timing them.
    out, cache = conv.conv_forward(x, w, b, 1, pad, 1, ws)
    dx, g = conv.conv_backward(dout, cache)
    ref_out, cols_np = np_forward(x, w, b, pad)
    ref_dx, ref_dw, _ = np_backward(dout, cols_np, x.shape, w, pad)
    for got, want in ((out, ref_out), (dx, ref_dx), (g["w"], ref_dw), (loop_forward(x, w, b, pad), ref_out),
                      (loop_backward(dout, x, w, pad)[0], ref_dx)):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * float(np.abs(want).max()))

    cols = cache[1].copy()
    w2 = w.reshape(-1, F)
    d2 = dout.reshape(-1, F)
    t = {}
    t["imgclf", "fwd"] = best_time(lambda: conv.conv_forward(x, w, b, 1, pad, 1, ws), repeat)
    t["imgclf", "bwd"] = best_time(lambda: conv.conv_backward(dout, conv.conv_forward(x, w, b, 1, pad, 1, ws)[1]),
                                   repeat) - t["imgclf", "fwd"]
    t["gemm", "fwd"] = best_time(lambda: cols @ w2, repeat)
    t["gemm", "bwd"] = best_time(lambda: (cols.T @ d2, d2 @ w2.T), repeat)
    t["numpy", "fwd"] = best_time(lambda: np_forward(x, w, b, pad), repeat)
    t["numpy", "bwd"] = best_time(lambda: np_backward(dout, cols_np, x.shape, w, pad), repeat)
    loop_repeat = max(1, repeat // 3)
    t["loop", "fwd"] = best_time(lambda: loop_forward(x, w, b, pad), loop_repeat)
    t["loop", "bwd"] = best_time(lambda: loop_backward(dout, x, w, pad), loop_repeat)

    print(f"\n{name}: input {C}x{H}x{H}, {F} filters 3x3, pad 1, batch {N}  (microseconds per image)")
    print(f"{'':8s}{'forward':>10s}{'backward':>10s}{'fwd+bwd':>10s}{'vs imgclf':>11s}")
    total = {k: t[k, "fwd"] + t[k, "bwd"] for k in ("imgclf", "gemm", "numpy", "loop")}
    for k in ("imgclf", "gemm", "numpy", "loop"):
        print(f"{k:8s}{t[k, 'fwd'] / N * 1e6:10.1f}{t[k, 'bwd'] / N * 1e6:10.1f}{total[k] / N * 1e6:10.1f}"
              f"{total[k] / total['imgclf']:10.2f}x")
    print(f"imgclf / GEMMs alone: {total['imgclf'] / total['gemm']:.2f}x (target <= 3)   "
          f"numpy baseline / imgclf: {total['numpy'] / total['imgclf']:.2f}x (target >= 3)   "
          f"loop / imgclf: fwd {t['loop', 'fwd'] / t['imgclf', 'fwd']:.1f}x, "
          f"bwd {t['loop', 'bwd'] / t['imgclf', 'bwd']:.1f}x")
    # The baseline runs the same three GEMMs, so no implementation that keeps them can beat it by more
    # than this: the ceiling of the "numpy baseline / imgclf" figure.
    print(f"numpy baseline / GEMMs alone: {total['numpy'] / total['gemm']:.2f}x (the ceiling for any GEMM-based layer)")
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: time.perf_counter; cpu: time.process_time (for busy machines, single-threaded)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    import numba

    rng = np.random.default_rng(0)
    print(f"clock {args.clock}, numba threads {numba.get_num_threads()}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '-')}, "
          f"load average before: {load_average()} on {os.cpu_count()} cores")
    bench_layer("conv1 (3->32)", args.batch, 32, 3, 32, args.repeat, rng)
    bench_layer("conv2 (32->64)", args.batch, 16, 32, 64, args.repeat, rng)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
