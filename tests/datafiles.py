"""Writers of small dataset files in the official layouts, for the dataset, download and CLI tests."""

from __future__ import annotations

import gzip
import http.server
import io
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    return r.integers(0, 256, size=(n, 3072), dtype=np.uint8), r.integers(0, 10, size=n).astype(np.int64)


def cifar_batch_bytes(rows, labels, *, protocol=2, str_keys=False) -> bytes:
    """A batch pickled like the originals (bytes keys, list labels) or like Python 3 would (str keys)."""
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    return pickle.dumps({key("batch_label"): b"batch", key("labels"): [int(v) for v in labels],
                         key("data"): rows}, protocol=protocol)


def write_cifar_python(folder: Path, n_per_batch=20, n_batches=2, seed=0, **kw) -> dict:
    """`data_batch_1..k`, `test_batch`, `batches.meta`; returns the rows and labels written."""
    folder.mkdir(parents=True, exist_ok=True)
    train = [cifar_rows(n_per_batch, seed + i) for i in range(n_batches)]
    test = cifar_rows(n_per_batch, seed + 100)
    for i, (rows, labels) in enumerate(train, 1):
        (folder / f"data_batch_{i}").write_bytes(cifar_batch_bytes(rows, labels, **kw))
    (folder / "test_batch").write_bytes(cifar_batch_bytes(*test, **kw))
    meta = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {"train": (np.concatenate([r for r, _ in train]), np.concatenate([y for _, y in train])),
            "test": test}


def write_cifar_binary(folder: Path, n_per_batch=20, n_batches=2, seed=0) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    train = [cifar_rows(n_per_batch, seed + i) for i in range(n_batches)]
    test = cifar_rows(n_per_batch, seed + 100)

    def records(rows, labels):
        return np.concatenate([labels.astype(np.uint8)[:, None], rows], axis=1).tobytes()

    for i, (rows, labels) in enumerate(train, 1):
        (folder / f"data_batch_{i}.bin").write_bytes(records(rows, labels))
    (folder / "test_batch.bin").write_bytes(records(*test))
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR_NAMES) + "\n\n")
    return {"train": (np.concatenate([r for r, _ in train]), np.concatenate([y for _, y in train])),
            "test": test}


def rows_to_nhwc(rows: np.ndarray) -> np.ndarray:
    """The reference decoding, pixel by pixel: row[c*1024 + i*32 + j] is pixel (i, j), channel c."""
    out = np.empty((len(rows), 32, 32, 3), dtype=np.uint8)
    for n in range(len(rows)):
        for c in range(3):
            for i in range(32):
                out[n, i, :, c] = rows[n, c * 1024 + i * 32: c * 1024 + i * 32 + 32]
    return out


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def idx_images(X: np.ndarray) -> bytes:
    n, h, w = X.shape[:3]
    return struct.pack(">IIII", 2051, n, h, w) + X.astype(np.uint8).tobytes()


def idx_labels(y: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(y)) + np.asarray(y, dtype=np.uint8).tobytes()


def write_idx(folder: Path, n_train=30, n_test=10, seed=0, gz=True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    r = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        X = r.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = np.arange(n) % 10
        for stem, data in ((f"{split}-images-idx3-ubyte", idx_images(X)), (f"{split}-labels-idx1-ubyte", idx_labels(y))):
            if gz:
                (folder / (stem + ".gz")).write_bytes(gzip.compress(data, mtime=0))
            else:
                (folder / stem).write_bytes(data)
        out[split] = (X, y)
    return out


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array.squeeze()).save(buf, format="PNG")
    return buf.getvalue()


def write_image_folder(root: Path, classes=("cat", "dog"), n=3, shape=(8, 8, 3), seed=0) -> None:
    r = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / c / f"{i:03d}.png").write_bytes(png_bytes(r.integers(0, 256, size=shape, dtype=np.uint8)))


def png_zeros(width: int, height: int, rows: int | None = None) -> bytes:
    """An all-black 8-bit grayscale PNG written by hand: a decompression bomb when width x height is huge.

    Only `rows` rows (default all) are actually encoded, so a file declaring gigapixels costs nothing to
    build; readers must refuse it from the header alone.
    """
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    body = b"".join(comp.compress(row) for _ in range(height if rows is None else rows)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncate: set[str] = set()
    no_length: set[str] = set()
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.requests.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if self.path not in self.no_length:  # without it, the end of the body is the closed connection
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # A truncated download: the full length is announced, half the body is sent, the connection drops.
        self.wfile.write(body[: len(body) // 2] if self.path in self.truncate else body)
        if self.path in self.truncate:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1 (random port) serving `files` (path -> bytes)."""
    handler = type("Handler", (_Handler,), {"files": {}, "truncate": set(), "no_length": set(), "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.handler = handler
    yield httpd
    httpd.shutdown()
    httpd.server_close()
