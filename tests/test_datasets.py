"""Dataset readers: CIFAR-10 (python, binary, archives, restricted unpickler), MNIST idx, image folders."""

from __future__ import annotations

import gzip
import pickle
import pickletools
import struct

import numpy as np
import pytest

from datafiles import (
    CIFAR_NAMES, cifar_rows, idx_labels, png_bytes, png_zeros, rows_to_nhwc, tar_folder, write_cifar_binary,
    write_cifar_python, write_idx, write_image_folder,
)
from imgclf.datasets import cifar, folder, load, mnist
from imgclf.errors import DataError, UnsafePickleError, UsageError


# -- CIFAR-10 python layout -------------------------------------------------------------------------
@pytest.mark.parametrize("protocol,str_keys", [(2, False), (2, True), (5, True), (5, False)])
def test_cifar_python_folder_decodes_pixels_and_labels(tmp_path, protocol, str_keys):
    written = write_cifar_python(tmp_path / "cifar-10-batches-py", protocol=protocol, str_keys=str_keys)
    Xtr, ytr, Xte, yte, classes = cifar.load_cifar_python(tmp_path / "cifar-10-batches-py")
    assert Xtr.shape == (40, 32, 32, 3) and Xtr.dtype == np.uint8 and Xtr.flags.c_contiguous
    np.testing.assert_array_equal(Xtr, rows_to_nhwc(written["train"][0]))
    np.testing.assert_array_equal(ytr, written["train"][1])
    np.testing.assert_array_equal(Xte, rows_to_nhwc(written["test"][0]))
    np.testing.assert_array_equal(yte, written["test"][1])
    assert classes == CIFAR_NAMES


def test_cifar_batches_are_read_in_numeric_order(tmp_path):
    written = write_cifar_python(tmp_path / "c", n_per_batch=3, n_batches=11)
    _, ytr, *_ = cifar.load_cifar_python(tmp_path / "c")
    np.testing.assert_array_equal(ytr, written["train"][1])  # data_batch_10 after data_batch_9


def test_cifar_archive_is_read_without_extracting(tmp_path):
    written = write_cifar_python(tmp_path / "src" / "cifar-10-batches-py")
    archive = tar_folder(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    Xtr, ytr, Xte, yte, classes = cifar.load_cifar_archive(archive)
    np.testing.assert_array_equal(Xtr, rows_to_nhwc(written["train"][0]))
    np.testing.assert_array_equal(yte, written["test"][1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz", "src"]


def test_cifar_binary_folder_and_archive(tmp_path):
    written = write_cifar_binary(tmp_path / "cifar-10-batches-bin")
    for source in (tmp_path / "cifar-10-batches-bin",
                   tar_folder(tmp_path / "cifar-10-batches-bin", tmp_path / "cifar-10-binary.tar.gz")):
        reader = cifar.load_cifar_archive if source.is_file() else cifar.load_cifar_binary
        Xtr, ytr, Xte, yte, classes = reader(source)
        np.testing.assert_array_equal(Xtr, rows_to_nhwc(written["train"][0]))
        np.testing.assert_array_equal(ytr, written["train"][1])
        np.testing.assert_array_equal(Xte, rows_to_nhwc(written["test"][0]))
        assert classes == CIFAR_NAMES


def test_cifar_binary_truncated_record(tmp_path):
    write_cifar_binary(tmp_path / "b")
    path = tmp_path / "b" / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"data_batch_2\.bin: .* not a whole number of 3073-byte records"):
        cifar.load_cifar_binary(tmp_path / "b")


def test_cifar_truncated_batch_is_a_clear_error(tmp_path):
    write_cifar_python(tmp_path / "c")
    path = tmp_path / "c" / "data_batch_1"
    path.write_bytes(path.read_bytes()[: 5000])
    with pytest.raises(DataError, match=r"data_batch_1: truncated or corrupt pickle"):
        cifar.load_cifar_python(tmp_path / "c")


def test_cifar_batch_with_wrong_content(tmp_path):
    write_cifar_python(tmp_path / "c")
    bad = {b"labels": [1, 2], b"data": np.zeros((3, 3072), np.uint8)}
    (tmp_path / "c" / "data_batch_1").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        cifar.load_cifar_python(tmp_path / "c")
    (tmp_path / "c" / "data_batch_1").write_bytes(pickle.dumps({b"labels": [1]}, protocol=2))
    with pytest.raises(DataError, match="no 'data' entry"):
        cifar.load_cifar_python(tmp_path / "c")
    (tmp_path / "c" / "data_batch_1").write_bytes(pickle.dumps({b"fine_labels": [1], b"data": 0}, protocol=2))
    with pytest.raises(DataError, match="CIFAR-100"):
        cifar.load_cifar_python(tmp_path / "c")
    floats = {b"labels": [1], b"data": np.zeros((1, 3072), np.float64)}
    (tmp_path / "c" / "data_batch_1").write_bytes(pickle.dumps(floats, protocol=2))
    with pytest.raises(DataError, match="must be a uint8 array"):
        cifar.load_cifar_python(tmp_path / "c")


class _CreatesFile:
    """Unpickling this calls open(path, 'w'): a stand-in for any code a malicious pickle could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    # Prove the payload is live: the ordinary unpickler does create the file.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps({b"data": _CreatesFile(probe)}, protocol=2)).get(b"data").close()
    assert probe.exists()

    marker = tmp_path / "pwned"
    folder_ = tmp_path / "c"
    write_cifar_python(folder_)
    rows, labels = cifar_rows(2, 0)
    evil = pickle.dumps({b"labels": [int(v) for v in labels], b"data": rows, b"x": _CreatesFile(marker)}, protocol=2)
    (folder_ / "data_batch_1").write_bytes(evil)
    with pytest.raises(UnsafePickleError, match=r"data_batch_1: refusing to unpickle the global (builtins|io)\.open"):
        cifar.load_cifar_python(folder_)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("os", "system"), ("numpy", "load"), ("subprocess", "Popen"),
                                         ("numpy.core.multiarray", "scalar"), ("builtins", "eval")])
def test_restricted_unpickler_refuses_any_other_global(module, name):
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"q\x00."
    with pytest.raises(UnsafePickleError, match=rf"{module}\.{name}"):
        cifar.safe_unpickle(payload, "x")


def test_restricted_unpickler_rejects_persistent_ids():
    payload = b"\x80\x02X\x03\x00\x00\x00abcQ."  # BINPERSID
    with pytest.raises(UnsafePickleError):
        cifar.safe_unpickle(payload, "x")


# -- MNIST idx --------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_gz_or_not(tmp_path, gz):
    written = write_idx(tmp_path / "mnist", gz=gz)
    Xtr, ytr, Xte, yte, classes = mnist.load_idx_dir(tmp_path / "mnist")
    assert Xtr.shape == (30, 28, 28, 1) and Xte.shape == (10, 28, 28, 1) and Xtr.dtype == np.uint8
    np.testing.assert_array_equal(Xtr[..., 0], written["train"][0])
    np.testing.assert_array_equal(yte, written["t10k"][1])
    assert classes == [str(d) for d in range(10)]
    assert Xtr.flags.writeable


def test_idx_dotted_file_names(tmp_path):
    write_idx(tmp_path / "m", gz=False)
    for p in (tmp_path / "m").iterdir():
        p.rename(p.with_name(p.name.replace("-idx", ".idx")))
    assert mnist.load_idx_dir(tmp_path / "m")[0].shape == (30, 28, 28, 1)


def test_idx_wrong_magic(tmp_path):
    write_idx(tmp_path / "m", gz=False)
    path = tmp_path / "m" / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">I", 2049) + path.read_bytes()[4:])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: wrong magic number 2049 .* 2051"):
        mnist.load_idx_dir(tmp_path / "m")


def test_idx_counts_checked_against_file_size(tmp_path):
    write_idx(tmp_path / "m", gz=False)
    path = tmp_path / "m" / "train-images-idx3-ubyte"
    data = path.read_bytes()
    path.write_bytes(data[:-28])
    with pytest.raises(DataError, match=r"truncated: the header promises 30x28x28 values \(23536 bytes"):
        mnist.load_idx_dir(tmp_path / "m")
    path.write_bytes(data + b"\x00")
    with pytest.raises(DataError, match="has trailing bytes"):
        mnist.load_idx_dir(tmp_path / "m")


def test_idx_image_label_count_mismatch_and_missing_labels(tmp_path):
    write_idx(tmp_path / "m", gz=False)
    (tmp_path / "m" / "train-labels-idx1-ubyte").write_bytes(idx_labels(np.zeros(29)))
    with pytest.raises(DataError, match="30 train images but 29 labels"):
        mnist.load_idx_dir(tmp_path / "m")
    (tmp_path / "m" / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="no train-labels-idx1-ubyte"):
        mnist.load_idx_dir(tmp_path / "m")


def test_idx_truncated_gzip(tmp_path):
    write_idx(tmp_path / "m")
    path = tmp_path / "m" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: truncated or corrupt gzip"):
        mnist.load_idx_dir(tmp_path / "m")


def test_fashion_mnist_found_by_name_with_its_classes(tmp_path, monkeypatch):
    write_idx(tmp_path / "fashion-mnist")
    monkeypatch.setenv("IMGCLF_DATA", str(tmp_path))
    ds = load("fashion-mnist", val=5)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.get("train").X.shape == (25, 28, 28, 1) and len(ds.get("val")) == 5


# -- the registry finds every layout ----------------------------------------------------------------
@pytest.mark.parametrize("layout", ["python", "binary", "python-archive", "binary-archive"])
def test_registry_finds_cifar10_in_every_layout(tmp_path, monkeypatch, layout):
    base = tmp_path / "src"
    if layout.startswith("python"):
        written = write_cifar_python(base / "cifar-10-batches-py")
        name = "cifar-10-batches-py"
    else:
        written = write_cifar_binary(base / "cifar-10-batches-bin")
        name = "cifar-10-batches-bin"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if layout.endswith("archive"):
        archive = "cifar-10-python.tar.gz" if layout.startswith("python") else "cifar-10-binary.tar.gz"
        tar_folder(base / name, data_dir / archive)
    else:
        (base / name).rename(data_dir / name)
    monkeypatch.setenv("IMGCLF_DATA", str(data_dir))
    ds = load("cifar10", val=10)
    assert ds.name == "cifar10" and ds.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(ds.get("train").X, rows_to_nhwc(written["train"][0][:30]))
    np.testing.assert_array_equal(ds.get("val").y, written["train"][1][30:])


def test_missing_named_dataset_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLF_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=rf"'mnist' not found \(looked in: {tmp_path}.*imgclf data get mnist"):
        load("mnist")


# -- image folders ----------------------------------------------------------------------------------
def test_image_folder_with_train_and_test_sub_roots(tmp_path):
    write_image_folder(tmp_path / "d" / "train", classes=("cat", "dog", "eel"), n=4)
    write_image_folder(tmp_path / "d" / "test", classes=("dog",), n=2, seed=1)
    (tmp_path / "d" / "README.txt").write_text("ignored: not in a class folder")
    (tmp_path / "d" / "train" / "cat" / ".DS_Store").write_bytes(b"\x00junk")
    found = folder.load_image_folder(tmp_path / "d")
    (Xtr, ytr), (Xte, yte), classes = found.splits["train"], found.splits["test"], found.classes
    assert classes == ["cat", "dog", "eel"]
    assert Xtr.shape == (12, 8, 8, 3) and Xte.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(ytr, [0, 1, 2] * 4)  # classes interleaved
    np.testing.assert_array_equal(yte, [1, 1])
    from PIL import Image

    np.testing.assert_array_equal(Xtr[1], np.asarray(Image.open(tmp_path / "d" / "train" / "dog" / "000.png")))


def test_image_folder_resize_and_colour_modes(tmp_path):
    root = tmp_path / "d"
    write_image_folder(root, classes=("a", "b"), n=2, shape=(10, 12, 3))
    write_image_folder(root, classes=("c",), n=3, shape=(10, 12))  # gray: a minority
    X = folder.load_image_folder(root).splits["train"][0]
    assert X.shape == (7, 10, 12, 3)
    X = folder.load_image_folder(root, size=(4, 6), mode="gray").splits["train"][0]
    assert X.shape == (7, 4, 6, 1)
    write_image_folder(root, classes=("d", "e"), n=3, shape=(10, 12))  # now gray is the majority
    X = folder.load_image_folder(root).splits["train"][0]
    assert X.shape == (13, 10, 12, 1)


def test_image_folder_sizes_must_agree_without_size(tmp_path):
    write_image_folder(tmp_path / "d", classes=("a",), n=1, shape=(8, 8, 3))
    write_image_folder(tmp_path / "d", classes=("b",), n=1, shape=(9, 8, 3))
    with pytest.raises(DataError, match=r"size must be given: the images differ .* pass HxW"):
        folder.load_image_folder(tmp_path / "d")
    assert folder.load_image_folder(tmp_path / "d", size=(5, 5)).splits["train"][0].shape == (2, 5, 5, 3)


def test_non_image_and_truncated_files_are_skipped_and_reported(tmp_path):
    write_image_folder(tmp_path / "d", shape=(64, 64, 3))
    (tmp_path / "d" / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "d" / "dog" / "fake.jpg").write_text("not a jpeg either")
    bad = tmp_path / "d" / "cat" / "001.png"
    bad.write_bytes(bad.read_bytes()[:200])  # a valid header: found only when decoding
    found = folder.load_image_folder(tmp_path / "d")
    assert found.splits["train"][0].shape == (5, 64, 64, 3)
    assert "cat/001.png" not in found.files["train"]
    report = found.report
    assert report.skipped_counts() == {"not an image": 1, "unreadable": 2}
    why = {s.path: s.reason for s in report.skipped}
    assert why == {"dog/notes.txt": "not an image", "dog/fake.jpg": "unreadable", "cat/001.png": "unreadable"}
    assert report.read == {"train": 5} and report.class_counts == {"train": [2, 3]}


def test_single_unreadable_image_is_an_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    with pytest.raises(DataError, match=rf"{bad}: not a readable image"):
        folder.load_image(bad)


def test_decompression_bomb_refused_by_pillow_check(tmp_path):
    write_image_folder(tmp_path / "d")
    bomb = tmp_path / "d" / "cat" / "bomb.png"
    bomb.write_bytes(png_zeros(100_000, 100_000, rows=1))  # 10 gigapixels declared in a few hundred bytes
    assert bomb.stat().st_size < 1000
    with pytest.raises(DataError, match=rf"{bomb}: refusing a likely decompression bomb"):
        folder.load_image_folder(tmp_path / "d")


def test_decompression_bomb_refused_by_our_pixel_limit(tmp_path):
    # 6000 x 6000 = 36 Mpx: under Pillow's default warning threshold, over the image_pixels limit.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_zeros(6000, 6000))
    with pytest.raises(DataError, match=r"6000x6000 is 36000000 pixels, over the limit .* decompression bomb"):
        folder.load_image(bomb)


def test_pillow_bomb_warning_becomes_an_error(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 150 px: over the warning, under the error
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(np.zeros((10, 15), np.uint8)))
    with pytest.raises(DataError, match="refusing a likely decompression bomb"):
        folder.load_image(path)


def test_image_folder_structure_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        folder.load_image_folder(tmp_path / "empty")
    write_image_folder(tmp_path / "d")
    (tmp_path / "d" / "owl").mkdir()
    with pytest.raises(DataError, match="owl: the class folder holds no images"):
        folder.load_image_folder(tmp_path / "d")
    write_image_folder(tmp_path / "t" / "train")
    write_image_folder(tmp_path / "t" / "test", classes=("cow",))
    with pytest.raises(DataError, match="class 'cow' is not among the training classes"):
        folder.load_image_folder(tmp_path / "t")
    with pytest.raises(UsageError, match="mode must be one of"):
        folder.load_image_folder(tmp_path / "d", mode="cmyk")


def test_load_image_keeps_stored_mode(tmp_path):
    path = tmp_path / "g.png"
    path.write_bytes(png_bytes(np.full((5, 7), 9, np.uint8)))
    img = folder.load_image(path)
    assert img.shape == (5, 7, 1) and img.dtype == np.uint8 and int(img[0, 0, 0]) == 9
    assert folder.load_image(path, mode="rgb", size=(3, 3)).shape == (3, 3, 3)


# -- real data: values computed here from the raw files, independently of the readers ------------------
def _pickle_ops(path):
    """Walk a pickle's opcodes without executing anything (pickletools never builds objects)."""
    return list(pickletools.genops(path.read_bytes()))


def _raw_cifar_batch(path):
    """(first row of pixels, labels) of an original batch, decoded from its opcodes alone."""
    ops = _pickle_ops(path)
    strings = [arg for op, arg, _ in ops if op.name in ("BINSTRING", "BINBYTES", "SHORT_BINSTRING")]
    blob = next(s for s in strings if len(s) >= 3072 * 1000)
    blob = blob.encode("latin1") if isinstance(blob, str) else blob
    start = next(i for i, (op, arg, _) in enumerate(ops) if arg == "labels")
    labels = []
    for op, arg, _ in ops[start + 1:]:
        if op.name in ("BININT1", "BININT2", "BININT"):
            labels.append(arg)
        elif op.name == "APPENDS":
            break
    return np.frombuffer(blob[:3072], np.uint8), np.array(labels)


def test_real_cifar10_against_raw_files(cifar_dir):
    Xtr, ytr, Xte, yte, classes = cifar.load_cifar_python(cifar_dir)
    assert Xtr.shape == (50000, 32, 32, 3) and Xte.shape == (10000, 32, 32, 3)
    assert classes == CIFAR_NAMES
    counts = np.zeros(10, np.int64)
    for i in range(1, 6):
        first, labels = _raw_cifar_batch(cifar_dir / f"data_batch_{i}")
        assert len(labels) == 10000
        np.testing.assert_array_equal(ytr[(i - 1) * 10000: i * 10000], labels)
        # Pixel (r, c) of channel ch is first[ch * 1024 + r * 32 + c].
        r, c = 5, 17
        assert tuple(Xtr[(i - 1) * 10000, r, c]) == tuple(first[ch * 1024 + r * 32 + c] for ch in range(3))
        np.testing.assert_array_equal(Xtr[(i - 1) * 10000], rows_to_nhwc(first[None])[0])
        counts += np.bincount(labels, minlength=10)
    assert counts.tolist() == [5000] * 10
    first, labels = _raw_cifar_batch(cifar_dir / "test_batch")
    np.testing.assert_array_equal(yte, labels)
    np.testing.assert_array_equal(Xte[0], rows_to_nhwc(first[None])[0])
    assert np.bincount(yte).tolist() == [1000] * 10


def test_real_mnist_against_raw_files(mnist_dir):
    Xtr, ytr, Xte, yte, classes = mnist.load_idx_dir(mnist_dir)
    assert Xtr.shape == (60000, 28, 28, 1) and Xte.shape == (10000, 28, 28, 1)
    for stem, X, y in (("train", Xtr, ytr), ("t10k", Xte, yte)):
        with gzip.open(mnist_dir / f"{stem}-images-idx3-ubyte.gz") as f:
            magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
            first = np.frombuffer(f.read(rows * cols), np.uint8).reshape(rows, cols)
        with gzip.open(mnist_dir / f"{stem}-labels-idx1-ubyte.gz") as f:
            magic_l, n_l = struct.unpack(">II", f.read(8))
            labels = np.frombuffer(f.read(), np.uint8)
        assert (magic, magic_l, n, n_l) == (2051, 2049, len(X), len(y))
        np.testing.assert_array_equal(X[0, :, :, 0], first)
        np.testing.assert_array_equal(y, labels)
    assert np.bincount(ytr).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(yte).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_image_folder_sample(real_data):
    sample = real_data / "cifar10-jpeg-sample"
    if not sample.is_dir():
        pytest.skip(f"no cifar10-jpeg-sample under {real_data}")
    found = folder.load_image_folder(sample)
    (Xtr, ytr), (Xte, yte), classes = found.splits["train"], found.splits["test"], found.classes
    assert found.report.skipped_counts() == {"outside class folders": 1}  # SHA256SUMS
    assert Xtr.shape == (1000, 32, 32, 3) and Xte.shape == (500, 32, 32, 3)
    assert np.bincount(ytr).tolist() == [100] * 10 and classes == CIFAR_NAMES


def test_gzip_bomb_in_idx_is_refused(tmp_path, monkeypatch):
    write_idx(tmp_path / "m")
    monkeypatch.setenv("IMGCLF_MAX_INPUT_BYTES", "1000")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: more than 1000 bytes"):
        mnist.load_idx_dir(tmp_path / "m")


def test_oversized_archive_member_is_not_read(tmp_path, monkeypatch):
    write_cifar_python(tmp_path / "src" / "cifar-10-batches-py")
    archive = tar_folder(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "c.tar.gz")
    monkeypatch.setenv("IMGCLF_MAX_MEMBER_BYTES", "1000")
    with pytest.raises(DataError, match=r"member 'cifar-10-batches-py/.*' declares \d+ bytes"):
        cifar.load_cifar_archive(archive)


def test_16_bit_gray_png_keeps_its_range(tmp_path):
    from PIL import Image

    values = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    Image.fromarray(values).save(tmp_path / "deep.png")
    img = folder.load_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(img[..., 0], (values >> 8).astype(np.uint8))
    assert folder.load_image(tmp_path / "deep.png", mode="rgb")[3, 3].tolist() == [234, 234, 234]


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    stored = np.zeros((4, 8, 3), np.uint8)  # stored 8 wide, 4 tall; a camera's portrait photo
    stored[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    root = tmp_path / "d" / "a"
    root.mkdir(parents=True)
    Image.fromarray(stored).save(root / "p.png", exif=exif)
    Image.fromarray(np.zeros((8, 4, 3), np.uint8)).save(root / "q.png")  # already upright, same size
    X = folder.load_image_folder(tmp_path / "d").splits["train"][0]
    assert X.shape == (2, 8, 4, 3)
    # Turned a quarter clockwise: the white left half of the stored pixels is now the top half.
    assert X[0, 0, :, 0].tolist() == [255] * 4 and X[0, 7, :, 0].tolist() == [0] * 4


def test_codecs_encode_is_allowed_only_for_latin1_text():
    payload = pickle.dumps(b"\x00\xff", protocol=2)  # Python 3 writes _codecs.encode('\x00\xff', 'latin1')
    assert cifar.safe_unpickle(payload, "x") == b"\x00\xff"
    import codecs

    class OtherCodec:
        def __reduce__(self):
            return (codecs.encode, (b"abc", "zlib_codec"))

    evil = pickle.dumps(OtherCodec(), protocol=2)
    with pytest.raises(UnsafePickleError, match=r"^x: refusing _codecs.encode with bytes, 'zlib_codec'"):
        cifar.safe_unpickle(evil, "x")
