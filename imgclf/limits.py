"""Ceilings on what untrusted input may make imgclf allocate, read or start: every one in this table.

Files and streams are hostile until validated (docs/security.md): a few hundred bytes can declare a
million images, a zip member can inflate a thousandfold, a model's JSON can ask for a billion weights.
Readers therefore check what a file declares against two things before allocating: the bytes really
present (a declared size must match them exactly where the format allows), and the ceiling below.

Every ceiling is far above what the real datasets and models need and can be raised (or lowered) with
the environment variable named beside it, e.g. `IMGCLF_MAX_INPUT_BYTES=16e9`, or in Python with
`limits.override(input_bytes=...)`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class Ceiling:
    default: int
    what: str

    def env(self, name: str) -> str:
        return f"IMGCLF_MAX_{name.upper()}"


CEILINGS = {
    # CIFAR-10's six batches are 180 MB, its float32 stream 0.6 GB, MNIST's files 55 MB.
    "input_bytes": Ceiling(1 << 32, "bytes read into memory from one file, archive or stream (after "
                                    "decompression)"),
    "array_elements": Ceiling(1 << 31, "elements of one array in a file, stream or pickle"),
    # A 1000-hidden two-layer net on CIFAR has 3.1 M, the largest recipe convnet under 10 M.
    "parameters": Ceiling(1 << 28, "weights of one layer of a model (268 M: 1 GiB in float32)"),
    "image_side": Ceiling(1 << 13, "height or width of an image shape (--size, a model's input_shape, a "
                                   "stream's image_shape)"),
    "extract_bytes": Ceiling(1 << 32, "bytes `data get` extracts from an archive or copies from a folder"),
    # CIFAR batches are 31 MB: one member this big is not a batch, whatever the total.
    "member_bytes": Ceiling(1 << 28, "bytes of one CIFAR batch inside a .tar.gz"),
    "image_pixels": Ceiling(1 << 25, "pixels of one image file (33.5 M: far above any classifier input, far "
                                     "below a decompression bomb)"),
    "json_bytes": Ceiling(1 << 26, "bytes of a file's JSON metadata"),
    # Pixels are 0..255 and preprocessed features rarely exceed 1e3; 1e38 is finite but its square is not.
    "feature_magnitude": Ceiling(10 ** 9, "absolute value of a float feature in a stream, or of a weight"),
    "trials": Ceiling(100_000, "trials of one `tune` run"),
    "workers": Ceiling(0, "local worker processes (`--jobs`, `--scheduler local:N`); 0 means the core count "
                          "(at least 2)"),
}

_overrides: dict[str, int] = {}


def get(name: str) -> int:
    """The ceiling `name`: an override, else $IMGCLF_MAX_<NAME>, else the default."""
    ceiling = CEILINGS[name]
    if name in _overrides:
        return _overrides[name]
    raw = os.environ.get(ceiling.env(name))
    if not raw:
        return ceiling.default or max(2, os.cpu_count() or 1)
    try:
        value = float(raw)
        if not (math.isfinite(value) and value >= 1 and value == int(value)):
            raise ValueError
    except ValueError:
        raise UsageError(f"{ceiling.env(name)}={raw!r}: expected a whole number >= 1 such as 8e9") from None
    return int(value)


@contextlib.contextmanager
def override(**values: int):
    """Temporarily replace ceilings (for a library caller who knows its input is big)."""
    old = dict(_overrides)
    unknown = set(values) - set(CEILINGS)
    if unknown:
        raise UsageError(f"unknown limits {', '.join(sorted(unknown))}; known: {', '.join(CEILINGS)}")
    _overrides.update({k: int(v) for k, v in values.items()})
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(old)


def check(name: str, value: int, what: str, error=UsageError) -> int:
    """`value` when it is within the ceiling `name`; else `error` saying how to raise the ceiling."""
    limit = get(name)
    if value > limit:
        raise error(f"{what} is {value}, over the limit of {limit} ({CEILINGS[name].what}); "
                    f"set {CEILINGS[name].env(name)} to raise it")
    return value


_budget: contextvars.ContextVar = contextvars.ContextVar("imgclf_parameter_budget", default=None)


@contextlib.contextmanager
def parameter_budget(n_elements: int):
    """While loading a model file: its weights must fit in the elements the file really holds.

    Building a model allocates its weights from the hyperparameters before the file's arrays replace
    them; a hand-edited `hidden` or `input_shape` would otherwise allocate gigabytes from a tiny file.
    """
    token = _budget.set([int(n_elements)])
    try:
        yield
    finally:
        _budget.reset(token)


def spend_parameters(n_elements: int, what: str) -> None:
    """Called before allocating `n_elements` weights: within the ceiling, and the file's budget."""
    budget = _budget.get()
    if budget is not None:
        budget[0] -= n_elements
        if budget[0] < 0:
            raise UsageError(f"{what}: the hyperparameters ask for more weights than the file holds")
    check("parameters", n_elements, what)


def read_at_most(f, limit: int) -> bytes:
    """Up to `limit` + 1 bytes of a binary stream, in chunks: `f.read(limit + 1)` would allocate the
    whole limit up front (gigabytes of address space) whatever the stream holds."""
    chunks, total = [], 0
    while total <= limit:
        chunk = f.read(min(1 << 24, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def hint(name: str) -> str:
    """`set IMGCLF_MAX_X to raise it`, for messages that word their own limit."""
    return f"set {CEILINGS[name].env(name)} to raise it"
