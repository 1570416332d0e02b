"""`data audit` speed on CIFAR-10 against one kNN pass timed in the same run.

Prints, on the training vs test split (default: all 50000 x 10000 raw uint8 images):
  - one kNN pass: the exact 1-NN of every test image among the training images (the `imgclf knn --k 1`
    search), L2 or L1;
  - the audit with --cross-only (hashing + test against train with the audit's neighbours): / kNN pass;
  - with --full, the whole audit (hashing + train against train + test against train + test against
    test): / kNN pass; its pairs of splits hold (50000^2 + 50000 * 10000 + 10000^2) / (50000 * 10000) =
    6.2 times the kNN pass's pairs of images;
  - what each audit found (exact groups, near pairs, leakage).
Other jobs on the machine make absolute times noisy: read the ratios.

    IMGCLF_DATA=../shared/datasets python benchmarks/audit.py [--n-train N] [--n-test N] [--metric l2|l1]
        [--near D] [--full]
"""

from __future__ import annotations

import argparse
import time

import imgclf  # noqa: F401 - first: its thread-spin defaults apply only before numpy and numba start their pools


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--metric", choices=["l2", "l1"], default="l2")
    ap.add_argument("--near", type=float, default=None)
    ap.add_argument("--full", action="store_true", help="also time the whole audit (within-split passes too)")
    args = ap.parse_args()

    from imgclf.audit import DEFAULT_NEAR, audit
    from imgclf.datasets import load
    from imgclf.kernels.distances import kneighbors, sqnorms

    near = DEFAULT_NEAR if args.near is None else args.near
    ds = load("cifar10", val=0, n_train=args.n_train, n_test=args.n_test)
    tr, te = ds.get("train"), ds.get("test")
    Xtr, Xte = tr.X.reshape(len(tr), -1), te.X.reshape(len(te), -1)
    kneighbors(Xte[:8], Xtr[:64], 1, args.metric)  # compile / load the cached kernels outside the timings
    print(f"{len(tr)} train x {len(te)} test images, {args.metric}, near {near:g} (per pixel)", flush=True)

    t = time.perf_counter()
    kneighbors(Xte, Xtr, 1, args.metric, y_sqnorms=sqnorms(Xtr) if args.metric == "l2" else None)
    base = time.perf_counter() - t
    print(f"one kNN pass (1-NN of test in train): {base:.1f} s", flush=True)

    splits = {"train": (tr.X, tr.y), "test": (te.X, te.y)}
    for name, cross_only in (("audit --cross-only", True),) + ((("audit (full)", False),) if args.full else ()):
        t = time.perf_counter()
        res = audit(splits, ds.classes, metric=args.metric, near=near, cross_only=cross_only)
        seconds = time.perf_counter() - t
        ex, nd = res["exact"], res["near_duplicates"]
        print(f"{name}: {seconds:.1f} s = {seconds / base:.2f} x the kNN pass "
              f"(hashing {res['seconds']['exact']:.1f} s, near search {res['seconds']['near']:.1f} s); exact groups {ex['groups']} "
              f"{ex['by_pair']}, near pairs {nd['pairs']} {nd['by_pair']}, leakage {res['leakage']}", flush=True)


if __name__ == "__main__":
    main()
