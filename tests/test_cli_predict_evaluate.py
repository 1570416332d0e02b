import json

import numpy as np
import pytest
from PIL import Image

from conftest import make_images
from imgclf_cli.main import cli

TRAIN = ["--preprocess", "mean,normalize", "--lr", "0.05", "--reg", "1e-3", "--epochs", "5", "--batch-size", "30",
         "-q"]


@pytest.fixture
def models(runner, small_stream, tmp_path):
    out = {}
    for kind in ("softmax", "svm"):
        path = tmp_path / f"{kind}.npz"
        res = runner.invoke(cli, ["train", kind, "--data", str(small_stream), *TRAIN, "-o", str(path)])
        assert res.exit_code == 0, res.output
        out[kind] = path
    return out


def _image_files(tmp_path):
    """Class 0 (dark) as an 8x8 RGB PNG, class 2 (bright) as a 16x16 greyscale PNG (resized, converted)."""
    X, _ = make_images(3, n_classes=3, shape=(8, 8, 3), seed=9)
    dark = tmp_path / "dark.png"
    Image.fromarray(X[0]).save(dark)
    bright = tmp_path / "bright image.png"
    Image.fromarray(np.full((16, 16), 205, np.uint8), "L").save(bright)
    return dark, bright


def test_predict_image_files(runner, models, tmp_path):
    dark, bright = _image_files(tmp_path)
    res = runner.invoke(cli, ["predict", "-m", str(models["softmax"]), str(dark), str(bright)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(str(dark)) and lines[0].split()[1] == "a"
    assert lines[1].startswith(str(bright)) and lines[1].split("  ")[1].split()[0] == "c"
    assert 0 < float(lines[0].split()[-1]) <= 1


def test_predict_top_and_formats(runner, models, tmp_path):
    dark, bright = _image_files(tmp_path)
    res = runner.invoke(cli, ["predict", "-m", str(models["softmax"]), str(dark), str(bright), "--top", "3",
                              "--format", "csv"])
    assert res.exit_code == 0, res.output
    rows = res.stdout.strip().splitlines()
    assert rows[0] == "input,label1,probability1,label2,probability2,label3,probability3"
    assert rows[2].startswith(f"{bright},c,")  # a comma-free path stays unquoted
    probs = [float(v) for v in rows[1].split(",")[2::2]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-5)
    res = runner.invoke(cli, ["predict", "-m", str(models["softmax"]), str(dark), "--top", "2", "--format", "jsonl"])
    obj = json.loads(res.stdout)
    assert obj["input"] == str(dark) and obj["label"] == "a" and len(obj["top"]) == 2
    assert obj["top"][0] == {"label": "a", "probability": obj["probability"]}


def test_predict_svm_shows_scores(runner, models, tmp_path):
    dark, _ = _image_files(tmp_path)
    res = runner.invoke(cli, ["predict", "-m", str(models["svm"]), str(dark), "--format", "jsonl", "--top", "2"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["label"] == "a" and "score" in obj and "probability" not in obj


def test_predict_streams_and_stdin(runner, models, small_stream):
    res = runner.invoke(cli, ["predict", "-m", str(models["softmax"]), str(small_stream), "-q"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 30 and lines[0].startswith(f"{small_stream}:test[0]")
    res = runner.invoke(cli, ["predict", "-m", str(models["svm"]), "-", "--split", "val", "-q"],
                        input=small_stream.read_bytes())
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].startswith("<stdin>:val[0]")


def test_predict_refuses_a_differently_preprocessed_stream(runner, models, small_stream, tmp_path):
    pre = tmp_path / "pre.npz"
    res = runner.invoke(cli, ["preprocess", "mean", "--data", str(small_stream), "-o", str(pre), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["predict", "-m", str(models["softmax"]), str(pre)])
    assert res.exit_code == 2
    assert "preprocessed with ['mean']" in res.output


def test_predict_bad_image(runner, models, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    res = runner.invoke(cli, ["predict", "-m", str(models["softmax"]), str(bad)])
    assert res.exit_code == 2 and "not a readable image" in res.output


def test_evaluate_table_json_and_plot(runner, models, small_stream, tmp_path):
    res = runner.invoke(cli, ["evaluate", "-m", str(models["softmax"]), "--data", str(small_stream), "-q"])
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.stdout and "precision" in res.stdout and "true \\ predicted" in res.stdout
    plot = tmp_path / "cm.png"
    res = runner.invoke(cli, ["evaluate", "-m", str(models["svm"]), "--data", str(small_stream), "--json",
                              "--split", "val", "--plot", str(plot), "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("accuracy", "split", "n_train", "n_eval", "seconds", "per_class", "confusion"):
        assert key in out
    assert out["split"] == "val" and out["n_eval"] == 30 and out["n_train"] == 120
    assert np.array(out["confusion"]).sum() == 30
    assert set(out["per_class"]) == {"a", "b", "c"}
    with Image.open(plot) as img:
        assert img.format == "PNG" and img.size[0] > 100


def test_evaluate_matches_training_report(runner, small_stream, tmp_path):
    path = tmp_path / "m.npz"
    trained = json.loads(runner.invoke(cli, ["train", "softmax", "--data", str(small_stream), *TRAIN, "--json",
                                             "-o", str(path)]).stdout)
    res = json.loads(runner.invoke(cli, ["evaluate", "-m", str(path), "--data", str(small_stream), "--json"]).stdout)
    assert res["accuracy"] == trained["accuracy"]


def test_evaluate_class_mismatch(runner, models):
    res = runner.invoke(cli, ["evaluate", "-m", str(models["softmax"]), "--data", "shapes", "--n-train", "50",
                              "--n-test", "20", "-q"])
    assert res.exit_code == 2 and "classes" in res.output


def test_predict_on_real_jpegs(runner, real_data, tmp_path):
    sample = real_data / "cifar10-jpeg-sample"
    if not sample.is_dir():
        pytest.skip("no cifar10-jpeg-sample")
    path = tmp_path / "m.npz"
    res = runner.invoke(cli, ["train", "softmax", "--data", str(sample / "train"), "--epochs", "2", "-q",
                              "-o", str(path)])
    assert res.exit_code == 0, res.output
    files = sorted((sample / "test" / "cat").iterdir())[:3]
    res = runner.invoke(cli, ["predict", "-m", str(path), *map(str, files), "--top", "2"])
    assert res.exit_code == 0, res.output
    assert len(res.stdout.strip().splitlines()) == 3


def test_stream_preprocessed_by_the_models_own_chain_is_used_as_is(runner, models, small_stream, tmp_path):
    pre = tmp_path / "pre.npz"
    res = runner.invoke(cli, ["preprocess", "apply", str(models["softmax"]), "--data", str(small_stream),
                              "-o", str(pre), "-q"])
    assert res.exit_code == 0, res.output
    raw = runner.invoke(cli, ["predict", "-m", str(models["softmax"]), str(small_stream), "-q"]).stdout
    done = runner.invoke(cli, ["predict", "-m", str(models["softmax"]), str(pre), "-q"]).stdout
    assert [line.split()[1:] for line in raw.splitlines()] == [line.split()[1:] for line in done.splitlines()]


def _photo_tree(tmp_path):
    """A folder of photos as a user has them: sub-folders, a hidden file, a note, a broken image."""
    root = tmp_path / "photos"
    (root / "2024" / "may").mkdir(parents=True)
    X, _ = make_images(3, n_classes=3, shape=(8, 8, 3), seed=9)
    Image.fromarray(X[0]).save(root / "2024" / "may" / "dark.png")
    Image.fromarray(np.full((16, 16), 205, np.uint8), "L").save(root / "bright, big.png")
    Image.fromarray(X[1]).save(root / "2024" / "mid.png")
    (root / ".thumb.png").write_bytes(b"x")
    (root / "notes.txt").write_text("x")
    (root / "2024" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "cut.png")
    (root / "cut.png").write_bytes((root / "cut.png").read_bytes()[:200])  # a good header: fails when decoded
    return root


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_predict_a_directory_tree(runner, models, tmp_path, fmt):
    root = _photo_tree(tmp_path)
    res = runner.invoke(cli, ["predict", "-m", str(models["softmax"]), str(root), "--format", fmt])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    if fmt == "csv":
        assert lines[0] == "input,label,probability"
        rows = [line.rsplit(",", 2) for line in lines[1:]]
        # sorted by path, relative to the folder; a comma in a name is quoted
        assert [r[0] for r in rows] == ["2024/may/dark.png", "2024/mid.png", '"bright, big.png"']
        assert [r[1] for r in rows] == ["a", "b", "c"]
    else:
        objs = [json.loads(line) for line in lines]
        assert [o["input"] for o in objs] == ["2024/may/dark.png", "2024/mid.png", "bright, big.png"]
        assert [o["label"] for o in objs] == ["a", "b", "c"]
    assert f"{root}: 4 images; skipped 3:" in res.stderr
    for name in (".thumb.png (hidden)", "notes.txt (not an image)", "2024/broken.jpg (unreadable)",
                 "skipped cut.png (unreadable: "):
        assert name in res.stderr


def test_predict_several_inputs_name_folder_files_by_the_folder(runner, models, tmp_path):
    root = _photo_tree(tmp_path)
    dark, _ = _image_files(tmp_path)
    res = runner.invoke(cli, ["predict", "-m", str(models["svm"]), str(dark), str(root / "2024"), "-q"])
    assert res.exit_code == 0, res.output
    names = [line.split("  ")[0] for line in res.stdout.strip().splitlines()]
    assert names == [str(dark), f"{root / '2024'}/may/dark.png", f"{root / '2024'}/mid.png"]


def test_predict_a_folder_in_batches(runner, models, tmp_path, monkeypatch):
    from imgclf_cli.commands import predict as predict_cmd

    monkeypatch.setattr(predict_cmd, "BATCH", 2)
    root = _photo_tree(tmp_path)
    res = runner.invoke(cli, ["predict", "-m", str(models["softmax"]), str(root), "--format", "csv", "-q"])
    assert res.exit_code == 0 and len(res.stdout.strip().splitlines()) == 4  # header + 3 (cut.png skipped)


@pytest.fixture
def noisy_folder(tmp_path):
    """An image folder a kNN gets partly wrong: train/ and test/ of overlapping 6x6 classes."""
    r = np.random.default_rng(3)
    for split, n in (("train", 12), ("test", 8)):
        for c, name in enumerate(("ant", "bee", "cow")):
            (tmp_path / "f" / split / name).mkdir(parents=True)
            for i in range(n):
                X = np.clip(8 * c + r.integers(0, 200, (6, 6, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(X).save(tmp_path / "f" / split / name / f"{i:02d}.png")
    return tmp_path / "f"


@pytest.fixture
def knn_model(runner, noisy_folder, tmp_path):
    path = tmp_path / "knn.npz"
    res = runner.invoke(cli, ["knn", "--data", str(noisy_folder), "--k", "3", "--save", str(path), "-q"])
    assert res.exit_code == 0, res.output
    return path


def test_evaluate_error_analysis(runner, knn_model, noisy_folder, tmp_path):
    grid = tmp_path / "mistakes.png"
    res = runner.invoke(cli, ["evaluate", "-m", str(knn_model), "--data", str(noisy_folder), "--top", "2",
                              "--pairs", "3", "--mistakes", str(grid), "--n-mistakes", "5", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert 0 < out["accuracy"] < 1 and out["accuracy"] <= out["top_2_accuracy"] <= 1
    cm = np.array(out["confusion"])
    recall = np.diag(cm) / cm.sum(axis=1)
    assert out["balanced_accuracy"] == pytest.approx(recall.mean())
    assert set(out["per_class"]["ant"]) == {"accuracy", "precision", "f1", "support"}
    assert 1 <= len(out["confused"]) <= 3
    first = out["confused"][0]
    assert first["count"] == max(cm[i, j] for i in range(3) for j in range(3) if i != j)
    assert "wrote 5 of the most confident mistakes" in res.stderr
    with Image.open(grid) as img:
        assert img.size[0] > 5 * 6 * 8  # five tiles upscaled
    assert "read 60 images from train/, test/" in res.stderr  # the folder summary


def test_evaluate_table_shows_the_new_figures(runner, knn_model, noisy_folder):
    res = runner.invoke(cli, ["evaluate", "-m", str(knn_model), "--data", str(noisy_folder), "--top", "2", "-q"])
    assert res.exit_code == 0, res.output
    head = res.stdout.splitlines()[0]
    for word in ("accuracy", "balanced accuracy", "macro F1", "top-2 accuracy"):
        assert word in head
    assert "F1" in res.stdout and "most confused pairs" in res.stdout and "share of true" in res.stdout


def test_evaluate_mistakes_needs_scores_and_images(runner, models, small_stream, tmp_path):
    res = runner.invoke(cli, ["evaluate", "-m", str(models["softmax"]), "--data", str(small_stream),
                              "--mistakes", str(tmp_path / "m.png"), "-q"])
    assert res.exit_code == 2 and "no mistakes to draw" in res.stderr  # separable: all right


def test_help_shows_the_new_options_with_examples(runner):
    res = runner.invoke(cli, ["predict", "--help"])
    assert "imgclf predict -m softmax.npz ~/photos --format csv" in res.output and "a folder of images" in res.output
    res = runner.invoke(cli, ["evaluate", "--help"])
    for text in ("--top K", "--mistakes PNG", "--n-mistakes", "--pairs", "imgclf evaluate -m softmax.npz --mistakes"):
        assert text in res.output


def test_evaluate_top_k_with_a_class_the_model_never_saw(runner, tmp_path):
    from imgclf import storage
    from imgclf.datasets.base import Dataset, Split

    Xtr, ytr = make_images(40, n_classes=3, seed=1)
    keep = ytr < 2  # the training split holds no image of class c
    Xte, yte = make_images(12, n_classes=3, seed=2)
    ds = Dataset({"train": Split(Xtr[keep], ytr[keep]), "test": Split(Xte, yte)}, ["a", "b", "c"], (8, 8, 3))
    stream = tmp_path / "s.npz"
    storage.write_stream(ds, stream)
    model = tmp_path / "knn.npz"
    assert runner.invoke(cli, ["knn", "--data", str(stream), "--k", "1", "-o", str(model), "-q"]).exit_code == 0
    res = runner.invoke(cli, ["evaluate", "-m", str(model), "--data", str(stream), "--top", "2", "--json",
                              "--mistakes", str(tmp_path / "m.png"), "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["accuracy"] == pytest.approx(8 / 12) and out["top_2_accuracy"] == pytest.approx(8 / 12)
    assert out["per_class"]["c"]["f1"] == 0 and out["balanced_accuracy"] == pytest.approx(2 / 3)
