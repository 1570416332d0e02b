"""The one container every imgclf file uses: an .npz of arrays plus a JSON `meta` entry.

Loaded with allow_pickle=False, always. `-` means stdin/stdout.
"""

from __future__ import annotations

import io
import json
import os
import sys
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import DataError, ImgclfError
from .atomic import atomic_write_bytes, write_all, write_stdout

META_KEY = "meta"


def plain(value):
    """`value` with numpy scalars as the Python numbers and bools they hold, numpy arrays as lists, tuples
    as lists and numpy dict keys as Python ones: what JSON can hold. An estimator fitted with numpy
    hyperparameters (GridSearchCV's best_estimator_ over np.logspace/np.arange grids, hidden=np.int64(8),
    batchnorm=np.True_) is saved with the values it was fitted with, which loading checks as fit does."""
    if isinstance(value, dict):
        return {(k.item() if isinstance(k, np.generic) else k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_bytes(arrays: dict[str, np.ndarray], meta: dict) -> bytes:
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved")
    buf = io.BytesIO()
    payload = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    payload[META_KEY] = np.array(json.dumps(plain(meta), sort_keys=True))
    np.savez(buf, **payload)
    return buf.getvalue()


def write(target, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write to a path (atomically), to stdout for `-`, or to an open binary file object."""
    data = to_bytes(arrays, meta)
    if target in ("-", None):
        write_stdout(data)
    elif hasattr(target, "write"):
        write_all(target, data, getattr(target, "name", "<stream>"))
    else:
        atomic_write_bytes(target, data)


def read_source_bytes(source, error=DataError) -> tuple[bytes, str]:
    """The raw bytes of a path, `-` (stdin) or a binary file object, and a name for messages.

    At most the input ceiling is read (limits.py): a stream that keeps coming is refused, not buffered.
    """
    limit = limits.get("input_bytes")
    if source == "-":
        if sys.stdin is None:
            raise error("standard input is closed; pipe a stream in or give a file name")
        if is_terminal(sys.stdin):
            raise error("`-` reads a pipeline stream from standard input, which is a terminal here; pipe one "
                        "in (imgclf data export shapes | imgclf data info -) or give a file name")
        stream, name = sys.stdin.buffer, "<stdin>"
    elif hasattr(source, "read"):
        stream, name = source, getattr(source, "name", "<stream>")
    else:
        path = Path(source)
        if not path.is_file():
            raise error(f"{path}: no such file")
        try:
            with open(path, "rb") as f:
                limits.check("input_bytes", os.fstat(f.fileno()).st_size, f"{path}: the file size", error)
                return f.read(), str(path)
        except OSError as exc:
            raise error(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = limits.read_at_most(stream, limit)
    except OSError as exc:
        raise error(f"{name}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise error(f"{name}: more than {limit} bytes ({limits.hint('input_bytes')})")
    return data, name


# imgclf's own formats, for a clear refusal when one is given where another is expected.
_KNOWN = {"imgclf-model": "a model file", "imgclf-checkpoint": "a training checkpoint",
          "imgclf-pipeline": "a pipeline stream"}
_HINTS = {
    ("imgclf-model", "imgclf-checkpoint"): "a model file holds the trained weights, not the training state a run "
                                           "resumes from: resume from a checkpoint the run wrote into its "
                                           "checkpoint directory",
    ("imgclf-checkpoint", "imgclf-model"): "it holds a run's training state: resume the run from it (the CLI's "
                                           "--resume) to get the model file to predict with",
}


def read(source, expect_format: str | None = None, error=DataError) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) from an imgclf .npz; clear errors for empty, truncated or foreign files."""
    data, name = read_source_bytes(source, error)
    if not data:
        raise error(f"{name}: empty input (nothing was piped in?)")
    arrays = load_arrays(data, name, error)
    if META_KEY not in arrays:
        raise error(f"{name}: not an imgclf file (no {META_KEY!r} entry)")
    meta = arrays.pop(META_KEY)
    if meta.dtype.kind != "U" or meta.ndim != 0:
        raise error(f"{name}: corrupt metadata (not a JSON string)")
    limits.check("json_bytes", meta.nbytes // 4, f"{name}: the metadata's length", error)
    try:
        meta = json.loads(str(meta))
    except json.JSONDecodeError as exc:
        raise error(f"{name}: corrupt metadata ({exc})") from None
    except RecursionError:
        raise error(f"{name}: corrupt metadata (JSON nested too deeply)") from None
    if not isinstance(meta, dict):
        raise error(f"{name}: corrupt metadata")
    if expect_format is not None and meta.get("format") != expect_format:
        found = meta.get("format", "unknown")
        if isinstance(found, str) and found in _KNOWN and expect_format in _KNOWN:
            hint = _HINTS.get((found, expect_format))
            raise error(f"{name}: {_KNOWN[found]}, not {_KNOWN[expect_format]}" + (f" ({hint})" if hint else ""))
        raise error(f"{name}: expected an {expect_format} file, found {found!r}")
    return meta, arrays


# Minimum an .npz may inflate to whatever its size, and the ratio beyond that: imgclf writes its files
# uncompressed, and real data compresses a few times at most, while deflate reaches 1000:1 on zeros.
_INFLATE_FLOOR = 1 << 26
_INFLATE_RATIO = 50


def load_arrays(data: bytes, name: str, error=DataError) -> dict[str, np.ndarray]:
    """Every array of an .npz held in `data`, each checked before it is allocated.

    np.load would trust each member's .npy header and the zip's declared sizes: a few kilobytes could
    ask for terabytes. Here the header's shape x itemsize must equal the member's size, the sizes must
    add up within the ceiling and a bounded inflation of the input, and pickled (object) arrays are
    refused (allow_pickle=False, always).
    """
    if data[:4] != b"PK\x03\x04":
        raise error(f"{name}: not a readable imgclf .npz file (no zip header)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if not infos or min(i.header_offset for i in infos) != 0 or data[-22:-18] != b"PK\x05\x06":
                raise error(f"{name}: not one .npz file (concatenated streams, or trailing bytes)")
            declared = sum(i.file_size for i in infos)
            limits.check("input_bytes", declared, f"{name}: the arrays' total size", error)
            if declared > max(_INFLATE_FLOOR, _INFLATE_RATIO * len(data)):
                raise error(f"{name}: declares {declared} bytes of arrays in {len(data)} bytes of file "
                            "(refusing a likely zip bomb)")
            arrays = {}
            for info in infos:
                key = info.filename[:-4] if info.filename.endswith(".npy") else None
                if not key or key in arrays:
                    raise error(f"{name}: unexpected member {info.filename!r} (not an imgclf .npz file)")
                with zf.open(info) as f:
                    arrays[key] = _read_npy(f, info, name, error)
            return arrays
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError, zlib.error) as exc:  # RuntimeError: an "encrypted" member
        if isinstance(exc, ImgclfError):
            raise
        # zipfile quotes the raw bytes of a damaged name in its message: a few hundred characters do.
        raise error(f"{name}: not a readable imgclf .npz file ({str(exc)[:200]})") from None


def _read_npy(f, info: zipfile.ZipInfo, name: str, error) -> np.ndarray:
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
    if read_header is None:
        raise error(f"{name}: {info.filename} has an unsupported .npy version {version}")
    try:
        shape, fortran, dtype = read_header(f)
    except Exception as exc:  # noqa: BLE001 - numpy parses the header with ast: SyntaxError, TokenError ...
        raise error(f"{name}: {info.filename} has a malformed .npy header ({type(exc).__name__})") from None
    if dtype.hasobject or dtype.kind not in "biufcUS" or dtype.names is not None:
        raise error(f"{name}: {info.filename} has dtype {dtype}; imgclf files hold plain numbers and text")
    count = math.prod(shape)
    limits.check("array_elements", count, f"{name}: {info.filename}'s element count", error)
    size = count * dtype.itemsize
    if size != info.file_size - f.tell():
        raise error(f"{name}: {info.filename} declares shape {shape} of {dtype} ({size} bytes) but holds "
                    f"{info.file_size - f.tell()} bytes (truncated or forged)")
    out = np.empty(count, dtype=dtype)
    got = f.readinto(memoryview(out.view(np.uint8)))
    if got != size:
        raise error(f"{name}: {info.filename} is truncated")
    if dtype.kind == "U" and size and out.view(np.dtype(dtype.byteorder + "u4")).max() > 0x10FFFF:
        # numpy would hand these to Python's str, which fails with a SystemError.
        raise error(f"{name}: {info.filename} holds text that is not Unicode")
    return out.reshape(shape, order="F" if fortran else "C")


def is_terminal(stream) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
