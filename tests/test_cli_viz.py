"""`imgclf viz neighbors` through CliRunner."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from conftest import make_images
from imgclf_cli.main import cli


def test_viz_neighbors_on_a_stream(runner, small_stream, tmp_path):
    out = tmp_path / "nn.png"
    res = runner.invoke(cli, ["viz", "neighbors", "--data", str(small_stream), "-o", str(out), "-n", "4", "-k", "3",
                              "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["metric"] == "l2" and got["n_train"] == 120 and len(got["queries"]) == 4
    first = got["queries"][0]
    assert first["query"] == "test[0]" and len(first["neighbors"]) == 3
    dists = [m["distance"] for m in first["neighbors"]]
    assert dists == sorted(dists)
    # the distances are the exact Euclidean ones
    from imgclf import storage

    ds = storage.read_stream(small_stream)
    q = ds.get("test").X[0].astype(float)
    j = first["neighbors"][0]["index"]
    assert dists[0] == np.sqrt(((ds.get("train").X[j] - q) ** 2).sum())
    assert all(m["label"] == first["label"] for m in first["neighbors"])  # separable data
    with Image.open(out) as img:
        assert img.size == (4 * (8 * 3 + 1) + 1, 4 * (8 * 3 + 1 + 12) + 1)
    assert "wrote" in res.stderr


def test_viz_neighbors_train_split_skips_the_image_itself_and_l1(runner, small_stream, tmp_path):
    res = runner.invoke(cli, ["viz", "neighbors", "--data", str(small_stream), "-o", str(tmp_path / "nn.png"),
                              "--split", "train", "-n", "3", "-k", "2", "--metric", "l1", "--json", "-q"])
    assert res.exit_code == 0, res.output
    for i, row in enumerate(json.loads(res.stdout)["queries"]):
        assert i not in [m["index"] for m in row["neighbors"]]
        assert all(m["distance"] > 0 for m in row["neighbors"])


def test_viz_neighbors_with_query_files_and_a_table(runner, small_stream, tmp_path):
    X, _ = make_images(3, n_classes=3, shape=(8, 8, 3), seed=9)
    (tmp_path / "q" / "sub").mkdir(parents=True)
    Image.fromarray(X[0]).save(tmp_path / "q" / "sub" / "dark.png")
    Image.fromarray(np.full((16, 16, 3), 205, np.uint8)).save(tmp_path / "q" / "bright.png")
    (tmp_path / "q" / "notes.txt").write_text("x")
    res = runner.invoke(cli, ["viz", "neighbors", "--data", str(small_stream), "-o", str(tmp_path / "nn.png"),
                              "--queries", str(tmp_path / "q"), "-k", "2"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["query", "label", "#1", "#2"]
    assert lines[2].split()[:2] == ["bright.png", "-"] and lines[3].split()[:2] == ["sub/dark.png", "-"]
    assert lines[2].split()[2] == "c" and lines[3].split()[2] == "a"
    assert "notes.txt: not an image" in res.stderr


def test_viz_neighbors_help_has_examples(runner):
    res = runner.invoke(cli, ["viz", "neighbors", "--help"])
    assert res.exit_code == 0 and "imgclf viz neighbors --data cifar10 -o knn.png" in res.output


def test_viz_neighbors_scale_and_bad_input(runner, small_stream, tmp_path):
    out = tmp_path / "nn.png"
    res = runner.invoke(cli, ["viz", "neighbors", "--data", str(small_stream), "-o", str(out), "-n", "2", "-k", "1",
                              "--scale", "1", "-q"])
    assert res.exit_code == 0, res.output
    with Image.open(out) as img:
        assert img.size == (2 * (8 + 1) + 1, 2 * (8 + 1 + 12) + 1)
    res = runner.invoke(cli, ["viz", "neighbors", "--data", str(small_stream), "-o", str(out),
                              "--queries", str(tmp_path / "missing.png")])
    assert res.exit_code == 2 and "missing.png" in res.stderr
