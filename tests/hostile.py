"""Writers of hostile inputs: forged pickles, zip and tar bombs, lying headers, broken model files.

Everything is built at test time in a temporary folder, each file a few kilobytes at most (the bombs
declare gigabytes, they do not hold them). `tests/test_hostile.py` runs imgclf on each one.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from datafiles import cifar_batch_bytes, cifar_rows

# -- forged pickles ------------------------------------------------------------------------------------
P = pickle


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _int(v: int) -> bytes:
    return b"J" + v.to_bytes(4, "little", signed=True)


def _str(s: bytes) -> bytes:
    return b"X" + len(s).to_bytes(4, "little") + s


def forged_dtype(code: bytes = b"u1", order: bytes = b"|", elsize: int = -1, flags: int = 0) -> bytes:
    """numpy.dtype(code) followed by BUILD with a state we choose (flags, item size)."""
    return (_global("numpy", "dtype") + _str(code) + P.NEWFALSE + P.NEWTRUE + P.TUPLE3 + P.REDUCE
            + b"(K\x03" + _str(order) + b"NNN" + _int(elsize) + _int(-1) + _int(flags) + b"t" + P.BUILD)


def forged_array(shape: tuple[int, ...], raw, dtype: bytes | None = None) -> bytes:
    """numpy's _reconstruct(ndarray, (0,), b'b') then BUILD with (1, shape, dtype, False, raw)."""
    s = (_global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray") + b"K\x00\x85"
         + b"C\x01b" + P.TUPLE3 + P.REDUCE)
    s += b"(K\x01(" + b"".join(_int(v) for v in shape) + b"t" + (dtype or forged_dtype()) + P.NEWFALSE
    if isinstance(raw, bytes):
        s += b"B" + len(raw).to_bytes(4, "little") + raw
    else:  # a list of small ints: what numpy expects for object arrays
        s += b"](" + b"".join(b"K" + bytes([v]) for v in raw) + b"e"
    return s + b"t" + P.BUILD


def forged_batch(data: bytes, labels: bytes) -> bytes:
    """A protocol-2 pickle of {b'data': <data>, b'labels': <labels>}."""
    return b"\x80\x02}(" + b"C\x04data" + data + b"C\x06labels" + labels + b"u."


def int_list(values) -> bytes:
    return b"](" + b"".join(_int(v) for v in values) + b"e"


def billion_laughs(levels: int = 9, width: int = 10) -> bytes:
    """A list of `width` references to a list of `width` references ... : width**levels ints in a few
    hundred bytes (memoised, so the pickle never repeats anything)."""
    s = b"]" + b"(" + b"K\x00" * width + b"e" + b"q\x00"  # level 0, memo 0
    for i in range(1, levels):
        # POP the previous level off the stack: only the memo keeps it.
        s += b"0" + b"](" + (b"h" + bytes([i - 1])) * width + b"e" + b"q" + bytes([i])
    return s


def cifar_folder(folder: Path, batch: bytes, meta: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data_batch_1").write_bytes(batch)
    if meta is not None:
        (folder / "batches.meta").write_bytes(meta)
    return folder


def valid_batch(n: int = 4, seed: int = 0) -> bytes:
    return cifar_batch_bytes(*cifar_rows(n, seed))


def batch_with_labels(labels, n: int = 2) -> bytes:
    rows, _ = cifar_rows(n, 0)
    return pickle.dumps({b"data": rows, b"labels": labels}, protocol=2)


def meta_with_names(names) -> bytes:
    return pickle.dumps({b"label_names": names}, protocol=2)


# -- idx -------------------------------------------------------------------------------------------------
def idx_folder(folder: Path, image_dims=(2, 28, 28), label_n=2, image_payload: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = image_dims
    payload = image_payload if image_payload is not None else bytes(n * h * w)
    (folder / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, h, w) + payload)
    (folder / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, label_n) + bytes(label_n))
    return folder


# -- .npz ------------------------------------------------------------------------------------------------
def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray], meta=None, raw_meta: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in arrays.items():
            z.writestr(f"{k}.npy", npy_bytes(v))
        text = raw_meta if raw_meta is not None else json.dumps(meta)
        z.writestr("meta.npy", npy_bytes(np.array(text)))
    return buf.getvalue()


def lying_header_npz(meta: dict, shape=(10 ** 12,)) -> bytes:
    """An .npz whose array header declares `shape` float32 but holds 16 bytes."""
    head = io.BytesIO()
    npy.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": shape})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model_W.npy", head.getvalue() + bytes(16))
        z.writestr("meta.npy", npy_bytes(np.array(json.dumps(meta))))
    return buf.getvalue()


def bad_unicode_npz() -> bytes:
    """Metadata text holding the code point 0xFFFFFFFF (numpy would pass it to Python's str)."""
    head = io.BytesIO()
    npy.write_array_header_1_0(head, {"descr": "<U1", "fortran_order": False, "shape": ()})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("meta.npy", head.getvalue() + b"\xff\xff\xff\xff")
    return buf.getvalue()


def zip_bomb_npz(meta: dict, n_bytes: int, declare: int | None = None) -> bytes:
    """An .npz with one deflated member of `n_bytes` zeros (a consistent .npy header): ~1000:1.

    With `declare`, the .npy header and the zip's size fields claim `declare` bytes instead (< 4 GiB):
    what a bigger bomb looks like to a reader that checks sizes before inflating, built in a moment.
    """
    size = declare or n_bytes
    head = io.BytesIO()
    npy.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": (size,)})
    head = head.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model_W.npy", head + bytes(n_bytes))
        z.writestr("meta.npy", npy_bytes(np.array(json.dumps(meta))))
    data = bytearray(buf.getvalue())
    if declare:
        real = struct.pack("<I", len(head) + n_bytes)
        for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            pos = data.index(sig)  # model_W.npy is the first member in both directories
            assert data[pos + at:pos + at + 4] == real
            data[pos + at:pos + at + 4] = struct.pack("<I", len(head) + size)
    return bytes(data)


# -- model files -----------------------------------------------------------------------------------------
def model_file(kind: str = "softmax", *, meta_edit=None, arrays_edit=None, d: int = 12, c: int = 3) -> bytes:
    """A valid small model file of `kind` (softmax, knn, twolayer/net, convnet), edited by the callables."""
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"][:c]
    if kind == "softmax":
        hyper = {"batch_size": 200, "best_epoch_": 1, "bias_trick": True, "epochs": 1, "iters": None, "lr": 1e-3,
                 "lr_decay": 0.95, "n_features_in_": d, "optim": "sgd", "random_state": 0, "reg": 0.0,
                 "stopped_": None, "weight_scale": 1e-4}
        arrays = {"model_W": rng.standard_normal((d + 1, c)).astype(np.float32),
                  "model_classes": np.arange(c, dtype=np.int64)}
    elif kind == "knn":
        hyper = {"k": 1, "memory_mb": 64, "metric": "l2"}
        arrays = {"model_X_train": rng.integers(0, 255, (6, d)).astype(np.uint8),
                  "model_y_train": np.arange(6, dtype=np.int64) % c}
    elif kind == "net":
        hyper = {"hidden": [4], "n_features_in_": d, "best_epoch_": 1, "stopped_": None}
        arrays = {"model_W1": rng.standard_normal((d, 4)).astype(np.float32), "model_b1": np.zeros(4, np.float32),
                  "model_W2": rng.standard_normal((4, c)).astype(np.float32), "model_b2": np.zeros(c, np.float32),
                  "model_classes": np.arange(c, dtype=np.int64)}
    elif kind == "convnet":
        hyper = {"filters": [2], "filter_size": 3, "hidden": [4], "pool": 2, "input_shape": [2, 2, 3],
                 "n_features_in_": d, "best_epoch_": 1, "stopped_": None}
        arrays = {"model_W1": rng.standard_normal((3, 3, 3, 2)).astype(np.float32),
                  "model_b1": np.zeros(2, np.float32),
                  "model_W2": rng.standard_normal((2, 4)).astype(np.float32), "model_b2": np.zeros(4, np.float32),
                  "model_W3": rng.standard_normal((4, c)).astype(np.float32), "model_b3": np.zeros(c, np.float32),
                  "model_classes": np.arange(c, dtype=np.int64),
                  "model_input_mean": np.zeros(3, np.float32), "model_input_scale": np.ones(3, np.float32)}
    else:
        raise ValueError(kind)
    meta = {"format": "imgclf-model", "version": 1, "kind": kind, "hyperparameters": hyper, "classes": classes,
            "input_shape": [2, 2, 3], "transforms": [], "history": [], "seed": 0, "extra": {}}
    if meta_edit:
        meta_edit(meta)
    if arrays_edit:
        arrays_edit(arrays)
    return npz_bytes(arrays, meta)


def set_path(path: str, value):
    """A meta_edit setting meta[a][b]... = value, for `a.b`."""
    def edit(meta):
        *head, last = path.split(".")
        node = meta
        for key in head:
            node = node[key]
        node[last] = value
    return edit


# -- streams ---------------------------------------------------------------------------------------------
def stream_bytes(X=None, y=None, *, image_shape=None, classes=("a", "b", "c"), transforms=None) -> bytes:
    X = np.zeros((4, 2, 2, 3), np.uint8) if X is None else X
    y = np.arange(len(X), dtype=np.int64) % len(classes) if y is None else y
    meta = {"format": "imgclf-pipeline", "version": 1, "name": "t", "classes": list(classes),
            "image_shape": list(image_shape or X.shape[1:]), "transforms": transforms or []}
    return npz_bytes({"X_train": X, "y_train": y, "X_test": X, "y_test": y}, meta)


# -- archives --------------------------------------------------------------------------------------------
def tar_bytes(members) -> bytes:
    """A .tar.gz of (TarInfo, data or None) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def member(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def zeros_member_tar(n_members: int, size: int) -> bytes:
    """`n_members` CIFAR-named members of `size` zero bytes each (they compress to almost nothing)."""
    return tar_bytes([(member(f"cifar-10-batches-py/data_batch_{i}"), bytes(size)) for i in range(1, n_members + 1)])


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root (links not followed): its kind, mode and content hash."""
    import hashlib

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = None
            if p.is_symlink():
                digest = os.readlink(p)
            elif p.is_file():
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(root))] = (st.st_mode, digest)
    return out

