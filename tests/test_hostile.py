"""The hostile-input corpus: each case is a file (or option, or fault) an attacker or a clumsy user might
give imgclf, and the outcome it must have: the exit status, the first line on stderr, no traceback, no
file changed outside what the command may write, and, for the cases that used to cost memory, a peak
measured in a subprocess under an address-space limit (RLIMIT_AS). The inputs are built at test time by
tests/hostile.py; see docs/security.md for the threat model and the limits.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import stat
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import hostile as H
from imgclf_cli.main import cli

# Subprocess cases run under this address-space limit; a Python with numpy, numba and OpenBLAS reserves
# about 0.6 GB of address space, so anything that allocates more than ~0.9 GB fails with MemoryError
# (exit 1, which the expected exit 2 catches) instead of succeeding quietly.
ADDRESS_SPACE = 3 << 29  # 1.5 GiB
PEAK_RSS_MB = 400  # and the resident peak of a refused input must stay below this

_PEAK_MAIN = """
import atexit, os, sys
def _peak():
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    with open(os.environ["HOSTILE_PEAK_FILE"], "w") as out:
        out.write(str(rss))
atexit.register(_peak)
from imgclf_cli.main import main
sys.argv[0] = "imgclf"
main()
"""


@dataclass
class Case:
    id: str
    build: Callable[[Path], list[str]]  # writes its inputs under the folder, returns the argv
    code: int
    first: str  # regex the first line of stderr must match (search)
    subprocess: bool = False  # run under RLIMIT_AS (memory cases, crashes, closed fds, terminals)
    env: dict = field(default_factory=dict)
    stdin: bytes | None = None
    may_change: tuple[str, ...] = ()  # relative paths the command may write
    preexec: Callable[[], None] | None = None
    tty_stdin: bool = False  # a pseudo-terminal on stdin (with no one typing)


def _model(kind="softmax", **kw):
    def build(d):
        H.write(d / "stream.npz", H.stream_bytes())
        H.write(d / "m.npz", H.model_file(kind, **kw))
        return ["predict", "-m", str(d / "m.npz"), str(d / "stream.npz")]
    return build


def _info(writer):
    def build(d):
        target = writer(d)
        return ["data", "info", str(target)]
    return build


def _cifar(batch, meta=None):
    return _info(lambda d: H.cifar_folder(d / "cifar", batch, meta))


def _stream_info(data: bytes):
    return _info(lambda d: H.write(d / "s.npz", data))


def _private_device(d: Path) -> Path:
    """A character device like /dev/null, made in the test's own folder (never one under /dev)."""
    dev = d / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc})")
    return dev


def _export_to(target: Callable[[Path], Path]):
    def build(d):
        return ["data", "export", "shapes", "--n-train", "5", "--n-test", "5", "--val", "0", "-o", str(target(d))]
    return build


def _symlinked_output(d):
    (d / "real").mkdir()
    (d / "link.npz").symlink_to("real/target.npz")
    return d / "link.npz"


def _data_get_from(writer):
    def build(d):
        source = writer(d)
        return ["data", "get", "mnist", "--from", str(source), "--dir", str(d / "dest"), "-q"]
    return build


def _mnist_with_link(d):
    src = H.idx_folder(d / "src" / "mnist")
    (d / "secret").write_text("root only")
    (src / "notes.txt").symlink_to(d / "secret")
    return src


def _tar_loop(d):
    return H.write(d / "loop.tar.gz", H.tar_bytes([
        (H.member("m/a", tarfile.SYMTYPE, "b"), None), (H.member("m/b", tarfile.SYMTYPE, "a"), None),
        (H.member("m/a/x"), b"x")]))


def _resume(hidden, model=None):
    def build(d):
        from imgclf.io.checkpoint import FORMAT as CHECKPOINT_FORMAT, VERSION as CHECKPOINT_VERSION

        H.write(d / "s.npz", H.stream_bytes(np.zeros((8, 2, 2, 3), np.uint8)))
        meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "iteration": 0,
                "model": model or {"kind": "twolayer", "hyperparameters": {"hidden": hidden}}, "extra": {}}
        H.write(d / "ck.npz", H.npz_bytes({"param/W1": np.zeros((12, 4), np.float32)}, meta))
        return ["train", "twolayer", "--data", str(d / "s.npz"), "--resume", str(d / "ck.npz"), "-q"]
    return build


def _train(*args, shape=(8, 2, 2, 3)):
    def build(d):
        H.write(d / "s.npz", H.stream_bytes(np.zeros(shape, np.uint8)))
        return ["-q", *args[:1], *args[1:], "--data", str(d / "s.npz")]
    return build


def _loud(build):
    """The same command without -q, for cases whose expected first line is a note."""
    return lambda d: [a for a in build(d) if a != "-q"]


def _pixels(value):
    X = np.zeros((4, 2, 2, 3), np.float32)
    X[0, 0, 0, 0] = value
    return H.stream_bytes(X)


def _close(fd):
    return lambda: os.close(fd)


def _export_stdout(d):
    return ["data", "export", "shapes", "--n-train", "5", "--n-test", "5", "--val", "0"]


M = {"format": "imgclf-model", "version": 1, "kind": "softmax", "hyperparameters": {}, "classes": ["a"],
     "input_shape": [2, 2, 3]}

CASES = [
    # -- memory safety ---------------------------------------------------------------------------------
    Case("cifar-forged-object-dtype-segfault",
         _cifar(H.forged_batch(H.forged_array((1, 3072), bytes(3072)),
                               H.forged_array((1,), b"A" * 8, H.forged_dtype(b"O8", b"<")))),
         2, r"refusing an array of dtype 'O8'", subprocess=True),
    Case("cifar-object-flags-on-int-dtype",
         _cifar(H.forged_batch(H.forged_array((1, 3072), bytes(3072)),
                               H.forged_array((4,), [1, 2, 3, 4], H.forged_dtype(b"i8", b"<", flags=0x3F)))),
         2, r"refusing an array whose data is not raw bytes", subprocess=True),
    Case("cifar-buffer-shorter-than-shape",
         _cifar(H.forged_batch(H.forged_array((1000, 3072), b""), H.int_list([0] * 1000))),
         2, r"needs 3072000 bytes, but the pickle holds 0", subprocess=True),
    Case("cifar-void-dtype-with-item-size",
         _cifar(H.forged_batch(H.forged_array((1, 3072), bytes(3072), H.forged_dtype(b"V8", elsize=0)),
                               H.int_list([0]))),
         2, r"refusing an array of dtype 'V8'", subprocess=True),
    Case("cifar-global-os-system",
         _cifar(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."),
         2, r"refusing to unpickle the global os\.system"),
    # -- output: devices, links, directories -------------------------------------------------------------
    Case("output-private-char-device", _export_to(_private_device), 0, r"^exported shapes"),
    Case("output-symlink-writes-target", _export_to(_symlinked_output), 0, r"^exported shapes",
         may_change=("real", "real/target.npz")),
    Case("output-symlink-loop",
         _export_to(lambda d: (d.joinpath("l1").symlink_to("l2"), d.joinpath("l2").symlink_to("l1"), d / "l1")[2]),
         2, r"a loop of symbolic links"),
    Case("output-is-directory", _export_to(lambda d: d), 2, r"is a directory"),
    Case("knn-predictions-directory",
         lambda d: ["knn", "--k", "1", "--data", str(H.write(d / "s.npz", H.stream_bytes())),
                    "--predictions", str(d)],
         2, r"is a directory"),
    # -- data get --from -----------------------------------------------------------------------------------
    Case("data-get-from-folder-with-symlink", _data_get_from(_mnist_with_link), 2,
         r"refusing to import a symbolic link", may_change=("dest",)),
    Case("data-get-from-tar-symlink-loop", _data_get_from(_tar_loop), 2,
         r"refusing to extract 'm/a/x'", may_change=("dest",)),
    # -- memory and time bounds ----------------------------------------------------------------------------
    Case("cifar-declares-a-million-images",
         _cifar(H.forged_batch(H.forged_array((1_000_000, 3072), b""), H.int_list([0]))),
         2, r"element count is 3072000000, over the limit", subprocess=True),
    Case("cifar-declares-300k-images",
         _cifar(H.forged_batch(H.forged_array((300_000, 3072), b""), H.int_list([0]))),
         2, r"needs 921600000 bytes, but the pickle holds 0", subprocess=True),
    Case("cifar-billion-laughs-labels",
         _cifar(H.forged_batch(H.forged_array((1, 3072), bytes(3072)), H.billion_laughs())),
         2, r"1 images but 10 labels", subprocess=True),
    Case("cifar-billion-laughs-labels-right-length",
         _cifar(H.forged_batch(H.forged_array((10, 3072), bytes(30720)), H.billion_laughs())),
         2, r"'labels' must be a list of integers, found a list", subprocess=True),
    Case("tar-members-exceed-total",
         _info(lambda d: H.write(d / "c.tar.gz", H.zeros_member_tar(4, 1 << 20))),
         2, r"the batch members' total size is \d+, over the limit of 3000000", subprocess=True,
         env={"IMGCLF_MAX_INPUT_BYTES": "3e6"}),
    Case("npz-zip-bomb-128mb", lambda d: ["predict", "-m", str(H.write(d / "m.npz", H.zip_bomb_npz(M, 1 << 27))),
                                          str(H.write(d / "s.npz", H.stream_bytes()))],
         2, r"declares \d+ bytes of arrays in \d+ bytes of file \(refusing a likely zip bomb\)", subprocess=True),
    Case("npz-zip-bomb-3gb", lambda d: ["predict", "-m", str(H.write(d / "m.npz",
                                                                     H.zip_bomb_npz(M, 1 << 23, declare=3 << 30))),
                                        str(H.write(d / "s.npz", H.stream_bytes()))],
         2, r"declares 32212\d+ bytes of arrays in \d+ bytes of file \(refusing", subprocess=True),
    Case("npy-header-declares-1e12", lambda d: ["predict", "-m", str(H.write(d / "m.npz", H.lying_header_npz(M))),
                                                str(H.write(d / "s.npz", H.stream_bytes()))],
         2, r"model_W\.npy's element count is 1000000000000, over the limit", subprocess=True),
    Case("model-hidden-1e8", _model("net", meta_edit=H.set_path("hyperparameters.hidden", [100_000_000])),
         2, r"ask for more weights than the file holds", subprocess=True),
    Case("model-filters-1e6", _model("convnet", meta_edit=H.set_path("hyperparameters.filters", [1_000_000])),
         2, r"ask for more weights than the file holds", subprocess=True),
    Case("model-filter-size-1001", _model("convnet", meta_edit=H.set_path("hyperparameters.filter_size", 1001)),
         2, r"more weights than the file holds|filter_size 1001 is larger", subprocess=True),
    Case("model-n-features-1e10", _model("net", meta_edit=H.set_path("hyperparameters.n_features_in_", 10 ** 10)),
         2, r"ask for more weights than the file holds", subprocess=True),
    Case("model-input-shape-huge",
         _model(meta_edit=H.set_path("input_shape", [100_000, 100_000, 3])),
         2, r"'input_shape' side is 100000, over the limit of 8192", subprocess=True),
    Case("model-input-shape-not-what-the-model-takes", _model(meta_edit=H.set_path("input_shape", [4000, 4000, 3])),
         2, r"'input_shape' \[4000, 4000, 3\] holds 48000000 values, but the model takes 12"),
    Case("convnet-input-shape-huge",
         _model("convnet", meta_edit=H.set_path("hyperparameters.input_shape", [100_000, 100_000, 3])),
         2, r"malformed model file|more weights than the file holds|cannot be", subprocess=True),
    Case("resume-checkpoint-hidden-1e8", _resume([100_000_000]), 2,
         r"(over the limit|more weights than the file holds)", subprocess=True),
    Case("resume-checkpoint-model-not-a-dict", _resume([4], model=["x"]), 2, r"checkpoint's 'model' field"),
    Case("option-tune-trials-1e9", _train("tune", "softmax", "--trials", "1000000000", "--val", "2"), 2,
         r"number of trials .* is 1000000000, over the limit"),
    Case("option-hidden-1e8", _train("train", "twolayer", "--hidden", "100000000", "--epochs", "1"), 2,
         r"weight matrix is \d+, over the limit", subprocess=True),
    Case("option-filter-size-1001",
         _train("train", "convnet", "--filter-size", "1001", "--filters", "2", "--hidden", "4", "--epochs", "1"),
         2, r"filter_size 1001 is larger than the 2x2 images", subprocess=True),
    Case("option-size-100000",
         lambda d: ["data", "info", str(d), "--size", "100000x100000"], 2,
         r"exceeds the limit of 8192 pixels a side"),
    # The CLI caps worker counts at the core count with a note (the library refuses them).
    Case("option-scheduler-local-1000",
         _loud(_train("tune", "softmax", "--val", "2", "--trials", "1", "--scheduler", "local:1000")), 0,
         r"note: --scheduler local:1000 capped at local:\d+ \(the core count; set IMGCLF_MAX_WORKERS"),
    Case("option-jobs-1000", _loud(_train("tune", "softmax", "--val", "2", "--trials", "1", "--jobs", "1000")), 0,
         r"note: --jobs 1000 capped at \d+ worker processes"),
    Case("mnist-idx-dims-overflow",
         _info(lambda d: H.idx_folder(d / "mnist", image_dims=(1 << 31, 1 << 31, 4), image_payload=b"")),
         2, r"the header promises 2147483648x2147483648x4 values", subprocess=True),
    Case("data-info-stdin-is-a-terminal", lambda d: ["data", "info", "-"], 2,
         r"reads a pipeline stream from standard input, which is a terminal", subprocess=True, tty_stdin=True),
    # -- missing validation ----------------------------------------------------------------------------------
    Case("model-nan-weights", _model(arrays_edit=lambda a: a["model_W"].__setitem__((0, 0), np.nan)), 2,
         r"array 'model_W' contains NaN or infinite values"),
    Case("model-inf-weights", _model("net", arrays_edit=lambda a: a["model_b1"].__setitem__(0, np.inf)), 2,
         r"array 'model_b1' contains NaN or infinite values"),
    Case("model-weights-1e38", _model(arrays_edit=lambda a: a["model_W"].__setitem__((0, 0), 1e38)), 2,
         r"largest value in array 'model_W' is \d+, over the limit"),
    Case("model-bool-weights", _model(arrays_edit=lambda a: a.update(model_W=a["model_W"] > 0)), 2,
         r"array 'model_W' has dtype bool"),
    Case("model-complex-weights", _model(arrays_edit=lambda a: a.update(model_W=a["model_W"] + 1j)), 2,
         r"array 'model_W' has dtype complex"),
    Case("model-string-weights", _model(arrays_edit=lambda a: a.update(model_W=a["model_W"].astype(str))), 2,
         r"array 'model_W' has dtype <U"),
    Case("model-empty-classes", _model(meta_edit=H.set_path("classes", [])), 2, r"field 'classes'"),
    Case("model-non-string-classes", _model(meta_edit=H.set_path("classes", [1, 2, 3])), 2, r"field 'classes'"),
    Case("model-knn-labels-out-of-range",
         _model("knn", arrays_edit=lambda a: a["model_y_train"].__setitem__(0, 7)), 2,
         r"model labels \(y_train\) range over 0\.\.7, but the file names 3 classes"),
    Case("model-chain-not-a-list", _model(meta_edit=H.set_path("transforms", {"kind": "mean"})), 2,
         r"field 'transforms' must be a list"),
    Case("model-chain-of-numbers", _model(meta_edit=H.set_path("transforms", [1, 2])), 2,
         r"field 'transforms' must be a list of objects"),
    Case("model-chain-arrays-not-a-dict",
         _model(meta_edit=H.set_path("transforms", [{"kind": "mean", "arrays": [1], "params": {}}])), 2,
         r"'arrays' and 'params' must be objects"),
    Case("model-hyperparameters-a-list", _model(meta_edit=H.set_path("hyperparameters", [1])), 2,
         r"field 'hyperparameters' must be a dict"),
    Case("cifar-float-labels", _cifar(H.batch_with_labels([1.7, 2.2])), 2,
         r"'labels' must be a list of integers, found a float"),
    Case("cifar-label-2-63", _cifar(H.batch_with_labels([2 ** 63, 0])), 2, r"labels must lie in 0\.\.9"),
    Case("cifar-negative-label", _cifar(H.batch_with_labels([-1, 0])), 2, r"labels must lie in 0\.\.9"),
    Case("stream-image-shape-mismatch", _stream_info(H.stream_bytes(image_shape=[32, 32, 3])), 2,
         r"holds 2x2x3 images but the metadata says image_shape 32x32x3"),
    Case("stream-duplicate-class-names", _stream_info(H.stream_bytes(classes=("a", "a", "b"))), 2,
         r"field 'classes' must be a non-empty list of distinct names"),
    Case("tar-not-a-tar-one-line", _info(lambda d: H.write(d / "bad.tar.gz", b"\x1f\x8b" + bytes(100))), 2,
         r"truncated or corrupt archive"),
    Case("stream-concatenated", lambda d: ["data", "info", "-"], 2, r"not one \.npz file \(concatenated",
         stdin=H.stream_bytes() * 2),
    Case("stream-pixels-1e38", _stream_info(_pixels(1e38)), 2, r"largest absolute value is \d+, over the limit"),
    Case("stream-nan-pixels", _stream_info(_pixels(np.nan)), 2, r"contains 1 NaN or infinite value"),
    Case("stream-labels-and-rows-differ",
         _stream_info(H.stream_bytes(np.zeros((4, 2, 2, 3), np.uint8), np.zeros(3, np.int64))), 2,
         r"holds 4 rows but y_train 3 labels"),
    Case("augment-crop-larger-than-image",
         _train("train", "twolayer", "--augment", "crop:5", "--epochs", "1", "--hidden", "4"), 2,
         r"crop:5 pads by more than the 2x2 images"),
    Case("tune-every-trial-fails",
         _train("tune", "softmax", "--trials", "2", "--epochs", "1", "--param", "lr=1e30", "--param", "reg=1e30",
                "--jobs", "1", "--val", "2"),
         1, r"every trial failed"),
    Case("tune-param-nan", _train("tune", "softmax", "--param", "lr=nan", "--val", "2"), 2,
         r"values must be finite numbers"),
    # -- exit codes and pipes ----------------------------------------------------------------------------------
    Case("deeply-nested-json-meta",
         _stream_info(H.npz_bytes({}, raw_meta='{"a":' * 100_000 + "1" + "}" * 100_000)), 2,
         r"JSON nested too deeply"),
    Case("meta-not-unicode", _stream_info(H.bad_unicode_npz()), 2, r"meta\.npy holds text that is not Unicode"),
    Case("meta-not-a-string", _stream_info(H.npz_bytes({"X_train": np.zeros(3)}, raw_meta="[1, 2]")), 2,
         r"corrupt metadata"),
    Case("cifar-non-utf8-class-names",
         _cifar(H.valid_batch(), H.meta_with_names([b"\xff\xfe"] * 10)), 2, r"a class name is not UTF-8 text"),
    Case("scheduler-port-out-of-range",
         _train("tune", "softmax", "--val", "2", "--scheduler", "tcp://localhost:99999"), 2,
         r"--scheduler expects tcp://HOST:PORT"),
    Case("scheduler-http-url", _train("tune", "softmax", "--val", "2", "--scheduler", "http://example.com:80/x"), 2,
         r"--scheduler expects tcp://HOST:PORT"),
    Case("stdin-closed", lambda d: ["data", "info", "-"], 2, r"standard input is closed", subprocess=True,
         preexec=_close(0)),
    Case("stdout-closed", _export_stdout, 2, r"standard output is closed", subprocess=True, preexec=_close(1)),
]


def _run_subprocess(case: Case, argv: list[str], d: Path, env: dict) -> tuple[int, str, int]:
    peak_file = d.parent / f"{d.name}.peak"

    def preexec():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        if case.preexec:
            case.preexec()

    full_env = dict(os.environ, HOSTILE_PEAK_FILE=str(peak_file), **env)
    tty = os.openpty() if case.tty_stdin else None
    try:
        stdin = tty[1] if tty else (None if case.stdin is not None else subprocess.DEVNULL)
        proc = subprocess.run([sys.executable, "-c", _PEAK_MAIN, *argv], input=case.stdin, stdin=stdin,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, preexec_fn=preexec,
                              timeout=120)
    finally:
        for fd in tty or ():
            os.close(fd)
    peak_kb = int(peak_file.read_text()) if peak_file.exists() else -1
    return proc.returncode, proc.stderr.decode(errors="replace"), peak_kb


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path, runner, monkeypatch):
    d = tmp_path / "case"
    d.mkdir()
    argv = case.build(d)
    before = H.snapshot(d)
    if case.subprocess:
        code, stderr, peak_kb = _run_subprocess(case, argv, d, case.env)
        assert code >= 0, f"killed by signal {-code}: {stderr}"
        assert 0 < peak_kb < PEAK_RSS_MB * 1024, f"peak resident memory {peak_kb} kB"
    else:
        for k, v in case.env.items():
            monkeypatch.setenv(k, v)
        result = runner.invoke(cli, argv, input=case.stdin)
        code, stderr = result.exit_code, result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    # The message: the first line, or for click's own usage errors the one after its "Usage:" lines.
    first = errors[0] if errors and lines[0].startswith("Usage:") else (lines[0] if lines else "")
    assert code == case.code, f"exit {code}, stderr: {stderr[-2000:]}"
    assert "Traceback" not in stderr
    assert re.search(case.first, first), f"first line of stderr: {first!r}"
    if case.code:
        assert len(errors) == 1, stderr
    after = H.snapshot(d)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    allowed = {k for k in changed if any(k == m or k.startswith(m + "/") for m in case.may_change)}
    assert changed == allowed, f"files changed: {sorted(changed - allowed)}"


def test_device_output_stays_a_device(tmp_path, runner):
    dev = _private_device(tmp_path)
    result = runner.invoke(cli, _export_to(lambda d: dev)(tmp_path))
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(dev.lstat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temporary file left beside it


def test_symlink_output_replaces_the_target_not_the_link(tmp_path, runner):
    link = _symlinked_output(tmp_path)
    result = runner.invoke(cli, _export_to(lambda d: link)(tmp_path))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and (tmp_path / "real" / "target.npz").stat().st_size > 0


def test_fifo_output_is_written_in_place(tmp_path):
    import threading

    from imgclf.io.atomic import atomic_write_bytes

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    atomic_write_bytes(fifo, b"hello")
    reader.join(10)
    assert got == [b"hello"] and stat.S_ISFIFO(fifo.lstat().st_mode)


# -- a full disk ---------------------------------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_full_disk_on_save_keeps_the_old_file(tmp_path, runner, monkeypatch, where):
    out = tmp_path / "out.npz"
    out.write_bytes(b"old content")
    if where == "fsync":
        monkeypatch.setattr(os, "fsync", _enospc)
    else:
        real_fdopen = os.fdopen

        class Full:
            def __init__(self, f):
                self.f = f

            def __getattr__(self, name):
                return getattr(self.f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            write = _enospc

        monkeypatch.setattr(os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    result = runner.invoke(cli, _export_to(lambda d: out)(tmp_path))
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [f"Error: cannot write {out}: No space left on device"]
    assert out.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # the temporary file is gone


def test_full_disk_on_stdout_is_exit_1(tmp_path, monkeypatch, capfd):
    """A redirected stdout on a full disk: os.write fails part-way (after a short write)."""
    from imgclf.errors import WriteError
    from imgclf.io.atomic import write_stdout

    calls = []

    def short_then_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return len(data) // 2
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(WriteError, match="cannot write standard output: No space left on device"):
        write_stdout(b"x" * 1000)
    assert calls == [1000, 500]


def test_short_write_to_a_file_object_is_an_error():
    from imgclf.errors import WriteError
    from imgclf.io.atomic import write_all

    class Refusing:
        def write(self, data):
            return 0

    with pytest.raises(WriteError, match="the write was refused"):
        write_all(Refusing(), b"data", "sink")


def test_head_closing_the_pipe_ends_quietly(tmp_path):
    code = ("import subprocess, sys\n"
            "p = subprocess.Popen([sys.executable, '-m', 'imgclf_cli.main', 'data', 'export', 'shapes'],"
            " stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
            "p.stdout.read(10); p.stdout.close()\n"
            "err = p.stderr.read(); p.wait()\n"
            "sys.stdout.write(repr((p.returncode, err.decode())))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    returncode, stderr = eval(out.stdout)
    assert "BrokenPipe" not in stderr and "Traceback" not in stderr and stderr == "", stderr
    assert returncode == 1


def test_limits_can_be_raised(monkeypatch, tmp_path):
    """The ceilings are documented in one place and raised by environment variables or override()."""
    from imgclf import limits
    from imgclf.errors import UsageError

    assert limits.get("trials") == 100_000
    monkeypatch.setenv("IMGCLF_MAX_TRIALS", "2e6")
    assert limits.get("trials") == 2_000_000
    with limits.override(trials=5):
        assert limits.get("trials") == 5
    monkeypatch.setenv("IMGCLF_MAX_TRIALS", "lots")
    with pytest.raises(UsageError, match="IMGCLF_MAX_TRIALS='lots'"):
        limits.get("trials")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    for name in limits.CEILINGS:
        assert f"IMGCLF_MAX_{name.upper()}" in doc


# -- stored preprocessing steps: hyperparameters checked on load as at fit ----------------------------------
def _chain_model(spec: str, field: str, value) -> bytes:
    """A softmax model file (12 features) behind the chain `spec` fitted on 2x2x3 images, with the last
    step's `field` hand-edited to `value`."""
    from imgclf.preprocessing_chain import chain_to_arrays, parse_chain_spec

    X = np.random.default_rng(0).integers(0, 256, (40, 2, 2, 3)).astype(np.uint8)
    chain = parse_chain_spec(spec)
    for t in chain:
        t.fit(X)
        X = t.transform(X)
    meta, arrays = chain_to_arrays(chain)
    meta[-1]["params"][field] = value

    def edit_meta(m):
        m["transforms"] = meta

    return H.model_file(meta_edit=edit_meta, arrays_edit=lambda a: a.update(arrays))


STORED_STEP_CASES = [
    ("mean:channel", "per_channel", "yes"), ("mean:channel", "per_channel", 1), ("normalize:channel", "per_channel", [1]),
    ("mean", "input_shape_", [2.5, 2, 3]), ("mean", "input_shape_", [True, 4, 3]),
    ("standardize:0.01", "eps", -1.0), ("standardize:0.01", "eps", float("nan")), ("standardize:0.01", "eps", True),
    ("pca:12", "dims", -1), ("pca:12", "dims", 0), ("pca:12", "dims", "x"), ("pca:12", "dims", 10 ** 12),
    ("pca:12", "dims", True), ("pca:12", "dims", 5), ("pca:12", "variance", 0.5),
    ("whiten:12", "eps", -1e-5), ("whiten:12", "eps", float("inf")), ("whiten:12", "eps", True),
    ("whiten:12", "variance", 7), ("zca:12", "zca", "x"), ("zca:12", "zca", None),
]


@pytest.mark.parametrize("spec,field,value", STORED_STEP_CASES, ids=[f"{s}-{f}-{v!r}" for s, f, v in STORED_STEP_CASES])
def test_hand_edited_stored_step_is_a_malformed_model_file(spec, field, value, tmp_path, runner):
    """Every step a model file's chain may hold is checked on load as a fit checks it (the shared
    Transform.from_arrays): before, these loaded and predicted with exit 0 (a negative whiten eps,
    unused dims or a string per_channel), or failed later with NaN features or a shape error."""
    model = H.write(tmp_path / "m.npz", _chain_model(spec, field, value))
    stream = H.write(tmp_path / "s.npz", H.stream_bytes())
    for argv in (["predict", "-m", str(model), str(stream)], ["evaluate", "-m", str(model), "--data", str(stream)]):
        res = runner.invoke(cli, argv)
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        lines = res.stderr.strip().splitlines()
        assert res.exit_code == 2, res.output
        assert len(lines) == 1 and "malformed model file" in lines[0] and "Traceback" not in res.stderr, lines


@pytest.mark.parametrize("value", [0, -1, "x", float("nan"), True, 2.5])
def test_hand_edited_knn_memory_is_a_malformed_model_file(value, tmp_path, runner):
    """knn checks memory_mb at fit, which loading a knn model file goes through: "x" or NaN used to end
    in an uncaught ValueError (exit 1), 0, -1 or true loaded and predicted with exit 0."""
    model = H.write(tmp_path / "m.npz", H.model_file("knn", meta_edit=H.set_path("hyperparameters.memory_mb", value)))
    stream = H.write(tmp_path / "s.npz", H.stream_bytes())
    res = runner.invoke(cli, ["predict", "-m", str(model), str(stream)])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "malformed model file" in lines[0] and "memory_mb" in lines[0]


NET_FIELDS = [("augment", "bogus"), ("augment", "crop:-3"), ("augment", True), ("lr", -1), ("lr", "x"),
              ("lr", float("nan")), ("lr_schedule", "bogus"), ("lr_schedule", -1), ("lr_schedule", "step:-1"),
              ("epochs", 0), ("epochs", "bogus"), ("patience", -1), ("optim_options", [1]),
              ("optim_options", {"nope": 1}), ("random_state", -1), ("random_state", "x"),
              # settings and schedule numbers that loaded with exit 0 (step:0.5:inf: OverflowError, exit 1)
              ("optim_options", {"beta1": True}), ("optim_options", {"beta1": float("nan")}),
              ("optim_options", {"beta2": 1.5}), ("optim_options", {"epsilon": -1}), ("optim_options", {"beta2": "x"}),
              ("lr_schedule", "exp:nan"), ("lr_schedule", "exp:inf"), ("lr_schedule", "inv:nan"),
              ("lr_schedule", "step:0.5:inf"), ("lr_schedule", "step:0.5:2.5")]


@pytest.mark.parametrize("kind", ["net", "convnet"])
@pytest.mark.parametrize("field,value", NET_FIELDS, ids=[f"{f}-{v!r}" for f, v in NET_FIELDS])
def test_hand_edited_net_training_settings_are_a_malformed_model_file(kind, field, value, tmp_path, runner):
    """The nets' augmentation spec, learning rate, schedule, optimiser settings, epochs, patience and seed
    were checked only when fit set up its Solver: a model file holding bad ones loaded with exit 0."""
    model = H.write(tmp_path / "m.npz", H.model_file(kind, meta_edit=H.set_path(f"hyperparameters.{field}", value)))
    stream = H.write(tmp_path / "s.npz", H.stream_bytes())
    res = runner.invoke(cli, ["predict", "-m", str(model), str(stream)])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "malformed model file" in lines[0], res.output


# -- hand-edited hyperparameters, learned scalars and metadata: refused on load, in one line -----------------
def _assert_refused_on_load(model: bytes, tmp_path, runner, says: str = "malformed model file"):
    """predict and evaluate both refuse the file: exit 2, one line on stderr naming it malformed, no
    traceback, and no Python warning on the way (a warning is a second line in a terminal)."""
    import warnings

    path = H.write(tmp_path / "m.npz", model)
    stream = H.write(tmp_path / "s.npz", H.stream_bytes())
    for argv in (["predict", "-m", str(path), str(stream)], ["evaluate", "-m", str(path), "--data", str(stream)]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = runner.invoke(cli, argv)
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        lines = res.stderr.strip().splitlines()
        assert res.exit_code == 2, res.output
        assert len(lines) == 1 and "malformed model file" in lines[0] and says in lines[0], lines
        assert "Traceback" not in res.stderr
        assert not caught, [str(w.message) for w in caught]


def _edited_model(kind: str, field: str, value) -> bytes:
    def edit(meta):
        if kind == "svm":  # the softmax file as an svm: the same arrays, the svm's defaults for the rest
            meta["kind"] = "svm"
        meta["hyperparameters"][field] = value
    return H.model_file("softmax" if kind == "svm" else kind, meta_edit=edit)


@pytest.mark.parametrize("field,value", [("n_features_in_", -1), ("n_features_in_", 0), ("n_features_in_", 10 ** 12)])
def test_linear_model_file_refusals_name_the_file(field, value, tmp_path, runner):
    """The linear models' own refusals (W's shape) used to come out without the file's name or the
    words every other refusal uses."""
    _assert_refused_on_load(_edited_model("softmax", field, value), tmp_path, runner)


_BAD_CLASS_WEIGHTS = [{"a": -1}, {"a": float("nan")}, {"a": float("inf")}, {"a": "x"}, {"a": True}, {"a": None},
                      [1], 3, "bogus"]
# (kind, hyperparameter, value): each loaded and predicted with exit 0 (or crashed) before, except reg=true
# for the linear models (svm, softmax), kept to show every estimator refuses it
HAND_EDITED = (
    [(k, "train_acc_sample", v) for k in ("net", "convnet") for v in (-1, 0, 2.5, "x", True)]
    + [(k, "class_weight", v) for k in ("net", "convnet", "softmax", "svm") for v in _BAD_CLASS_WEIGHTS]
    + [(k, "reg", True) for k in ("net", "convnet", "softmax", "svm")]
    + [("net", "dropout", False), ("net", "label_smoothing", False), ("convnet", "bn_momentum", False)]
    + [(k, "hidden", v) for k in ("net", "convnet") for v in ([4.0], "4", [4.5], ["4"])] + [("convnet", "hidden", False)]
    + [(k, "best_epoch_", v) for k in ("net", "convnet", "softmax") for v in (-1, 0, 2.5, "x", True, [1])]
    + [(k, "stopped_", v) for k in ("net", "convnet", "softmax") for v in (1, True, [1], {"a": 1})]
    + [(k, "n_features_in_", v) for k in ("net", "convnet", "softmax") for v in (-1, 0, 12.0, "12", True)]
    + [("softmax", "bias_trick", v) for v in ("no", 1)] + [("svm", "squared_hinge", "x")]
    + [("softmax", "epochs", v) for v in ("bogus", 0, 2.0)] + [("softmax", "random_state", v) for v in (-1, "x")]
    + [("net", "batchnorm", "yes"), ("convnet", "input_shape", [2.0, 2, 3]),
       ("convnet", "input_shape", ["2", 2, 3])]
    # airbench's training methods: bias rate, ramped averaging, schedule end value, TTA, reflect crops
    + [(k, "bias_lr_scale", v) for k in ("net", "convnet") for v in (0, -1, "x", True, None, [64])]
    + [("convnet", "tta", v) for v in ("shift", "flip+", ["flip"], True)]
    + [(k, "lookahead", v) for k in ("net", "convnet") for v in ("5:rampx", "0:ramp", [5, "Ramp"], ["5", "ramp"])]
    + [("net", "lr_schedule", v) for v in ("warmup:0.2:0.2:2", "warmup:0.2:0.2:-1", "warmup:0.2:0.2:0.1:0")]
    + [("convnet", "augment", v) for v in ("crop:2:mirror", "crop:x:reflect", "crop:2:reflect:1")]
)


@pytest.mark.parametrize("kind,field,value", HAND_EDITED, ids=[f"{k}-{f}-{v!r}" for k, f, v in HAND_EDITED])
def test_hand_edited_hyperparameter_or_learned_scalar_is_refused_on_load(kind, field, value, tmp_path, runner):
    """Numbers are real numbers and never bools, counts whole numbers of an integer type, class weights
    finite and >= 0, flags True or False, as at fit; learned scalars as fit leaves them. Before: a
    negative train_acc_sample, class_weight NaN, reg true, hidden [8.0] or "8", best_epoch_ -1 ... loaded
    and predicted with exit 0; n_features_in_ -1 printed numpy's RuntimeWarning before its refusal and
    n_features_in_ 0 crashed (ZeroDivisionError, exit 1)."""
    _assert_refused_on_load(_edited_model(kind, field, value), tmp_path, runner, says=field)


def test_airbench_hyperparameters_load_and_files_without_them_keep_the_defaults(tmp_path, runner):
    """A model file with the airbench settings loads and predicts (tta flip+shift on its 2x2 images); one
    from before bias_lr_scale existed loads with the default 1.0."""
    from imgclf import storage

    edit = H.set_path("hyperparameters", {"filters": [2], "filter_size": 3, "hidden": [4], "pool": 2,
                                          "input_shape": [2, 2, 3], "n_features_in_": 12, "best_epoch_": 1,
                                          "stopped_": None, "bias_lr_scale": 64.0, "tta": "flip+shift",
                                          "lookahead": "5:ramp", "lr_schedule": "warmup:0.23:0.2:0.07",
                                          "augment": "flip:alt,crop:1:reflect"})
    path = H.write(tmp_path / "m.npz", H.model_file("convnet", meta_edit=edit))
    stream = H.write(tmp_path / "s.npz", H.stream_bytes())
    res = runner.invoke(cli, ["predict", "-m", str(path), str(stream)])
    assert res.exit_code == 0, res.output
    assert storage.load_model(path).model.bias_lr_scale == 64.0
    old = H.write(tmp_path / "old.npz", H.model_file("convnet"))
    assert storage.load_model(old).model.bias_lr_scale == 1.0


_FLIP = {"kind": "flip", "before_chain": True, "n_images": 4}
AUGMENTATION_RECORDS = [
    {**_FLIP, "kind": "rotate"}, {**_FLIP, "kind": ["flip"]}, {**_FLIP, "n_images": -4}, {**_FLIP, "n_images": 0},
    {**_FLIP, "n_images": 4.0}, {**_FLIP, "n_images": True}, {**_FLIP, "n_images": 3},
    {**_FLIP, "before_chain": "yes"}, {**_FLIP, "before_chain": 1}, {"kind": "flip", "before_chain": True},
    {**_FLIP, "extra": 1}, "flip", [1], None,
]


@pytest.mark.parametrize("record", AUGMENTATION_RECORDS, ids=[repr(r) for r in AUGMENTATION_RECORDS])
def test_hand_edited_augmentation_record_is_refused_on_load(record, tmp_path, runner):
    """extra['augmentation'] ({kind, before_chain, n_images}, written by train svm --augment flip; n_train
    is then 2 x n_images) was never validated."""
    model = H.model_file(meta_edit=H.set_path("extra", {"n_train": 8, "augmentation": record}))
    _assert_refused_on_load(model, tmp_path, runner, says="augmentation")


@pytest.mark.parametrize("value", [-1, 0, 2.5, "x", [1], True])
def test_hand_edited_n_train_is_refused_on_load(value, tmp_path, runner):
    """extra['n_train'] is echoed by evaluate --json and compared by `imgclf ensemble` (a list crashed it)."""
    _assert_refused_on_load(H.model_file(meta_edit=H.set_path("extra", {"n_train": value})), tmp_path, runner,
                            says="n_train")


def test_a_valid_augmentation_record_loads(tmp_path):
    from imgclf import storage

    path = H.write(tmp_path / "m.npz", H.model_file(meta_edit=H.set_path("extra", {"n_train": 8, "augmentation": _FLIP})))
    assert storage.load_model(path).extra["augmentation"] == _FLIP


def _fitted_chain(spec: str):
    from imgclf.preprocessing_chain import parse_chain_spec

    X = np.random.default_rng(0).integers(0, 256, (40, 2, 2, 3)).astype(np.uint8)
    chain = parse_chain_spec(spec)
    for t in chain:
        t.fit(X)
        X = t.transform(X)
    return chain


def _model_with_chain(chain, d: int, kind: str = "softmax") -> bytes:
    from imgclf.preprocessing_chain import chain_to_arrays

    meta, arrays = chain_to_arrays(chain)
    return H.model_file(kind, d=d, meta_edit=lambda m: m.__setitem__("transforms", meta),
                        arrays_edit=lambda a: a.update(arrays))


CHAIN_SPLICES = {
    # step 1 gives 2x2x3 images, step 2 was fitted on 5 PCA features
    "mean-then-standardize-of-5": lambda: (_fitted_chain("mean")[:1] + _fitted_chain("pca:5,standardize")[1:], 5),
    "pca-then-mean-of-images": lambda: (_fitted_chain("pca:5")[:1] + _fitted_chain("mean,mean")[1:], 12),
    "union-then-standardize-of-5": lambda: (_fitted_chain("hog:cell=1+colorhist")
                                             + _fitted_chain("pca:5,standardize")[1:], 5),
    # the chain's last step gives 5 features, the model takes 12
    "pca-5-into-a-12-feature-model": lambda: (_fitted_chain("pca:5"), 12),
    "hog-36-into-a-12-feature-model": lambda: (_fitted_chain("hog:cell=1"), 12),
}


@pytest.mark.parametrize("name", list(CHAIN_SPLICES))
def test_chain_whose_shapes_disagree_is_refused_on_load(name, tmp_path, runner):
    """A chain whose step k gives what step k + 1 was not fitted on, or whose last step does not give what
    the model takes, failed only when it ran (after the data was loaded); now on load."""
    chain, d = CHAIN_SPLICES[name]()
    _assert_refused_on_load(_model_with_chain(chain, d), tmp_path, runner, says="shape" if "then" in name else "takes")


def test_consistent_chains_still_load(tmp_path):
    from imgclf import storage

    for spec, d, kind in (("mean,pca:5", 5, "softmax"), ("hog:cell=1+colorhist,standardize", 46, "softmax"),
                          ("mean,normalize", 12, "convnet")):
        path = H.write(tmp_path / "m.npz", _model_with_chain(_fitted_chain(spec), d, kind))
        assert len(storage.load_model(path).chain) == len(spec.split(","))


def _ensemble_file(edit, tmp_path) -> bytes:
    """A two-member (softmax) ensemble file whose metadata `edit` changes."""
    from imgclf import storage
    from imgclf.ensemble import ensemble_bundle
    from imgclf.io import npzfile

    members = [storage.load_model(H.write(tmp_path / f"member{i}.npz", H.model_file())) for i in range(2)]
    path = tmp_path / "ensemble.npz"
    storage.save_model(ensemble_bundle(members), path)
    meta, arrays = npzfile.read(path)
    edit(meta)
    return H.npz_bytes(arrays, meta)


def _member(i: int, key: str, value):
    return lambda meta: meta["hyperparameters"]["members"][i].__setitem__(key, value)


ENSEMBLE_EDITS = {
    "voting-bogus": (H.set_path("hyperparameters.voting", "bogus"), "voting"),
    "voting-a-list": (H.set_path("hyperparameters.voting", ["soft"]), "voting"),
    "unknown-hyperparameter": (H.set_path("hyperparameters.weights", [1, 2]), "weights"),
    "member-classes-differ": (_member(1, "classes", ["a", "b", "z"]), "classes"),
    "ensemble-classes-differ": (H.set_path("classes", ["x", "y", "z"]), "classes"),
    "member-augmentation-bogus": (_member(0, "extra", {"augmentation": "flip"}), "augmentation"),
}


@pytest.mark.parametrize("name", list(ENSEMBLE_EDITS))
def test_hand_edited_ensemble_is_refused_on_load(name, tmp_path, runner):
    """An ensemble's voting rule, its members' agreement and the ensemble's own classes were checked only
    when it predicted (a usage error after the data was loaded), or never (the ensemble's classes)."""
    edit, says = ENSEMBLE_EDITS[name]
    _assert_refused_on_load(_ensemble_file(edit, tmp_path), tmp_path, runner, says=says)


# -- the same checks at fit ----------------------------------------------------------------------------------
def _estimators():
    from imgclf.linear import LinearSVM, SoftmaxClassifier
    from imgclf.nn.convnet import ConvNet
    from imgclf.nn.net import NeuralNet

    return {"twolayer": NeuralNet, "convnet": ConvNet, "svm": LinearSVM, "softmax": SoftmaxClassifier}


FIT_REFUSALS = (
    [(k, "class_weight", v) for k in ("twolayer", "convnet", "svm", "softmax")
     for v in ({0: -1}, {0: float("nan")}, {0: float("inf")}, {0: "x"}, {0: True}, [1], "bogus")]
    + [(k, "reg", True) for k in ("twolayer", "convnet", "svm", "softmax")]
    + [(k, "hidden", v) for k in ("twolayer", "convnet") for v in ("8", "16", [8.0], [8.5], (True,))]
    + [(k, "train_acc_sample", v) for k in ("twolayer", "convnet") for v in (0, -1, 2.5, "x", True)]
    + [("svm", "squared_hinge", "no"), ("softmax", "bias_trick", 0), ("softmax", "epochs", 0),
       ("twolayer", "batchnorm", "yes")]
)


@pytest.mark.parametrize("kind,param,value", FIT_REFUSALS, ids=[f"{k}-{p}-{v!r}" for k, p, v in FIT_REFUSALS])
def test_fit_refuses_what_a_model_file_may_not_hold(kind, param, value):
    """The load checks are fit's own: check_params (which fit calls first) raises UsageError naming the
    parameter. hidden="16" used to train two hidden layers of 1 and 6 units."""
    from imgclf.errors import UsageError

    model = _estimators()[kind](**{param: value})
    with pytest.raises(UsageError, match=param) as info:
        model.check_params()
    assert info.value.param == param or param in str(info.value)


def test_fit_refuses_negative_class_weight_before_training():
    from imgclf.errors import UsageError
    from imgclf.nn.net import NeuralNet

    X, y = np.random.default_rng(0).normal(size=(20, 4)), np.arange(20) % 2
    with pytest.raises(UsageError, match="class_weight") as info:
        NeuralNet(class_weight={0: -1}, hidden=4, epochs=1).fit(X, y)
    assert info.value.param == "class_weight"
    with pytest.raises(UsageError, match="every class a weight of 0"):
        NeuralNet(class_weight={0: 0, 1: 0}, hidden=4, epochs=1).fit(X, y)


def test_fit_still_takes_integer_sizes():
    from imgclf.nn.convnet import ConvNet
    from imgclf.nn.net import NeuralNet

    assert NeuralNet(hidden=np.int64(8)).hidden_sizes() == (8,)
    assert NeuralNet(hidden=np.array([8, 4])).hidden_sizes() == (8, 4)
    assert ConvNet(hidden=0).hidden_sizes() == ConvNet(hidden=None).hidden_sizes() == ConvNet(hidden=[]).hidden_sizes() == ()
    NeuralNet(class_weight={0: np.float32(2.0), 1: 0}).check_params()


# -- --augment on data that are not images -------------------------------------------------------------------
def _features_stream(d: Path) -> Path:
    """A pipeline stream of 4 PCA features per row (from 2x2x3 images)."""
    from imgclf import storage
    from imgclf.datasets.base import Dataset, Split
    from imgclf.preprocessing_chain import fit_chain, parse_chain_spec

    X = np.random.default_rng(0).integers(0, 256, (24, 2, 2, 3)).astype(np.uint8)
    y = np.arange(24) % 3
    ds = Dataset({"train": Split(X[:16], y[:16]), "val": Split(X[16:20], y[16:20]), "test": Split(X[20:], y[20:])},
                 ["a", "b", "c"], (2, 2, 3))
    storage.write_stream(fit_chain(parse_chain_spec("pca:4"), ds), d / "pca.npz")
    return d / "pca.npz"


AUGMENT_ON_FEATURES = {
    "train-twolayer-flip": (["train", "twolayer", "--augment", "flip", "--hidden", "4", "--epochs", "1"],
                            r"^Error: --augment flip: the data was preprocessed by pca into feature rows of shape \(4,\)"),
    "train-twolayer-crop": (["train", "twolayer", "--augment", "flip:alt,crop:2", "--hidden", "4", "--epochs", "1"],
                            r"^Error: --augment flip:alt,crop:2: the data was preprocessed by pca into feature rows"),
    "train-convnet-flip": (["train", "convnet", "--augment", "flip", "--filters", "2", "--hidden", "4", "--epochs", "1"],
                           r"^Error: --augment flip: the data was preprocessed by pca into feature rows"),
    "tune-twolayer-flip": (["tune", "twolayer", "--param", "augment=flip,none", "--trials", "2", "--epochs", "1",
                            "--jobs", "1"], r"^Error: --augment flip: the data was preprocessed by pca into"),
    "tune-svm-flip-on-a-chain": (["tune", "svm", "--param", "augment=flip", "--trials", "1", "--epochs", "1",
                                  "--jobs", "1"], r"^Error: --augment flip: the data was already preprocessed by pca"),
}


@pytest.mark.parametrize("name", list(AUGMENT_ON_FEATURES))
def test_augment_on_feature_rows_is_a_usage_error(name, tmp_path, runner):
    """The nets flip and crop the images they train on; on feature rows train twolayer failed inside fit
    with the library's wording, and tune ran every trial into the same error and ended in 'every trial
    failed' (exit 1). A linear model tuned with augment=flip mirrored the chain's output, which train
    svm --augment flip refuses. Now one usage line before any training, naming --augment and the chain."""
    argv, first = AUGMENT_ON_FEATURES[name]
    res = runner.invoke(cli, ["-q", *argv, "--data", str(_features_stream(tmp_path))])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and re.search(first, lines[0]), lines


def _bn_net(running_var):
    def edit(a):
        a.update(model_gamma1=np.ones(4, np.float32), model_beta1=np.zeros(4, np.float32),
                 model_running_mean1=np.zeros(4, np.float32), model_running_var1=np.asarray(running_var, np.float32))
    return H.model_file("net", meta_edit=H.set_path("hyperparameters.batchnorm", True), arrays_edit=edit)


def _unbiased_softmax(b):
    return H.model_file(meta_edit=H.set_path("hyperparameters.bias_trick", False),
                        arrays_edit=lambda a: a.update(model_W=a["model_W"][:12], model_b=b))


LEARNED_ARRAYS = {
    "net-classes-repeated": (H.model_file("net", arrays_edit=lambda a: a.update(model_classes=np.array([0, 0, 1]))),
                             "distinct and sorted"),
    "softmax-classes-unsorted": (H.model_file(arrays_edit=lambda a: a.update(model_classes=np.array([2, 1, 0]))),
                                 "distinct and sorted"),
    "net-negative-input-scale": (H.model_file("net", arrays_edit=lambda a: a.update(
        model_input_mean=np.zeros(12, np.float32), model_input_scale=-np.ones(12, np.float32))), "input_scale"),
    "convnet-zero-input-scale": (H.model_file("convnet", arrays_edit=lambda a: a.update(
        model_input_scale=np.zeros(3, np.float32))), "input_scale"),
    # sqrt(var + eps) of a negative variance: numpy's RuntimeWarning, then NaN scores and exit 0
    "net-negative-running-var": (_bn_net([1, -1, 1, 1]), "running_var1"),
    # without the bias trick: a (1,) bias broadcast silently, a (3, 3) one crashed predict (exit 1)
    "softmax-bias-of-1": (_unbiased_softmax(np.zeros(1, np.float32)), "b has shape"),
    "softmax-bias-3x3": (_unbiased_softmax(np.zeros((3, 3), np.float32)), "b has shape"),
    "softmax-text-classes-not-named": (H.model_file(arrays_edit=lambda a: a.update(
        model_classes=np.array(["a", "b", "zebra"]))), "zebra"),
    "knn-text-labels-not-named": (H.model_file("knn", arrays_edit=lambda a: a.update(
        model_y_train=np.array(["a", "b", "zebra"] * 2))), "zebra"),
    # fit flattened the column with a DataConversionWarning on the way
    "knn-labels-a-column": (H.model_file("knn", arrays_edit=lambda a: a.update(
        model_y_train=a["model_y_train"].reshape(6, 1))), "y_train"),
}


@pytest.mark.parametrize("name", list(LEARNED_ARRAYS))
def test_hand_edited_learned_arrays_are_refused_on_load(name, tmp_path, runner):
    """Learned arrays fit never produces (repeated or unsorted classes, a non-positive input scale, a
    negative batch-norm variance) loaded and predicted with exit 0."""
    model, says = LEARNED_ARRAYS[name]
    _assert_refused_on_load(model, tmp_path, runner, says=says)


def test_valid_batchnorm_and_unbiased_files_still_load(tmp_path):
    from imgclf import storage

    for i, model in enumerate((_bn_net([1, 0, 2, 1]), _unbiased_softmax(np.zeros(3, np.float32)))):
        bundle = storage.load_model(H.write(tmp_path / f"m{i}.npz", model))
        assert bundle.model.predict(np.zeros((2, 12))).shape == (2,)


@pytest.mark.parametrize("kind", ["softmax", "net", "knn"])
def test_evaluate_and_ensemble_take_models_fitted_on_class_names(kind, tmp_path, runner):
    """A model fitted on class names (docs/python-api.md, string labels) predicts names: evaluate turned
    them into integers and crashed (ValueError, exit 1), and so did an ensemble of such members."""
    names = {"softmax": "model_classes", "net": "model_classes", "knn": "model_y_train"}
    text = lambda a: a.update({names[kind]: np.array(["a", "b", "c"] * (2 if kind == "knn" else 1))})
    model = H.write(tmp_path / "m.npz", H.model_file(kind, arrays_edit=text))
    stream = H.write(tmp_path / "s.npz", H.stream_bytes())
    res = runner.invoke(cli, ["evaluate", "-m", str(model), "--data", str(stream), "--json"])
    assert res.exit_code == 0, res.output
    for voting in ("soft", "hard"):
        res = runner.invoke(cli, ["ensemble", "-m", str(model), "-m", str(model), "--voting", voting,
                                  "--data", str(stream), "--json"])
        assert res.exit_code == 0, res.output


# -- --augment (and the convnet's images) against an inline --preprocess chain: refused before it is fitted -------
def _images_stream(d: Path) -> Path:
    X = np.random.default_rng(0).integers(0, 256, (24, 8, 8, 3)).astype(np.uint8)
    return H.write(d / "images.npz", H.stream_bytes(X, np.arange(24) % 3))


INLINE_CHAIN = {
    "train-twolayer-kmeans-flip": (["train", "twolayer", "--preprocess", "mean,kmeans:4:patch=3", "--augment", "flip",
                                    "--hidden", "4", "--epochs", "1"],
                                   r"^Error: --augment flip: --preprocess mean -> kmeans turns the images into feature "
                                   r"rows \(kmeans does\); flips and crops need images"),
    "train-twolayer-pca-crop": (["train", "twolayer", "--preprocess", "pca:4", "--augment", "crop:2", "--hidden", "4",
                                 "--epochs", "1"], r"^Error: --augment crop:2: --preprocess pca turns the images"),
    "train-twolayer-union-flip": (["train", "twolayer", "--preprocess", "hog:cell=4+colorhist", "--augment", "flip",
                                   "--hidden", "4", "--epochs", "1"],
                                  r"^Error: --augment flip: --preprocess union turns the images into feature rows"),
    "train-convnet-hog-flip": (["train", "convnet", "--preprocess", "hog:cell=4", "--augment", "flip", "--filters", "2",
                                "--hidden", "4", "--epochs", "1"], r"^Error: --augment flip: --preprocess hog turns"),
    "train-convnet-kmeans-auto": (["train", "convnet", "--preprocess", "kmeans:4:patch=3", "--filters", "2", "--hidden",
                                   "4", "--epochs", "1"],
                                  r"^Error: a convnet needs images \(N, H, W, C\); --preprocess kmeans turns the images "
                                  r"into feature rows \(kmeans does\)"),
    "tune-twolayer-kmeans-flip": (["tune", "twolayer", "--preprocess", "kmeans:4:patch=3", "--param", "augment=flip,none",
                                   "--trials", "2", "--epochs", "1", "--jobs", "1", "--val", "6"],
                                  r"^Error: --augment flip: --preprocess kmeans turns the images into feature rows"),
    "tune-convnet-pca": (["tune", "convnet", "--preprocess", "pca:4", "--trials", "1", "--epochs", "1", "--jobs", "1",
                          "--val", "6"], r"^Error: a convnet needs images \(N, H, W, C\); --preprocess pca turns"),
    "tune-svm-flip-on-an-inline-chain": (["tune", "svm", "--preprocess", "mean", "--param", "augment=flip", "--trials",
                                          "1", "--epochs", "1", "--jobs", "1", "--val", "6"],
                                         r"^Error: --augment flip: the model would mirror the output of --preprocess "
                                         r"mean, not the images"),
}


@pytest.mark.parametrize("name", list(INLINE_CHAIN))
def test_augment_against_an_inline_chain_is_refused_before_fitting_it(name, tmp_path, runner, monkeypatch):
    """With an inline --preprocess chain that turns images into feature rows, the refusal came only after
    the chain was fitted (minutes with kmeans on real data); each step knows from its parameters whether
    its output is images, so the refusal now comes first: the chain is never fitted."""
    import imgclf.preprocessing_chain as chain_mod

    def no_fit(*args, **kwargs):
        raise AssertionError("the chain was fitted before the refusal")

    monkeypatch.setattr(chain_mod, "fit_chain", no_fit)
    argv, first = INLINE_CHAIN[name]
    res = runner.invoke(cli, ["-q", *argv, "--data", str(_images_stream(tmp_path))])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2, (res.output, res.exception)
    assert len(lines) == 1 and re.search(first, lines[0]), lines


@pytest.mark.parametrize("spec", ["mean", "normalize:channel", "zca", "standardize"])
def test_augment_after_a_chain_that_keeps_images_still_trains(spec, tmp_path, runner):
    res = runner.invoke(cli, ["-q", "train", "twolayer", "--preprocess", spec, "--augment", "flip", "--hidden", "4",
                              "--epochs", "1", "--data", str(_images_stream(tmp_path))])
    assert res.exit_code == 0, res.output


# -- a model file's input_shape against its chain's first step: compared exactly -------------------------------
@pytest.mark.parametrize("shape", [[3, 2, 2], [12], [2, 6], [6, 2, 1]])
def test_input_shape_other_than_the_chains_first_step_is_refused_on_load(shape, tmp_path, runner):
    """input_shape was compared with the chain's first step by element count only: [3, 2, 2] over a chain
    fitted on (2, 2, 3) loaded, and predict then refused every image of that shape (the chain takes no
    other) with a misleading 'resize with --size' hint. Now refused on load, naming both shapes."""
    from imgclf.io import npzfile

    meta, arrays = npzfile.read(H.write(tmp_path / "orig.npz", _model_with_chain(_fitted_chain("mean,pca:5"), 5)))
    meta["input_shape"] = shape
    _assert_refused_on_load(npzfile.to_bytes(arrays, meta), tmp_path, runner,
                            says=f"'input_shape' {shape} is not the shape [2, 2, 3] the chain's first step (mean)")


def test_a_chain_fitted_on_rows_records_their_shape(tmp_path, runner):
    """A stream of feature rows (12 per sample) whose metadata says image_shape 2x2x3, trained with an inline
    chain: the model file recorded input_shape [2, 2, 3], which no sample can have (the chain takes rows of
    12), so evaluate refused the very stream it was trained on. It now records the chain's input, (12,)."""
    from imgclf import storage

    X = np.random.default_rng(0).integers(0, 256, (24, 12)).astype(np.uint8)
    stream = H.write(tmp_path / "rows.npz", H.stream_bytes(X, np.arange(24) % 3, image_shape=(2, 2, 3)))
    model = tmp_path / "m.npz"
    res = runner.invoke(cli, ["-q", "train", "softmax", "--preprocess", "pca:3", "--epochs", "1", "--data", str(stream),
                              "-o", str(model)])
    assert res.exit_code == 0, res.output
    assert storage.load_model(model).input_shape == (12,)
    res = runner.invoke(cli, ["-q", "evaluate", "-m", str(model), "--data", str(stream)])
    assert res.exit_code == 0, res.output
