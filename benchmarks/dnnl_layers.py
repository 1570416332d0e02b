"""One convolution layer's training step (forward, filter gradient, input gradient) with backend="im2col"
and backend="dnnl" (oneDNN, imgclf/dnnl.py), in float32 and with precision="bf16".

    python benchmarks/dnnl_layers.py [--threads 2] [--batch 512] [--precision float32,bf16]

The layers are those of the airbench94-width net (filters 64x2,256x2,256x2 after a 2x2 whitening stem:
31x31, 15x15, 7x7 and 3x3 maps) and of the 32-wide net (32x2,128x2,128x2), 3x3 filters with padding 1,
plus the stem (32x32x3 -> 24, 2x2, no padding). Each figure is the best of 5 steps after 2 warm-ups,
through imgclf.nn.conv's conv_forward / conv_backward (so the bf16 rounding passes are included). The
last column names the kernels oneDNN picked (forward / backward data / backward weights).
"""

from __future__ import annotations

import argparse
import os
import sys

import imgclf  # noqa: F401 - first: its thread-spin defaults apply only before numpy and numba start their pools
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import best_time, load_average, use_threads  # noqa: E402

# (size, channels in, filters, filter size, padding)
LAYERS = [(32, 3, 24, 2, 0), (31, 24, 64, 3, 1), (15, 64, 64, 3, 1), (15, 64, 256, 3, 1), (7, 256, 256, 3, 1),
          (3, 256, 256, 3, 1), (31, 24, 32, 3, 1), (15, 32, 32, 3, 1), (15, 32, 128, 3, 1), (7, 128, 128, 3, 1),
          (3, 128, 128, 3, 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--precision", default="float32,bf16")
    args = ap.parse_args()

    from imgclf import dnnl
    from imgclf.nn import conv

    use_threads(args.threads)
    if not dnnl.available():
        sys.exit(f"oneDNN unavailable: {dnnl.unavailable_reason()}")
    rng = np.random.default_rng(0)
    N = args.batch
    print(f"{args.threads} threads, batch {N}, oneDNN {dnnl.version()}; load average "
          f"{load_average()}")
    for prec in args.precision.split(","):
        total = {"im2col": 0.0, "dnnl": 0.0}
        print(f"\nprecision {prec}\n{'layer (HxWxC -> F, k)':24s} {'im2col ms':>9s} {'dnnl ms':>8s} {'speed-up':>8s}  "
              f"{'max rel diff':>12s}  kernels")
        for H, C, F, K, pad in LAYERS:
            x = rng.standard_normal((N, H, H, C), dtype=np.float32)
            w = (rng.standard_normal((K, K, C, F)) / np.sqrt(K * K * C)).astype(np.float32)
            Ho = H + 2 * pad - K + 1
            dout = rng.standard_normal((N, Ho, Ho, F), dtype=np.float32)
            times, results = {}, {}
            for backend in ("im2col", "dnnl"):
                ws = conv.Workspace()

                def step():
                    out, cache = conv.conv_forward(x, w, None, 1, pad, 1, ws, prec, backend)
                    return (out,) + conv.conv_backward(dout, cache)

                for _ in range(2):
                    step()
                times[backend] = best_time(step, 5)
                total[backend] += times[backend]
                out, dx, g = step()
                results[backend] = (out.copy(), g["w"].copy(), dx.copy())
            diff = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(results["dnnl"], results["im2col"]))
            kernels = dnnl.implementations(x.shape, w.shape, 1, pad, 1, np.uint16 if prec == "bf16" else np.float32)
            print(f"{H}x{H}x{C} -> {F}, {K}x{K}{'':6s} {times['im2col'] * 1e3:9.1f} {times['dnnl'] * 1e3:8.1f} "
                  f"{times['im2col'] / times['dnnl']:7.2f}x  {diff:12.1e}  {' / '.join(kernels.values())}", flush=True)
        print(f"{'all layers':24s} {total['im2col'] * 1e3:9.1f} {total['dnnl'] * 1e3:8.1f} "
              f"{total['im2col'] / total['dnnl']:7.2f}x")


if __name__ == "__main__":
    main()
