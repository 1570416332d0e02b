"""Hand-picked SIMD for the L1 kernel: AVX2 `vpsadbw` through an LLVM intrinsic, chosen at run time.

`vpsadbw` sums the absolute differences of 8 byte pairs into one 64-bit lane, 32 bytes per
instruction: exact integer L1 on uint8 at the speed of the loads. The intrinsic below emits a whole
register-tiled micro-kernel (R query rows x C training rows, R*C accumulators) so that each loaded
vector is reused C or R times; numba has no vector types, so the loop is written in LLVM IR.
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

# Micro-tile: 4 query rows x 3 training rows = 12 accumulators + 4 + 1 live vectors, within the
# 16 ymm registers of plain AVX2.
TILE_R = 4
TILE_C = 3
VEC = 32


def target_has(*names: str) -> bool:
    """True when numba compiles (not NUMBA_DISABLE_JIT: an intrinsic cannot run interpreted) for a CPU
    with all these LLVM features, and this CPU has them too. numba's target is the host CPU unless
    NUMBA_CPU_NAME / NUMBA_CPU_FEATURES (portable caches, e.g. `generic`) say otherwise; then only
    features listed there with `+` count. Emitting an instruction the target lacks aborts the process
    inside LLVM; running one the CPU lacks kills it with SIGILL."""
    from numba.core import config

    if config.DISABLE_JIT:
        return False
    try:
        from llvmlite import binding

        host = binding.get_host_cpu_features()
        if not all(host.get(name) for name in names):
            return False
        if config.CPU_FEATURES is not None:
            listed = {item.strip()[1:] for item in config.CPU_FEATURES.split(",") if item.strip().startswith("+")}
            return all(name in listed for name in names)
        return config.CPU_NAME is None or config.CPU_NAME == "host"
    except Exception:  # noqa: BLE001 - feature probing unsupported on this platform: use the portable path
        return False


def counted_loop(builder, count, carried, body):
    """Emit `for k in range(count)` in LLVM IR, the `carried` values (vector accumulators, pointers)
    living in phis: `body(k, values)` emits one iteration and returns the next values. Returns the
    values after the loop (the initial ones when count <= 0), with the builder placed after it.
    numba has no vector types, so SIMD micro-kernels are written at this level."""
    i64 = ir.IntType(64)
    entry = builder.block
    loop = builder.append_basic_block("tile.loop")
    done = builder.append_basic_block("tile.done")
    builder.cbranch(builder.icmp_signed(">", count, ir.Constant(i64, 0)), loop, done)
    builder.position_at_end(loop)
    k = builder.phi(i64)
    k.add_incoming(ir.Constant(i64, 0), entry)
    phis = []
    for value in carried:
        phi = builder.phi(value.type)
        phi.add_incoming(value, entry)
        phis.append(phi)
    new = body(k, phis)
    k1 = builder.add(k, ir.Constant(i64, 1))
    end = builder.block
    k.add_incoming(k1, end)
    for phi, value in zip(phis, new):
        phi.add_incoming(value, end)
    builder.cbranch(builder.icmp_signed("<", k1, count), loop, done)
    builder.position_at_end(done)
    finals = []
    for first, last in zip(carried, new):  # phis first: LLVM wants them at the top of the block
        phi = builder.phi(first.type)
        phi.add_incoming(first, entry)
        phi.add_incoming(last, end)
        finals.append(phi)
    return finals


@functools.cache
def has_avx2() -> bool:
    """True when the CPU numba compiles for has AVX2 (see `target_has`)."""
    return target_has("avx2")


@intrinsic
def _sad_tile(typingctx, X, Y, i0, j0, nvec, out):
    """out[r*C + c] = sum over the first nvec*32 bytes of |X[i0+r] - Y[j0+c]|  (C-contiguous rows)."""
    sig = types.void(X, Y, i0, j0, nvec, out)

    def codegen(context, builder, signature, args):
        xa, ya, i0v, j0v, nv, outa = args
        x_t, y_t, _, _, _, o_t = signature.args
        xarr = context.make_array(x_t)(context, builder, xa)
        yarr = context.make_array(y_t)(context, builder, ya)
        oarr = context.make_array(o_t)(context, builder, outa)
        i64, i32, i8 = ir.IntType(64), ir.IntType(32), ir.IntType(8)
        v32, v4 = ir.VectorType(i8, VEC), ir.VectorType(i64, 4)
        mod = builder.module
        name = "llvm.x86.avx2.psad.bw"
        psad = mod.globals.get(name) or ir.Function(mod, ir.FunctionType(v4, [v32, v32]), name)

        def row_ptrs(arr, first, count):
            base = builder.bitcast(arr.data, i8.as_pointer())
            stride = builder.extract_value(arr.strides, 0)
            return [builder.gep(base, [builder.mul(builder.add(first, ir.Constant(i64, r)), stride)])
                    for r in range(count)]

        xrows = row_ptrs(xarr, i0v, TILE_R)
        yrows = row_ptrs(yarr, j0v, TILE_C)

        def step(k, accs):
            off = builder.mul(k, ir.Constant(i64, VEC))

            def load(ptr):
                return builder.load(builder.bitcast(builder.gep(ptr, [off]), v32.as_pointer()), align=1)

            xv = [load(p) for p in xrows]
            yv = [load(p) for p in yrows]
            return [builder.add(accs[r * TILE_C + c], builder.call(psad, [xv[r], yv[c]]))
                    for r in range(TILE_R) for c in range(TILE_C)]

        finals = counted_loop(builder, nv, [ir.Constant(v4, None)] * (TILE_R * TILE_C), step)
        obase = builder.bitcast(oarr.data, i64.as_pointer())
        for idx, acc in enumerate(finals):
            lanes = [builder.extract_element(acc, ir.Constant(i32, t)) for t in range(4)]
            total = builder.add(builder.add(lanes[0], lanes[1]), builder.add(lanes[2], lanes[3]))
            builder.store(total, builder.gep(obase, [ir.Constant(i64, idx)]))
        return context.get_dummy_value()

    return sig, codegen
