"""The one timing helper the benchmark scripts share (they run as scripts, so this folder is on sys.path)."""
from __future__ import annotations

import time


def best_time(fn, repeat: int) -> float:
    """The fastest of `repeat` calls of fn, in seconds (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
