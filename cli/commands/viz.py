"""`imgclf viz`: pictures (PNG) of what preprocessing and models learned; one function per subcommand."""

from __future__ import annotations

import click

from ..console import reporter
from ..options import data_options, json_option, load_data, quiet_option


@click.group()
def viz():
    """Draw pictures of learned components and weights as PNG files.

    \b
    Examples:
      imgclf viz pca -o eigen.png --dims 144
      imgclf viz pca -o recon.png --dims 144 --reconstruct 10
      imgclf viz weights softmax.npz -o templates.png
      imgclf viz neighbors --data cifar10 -o knn.png -n 8 -k 10
    """


@viz.command("pca")
@data_options
@click.option("-o", "--output", required=True, metavar="FILE.png", help="Where to write the PNG.")
@click.option("--dims", type=click.IntRange(min=1), default=144, show_default=True,
              help="Number of principal components to fit (and draw).")
@click.option("--reconstruct", type=click.IntRange(min=1), default=None, metavar="N",
              help="Instead of the eigenvectors, draw N test images (top row) above their reconstructions "
                   "from the kept components (bottom row).")
@click.option("--scale", type=click.IntRange(min=1, max=16), default=2, show_default=True,
              help="Upscale each tile by this integer factor.")
@quiet_option
@click.pass_context
def pca(ctx, data, n_train, n_test, val, size, color, output, dims, reconstruct, scale, quiet):
    """Fit PCA on the training split and draw the top eigenvectors as images (the CS231n figure).

    The components are laid out in a near-square grid (12x12 for 144), each tile rescaled to its own
    range. With --reconstruct N the picture shows N images and, below them, what the kept
    components reconstruct. The data must still be image-shaped (raw, mean-subtracted or normalised).

    \b
    Examples:
      imgclf viz pca --data cifar10 -o eigen.png --dims 144
      imgclf viz pca --data cifar10 -o recon.png --dims 144 --reconstruct 12
      imgclf data export cifar10 | imgclf preprocess mean | imgclf viz pca -o eigen.png
    """
    import numpy as np

    from imgclf.errors import UsageError
    from imgclf.images import grid, save_png
    from imgclf.preprocessing import PCA

    rep = reporter(ctx, quiet)
    ds = load_data(ctx, data, n_train, n_test, val, size, color, quiet=quiet)
    train = ds.get("train")
    if train.X.ndim != 4:
        raise UsageError(f"viz pca needs image-shaped data (N, H, W, C); this data has features of shape "
                         f"{tuple(train.X.shape[1:])} (draw before a pca/whiten step)")
    model = PCA(dims=dims).fit(train.X)
    if reconstruct is None:
        img = grid(model.components_.reshape((-1,) + tuple(train.X.shape[1:])), rescale="tile", scale=scale)
        what = f"the top {model.n_components_} eigenvectors"
    else:
        source = ds.get("test") if ds.has("test") else train
        originals = source.X[:reconstruct]
        rebuilt = model.inverse_transform(model.transform(originals))
        both = np.concatenate([originals.astype(np.float32), rebuilt])
        # raw pixels keep their own scale; preprocessed data is stretched jointly so the rows compare
        img = grid(both, ncols=len(originals), rescale="none" if originals.dtype == np.uint8 else "all",
                   scale=scale)
        what = f"{len(originals)} images above their reconstructions from {model.n_components_} components"
    save_png(img, output)
    rep.log(f"wrote {output}: {what} ({100 * model.retained_variance_:.2f}% of the training variance kept)")


@viz.command("weights")
@click.argument("model_path", metavar="MODEL.npz", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, metavar="FILE.png", help="Where to write the PNG.")
@click.option("--scale", type=click.IntRange(min=1, max=16), default=4, show_default=True,
              help="Upscale each tile by this integer factor.")
@click.option("--cols", type=click.IntRange(min=1), default=None, help="Tiles per row (default: all in one row "
              "for up to 10, else a near-square grid).")
@quiet_option
@click.pass_context
def weights(ctx, model_path, output, scale, cols, quiet):
    """Draw what a saved model learned as images: for linear models, one template per class.

    Each weight vector is reshaped to the model's input image shape and rescaled to its own range
    (the CS231n picture of ten 32x32 colour templates), labelled with its class name. Works for every
    model kind that can show its weights as images (linear models; nets draw their first layer).

    \b
    Examples:
      imgclf viz weights softmax.npz -o templates.png
      imgclf viz weights svm.npz -o templates.png --scale 6
    """
    from imgclf import storage
    from imgclf.errors import UsageError
    from imgclf.images import grid, save_png

    from ..predicting import class_name

    rep = reporter(ctx, quiet)
    bundle = storage.load_model(model_path)
    if not hasattr(bundle.model, "weight_images"):
        raise UsageError(f"a {bundle.kind} model has no weights to draw as images")
    images, labels = bundle.model.weight_images(bundle.input_shape)
    names = [class_name(bundle, v) for v in labels]
    ncols = cols or (len(images) if len(images) <= 10 else None)
    save_png(grid(images, ncols, rescale="tile", scale=scale, labels=names), output)
    rep.log(f"wrote {output}: {len(images)} {bundle.kind} weight images")


@viz.command("neighbors")
@data_options
@click.option("-o", "--output", required=True, metavar="FILE.png", help="Where to write the PNG.")
@click.option("--queries", multiple=True, metavar="PATH",
              help="Query images: image files or folders (read recursively), resized to the data's image size. "
                   "Repeatable. Default: the first --n images of --split.")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="The split the queries come from when --queries is not given (train: each image's nearest "
                   "other training images).")
@click.option("-n", "--n", "n_queries", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many queries (rows).")
@click.option("-k", "--k", type=click.IntRange(min=1), default=8, show_default=True,
              help="Nearest training images per query (columns).")
@click.option("--metric", type=click.Choice(["l2", "l1"]), default="l2", show_default=True,
              help="Distance on the raw pixels: l2 (Euclidean) or l1 (Manhattan).")
@click.option("--scale", type=click.IntRange(min=1, max=16), default=3, show_default=True,
              help="Upscale each tile by this integer factor.")
@json_option
@quiet_option
@click.pass_context
def neighbors(ctx, data, n_train, n_test, val, size, color, output, queries, split, n_queries, k, metric, scale,
              as_json, quiet):
    """Draw query images beside their k nearest training images (the CS231n kNN figure).

    Each row is a query (labelled with its class, or its file name for --queries) followed by its k
    nearest training images, nearest first, each labelled with its distance (Euclidean for l2,
    Manhattan for l1; exact on raw pixels) and class, and framed green when its class is the query's,
    red otherwise. The neighbours are found by the same exact kernels as `imgclf knn`; the training
    set is the train split (no validation images are held out). Prints the neighbours as a table
    (or --json) on stdout.

    \b
    Examples:
      imgclf viz neighbors --data cifar10 -o knn.png
      imgclf viz neighbors --data cifar10 -o knn.png -n 6 -k 10 --metric l1
      imgclf viz neighbors --data ./my-photos --queries ./new-photos -o nn.png --size 64x64
      imgclf viz neighbors --data ./my-photos -o nn.png --split train
    """
    import numpy as np

    from imgclf.errors import UsageError
    from imgclf.images import neighbor_grid, save_png
    from imgclf.kernels.distances import kneighbors

    from ..console import emit_json, emit_table

    rep = reporter(ctx, quiet)
    ds = load_data(ctx, data, n_train, n_test, 0 if val is None else val, size, color, quiet=quiet)
    train = ds.get("train")
    if train.X.ndim != 4:
        raise UsageError(f"viz neighbors draws images; this data has features of shape {tuple(train.X.shape[1:])}")
    if queries:
        Q, q_names, q_labels = _query_images(queries, train.X.shape[1:], n_queries, rep)
    else:
        part = ds.get(split)
        Q, q_labels = part.X[:n_queries], part.y[:n_queries]
        q_names = [f"{split}[{i}]" for i in range(len(Q))]
    rows = lambda X: X.reshape(len(X), -1)  # noqa: E731
    self_match = not queries and split == "train"
    kk = min(k + self_match, len(train))
    dist, idx = kneighbors(rows(Q), rows(train.X), kk, metric)
    if self_match:  # a training image is its own nearest neighbour: show the others
        keep = [np.flatnonzero(idx[i] != i)[:kk - 1] for i in range(len(Q))]
        dist = np.stack([dist[i, c] for i, c in enumerate(keep)])
        idx = np.stack([idx[i, c] for i, c in enumerate(keep)])
    if metric == "l2":
        dist = np.sqrt(dist)
    names = ds.classes
    q_text = [names[int(v)] if v is not None else nm for v, nm in zip(q_labels, q_names)]
    # distance first: a label too long for its tile loses the end of the class name, never digits
    n_text = [[f"{d:.0f} {names[int(train.y[j])]}" for j, d in zip(ids, ds_)] for ids, ds_ in zip(idx, dist)]
    matches = None if queries else train.y[idx] == np.asarray(q_labels)[:, None]
    save_png(neighbor_grid(Q, train.X[idx], q_text, n_text, matches, scale=scale,
                           rescale="none" if Q.dtype == np.uint8 else "tile"), output)
    rep.log(f"wrote {output}: {len(Q)} queries x {idx.shape[1]} nearest of {len(train)} training images ({metric})")
    result = [{"query": nm, "label": None if v is None else names[int(v)],
               "neighbors": [{"index": int(j), "label": names[int(train.y[j])], "distance": float(d)}
                             for j, d in zip(ids, ds_)]}
              for nm, v, ids, ds_ in zip(q_names, q_labels, idx, dist)]
    if as_json:
        emit_json({"metric": metric, "n_train": len(train), "queries": result})
        return
    emit_table(["query", "label"] + [f"#{r + 1}" for r in range(idx.shape[1])],
               [[r["query"], r["label"] or "-"] + [f"{m['label']} {m['distance']:.0f}" for m in r["neighbors"]]
                for r in result])


def _query_images(paths, shape, limit, rep):
    """(images, names, labels = None each) from image files and folders, resized to the training shape."""
    import os

    import numpy as np

    from imgclf.datasets.folder import list_images, load_image

    h, w, c = shape
    files = []
    for p in paths:
        if os.path.isdir(p):
            found, skipped = list_images(p)
            if skipped:
                rep.log(f"{p}: skipped {len(skipped)} files (" + ", ".join(f"{s.path}: {s.reason}"
                                                                           for s in skipped[:5]) + ")")
            files += [(str(f.relative_to(p)), f) for f in found]
        else:
            files.append((p, p))
    files = files[:limit]
    if not files:
        from imgclf.errors import UsageError

        raise UsageError("--queries found no images")
    X = np.stack([load_image(f, size=(h, w), mode="gray" if c == 1 else "rgb") for _, f in files])
    return X, [name for name, _ in files], [None] * len(files)
