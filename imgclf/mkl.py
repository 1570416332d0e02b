"""Intel MKL's runtime library, found and loaded on demand through ctypes (the optional `bf16` extra).

numpy's OpenBLAS has no bfloat16 GEMM; MKL's `cblas_gemm_bf16bf16f32` (AMX / AVX512-BF16 tiles, float32
accumulation) is the one PyPI ships (`pip install mkl`, i.e. `pip install 'imgclf[bf16]'`). Nothing here
runs until `library()` is called, so importing imgclf never loads MKL.

Where it is looked for, first hit wins: the file named by `IMGCLF_MKL_RT` (a path; then nothing else is
tried), then `libmkl_rt.so*` in the `lib` folders of this Python's prefixes (pip installs the wheel's
libraries into `<prefix>/lib`; also the base prefix of a virtual environment and the user base of
`pip install --user`) and beside site-packages, then the system's loader (`ctypes.util.find_library`).

Threading: MKL is switched to its GNU OpenMP layer (libgomp) before its first call, instead of its own
libiomp5: imgclf's spin etiquette (imgclf/_threading.py: GOMP_SPINCOUNT) then applies to MKL's threads
too, and no second OpenMP runtime with its own 200 ms spin (KMP_BLOCKTIME) is brought into a process
that alternates MKL products with numba's parallel kernels on the same few cores. `IMGCLF_MKL_THREADING`
(intel, gnu, tbb, sequential) overrides it. MKL's dynamic thread adjustment is switched off. The number of threads per product follows imgclf's BLAS
thread count (imgclf/blas.py), so `blas_threads(1)` blocks and one-thread workers hold for MKL too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import site
import sys

ENV_PATH = "IMGCLF_MKL_RT"
ENV_THREADING = "IMGCLF_MKL_THREADING"
# mkl_service.h: MKL_THREADING_INTEL, _SEQUENTIAL, _PGI, _GNU, _TBB; MKL_INTERFACE_LP64 = 0 (32-bit ints).
THREADING_LAYERS = {"intel": 0, "sequential": 1, "gnu": 3, "tbb": 4}
DEFAULT_THREADING = "gnu"
_LIB_NAMES = ("libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so")


class Missing(Exception):
    """Why MKL's runtime could not be loaded (internal: callers turn it into their own typed error)."""


def library_dirs() -> list[str]:
    """The folders pip puts a wheel's shared libraries in, for this Python, in search order (they may not exist)."""
    dirs = []
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, getattr(site, "USER_BASE", None)):
        if prefix:
            dirs.append(os.path.join(prefix, "lib"))
    try:
        packages = list(site.getsitepackages()) + [site.getusersitepackages()]
    except AttributeError:  # some embedded or virtualenv-patched site modules
        packages = []
    for sp in packages:
        # <prefix>/lib/pythonX.Y/site-packages -> <prefix>/lib; conda-style mkl packages beside it
        dirs += [os.path.dirname(os.path.dirname(sp)), os.path.join(sp, "mkl"), os.path.join(sp, "..", "..")]
    return dirs


def find_libraries(names) -> list[str]:
    """Existing files called one of `names` (glob patterns) in `library_dirs()`, in order, without duplicates."""
    found, seen = [], set()
    for d in library_dirs():
        for name in names:
            for path in sorted(glob.glob(os.path.join(d, name))):
                real = os.path.realpath(path)
                if real not in seen and os.path.isfile(real):
                    seen.add(real)
                    found.append(path)
    return found


def candidate_paths() -> list[str]:
    """Where `libmkl_rt` is looked for, in order (existing files only, without duplicates)."""
    return find_libraries(_LIB_NAMES)


def _threading_layer() -> int:
    name = os.environ.get(ENV_THREADING, DEFAULT_THREADING).strip().lower()
    if name not in THREADING_LAYERS:
        raise Missing(f"{ENV_THREADING}={name!r} is not one of {', '.join(THREADING_LAYERS)}")
    return THREADING_LAYERS[name]


def load_first(env_path: str, candidates, loader_name: str, not_found: str, what: str, accept):
    """(library, None) for the first shared library that loads and that `accept` takes, else (None, reason).

    The file named by the environment variable `env_path` replaces the search; otherwise `candidates()`
    (files found in pip's folders), else the system loader's `loader_name`. `accept(lib)` declares what it
    needs and returns None, or says why the library will not do (the next candidate is tried); raising
    `Missing` ends the search with that reason. MKL and oneDNN (imgclf/dnnl.py) load this way."""
    override = os.environ.get(env_path)
    if override:
        paths = [override]
    else:
        paths = candidates()
        if not paths:
            name = ctypes.util.find_library(loader_name)
            paths = [name] if name else []
    if not paths:
        return None, not_found
    errors = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        try:
            why = accept(lib)
        except Missing as exc:
            return None, str(exc)
        if why is None:
            return lib, None
        errors.append(f"{path}: {why}")
    return None, f"{what} could not be loaded (" + "; ".join(errors) + ")"


@functools.lru_cache(maxsize=1)
def _load():
    """(library, None) or (None, reason); cached, so the search and the loading happen once."""
    return load_first(ENV_PATH, candidate_paths, "mkl_rt", "Intel MKL's runtime (libmkl_rt) was not found",
                      "Intel MKL's runtime", _accept)


def _accept(lib) -> str | None:
    if not all(hasattr(lib, s) for s in ("cblas_gemm_bf16bf16f32", "MKL_Set_Threading_Layer",
                                           "MKL_Set_Num_Threads_Local")):
        return "no cblas_gemm_bf16bf16f32 (MKL 2020 or later is needed)"
    layer = _threading_layer()
    lib.MKL_Set_Interface_Layer(0)
    lib.MKL_Set_Threading_Layer(layer)
    # Exactly the threads asked for, never fewer when the machine is busy: a product's summation order
    # (MKL splits a long inner dimension, e.g. a filter gradient's N*H*W, between threads) then depends on
    # imgclf's thread count only, so the same seed gives the same weights.
    if hasattr(lib, "MKL_Set_Dynamic"):
        lib.MKL_Set_Dynamic(0)
    _declare(lib)
    return None


def _declare(lib) -> None:
    i, f, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    lib.cblas_gemm_bf16bf16f32.argtypes = [i, i, i, i, i, i, f, p, i, p, i, f, p, i]
    lib.cblas_gemm_bf16bf16f32.restype = None
    lib.MKL_Set_Num_Threads_Local.argtypes = [i]
    lib.MKL_Set_Num_Threads_Local.restype = i


def library():
    """The loaded `libmkl_rt` (ctypes.CDLL); raises `Missing` with the reason when it is unavailable."""
    lib, reason = _load()
    if lib is None:
        raise Missing(reason)
    return lib


def reason_missing() -> str | None:
    """None when MKL's runtime loads, else why not."""
    return _load()[1]
