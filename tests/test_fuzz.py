"""Fuzzing the readers: random byte flips and truncations of a valid CIFAR batch, idx file, model file and
pipeline stream (seeded, a few hundred cases) must each load or be refused with an imgclf error (exit 2)
and never crash, hang or escape as another exception (which the CLI would turn into exit 1).

.npz inputs are mutated two ways: as raw bytes (mostly caught by the zip's CRCs), and member by member
and then re-zipped with valid CRCs, so that the .npy headers, the arrays and the JSON metadata are
fuzzed too. Cases run in-process through the library; a handful also run through the CLI in a
subprocess (a crash there cannot take pytest down) to check the exit status and that no traceback is
printed.
"""

from __future__ import annotations

import io
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import hostile as H
from datafiles import cifar_batch_bytes, cifar_rows
from imgclf.errors import ImgclfError

CASES_PER_TARGET = 150
SECONDS_PER_CASE = 10


def _flip(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        at = int(rng.integers(0, len(buf)))
        buf[at] = int(rng.integers(0, 256)) if rng.random() < 0.5 else buf[at] ^ (1 << int(rng.integers(0, 8)))
    return bytes(buf)


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[:int(rng.integers(0, len(data)))]


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    return _truncate(data, rng) if rng.random() < 0.3 else _flip(data, rng)


def _mutate_members(data: bytes, rng: np.random.Generator) -> bytes:
    """Mutate the bytes of one member of an .npz (its .npy header, array or JSON) and re-zip it."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {name: z.read(name) for name in z.namelist()}
    name = sorted(members)[int(rng.integers(0, len(members)))]
    members[name] = _mutate(members[name], rng)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return out.getvalue()


# -- the four targets: (valid bytes, how to load them, file name) ---------------------------------------------
def _cifar_bytes() -> bytes:
    return cifar_batch_bytes(*cifar_rows(4, 0))


def _load_cifar(path: Path):
    from imgclf.datasets.registry import read_raw

    return read_raw(path.parent)


def _idx_bytes() -> bytes:
    X = np.random.default_rng(0).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    return struct.pack(">IIII", 2051, 3, 4, 4) + X.tobytes()


def _load_idx(path: Path):
    from imgclf.datasets.mnist import load_idx_dir

    (path.parent / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 3) + bytes([0, 1, 2]))
    return load_idx_dir(path.parent)


def _model_bytes() -> bytes:
    return H.model_file("net")


def _load_model(path: Path):
    from imgclf.storage import load_model

    bundle = load_model(path)
    X = np.random.default_rng(0).integers(0, 256, (3,) + tuple(bundle.input_shape), dtype=np.uint8)
    return bundle.model.predict(bundle.features(X))


def _stream_bytes() -> bytes:
    return H.stream_bytes(np.random.default_rng(0).integers(0, 256, (4, 2, 2, 3), dtype=np.uint8))


def _load_stream(path: Path):
    from imgclf.datasets.registry import load

    return load(str(path), val=0).summary()


TARGETS = {
    "cifar": (_cifar_bytes, _load_cifar, "cifar/data_batch_1", False),
    "idx": (_idx_bytes, _load_idx, "mnist/train-images-idx3-ubyte", False),
    "model": (_model_bytes, _load_model, "m.npz", True),
    "stream": (_stream_bytes, _load_stream, "s.npz", True),
}


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzzed_input_loads_or_is_refused(target, tmp_path):
    make, load, name, is_npz = TARGETS[target]
    valid = make()
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(valid)
    load(path)  # the unmutated input loads
    rng = np.random.default_rng(19)
    outcomes = {"loaded": 0, "refused": 0}
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in range(CASES_PER_TARGET):
            data = _mutate_members(valid, rng) if is_npz and case % 2 else _mutate(valid, rng)
            path.write_bytes(data)
            signal.alarm(SECONDS_PER_CASE)
            try:
                load(path)
                outcomes["loaded"] += 1
            except ImgclfError as exc:
                assert exc.exit_code == 2, f"case {case}: {type(exc).__name__}: {exc}"
                assert "\n" not in str(exc) and len(str(exc)) < 600, f"case {case}: an unwieldy message: {exc!r}"
                outcomes["refused"] += 1
            except _Hang:
                pytest.fail(f"{target} case {case} took more than {SECONDS_PER_CASE} s")
            except Exception as exc:  # noqa: BLE001 - what the test is for
                (tmp_path / "failing").write_bytes(data)
                pytest.fail(f"{target} case {case}: {type(exc).__name__}: {exc} (input kept in {tmp_path}/failing)")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert outcomes["refused"] > CASES_PER_TARGET // 4, outcomes


def test_fuzzed_inputs_through_the_cli(tmp_path):
    """A few cases per target through the real CLI in a subprocess: status 0/1/2, never a traceback."""
    rng = np.random.default_rng(7)
    script = ["import sys", "from imgclf_cli.main import cli", "codes = []"]
    for target, (make, _, name, is_npz) in sorted(TARGETS.items()):
        for i in range(3):
            folder = tmp_path / f"{target}{i}"
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_mutate(make(), rng))
            if target == "idx":  # labels beside the images, as in _load_idx
                (path.parent / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 3) + bytes(3))
            if target == "model":
                H.write(folder / "s.npz", _stream_bytes())
                argv = ["predict", "-m", str(path), str(folder / "s.npz")]
            else:
                argv = ["data", "info", str(path.parent if not is_npz else path)]
            script.append(f"try:\n    cli.main(args={argv!r}, prog_name='imgclf')\n"
                          f"except SystemExit as e:\n    codes.append(e.code or 0)")
    script.append("sys.stderr.write('CODES ' + repr(codes))")
    proc = subprocess.run([sys.executable, "-c", "\n".join(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    codes = eval(proc.stderr.rsplit("CODES ", 1)[1])
    assert len(codes) == 12 and set(codes) <= {0, 1, 2}, codes
