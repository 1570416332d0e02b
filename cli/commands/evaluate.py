"""`imgclf evaluate`: score a saved model (any kind) on a split: accuracy, per class, confusion matrix."""

from __future__ import annotations

import click

from ..console import emit_json, emit_table, format_table, reporter
from ..options import data_options, json_option, load_data, quiet_option


@click.command()
@click.option("-m", "--model", "model_path", required=True, type=click.Path(dir_okay=False), metavar="MODEL.npz",
              help="A model file written by `imgclf train ... -o`, `imgclf knn -o` or `imgclf ensemble -o`.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="Which split of the data to score.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="Also draw the confusion matrix as a heat map with class names.")
@data_options
@json_option
@quiet_option
@click.pass_context
def evaluate(ctx, model_path, split, plot, data, n_train, n_test, val, size, color, as_json, quiet):
    """Score a saved model: accuracy, per-class precision and recall, confusion matrix.

    The data (raw images, or a pipeline stream on stdin) goes through the model's own preprocessing
    chain; a stream already preprocessed by exactly that chain is used as it is. Works for every model
    kind. Confusion rows are true classes, columns predicted ones.

    \b
    Examples:
      imgclf evaluate -m softmax.npz
      imgclf evaluate -m svm.npz --split val --json
      imgclf evaluate -m softmax.npz --plot confusion.png
      imgclf data export cifar10 --n-test 500 | imgclf evaluate -m svm.npz
    """
    import time

    import numpy as np

    from imgclf import storage
    from imgclf.errors import DataError
    from imgclf.evaluation import report

    from ..predicting import model_inputs

    rep = reporter(ctx, quiet)
    t0 = time.perf_counter()
    bundle = storage.load_model(model_path)
    ds = load_data(ctx, data, n_train, n_test, val, size, color, quiet=quiet)
    if list(ds.classes) != list(bundle.classes):
        raise DataError(f"the data's classes {ds.classes} differ from the model's {bundle.classes}")
    part = ds.get(split)
    if not len(part):
        raise DataError(f"the {split} split is empty")
    features = model_inputs(bundle, part.X, ds.transforms, f"the {split} split")
    pred = np.concatenate([np.asarray(bundle.model.predict(features[i:i + 1000]))
                           for i in range(0, len(features), 1000)])
    res = report(part.y, pred.astype(np.int64), list(bundle.classes))
    seconds = time.perf_counter() - t0
    cm = res["confusion"]
    if plot:
        from imgclf.heatmap import heatmap
        from imgclf.images import save_png

        img = heatmap(cm, bundle.classes, bundle.classes, normalize_rows=True,
                      title=f"{bundle.kind} on {ds.name or 'data'} {split}: accuracy {res['accuracy']:.4f}",
                      xlabel="predicted", ylabel="true")
        save_png(img, plot)
        rep.log(f"wrote the confusion heat map to {plot}")
    if as_json:
        emit_json({"model": bundle.kind, "accuracy": res["accuracy"], "split": split,
                   "n_train": bundle.extra.get("n_train"), "n_eval": len(part), "seconds": seconds,
                   "classes": list(bundle.classes), "per_class": res["per_class"], "confusion": cm})
        return
    click.echo(f"{bundle.kind} model {model_path} on {ds.name or 'data'} {split} ({len(part)} examples): "
               f"accuracy {res['accuracy']:.4f}\n")
    rows = [[name, _num(v["precision"]), _num(v["accuracy"]), v["support"]] for name, v in res["per_class"].items()]
    emit_table(["class", "precision", "recall", "support"], rows)
    click.echo("")
    short = [c[:8] for c in bundle.classes]
    click.echo(format_table(["true \\ predicted"] + short,
                            [[name] + [int(v) for v in cm[i]] for i, name in enumerate(bundle.classes)]))


def _num(v):
    import math

    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
