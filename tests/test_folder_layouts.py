"""Image folders as users have them: recursive class folders, train/val/valid/test sub-roots, the report."""

from __future__ import annotations

import numpy as np
import pytest
from datafiles import png_bytes, write_image_folder

from imgclf.datasets import folder, load
from imgclf.errors import DataError


def _png(path, value=0, shape=(6, 6, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(np.full(shape, value, np.uint8)))


def test_images_in_sub_folders_of_a_class_are_read_in_path_order(tmp_path):
    root = tmp_path / "d"
    _png(root / "cat" / "b.png", 1)
    _png(root / "cat" / "a" / "z.png", 2)
    _png(root / "cat" / "a" / "deeper" / "x.png", 3)
    _png(root / "dog" / "2019" / "y.png", 4)
    found = folder.load_image_folder(root)
    assert found.classes == ["cat", "dog"]
    # cat's files in path order (a/deeper/x, a/z, b), interleaved with dog's one file
    assert found.files["train"] == ["cat/a/deeper/x.png", "dog/2019/y.png", "cat/a/z.png", "cat/b.png"]
    X, y = found.splits["train"]
    assert X[:, 0, 0, 0].tolist() == [3, 4, 2, 1] and y.tolist() == [0, 1, 0, 0]
    assert found.report.layout == "classes" and found.report.skipped == []


def test_hidden_entries_and_files_outside_class_folders_are_reported(tmp_path):
    root = tmp_path / "d"
    write_image_folder(root, classes=("a", "b"), n=2)
    _png(root / "a" / ".cache" / "thumb.png")
    (root / "a" / ".DS_Store").write_bytes(b"\x00")
    (root / "b" / "Thumbs.db").write_bytes(b"\x00")
    (root / ".git").mkdir()
    (root / "README.md").write_text("my photos")
    report = folder.load_image_folder(root).report
    assert report.read == {"train": 4}
    assert {(s.path, s.reason) for s in report.skipped} == {
        (".git", "hidden"), ("README.md", "outside class folders"), ("a/.DS_Store", "hidden"),
        ("a/.cache", "hidden"), ("b/Thumbs.db", "hidden")}
    assert report.to_dict()["skipped_counts"] == {"hidden": 4, "outside class folders": 1}


@pytest.mark.parametrize("val_name", ["val", "valid"])
def test_a_given_val_folder_replaces_the_held_out_split(tmp_path, val_name):
    root = tmp_path / "d"
    write_image_folder(root / "train", classes=("a", "b"), n=10)
    write_image_folder(root / val_name, classes=("a", "b"), n=2, seed=1)
    ds = load(str(root))
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 20, "val": 4}
    assert ds.report.layout == "splits" and ds.report.sub_roots == {"train": "train", "val": val_name}
    # --val N is ignored: the folder says which images validate
    assert len(load(str(root), val=5).get("train")) == 20


def test_train_val_test_in_any_combination(tmp_path):
    root = tmp_path / "d"
    write_image_folder(root / "train", classes=("a", "b", "c"), n=5)
    write_image_folder(root / "val", classes=("a", "b"), n=1, seed=1)
    write_image_folder(root / "test", classes=("c",), n=3, seed=2)
    ds = load(str(root))
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 15, "val": 2, "test": 3}
    assert ds.get("test").y.tolist() == [2, 2, 2]
    # train + test: val is the tail of train as before (a fifth of a small set)
    write_image_folder(tmp_path / "e" / "train", classes=("a", "b"), n=10)
    write_image_folder(tmp_path / "e" / "test", classes=("a", "b"), n=1)
    assert {k: len(v) for k, v in load(str(tmp_path / "e")).splits.items()} == {"train": 16, "val": 4, "test": 2}


def test_test_only_and_val_test_folders_without_train(tmp_path):
    root = tmp_path / "d"
    write_image_folder(root / "test", classes=("b", "a"), n=2)
    write_image_folder(root / "val", classes=("c",), n=1)
    found = folder.load_image_folder(root)
    assert found.classes == ["a", "b", "c"]  # the union, sorted
    ds = load(str(root))
    assert set(ds.splits) == {"val", "test"} and len(ds.get("test")) == 4


def test_split_folder_structure_errors(tmp_path):
    root = tmp_path / "d"
    write_image_folder(root / "train", classes=("a",), n=1)
    write_image_folder(root / "val", classes=("a",), n=1)
    write_image_folder(root / "valid", classes=("a",), n=1)
    with pytest.raises(DataError, match="both val/ and valid/ hold the validation split"):
        folder.load_image_folder(root)
    write_image_folder(tmp_path / "m" / "train", classes=("a",), n=1)
    write_image_folder(tmp_path / "m", classes=("cat",), n=1)
    with pytest.raises(DataError, match=r"mixes split folders \(train\) with other folders \(cat\)"):
        folder.load_image_folder(tmp_path / "m")
    (tmp_path / "e" / "a").mkdir(parents=True)
    (tmp_path / "e" / "a" / "x.txt").write_text("no")
    with pytest.raises(DataError, match=r"the class folder holds no images \(1 files skipped"):
        folder.load_image_folder(tmp_path / "e")


def test_a_symlink_loop_is_walked_once(tmp_path):
    root = tmp_path / "d"
    write_image_folder(root, classes=("a",), n=2)
    try:
        (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)
    except OSError:
        pytest.skip("symlinks not available")
    (root / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    found = folder.load_image_folder(root)
    assert found.report.read == {"train": 2}
    assert [(s.path, s.reason) for s in found.report.skipped] == [("a/gone.png", "unreadable"),
                                                                  ("a/loop", "unreadable")]
    assert found.report.skipped[0].detail == "not a regular file or folder"


def test_sizes_and_modes_are_counted(tmp_path):
    root = tmp_path / "d"
    _png(root / "a" / "1.png", shape=(6, 6, 3))
    _png(root / "a" / "2.png", shape=(6, 6, 3))
    _png(root / "b" / "3.png", shape=(4, 5))
    found = folder.load_image_folder(root, size=(6, 6))
    assert found.report.sizes == {"6x6": 2, "4x5": 1} and found.report.modes == {"RGB": 2, "L": 1}
    assert folder.common_size(found.report) == (6, 6)


def test_list_images_for_prediction(tmp_path):
    root = tmp_path / "p"
    _png(root / "z.png")
    _png(root / "sub" / "a.png")
    (root / "sub" / "notes.txt").write_text("x")
    (root / ".hidden.png").write_bytes(b"x")
    files, skipped = folder.list_images(root)
    assert [f.relative_to(root).as_posix() for f in files] == ["sub/a.png", "z.png"]
    assert {(s.path, s.reason) for s in skipped} == {("sub/notes.txt", "not an image"), (".hidden.png", "hidden")}


def test_knn_scores_a_folder_val_split_when_there_is_no_test(tmp_path):
    import json

    from click.testing import CliRunner

    from imgclf_cli.main import cli

    root = tmp_path / "d"
    write_image_folder(root / "train", classes=("a", "b"), n=6)
    write_image_folder(root / "valid", classes=("a", "b"), n=2, seed=1)
    res = CliRunner().invoke(cli, ["knn", "--data", str(root), "--k", "1", "--json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["split"] == "val" and out["n_eval"] == 4 and out["n_train"] == 12


def test_an_empty_val_folder_does_not_replace_the_held_out_split(tmp_path):
    root = tmp_path / "d"
    write_image_folder(root / "train", classes=("a", "b"), n=10)
    (root / "val").mkdir()
    ds = load(str(root))
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 16, "val": 4}
    assert ds.report.read == {"train": 20, "val": 0}
