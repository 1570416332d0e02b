"""`imgclf knn`: k-nearest-neighbour classification, with cross-validation over k."""

from __future__ import annotations

import click
from imgclf.config import METRICS

from ..console import emit_json, emit_table, reporter
from ..options import capped_workers, data_options, json_option, load_data, quiet_option

DEFAULT_K_VALUES = "1,3,5,8,10,12,15,20,50,100"


def _k_values(ctx, param, value):
    try:
        ks = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers such as 1,3,5, got {value!r}") from None
    if not ks:
        raise click.BadParameter("give at least one k")
    return ks


@click.command()
@click.option("--k", "k", type=int, default=5, show_default=True, help="Number of neighbours that vote.")
@click.option("--metric", type=click.Choice(METRICS, case_sensitive=False), default="l2", show_default=True,
              help="Distance: l2 (Euclidean) or l1 (Manhattan).")
@click.option("--cv", "folds", type=click.IntRange(min=2), default=None, metavar="N",
              help="Cross-validate k with N consecutive folds of the training split, then evaluate the best k.")
@click.option("--k-values", callback=_k_values, default=DEFAULT_K_VALUES, show_default=True,
              help="The k tried by --cv.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="With --cv: draw fold accuracies and mean +- std per k into this PNG.")
@click.option("--predictions", default=None, metavar="FILE|-",
              help="Write one predicted label (class index) per line; - for stdout (the summary then goes to stderr).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, metavar="MODEL.npz",
              help="Save the model (training set + preprocessing chain) here, for predict and evaluate.")
# The option's name before it became -o/--output like every other command's: still accepted, not shown.
@click.option("--save", "save_alias", type=click.Path(dir_okay=False), default=None, hidden=True)
@click.option("--preprocess", "preprocess_spec", default=None, metavar="CHAIN",
              help="Fit a preprocessing chain on the training split first, e.g. mean,pca:144.")
@click.option("--memory", "memory_mb", type=click.IntRange(min=16), default=None, metavar="MB",
              help="Working-memory budget for the distance blocks (default 1024).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT|local:N",
              help="With --cv: run the folds on a Dask cluster (or N local Dask workers); the training data is "
                   "sent to every worker once. Needs pip install 'imgclf[dask]'.")
@data_options
@json_option
@quiet_option
@click.pass_context
def knn(ctx, k, metric, folds, k_values, plot, predictions, output, save_alias, preprocess_spec, memory_mb,
        scheduler, data, n_train, n_test, val, size, color, as_json, quiet):
    """Classify with k-nearest neighbours (exact L2 or L1 distance) and report accuracy.

    Fits on the training split (train+val, unless --val N keeps N images apart: then they are the
    evaluation split) and scores the test split; data with a val split but no test split (an image
    folder with train/ and val/) is scored on val. Neighbours are ordered by distance, then by
    training index; ties in the vote go to the smallest label. Raw uint8 images give exact integer
    distances; preprocessed float data (a pipeline on stdin, or --preprocess) works too.

    With --cv N, N-fold cross-validation over --k-values picks k (highest mean accuracy, ties to the
    smaller k); every k is scored from one selection of the kmax nearest per fold.

    \b
    Examples:
      imgclf knn --k 1 --metric l1
      imgclf knn --n-train 5000 --n-test 500 --k 5 --json
      imgclf knn --n-train 5000 --n-test 500 --cv 5 --plot cv.png
      imgclf knn --cv 5 --scheduler tcp://10.0.0.5:8786
      imgclf knn --k 7 -o knn.npz --predictions preds.txt
      imgclf knn --preprocess mean,pca:144 --k 10
      imgclf data export cifar10 | imgclf preprocess mean | imgclf knn --k 5
    """
    import time

    from imgclf.config import DEFAULT_MEMORY_MB
    from imgclf.datasets.splits import merge_val_into_train
    from imgclf.errors import DataError, UsageError
    from imgclf.evaluation import report
    from imgclf.neighbors import KNNClassifier, cross_validate_k

    if save_alias is not None and output is not None and save_alias != output:
        raise UsageError("--save is the old name of -o/--output; give one of them")
    save_path = output if output is not None else save_alias
    metric = metric.lower()
    memory_mb = memory_mb or DEFAULT_MEMORY_MB
    if predictions == "-" and as_json:
        raise UsageError("--predictions - and --json both want stdout; write the predictions to a file")
    rep = reporter(ctx, quiet)
    ds = load_data(ctx, data, n_train, n_test, val, size, color, default_val=0, quiet=quiet)
    # Validation images are for scoring only when asked for (--val N) or when there is nothing else to
    # score (an image folder with train/ and val/ but no test/).
    score_val = bool(val) or (ds.has("val") and not ds.has("test"))
    if not score_val:
        ds = merge_val_into_train(ds)
    if preprocess_spec:
        from imgclf.preprocessing_chain import fit_chain, parse_chain_spec

        ds = fit_chain(parse_chain_spec(preprocess_spec), ds)
    if not ds.has("train"):
        raise DataError("the data has no training images to search")
    train = ds.get("train")
    split = "val" if score_val else "test"
    evaluate = ds.has(split)
    if not evaluate and not folds:
        raise DataError(f"the data has no {split} images to classify")
    Xtr = train.X.reshape(len(train.X), -1)
    out = {"metric": metric, "n_train": len(train), "memory_mb": memory_mb}

    if scheduler and not folds:
        raise UsageError("--scheduler runs the --cv folds on a Dask cluster; add --cv N")
    if folds:
        t0 = time.perf_counter()
        mapper = None
        if scheduler:
            from functools import partial

            from imgclf.executors import map_folds

            _, scheduler = capped_workers(rep, scheduler=scheduler)

            mapper = partial(map_folds, scheduler=scheduler)
        with rep.progress(f"{folds}-fold cross-validation", total=len(train)) as advance:
            cv = cross_validate_k(Xtr, train.y, k_values, folds, metric=metric, memory_mb=memory_mb,
                                  progress=advance, map_folds=mapper)
        out["cv"] = {"folds": folds, "k_values": cv.k_values, "mean": cv.mean, "std": cv.std,
                     "fold_accuracies": cv.accuracies, "best_k": cv.best_k,
                     "seconds": time.perf_counter() - t0}
        k = cv.best_k
        if plot:
            _plot_cv(cv, folds, metric, plot)
        if not as_json:
            rows = [[kv, float(m), float(s)] for kv, m, s in zip(cv.k_values, cv.mean, cv.std)]
            emit_table(["k", "mean", "std"], rows, title=f"{folds}-fold cross-validation ({metric})")
            click.echo(f"best k: {k}")
    elif plot:
        raise UsageError("--plot draws the cross-validation figure; add --cv N")
    out["k"] = k

    if evaluate:
        test = ds.get(split)
        t0 = time.perf_counter()
        stats = {}
        model = KNNClassifier(k=k, metric=metric, memory_mb=memory_mb).fit(Xtr, train.y)
        with rep.progress(f"{k}-NN {metric}", total=len(test)) as advance:
            pred = model.predict(test.X, progress=advance, stats=stats)
        seconds = time.perf_counter() - t0
        scores = report(test.y, pred, ds.classes)
        out.update(accuracy=scores["accuracy"], split=split, n_eval=len(test), seconds=seconds,
                   per_class={c: v["accuracy"] for c, v in scores["per_class"].items()}, search=stats)
        if predictions:
            _write_predictions(pred, predictions)
        summary = f"{k}-NN {metric}: {split} accuracy {scores['accuracy']:.4f} ({len(test)} images, {seconds:.1f} s)"
        if save_path:
            from imgclf.io.modelfile import ModelBundle
            from imgclf.storage import save_model

            save_model(ModelBundle(model, ds.classes, ds.input_shape, list(ds.transforms),
                                   extra={"split": split, "accuracy": scores["accuracy"]}), save_path)
            rep.log(f"saved {save_path}")
        if predictions == "-":
            rep.log(summary)
        elif not as_json:
            rows = [[c, v["accuracy"], v["support"]] for c, v in scores["per_class"].items()]
            emit_table(["class", "accuracy", "n"], rows, title=summary)
    elif save_path or predictions:
        raise DataError(f"the data has no {split} images: nothing to predict or save a model from")
    else:  # cross-validation only: its figure is the score
        best = cv.k_values.index(k)
        out.update(accuracy=float(cv.mean[best]), split="cv", n_eval=len(train), seconds=out["cv"]["seconds"])
    if as_json:
        emit_json(out)


def _write_predictions(pred, target):
    lines = "".join(f"{int(p)}\n" for p in pred)
    if target == "-":
        click.echo(lines, nl=False)
        return
    from imgclf.io.atomic import atomic_open

    with atomic_open(target, "w") as f:
        f.write(lines)


def _plot_cv(cv, folds, metric, path):
    from imgclf.plots import errorbar_plot, save_png

    img = errorbar_plot(cv.k_values, points=list(cv.accuracies), mean=cv.mean, err=cv.std,
                        title=f"kNN {metric}: {folds}-fold cross-validation over k", xlabel="k",
                        ylabel="cross-validation accuracy")
    save_png(img, path)
