"""`imgclf preprocess`: fit a transform on the training split, apply it to every split, pass the stream on."""

from __future__ import annotations

import click

from ..console import reporter
from ..options import binary_output_target, data_options, load_data, quiet_option, seed_option
from ..training import class_defaults


def output_option(func):
    return click.option("-o", "--output", default="-", metavar="FILE|-",
                        help="Where to write the pipeline .npz (default stdout; never a terminal).")(func)


def size_options(func):
    func = click.option("--variance", type=click.FloatRange(0, 1, min_open=True), default=None,
                        help="Keep the fewest components holding this fraction of the training variance.")(func)
    return click.option("--dims", type=click.IntRange(min=1), default=None,
                        help="Number of principal components to keep.")(func)


@click.group()
def preprocess():
    """Fit a preprocessing step on the training split and apply it to every split.

    Each subcommand reads a dataset or a pipeline stream (stdin when piped), fits on the TRAINING
    split only, applies the fitted step to train, val and test, appends it to the stream's chain and
    writes the pipeline .npz to stdout (or -o FILE). Models trained from the stream carry the chain,
    so prediction on raw images repeats the same steps.

    \b
    Examples:
      imgclf data export cifar10 --n-train 5000 --n-test 500 | imgclf preprocess mean \\
        | imgclf preprocess pca --dims 144 | imgclf knn --k 5
      imgclf preprocess mean --data cifar10 -o mean.npz
      imgclf preprocess whiten --data mean.npz --dims 100 -o white.npz
      imgclf preprocess apply model.npz --data new.npz -o features.npz
    """


def _fit_and_write(ctx, transform, data, n_train, n_test, val, size, color, output, quiet):
    from imgclf import storage
    from imgclf.preprocessing_chain import fit_chain

    target = binary_output_target(output)
    rep = reporter(ctx, quiet)
    ds = load_data(ctx, data, n_train, n_test, val, size, color, quiet=quiet)

    def report(t):
        if hasattr(t, "retained_variance_"):
            rep.log(f"{t.kind}: {t.n_components_} of {t.n_features_in_} components keep "
                    f"{100 * t.retained_variance_:.2f}% of the training variance")

    out = fit_chain([transform], ds, on_fit=report)
    storage.write_stream(out, target)
    rep.log(f"{transform.kind} fitted on {len(ds.get('train'))} training images; applied to "
            + ", ".join(f"{k} {len(v)}" for k, v in out.splits.items())
            + f"; features {tuple(out.feature_shape)}")


@preprocess.command("mean")
@data_options
@click.option("--per-channel", is_flag=True, help="One mean per colour channel instead of one per pixel.")
@output_option
@quiet_option
@click.pass_context
def mean(ctx, data, n_train, n_test, val, size, color, per_channel, output, quiet):
    """Subtract the training mean image (or per-channel mean).

    \b
    Examples:
      imgclf data export cifar10 | imgclf preprocess mean | imgclf knn --k 5
      imgclf preprocess mean --data cifar10 --per-channel -o mean.npz
    """
    from imgclf.preprocessing import MeanSubtraction

    _fit_and_write(ctx, MeanSubtraction(per_channel=per_channel), data, n_train, n_test, val, size, color,
                   output, quiet)


@preprocess.command("normalize")
@data_options
@click.option("--per-channel", is_flag=True, help="One std per colour channel instead of one per pixel.")
@output_option
@quiet_option
@click.pass_context
def normalize(ctx, data, n_train, n_test, val, size, color, per_channel, output, quiet):
    """Divide by the training standard deviation (features constant on train are left as they are).

    Does not centre: put `preprocess mean` before it for zero mean and unit variance.

    \b
    Examples:
      imgclf preprocess mean --data cifar10 | imgclf preprocess normalize > std.npz
    """
    from imgclf.preprocessing import Normalization

    _fit_and_write(ctx, Normalization(per_channel=per_channel), data, n_train, n_test, val, size, color,
                   output, quiet)


@preprocess.command("pca")
@data_options
@size_options
@output_option
@quiet_option
@click.pass_context
def pca(ctx, data, n_train, n_test, val, size, color, dims, variance, output, quiet):
    """Project onto the top principal components of the training data (exact eigendecomposition).

    Centres with the training mean, accumulates the covariance in float64 and keeps --dims
    components (or the fewest holding --variance of the variance; all when neither is given).
    The retained variance is printed on stderr.

    \b
    Examples:
      imgclf data export cifar10 | imgclf preprocess pca --dims 144 | imgclf knn --k 5
      imgclf preprocess pca --data cifar10 --variance 0.99 -o pca99.npz
    """
    from imgclf.preprocessing import PCA

    _check_size(dims, variance)
    _fit_and_write(ctx, PCA(dims=dims, variance=variance), data, n_train, n_test, val, size, color, output, quiet)


@preprocess.command("whiten")
@data_options
@size_options
@click.option("--eps", type=click.FloatRange(min=0), default=1e-5, show_default=True,
              help="Added to each eigenvalue before dividing by its square root.")
@click.option("--zca", is_flag=True, help="Rotate back to pixel space (ZCA whitening; output keeps the image shape).")
@output_option
@quiet_option
@click.pass_context
def whiten(ctx, data, n_train, n_test, val, size, color, dims, variance, eps, zca, output, quiet):
    """PCA whitening: decorrelate and give every kept component unit variance.

    Each principal component is divided by sqrt(eigenvalue + eps); --zca rotates the result back to
    pixel space. --dims / --variance keep only the leading components, as for pca.

    \b
    Examples:
      imgclf data export cifar10 | imgclf preprocess whiten --dims 144 | imgclf knn --k 5
      imgclf preprocess whiten --data cifar10 --zca --eps 0.1 -o zca.npz
    """
    from imgclf.preprocessing import Whitening

    _check_size(dims, variance)
    _fit_and_write(ctx, Whitening(dims=dims, eps=eps, zca=zca, variance=variance), data, n_train, n_test, val,
                   size, color, output, quiet)


@preprocess.command("standardize")
@data_options
@click.option("--eps", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Added to each feature's variance before the square root (Coates et al. use 0.01 on "
                   "k-means features).")
@output_option
@quiet_option
@click.pass_context
def standardize(ctx, data, n_train, n_test, val, size, color, eps, output, quiet):
    """Zero mean and unit variance per feature: (x - mean) / sqrt(var + eps), training statistics.

    What linear models need after hog, colorhist or kmeans features; one pass and one output array
    (the same as `mean` then `normalize` when eps is 0).

    \b
    Examples:
      imgclf preprocess hog --data cifar10 | imgclf preprocess standardize | imgclf train svm --preprocess none
      imgclf train svm --preprocess kmeans:1600,standardize:0.01 --lr 1e-2 --reg 1e-5
    """
    from imgclf.preprocessing import Standardization

    _fit_and_write(ctx, Standardization(eps=eps), data, n_train, n_test, val, size, color, output, quiet)


@preprocess.command("hog")
@data_options
@click.option("--cell", type=click.IntRange(min=1), default=8, show_default=True, help="Cell side in pixels.")
@click.option("--bins", type=click.IntRange(min=2, max=360), default=9, show_default=True,
              help="Orientation bins over 0..180 degrees (0..360 with --signed).")
@click.option("--block", type=click.IntRange(min=1), default=2, show_default=True,
              help="Block side in cells; blocks overlap with a stride of one cell.")
@click.option("--norm", type=click.Choice(["l2hys", "l2", "l1", "l1sqrt", "none"]), default="l2hys",
              show_default=True, help="Block normalisation; none: the raw cell histograms (CS231n's hog_feature).")
@click.option("--signed", is_flag=True, help="Signed gradients (0..360 degrees) instead of unsigned.")
@click.option("--colorhist", "colorhist_bins", type=click.IntRange(min=1), default=None, metavar="BINS",
              help="Append a hue histogram with this many bins (the same as --preprocess hog+colorhist).")
@output_option
@quiet_option
@click.pass_context
def hog(ctx, data, n_train, n_test, val, size, color, cell, bins, block, norm, signed, colorhist_bins, output, quiet):
    """Histograms of oriented gradients (Dalal & Triggs): one descriptor per image.

    Grey-level centred gradients, a magnitude-weighted orientation histogram per cell (each vote
    split between the two nearest bins), blocks of cells normalised on their own. Needs images
    (raw pixels); nothing is learned, the chain only records the settings.

    \b
    Examples:
      imgclf preprocess hog --data cifar10 --cell 8 --colorhist 10 | imgclf preprocess standardize \\
        | imgclf train svm --preprocess none --lr 1e-3 --reg 1e-4
      imgclf train twolayer --preprocess hog:cell=8+colorhist:bins=10,standardize --lr 1e-3 --reg 1e-4
    """
    from imgclf.hog import HOG

    step = HOG(cell=cell, bins=bins, block=block, norm=norm, signed=signed)
    if colorhist_bins is not None:
        from imgclf.colorhist import ColorHistogram
        from imgclf.feature_union import FeatureUnion

        step = FeatureUnion([step, ColorHistogram(bins=colorhist_bins)])
    _fit_and_write(ctx, step, data, n_train, n_test, val, size, color, output, quiet)


@preprocess.command("colorhist")
@data_options
@click.option("--bins", type=click.IntRange(min=1, max=1000), default=10, show_default=True,
              help="Bins per histogram.")
@click.option("--space", type=click.Choice(["hue", "hsv"]), default="hue", show_default=True,
              help="hue: one hue histogram; hsv: hue, saturation and value histograms side by side.")
@output_option
@quiet_option
@click.pass_context
def colorhist(ctx, data, n_train, n_test, val, size, color, bins, space, output, quiet):
    """Colour histograms: the fraction of each image's pixels in each hue bin (CS231n's color_histogram_hsv).

    Needs RGB images. Combine with HOG as `--preprocess hog+colorhist` or `preprocess hog --colorhist BINS`.

    \b
    Examples:
      imgclf preprocess colorhist --data cifar10 --bins 10 -o hue.npz
      imgclf knn --preprocess colorhist:bins=16:space=hsv --k 10
    """
    from imgclf.colorhist import ColorHistogram

    _fit_and_write(ctx, ColorHistogram(bins=bins, space=space), data, n_train, n_test, val, size, color, output,
                   quiet)


KMEANS = class_defaults("imgclf.kmeans_features:KMeansFeatures")  # the library owns the defaults


@preprocess.command("kmeans")
@data_options
@click.option("--centroids", type=click.IntRange(min=1), default=KMEANS["centroids"], show_default=True,
              help="Number of k-means centroids K (4K features per image).")
@click.option("--patch", type=click.IntRange(min=2), default=KMEANS["patch"], show_default=True,
              help="Patch side in pixels.")
@click.option("--stride", type=click.IntRange(min=1), default=KMEANS["stride"], show_default=True,
              help="Step between the patches of the dense extraction.")
@click.option("--patches", type=click.IntRange(min=2), default=KMEANS["patches"], show_default=True,
              help="Random training patches k-means learns from.")
@click.option("--iterations", type=click.IntRange(min=1), default=KMEANS["iterations"], show_default=True,
              help="Lloyd iterations of k-means.")
@click.option("--init", type=click.Choice(["gaussian", "rows"]), default=KMEANS["init"], show_default=True,
              help="k-means start: small random centres (Coates et al.'s) or K distinct training patches.")
@seed_option
@output_option
@quiet_option
@click.pass_context
def kmeans(ctx, data, n_train, n_test, val, size, color, centroids, patch, stride, patches, iterations, init, seed,
           output, quiet):
    """Single-layer k-means features (Coates, Lee & Ng 2011): 4 x K features per image.

    Learns K centroids of random whitened patches of the training images (per-patch brightness and
    contrast normalisation, ZCA whitening, seeded Lloyd k-means); every patch at --stride then gets the
    triangle activations max(0, mean(z) - z_k) of its distances z to the centroids, summed over the
    four quadrants of the image. Needs raw pixels; put `preprocess standardize --eps 0.01` after it for
    linear models. `imgclf viz centroids` draws the learned filters.

    \b
    Examples:
      imgclf preprocess kmeans --data cifar10 --centroids 1600 | imgclf preprocess standardize --eps 0.01 \\
        | imgclf train svm --preprocess none --lr 1e-2 --reg 1e-5 --epochs 20 --lr-decay 0.9
      imgclf train svm --preprocess kmeans:1600,standardize:0.01 --lr 1e-2 --reg 1e-5 -o svm.npz
      imgclf preprocess kmeans --data cifar10 --centroids 4000 --iterations 50 --seed 1 -o k4000.npz
    """
    from imgclf.kmeans_features import KMeansFeatures

    step = KMeansFeatures(centroids=centroids, patch=patch, stride=stride, patches=patches, iterations=iterations,
                          init=init, random_state=seed)
    _fit_and_write(ctx, step, data, n_train, n_test, val, size, color, output, quiet)


def _check_size(dims, variance):
    if dims is not None and variance is not None:
        raise click.UsageError("give --dims or --variance, not both")


@preprocess.command("apply")
@click.argument("chain_source", metavar="CHAIN_SOURCE")
@data_options
@output_option
@quiet_option
@click.pass_context
def apply(ctx, chain_source, data, n_train, n_test, val, size, color, output, quiet):
    """Apply the fitted chain stored in a model file or pipeline .npz to other data (no refitting).

    The data must have the shape the chain was fitted on (usually raw images of the same size).

    \b
    Examples:
      imgclf preprocess apply model.npz --data mnist -o features.npz
      imgclf data export cifar10 --n-test 100 | imgclf preprocess apply pca.npz | imgclf data info -
    """
    from imgclf import storage
    from imgclf.preprocessing_chain import apply_to_dataset, read_chain

    target = binary_output_target(output)
    chain = read_chain(chain_source)
    ds = load_data(ctx, data, n_train, n_test, val, size, color, quiet=quiet)
    out = apply_to_dataset(chain, ds)
    storage.write_stream(out, target)
    reporter(ctx, quiet).log(f"applied {' -> '.join(t.kind for t in chain)} from {chain_source}; features "
                             f"{tuple(out.feature_shape)}")
