"""kNN speed on CIFAR-10: imgclf's exact L2 / L1 search against baselines timed in the same run.

Prints, for 1-NN on the training vs test split (default: all 50000 x 10000 images, raw uint8):
  - bare float32 GEMM X_test @ X_train.T (float32 inputs and output buffer ready) and imgclf L2 total / GEMM;
  - the CS231n-style numpy "no-loop" version (float64 full matrix, sqrt, argsort per row) / imgclf L2;
  - imgclf L1: G(abs-diff)/s and L1 total / L2 total;
  - scikit-learn brute metric='manhattan' (on a query subset, extrapolated: it is slow) / imgclf L1;
  - faiss IndexFlatL2 when faiss is importable;
  - peak resident memory of a fresh process running each imgclf search (data loading included);
  - 1-NN accuracies.
Each imgclf search runs in its own process so its peak RSS is its own. Other jobs on the machine
make absolute times noisy: read the ratios.

    IMGCLF_DATA=../shared/datasets python benchmarks/knn.py [--n-train N] [--n-test N] [--repeat R]
        [--sklearn-queries N] [--skip-numpy]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import imgclf  # noqa: F401 - first: its thread-spin defaults (imgclf/_threading.py) apply only before numpy and numba start their pools
import numpy as np


def load(n_train, n_test):
    from imgclf.datasets import load as load_dataset

    ds = load_dataset("cifar10", val=0, n_train=n_train, n_test=n_test)
    tr, te = ds.get("train"), ds.get("test")
    return tr.X.reshape(len(tr.X), -1), tr.y, te.X.reshape(len(te.X), -1), te.y


def child(metric, n_train, n_test, memory_mb):
    """One imgclf search in this (fresh) process; prints a JSON line."""
    from imgclf.kernels.distances import kneighbors

    Xtr, ytr, Xte, yte = load(n_train, n_test)
    kneighbors(Xte[:8], Xtr[:64], 1, metric)  # compile / load the cached kernels outside the timing
    stats = {}
    t = time.perf_counter()
    _, idx = kneighbors(Xte, Xtr, 1, metric, memory_mb=memory_mb, stats=stats)
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "accuracy": float(np.mean(ytr[idx[:, 0]] == yte)),
                      "peak_rss_mb": peak_rss_mb(), "stats": stats}))


def peak_rss_mb():
    """This process's high-water resident set. Not ru_maxrss: Linux carries that across exec, so a
    child would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(metric, args):
    cmd = [sys.executable, __file__, "--child", metric, "--memory", str(args.memory)]
    cmd += [f"--n-train={args.n_train}"] if args.n_train else []
    cmd += [f"--n-test={args.n_test}"] if args.n_test else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def fmt(values):
    return ", ".join(f"{v:.1f}" for v in values) + " s"


def cs231n_no_loop(Xtr, Xte):
    """CS231n's compute_distances_no_loops + predict_labels(k=1): float64 matrix, sqrt, argsort."""
    Xtr, Xte = Xtr.astype(np.float64), Xte.astype(np.float64)
    dists = np.sqrt(np.maximum((Xte ** 2).sum(1)[:, None] - 2 * Xte @ Xtr.T + (Xtr ** 2).sum(1)[None, :], 0))
    return np.array([np.argsort(dists[i])[0] for i in range(len(dists))])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--memory", type=int, default=1024, help="imgclf memory budget, MB")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of GEMM / L2 / L1 (best kept)")
    ap.add_argument("--sklearn-queries", type=int, default=100, help="query rows timed for scikit-learn")
    ap.add_argument("--skip-numpy", action="store_true", help="skip the (slow, memory-hungry) CS231n baseline")
    ap.add_argument("--child", choices=["l2", "l1"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.n_train, args.n_test, args.memory)
        return

    Xtr, ytr, Xte, yte = load(args.n_train, args.n_test)
    n, m, d = len(Xte), len(Xtr), Xtr.shape[1]
    print(f"CIFAR-10 1-NN: {n} test x {m} train x {d} features, uint8; memory budget {args.memory} MB")
    rows = []

    def show(name, seconds, note=""):
        rows.append((name, seconds))
        print(f"  {name:<44} {seconds:9.2f} s  {note}", flush=True)

    # GEMM, L2 and L1 are interleaved and repeated, and the best of each kept: other jobs on the
    # machine then slow all three alike instead of whichever happened to run at a bad moment.
    # The GEMM writes into a preallocated, already touched output: the pure BLAS time, the
    # strictest baseline.
    Ftr, Fte = Xtr.astype(np.float32), Xte.astype(np.float32)
    out = np.ones((n, m), dtype=np.float32)
    gemms, l2s, l1s = [], [], []
    for _ in range(args.repeat):
        gemms.append(timed(lambda: np.matmul(Fte, Ftr.T, out=out))[0])
        l2s.append(run_child("l2", args))
        l1s.append(run_child("l1", args))
    del Ftr, Fte, out
    t_gemm = min(gemms)
    l2 = min(l2s, key=lambda r: r["seconds"])
    l1 = min(l1s, key=lambda r: r["seconds"])
    print(f"  (best of {args.repeat}: GEMM {fmt(gemms)}; L2 {fmt(r['seconds'] for r in l2s)}; "
          f"L1 {fmt(r['seconds'] for r in l1s)})")
    show("bare float32 GEMM X_test @ X_train.T", t_gemm, f"{2 * n * m * d / t_gemm / 1e9:.0f} GFLOP/s")
    show("imgclf L2 (uint8 in, exact)", l2["seconds"],
         f"{l2['seconds'] / t_gemm:.2f}x GEMM; acc {l2['accuracy']:.4f}; peak RSS {l2['peak_rss_mb']:.0f} MB; "
         f"{l2['stats']}")
    rate = n * m * d / l1["seconds"] / 1e9
    show("imgclf L1 (uint8 in, exact)", l1["seconds"],
         f"{rate:.1f} G abs-diff/s; {l1['seconds'] / l2['seconds']:.2f}x L2 time; acc {l1['accuracy']:.4f}; "
         f"peak RSS {l1['peak_rss_mb']:.0f} MB; {l1['stats']}")

    if not args.skip_numpy:
        t_np, pred = timed(lambda: cs231n_no_loop(Xtr, Xte))
        show("CS231n numpy no-loop (float64, argsort)", t_np,
             f"imgclf L2 is {t_np / l2['seconds']:.1f}x faster; acc {np.mean(ytr[pred] == yte):.4f}")

    try:
        from sklearn.neighbors import NearestNeighbors
    except ImportError:
        print("  scikit-learn not importable: skipped")
    else:
        q = min(args.sklearn_queries, n)
        nn = NearestNeighbors(n_neighbors=1, algorithm="brute", metric="manhattan").fit(Xtr)
        t_sk, _ = timed(lambda: nn.kneighbors(Xte[:q]))
        full = t_sk * n / q
        show(f"sklearn brute manhattan ({q} queries, x{n / q:.0f})", full,
             f"extrapolated from {t_sk:.1f} s; imgclf L1 is {full / l1['seconds']:.0f}x faster")

    try:
        import faiss
    except ImportError:
        print("  faiss not importable: skipped")
    else:
        index = faiss.IndexFlatL2(d)
        index.add(Xtr.astype(np.float32))
        t_fa, _ = timed(lambda: index.search(Xte.astype(np.float32), 1))
        show("faiss IndexFlatL2", t_fa, f"imgclf L2 / faiss = {l2['seconds'] / t_fa:.2f}")


if __name__ == "__main__":
    main()
