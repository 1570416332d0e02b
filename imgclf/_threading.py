"""How long idle worker threads spin before they sleep: set before the thread pools start.

Training alternates numba parallel regions (OpenMP threads: im2col, pooling, batch norm, the fused
linear step) with OpenBLAS's threaded GEMMs. After its work each pool keeps its threads spinning, by
default for ~300,000 iterations (libgomp) and 2^28 cycles (OpenBLAS, about 0.1 s): on 2 cores the
spinners of one pool take the cores the other pool is about to need. Measured on the 2-core machine,
`imgclf train convnet --n-train 8000 --epochs 1`: 17.2 s with the defaults, 9.9 s with a libgomp spin of
10,000 iterations, 9.5 s with OpenBLAS's timeout at 2^20 cycles as well; with no spinning at all
(OMP_WAIT_POLICY=passive) the fused linear step, which starts 245 short regions an epoch, was 1.8x
slower. Values the user has set are left alone. OpenBLAS reads its variable when it is loaded (with
numpy), libgomp when numba first starts its pool, so `imgclf` sets them on import: OpenBLAS's takes
effect when imgclf is imported before numpy (always the case for the `imgclf` command).
"""

import os

SPIN_DEFAULTS = {"GOMP_SPINCOUNT": "10000", "OPENBLAS_THREAD_TIMEOUT": "20"}


def set_spin_defaults() -> None:
    for name, value in SPIN_DEFAULTS.items():
        os.environ.setdefault(name, value)
