"""`imgclf data list|info|get|export` through CliRunner, plus a real shell pipe and a real terminal."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from datafiles import (  # noqa: F401 - server is a fixture
    cifar_rows, png_zeros, server, tar_folder, write_cifar_python, write_idx, write_image_folder,
)
from imgclf_cli.main import cli


def one_line_error(result, code=2):
    """The command failed with `code` and said why in exactly one line, without a traceback."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# -- bad inputs: one clear line, exit 2 -------------------------------------------------------------
def test_missing_dir(runner, tmp_path):
    line = one_line_error(runner.invoke(cli, ["data", "info", str(tmp_path / "nope")]))
    assert "nope: no such file or directory" in line


def test_truncated_batch(runner, tmp_path):
    write_cifar_python(tmp_path / "c")
    path = tmp_path / "c" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:3000])
    assert "data_batch_2: truncated or corrupt pickle" in one_line_error(runner.invoke(cli, ["data", "info", str(tmp_path / "c")]))


def test_malicious_pickle(runner, tmp_path):
    write_cifar_python(tmp_path / "c")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    rows, labels = cifar_rows(2, 0)
    (tmp_path / "c" / "data_batch_1").write_bytes(pickle.dumps({b"data": rows, b"labels": Evil()}, protocol=2))
    line = one_line_error(runner.invoke(cli, ["data", "info", str(tmp_path / "c")]))
    assert "refusing to unpickle the global posix.system" in line
    assert not marker.exists()


def test_wrong_magic(runner, tmp_path):
    write_idx(tmp_path / "m", gz=False)
    path = tmp_path / "m" / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + path.read_bytes()[4:])
    line = one_line_error(runner.invoke(cli, ["data", "info", str(tmp_path / "m")]))
    assert "t10k-labels-idx1-ubyte: wrong magic number 2051" in line


def test_non_image_file_in_folder_is_skipped_and_said_on_stderr(runner, tmp_path):
    write_image_folder(tmp_path / "f")
    (tmp_path / "f" / "cat" / "list.csv").write_text("a,b\n")
    (tmp_path / "f" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    res = runner.invoke(cli, ["data", "info", str(tmp_path / "f"), "--json"])
    assert res.exit_code == 0, res.output
    assert f"read 6 images in {tmp_path / 'f'} (train 6)" in res.stderr
    assert "skipped 2: 1 not an image, 1 unreadable" in res.stderr
    assert "not an image: cat/list.csv\n" in res.stderr and "unreadable: dog/broken.png (" in res.stderr
    report = json.loads(res.stdout)["read_report"]
    assert report["skipped_counts"] == {"not an image": 1, "unreadable": 1}
    assert runner.invoke(cli, ["-q", "data", "info", str(tmp_path / "f")]).stderr == ""


def test_decompression_bomb_in_folder(runner, tmp_path):
    write_image_folder(tmp_path / "f")
    (tmp_path / "f" / "dog" / "bomb.png").write_bytes(png_zeros(50_000, 50_000, rows=1))
    assert "decompression bomb" in one_line_error(runner.invoke(cli, ["data", "info", str(tmp_path / "f")]))


def test_wrong_npz_keys(runner, tmp_path):
    from imgclf.io import npzfile

    bad = tmp_path / "bad.npz"
    npzfile.write(bad, {"X_train": np.zeros((2, 4, 4, 3), np.uint8)},
                  {"format": "imgclf-pipeline", "version": 1, "classes": ["a"], "image_shape": [4, 4, 3]})
    assert "split 'train' has X but not y" in one_line_error(runner.invoke(cli, ["data", "info", str(bad)]))
    plain = tmp_path / "plain.npz"
    np.savez(plain, images=np.zeros(3))
    assert "not an imgclf file" in one_line_error(runner.invoke(cli, ["data", "info", str(plain)]))


def test_missing_named_dataset_says_how_to_get_it(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLF_DATA", str(tmp_path))
    line = one_line_error(runner.invoke(cli, ["data", "info", "fashion-mnist"]))
    assert "imgclf data get fashion-mnist" in line and str(tmp_path) in line


# -- list / info --------------------------------------------------------------------------------------
def test_list_and_info_show_where_data_was_found(runner, tmp_path, monkeypatch):
    write_idx(tmp_path / "fashion-mnist")
    write_cifar_python(tmp_path / "src" / "cifar-10-batches-py")
    tar_folder(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    monkeypatch.setenv("IMGCLF_DATA", str(tmp_path))
    result = runner.invoke(cli, ["data", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["datasets"]}
    assert rows["cifar10"]["path"] == str(tmp_path / "cifar-10-python.tar.gz")
    assert rows["cifar10"]["layout"] == "cifar-archive"
    assert rows["fashion-mnist"]["layout"] == "idx" and rows["mnist"]["path"] == "not found"
    assert rows["shapes"]["path"] == "built in"
    result = runner.invoke(cli, ["data", "info", "fashion-mnist", "--json", "--val", "5"])
    info = json.loads(result.stdout)
    assert info["source"] == str(tmp_path / "fashion-mnist")
    assert info["classes"][0] == "T-shirt/top" and info["splits"] == {"train": 25, "val": 5, "test": 10}
    result = runner.invoke(cli, ["data", "info", "cifar10"])
    assert result.exit_code == 0 and f"({tmp_path / 'cifar-10-python.tar.gz'})" in result.stdout


def test_info_on_real_data(runner, real_data, monkeypatch):
    monkeypatch.setenv("IMGCLF_DATA", str(real_data))
    result = runner.invoke(cli, ["data", "info", "mnist", "--json", "--val", "0"])
    if result.exit_code == 2 and "not found" in result.stderr:
        pytest.skip(f"no mnist under {real_data}")
    info = json.loads(result.stdout)
    assert info["image_shape"] == [28, 28, 1] and info["splits"] == {"train": 60000, "test": 10000}
    assert info["label_counts"]["test"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# -- get ------------------------------------------------------------------------------------------------
def _manifest_file(tmp_path, server, data: bytes, **override) -> str:
    spec = {"name": "cifar-10-python.tar.gz", "urls": [f"{server.base}/cifar-10-python.tar.gz"],
            "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **override}
    manifest = {"datasets": {"cifar10": {"kind": "archive", "layout": "cifar", "target": "cifar-10-batches-py",
                                         "files": [spec]}}}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return str(path)


@pytest.fixture
def small_archive(tmp_path):
    write_cifar_python(tmp_path / "build" / "cifar-10-batches-py", n_per_batch=10)
    return tar_folder(tmp_path / "build" / "cifar-10-batches-py", tmp_path / "build" / "c.tar.gz").read_bytes()


def test_get_downloads_and_installs(runner, tmp_path, server, small_archive, monkeypatch):
    from imgclf.datasets import download

    server.handler.files["/cifar-10-python.tar.gz"] = small_archive
    monkeypatch.setattr(download, "MANIFEST_PATH", _manifest_file(tmp_path, server, small_archive))
    # CI exports IMGCLF_DATA with the real CIFAR-10 on it; this test wants an empty search path.
    monkeypatch.delenv("IMGCLF_DATA", raising=False)
    dest = tmp_path / "data"
    result = runner.invoke(cli, ["data", "get", "cifar10", "--dir", str(dest), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "installed" and out["path"] == str(dest / "cifar-10-batches-py")
    assert out["found_by_name"] is False and "IMGCLF_DATA=" in result.stderr
    monkeypatch.setenv("IMGCLF_DATA", str(dest))
    info = runner.invoke(cli, ["data", "info", "cifar10", "--json", "--val", "0"])
    assert json.loads(info.stdout)["splits"] == {"train": 20, "test": 10}
    again = runner.invoke(cli, ["data", "get", "cifar10", "--dir", str(dest), "--json"])
    assert again.exit_code == 0 and "already at" in again.stderr
    assert json.loads(again.stdout)["status"] == "present" and json.loads(again.stdout)["found_by_name"] is True
    # Installed elsewhere while the search path finds this copy first: said so.
    other = runner.invoke(cli, ["data", "get", "cifar10", "--dir", str(tmp_path / "other")])
    assert other.exit_code == 0 and f"finds {dest / 'cifar-10-batches-py'} first" in other.stderr


def test_get_wrong_checksum_is_one_line_and_leaves_nothing(runner, tmp_path, server, small_archive, monkeypatch):
    from imgclf.datasets import download

    server.handler.files["/cifar-10-python.tar.gz"] = small_archive
    monkeypatch.setattr(download, "MANIFEST_PATH", _manifest_file(tmp_path, server, small_archive, sha256="1" * 64))
    dest = tmp_path / "data"
    line = one_line_error(runner.invoke(cli, ["data", "get", "cifar10", "--dir", str(dest), "-q"]), code=1)
    assert "checksum mismatch" in line
    assert list(dest.iterdir()) == []


def test_get_truncated_download(runner, tmp_path, server, small_archive, monkeypatch):
    from imgclf.datasets import download

    server.handler.files["/cifar-10-python.tar.gz"] = small_archive
    server.handler.truncate.add("/cifar-10-python.tar.gz")
    monkeypatch.setattr(download, "MANIFEST_PATH", _manifest_file(tmp_path, server, small_archive))
    dest = tmp_path / "data"
    line = one_line_error(runner.invoke(cli, ["data", "get", "cifar10", "--dir", str(dest), "-q"]), code=1)
    assert "download truncated" in line
    assert list(dest.iterdir()) == []


def test_get_from_archive_with_traversal_is_refused(runner, tmp_path):
    import io
    import tarfile

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    dest = tmp_path / "deep" / "data"
    line = one_line_error(runner.invoke(cli, ["data", "get", "cifar10", "--from", str(evil), "--dir", str(dest), "-q"]))
    assert "refusing to extract '../../escaped'" in line
    assert list(dest.iterdir()) == [] and not (tmp_path / "escaped").exists()


def test_get_from_folder(runner, tmp_path):
    write_idx(tmp_path / "src" / "fashion")
    dest = tmp_path / "data"
    result = runner.invoke(cli, ["data", "get", "fashion-mnist", "--from", str(tmp_path / "src"), "--dir", str(dest)])
    assert result.exit_code == 0, result.output
    assert (dest / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert "differs from the official file" in result.stderr


def test_get_usage_errors(runner, tmp_path):
    assert "unknown dataset 'imagenet'" in one_line_error(runner.invoke(cli, ["data", "get", "imagenet", "--dir", str(tmp_path)]))
    line = one_line_error(runner.invoke(cli, ["data", "get", "mnist", "--url", "http://x/", "--from", ".", "--dir", str(tmp_path)]))
    assert "exclude each other" in line


# -- export ---------------------------------------------------------------------------------------------
def test_export_to_file_then_info(runner, tmp_path):
    write_image_folder(tmp_path / "f", classes=("a", "b", "c"), n=5)
    out = tmp_path / "s.npz"
    result = runner.invoke(cli, ["data", "export", str(tmp_path / "f"), "--size", "4x4", "--color", "gray",
                                 "--val", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    info = json.loads(runner.invoke(cli, ["data", "info", str(out), "--json"]).stdout)
    assert info["image_shape"] == [4, 4, 1] and info["splits"] == {"train": 12, "val": 3}


def _imgclf(*args):
    return [sys.executable, "-c", "from imgclf_cli.main import main; main()", *args]


def test_real_shell_pipe_export_into_info(tmp_path):
    """`imgclf data export shapes | imgclf data info -` through a real shell and a real OS pipe."""
    script = shutil.which("imgclf")
    if script is not None:
        cmd = "imgclf data export shapes -q | imgclf data info - --json"
    else:  # not installed as a console script: the same pipe through the interpreter
        run = f"{shlex.quote(sys.executable)} -c 'from imgclf_cli.main import main; main()'"
        cmd = f"{run} data export shapes -q | {run} data info - --json"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["name"] == "shapes" and summary["source"] == "<stdin>"
    assert summary["splits"] == {"train": 4000, "val": 1000, "test": 1000}
    assert summary["image_shape"] == [32, 32, 3]


def test_export_to_a_terminal_is_refused(tmp_path):
    pty = pytest.importorskip("pty")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(_imgclf("data", "export", "shapes"), stdout=follower, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path, timeout=60)
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2
    assert "refusing to write binary .npz data to a terminal" in proc.stderr and "redirect" in proc.stderr


# -- data audit ------------------------------------------------------------------------------------------
def _audit_folder(root):
    """train/ and test/ of random 6x6 PNGs with planted copies: exact and near, within and across splits."""
    from PIL import Image

    r = np.random.default_rng(4)
    imgs = {}
    for split, n in (("train", 6), ("test", 3)):
        for c in ("ant", "bee"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                imgs[f"{split}/{c}/{i}.png"] = r.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    imgs["train/bee/5.png"] = imgs["train/ant/0.png"]  # exact within train, conflicting labels
    imgs["test/ant/2.png"] = imgs["train/ant/3.png"]  # exact leak
    imgs["test/bee/1.png"] = np.clip(imgs["train/bee/2.png"].astype(int) + 2, 0, 255).astype(np.uint8)  # near leak
    for rel, X in imgs.items():
        Image.fromarray(X).save(root / rel)
    (root / "test" / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")


def test_audit_folder_json(runner, tmp_path):
    _audit_folder(tmp_path / "f")
    res = runner.invoke(cli, ["data", "audit", str(tmp_path / "f"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["splits"] == {"train": 12, "test": 6}
    assert out["exact"]["by_pair"] == {"train": 1, "test/train": 1} and out["exact"]["conflicting_labels"] == 1
    files = [[m["file"] for m in g] for g in out["exact"]["list"]]
    assert ["train/ant/0.png", "train/bee/5.png"] in files and ["train/ant/3.png", "test/ant/2.png"] in files
    assert out["near_duplicates"]["by_pair"] == {"test/train": 1}
    pair = out["near_duplicates"]["list"][0]
    assert (pair["a"]["file"], pair["b"]["file"]) == ("test/bee/1.png", "train/bee/2.png")
    assert pair["distance"] == pytest.approx(2, abs=0.1)
    assert out["leakage"] == {"test": {"exact": 1, "near": 1}}
    assert [s["path"] for s in out["unreadable"]] == ["test/bee/broken.png"]
    assert out["class_counts"] == {"train": [6, 6], "test": [3, 3]}


def test_audit_table_and_options(runner, tmp_path):
    _audit_folder(tmp_path / "f")
    res = runner.invoke(cli, ["data", "audit", "--data", str(tmp_path / "f"), "--metric", "l1", "--near", "1", "-q"])
    assert res.exit_code == 0, res.output
    assert "2 exact groups holding 4 images, 1 with conflicting labels; 0 near pairs (per-pixel l1 <= 1)" in res.stdout
    assert "leakage: 1 test images are exact copies of earlier-split images, 0 more are near copies" in res.stdout
    assert "unreadable: test/bee/broken.png" in res.stdout and res.stderr == ""
    assert "train[0] train/ant/0.png label 0 = train[11] train/bee/5.png label 1" in res.stdout
    res = runner.invoke(cli, ["data", "audit", str(tmp_path / "f"), "--cross-only", "--json", "-q"])
    assert json.loads(res.stdout)["cross_only"] is True


def test_audit_folder_of_mixed_sizes_and_a_stream(runner, tmp_path, small_stream):
    write_image_folder(tmp_path / "m", classes=("a",), n=2, shape=(8, 8, 3))
    write_image_folder(tmp_path / "m", classes=("b",), n=1, shape=(5, 7, 3))
    res = runner.invoke(cli, ["data", "audit", str(tmp_path / "m"), "--json"])
    assert res.exit_code == 0, res.output
    assert "comparing them at the most common size 8x8" in res.stderr
    assert json.loads(res.stdout)["sizes"] == {"8x8": 2, "5x7": 1}
    res = runner.invoke(cli, ["data", "audit", str(small_stream), "--json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["splits"] == {"train": 120, "val": 30, "test": 30}  # as stored: no validation split carved off
    assert out["sizes"] == {"8x8": 180} and out["modes"] == {"RGB": 180}


def test_audit_refuses_preprocessed_streams(runner, tmp_path, small_stream):
    mean = tmp_path / "m.npz"
    res = runner.invoke(cli, ["preprocess", "mean", "--data", str(small_stream), "-o", str(mean), "-q"])
    assert res.exit_code == 0, res.output
    line = one_line_error(runner.invoke(cli, ["data", "audit", str(mean)]))
    assert "the audit compares raw 8-bit images" in line


def test_audit_size_color_neighbors_examples_memory(runner, tmp_path):
    _audit_folder(tmp_path / "f")
    res = runner.invoke(cli, ["data", "audit", str(tmp_path / "f"), "--size", "3x3", "--color", "gray",
                              "--neighbors", "1", "--memory", "64", "--json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["neighbors"] == 1 and out["exact"]["groups"] == 2
    res = runner.invoke(cli, ["data", "audit", str(tmp_path / "f"), "--examples", "1", "-q"])
    assert res.stdout.count(" = ") == 1  # one exact group listed of two
    res = runner.invoke(cli, ["data", "audit", str(tmp_path / "f"), "--size", "3by3"])
    assert res.exit_code == 2 and "expected HxW" in res.output


def test_audit_help_has_examples(runner):
    res = runner.invoke(cli, ["data", "audit", "--help"])
    assert res.exit_code == 0 and "imgclf data audit cifar10 --cross-only" in res.output
