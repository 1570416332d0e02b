"""Dataset loading figures: CIFAR-10 and MNIST read times against the usual straightforward readers.

Run from the checkout with the data on the search path:
    IMGCLF_DATA=../shared/datasets python benchmarks/data.py [--repeat 3]

CIFAR-10 (python batches, 50,000 train + 10,000 test): imgclf's reader (restricted unpickler, planar
rows copied one colour plane at a time into a preallocated NHWC array) against the CS231n-style loader
(reshape/transpose/astype per batch, `np.concatenate`, then the copy to C-contiguous NHWC) and against a per-image loop. MNIST
(gzipped idx): imgclf against `gzip.open` + `np.frombuffer`. Also the CIFAR-10 archive read directly
(`cifar-10-python.tar.gz`, built here in a temporary folder from the batches when no archive is found).
Wall-clock, best of --repeat runs, all in this one run so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import gzip
import tarfile
import tempfile
import time
from pathlib import Path

import imgclf  # noqa: F401 - first: its thread-spin defaults (imgclf/_threading.py) apply only before numpy and numba start their pools
import numpy as np
from timing import best_time


def cs231n_style(folder: Path):
    """The familiar loader's array work (reshape/transpose/astype per batch, then concatenate), unpickling
    through the same restricted unpickler: the house rule allows no other."""
    from imgclf.datasets.cifar import parse_python_batch

    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows, labels = parse_python_batch((folder / name).read_bytes(), name)
        xs.append(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.uint8))
        ys.append(np.array(labels))
    # concatenate keeps the planar memory order (a non-contiguous NHWC view); every consumer needs
    # C-contiguous NHWC, so the honest comparison includes that copy.
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


def per_image_loop(folder: Path):
    from imgclf.datasets.cifar import parse_python_batch

    out = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows, labels = parse_python_batch((folder / name).read_bytes(), name)
        out.extend(row.reshape(3, 32, 32).transpose(1, 2, 0) for row in rows)
    return np.stack(out)


def mnist_plain(folder: Path):
    arrays = []
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        with gzip.open(folder / name) as f:
            arrays.append(np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1))
    return arrays


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from imgclf.datasets import cifar, mnist
    from imgclf.datasets.registry import find

    cifar_dir, mnist_dir = find("cifar10"), find("mnist")
    if cifar_dir is not None and cifar_dir.is_dir() and (cifar_dir / "data_batch_1").is_file():
        t_ours = best_time(lambda: cifar.load_cifar_python(cifar_dir), args.repeat)
        t_231n = best_time(lambda: cs231n_style(cifar_dir), args.repeat)
        t_loop = best_time(lambda: per_image_loop(cifar_dir), 1)
        print(f"CIFAR-10 python folder, 60000 images: imgclf {t_ours:.2f} s | CS231n-style transpose+concatenate "
              f"{t_231n:.2f} s ({t_231n / t_ours:.2f}x) | per-image loop {t_loop:.2f} s ({t_loop / t_ours:.1f}x)")
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "cifar-10-python.tar.gz"
            t_pack = time.perf_counter()
            with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
                tar.add(cifar_dir, arcname="cifar-10-batches-py")
            t_pack = time.perf_counter() - t_pack
            t_arch = best_time(lambda: cifar.load_cifar_archive(archive), args.repeat)
            print(f"CIFAR-10 read straight from a .tar.gz ({archive.stat().st_size / 1e6:.0f} MB, built in "
                  f"{t_pack:.1f} s): {t_arch:.2f} s ({t_arch / t_ours:.1f}x the folder; gzip inflation dominates)")
    else:
        print("CIFAR-10 python batches not found on the search path: skipped")
    if mnist_dir is not None:
        t_ours = best_time(lambda: mnist.load_idx_dir(mnist_dir), args.repeat)
        t_plain = best_time(lambda: mnist_plain(mnist_dir), args.repeat)
        print(f"MNIST idx.gz, 70000 images: imgclf {t_ours:.2f} s | gzip + frombuffer {t_plain:.2f} s "
              f"({t_plain / t_ours:.2f}x; imgclf also checks headers and copies to writable arrays)")
    else:
        print("MNIST not found on the search path: skipped")


if __name__ == "__main__":
    main()
