"""Convolutions through oneDNN (Intel's deep-learning kernel library), the optional `dnnl` extra.

`pip install 'imgclf[dnnl]'` installs the `onednn-cpu-gomp` wheel: `libdnnl.so.3` (oneDNN 3.x, built on
GNU OpenMP, the threading layer imgclf/mkl.py also selects for MKL) in `<prefix>/lib`. It is loaded
through ctypes on first use only (importing imgclf never loads it), from `IMGCLF_DNNL_LIB` (a path; then
nothing else is tried), the folders pip installs wheels' libraries into (imgclf/mkl.py's `library_dirs`),
then the system loader.

Three entry points, on NHWC images and (KH, KW, C, F) filters as everywhere in imgclf:
`conv_forward(x, w)` -> out, `conv_backward_data(dout, w, x_shape)` -> dx, and
`conv_backward_weights(x, dout, w_shape)` -> dw. The inputs are float32, or bfloat16 as uint16 arrays
(imgclf/bf16.py's representation; x and w, or dout and w, or x and dout, of the same type); the results
are always float32 (bfloat16 products accumulate in float32). oneDNN picks direct convolution kernels
(AMX / AVX512-BF16 "brgconv" where the CPU has them) and its own blocked filter layout; the filters are
reordered into it per call and the filter gradient back out of it, which costs a fraction of a percent of
a layer.

Primitive descriptors and primitives are cached per geometry (shapes, stride, padding, dilation, data
types) in a bounded cache (`CACHE_SIZE`, least recently used out; evicted ones are destroyed
once no call uses them). Memory
objects wrap the callers' numpy buffers per call. Each call runs on imgclf's BLAS thread count
(imgclf/blas.py) through OpenMP's `omp_set_num_threads`, restored afterwards, without the GIL (ctypes
releases it). Streams and the scratchpad (user-managed) are per thread, so threads may call concurrently.
Every oneDNN status is checked: a failure raises `imgclf.errors.NativeLibraryError` naming the status.

The C API's enum values below were read from oneDNN 3.2's headers (dnnl_types.h) and are checked on
load against the library's own `dnnl_*2str` names where it has them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from collections import OrderedDict

import numpy as np

from .errors import NativeLibraryError, Unsupported, UsageError

ENV_PATH = "IMGCLF_DNNL_LIB"
INSTALL_HINT = "pip install 'imgclf[dnnl]'"
_LIB_NAMES = ("libdnnl.so.3", "libdnnl.so")
CACHE_SIZE = 48

# oneDNN 3.x C API enums (dnnl_types.h of v3.2)
_STATUS = {0: "success", 1: "out_of_memory", 2: "invalid_arguments", 3: "unimplemented", 4: "last_impl_reached",
           5: "runtime_error", 6: "not_required"}
_CPU = 1  # dnnl_cpu
_STREAM_IN_ORDER = 1  # dnnl_stream_in_order (the default flags)
_BF16, _F32 = 2, 3  # dnnl_bf16, dnnl_f32
_FORMAT_ANY = 1  # dnnl_format_tag_any
_FORWARD_TRAINING = 64  # dnnl_forward_training
_CONV_DIRECT = 1  # dnnl_convolution_direct
_SCRATCHPAD_USER = 1  # dnnl_scratchpad_mode_user
_ARG_SRC, _ARG_DST, _ARG_WEIGHTS, _ARG_SCRATCHPAD = 1, 17, 33, 80
_ARG_DIFF_SRC, _ARG_DIFF_DST, _ARG_DIFF_WEIGHTS = 129, 145, 161
_Q_IMPL_INFO_STR = 8  # dnnl_query_impl_info_str
_Q_WEIGHTS_MD, _Q_DIFF_WEIGHTS_MD, _Q_SCRATCHPAD_MD = 131, 132, 136  # weights_md, diff_weights_md, scratchpad_md
# checked against the library's names on load
_NAMED = (("dnnl_status2str", 3, b"unimplemented"), ("dnnl_dt2str", _BF16, b"bf16"), ("dnnl_dt2str", _F32, b"f32"),
          ("dnnl_fmt_tag2str", _FORMAT_ANY, b"any"), ("dnnl_prop_kind2str", _FORWARD_TRAINING, b"forward_training"),
          ("dnnl_alg_kind2str", _CONV_DIRECT, b"convolution_direct"), ("dnnl_engine_kind2str", _CPU, b"cpu"))
_DIMS = ctypes.c_int64 * 12  # dnnl_dims_t (DNNL_MAX_NDIMS = 12)
_INT64_MAX = 2**63 - 1


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int), ("hash", ctypes.c_char_p),
                ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


def candidate_paths() -> list[str]:
    """Where `libdnnl` is looked for, in order (existing files only)."""
    from .mkl import find_libraries

    return find_libraries(_LIB_NAMES)


def _declare(lib) -> None:
    p, i, u = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint
    pp = ctypes.POINTER(ctypes.c_void_p)
    sig = {
        "dnnl_engine_create": [pp, i, ctypes.c_size_t],
        "dnnl_stream_create": [pp, p, u],
        "dnnl_stream_wait": [p],
        "dnnl_stream_destroy": [p],
        "dnnl_memory_desc_create_with_strides": [pp, i, _DIMS, i, _DIMS],
        "dnnl_memory_desc_create_with_tag": [pp, i, _DIMS, i, i],
        "dnnl_memory_desc_destroy": [p],
        "dnnl_memory_create": [pp, p, p, p],
        "dnnl_memory_destroy": [p],
        "dnnl_primitive_attr_create": [pp],
        "dnnl_primitive_attr_set_scratchpad_mode": [p, i],
        "dnnl_primitive_attr_destroy": [p],
        "dnnl_convolution_forward_primitive_desc_create": [pp, p, i, i, p, p, p, p, _DIMS, _DIMS, _DIMS, _DIMS, p],
        "dnnl_convolution_backward_data_primitive_desc_create": [pp, p, i, p, p, p, _DIMS, _DIMS, _DIMS, _DIMS, p, p],
        "dnnl_convolution_backward_weights_primitive_desc_create": [pp, p, i, p, p, p, p, _DIMS, _DIMS, _DIMS, _DIMS,
                                                                    p, p],
        "dnnl_reorder_primitive_desc_create": [pp, p, p, p, p, p],
        "dnnl_primitive_desc_query": [p, i, i, p],
        "dnnl_primitive_desc_destroy": [p],
        "dnnl_primitive_create": [pp, p],
        "dnnl_primitive_execute": [p, p, i, ctypes.POINTER(_ExecArg)],
        "dnnl_primitive_destroy": [p],
    }
    for name, args in sig.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, ctypes.c_int
    lib.dnnl_primitive_desc_query_md.argtypes, lib.dnnl_primitive_desc_query_md.restype = [p, i, i], p
    lib.dnnl_memory_desc_equal.argtypes, lib.dnnl_memory_desc_equal.restype = [p, p], i
    lib.dnnl_memory_desc_get_size.argtypes, lib.dnnl_memory_desc_get_size.restype = [p], ctypes.c_size_t
    lib.dnnl_version.restype = ctypes.POINTER(_Version)
    for name in {n for n, _, _ in _NAMED}:
        getattr(lib, name).argtypes, getattr(lib, name).restype = [i], ctypes.c_char_p


@functools.lru_cache(maxsize=1)
def _load():
    """(library, None) or (None, reason); cached, so the search and the loading happen once."""
    from .mkl import load_first

    return load_first(ENV_PATH, candidate_paths, "dnnl", f"oneDNN (libdnnl.so.3) was not found ({INSTALL_HINT})",
                      "oneDNN", _accept)


def _accept(lib) -> str | None:
    try:
        _declare(lib)
    except AttributeError as exc:
        return f"not oneDNN 3's C API ({exc})"
    version = lib.dnnl_version().contents
    if version.major != 3:
        return f"oneDNN {version.major}.{version.minor}, imgclf needs 3.x"
    wrong = [f"{fn}({value}) is {getattr(lib, fn)(value)!r}" for fn, value, name in _NAMED
             if getattr(lib, fn)(value) != name]
    if wrong:
        return "its enum values differ from oneDNN 3.2's: " + "; ".join(wrong)
    return None


def unavailable_reason() -> str | None:
    """None when oneDNN's convolutions can run here, else why not."""
    return _load()[1]


def available() -> bool:
    return unavailable_reason() is None


def require(param: str = "conv_backend") -> None:
    """Raise Unsupported (naming `param`) unless oneDNN can run here."""
    reason = unavailable_reason()
    if reason is not None:
        raise Unsupported(f"{param}='dnnl' needs oneDNN ({INSTALL_HINT}); here {reason}", param=param)


def version() -> str | None:
    """oneDNN's version ("3.2.0"), or None when it is unavailable."""
    lib = _load()[0]
    if lib is None:
        return None
    v = lib.dnnl_version().contents
    return f"{v.major}.{v.minor}.{v.patch}"


def _lib():
    require()
    return _load()[0]


def _check(status: int, what: str) -> None:
    if status != 0:
        name = _STATUS.get(status, f"status {status}")
        raise NativeLibraryError(f"oneDNN {what} failed: {name}", status=name)


# -- handles ----------------------------------------------------------------------------------------
class _Handles:
    """The process's engine (one CPU engine), created on first use."""

    engine = None
    lock = threading.Lock()

    @classmethod
    def get_engine(cls):
        with cls.lock:
            if cls.engine is None:
                lib = _lib()
                eng = ctypes.c_void_p()
                _check(lib.dnnl_engine_create(ctypes.byref(eng), _CPU, 0), "engine creation")
                cls.engine = eng
            return cls.engine


class _PerThread(threading.local):
    stream = None
    scratch = None

    def get_stream(self, lib):
        if self.stream is None:
            s = ctypes.c_void_p()
            _check(lib.dnnl_stream_create(ctypes.byref(s), _Handles.get_engine(), _STREAM_IN_ORDER), "stream creation")
            self.stream = s
        return self.stream

    def get_scratch(self, nbytes: int) -> np.ndarray:
        if self.scratch is None or self.scratch.nbytes < nbytes:
            self.scratch = np.empty(max(nbytes, 64), np.uint8)
        return self.scratch


_thread = _PerThread()


def _md_strided(lib, dims, strides, dt):
    md = ctypes.c_void_p()
    _check(lib.dnnl_memory_desc_create_with_strides(ctypes.byref(md), len(dims), _DIMS(*dims), dt, _DIMS(*strides)),
           "memory descriptor creation")
    return md


def _md_any(lib, dims, dt):
    md = ctypes.c_void_p()
    _check(lib.dnnl_memory_desc_create_with_tag(ctypes.byref(md), len(dims), _DIMS(*dims), dt, _FORMAT_ANY),
           "memory descriptor creation")
    return md


def _md_images(lib, N, H, W, C, dt):
    # oneDNN's logical order (N, C, H, W) over NHWC memory
    return _md_strided(lib, (N, C, H, W), (H * W * C, 1, W * C, C), dt)


def _md_filters(lib, KH, KW, C, F, dt):
    # oneDNN's logical order (F, C, KH, KW) over imgclf's (KH, KW, C, F) memory
    return _md_strided(lib, (F, C, KH, KW), (1, F, KW * C * F, C * F), dt)


class _Primitive:
    """A primitive descriptor and its primitive; the scratchpad size it needs."""

    def __init__(self, lib, pd, what):
        self.lib, self.pd, self.prim = lib, pd, None
        prim = ctypes.c_void_p()
        _check(lib.dnnl_primitive_create(ctypes.byref(prim), pd), f"{what} primitive creation")
        self.prim = prim
        scratch = lib.dnnl_primitive_desc_query_md(pd, _Q_SCRATCHPAD_MD, 0)
        self.scratch_bytes = int(lib.dnnl_memory_desc_get_size(scratch)) if scratch else 0
        self.scratch_md = scratch

    def impl(self) -> str:
        s = ctypes.c_char_p()
        _check(self.lib.dnnl_primitive_desc_query(self.pd, _Q_IMPL_INFO_STR, 0, ctypes.byref(s)),
               "implementation query")
        return s.value.decode()

    def destroy(self):
        if self.prim is not None:
            self.lib.dnnl_primitive_destroy(self.prim)
            self.prim = None
        if self.pd is not None:
            self.lib.dnnl_primitive_desc_destroy(self.pd)
            self.pd = None


class _Conv:
    """The three convolution primitives of one geometry and the filter reorders they need."""

    users = 0  # calls running with it (the cache's lock guards both)
    evicted = False

    def __init__(self, key):
        (N, H, W, C), (KH, KW, F), (Ho, Wo), stride, pad, dilation, in_dt = key
        self.lib = lib = _lib()
        eng = _Handles.get_engine()
        self.owned_mds, self.parts = [], []
        lo = in_dt
        md = self._own
        self.src = md(_md_images(lib, N, H, W, C, lo))
        self.dst = md(_md_images(lib, N, Ho, Wo, F, _F32))
        self.diff_src = md(_md_images(lib, N, H, W, C, _F32))
        self.diff_dst = md(_md_images(lib, N, Ho, Wo, F, lo))
        self.w_user = md(_md_filters(lib, KH, KW, C, F, lo))
        self.dw_user = md(_md_filters(lib, KH, KW, C, F, _F32))
        w_any = md(_md_any(lib, (F, C, KH, KW), lo))
        dw_any = md(_md_any(lib, (F, C, KH, KW), _F32))
        attr = ctypes.c_void_p()
        _check(lib.dnnl_primitive_attr_create(ctypes.byref(attr)), "attribute creation")
        try:
            _check(lib.dnnl_primitive_attr_set_scratchpad_mode(attr, _SCRATCHPAD_USER), "scratchpad mode")
            st, dl = _DIMS(stride, stride), _DIMS(dilation - 1, dilation - 1)  # oneDNN: 0 = no dilation
            pl = _DIMS(pad, pad)
            pr = _DIMS(*(self._pad_r(n, k, o, stride, pad, dilation) for n, k, o in ((H, KH, Ho), (W, KW, Wo))))
            fpd, dpd, wpd = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
            _check(lib.dnnl_convolution_forward_primitive_desc_create(
                ctypes.byref(fpd), eng, _FORWARD_TRAINING, _CONV_DIRECT, self.src, w_any, None, self.dst, st, dl, pl,
                pr, attr), "convolution forward descriptor")
            self.fwd = self._part(_Primitive(lib, fpd, "forward"))
            _check(lib.dnnl_convolution_backward_data_primitive_desc_create(
                ctypes.byref(dpd), eng, _CONV_DIRECT, self.diff_src, w_any, self.diff_dst, st, dl, pl, pr, fpd, attr),
                "convolution backward-data descriptor")
            self.bwd_data = self._part(_Primitive(lib, dpd, "backward-data"))
            _check(lib.dnnl_convolution_backward_weights_primitive_desc_create(
                ctypes.byref(wpd), eng, _CONV_DIRECT, self.src, dw_any, None, self.diff_dst, st, dl, pl, pr, fpd,
                attr), "convolution backward-weights descriptor")
            self.bwd_weights = self._part(_Primitive(lib, wpd, "backward-weights"))
            # the filter layouts oneDNN chose, and reorders from / to imgclf's
            self.w_fwd = lib.dnnl_primitive_desc_query_md(fpd, _Q_WEIGHTS_MD, 0)
            self.w_bwd = lib.dnnl_primitive_desc_query_md(dpd, _Q_WEIGHTS_MD, 0)
            self.dw = lib.dnnl_primitive_desc_query_md(wpd, _Q_DIFF_WEIGHTS_MD, 0)
            self.to_fwd = self._reorder(self.w_user, self.w_fwd, attr)
            self.to_bwd = self._reorder(self.w_user, self.w_bwd, attr)
            self.from_dw = self._reorder(self.dw, self.dw_user, attr)
        except BaseException:
            self.destroy()
            raise
        finally:
            lib.dnnl_primitive_attr_destroy(attr)

    @staticmethod
    def _pad_r(size, k, out, stride, pad, dilation):
        return (out - 1) * stride + (k - 1) * dilation + 1 - size - pad

    def _own(self, md):
        self.owned_mds.append(md)
        return md

    def _part(self, prim):
        self.parts.append(prim)
        return prim

    def _reorder(self, src_md, dst_md, attr):
        if self.lib.dnnl_memory_desc_equal(src_md, dst_md):
            return None
        pd = ctypes.c_void_p()
        eng = _Handles.get_engine()
        _check(self.lib.dnnl_reorder_primitive_desc_create(ctypes.byref(pd), src_md, eng, dst_md, eng, attr),
               "filter reorder descriptor")
        return self._part(_Primitive(self.lib, pd, "filter reorder"))

    def names(self) -> dict:
        """The implementations oneDNN picked ("brgconv:avx512_core_amx", ...), by pass."""
        return {"forward": self.fwd.impl(), "backward_data": self.bwd_data.impl(),
                "backward_weights": self.bwd_weights.impl()}

    def destroy(self):
        for part in self.parts:
            part.destroy()
        self.parts = []
        for md in self.owned_mds:
            self.lib.dnnl_memory_desc_destroy(md)
        self.owned_mds = []


class _Cache:
    """Least recently used `_Conv`s by geometry; evicted ones are destroyed once no call uses them."""

    def __init__(self, size: int):
        self.size = size
        self.entries: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def use(self, key):
        """The `_Conv` of `key` (built if new), kept alive for the block even if evicted meanwhile."""
        with self.lock:
            conv = self.entries.pop(key, None)
            if conv is None:
                conv = _Conv(key)
            self.entries[key] = conv
            conv.users += 1
            while len(self.entries) > self.size:
                self._retire(self.entries.popitem(last=False)[1])
        try:
            yield conv
        finally:
            with self.lock:
                conv.users -= 1
                if conv.evicted and conv.users == 0:
                    conv.destroy()

    @staticmethod
    def _retire(conv) -> None:
        conv.evicted = True
        if conv.users == 0:
            conv.destroy()

    def clear(self) -> None:
        with self.lock:
            while self.entries:
                self._retire(self.entries.popitem()[1])

    def __len__(self) -> int:
        return len(self.entries)


_cache = _Cache(CACHE_SIZE)


def clear_cache() -> None:
    """Destroy every cached primitive (they are rebuilt on the next call)."""
    _cache.clear()


class _Run:
    """One call: memory objects around numpy buffers, executed on this thread's stream, then destroyed."""

    def __init__(self, lib):
        self.lib, self.mems, self.keep = lib, [], []
        self.stream = _thread.get_stream(lib)

    def memory(self, md, array):
        m = ctypes.c_void_p()
        _check(self.lib.dnnl_memory_create(ctypes.byref(m), md, _Handles.get_engine(), array.ctypes.data),
               "memory creation")
        self.mems.append(m)
        self.keep.append(array)
        return m

    def execute(self, prim: _Primitive, args) -> None:
        args = list(args)
        if prim.scratch_bytes:
            args.append((_ARG_SCRATCHPAD, self.memory(prim.scratch_md, _thread.get_scratch(prim.scratch_bytes))))
        arr = (_ExecArg * len(args))(*[_ExecArg(a, m) for a, m in args])
        _check(self.lib.dnnl_primitive_execute(prim.prim, self.stream, len(args), arr), "convolution execution")
        _check(self.lib.dnnl_stream_wait(self.stream), "stream wait")

    def filters(self, conv: _Conv, w, reorder, md):
        """A memory object of the filters `w` in the layout `md` a primitive wants (reordered if it differs)."""
        mw = self.memory(conv.w_user, w)
        if reorder is None:
            return mw
        buf = np.empty(int(self.lib.dnnl_memory_desc_get_size(md)), np.uint8)
        mb = self.memory(md, buf)
        self.execute(reorder, [(_ARG_SRC, mw), (_ARG_DST, mb)])
        return mb

    def close(self):
        for m in self.mems:
            self.lib.dnnl_memory_destroy(m)
        self.mems, self.keep = [], []


class _Threads:
    """OpenMP's thread count set to imgclf's BLAS thread count for a call, then restored."""

    def __init__(self, lib):
        self.lib = lib

    def __enter__(self):
        from .blas import blas_thread_count

        get, set_ = getattr(self.lib, "omp_get_max_threads", None), getattr(self.lib, "omp_set_num_threads", None)
        self.restore = None
        if get is not None and set_ is not None:
            before = get()
            want = max(1, int(blas_thread_count()))
            if want != before:
                set_(want)
                self.restore = (set_, before)
        return self

    def __exit__(self, *exc):
        if self.restore is not None:
            self.restore[0](self.restore[1])


# -- validation ---------------------------------------------------------------------------------------
_TYPES = {np.dtype(np.float32): _F32, np.dtype(np.uint16): _BF16}


def _array(a, name, ndim):
    if not isinstance(a, np.ndarray) or a.dtype not in _TYPES or a.ndim != ndim:
        got = f"{a.dtype} of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise UsageError(f"{name} must be a {ndim}-d float32 or bfloat16 (uint16) array, got {got}", param=name)
    if not a.flags.c_contiguous:
        raise UsageError(f"{name} must be C-contiguous", param=name)
    if a.size == 0:
        raise UsageError(f"{name} is empty (shape {a.shape})", param=name)
    return a


def _out(out, shape, name):
    if out is None:
        from .kernels import buffers

        return buffers.empty(shape, np.float32)  # a warm recycled array: fresh ones fault every page
    if not isinstance(out, np.ndarray) or out.shape != tuple(shape) or out.dtype != np.float32 \
            or not out.flags.c_contiguous or not out.flags.writeable:
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise UsageError(f"{name} must be a writeable C-contiguous float32 array of shape {tuple(shape)}, got {got}",
                         param=name)
    return out


def _geometry(x_shape, w_shape, stride, pad, dilation):
    from .kernels.im2col import _check_geometry

    if len(w_shape) != 4:
        raise UsageError(f"filters must be shaped (KH, KW, C, F), got shape {tuple(w_shape)}", param="w")
    KH, KW, C, F = (int(v) for v in w_shape)
    if len(x_shape) != 4:
        raise UsageError(f"images must be shaped (N, H, W, C), got shape {tuple(x_shape)}", param="x")
    if int(x_shape[3]) != C:
        raise UsageError(f"filters expect {C} input channels but the images have {x_shape[3]}", param="w")
    Ho, Wo = _check_geometry(x_shape, KH, KW, stride, pad, dilation)
    if max(int(v) for v in tuple(x_shape) + tuple(w_shape)) > _INT64_MAX or \
            int(np.prod(x_shape, dtype=object)) > _INT64_MAX:
        raise UsageError("the arrays are too large for oneDNN's 64-bit dimensions", param="x")
    return tuple(int(v) for v in x_shape), (KH, KW, F), (Ho, Wo), int(stride), int(pad), int(dilation)


def _key(x_shape, w_shape, stride, pad, dilation, dt):
    return _geometry(x_shape, w_shape, stride, pad, dilation) + (_TYPES[np.dtype(dt)],)


def _same_type(a, b, names):
    if a.dtype != b.dtype:
        raise UsageError(f"{names[0]} and {names[1]} must have the same type (float32, or bfloat16 as uint16), got "
                         f"{a.dtype} and {b.dtype}", param=names[1])


# -- the three passes -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _call(key):
    """One pass's context: (the call's memory objects and stream, the geometry's primitives) on imgclf's thread
    count; the memory objects are destroyed when the pass ends."""
    lib = _lib()
    run = _Run(lib)
    try:
        with _cache.use(key) as conv, _Threads(lib):
            yield run, conv
    finally:
        run.close()


def _check_dout(dout, key):
    (N, _, _, _), (_, _, F), (Ho, Wo) = key[0], key[1], key[2]
    if dout.shape != (N, Ho, Wo, F):
        raise UsageError(f"dout must have the forward output's shape {(N, Ho, Wo, F)}, got {dout.shape}",
                         param="dout")


def conv_forward(x, w, stride: int = 1, pad: int = 0, dilation: int = 1, out=None) -> np.ndarray:
    """out[n, i, j, f] = sum_{p,q,c} xpad[n, i*S + p*D, j*S + q*D, c] * w[p, q, c, f], float32 (N, Ho, Wo, F).

    `x` (N, H, W, C) and `w` (KH, KW, C, F): both float32 or both bfloat16 (uint16)."""
    x, w = _array(x, "x", 4), _array(w, "w", 4)
    _same_type(x, w, ("x", "w"))
    key = _key(x.shape, w.shape, stride, pad, dilation, x.dtype)
    (N, _, _, _), (_, _, F), (Ho, Wo) = key[0], key[1], key[2]
    out = _out(out, (N, Ho, Wo, F), "out")
    with _call(key) as (run, conv):
        mw = run.filters(conv, w, conv.to_fwd, conv.w_fwd)
        run.execute(conv.fwd, [(_ARG_SRC, run.memory(conv.src, x)), (_ARG_WEIGHTS, mw),
                               (_ARG_DST, run.memory(conv.dst, out))])
    return out


def conv_backward_data(dout, w, x_shape, stride: int = 1, pad: int = 0, dilation: int = 1, out=None) -> np.ndarray:
    """The input gradient dx (float32, `x_shape`) of `conv_forward` for the upstream gradient `dout`
    (N, Ho, Wo, F); `dout` and `w` both float32 or both bfloat16 (uint16)."""
    dout, w = _array(dout, "dout", 4), _array(w, "w", 4)
    _same_type(dout, w, ("dout", "w"))
    key = _key(x_shape, w.shape, stride, pad, dilation, w.dtype)
    _check_dout(dout, key)
    out = _out(out, key[0], "out")
    with _call(key) as (run, conv):
        mw = run.filters(conv, w, conv.to_bwd, conv.w_bwd)
        run.execute(conv.bwd_data, [(_ARG_DIFF_DST, run.memory(conv.diff_dst, dout)), (_ARG_WEIGHTS, mw),
                                    (_ARG_DIFF_SRC, run.memory(conv.diff_src, out))])
    return out


def conv_backward_weights(x, dout, w_shape, stride: int = 1, pad: int = 0, dilation: int = 1,
                          out=None) -> np.ndarray:
    """The filter gradient dw (float32, `w_shape` = (KH, KW, C, F)) of `conv_forward` for the images `x`
    and the upstream gradient `dout`; `x` and `dout` both float32 or both bfloat16 (uint16)."""
    x, dout = _array(x, "x", 4), _array(dout, "dout", 4)
    _same_type(x, dout, ("x", "dout"))
    key = _key(x.shape, w_shape, stride, pad, dilation, x.dtype)
    _check_dout(dout, key)
    (KH, KW, F), C = key[1], key[0][3]
    out = _out(out, (KH, KW, C, F), "out")
    with _call(key) as (run, conv):
        args = [(_ARG_SRC, run.memory(conv.src, x)), (_ARG_DIFF_DST, run.memory(conv.diff_dst, dout))]
        if conv.from_dw is None:
            run.execute(conv.bwd_weights, args + [(_ARG_DIFF_WEIGHTS, run.memory(conv.dw_user, out))])
        else:
            buf = np.empty(int(run.lib.dnnl_memory_desc_get_size(conv.dw)), np.uint8)
            mdw = run.memory(conv.dw, buf)
            run.execute(conv.bwd_weights, args + [(_ARG_DIFF_WEIGHTS, mdw)])
            run.execute(conv.from_dw, [(_ARG_SRC, mdw), (_ARG_DST, run.memory(conv.dw_user, out))])
    return out


def implementations(x_shape, w_shape, stride: int = 1, pad: int = 0, dilation: int = 1, dtype=np.float32) -> dict:
    """The kernels oneDNN picks for a geometry, by pass ({"forward": "brgconv:avx512_core_amx", ...})."""
    if np.dtype(dtype) not in _TYPES:
        raise UsageError(f"dtype must be float32 or uint16 (bfloat16), got {np.dtype(dtype)}", param="dtype")
    with _cache.use(_key(x_shape, w_shape, stride, pad, dilation, dtype)) as conv:
        return conv.names()
