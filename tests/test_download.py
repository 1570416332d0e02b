"""`data get` in the library: download from a local HTTP server, verify, extract safely, install atomically."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from datafiles import rows_to_nhwc, server, tar_folder, write_cifar_python, write_idx  # noqa: F401 - fixture
from imgclf.datasets import download
from imgclf.errors import DataError, DownloadError, UsageError


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cifar_archive(tmp_path):
    """(bytes of a small cifar-10-python.tar.gz built here, what it holds)."""
    written = write_cifar_python(tmp_path / "build" / "cifar-10-batches-py", n_per_batch=10)
    path = tar_folder(tmp_path / "build" / "cifar-10-batches-py", tmp_path / "build" / "cifar.tar.gz")
    return path.read_bytes(), written


def manifest_for(server, **files) -> dict:
    """A manifest like data/manifest.json whose URLs point at the test server."""
    entries = {}
    if "cifar" in files:
        data, extra = files["cifar"], files.get("cifar_extra", {})
        spec = dict(name="cifar-10-python.tar.gz", urls=[f"{server.base}/cifar-10-python.tar.gz"],
                    size=len(data), sha256=sha256(data), md5=None)
        spec.update(extra)
        entries["cifar10"] = download.Entry("cifar10", "", "archive", "cifar", "cifar-10-batches-py",
                                            (download.FileSpec(**{**spec, "urls": tuple(spec["urls"])}),), "cifar10")
    if "mnist" in files:
        specs = tuple(download.FileSpec(name, (f"{server.base}/mnist/{name}",), len(data), sha256(data), None)
                      for name, data in files["mnist"].items())
        entries["mnist"] = download.Entry("mnist", "", "files", "idx", "mnist", specs, "mnist")
    return entries


def test_manifest_lists_the_official_archives():
    manifest = download.load_manifest()
    assert set(manifest) >= {"cifar10", "cifar10-binary", "mnist", "fashion-mnist"}
    cifar = manifest["cifar10"].files[0]
    assert cifar.name == "cifar-10-python.tar.gz" and cifar.md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar.urls[0].startswith("https://www.cs.toronto.edu/")
    for entry in manifest.values():
        for spec in entry.files:
            assert spec.digest() is not None and spec.urls and spec.size
    assert [f.name for f in manifest["mnist"].files] == [f.name for f in manifest["fashion-mnist"].files]


def test_download_verifies_extracts_and_installs(server, cifar_archive, tmp_path):
    data, written = cifar_archive
    server.handler.files["/cifar-10-python.tar.gz"] = data
    dest = tmp_path / "data"
    seen = []

    @contextlib.contextmanager
    def progress(description, total):
        seen.append([description, total, 0])
        yield lambda n=1: seen[-1].__setitem__(2, seen[-1][2] + n)

    result = download.get("cifar10", dest, progress=progress, manifest=manifest_for(server, cifar=data))
    assert result.status == "installed" and result.path == dest / "cifar-10-batches-py"
    assert seen == [["cifar-10-python.tar.gz", len(data), len(data)]]
    assert [p.name for p in dest.iterdir()] == ["cifar-10-batches-py"]  # no archive, no staging left
    from imgclf.datasets.cifar import load_cifar_python

    Xtr, ytr, *_ = load_cifar_python(result.path)
    np.testing.assert_array_equal(Xtr, rows_to_nhwc(written["train"][0]))
    # A second call finds it and downloads nothing.
    again = download.get("cifar10", dest, manifest=manifest_for(server, cifar=data))
    assert again.status == "present" and len(server.handler.requests) == 1


def test_wrong_checksum_leaves_nothing(server, cifar_archive, tmp_path):
    data, _ = cifar_archive
    server.handler.files["/cifar-10-python.tar.gz"] = data
    manifest = manifest_for(server, cifar=data, cifar_extra={"sha256": "0" * 64})
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"checksum mismatch: sha256 [0-9a-f]{64}, expected 0{64}"):
        download.get("cifar10", dest, manifest=manifest)
    assert list(dest.iterdir()) == []


def test_md5_is_verified_when_it_is_all_that_is_published(server, cifar_archive, tmp_path):
    data, _ = cifar_archive
    server.handler.files["/cifar-10-python.tar.gz"] = data
    bad = manifest_for(server, cifar=data, cifar_extra={"sha256": None, "md5": "f" * 32})
    with pytest.raises(DownloadError, match=r"checksum mismatch: md5"):
        download.get("cifar10", tmp_path / "a", manifest=bad)
    good = manifest_for(server, cifar=data, cifar_extra={"sha256": None, "md5": hashlib.md5(data).hexdigest()})
    assert download.get("cifar10", tmp_path / "b", manifest=good).status == "installed"


def test_truncated_download_leaves_nothing(server, cifar_archive, tmp_path):
    data, _ = cifar_archive
    server.handler.files["/cifar-10-python.tar.gz"] = data
    server.handler.truncate.add("/cifar-10-python.tar.gz")
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match=rf"download truncated: received {len(data) // 2} of {len(data)} bytes"):
        download.get("cifar10", dest, manifest=manifest_for(server, cifar=data))
    assert list(dest.iterdir()) == []


def test_http_error_and_mirror_fallback(server, cifar_archive, tmp_path):
    data, _ = cifar_archive
    server.handler.files["/good/cifar-10-python.tar.gz"] = data
    manifest = manifest_for(server, cifar=data, cifar_extra={
        "urls": [f"{server.base}/missing/cifar-10-python.tar.gz", f"{server.base}/good/cifar-10-python.tar.gz"]})
    logs = []
    result = download.get("cifar10", tmp_path / "d", manifest=manifest, log=logs.append)
    assert result.status == "installed"
    assert any("HTTP error 404" in line and "trying the next mirror" in line for line in logs)
    with pytest.raises(DownloadError, match="HTTP error 404"):
        download.get("cifar10", tmp_path / "e", url=f"{server.base}/nowhere.tar.gz", manifest=manifest)
    assert list((tmp_path / "e").iterdir()) == []


def test_url_option_for_multi_file_datasets_is_a_base_url(server, tmp_path):
    written = write_idx(tmp_path / "src")
    files = {p.name: p.read_bytes() for p in (tmp_path / "src").iterdir()}
    for name, body in files.items():
        server.handler.files[f"/mirror/{name}"] = body
    result = download.get("mnist", tmp_path / "d", url=f"{server.base}/mirror",
                          manifest=manifest_for(server, mnist=files))
    assert sorted(p.name for p in result.path.iterdir()) == sorted(files)
    from imgclf.datasets.mnist import load_idx_dir

    np.testing.assert_array_equal(load_idx_dir(result.path)[0][..., 0], written["train"][0])


def test_interrupted_download_leaves_nothing(server, cifar_archive, tmp_path):
    data, _ = cifar_archive
    server.handler.files["/cifar-10-python.tar.gz"] = data

    @contextlib.contextmanager
    def progress(description, total):
        def advance(n=1):
            raise KeyboardInterrupt

        yield advance

    with pytest.raises(KeyboardInterrupt):
        download.get("cifar10", tmp_path / "d", progress=progress, manifest=manifest_for(server, cifar=data))
    assert list((tmp_path / "d").iterdir()) == []


def test_only_http_urls_and_known_names(tmp_path):
    manifest = download.load_manifest()
    with pytest.raises(UsageError, match="only http:// and https://"):
        download.get("cifar10", tmp_path, url="file:///etc/passwd", manifest=manifest)
    with pytest.raises(UsageError, match="unknown dataset 'imagenet'"):
        download.get("imagenet", tmp_path, manifest=manifest)
    with pytest.raises(UsageError, match="built in"):
        download.get("shapes", tmp_path, manifest=manifest)


# -- --from: local archives and folders ------------------------------------------------------------
def test_import_local_archive_and_folder(cifar_archive, tmp_path):
    data, written = cifar_archive
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(data)
    result = download.get("cifar10", tmp_path / "a", source=archive)
    assert result.path == tmp_path / "a" / "cifar-10-batches-py" and result.status == "installed"
    # The official checksum is compared and reported, not required.
    assert result.checks == ["cifar-10-python.tar.gz: sha256 differs from the official file"]
    parent = tmp_path / "build"  # a folder holding cifar-10-batches-py somewhere below
    result = download.get("cifar10", tmp_path / "b", source=parent)
    assert sorted(p.name for p in result.path.iterdir()) == sorted(p.name for p in (parent / "cifar-10-batches-py").iterdir())
    with pytest.raises(DataError, match="holds no MNIST-style idx files"):
        download.get("mnist", tmp_path / "c", source=parent)
    assert list((tmp_path / "c").iterdir()) == []


def test_import_refuses_what_does_not_load(tmp_path):
    write_cifar_python(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "src" / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x02}q\x00")
    with pytest.raises(DataError, match=r"not usable: .*data_batch_2: truncated or corrupt pickle"):
        download.get("cifar10", tmp_path / "d", source=tmp_path / "src")
    assert list((tmp_path / "d").iterdir()) == []
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="not a tar archive"):
        download.get("cifar10", tmp_path / "d", source=tmp_path / "x.txt")
    with pytest.raises(DataError, match="no such file or directory"):
        download.get("cifar10", tmp_path / "d", source=tmp_path / "nope")


def test_force_replaces_an_installed_dataset(tmp_path):
    write_idx(tmp_path / "one", n_train=20)
    write_idx(tmp_path / "two", n_train=40)
    dest = tmp_path / "data"
    download.get("mnist", dest, source=tmp_path / "one")
    assert download.get("mnist", dest, source=tmp_path / "two").status == "present"
    result = download.get("mnist", dest, source=tmp_path / "two", force=True)
    from imgclf.datasets.mnist import load_idx_dir

    assert result.status == "installed" and len(load_idx_dir(result.path)[1]) == 40
    assert [p.name for p in dest.iterdir()] == ["mnist"]


# -- safe extraction --------------------------------------------------------------------------------
def _tar(path: Path, members) -> Path:
    """A .tar.gz of (TarInfo, bytes | None) members, written member by member as given."""
    with tarfile.open(path, "w:gz") as tar:
        for info, body in members:
            if body is not None:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    return path


def _member(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    return info


@pytest.mark.parametrize("members,reason", [
    ([(_member("/tmp/imgclf-evil"), b"x")], "absolute path"),
    ([(_member("../evil"), b"x")], "climbs out with '..'"),
    ([(_member("ok/../../evil"), b"x")], "climbs out with '..'"),
    ([(_member("link", tarfile.SYMTYPE, "/etc"), None)], "symlink to the absolute path '/etc'"),
    ([(_member("link", tarfile.SYMTYPE, "../../outside"), None)], "symlink to '../../outside', outside"),
    ([(_member("hard", tarfile.LNKTYPE, "../outside"), None)], "hard link to '../outside', outside"),
    ([(_member("dev", tarfile.CHRTYPE), None)], "device, fifo or other special file"),
    ([(_member("fifo", tarfile.FIFOTYPE), None)], "device, fifo or other special file"),
    # A link inside the target pointing at a folder outside, then a file written "through" it.
    ([(_member("up", tarfile.SYMTYPE, "."), None), (_member("up/../../evil"), b"x")], "climbs out"),
])
def test_extraction_refuses_members_that_escape(tmp_path, members, reason):
    archive = _tar(tmp_path / "evil.tar.gz", members)
    dest = tmp_path / "box" / "target"
    dest.mkdir(parents=True)
    with pytest.raises(DataError, match=rf"refusing to extract '.*': it.*{reason}"):
        download.safe_extract(archive, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box", "evil.tar.gz"]
    assert [p.name for p in (tmp_path / "box").iterdir()] == ["target"]


def test_extraction_refuses_writing_through_a_planted_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    # `sub` is a symlink inside the target pointing outside via a relative path that looks harmless
    # once resolved against the wrong folder; then `sub/evil` would be written through it.
    archive = _tar(tmp_path / "evil.tar.gz", [(_member("sub", tarfile.SYMTYPE, "../outside"), None),
                                              (_member("sub/evil"), b"x")])
    dest = tmp_path / "target"
    dest.mkdir()
    with pytest.raises(DataError, match="refusing to extract 'sub'"):
        download.safe_extract(archive, dest)
    assert list(outside.iterdir()) == []


def test_safe_links_inside_the_target_are_kept(tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", [(_member("d/file"), b"hello"),
                                            (_member("d/alias", tarfile.SYMTYPE, "file"), None)])
    download.safe_extract(archive, tmp_path / "t")
    assert (tmp_path / "t" / "d" / "alias").read_bytes() == b"hello"


def test_traversal_in_a_downloaded_archive_leaves_nothing(server, tmp_path):
    archive = _tar(tmp_path / "evil.tar.gz", [(_member("cifar-10-batches-py/../../../evil"), b"x")])
    data = archive.read_bytes()
    server.handler.files["/cifar-10-python.tar.gz"] = data
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="refusing to extract"):
        download.get("cifar10", dest, manifest=manifest_for(server, cifar=data))
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_corrupt_archive_is_a_clear_error(tmp_path, cifar_archive):
    data, _ = cifar_archive
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt archive"):
        download.safe_extract(bad, tmp_path / "t")


def test_manifest_file_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        download.load_manifest(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text(json.dumps({"datasets": {"x": {}}}))
    with pytest.raises(UsageError, match="malformed"):
        download.load_manifest(tmp_path / "bad.json")


def test_wrong_size_is_refused_before_downloading(server, cifar_archive, tmp_path):
    data, _ = cifar_archive
    server.handler.files["/cifar-10-python.tar.gz"] = data + b"\0" * 10
    with pytest.raises(DownloadError, match=rf"offers {len(data) + 10} bytes, but the official .* has {len(data)}"):
        download.get("cifar10", tmp_path / "d", manifest=manifest_for(server, cifar=data))
    assert list((tmp_path / "d").iterdir()) == []


def test_extraction_size_is_capped(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "big.tar.gz", [(_member("a"), b"x" * 600), (_member("b"), b"y" * 600)])
    monkeypatch.setenv("IMGCLF_MAX_EXTRACT_BYTES", "1000")
    with pytest.raises(DataError, match=r"refusing to extract more than 1000 bytes \(reached at 'b'"):
        download.safe_extract(archive, tmp_path / "t")
    assert [p.name for p in (tmp_path / "t").iterdir()] == ["a"]


def test_without_content_length_the_manifest_size_decides(server, cifar_archive, tmp_path):
    data, _ = cifar_archive
    server.handler.no_length.add("/cifar-10-python.tar.gz")
    manifest = manifest_for(server, cifar=data)
    server.handler.files["/cifar-10-python.tar.gz"] = data + b"\0" * 100_000
    with pytest.raises(DownloadError, match=rf"more than the {len(data)} bytes of the official"):
        download.get("cifar10", tmp_path / "d", manifest=manifest)
    server.handler.files["/cifar-10-python.tar.gz"] = data[:-10]
    with pytest.raises(DownloadError, match=rf"download truncated: received {len(data) - 10} of {len(data)}"):
        download.get("cifar10", tmp_path / "d", manifest=manifest)
    assert list((tmp_path / "d").iterdir()) == []
    server.handler.files["/cifar-10-python.tar.gz"] = data
    assert download.get("cifar10", tmp_path / "d", manifest=manifest).status == "installed"
