"""When a parallel kernel should run on one thread.

Starting a numba parallel region wakes the thread team: tens of microseconds on idle cores, and
milliseconds when the cores are busy with other processes (a worker that is not scheduled holds up the
whole region). Measured on 2 busy cores: im2col of a (6, 8, 8, 3) batch took 2-12 ms with two threads
and 0.2 ms with one. Small inputs (gradient checks, tests, the last partial batch) therefore run on
one thread; the thread count is restored afterwards so other kernels are unaffected.
"""

from __future__ import annotations

import contextlib

import numba

# Elements touched below which one thread is faster than waking the team.
PARALLEL_MIN_WORK = 1 << 16


@contextlib.contextmanager
def threads_for(work: int):
    if work >= PARALLEL_MIN_WORK or numba.get_num_threads() == 1:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
