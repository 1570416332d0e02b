"""Accuracy of scikit-learn's MLPClassifier() with its defaults on the data imgclf's defaults are measured
on (docs/recipes.md "Defaults on any data"), and the 28x28 grey set used for that comparison.

    python benchmarks/defaults.py mlp --data cifar10|mnist|grey28 [--n-train N]
    python benchmarks/defaults.py grey28 OUT.npz     # write the grey set as a pipeline file for --data

Splits are imgclf's (`imgclf.datasets.load`: CIFAR-10 49000/1000/10000, MNIST 59000/1000/10000). The
MLP sees the pixels scaled to [0, 1] (X / 255, as scikit-learn's own MNIST example does) and is trained
on train + val (it holds out nothing by default). `grey28` is imgclf's built-in `shapes` set (10 classes,
5000/1000) turned grey and cut to 28x28: clothing-sized grey images of shapes and textures.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import imgclf  # noqa: F401 - first: its thread-spin defaults apply only before numpy starts its pools
import numpy as np


def grey28():
    """The built-in shapes, grey (channel mean) and centre-cropped from 32x32 to 28x28."""
    from imgclf.datasets import shapes
    from imgclf.datasets.base import Dataset, Split

    Xtr, ytr, Xte, yte, classes = shapes.load()

    def grey(X):
        return np.rint(X[:, 2:30, 2:30].mean(axis=3, keepdims=True)).astype(np.uint8)

    splits = {"train": Split(grey(Xtr[:4000]), ytr[:4000]), "val": Split(grey(Xtr[4000:]), ytr[4000:]),
              "test": Split(grey(Xte), yte)}
    return Dataset(splits, list(classes), (28, 28, 1), [], "grey28")


def load(name: str):
    if name == "grey28":
        return grey28()
    from imgclf.datasets import load as load_data

    return load_data(name)


def mlp(args) -> dict:
    from sklearn.neural_network import MLPClassifier

    ds = load(args.data)
    tr, va, te = ds.get("train"), ds.splits.get("val"), ds.get("test")
    X = np.concatenate([tr.X, va.X]) if va is not None else tr.X
    y = np.concatenate([tr.y, va.y]) if va is not None else tr.y
    if args.n_train:
        X, y = X[:args.n_train], y[:args.n_train]
    X = X.reshape(len(X), -1).astype(np.float32) / 255
    t0 = time.perf_counter()
    clf = MLPClassifier(random_state=0).fit(X, y)
    acc = clf.score(te.X.reshape(len(te.X), -1).astype(np.float32) / 255, te.y)
    return {"model": "MLPClassifier()", "data": args.data, "n_train": len(X), "n_test": len(te.y),
            "test_accuracy": round(float(acc), 4), "epochs": clf.n_iter_, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mlp")
    m.add_argument("--data", required=True)
    m.add_argument("--n-train", type=int, default=None)
    g = sub.add_parser("grey28")
    g.add_argument("out")
    args = p.parse_args(argv)
    if args.cmd == "grey28":
        from imgclf.io import pipeline

        pipeline.write(grey28(), args.out)
        return
    print(json.dumps(mlp(args)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
