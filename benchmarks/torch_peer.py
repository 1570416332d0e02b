"""imgclf against PyTorch and against the machine's floor: seconds per training epoch on 49000
CIFAR-10-sized images, float32, 2 threads, every figure measured in this one run.

    pip install -e '.[bench]'          # PyTorch, a benchmark-only extra (never used by imgclf or its tests)
    python benchmarks/torch_peer.py [--n 49000] [--only fc,conv] [--hidden 100,500] [--threads 2]

Nets (the same layers, optimiser and batch on both sides; no augmentation; one epoch each):
  fc     affine 3072->H - relu - affine H->10, softmax, plain SGD lr 1e-3, L2 1e-4, batch 200, H in --hidden
  conv   `imgclf train convnet --filters 32,64,128 --batchnorm --hidden 256 --dropout 0.3`: three stages of
         3x3 conv - batch norm - relu - 2x2 max pool, affine 2048->256 - bn - relu - dropout 0.3 -
         affine 256->10; Adam lr 2e-3, L2 1e-4, batch 64. PyTorch runs it NCHW and channels_last; the
         faster one is its figure.
Columns:
  peak    numpy's float32 GEMM rate on 2048^3 products (the machine's measured ceiling)
  floor   the net's forward+backward multiply-adds (2 FLOPs each) at that rate
  gemms   the net's bare GEMMs of one epoch at their real shapes, timed alone (fc: benchmarks/nets.py's
          gemm_epoch; conv: the im2col products on 40 batches, scaled to the epoch)
imgclf's convnet runs with its default conv_backend="auto": oneDNN's convolutions where the optional `dnnl`
extra is installed (docs/dnnl.md), and then the im2col path is timed beside it ("conv im2col").
Targets (issue 18): imgclf <= 0.8x PyTorch for both nets; conv epoch <= 1.5x its floor; fc epoch <= 1.3x
its GEMMs at H=100 and <= 1.15x at H=500.

After the rows, the layer kernels alone (the convolutions on the backend the net uses and the affine
products, timed at the net's shapes without batch norm, pooling, optimiser or data movement): the
ceiling of an epoch built on those kernels.

Then a where-the-time-goes table for one imgclf convnet epoch (with flip,crop:4 augmentation, so its
cost shows): the layer functions are wrapped with timers, so each row is wall time inside that
function; the last row is the epoch minus the rows (with im2col it holds the convolutions' GEMMs).

The machine is shared with other jobs: compare ratios from the same run only. The cpu columns give
process CPU time (threads summed, spinning included) beside wall time, and `--threads 1` compares the
work itself when other jobs hold a core (a 2-thread epoch then mostly measures waits for the parked thread).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict

import imgclf  # noqa: F401 - first: its thread-spin defaults (imgclf/_threading.py) apply only before numpy and numba start their pools
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets  # noqa: E402 - the fully-connected GEMM floor, shared with benchmarks/nets.py
from timing import load_average, use_threads  # noqa: E402

THREADS = 2
CONV_FILTERS = (32, 64, 128)
CONV_HIDDEN = 256


class Clock:
    """Wall and CPU seconds of one block."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0

    @property
    def t(self) -> float:
        """The figure the ratios use: CPU time with one thread (immune to other jobs), else wall time."""
        return self.cpu if CLOCK is time.process_time else self.wall


def peak_gflops(repeat: int = 5, n: int = 2048, use_torch: bool = False) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    c = np.empty_like(a)
    if use_torch:
        import torch

        a, b, c = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        product = lambda: torch.mm(a, b, out=c)  # noqa: E731
    else:
        product = lambda: np.matmul(a, b, out=c)  # noqa: E731
    product()
    best = min(_timed(product) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


CLOCK = time.perf_counter


def _timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


# -- multiply-add counts ------------------------------------------------------------------------------
def conv_macs(H: int = 32, C: int = 3, filters=CONV_FILTERS, hidden: int = CONV_HIDDEN, classes: int = 10) -> int:
    """Forward + backward multiply-adds per image: each product once forward, once for dW and once for
    dX (except the first layer, whose input gradient is not needed)."""
    fwd, first = 0, 0
    for i, f in enumerate(filters):
        m = H * H * 9 * C * f
        fwd += m
        first = m if i == 0 else first
        H, C = H // 2, f
    dims = (H * H * C, hidden, classes)
    fwd += sum(a * b for a, b in zip(dims, dims[1:]))
    return 3 * fwd - first


def fc_macs(h: int, d: int = 3072, classes: int = 10) -> int:
    return 3 * (d * h + h * classes) - d * h


# -- fully-connected -----------------------------------------------------------------------------------
def imgclf_fc(X, y, h):
    from imgclf.nn.net import NeuralNet
    from imgclf.nn.solver import Solver

    net = NeuralNet(hidden=(h,), batch_size=200, optim="sgd", lr=1e-3, reg=1e-4, dropout=0.0, random_state=0)
    net.classes_ = np.arange(10)
    rng = np.random.default_rng(0)
    solver = Solver(net.initialize(X.shape[1], 10, rng), X, y, optim="sgd", lr=1e-3, epochs=1, batch_size=200, rng=rng)
    with Clock() as c:
        solver.train()
    return c


def torch_fc(X, y, h):
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], h), torch.nn.ReLU(), torch.nn.Linear(h, 10))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, weight_decay=2e-4)  # grad of 1e-4 * sum w^2
    return _torch_epoch(net, opt, torch.from_numpy(X), torch.from_numpy(y), 200, None)


# -- convnet -------------------------------------------------------------------------------------------
def imgclf_conv(X, y, augment=None, profile=None, backend="auto"):
    from imgclf.nn.convnet import ConvNet
    from imgclf.nn.solver import Solver

    net = ConvNet(filters=CONV_FILTERS, batchnorm=True, hidden=CONV_HIDDEN, dropout=0.3, batch_size=64, optim="adam",
                  lr=2e-3, reg=1e-4, random_state=0, conv_backend=backend)
    net.input_shape_ = X.shape[1:]
    net.classes_ = np.arange(10)
    rng = np.random.default_rng(0)
    trainee = net.initialize(int(np.prod(X.shape[1:])), 10, rng)
    solver = Solver(trainee, X, y, optim="adam", lr=2e-3, epochs=1, batch_size=64, rng=rng, augment=augment)
    if profile is not None:
        from imgclf import dnnl

        _instrument(solver, trainee, profile, "dnnl" if backend != "im2col" and dnnl.available() else "im2col")
    with Clock() as c:
        solver.train()
    return c


def torch_convnet(channels_last: bool):
    import torch
    from torch import nn

    layers, C = [], 3
    for f in CONV_FILTERS:
        layers += [nn.Conv2d(C, f, 3, padding=1, bias=False), nn.BatchNorm2d(f), nn.ReLU(), nn.MaxPool2d(2)]
        C = f
    layers += [nn.Flatten(), nn.Linear(C * 16, CONV_HIDDEN, bias=False), nn.BatchNorm1d(CONV_HIDDEN), nn.ReLU(),
               nn.Dropout(0.3), nn.Linear(CONV_HIDDEN, 10)]
    net = nn.Sequential(*layers)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def torch_conv(X, y, channels_last: bool):
    import torch

    net = torch_convnet(channels_last)
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    other = [p for n, p in net.named_parameters() if p.ndim <= 1]
    opt = torch.optim.Adam([{"params": decay, "weight_decay": 2e-4}, {"params": other}], lr=2e-3)
    Xt = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))
    fmt = torch.channels_last if channels_last else None
    return _torch_epoch(net, opt, Xt, torch.from_numpy(y), 64, fmt)


def _torch_epoch(net, opt, X, y, batch, fmt):
    import torch

    torch.manual_seed(0)
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    n = len(y)
    with Clock() as c:
        order = torch.randperm(n)
        for s in range(n // batch):
            idx = order[s * batch:(s + 1) * batch]
            xb = X[idx]
            if fmt is not None:
                xb = xb.contiguous(memory_format=fmt)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xb), y[idx])
            loss.backward()
            opt.step()
    return c


def conv_gemm_epoch(n: int, batch: int = 64, steps: int = 40) -> float:
    """The convnet's GEMMs (cols @ w, cols.T @ d, d @ w.T; the affine ones) on `steps` batches, scaled to n."""
    rng = np.random.default_rng(0)
    ops = []
    H, C = 32, 3
    for i, f in enumerate(CONV_FILTERS):
        cols = rng.standard_normal((batch * H * H, 9 * C), dtype=np.float32)
        ops.append((cols, rng.standard_normal((9 * C, f), dtype=np.float32), i > 0))
        H, C = H // 2, f
    dims = (H * H * C, CONV_HIDDEN, 10)
    for a, b in zip(dims, dims[1:]):
        x = rng.standard_normal((batch, a), dtype=np.float32)
        ops.append((x, rng.standard_normal((a, b), dtype=np.float32), True))
    outs = [(a @ w, np.empty_like(w), np.empty_like(a)) for a, w, _ in ops]

    def step():
        for (a, w, need_dx), (o, dw, dx) in zip(ops, outs):
            np.matmul(a, w, out=o)
            np.matmul(a.T, o, out=dw)
            if need_dx:
                np.matmul(o, w.T, out=dx)

    step()
    t = min(_timed(lambda: [step() for _ in range(steps)]) for _ in range(2))
    return t / steps * (n // batch)


def conv_kernels_epoch(n: int, backend: str, batch: int = 64, steps: int = 40) -> float:
    """The convnet's layer kernels alone at its shapes, on `steps` batches, scaled to n: each convolution's
    forward, filter gradient and input gradient (not the first's) through imgclf.nn.conv with `backend`,
    and the affine layers' products. With oneDNN this is the epoch's ceiling before any batch norm,
    pooling, optimiser or data movement."""
    from imgclf.nn import conv

    rng = np.random.default_rng(0)
    layers = []
    H, C = 32, 3
    for i, f in enumerate(CONV_FILTERS):
        x = rng.standard_normal((batch, H, H, C), dtype=np.float32)
        w = (rng.standard_normal((3, 3, C, f)) / np.sqrt(9 * C)).astype(np.float32)
        layers.append((x, w, rng.standard_normal((batch, H, H, f), dtype=np.float32), i > 0, conv.Workspace()))
        H, C = H // 2, f
    dims = (H * H * C, CONV_HIDDEN, 10)
    affine = [(rng.standard_normal((batch, a), dtype=np.float32), rng.standard_normal((a, b), dtype=np.float32))
              for a, b in zip(dims, dims[1:])]

    def step():
        for x, w, dout, need_dx, ws in layers:
            conv.conv_backward(dout, conv.conv_forward(x, w, None, 1, 1, 1, ws, "float32", backend)[1], need_dx)
        for i, (x, w) in enumerate(affine):
            d = x @ w
            x.T @ d
            if i:
                d @ w.T

    step()
    t = min(_timed(lambda: [step() for _ in range(steps)]) for _ in range(2))
    return t / steps * (n // batch)


# -- where the time goes ---------------------------------------------------------------------------------
def _wrap(table, key, fn):
    def timed(*args, **kwargs):
        t0 = CLOCK()
        try:
            return fn(*args, **kwargs)
        finally:
            table[key] += CLOCK() - t0

    return timed


def _instrument(solver, trainee, table, backend: str):
    """Time the layer functions by replacing them, for this process, with timing wrappers. With oneDNN
    the convolutions get a row of their own (the im2col path's products stay in the rest: its im2col /
    col2im rows would be counted twice inside a convolution row)."""
    from imgclf.nn import conv, layers

    if backend == "dnnl":
        for name in ("conv_forward", "conv_backward"):
            setattr(conv, name, _wrap(table, "convolutions (oneDNN)", getattr(conv, name)))
    for name in ("affine_forward", "affine_backward"):
        setattr(layers, name, _wrap(table, "affine products (fc head)", getattr(layers, name)))
    for name, key in (("im2col", "im2col / col2im"), ("col2im", "im2col / col2im"),
                      ("spatial_batchnorm_forward", "batchnorm (+relu)"),
                      ("spatial_batchnorm_backward", "batchnorm (+relu)"),
                      ("max_pool_forward", "max pooling"), ("max_pool_backward", "max pooling"),
                      ("bn_relu_pool_forward", "batchnorm + relu + pool (fused)"),
                      ("bn_relu_pool_backward", "batchnorm + relu + pool (fused)")):
        setattr(conv, name, _wrap(table, key, getattr(conv, name)))
    for name, key in (("batchnorm_forward", "batchnorm (+relu)"), ("batchnorm_backward", "batchnorm (+relu)"),
                      ("activation_forward", "relu / dropout (fc)"), ("activation_backward", "relu / dropout (fc)"),
                      ("dropout_forward", "relu / dropout (fc)"), ("dropout_backward", "relu / dropout (fc)")):
        setattr(layers, name, _wrap(table, key, getattr(layers, name)))
    solver.rule = _wrap(table, "optimiser (Adam)", solver.rule)
    if solver.augment is not None:
        solver.augment = _wrap(table, "augmentation (flip, crop:4)", solver.augment)
    trainee.prepare_batch = _wrap(table, "standardise batch", trainee.prepare_batch)
    solver._gather = _wrap(table, "data gather", solver._gather)  # the shuffled batch, as the Solver copies it


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=49000)
    ap.add_argument("--only", default="fc,conv,table")
    ap.add_argument("--hidden", default="100,500")
    ap.add_argument("--threads", type=int, default=THREADS,
                    help="threads for every library (BLAS, numba, torch); 1 compares the work itself on a busy "
                         "machine, where a 2-thread run waits for whichever thread the scheduler parked")
    args = ap.parse_args()
    only = set(args.only.split(","))
    import torch

    torch.set_num_threads(args.threads)
    use_threads(args.threads)
    global CLOCK
    CLOCK = nets.CLOCK = time.process_time if args.threads == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    peak = peak_gflops()
    print(f"torch {torch.__version__}, numpy {np.__version__}, {args.threads} threads; load average before "
          f"{load_average()} on {os.cpu_count()} cores")
    print(f"peak float32 GEMM (numpy, 2048^3): {peak:.0f} GFLOP/s (torch.mm: {peak_gflops(use_torch=True):.0f}; "
          f"the floor uses numpy's)")

    def report(name, ours, peer, floor, gemms):
        print(f"{name:14s} {ours.wall:7.2f} {ours.cpu:7.2f} {peer[0].wall:7.2f} {peer[0].cpu:7.2f} {peer[1]:>6s} "
              f"{floor:7.2f} {gemms:7.2f}   {ours.t / peer[0].t:8.2f} {ours.t / floor:9.2f} "
              f"{ours.t / gemms:9.2f}", flush=True)

    header = (f"{'net':14s} {'imgclf':>7s} {'cpu':>7s} {'torch':>7s} {'cpu':>7s} {'layout':>6s} {'floor':>7s} "
              f"{'gemms':>7s}   {'ours/pt':>8s} {'ours/floor':>9s} {'ours/gemms':>9s}")
    clock = "process CPU time" if CLOCK is time.process_time else "wall time"
    print(f"\nseconds per epoch on {args.n} images (wall; cpu = process CPU seconds); peak, floor, gemms and "
          f"the ratios use {clock}")
    print(header)
    if "fc" in only:
        X = rng.standard_normal((args.n, 3072), dtype=np.float32)
        y = rng.integers(0, 10, args.n)
        imgclf_fc(X[:400], y[:400], 8)  # numba compile / cache load outside the timings
        for h in (int(v) for v in args.hidden.split(",")):
            g = nets.gemm_epoch(X, h, rng)
            ours = imgclf_fc(X, y, h)
            peer = torch_fc(X, y, h)
            floor = 2 * fc_macs(h) * (args.n // 200 * 200) / (peak * 1e9)
            report(f"fc H={h}", ours, (peer, "-"), floor, g)
        del X
    from imgclf import dnnl

    dnnl_ok = dnnl.available()  # then imgclf's default conv_backend "auto" runs oneDNN; im2col is timed beside it
    if "conv" in only or "table" in only:
        X = rng.standard_normal((args.n, 32, 32, 3), dtype=np.float32)
        y = rng.integers(0, 10, args.n)
        imgclf_conv(X[:256], y[:256])
        imgclf_conv(X[:256], y[:256], backend="im2col")
    if "conv" in only:
        g = conv_gemm_epoch(args.n)
        ours = imgclf_conv(X, y)
        ours_im2col = imgclf_conv(X, y, backend="im2col") if dnnl_ok else None
        cl = torch_conv(X, y, True)
        nchw = torch_conv(X, y, False)
        peer = (cl, "CL") if cl.t <= nchw.t else (nchw, "NCHW")
        floor = 2 * conv_macs() * (args.n // 64 * 64) / (peak * 1e9)
        print(f"  (torch channels_last {cl.wall:.2f} s wall {cl.cpu:.2f} s cpu, NCHW {nchw.wall:.2f} s wall "
              f"{nchw.cpu:.2f} s cpu; the net's forward+backward is "
              f"{2 * conv_macs() / 1e6:.1f} MFLOP per image, {2 * conv_macs() * args.n / 1e12:.2f} TFLOP an epoch)")
        if ours_im2col is not None:
            report("conv im2col", ours_im2col, peer, floor, g)
        report("conv oneDNN" if dnnl_ok else "conv 32,64,128", ours, peer, floor, g)
        kernels = conv_kernels_epoch(args.n, "auto")
        print(f"  the layer kernels alone ({'oneDNN' if dnnl_ok else 'im2col'} convolutions and the affine products at "
              f"the net's shapes): {kernels:.2f} s an epoch = {kernels / floor:.2f}x the floor; the epoch is "
              f"{ours.t / kernels:.2f}x its kernels alone")
    if "table" in only:
        from imgclf.nn.augment import parse

        table = defaultdict(float)
        ours = imgclf_conv(X, y, augment=parse("flip,crop:4"), profile=table)
        print(f"\nwhere one imgclf convnet epoch goes (flip,crop:4 augmentation on): {ours.wall:.2f} s wall, "
              f"{ours.cpu:.2f} s cpu")
        floor = 2 * conv_macs() * (args.n // 64 * 64) / (peak * 1e9)
        print(f"  ({clock} inside each function)")
        for key, t in sorted(table.items(), key=lambda kv: -kv[1]):
            print(f"  {key:34s} {t:7.2f} s  {t / ours.t:6.1%}")
        rest = ours.t - sum(table.values())
        label = "loss, dropout mask, Python: the rest" if dnnl_ok else "conv GEMMs + rest"
        print(f"  {label:34s} {rest:7.2f} s  {rest / ours.t:6.1%}   (the net's products at peak: {floor:.2f} s)")
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
