"""CIFAR-10 readers: the python-pickle batches (a folder, or the .tar.gz read directly) and the binary layout.

Pickles can run arbitrary code when loaded, so batches go through `RestrictedUnpickler`, which resolves
only the handful of numpy globals an array needs and refuses everything else before it is called.
Decoding is whole-array numpy work (frombuffer / reshape / transpose into a preallocated NHWC array), so
the 50,000 training images load in about a second.
"""

from __future__ import annotations

import io
import math
import os
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


_PY_BATCH = re.compile(r"data_batch_(\d+)$")
_BIN_BATCH = re.compile(r"data_batch_(\d+)\.bin$")


class _Dtype:
    """Stands in for numpy.dtype while unpickling: records the type code and byte order only.

    numpy's own dtype.__setstate__ trusts its state (flags, item size): a forged state made an int64
    dtype that numpy read as object pointers, and reading it crashed the process. Here nothing but
    the code and byte order survive, and `_materialise` builds a fresh dtype from them.
    """

    def __init__(self, code, align=False, copy=True):
        self.code, self.order = _text(code, "a dtype code"), "|"

    def __setstate__(self, state):
        order = _text(state[1], "a dtype's byte order") if isinstance(state, tuple) and len(state) > 1 else None
        if order not in ("<", ">", "|", "="):
            raise UnsafePickleError("malformed dtype state")
        self.order = order

    def real(self) -> np.dtype:
        if self.code not in _DTYPES:
            raise UnsafePickleError(f"refusing an array of dtype {self.code!r} (CIFAR batches hold only plain "
                                    f"numeric arrays)")
        dt = np.dtype(self.code)
        return dt.newbyteorder(self.order) if self.order in "<>" else dt


def _text(value, what: str) -> str:
    """Python 2 pickles read with encoding="bytes" give their str values as bytes."""
    if isinstance(value, bytes):
        value = value.decode("latin1")
    if not isinstance(value, str):
        raise UnsafePickleError(f"{what} must be a string, got {type(value).__name__}")
    return value


# Plain numeric codes only: no object, string, void or structured dtypes.
_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "b1", "f4", "f8"}


class _Array:
    """Stands in for an ndarray while unpickling: (shape, dtype, raw bytes), validated afterwards."""

    def __init__(self, shape=None, dtype=None, raw=None, fortran=False):
        self.shape, self.dtype, self.raw, self.fortran = shape, dtype, raw, fortran

    def __setstate__(self, state):
        # ndarray's state: (version, shape, dtype, is_fortran, raw bytes); version 1 has no leading int.
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise UnsafePickleError("malformed array state")
        self.shape, self.dtype, self.fortran, raw = state
        if not isinstance(raw, (bytes, bytearray)):
            raise UnsafePickleError("refusing an array whose data is not raw bytes (an object array?)")
        self.raw = raw


class _ArrayType:
    """The `numpy.ndarray` global: only ever passed to `_reconstruct`."""


def _reconstruct(cls, shape, dtype_code):
    if cls is not _ArrayType:
        raise UnsafePickleError("_reconstruct may only build plain arrays")
    return _Array()


def _frombuffer(buf, dtype, shape, order):
    """Protocol 5's rebuild of an array: the same parts as ndarray's state."""
    if isinstance(buf, pickle.PickleBuffer):
        buf = bytes(buf)
    if not isinstance(buf, (bytes, bytearray)):
        raise UnsafePickleError("refusing an array whose data is not raw bytes")
    return _Array(shape, dtype, buf, order == "F")


def _materialise(obj, source: str, memo: dict):
    """Replace every stand-in in a batch's dicts/lists by a real array, built from validated parts.

    Shared sub-objects are converted once (`memo`): a pickle can reference one list many times over
    ("billion laughs"), and walking every path through it would take exponential time.
    """
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, _Array):
        out = _to_array(obj, source)
    elif isinstance(obj, dict):
        out = {k: _materialise(v, source, memo) for k, v in obj.items()}
    elif isinstance(obj, list):
        out = [_materialise(v, source, memo) for v in obj]
    elif isinstance(obj, (_Dtype, _ArrayType)) or obj is _ArrayType:
        raise DataError(f"{source}: a bare numpy dtype or class where a CIFAR batch holds data")
    else:
        out = obj
    memo[key] = out
    return out


def _to_array(a: _Array, source: str) -> np.ndarray:
    from .. import limits

    if a.raw is None or not isinstance(a.dtype, _Dtype):
        raise DataError(f"{source}: an array without its data or dtype (truncated or forged pickle)")
    shape = a.shape
    if not (isinstance(shape, tuple) and len(shape) <= 4
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape)):
        raise DataError(f"{source}: malformed array shape {shape!r}")
    try:
        dtype = a.dtype.real()
    except UnsafePickleError as exc:
        raise DataError(f"{source}: {exc}") from None
    count = math.prod(shape)
    limits.check("array_elements", count, f"{source}: an array's element count", DataError)
    # Python integers: a product of huge dimensions cannot wrap around and pass this check.
    if count * dtype.itemsize != len(a.raw):
        raise DataError(f"{source}: an array of shape {shape} and dtype {dtype} needs "
                        f"{count * dtype.itemsize} bytes, but the pickle holds {len(a.raw)} "
                        "(truncated or forged)")
    return np.frombuffer(a.raw, dtype=dtype).reshape(shape, order="F" if a.fortran else "C")


def _latin1_encode():
    def encode(text, encoding="utf-8", errors="strict"):
        # Only the one use Python 3 makes of it in protocols < 3: bytes written as latin-1 text.
        if not isinstance(text, str) or encoding != "latin1":
            raise UnsafePickleError(f"refusing _codecs.encode with {type(text).__name__}, {encoding!r}")
        return text.encode("latin1")

    return encode


# (module, name) -> what the unpickler gets instead. The original batches (Python 2, protocol 2) need
# the first four; Python 3 writes bytes as `_codecs.encode(text, "latin1")` in protocol 2 and rebuilds
# arrays through `_frombuffer` in protocol 5. None of them is numpy's own: numpy's array and dtype
# constructors and their __setstate__ trust the pickle, so arrays are rebuilt by `_materialise` from
# (shape, dtype, bytes) once their sizes agree.
_ALLOWED = {
    ("_codecs", "encode"): _latin1_encode,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: _reconstruct,
    ("numpy", "ndarray"): lambda: _ArrayType,
    ("numpy", "dtype"): lambda: _Dtype,
    ("numpy.core.numeric", "_frombuffer"): lambda: _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): lambda: _frombuffer,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only stand-ins for the numpy globals a CIFAR batch needs."""

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
    """Load a pickle (bytes, or a path) through RestrictedUnpickler, then rebuild its arrays from
    validated parts; bytes keys stay bytes (Python 2 batches)."""
    try:
        if not isinstance(data, (bytes, bytearray)):
            data = _read_file(Path(data), source)
        unpickler = RestrictedUnpickler(io.BytesIO(data), encoding="bytes")
        unpickler.source = source
        obj = unpickler.load()
    except UnsafePickleError as exc:
        if str(exc).startswith(source):
            raise
        raise UnsafePickleError(f"{source}: {exc}") from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise DataError(f"{source}: truncated or corrupt pickle ({exc})") from None
    except RecursionError:
        raise DataError(f"{source}: not a CIFAR batch (nested too deeply)") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError, OverflowError) as exc:
        raise DataError(f"{source}: not a CIFAR batch ({type(exc).__name__}: {exc})") from None
    try:
        return _materialise(obj, source, {})
    except RecursionError:
        raise DataError(f"{source}: not a CIFAR batch (nested too deeply)") from None


def _read_file(path: Path, source: str) -> bytes:
    """A file's bytes, refusing one bigger than the input ceiling before reading it."""
    from .. import limits

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            limits.check("input_bytes", size, f"{source}: the file size", DataError)
            return f.read()
    except OSError as exc:
        raise DataError(f"{source}: cannot read ({exc.strerror})") from None


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
    labels = _labels(batch["labels"], rows.shape[0], source)
    return rows, labels


def _labels(labels, n: int, source: str) -> np.ndarray:
    """int64 labels from a batch's list (or integer array): checked to be n integers in 0..9 before
    numpy converts anything (a nested or float list would be built or truncated silently)."""
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataError(f"{source}: 'labels' must be a list of integers, got a {labels.dtype} array "
                            f"of shape {labels.shape}")
        values = labels
    elif isinstance(labels, list):
        if len(labels) == n and not all(type(v) is int for v in labels):
            bad = next(v for v in labels if type(v) is not int)
            raise DataError(f"{source}: 'labels' must be a list of integers, found a {type(bad).__name__}")
        values = labels
    else:
        raise DataError(f"{source}: 'labels' must be a list of integers, got {type(labels).__name__}")
    if len(values) != n:
        raise DataError(f"{source}: {n} images but {len(values)} labels")
    if n and (min(values) < 0 or max(values) >= len(CLASSES)):
        raise DataError(f"{source}: labels must lie in 0..{len(CLASSES) - 1}, found {min(values)}..{max(values)}")
    return np.asarray(values, dtype=np.int64)


def parse_python_meta(data, source: str) -> list[str]:
    meta = _str_keys(safe_unpickle(data, source), source)
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{source}: no 'label_names' list")
    if not all(isinstance(n, (bytes, str)) for n in names) or len(names) > 1000:
        raise DataError(f"{source}: 'label_names' must be a list of at most 1000 names")
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: a class name is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


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
    return {name: _read_file(p, str(p)) for name, p in files.items()}


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
    from .. import limits

    path = Path(path)
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and _WANTED.match(base):
                    if member.size > limits.get("member_bytes"):
                        raise DataError(f"{path}: member {member.name!r} declares {member.size} bytes, far more "
                                        f"than a CIFAR-10 batch (refusing to read it; {limits.hint('member_bytes')})")
                    # Per member and in total: many big members (or one name repeated) add up.
                    total += member.size - len(files.get(base, b""))
                    limits.check("input_bytes", total, f"{path}: the batch members' total size", DataError)
                    files[base] = tar.extractfile(member).read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: truncated or corrupt archive ({exc})") from None
    if not (_numbered(files, _PY_BATCH) or _numbered(files, _BIN_BATCH)):
        raise DataError(f"{path}: no CIFAR-10 batches in this archive")
    return _from_files(files, str(path))
