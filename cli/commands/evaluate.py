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
@click.option("--top", "top", type=click.IntRange(min=1), default=None, metavar="K",
              help="Also report top-K accuracy: the true class among the K best-scored (models with "
                   "probabilities or scores).")
@click.option("--pairs", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many of the most confused (true, predicted) class pairs to list.")
@click.option("--mistakes", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="Draw the most confident mistakes as a labelled picture grid (true>predicted and the "
                   "predicted class's probability or score under each image).")
@click.option("--n-mistakes", type=click.IntRange(min=1), default=32, show_default=True,
              help="How many mistakes --mistakes draws.")
@data_options
@json_option
@quiet_option
@click.pass_context
def evaluate(ctx, model_path, split, plot, top, pairs, mistakes, n_mistakes, data, n_train, n_test, val, size,
             color, as_json, quiet):
    """Score a saved model: accuracy, balanced accuracy, per-class precision, recall and F1, the most
    confused class pairs, the confusion matrix; optionally top-K accuracy and a grid of its most
    confident mistakes.

    The data (raw images, or a pipeline stream on stdin) goes through the model's own preprocessing
    chain; a stream already preprocessed by exactly that chain is used as it is. Works for every model
    kind. Confusion rows are true classes, columns predicted ones. Balanced accuracy is the mean of the
    per-class recalls, so every class counts the same whatever its size.

    \b
    Examples:
      imgclf evaluate -m softmax.npz
      imgclf evaluate -m svm.npz --split val --json
      imgclf evaluate -m softmax.npz --top 3 --pairs 10
      imgclf evaluate -m softmax.npz --mistakes mistakes.png --n-mistakes 48
      imgclf evaluate -m softmax.npz --plot confusion.png
      imgclf evaluate -m net.npz --data ./my-photos --size 32x32 --split val
      imgclf data export cifar10 --n-test 500 | imgclf evaluate -m svm.npz
    """
    import time

    import numpy as np

    from imgclf import storage
    from imgclf.errors import DataError
    from imgclf.evaluation import report, top_k_accuracy

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
    res = report(part.y, bundle.label_indices(pred), list(bundle.classes), pairs=pairs)
    scores = None
    if top is not None or mistakes:
        scores = _class_scores(bundle, features)
        if top is not None:
            res[f"top_{top}_accuracy"] = top_k_accuracy(part.y, scores, min(top, scores.shape[1]))
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
    if mistakes:
        drawn = _draw_mistakes(part, scores, bundle.classes, n_mistakes, mistakes)
        rep.log(f"wrote {drawn} of the most confident mistakes to {mistakes}")
    if as_json:
        extra = {k: v for k, v in res.items() if k.startswith("top_")}
        emit_json({"model": bundle.kind, "accuracy": res["accuracy"], "balanced_accuracy": res["balanced_accuracy"],
                   "macro_f1": res["macro_f1"], **extra, "split": split,
                   "n_train": bundle.extra.get("n_train"), "n_eval": len(part), "seconds": seconds,
                   "classes": list(bundle.classes), "per_class": res["per_class"], "confused": res["confused"],
                   "confusion": cm})
        return
    figures = [f"accuracy {res['accuracy']:.4f}", f"balanced accuracy {res['balanced_accuracy']:.4f}",
               f"macro F1 {res['macro_f1']:.4f}"]
    if top is not None:
        figures.append(f"top-{top} accuracy {res[f'top_{top}_accuracy']:.4f}")
    click.echo(f"{bundle.kind} model {model_path} on {ds.name or 'data'} {split} ({len(part)} examples): "
               + ", ".join(figures) + "\n")
    rows = [[name, _num(v["precision"]), _num(v["accuracy"]), _num(v["f1"]), v["support"]]
            for name, v in res["per_class"].items()]
    emit_table(["class", "precision", "recall", "F1", "support"], rows)
    if res["confused"]:
        click.echo("")
        emit_table(["true", "predicted as", "count", "share of true"],
                   [[c["true"], c["predicted"], c["count"], c["share"]] for c in res["confused"]],
                   title="most confused pairs")
    click.echo("")
    short = [c[:8] for c in bundle.classes]
    click.echo(format_table(["true \\ predicted"] + short,
                            [[name] + [int(v) for v in cm[i]] for i, name in enumerate(bundle.classes)]))


def _class_scores(bundle, features):
    """Probabilities or scores (n, n_classes), column c for class index c, computed in blocks."""
    import numpy as np

    from imgclf.errors import UsageError

    model = bundle.model
    method = next((m for m in ("predict_proba", "decision_function") if hasattr(model, m)), None)
    if method is None:
        raise UsageError(f"a {bundle.kind} model gives neither probabilities nor scores; --top and --mistakes "
                         "need them")
    values = np.concatenate([np.asarray(getattr(model, method)(features[i:i + 1000]), dtype=np.float64)
                             for i in range(0, len(features), 1000)])
    labels = bundle.label_indices(getattr(model, "classes_", np.arange(values.shape[1])))
    # classes the model never saw rank last: the lowest finite value (scores must stay finite)
    scores = np.full((len(values), len(bundle.classes)), np.finfo(np.float64).min)
    scores[:, labels] = values
    return scores


def _draw_mistakes(part, scores, classes, n, path) -> int:
    """The n most confident mistakes as a grid labelled true>predicted and the value; returns how many."""
    import numpy as np

    from imgclf.errors import UsageError
    from imgclf.evaluation import confident_mistakes
    from imgclf.images import grid, save_png

    if part.X.ndim != 4:
        raise UsageError(f"--mistakes draws images, but this data holds features of shape {part.X.shape[1:]}")
    idx = confident_mistakes(part.y, scores, n)
    if not len(idx):
        raise UsageError("there are no mistakes to draw: every example is predicted right")
    pred = scores[idx].argmax(axis=1)
    labels = [f"{classes[t][:6]}>{classes[p][:6]} {scores[i, p]:.2f}" for i, t, p in zip(idx, part.y[idx], pred)]
    images = part.X[idx]
    scale = max(1, 128 // max(images.shape[2], 1))
    save_png(grid(images, ncols=8, rescale="none" if images.dtype == np.uint8 else "tile", scale=min(scale, 8),
                  labels=labels), path)
    return len(idx)


def _num(v):
    import math

    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
