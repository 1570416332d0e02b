"""Seconds per 49000-image training epoch of convnet layouts, beside the machine's float32 GEMM rate
(issue 18: which airbench-like net fits the 5- and 15-minute budgets on this CPU).

    python benchmarks/conv_widths.py [--n 4096] [--threads 2] [--precision float32,bf16] CONFIG [CONFIG ...]

Each CONFIG is `filters/position/batch[/hidden]`, e.g. `32x2,128x2,128x2/first/128` or `32,64,128/last/64/256`.
Every net trains with the methods of the fast preset before the fifth session (batch norm, Adam,
warm-up schedule, flip+crop:4, label smoothing 0.1, ema 0.999, patch whitening) for one epoch on the
first --n CIFAR-10 training images (IMGCLF_DATA), no validation; the figure is that epoch's seconds (the
fit's history: the steps and the 1000-image training-accuracy pass, without the set-up) scaled to 49000
images, with the whole fit's CPU time scaled alike beside it. The
first fit of the run is a tiny warm-up (numba compilation). The floor column is the net's forward +
backward multiply-adds at the GEMM rate measured at the start of the run. `--precision float32,bf16` fits
every config once per precision (ConvNet's `precision`: bfloat16 products where the CPU and MKL have them,
imgclf/bf16.py), one after the other.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import imgclf  # noqa: F401 - first: its thread-spin defaults apply only before numpy and numba start their pools
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peer import peak_gflops  # noqa: E402
from timing import load_average, use_threads  # noqa: E402

EPOCH = 49000


def macs(stages, position, hidden, pool=2, H=32, C=3, classes=10) -> int:
    """Forward + backward multiply-adds per image (the first layer needs no input gradient)."""
    fwd, first = 0, None
    for f, k in stages:
        for j in range(k):
            m = H * H * 9 * C * f
            fwd += m
            first = m if first is None else first
            C = f
            if (position == "first" and j == 0) or (position == "last" and j == k - 1):
                H //= pool
    dims = (H * H * C,) + tuple(hidden) + (classes,)
    fwd += sum(a * b for a, b in zip(dims, dims[1:]))
    return 3 * fwd - first


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="float32", help="comma-separated: float32, bf16")
    ap.add_argument("configs", nargs="+")
    args = ap.parse_args()

    from imgclf.datasets import load
    from imgclf.nn.convnet import ConvNet, parse_filters

    use_threads(args.threads)
    train = load("cifar10", val=0, n_train=args.n, n_test=1).get("train")
    X, y = train.X, train.y
    base = dict(batchnorm=True, optim="adam", lr=2e-3, reg=1e-4, lr_schedule="warmup:0.2", augment="flip,crop:4",
                label_smoothing=0.1, ema=0.999, patch_whiten=True, epochs=1, random_state=0)
    precisions = args.precision.split(",")
    for precision in precisions:
        ConvNet(filters=("8x2", 8), hidden=0, pool_position="first", batch_size=64, precision=precision,
                **base).fit(X[:256], y[:256])
    peak = peak_gflops()
    print(f"{args.threads} threads, {args.n} images per fit; load average "
          f"{load_average()}; float32 GEMM 2048^3: {peak:.0f} GFLOP/s")
    print(f"{'config':34s} {'prec':>7s} {'GFLOP/img':>9s} {'floor s':>8s} {'epoch s':>8s} {'cpu s':>7s} "
          f"{'x floor':>7s}")
    for cfg in args.configs:
        parts = cfg.split("/")
        filters, position, batch = parts[0], parts[1], int(parts[2])
        hidden = tuple(int(h) for h in parts[3].split(",")) if len(parts) > 3 and parts[3] != "0" else ()
        stages = parse_filters(filters)
        flop = 2 * macs(stages, position, hidden)
        floor = flop * EPOCH / (peak * 1e9)
        for precision in precisions:
            net = ConvNet(filters=filters, hidden=hidden or 0, pool_position=position, batch_size=batch,
                          precision=precision, **base)
            w0, c0 = time.perf_counter(), time.process_time()
            net.fit(X, y)
            cpu = time.process_time() - c0
            epoch = net.history_[0]["seconds"] * EPOCH / args.n
            print(f"{cfg:34s} {precision:>7s} {flop / 1e9:9.3f} {floor:8.1f} {epoch:8.1f} "
                  f"{cpu * EPOCH / args.n:7.1f} {epoch / floor:7.2f}  (fit {time.perf_counter() - w0:.1f} s, "
                  f"train acc {net.history_[0].get('train_acc', float('nan')):.3f})", flush=True)
    print(f"load average after {load_average()}; GEMM again "
          f"{peak_gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
