"""`imgclf viz`: pictures (PNG) of what preprocessing and models learned; one function per subcommand."""

from __future__ import annotations

import click

from ..console import reporter
from ..options import data_options, load_data, quiet_option


@click.group()
def viz():
    """Draw pictures of learned components and weights as PNG files.

    \b
    Examples:
      imgclf viz pca -o eigen.png --dims 144
      imgclf viz pca -o recon.png --dims 144 --reconstruct 10
      imgclf viz weights softmax.npz -o templates.png
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
