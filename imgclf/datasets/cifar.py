"""CIFAR-10 readers: the python-pickle batches (a folder, or the .tar.gz read directly) and the binary layout.

Pickles can run arbitrary code when loaded, so batches go through `RestrictedUnpickler`, which resolves
only the handful of numpy globals an array needs and refuses everything else before it is called.
Decoding is whole-array numpy work (frombuffer / reshape / transpose into a preallocated NHWC array), so
the 50,000 training images load in about a second.
"""

from __future__ import annotations

import io
import pickle
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, UnsafePickleError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SIDE = 32
PIXELS = 3 * SIDE * SIDE  # a row: 1024 red, 1024 green, 1024 blue values, each plane row-major
RECORD = 1 + PIXELS  # binary layout: one label byte, then the pixels

# No CIFAR file is anywhere near this (a batch is 31 MB): a bigger archive member is refused before it
# is read into memory.
MAX_MEMBER_BYTES = 1 << 28

_PY_BATCH = re.compile(r"data_batch_(\d+)$")
_BIN_BATCH = re.compile(r"data_batch_(\d+)\.bin$")


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _frombuffer():
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer
    return _frombuffer


def _latin1_encode():
    def encode(text, encoding="utf-8", errors="strict"):
        # Only the one use Python 3 makes of it in protocols < 3: bytes written as latin-1 text.
        if not isinstance(text, str) or encoding != "latin1":
            raise UnsafePickleError(f"refusing _codecs.encode with {type(text).__name__}, {encoding!r}")
        return text.encode("latin1")

    return encode


# (module, name) -> how to get it. The original batches (Python 2, protocol 2) need the first four;
# Python 3 writes bytes as `_codecs.encode(text, "latin1")` in protocol 2 and rebuilds arrays through
# `_frombuffer` in protocol 5. All of them only build arrays or bytes from bytes: none can call anything
# else.
_ALLOWED = {
    ("_codecs", "encode"): _latin1_encode,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the numpy globals a CIFAR batch needs."""

    source = "<pickle>"

    def find_class(self, module, name):
        get = _ALLOWED.get((module, name))
        if get is None:
            raise UnsafePickleError(
                f"{self.source}: refusing to unpickle the global {module}.{name} "
                "(a CIFAR batch needs only numpy arrays; this file may be malicious)"
            )
        return get()

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refusing a pickle with persistent ids")


def safe_unpickle(data, source: str):
    """Load a pickle (bytes, or a path: read straight from the file, saving a copy) through
    RestrictedUnpickler; bytes keys stay bytes (Python 2 batches)."""
    try:
        with (io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else open(data, "rb")) as f:
            unpickler = RestrictedUnpickler(f, encoding="bytes")
            unpickler.source = source
            return unpickler.load()
    except OSError as exc:
        raise DataError(f"{source}: cannot read ({exc.strerror})") from None
    except UnsafePickleError as exc:
        if str(exc).startswith(source):
            raise
        raise UnsafePickleError(f"{source}: {exc}") from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise DataError(f"{source}: truncated or corrupt pickle ({exc})") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise DataError(f"{source}: not a CIFAR batch ({type(exc).__name__}: {exc})") from None


def _str_keys(obj, source: str) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"{source}: not a CIFAR batch (expected a dict, found {type(obj).__name__})")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def parse_python_batch(data, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows uint8 (n, 3072), labels int64 (n,)) from one pickled batch (its bytes or its path)."""
    batch = _str_keys(safe_unpickle(data, source), source)
    if "fine_labels" in batch:
        raise DataError(f"{source}: this is a CIFAR-100 batch; only CIFAR-10 is supported")
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"{source}: not a CIFAR-10 batch (no {key!r} entry; keys: {', '.join(batch)})")
    rows = batch["data"]
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != PIXELS:
        shape = getattr(rows, "shape", None)
        raise DataError(f"{source}: 'data' must be a uint8 array (n, {PIXELS}), got {type(rows).__name__} {shape}")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{source}: 'labels' is not a list of integers") from None
    if labels.shape != (rows.shape[0],):
        raise DataError(f"{source}: {rows.shape[0]} images but {labels.size} labels")
    return rows, labels


def parse_python_meta(data, source: str) -> list[str]:
    meta = _str_keys(safe_unpickle(data, source), source)
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{source}: no 'label_names' list")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def parse_binary_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows uint8 (n, 3072), labels int64 (n,)) from a binary batch: records of 1 label + 3072 bytes."""
    if not data or len(data) % RECORD:
        raise DataError(
            f"{source}: {len(data)} bytes is not a whole number of {RECORD}-byte records "
            "(1 label byte + 3072 pixel bytes); the file is truncated or not a CIFAR-10 binary batch"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CLASSES):
        raise DataError(f"{source}: label {labels.max()} outside 0..9 (not a CIFAR-10 binary batch)")
    return records[:, 1:], labels


def parse_binary_meta(data: bytes) -> list[str]:
    return [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]


def to_images(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack (rows, labels) batches into uint8 (N, 32, 32, 3) images and int64 labels."""
    n = sum(len(labels) for _, labels in batches)
    X = np.empty((n, SIDE, SIDE, 3), dtype=np.uint8)
    y = np.empty(n, dtype=np.int64)
    at = 0
    for rows, labels in batches:
        k = len(labels)
        # Planar rows -> HWC, one colour plane at a time: each read is contiguous, which is about
        # twice as fast as copying through a full (0, 2, 3, 1) transpose.
        for c in range(3):
            X[at:at + k, :, :, c] = rows[:, c * SIDE * SIDE:(c + 1) * SIDE * SIDE].reshape(k, SIDE, SIDE)
        y[at:at + k] = labels
        at += k
    return X, y


def _assemble(train: list, test: list, classes: list[str] | None, source: str):
    if not train:
        raise DataError(f"{source}: no training batches (data_batch_1 ...) found")
    classes = classes or list(CLASSES)
    Xtr, ytr = to_images(train)
    Xte, yte = to_images(test) if test else (None, None)
    return Xtr, ytr, Xte, yte, classes


def _numbered(files: dict, pattern: re.Pattern) -> list[str]:
    found = sorted((int(m.group(1)), name) for name in files if (m := pattern.match(name)))
    return [name for _, name in found]


def _from_files(files: dict, source: str):
    """Decode a {basename: bytes} set of batch files (python batches may be paths), either layout."""
    python = _numbered(files, _PY_BATCH)
    if python:
        train = [parse_python_batch(files[n], f"{source}/{n}") for n in python]
        test = [parse_python_batch(files["test_batch"], f"{source}/test_batch")] if "test_batch" in files else []
        meta = files.get("batches.meta")
        classes = parse_python_meta(meta, f"{source}/batches.meta") if meta is not None else None
    else:
        binary = _numbered(files, _BIN_BATCH)
        train = [parse_binary_batch(files[n], f"{source}/{n}") for n in binary]
        test = [parse_binary_batch(files["test_batch.bin"], f"{source}/test_batch.bin")] if "test_batch.bin" in files else []
        meta = files.get("batches.meta.txt")
        classes = parse_binary_meta(meta) if meta is not None else None
    return _assemble(train, test, classes, source)


def _list_dir(path: Path, pattern: re.Pattern, extra: tuple[str, ...]) -> dict[str, Path]:
    if not path.is_dir():
        raise DataError(f"{path}: no such directory")
    return {p.name: p for p in path.iterdir() if p.is_file() and (pattern.match(p.name) or p.name in extra)}


def _read_all(files: dict[str, Path]) -> dict[str, bytes]:
    try:
        return {name: p.read_bytes() for name, p in files.items()}
    except OSError as exc:
        raise DataError(f"{exc.filename}: cannot read ({exc.strerror})") from None


def load_cifar_python(path) -> tuple:
    """(X_train, y_train, X_test, y_test, classes) from a `cifar-10-batches-py` folder."""
    path = Path(path)
    files = _list_dir(path, _PY_BATCH, ("test_batch", "batches.meta"))
    if not _numbered(files, _PY_BATCH):
        raise DataError(f"{path}: no data_batch_N files (not a CIFAR-10 python folder)")
    return _from_files(files, str(path))


def load_cifar_binary(path) -> tuple:
    """(X_train, y_train, X_test, y_test, classes) from a `cifar-10-batches-bin` folder."""
    path = Path(path)
    files = _read_all(_list_dir(path, _BIN_BATCH, ("test_batch.bin", "batches.meta.txt")))
    if not _numbered(files, _BIN_BATCH):
        raise DataError(f"{path}: no data_batch_N.bin files (not a CIFAR-10 binary folder)")
    return _from_files(files, str(path))


_WANTED = re.compile(r"(data_batch_\d+(\.bin)?|test_batch(\.bin)?|batches\.meta(\.txt)?)$")


def load_cifar_archive(path) -> tuple:
    """Read `cifar-10-python.tar.gz` or `cifar-10-binary.tar.gz` without extracting it to disk.

    Members are read in one sequential pass (a gzip stream cannot seek back cheaply); only regular files
    whose base name is a batch or meta file are read, so odd member paths never touch the file system.
    """
    path = Path(path)
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and _WANTED.match(base):
                    if member.size > MAX_MEMBER_BYTES:
                        raise DataError(f"{path}: member {member.name!r} declares {member.size} bytes, far more "
                                        "than a CIFAR-10 batch (refusing to read it)")
                    files[base] = tar.extractfile(member).read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: truncated or corrupt archive ({exc})") from None
    if not (_numbered(files, _PY_BATCH) or _numbered(files, _BIN_BATCH)):
        raise DataError(f"{path}: no CIFAR-10 batches in this archive")
    return _from_files(files, str(path))
