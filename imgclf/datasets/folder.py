"""Image folders as torchvision's ImageFolder and timm read them.

Layouts: `root/<class>/...`, or split sub-roots `root/train/<class>/...`, `root/val/` (or `valid/`) and
`root/test/` in any combination. A class folder is read recursively: images in its sub-folders belong to
the class. Any file Pillow reads is an image. Nothing is dropped silently: hidden entries (dot files,
Thumbs.db), files outside class folders (README, checksums), files that are not images and images that
cannot be decoded are skipped and listed in the `FolderReport` returned beside the arrays.
Photos are turned upright by their EXIF orientation. Files are sorted by their path within each class and
the classes interleaved (the first image of every class, then the second ...), so the same folder gives
the same arrays, and the validation tail and an `--n-train` head hold every class.

Decompression bombs (a small file declaring a huge image) are refused before decoding: an image may
have at most `limits.get("image_pixels")` pixels, and Pillow's own bomb warning and error are turned into DataError.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import limits
from ..errors import DataError, UsageError

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"}
_JUNK = {"thumbs.db", "desktop.ini"}
MODES = ("rgb", "gray")
# Split sub-roots and the split each one fills (timm and Roboflow exports say valid/).
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "test": "test"}
# File name endings that claim to be images: such a file Pillow cannot read is "unreadable", any other
# file it cannot identify is "not an image".
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
                  ".pnm", ".ico", ".jfif")


class UnreadableImage(DataError):
    """One file is not an image or cannot be decoded: folder readers skip it, single-file readers raise."""


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
        raise UnreadableImage(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
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
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refusing a likely decompression bomb ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImage(f"{path}: cannot decode the image ({type(exc).__name__}: {exc})") from None
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


# --------------------------------------------------------------------------------------------------
# what a folder holds: the walk, the report


@dataclass
class Skipped:
    """A file or folder left out, with why: one of SKIP_REASONS, and the reader's message."""

    path: str  # relative to the folder's root
    reason: str
    detail: str = ""


SKIP_REASONS = ("hidden", "outside class folders", "not an image", "unreadable")


@dataclass
class FolderReport:
    """What reading an image folder read and what it skipped, as data (the CLI prints it on stderr)."""

    root: str
    layout: str  # "classes" (root/<class>/...) or "splits" (root/train|val|valid|test/<class>/...)
    sub_roots: dict[str, str] = field(default_factory=dict)  # split -> folder name, for the splits layout
    read: dict[str, int] = field(default_factory=dict)  # split -> images read
    class_counts: dict[str, list[int]] = field(default_factory=dict)  # split -> images per class
    skipped: list[Skipped] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # "HxW" as stored (upright) -> images
    modes: dict[str, int] = field(default_factory=dict)  # Pillow mode as stored -> images

    def skipped_counts(self) -> dict[str, int]:
        counts = Counter(s.reason for s in self.skipped)
        return {r: counts[r] for r in SKIP_REASONS if counts[r]}

    def to_dict(self) -> dict:
        return {"root": self.root, "layout": self.layout, "sub_roots": dict(self.sub_roots),
                "read": dict(self.read), "class_counts": dict(self.class_counts),
                "skipped_counts": self.skipped_counts(),
                "skipped": [{"path": s.path, "reason": s.reason, "detail": s.detail} for s in self.skipped],
                "sizes": dict(self.sizes), "modes": dict(self.modes)}


@dataclass
class ImageFolder:
    """The images of a folder: per split (X uint8 (N, H, W, C), y int64), the relative path of every row."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    classes: list[str]
    files: dict[str, list[str]]
    report: FolderReport


class _Walk:
    """Collects files under a root recursively (sorted, hidden entries skipped) and what it skipped."""

    def __init__(self, root: Path):
        self.root = root
        self.skipped: list[Skipped] = []
        self._seen: set[Path] = set()  # resolved folders, so a symlink loop is walked once
        self._listed: dict[Path, tuple[list[Path], list[Path]]] = {}  # a folder listed twice is recorded once

    def rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()

    def skip(self, p: Path, reason: str, detail: str = "") -> None:
        self.skipped.append(Skipped(self.rel(p), reason, detail))

    def entries(self, d: Path) -> tuple[list[Path], list[Path]]:
        """(visible sub-folders, visible files) of one folder, by name; hidden ones are recorded."""
        if d in self._listed:
            return self._listed[d]
        try:
            children = sorted(d.iterdir(), key=lambda p: p.name)
        except OSError as exc:
            self.skip(d, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")
            return [], []
        dirs, files = [], []
        for p in children:
            if not _visible(p):
                self.skip(p, "hidden")
            elif p.is_dir():
                dirs.append(p)
            elif p.is_file():
                files.append(p)
            else:  # a broken link, a socket, a device: nothing to read
                self.skip(p, "unreadable", "not a regular file or folder")
        self._listed[d] = dirs, files
        return dirs, files

    def files(self, d: Path) -> list[Path]:
        """Every visible file under d, in path order (a folder's entries sorted by name, recursively)."""
        real = d.resolve()
        if real in self._seen:
            self.skip(d, "unreadable", "a folder already read (a link to it, or a loop)")
            return []
        self._seen.add(real)
        dirs, files = self.entries(d)
        out = []
        for p in sorted(dirs + files, key=lambda p: p.name):
            out.extend(self.files(p) if p.is_dir() else [p])
        return out

    def images(self, paths: list[Path]) -> list[tuple[Path, str, tuple[int, int]]]:
        """(path, mode, upright (H, W)) of the files Pillow can open; the others are skipped with why."""
        out = []
        for path in paths:
            try:
                with _open(path) as img:
                    out.append((path, img.mode, _upright_size(img)))
            except UnreadableImage as exc:
                why = _why(path, exc)
                self.skip(path, why, "" if why == "not an image" else _detail(path, exc))
        return out


def _why(path: Path, exc: Exception) -> str:
    """'not an image' for a file that never claimed to be one, else 'unreadable'."""
    unidentified = "cannot identify image file" in str(exc)
    return "not an image" if unidentified and path.suffix.lower() not in IMAGE_SUFFIXES else "unreadable"


def _detail(path: Path, exc: Exception) -> str:
    """The reader's message without the path the report already gives."""
    return str(exc).removeprefix(f"{path}: ").replace(f" '{path}'", "")


def _layout(walk: _Walk) -> tuple[str, dict[str, Path]]:
    """('classes', {'train': root}) or ('splits', {split: sub-root}) from the root's folders."""
    root = walk.root
    dirs, files = walk.entries(root)
    subs = [d for d in dirs if d.name in SPLIT_DIRS]
    if not subs:
        return "classes", {"train": root}
    for f in files:
        walk.skip(f, "outside class folders")
    others = [d.name for d in dirs if d.name not in SPLIT_DIRS]
    if others:
        raise DataError(f"{root}: mixes split folders ({', '.join(d.name for d in subs)}) with other folders "
                        f"({', '.join(others)}); put class folders either directly in the root or inside "
                        "train/, val/ (or valid/) and test/")
    roots: dict[str, Path] = {}
    for d in subs:
        split = SPLIT_DIRS[d.name]
        if split in roots:
            raise DataError(f"{root}: both {roots[split].name}/ and {d.name}/ hold the validation split; keep one")
        roots[split] = d
    return "splits", {k: roots[k] for k in ("train", "val", "test") if k in roots}


def _class_files(walk: _Walk, split_root: Path) -> dict[str, list[tuple[Path, str, tuple[int, int]]]]:
    """class name -> its readable images (recursive); files directly in the split root are skipped."""
    dirs, files = walk.entries(split_root)
    for f in files:
        walk.skip(f, "outside class folders")
    return {d.name: walk.images(walk.files(d)) for d in dirs}


def _interleave(per_class: list[tuple[int, list]]) -> tuple[list, np.ndarray]:
    """The first item of every class, then the second ...: the validation split is the tail of the
    training set and --n-train keeps its head, so both stay balanced."""
    order = sorted((k, label) for label, items in per_class for k in range(len(items)))
    by_label = dict(per_class)
    return [by_label[label][k] for k, label in order], np.asarray([label for _, label in order], dtype=np.int64)


def scan_image_folder(path) -> tuple[list[str], dict[str, tuple[list, np.ndarray]], FolderReport]:
    """(classes, {split: ([(path, mode, (H, W)), ...], labels)}, report) from file headers only.

    Classes come from train/ (or the root); val/ and test/ may use a subset of them. Without train/,
    the classes are the sorted union of the other splits' class folders.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    walk = _Walk(root)
    layout, roots = _layout(walk)
    found = {split: _class_files(walk, r) for split, r in roots.items()}
    if "train" in found:
        classes = sorted(found["train"])
    else:
        classes = sorted(set().union(*(f.keys() for f in found.values())))
    if not classes:
        where = root if layout == "classes" else ", ".join(f"{r.name}/" for r in roots.values())
        raise DataError(f"{where}: no class folders (expected root/<class>/<image> or root/train/<class>/<image>)")
    index = {c: i for i, c in enumerate(classes)}
    listing = {}
    for split, per_class in found.items():
        for name, items in per_class.items():
            if name not in index:
                raise DataError(f"{roots[split] / name}: class {name!r} is not among the training classes")
            # An empty training class would still take a label index and could never be predicted.
            if split == "train" and not items:
                skipped = sum(s.path.startswith(walk.rel(roots[split] / name) + "/") for s in walk.skipped)
                raise DataError(f"{roots[split] / name}: the class folder holds no images"
                                + (f" ({skipped} files skipped as unreadable or not images)" if skipped else ""))
        listing[split] = _interleave([(index[name], items) for name, items in per_class.items()])
    report = FolderReport(str(root), layout, {s: r.name for s, r in roots.items()} if layout == "splits" else {},
                          skipped=walk.skipped)
    everything = [item for items, _ in listing.values() for item in items]
    report.sizes = dict(Counter(f"{h}x{w}" for _, _, (h, w) in everything).most_common())
    report.modes = dict(Counter(m for _, m, _ in everything).most_common())
    return classes, listing, report


def _read(walk: _Walk, items: list, labels: np.ndarray, size, mode) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Decode the listed images; one that fails to decode is skipped (recorded), not fatal."""
    channels = 1 if mode == "gray" else 3
    X = np.empty((len(items),) + tuple(size) + (channels,), dtype=np.uint8)
    keep = np.ones(len(items), dtype=bool)
    for i, (path, _, _) in enumerate(items):
        try:
            X[i] = _decode(path, size, mode)
        except UnreadableImage as exc:
            walk.skip(path, "unreadable", _detail(path, exc))
            keep[i] = False
    if keep.all():
        return X, labels, [p for p, _, _ in items]
    return X[keep], labels[keep], [p for (p, _, _), k in zip(items, keep) if k]


def common_size(report: FolderReport) -> tuple[int, int]:
    """The most frequent (H, W) among the folder's images (ties: the first met in path order)."""
    h, w = next(iter(report.sizes)).split("x")
    return int(h), int(w)


def load_image_folder(path, *, size: tuple[int, int] | None = None, mode: str | None = None) -> ImageFolder:
    """Every split of an image folder as arrays, with the relative path of each row and the report.

    `size` (H, W) resizes every image; without it all images must share one size. `mode` 'rgb' or
    'gray' converts every image; None picks the kind most images have (ties go to rgb).
    """
    _check_args(size, mode)
    classes, listing, report = scan_image_folder(path)
    items = [item for split_items, _ in listing.values() for item in split_items]
    if not items:
        raise DataError(f"{report.root}: no readable images")
    if mode is None:
        grays = sum(_kind(m) == "gray" for _, m, _ in items)
        mode = "gray" if grays > len(items) / 2 else "rgb"
    if size is None:
        size = items[0][2]
        odd = next((item for item in items if item[2] != size), None)
        if odd is not None:
            (h0, w0), (h1, w1) = size, odd[2]
            raise DataError(f"size must be given: the images differ ({items[0][0]} is {h0}x{w0}, {odd[0]} is "
                            f"{h1}x{w1}; {len(report.sizes)} sizes in all); pass HxW to resize them all", param="size")
    walk = _Walk(Path(report.root))
    splits, files = {}, {}
    for split, (split_items, labels) in listing.items():
        X, y, paths = _read(walk, split_items, labels, size, mode)
        splits[split] = (X, y)
        files[split] = [walk.rel(p) for p in paths]
        report.read[split] = len(y)
        report.class_counts[split] = np.bincount(y, minlength=len(classes)).tolist()
    report.skipped.extend(walk.skipped)
    return ImageFolder(splits, classes, files, report)


def list_images(path) -> tuple[list[Path], list[Skipped]]:
    """Every image file under a folder (recursive, in path order) and what was skipped, for predicting."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    walk = _Walk(root)
    found = [p for p, _, _ in walk.images(walk.files(root))]
    return found, walk.skipped
