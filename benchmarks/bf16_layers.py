"""One convolution layer's training step (forward GEMM, filter gradient, input gradient, with im2col and
col2im) in float32 and with precision="bf16" (imgclf/bf16.py: bfloat16 inputs, float32 accumulation, MKL).

    python benchmarks/bf16_layers.py [--threads 2]

The layers are those of the 32x2,128x2,128x2 pool-first net at batch 128 on 32x32 images. Best of 5 steps
after 2 warm-ups; `IMGCLF_MKL_THREADING=intel|gnu|tbb|sequential` picks MKL's threading layer (gnu is the
default, imgclf/mkl.py).
"""

from __future__ import annotations

import argparse
import os
import sys

import imgclf  # noqa: F401 - first: its thread-spin defaults apply only before numpy and numba start their pools
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import best_time, load_average, use_threads  # noqa: E402

# (images, size, channels in, filters)
LAYERS = [(128, 32, 3, 32), (128, 16, 32, 32), (128, 16, 32, 128), (128, 8, 128, 128), (128, 4, 128, 128)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from imgclf import bf16
    from imgclf.nn import conv

    use_threads(args.threads)
    if not bf16.available():
        sys.exit(f"bf16 unavailable: {bf16.unavailable_reason()}")
    rng = np.random.default_rng(0)
    print(f"{args.threads} threads; MKL threading {os.environ.get('IMGCLF_MKL_THREADING', 'gnu')}; load average "
          f"{load_average()}")
    print(f"{'layer (N, HxWxC -> F)':28s} {'float32 ms':>10s} {'bf16 ms':>8s} {'speed-up':>8s} "
          f"{'rel err out/dw/dx':>20s}")
    for N, H, C, F in LAYERS:
        x = rng.standard_normal((N, H, H, C), dtype=np.float32)
        w = (rng.standard_normal((3, 3, C, F)) / np.sqrt(9 * C)).astype(np.float32)
        dout = rng.standard_normal((N, H, H, F), dtype=np.float32)
        times, results = {}, {}
        for prec in ("float32", "bf16"):
            ws = conv.Workspace()

            def step():
                out, cache = conv.conv_forward(x, w, None, 1, 1, 1, ws, prec)
                return (out,) + conv.conv_backward(dout, cache)

            for _ in range(2):
                step()
            times[prec] = best_time(step, 5)
            out, dx, g = step()
            results[prec] = (out, g["w"], dx)
        errs = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(results["bf16"], results["float32"])]
        print(f"{N:4d}, {H}x{H}x{C} -> {F:<12d} {times['float32'] * 1e3:10.1f} {times['bf16'] * 1e3:8.1f} "
              f"{times['float32'] / times['bf16']:7.2f}x {'/'.join(f'{e:.1e}' for e in errs):>20s}", flush=True)


if __name__ == "__main__":
    main()
