"""The one container every imgclf file uses: an .npz of arrays plus a JSON `meta` entry.

Loaded with allow_pickle=False, always. `-` means stdin/stdout.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .atomic import atomic_write_bytes, write_all, write_stdout

META_KEY = "meta"


def to_bytes(arrays: dict[str, np.ndarray], meta: dict) -> bytes:
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved")
    buf = io.BytesIO()
    payload = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    payload[META_KEY] = np.array(json.dumps(meta, sort_keys=True))
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


def read_source_bytes(source) -> tuple[bytes, str]:
    """The raw bytes of a path, `-` (stdin) or a binary file object, and a name for messages."""
    if source == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    if hasattr(source, "read"):
        return source.read(), getattr(source, "name", "<stream>")
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return path.read_bytes(), str(path)


def read(source, expect_format: str | None = None, error=DataError) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) from an imgclf .npz; clear errors for empty, truncated or foreign files."""
    data, name = read_source_bytes(source)
    if not data:
        raise error(f"{name}: empty input (nothing was piped in?)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise error(f"{name}: not a readable imgclf .npz file ({exc})") from None
    if META_KEY not in arrays:
        raise error(f"{name}: not an imgclf file (no {META_KEY!r} entry)")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except json.JSONDecodeError as exc:
        raise error(f"{name}: corrupt metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise error(f"{name}: corrupt metadata")
    if expect_format is not None and meta.get("format") != expect_format:
        found = meta.get("format", "unknown")
        raise error(f"{name}: expected an {expect_format} file, found {found!r}")
    return meta, arrays


def is_terminal(stream) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
