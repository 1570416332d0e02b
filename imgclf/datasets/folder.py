"""Image folders: `root/<class>/<image>`, or `root/train/<class>/...` and `root/test/<class>/...`.

Any file Pillow reads is an image. Files directly in the root (README, checksums) are ignored, hidden
files too; any other file in a class folder that is not a readable image is an error naming the file.
Photos are turned upright by their EXIF orientation. Files are sorted by name within each class and
the classes interleaved (the first image of every class, then the second ...), so the same folder gives
the same arrays, and the validation tail and an `--n-train` head hold every class.

Decompression bombs (a small file declaring a huge image) are refused before decoding: an image may
have at most `limits.get("image_pixels")` pixels, and Pillow's own bomb warning and error are turned into DataError.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import DataError, UsageError

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"}
_JUNK = {"thumbs.db", "desktop.ini"}
MODES = ("rgb", "gray")


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name.lower() not in _JUNK


def _open(path: Path):
    """Open an image lazily (header only), refusing unreadable files and decompression bombs."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refusing a likely decompression bomb ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    w, h = img.size
    if w * h > limits.get("image_pixels"):
        img.close()
        raise DataError(f"{path}: {w}x{h} is {w * h} pixels, over the limit of {limits.get('image_pixels')} "
                        f"(refusing a likely decompression bomb; {limits.hint('image_pixels')})")
    return img


_EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def _orientation(img) -> int:
    """The EXIF orientation (1 = upright); unreadable metadata counts as upright, the pixels decide."""
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except (OSError, ValueError, SyntaxError, TypeError):
        return 1


def _upright_size(img) -> tuple[int, int]:
    """(H, W) as displayed: cameras store portrait photos sideways with an EXIF orientation tag."""
    w, h = img.size
    return (w, h) if _orientation(img) in _QUARTER_TURNS else (h, w)


def _kind(mode: str) -> str:
    return "gray" if mode in _GRAY_MODES else "rgb"


def _decode(path: Path, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """One image as uint8 (H, W, C), upright, C = 1 for gray, 3 for rgb, resized to size=(H, W) if given."""
    from PIL import Image, ImageOps

    img = _open(path)
    try:
        with img:
            if size is not None and img.format == "JPEG":
                # Let libjpeg decode at a reduced scale (never below the target size): much faster.
                # Drafting keeps the aspect, so asking for the larger side both ways is safe when rotated.
                side = max(size)
                img.draft("L" if mode == "gray" else "RGB", (side, side))
            if _orientation(img) != 1:
                img = ImageOps.exif_transpose(img)
            if img.mode.startswith("I;16"):
                # Pillow's convert clips 16-bit values at 255; keep the top 8 bits instead.
                img = Image.fromarray((np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8), "L")
            img = img.convert("L" if mode == "gray" else "RGB")
            if size is not None and img.size != (size[1], size[0]):
                # Pillow's bilinear resize widens its kernel when shrinking, so it antialiases.
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode the image ({type(exc).__name__}: {exc})") from None
    return arr[..., None] if arr.ndim == 2 else arr


def load_image(path, *, size: tuple[int, int] | None = None, mode: str | None = None) -> np.ndarray:
    """One image file as uint8 (H, W, C); mode 'rgb' | 'gray' | None (as stored)."""
    path = Path(path)
    _check_args(size, mode)
    if mode is None:
        with _open(path) as img:
            mode = _kind(img.mode)
    return _decode(path, size, mode)


def _check_args(size, mode) -> None:
    if mode is not None and mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)} or None, got {mode!r}")
    if size is not None:
        if len(size) != 2 or any(not isinstance(v, (int, np.integer)) or v < 1 for v in size):
            raise UsageError(f"size must be (height, width) with positive integers, got {size!r}")


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and _visible(p)), key=lambda p: p.name)


def _files(class_dir: Path) -> list[Path]:
    return sorted((p for p in class_dir.iterdir() if p.is_file() and _visible(p)), key=lambda p: p.name)


def _roots(root: Path) -> tuple[Path, Path | None]:
    """(train root, test root or None): `train/` and `test/` sub-roots when present."""
    if not (root / "train").is_dir():
        return root, None
    others = [p.name for p in _class_dirs(root) if p.name not in ("train", "test")]
    if others:
        raise DataError(f"{root}: mixes train/ and test/ sub-roots with class folders ({', '.join(others)})")
    test = root / "test"
    return root / "train", test if test.is_dir() else None


def _listing(root: Path, classes: list[str] | None) -> tuple[list[str], list[Path], np.ndarray]:
    """(classes, files, labels) of one root; with `classes` given, the root must use only those."""
    dirs = _class_dirs(root)
    defining = classes is None
    if defining:
        classes = [d.name for d in dirs]
        if not classes:
            raise DataError(f"{root}: no class folders (expected root/<class>/<image>)")
    index = {c: i for i, c in enumerate(classes)}
    per_class = []
    for d in dirs:
        if d.name not in index:
            raise DataError(f"{d}: class {d.name!r} is not among the training classes")
        found = _files(d)
        # An empty training class would still take a label index and could never be predicted.
        if defining and not found:
            raise DataError(f"{d}: the class folder holds no images")
        per_class.append((index[d.name], found))
    # Interleave the classes (the first image of each class, then the second ...): the validation
    # split is the tail of the training set and --n-train keeps its head, so both stay balanced.
    order = sorted((k, label) for label, found in per_class for k in range(len(found)))
    by_label = dict(per_class)
    files = [by_label[label][k] for k, label in order]
    labels = np.asarray([label for _, label in order], dtype=np.int64)
    return classes, files, labels


def _survey(files: list[Path]) -> tuple[list[str], list[tuple[int, int]]]:
    """The colour kind and (H, W) of every file, from the headers only."""
    kinds, sizes = [], []
    for path in files:
        with _open(path) as img:
            kinds.append(_kind(img.mode))
            sizes.append(_upright_size(img))
    return kinds, sizes


def _read(files: list[Path], size, mode) -> np.ndarray:
    channels = 1 if mode == "gray" else 3
    X = np.empty((len(files),) + tuple(size) + (channels,), dtype=np.uint8)
    for i, path in enumerate(files):
        X[i] = _decode(path, size, mode)
    return X


def load_image_folder(path, *, size: tuple[int, int] | None = None, mode: str | None = None) -> tuple:
    """(X_train, y_train, X_test, y_test, classes) from an image folder.

    `size` (H, W) resizes every image; without it all images must share one size. `mode` 'rgb' or
    'gray' converts every image; None picks the kind most images have (ties go to rgb).
    """
    root = Path(path)
    _check_args(size, mode)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    train_root, test_root = _roots(root)
    classes, train_files, ytr = _listing(train_root, None)
    test_files, yte = [], None
    if test_root is not None:
        _, test_files, yte = _listing(test_root, classes)
    kinds, sizes = _survey(train_files + test_files)
    if mode is None:
        mode = "gray" if kinds.count("gray") > len(kinds) / 2 else "rgb"
    if size is None:
        all_files = train_files + test_files
        odd = next((i for i, s in enumerate(sizes) if s != sizes[0]), None)
        if odd is not None:
            (h0, w0), (h1, w1) = sizes[0], sizes[odd]
            raise DataError(f"images differ in size ({all_files[0]} is {h0}x{w0}, {all_files[odd]} is {h1}x{w1}); "
                            "pass a size (--size HxW) to resize them all")
        size = sizes[0]
    Xtr = _read(train_files, size, mode)
    Xte = _read(test_files, size, mode) if test_root is not None else None
    return Xtr, ytr, Xte, yte, classes
