"""`imgclf predict`: label image files or pipeline streams with a saved model of any kind."""

from __future__ import annotations

import click

from ..console import reporter
from ..options import quiet_option
from ..predicting import class_name, model_inputs, scored

BATCH = 512  # images decoded and scored at a time: a folder of photos never sits in memory whole


def _image_items(item: str, several: bool, rep):
    """Yield (name, path) for one image input: a file as given, a folder walked (recursive, path order).

    A file found in a folder is named by its path relative to that folder (prefixed by the folder
    as given when there are several inputs); what the walk skips is said on stderr.
    """
    import os

    from imgclf.datasets.folder import list_images

    if not os.path.isdir(item):
        yield item, item
        return
    found, skipped = list_images(item)
    shown = ", ".join(f"{s.path} ({s.reason})" for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
    rep.log(f"{item}: {len(found)} images" + (f"; skipped {len(skipped)}: {shown}" if skipped else ""))
    for path in found:
        rel = path.relative_to(item).as_posix()
        yield (f"{item.rstrip('/')}/{rel}" if several else rel), path


def _read_inputs(bundle, inputs, split, rep):
    """Yield (names, features) per input group: consecutive image files are batched together."""
    import numpy as np

    from imgclf import storage
    from imgclf.datasets.folder import UnreadableImage, load_image
    from imgclf.errors import DataError

    h, w, c = bundle.input_shape if len(bundle.input_shape) == 3 else (None, None, None)
    images, names = [], []

    def flush():
        if images:
            X = np.stack(images)
            out = (list(names), model_inputs(bundle, X, [], "the images"))
            images.clear()
            names.clear()
            return out
        return None

    def image_inputs(item):
        for name, path in _image_items(item, len(inputs) > 1, rep):
            if h is None:
                raise DataError(f"{path}: this model takes features of shape {bundle.input_shape}, not images")
            try:
                images.append(load_image(path, size=(h, w), mode="gray" if c == 1 else "rgb"))
            except UnreadableImage as exc:
                if path == item:  # named on the command line: an error, not a skip
                    raise
                rep.log(f"skipped {name} (unreadable: {exc})")
                continue
            names.append(name)
            if len(images) == BATCH:
                yield flush()

    for item in inputs:
        if item == "-" or item.lower().endswith(".npz"):
            batch = flush()
            if batch:
                yield batch
            ds = storage.read_stream(item)
            key = split or ("test" if ds.has("test") else next(iter(ds.splits)))
            part = ds.get(key)
            label = "<stdin>" if item == "-" else item
            rep.log(f"{label}: {len(part)} rows of the {key} split")
            yield [f"{label}:{key}[{i}]" for i in range(len(part))], model_inputs(bundle, part.X, ds.transforms, label)
        else:
            yield from image_inputs(item)
    batch = flush()
    if batch:
        yield batch


@click.command()
@click.option("-m", "--model", "model_path", required=True, type=click.Path(dir_okay=False), metavar="MODEL.npz",
              help="A model file written by `imgclf train ... -o`, `imgclf knn -o` or `imgclf ensemble -o`.")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--top", type=click.IntRange(min=1), default=1, show_default=True,
              help="Show the N most likely classes per input.")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "jsonl"]), default="text", show_default=True,
              help="text: aligned columns; csv: with a header; jsonl: one JSON object per line.")
@click.option("--split", default=None, type=click.Choice(["train", "val", "test"]),
              help="Which split of a pipeline .npz to label (default: test if present, else the first).")
@quiet_option
@click.pass_context
def predict(ctx, model_path, inputs, top, fmt, split, quiet):
    """Label images with a saved model: one line per input.

    INPUT is an image file (PNG, JPEG, ...: converted to the model's colour mode and resized to its
    input size), a folder of images (read recursively in path order; hidden files, files that are not
    images and unreadable images are skipped and listed on stderr), a pipeline .npz, or - for a stream
    on stdin. Raw images go through the model's own preprocessing chain (e.g. its training mean), so
    give raw images, not preprocessed ones.

    Each line holds the input, the predicted class name and, for models with probabilities (softmax,
    nets), its probability; models with scores only (SVM) show the score. --top N lists the N best
    classes. The input is the path as given; an image found in a folder is named by its path relative
    to the folder (FOLDER/path when there are several inputs); a stream row is file:split[row].

    \b
    Examples:
      imgclf predict -m softmax.npz cat.jpg dog.png
      imgclf predict -m softmax.npz photos/*.jpg --top 3 --format csv
      imgclf predict -m softmax.npz ~/photos --format csv > labels.csv
      imgclf data export cifar10 --n-test 20 | imgclf predict -m svm.npz - --format jsonl
    """
    import json

    from imgclf import storage

    rep = reporter(ctx, quiet)
    bundle = storage.load_model(model_path)
    k = min(top, len(bundle.classes))
    header_done = False
    for names, features in _read_inputs(bundle, inputs, split, rep):
        rows, what = scored(bundle, features, k)
        for name, ranked in zip(names, rows):
            if fmt == "jsonl":
                best = ranked[0]
                obj = {"input": name, "label": class_name(bundle, best[0])}
                if what:
                    obj[what] = best[1]
                    obj["top"] = [{"label": class_name(bundle, lab), what: v} for lab, v in ranked]
                click.echo(json.dumps(obj))
            elif fmt == "csv":
                if not header_done:
                    cols = ["input"] + [f"{c}{i + 1}" if k > 1 else c for i in range(k)
                                        for c in (["label", what] if what else ["label"])]
                    click.echo(",".join(cols))
                    header_done = True
                cells = [name] + [v for lab, val in ranked
                                  for v in ([class_name(bundle, lab)] + ([f"{val:.6g}"] if what else []))]
                click.echo(",".join(_csv_cell(c) for c in cells))
            else:
                parts = [f"{class_name(bundle, lab)} {val:.4f}" if what else class_name(bundle, lab)
                         for lab, val in ranked]
                click.echo("  ".join([name] + parts))


def _csv_cell(value: str) -> str:
    if any(ch in value for ch in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value
