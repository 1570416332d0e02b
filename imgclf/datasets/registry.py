"""From `--data NAME|PATH|-` to a Dataset: name lookup on the search path, layout detection, splits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..errors import DataError, UsageError
from .base import SPLITS, Dataset, Split, check_images
from .splits import carve_val, make_splits, subsample


@dataclass(frozen=True)
class Known:
    name: str
    candidates: tuple[str, ...]  # entries looked for in each data directory, in order
    how_to_get: str


KNOWN = {
    "cifar10": Known(
        "cifar10",
        ("cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar-10-batches-bin", "cifar-10-binary.tar.gz"),
        "imgclf data get cifar10",
    ),
    "mnist": Known("mnist", ("mnist",), "imgclf data get mnist"),
    "fashion-mnist": Known("fashion-mnist", ("fashion-mnist",), "imgclf data get fashion-mnist"),
    "shapes": Known("shapes", (), "built in: nothing to get"),
}


def find(name: str) -> Path | None:
    """The first place on the search path holding the named dataset, or None."""
    known = KNOWN[name]
    for d in config.data_search_path():
        for entry in known.candidates:
            p = d / entry
            if p.exists():
                return p
    return None


def detect_layout(path: Path) -> str:
    """One of: pipeline, cifar-python, cifar-binary, cifar-archive, idx, folder."""
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".npz"):
            return "pipeline"
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            return "cifar-archive"
        raise DataError(f"{path}: not a dataset (expected a folder, a .tar.gz archive or a pipeline .npz)")
    if not path.is_dir():
        raise DataError(f"{path}: no such file or directory")
    if (path / "data_batch_1").is_file():
        return "cifar-python"
    if (path / "data_batch_1.bin").is_file():
        return "cifar-binary"
    for sub in ("cifar-10-batches-py", "cifar-10-batches-bin"):
        if (path / sub).is_dir():
            return detect_layout(path / sub)
    if any("idx3-ubyte" in p.name for p in path.iterdir()):
        return "idx"
    if any(p.is_dir() for p in path.iterdir()):
        return "folder"
    raise DataError(f"{path}: no dataset layout recognised (CIFAR batches, idx files or class folders)")


def read_raw(path: Path, *, size=None, mode=None):
    """(X_train, y_train, X_test, y_test, classes) from CIFAR or idx files on disk; X_test may be None."""
    layout = detect_layout(path)
    if size is not None or mode is not None:
        raise UsageError(f"size and mode apply to image folders only, not to {layout} data ({path})", param="size")
    if layout == "cifar-python":
        from .cifar import load_cifar_python
        return load_cifar_python(path)
    if layout == "cifar-binary":
        from .cifar import load_cifar_binary
        return load_cifar_binary(path)
    if layout == "cifar-archive":
        from .cifar import load_cifar_archive
        return load_cifar_archive(path)
    if layout == "idx":
        from .mnist import load_idx_dir
        return load_idx_dir(path)
    if layout == "folder":  # its splits (val/ too) and report need more than this tuple: see `load`
        raise DataError(f"{path}: an image folder, not CIFAR batches or idx files")
    raise DataError(f"{path}: a pipeline file is not a raw dataset")


def resolve(spec: str) -> tuple[str, Path | None]:
    """Map `--data` to (kind, path): kind is a known name, 'path' or 'stdin'."""
    if spec == "-":
        return "stdin", None
    if spec in KNOWN:
        if spec == "shapes":
            return "shapes", None
        found = find(spec)
        if found is None:
            looked = ", ".join(str(d) for d in config.data_search_path())
            raise DataError(
                f"dataset {spec!r} not found (looked in: {looked}); get it with "
                f"`{KNOWN[spec].how_to_get}` or point IMGCLF_DATA at a folder holding it"
            )
        return spec, found
    path = Path(spec)
    if not path.exists():
        raise DataError(
            f"{spec}: no such file or directory, and not a dataset name "
            f"(names: {', '.join(KNOWN)})"
        )
    return "path", path


def default_name() -> str:
    """`cifar10` when it can be found, else the built-in `shapes`."""
    return "cifar10" if find("cifar10") is not None else "shapes"


def load(
    spec: str | None = None,
    *,
    val: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    size: tuple[int, int] | None = None,
    mode: str | None = None,
) -> Dataset:
    """Load a dataset by name, path or `-` and cut its splits.

    For raw datasets, `val` rows come off the end of the training set (default
    config.DEFAULT_VAL; 0 for none). For pipeline streams the stored splits are kept and `val`
    only carves a val split when the stream has none.
    """
    spec = spec or default_name()
    kind, path = resolve(spec)
    is_stream = kind == "stdin" or (kind == "path" and path.suffix.lower() == ".npz" and path.is_file())
    if (is_stream or kind == "shapes") and (size is not None or mode is not None):
        raise UsageError(f"size and mode apply to image folders only, not to {spec!r}", param="size")
    if is_stream:
        from ..storage import read_stream

        ds = read_stream("-" if kind == "stdin" else path)
        if val and not ds.has("val"):
            ds = carve_val(ds, val)
        ds.splits = subsample(ds.splits, n_train=n_train, n_test=n_test)
        return ds
    if kind == "path" and detect_layout(path) == "folder":
        return _load_folder(path, val=val, n_train=n_train, n_test=n_test, size=size, mode=mode)
    if kind == "shapes":
        from . import shapes

        Xtr, ytr, Xte, yte, classes = shapes.load()
        name = "shapes"
    else:
        Xtr, ytr, Xte, yte, classes = read_raw(path, size=size, mode=mode)
        name = spec if kind != "path" else os.path.basename(os.path.normpath(spec))
    check_images(Xtr, ytr, len(classes), name)
    test = None
    if Xte is not None:
        check_images(Xte, yte, len(classes), name)
        test = Split(Xte, yte)
    if val is None:
        # CS231n's 49000/1000 on CIFAR-10; small datasets keep four fifths for training.
        val = min(config.DEFAULT_VAL, len(ytr) // 5)
    splits = make_splits(
        Split(Xtr, ytr), test,
        val=val,
        n_train=n_train, n_test=n_test,
    )
    return Dataset(splits, list(classes), tuple(Xtr.shape[1:]), [], name)


def _load_folder(path: Path, *, val, n_train, n_test, size, mode) -> Dataset:
    """An image folder's splits: a val/ (or valid/) folder replaces the validation tail of train."""
    from .folder import load_image_folder

    found = load_image_folder(path, size=size, mode=mode)
    name = os.path.basename(os.path.normpath(path))
    # An empty sub-root (say val/ made but not filled) is no split; the report still shows it read 0.
    parts = {k: Split(X, y) for k, (X, y) in found.splits.items() if len(y)}
    if not parts:
        raise DataError(f"{path}: no image could be read ({len(found.report.skipped)} files skipped)")
    for part in parts.values():
        check_images(part.X, part.y, len(found.classes), name)
    train = parts.get("train")
    if "val" in parts or train is None:
        val = 0
    elif val is None:
        val = min(config.DEFAULT_VAL, len(train) // 5)
    splits = make_splits(train, parts.get("test"), val=val, n_train=n_train, n_test=n_test)
    if "val" in parts:
        splits["val"] = parts["val"]
        splits = {k: splits[k] for k in SPLITS if k in splits}
    image_shape = next(iter(parts.values())).X.shape[1:]
    return Dataset(splits, list(found.classes), tuple(image_shape), [], name, report=found.report)
