"""`imgclf predict`: label image files or pipeline streams with a saved model of any kind."""

from __future__ import annotations

import click

from ..console import reporter
from ..options import quiet_option


def same_chain(a: list, b: list) -> bool:
    """True when two fitted chains are the same steps with the same learned arrays."""
    import numpy as np

    if len(a) != len(b):
        return False
    for s, t in zip(a, b):
        (pa, aa), (pb, ab) = s.to_arrays(), t.to_arrays()
        if s.kind != t.kind or pa != pb or aa.keys() != ab.keys():
            return False
        if not all(np.array_equal(aa[k], ab[k]) for k in aa):
            return False
    return True


def model_inputs(bundle, X, chain: list, source: str):
    """What the bundle's model takes, from X that already went through `chain` (a stream's, maybe empty).

    Raw images go through the model's preprocessing chain; a stream preprocessed by exactly that chain is
    used as it is; anything else would be preprocessed twice or differently, and is refused.
    """
    from imgclf.errors import DataError

    if chain:
        if same_chain(chain, bundle.chain):
            return X
        raise DataError(f"{source} was preprocessed with {[t.kind for t in chain]}, but the model expects raw "
                        f"images to go through its own chain {[t.kind for t in bundle.chain]}; give it raw data")
    if tuple(X.shape[1:]) != tuple(bundle.input_shape):
        raise DataError(f"{source}: images of shape {tuple(X.shape[1:])}, but the model takes "
                        f"{tuple(bundle.input_shape)} (resize image folders with --size)")
    return bundle.features(X)


def class_name(bundle, label) -> str:
    """A model label to the class name it stands for (labels are class indices for imgclf datasets)."""
    import numpy as np

    if isinstance(label, (int, np.integer)) and 0 <= int(label) < len(bundle.classes):
        return bundle.classes[int(label)]
    return str(label)


def scored(bundle, features, top: int):
    """Per row: [(label, value), ...] best first, and what the value is ('probability', 'score' or None)."""
    import numpy as np

    model = bundle.model
    for method, what in (("predict_proba", "probability"), ("decision_function", "score")):
        if hasattr(model, method):
            values = np.asarray(getattr(model, method)(features), dtype=np.float64)
            if values.ndim == 1:  # scikit-learn's binary decision_function: s_1 - s_0, shown as -d, +d
                values = np.column_stack([-values, values])
            labels = np.asarray(getattr(model, "classes_", np.arange(values.shape[1])))
            order = np.argsort(-values, axis=1, kind="stable")[:, :top]
            return [[(labels[j], float(values[i, j])) for j in row] for i, row in enumerate(order)], what
    if top > 1:
        from imgclf.errors import UsageError

        raise UsageError(f"a {bundle.kind} model gives neither probabilities nor scores; --top needs them")
    return [[(label, None)] for label in model.predict(features)], None


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

    from imgclf.datasets.folder import UnreadableImage, load_image
    from imgclf.errors import DataError
    from imgclf.io import pipeline

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
            ds = pipeline.read(item)
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
              help="A model file written by `imgclf train ... -o` or `imgclf knn --save`.")
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

    from imgclf.io import modelfile

    rep = reporter(ctx, quiet)
    bundle = modelfile.load(model_path)
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
