"""Checkpoint files: a training run's full state as one .npz + JSON metadata (format `imgclf-checkpoint`).

The Solver decides what a checkpoint holds (weights, optimiser state, Generator state, the epoch's
permutation and position, history, best weights: see docs/format.md) and restores it; this module names
the files, writes and reads them, and prunes the ones a run no longer needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from . import npzfile

FORMAT = "imgclf-checkpoint"
VERSION = 1


def checkpoint_name(epoch: int, step: int, val_acc: float | None) -> str:
    """`ckpt_epoch003_val0.4512.npz` after an epoch; `ckpt_epoch003_step00120_val0.4512.npz` for a
    checkpoint taken 120 steps into the next epoch (an interrupt). val is the latest val accuracy."""
    val = "na" if val_acc is None or not np.isfinite(val_acc) else f"{val_acc:.4f}"
    mid = f"_step{step:05d}" if step else ""
    return f"ckpt_epoch{epoch:03d}{mid}_val{val}.npz"


def write(path, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write atomically; `meta` gets the format, kind and version."""
    path = Path(path)
    npzfile.write(path, arrays, {**meta, "format": FORMAT, "kind": "checkpoint", "version": VERSION})
    return path


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a checkpoint file; ModelFileError for anything else."""
    meta, arrays = npzfile.read(path, expect_format=FORMAT, error=ModelFileError)
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path}: unsupported checkpoint version {meta.get('version')!r} "
                             f"(this imgclf reads {VERSION})")
    return meta, arrays


def prune(written: list[Path], keep: int, best_epoch: int | None) -> list[Path]:
    """Delete all but the newest `keep` of the files a run `written` (0 keeps all), and the best epoch's;
    returns the files kept, oldest first."""
    if not keep or len(written) <= keep:
        return written
    kept = set(written[-keep:])
    for p in written[:-keep]:
        if best_epoch is not None and p.name.startswith(f"ckpt_epoch{best_epoch:03d}_val"):
            kept.add(p)
        elif p not in kept:
            p.unlink(missing_ok=True)
    return [p for p in written if p in kept]
