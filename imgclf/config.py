"""Defaults and the data search path, in one place."""

import os
from pathlib import Path

DEFAULT_MEMORY_MB = 1024
# The kNN distance metrics, one list for the estimator, its kernels and the CLI.
METRICS = ("l2", "l1")
DEFAULT_VAL = 1000
DEFAULT_SEED = 0


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgclf"


def data_search_path() -> list[Path]:
    """Directories searched for named datasets: $IMGCLF_DATA entries, ./data, the user cache dir."""
    dirs = [Path(p) for p in os.environ.get("IMGCLF_DATA", "").split(os.pathsep) if p]
    dirs += [Path("data"), user_cache_dir()]
    return dirs


def default_download_dir() -> Path:
    """Where `imgclf data get` extracts to: ./data when it exists (a checkout), else the user cache dir."""
    local = Path("data")
    return local if local.is_dir() else user_cache_dir()
