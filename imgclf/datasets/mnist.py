"""MNIST and Fashion-MNIST: idx files, gzipped or not.

An idx file is a big-endian header (magic, then one uint32 count per dimension) followed by the raw
values. Images are idx3 ubyte (magic 2051 = 0x00000803: N, rows, cols), labels idx1 ubyte
(magic 2049 = 0x00000801: N). Both datasets use the same four file names; the class names come from
the folder name (`fashion` in it means Fashion-MNIST).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import DataError

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# split -> (images stem, labels stem); files may end in .gz, and some copies use a dot before idx.
STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx_bytes(path: Path) -> bytes:
    """The decompressed bytes of an idx file (gzip recognised by its magic, not its name)."""
    # MNIST's largest file is 47 MB; a gzip that inflates past the ceiling is refused (a gzip bomb
    # costs a few kilobytes and would otherwise fill the memory).
    limit = limits.get("input_bytes")
    try:
        with open(path, "rb") as f:
            if f.read(2) != _GZIP_MAGIC:
                f.seek(0)
                data = limits.read_at_most(f, limit)
            else:
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as gz:
                    data = limits.read_at_most(gz, limit)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > limit:
        raise DataError(f"{path}: more than {limit} bytes (refusing a likely gzip bomb; {limits.hint('input_bytes')})")
    return data


def _header(data: bytes, magic: int, ndim: int, what: str, source: str) -> tuple[int, ...]:
    head = 4 + 4 * ndim
    if len(data) < head:
        raise DataError(f"{source}: only {len(data)} bytes, too short for an idx{ndim} header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DataError(
            f"{source}: wrong magic number {found} (0x{found:08x}); an idx{ndim} {what} file starts with "
            f"{magic} (0x{magic:08x})"
        )
    dims = struct.unpack(f">{ndim}I", data[4:head])
    # Python integers: a product of big dimensions must not wrap around (2^31 x 2^31 x 4 is 0 in int64).
    expected = head + math.prod(dims)
    if len(data) != expected:
        shape = "x".join(str(d) for d in dims)
        state = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{source}: {state}: the header promises {shape} values ({expected} bytes with the header) "
            f"but the file holds {len(data)} bytes"
        )
    return dims


def parse_images(data: bytes, source: str) -> np.ndarray:
    """uint8 images (N, rows, cols, 1) from the bytes of an idx3 ubyte file."""
    n, rows, cols = _header(data, IMAGE_MAGIC, 3, "image", source)
    # A copy: frombuffer over bytes is read-only, and every other reader returns writable arrays.
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols, 1).copy()


def parse_labels(data: bytes, source: str) -> np.ndarray:
    """int64 labels (N,) from the bytes of an idx1 ubyte file."""
    _header(data, LABEL_MAGIC, 1, "label", source)
    return np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)


def find_file(folder: Path, stem: str) -> Path | None:
    """`stem`, `stem.gz`, or the dotted variant (`train-images.idx3-ubyte`) in `folder`."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    image_stem, label_stem = STEMS[split]
    images, labels = find_file(folder, image_stem), find_file(folder, label_stem)
    if images is None and labels is None:
        return None
    if images is None or labels is None:
        missing = image_stem if images is None else label_stem
        raise DataError(f"{folder}: has the {split} {'labels' if images is None else 'images'} "
                        f"but no {missing}[.gz]")
    X = parse_images(read_idx_bytes(images), str(images))
    y = parse_labels(read_idx_bytes(labels), str(labels))
    if len(X) != len(y):
        raise DataError(f"{folder}: {len(X)} {split} images but {len(y)} labels")
    return X, y


def classes_for(folder: Path) -> list[str]:
    names = (folder.name, folder.resolve().parent.name)
    return list(FASHION_CLASSES) if any("fashion" in n.lower() for n in names) else list(MNIST_CLASSES)


def load_idx_dir(path) -> tuple:
    """(X_train, y_train, X_test, y_test, classes) from a folder of MNIST-style idx files."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such directory")
    train = load_split(folder, "train")
    if train is None:
        raise DataError(f"{folder}: no {STEMS['train'][0]}[.gz] and {STEMS['train'][1]}[.gz] files")
    test = load_split(folder, "test")
    Xte, yte = test if test is not None else (None, None)
    classes = classes_for(folder)
    for y, split in ((train[1], "train"), (yte, "test")):
        if y is not None and len(y) and y.max() >= len(classes):
            raise DataError(f"{folder}: {split} label {y.max()} outside 0..{len(classes) - 1}")
    return train[0], train[1], Xte, yte, classes
