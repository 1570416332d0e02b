"""The helpers the benchmark scripts share (they run as scripts, so this folder is on sys.path): timing,
the thread set-up and the load-average line every report starts and ends with."""
from __future__ import annotations

import os
import time


def best_time(fn, repeat: int) -> float:
    """The fastest of `repeat` calls of fn, in seconds (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def use_threads(n: int) -> None:
    """Run every pool on `n` threads: numba's team (at most what it started with) and the BLAS libraries'
    (threadpoolctl, for the rest of the process)."""
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(n)


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, e.g. "1.8 1.5 1.2"."""
    return " ".join(f"{v:.1f}" for v in os.getloadavg())
