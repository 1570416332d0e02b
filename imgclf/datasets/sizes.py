"""Bytes on disk of a dataset file or folder."""

from pathlib import Path


def disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
