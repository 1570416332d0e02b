"""Writing output safely: atomic replacement of files, checked writes to streams and devices.

A regular file (or a path that does not exist yet) is written to a temporary file beside it, fsynced
and renamed over it, so readers see the old file or the new one, never half of one. A symlink is
followed: its target is replaced and the link stays. Character devices and FIFOs (`-o /dev/null`, a
named pipe) are written in place, since renaming over them would replace the device node itself;
directories, block devices and sockets are refused. Every write is checked (a short write or a full
disk is a `WriteError`, exit status 1) and nothing is left under the final name when one fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from pathlib import Path

from ..errors import UsageError, WriteError


def _target(path: Path) -> tuple[Path, str]:
    """(where to write, "file" | "direct") for an output path, after following symlinks."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        # Absent, or a dangling link: the link's target is created, the link kept.
        return Path(os.path.realpath(path)), "file"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{path}: a loop of symbolic links") from None
        raise WriteError(f"cannot write {path}: {exc.strerror}") from None
    if stat.S_ISREG(st.st_mode):
        return Path(os.path.realpath(path)), "file"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return path, "direct"
    what = "a directory" if stat.S_ISDIR(st.st_mode) else "a block device or socket, not a file"
    raise UsageError(f"{path}: is {what}; give a file name to write to")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb"):
    """Yield a file object; on success its content replaces `path` (see the module doc), on error
    nothing is left and the old content stays."""
    path = Path(path)
    real, how = _target(path)
    if how == "direct":
        with _writing(path):
            with open(real, mode) as f:
                yield f
        return
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with _writing(path):
            # mkstemp creates 0600; give the result the mode an ordinary open() would.
            os.chmod(tmp, 0o666 & ~_umask())
            with os.fdopen(fd, mode) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _writing(name):
    """OS errors while writing `name` become one-line WriteErrors (a full disk is not a bug)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        if isinstance(exc, WriteError):
            raise
        raise WriteError(f"cannot write {name}: {exc.strerror or exc}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        write_all(f, data, str(path))


def write_all(f, data: bytes, name: str) -> None:
    """Write all of `data` to a binary file object, checking the count a raw write returns."""
    view = memoryview(data)
    with _writing(name):
        while view:
            n = f.write(view)
            if n is None or n <= 0:
                raise WriteError(f"cannot write {name}: the write was refused (disk full?)")
            view = view[n:]


def write_stdout(data: bytes) -> None:
    """Write binary data to standard output with checked, unbuffered writes, then sync it to disk
    when stdout is a regular file (where a full disk may only show at fsync)."""
    stream = sys.stdout
    if stream is None:
        raise UsageError("standard output is closed; redirect it to a file or use -o FILE")
    stream.flush()
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test runner's buffer)
        write_all(stream.buffer, data, "standard output")
        stream.buffer.flush()
        return
    view = memoryview(data)
    with _writing("standard output"):
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise WriteError("cannot write standard output: the write was refused (disk full?)")
            view = view[n:]
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fsync(fd)
