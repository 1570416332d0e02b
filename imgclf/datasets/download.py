"""`imgclf data get`: download (or import) a dataset, verify it, and install it atomically.

Everything happens in a staging folder beside the target (`<dir>/.<target>.XXXX.partial`): the files are
downloaded and checked against the manifest (`data/manifest.json`: size and sha256, or md5 where that
is all that is published), archives are extracted there with every member checked, the result is loaded
once to prove it is usable, and only then is it renamed into place. On any failure the staging folder is
removed, so a wrong checksum or a truncated download leaves nothing behind.

The library reports progress through a callback and never draws anything itself: `progress(description,
total_bytes)` must return a context manager yielding `advance(n_bytes)`; `log(message)` gets one line
per step.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from .. import config, limits
from ..errors import DataError, DownloadError, UsageError

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "data" / "manifest.json"
CHUNK = 1 << 16
TIMEOUT = 60  # seconds without a byte before giving up on a connection


@dataclass(frozen=True)
class FileSpec:
    name: str
    urls: tuple[str, ...]
    size: int | None
    sha256: str | None
    md5: str | None

    def digest(self) -> tuple[str, str] | None:
        """(algorithm, hex) to verify: sha256 when published, else md5."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        if self.md5:
            return "md5", self.md5.lower()
        return None


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    kind: str  # "archive": one .tar(.gz) to extract; "files": files installed as they are
    layout: str  # "cifar" or "idx": what the installed folder must hold
    target: str  # folder name created in the data directory
    files: tuple[FileSpec, ...]
    provides: str  # the --data name that finds it afterwards


@dataclass
class Installed:
    name: str
    provides: str
    path: Path
    status: str  # "installed" or "present"
    checks: list[str] = field(default_factory=list)


def _no_progress(description, total):
    return contextlib.nullcontext(lambda n=1, **_: None)


def load_manifest(path=None) -> dict[str, Entry]:
    path = Path(path or MANIFEST_PATH)
    try:
        raw = json.loads(path.read_text())
        entries = {}
        for name, e in raw["datasets"].items():
            mirrors = e.get("mirrors", [])
            files = tuple(
                FileSpec(f["name"], tuple(f.get("urls") or [m + f["name"] for m in mirrors]),
                         f.get("size"), f.get("sha256"), f.get("md5"))
                for f in e["files"]
            )
            entries[name] = Entry(name, e.get("description", ""), e["kind"], e["layout"], e["target"], files,
                                  e.get("provides", name))
        return entries
    except FileNotFoundError:
        raise UsageError(f"dataset manifest {path} not found (is imgclf installed from a checkout?)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"dataset manifest {path} is malformed ({type(exc).__name__}: {exc})") from None


def lookup(name: str, manifest: dict[str, Entry] | None = None) -> Entry:
    manifest = load_manifest() if manifest is None else manifest
    if name == "shapes":
        raise UsageError("`shapes` is built in: there is nothing to get")
    if name not in manifest:
        raise UsageError(f"unknown dataset {name!r}; `data get` knows: {', '.join(manifest)}")
    return manifest[name]


# -- downloading --------------------------------------------------------------------------------------
def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_url(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise UsageError(f"url {url}: only http:// and https:// URLs are downloaded (import local files with source)",
                         param="url")


def fetch(url: str, dest: Path, spec: FileSpec, progress=_no_progress) -> None:
    """Download `url` to `dest`, then check its length and checksum against `spec`.

    Raises DownloadError on network errors, truncation (fewer bytes than Content-Length or the
    manifest's size) and checksum mismatch.
    """
    _check_url(url)
    digest = spec.digest()
    hasher = hashlib.new(digest[0]) if digest else None
    got = 0
    request = urllib.request.Request(url, headers={"User-Agent": "imgclf"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp, open(dest, "wb") as out:
            declared = resp.headers.get("Content-Length")
            declared = int(declared) if declared and declared.isdigit() else None
            if declared is not None and spec.size is not None and declared != spec.size:
                # Fail before fetching a wrong file of maybe hundreds of megabytes.
                raise DownloadError(f"{url}: the server offers {declared} bytes, but the official "
                                    f"{spec.name} has {spec.size}")
            with progress(spec.name, declared or spec.size) as advance:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    if hasher:
                        hasher.update(chunk)
                    got += len(chunk)
                    advance(len(chunk))
                    if spec.size is not None and got > spec.size:
                        raise DownloadError(f"{url}: more than the {spec.size} bytes of the official {spec.name}")
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP error {exc.code} ({exc.reason})") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: cannot connect ({exc.reason})") from None
    except (http.client.HTTPException, OSError) as exc:  # resets, timeouts, TLS errors, a full disk
        raise DownloadError(f"{url}: download failed after {got} bytes ({type(exc).__name__}: {exc})") from None
    # http.client returns a short body without complaint when the server hangs up early.
    expected = declared if declared is not None else spec.size
    if expected is not None and got != expected:
        raise DownloadError(f"{url}: download truncated: received {got} of {expected} bytes")
    if spec.size is not None and got != spec.size:
        raise DownloadError(f"{url}: {got} bytes, but the official {spec.name} has {spec.size}")
    if digest and hasher.hexdigest() != digest[1]:
        raise DownloadError(f"{url}: checksum mismatch: {digest[0]} {hasher.hexdigest()}, "
                            f"expected {digest[1]} (a corrupt download or not the official {spec.name})")


def _urls(entry: Entry, spec: FileSpec, url: str | None) -> list[str]:
    """The manifest's mirrors, or --url: a file URL for a one-file dataset, else a base URL."""
    if url is None:
        return list(spec.urls)
    if len(entry.files) == 1 and not url.endswith("/"):
        return [url]
    return [url.rstrip("/") + "/" + spec.name]


def _fetch_any(urls: list[str], dest: Path, spec: FileSpec, progress, log) -> None:
    """Try each mirror in turn; the last failure is raised when none works."""
    if not urls:
        raise UsageError(f"url: the manifest lists none for {spec.name}; pass one", param="url")
    for i, url in enumerate(urls):
        log(f"downloading {url}")
        try:
            fetch(url, dest, spec, progress)
            algorithm = spec.digest()[0] if spec.digest() else None
            log(f"{spec.name}: {algorithm} verified" if algorithm else f"{spec.name}: no checksum to verify")
            return
        except DownloadError as exc:
            if i == len(urls) - 1:
                raise
            log(f"{exc}; trying the next mirror")


# -- extracting ---------------------------------------------------------------------------------------
def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_member(member: tarfile.TarInfo, dest: Path) -> str | None:
    """Why `member` must not be extracted into `dest` (resolved), or None when it is safe."""
    name = member.name
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "it has an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "its path climbs out with '..'"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "it is a device, fifo or other special file"
    try:
        return _check_paths(member, dest)
    except (RuntimeError, OSError):  # Python < 3.13 says RuntimeError for a loop of links
        return "its path runs through a loop of symbolic links"


def _check_paths(member: tarfile.TarInfo, dest: Path) -> str | None:
    name = member.name
    # resolve() follows links extracted earlier, so a link planted as a parent folder is caught too.
    where = (dest / name).resolve()
    if not _inside(where, dest):
        return "it would land outside the target directory"
    if member.issym():
        if member.linkname.startswith(("/", "\\")):
            return f"it is a symlink to the absolute path {member.linkname!r}"
        if not _inside(((dest / name).parent / member.linkname).resolve(), dest):
            return f"it is a symlink to {member.linkname!r}, outside the target directory"
    if member.islnk() and not _inside((dest / member.linkname).resolve(), dest):
        return f"it is a hard link to {member.linkname!r}, outside the target directory"
    return None


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive (any compression) into `dest`, refusing any member that could escape it.

    Members are checked and extracted one at a time in a single pass, so a link extracted earlier is
    seen by the checks of later members; Python's "data" filter is applied on top where available.
    The sizes the headers declare are summed before each member is written, capping the total.
    """
    dest = Path(dest).resolve()
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    total = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                reason = check_member(member, dest)
                if reason:
                    raise DataError(f"{archive}: refusing to extract {member.name!r}: {reason}")
                total += member.size if member.isfile() else 0
                # The official archives unpack to under 200 MB; a tar.gz of zeros is a few kilobytes per
                # gigabyte, so the declared sizes are capped before anything fills the disk.
                if total > limits.get("extract_bytes"):
                    raise DataError(f"{archive}: refusing to extract more than {limits.get('extract_bytes')} bytes "
                                    f"(reached at {member.name!r}; not a dataset archive? "
                                    f"{limits.hint('extract_bytes')})")
                tar.extract(member, dest, **extra)
    except tarfile.FilterError as exc:
        raise DataError(f"{archive}: refusing to extract a member: {exc}") from None
    except (tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{archive}: truncated or corrupt archive ({exc})") from None


# -- locating, validating, installing -----------------------------------------------------------------
def folder_layout(folder: Path) -> str | None:
    """'cifar' / 'idx' when `folder` itself holds that dataset layout."""
    from .mnist import STEMS, find_file

    if (folder / "data_batch_1").is_file() or (folder / "data_batch_1.bin").is_file():
        return "cifar"
    if find_file(folder, STEMS["train"][0]) is not None:
        return "idx"
    return None


def locate(tree: Path, entry: Entry, source: str) -> Path:
    """The folder under `tree` (itself or up to two levels down) holding `entry`'s layout."""
    level = [tree]
    for _ in range(3):
        for folder in level:
            if folder_layout(folder) == entry.layout:
                return folder
        level = sorted(p for d in level for p in d.iterdir() if p.is_dir() and not p.is_symlink())
    what = "CIFAR-10 batches" if entry.layout == "cifar" else "MNIST-style idx files"
    raise DataError(f"{source}: holds no {what} for {entry.name}")


def _installed_name(folder: Path, entry: Entry) -> str:
    if entry.layout == "cifar":
        return "cifar-10-batches-bin" if (folder / "data_batch_1.bin").is_file() else "cifar-10-batches-py"
    return entry.target


def _validate(folder: Path, source: str) -> None:
    from .registry import read_raw

    try:
        read_raw(folder)
    except DataError as exc:
        raise DataError(f"{source}: not usable: {exc}") from None


def _compare(folder_or_file: Path, entry: Entry) -> list[str]:
    """For imports: which files match the official checksums (informative, not required)."""
    specs = {s.name: s for s in entry.files}
    paths = [folder_or_file] if folder_or_file.is_file() else sorted(folder_or_file.iterdir())
    notes = []
    for p in paths:
        spec = specs.get(p.name)
        if spec is None or spec.digest() is None or not p.is_file():
            continue
        algorithm, expected = spec.digest()
        same = file_digest(p, algorithm) == expected
        notes.append(f"{p.name}: {algorithm} {'matches the official file' if same else 'differs from the official file'}")
    return notes


def _stage_download(entry: Entry, staging: Path, url, progress, log) -> Path:
    downloads = staging / "download"
    downloads.mkdir()
    for spec in entry.files:
        _fetch_any(_urls(entry, spec, url), downloads / spec.name, spec, progress, log)
    if entry.kind == "files":
        return downloads
    tree = staging / "tree"
    tree.mkdir()
    log(f"extracting {entry.files[0].name}")
    safe_extract(downloads / entry.files[0].name, tree)
    return locate(tree, entry, entry.files[0].name)


def _check_tree(folder: Path) -> None:
    """A folder to import holds only regular files and folders, within the size ceiling: a symlink
    could copy a file its user may not publish (or /dev/zero, which never ends) into the dataset."""
    total = 0
    for p in [folder, *folder.rglob("*")]:
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise DataError(f"{p}: refusing to import a symbolic link (copy the real files into the folder)")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise DataError(f"{p}: refusing to import a device, FIFO or socket")
        total += st.st_size if stat.S_ISREG(st.st_mode) else 0
        limits.check("extract_bytes", total, f"{folder}: the size of its files", DataError)


def _stage_import(entry: Entry, source: Path, staging: Path, log) -> tuple[Path, list[str]]:
    if not source.exists():
        raise DataError(f"{source}: no such file or directory")
    tree = staging / "tree"
    tree.mkdir()
    if source.is_file():
        if not tarfile.is_tarfile(source):
            raise DataError(f"{source}: not a tar archive (expected .tar, .tar.gz or a folder)")
        log(f"extracting {source}")
        safe_extract(source, tree)
        return locate(tree, entry, str(source)), _compare(source, entry)
    found = locate(source, entry, str(source))
    _check_tree(found)
    log(f"copying {found}")
    copy = tree / found.name
    # Contents only, not permissions: a copy of a read-only share must stay replaceable (--force).
    shutil.copytree(found, copy, symlinks=True, copy_function=shutil.copyfile)  # never follow a late link
    for folder in [copy, *(p for p in copy.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    return copy, _compare(found, entry)


def get(name: str, dest_dir=None, *, url: str | None = None, source=None, force: bool = False,
        progress=None, log=None, manifest: dict[str, Entry] | None = None) -> Installed:
    """Download `name` (or import it from `source`, a local archive or folder) into `dest_dir`.

    Returns where it was installed, or where it already was (status "present") unless `force`.
    """
    entry = lookup(name, manifest)
    if url is not None and source is not None:
        raise UsageError("url and source exclude each other", param="url")
    progress = progress or _no_progress
    log = log or (lambda message: None)
    dest_dir = Path(dest_dir if dest_dir is not None else config.default_download_dir()).absolute()
    if (dest_dir / entry.target).exists() and not force:
        return Installed(name, entry.provides, dest_dir / entry.target, "present")
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.target}.", suffix=".partial", dir=dest_dir))
    try:
        if source is None:
            folder, checks = _stage_download(entry, staging, url, progress, log), []
        else:
            folder, checks = _stage_import(entry, Path(source), staging, log)
        log("checking that the data loads")
        _validate(folder, str(source or entry.files[0].name))
        target = dest_dir / _installed_name(folder, entry)
        if target.exists():
            if not force:
                return Installed(name, entry.provides, target, "present", checks)
            os.rename(target, staging / "previous")
        os.rename(folder, target)
        return Installed(name, entry.provides, target, "installed", checks)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
