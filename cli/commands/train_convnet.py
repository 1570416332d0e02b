"""`imgclf train convnet`: small convolutional nets (conv - [bn] - relu - pool stages, then fully-connected)."""

from __future__ import annotations

import click

from ..console import reporter
from ..options import data_options, json_option, quiet_option, seed_option
from ..training import (check_augment_data, check_images, class_weights_for, conv_backend_option, estimator_defaults,
                        fit_with_progress, load_training_data, model_settings, precision_option, report_result,
                        save_curves, training_options)

# The estimator's defaults (imgclf.nn.convnet.ConvNet), measured on CIFAR-10 (49000/1000/10000): docs/recipes.md.
D = estimator_defaults("convnet")


def _filters(ctx, param, value):
    from imgclf.errors import UsageError
    from imgclf.nn.convnet import parse_filters

    try:
        stages = parse_filters(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None
    return tuple(f"{f}x{k}" if k > 1 else f for f, k in stages)


def _hidden(ctx, param, value):
    try:
        sizes = tuple(int(v) for v in value.split(",")) if value not in ("", "0", "none") else ()
        if any(v < 1 for v in sizes):
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"expected hidden layer sizes such as 256 or 512,256 (0 for none), got {value!r}") from None
    return sizes


def _apply_preset(ctx, name, params):
    """`--preset NAME`: the library's recipe (imgclf/nn/presets.py) replaces the command's defaults; options
    given on the command line still win."""
    from click.core import ParameterSource

    from imgclf.nn.presets import preset

    recipe = preset("convnet", name)
    for key, value in recipe.items():
        if key != "optim_options" and ctx.get_parameter_source(key) != ParameterSource.COMMANDLINE:
            params[key] = value
    if params.get("optim") == recipe["optim"]:
        # the recipe's momentum goes with its update rule; --momentum etc. given on the command line win
        params["optim_options"] = {**recipe["optim_options"], **(params.get("optim_options") or {})}
    return params


@click.command()
@click.option("--preset", type=click.Choice(["fast", "best"]), default=None,
              help="A measured recipe (docs/recipes.md): airbench's network and training loop on a "
                   "32x2,128x2,128x2 net (whitening stem, GELU, Nesterov SGD at batch 512, label smoothing 0.2, "
                   "Lookahead ramp, flip+shift test-time augmentation); fast = 5 epochs (the 5-minute budget), "
                   "best = airbench94's widths 64x2,256x2,256x2 for 10 epochs (15 minutes: 0.9074), both "
                   "measured with --precision bf16 and oneDNN's convolutions. Options given on the command "
                   "line override its settings.")
@click.option("--filters", callback=_filters, default=",".join(map(str, D["filters"])), show_default=True,
              metavar="F[xK],...",
              help="Filters per stage; each stage is K convolutions (default 1) then a pool. "
                   "32,64 is conv32-pool-conv64-pool; 32x2,64x2 is conv32-conv32-pool-conv64-conv64-pool.")
@click.option("--filter-size", type=click.IntRange(min=1), default=D["filter_size"], show_default=True,
              help="Square filter size; stride 1 with 'same' zero padding.")
@click.option("--hidden", callback=_hidden, default=str(D["hidden"]), show_default=True, metavar="H[,H...]",
              help="Fully-connected hidden layers after the convolutions (0 for none).")
@click.option("--pool", type=click.IntRange(min=1), default=D["pool"], show_default=True,
              help="Max-pooling window and stride after each stage (1: no pooling).")
@click.option("--pool-position", type=click.Choice(["last", "first"]), default=D["pool_position"], show_default=True,
              help="Where each stage's pool goes: after its last convolution, or after its first (airbench's "
                   "conv-pool-conv block: 32x2 is then conv32-pool-conv32, the second at half resolution).")
@click.option("--batchnorm/--no-batchnorm", default=D["batchnorm"], show_default=True,
              help="Batch normalisation after every convolution (spatial) and hidden layer, before the ReLU.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=D["dropout"], show_default=True,
              help="Dropout probability on the hidden fully-connected layers.")
@click.option("--activation", default=D["activation"], show_default=True, metavar="NAME",
              help="relu, leaky_relu[:SLOPE], tanh, sigmoid, elu[:ALPHA] or gelu (exact erf form, as torch.nn.GELU).")
@click.option("--init", default=D["init"], show_default=True, metavar="SCHEME",
              help="Weight initialisation: he, xavier or normal:STD.")
@click.option("--patch-whiten/--no-patch-whiten", default=D["patch_whiten"], show_default=True,
              help="Initialise the first layer's filters as +/- the whitened principal directions of the "
                   "training images' patches.")
@click.option("--bn-momentum", type=click.FloatRange(0, 1, max_open=True), default=D["bn_momentum"],
              show_default=True, help="Batch norm's running statistics: running = m * running + (1 - m) * batch.")
@click.option("--stem", default="none", show_default=True, metavar="whiten:K",
              callback=lambda ctx, param, value: None if value == "none" else value,
              help="A first KxK convolution without padding (32x32 -> 31x31 for K=2; later pools then drop "
                   "an odd map's last row and column) with 2*K*K*C frozen filters: +/- the whitened "
                   "eigenvectors of the training images' KxK patches; only its bias trains, for "
                   "--stem-bias-epochs epochs. airbench's whitening layer is whiten:2.")
@click.option("--stem-bias-epochs", type=click.IntRange(min=0), default=D["stem_bias_epochs"], show_default=True,
              help="Epochs the stem's bias trains for; then it is frozen.")
@click.option("--bn-scale/--no-bn-scale", default=D["bn_scale"], show_default=True,
              help="Batch norm's learnable scale (gamma); --no-bn-scale keeps it at 1, untrained (airbench).")
@click.option("--dirac/--no-dirac", default=D["dirac"], show_default=True,
              help="Start every convolution after the stem with its first min(C_in, F) filters the identity "
                   "(an implicit residual, airbench); the rest from --init.")
@click.option("--head", type=click.Choice(["flatten", "maxpool"]), default=D["head"], show_default=True,
              help="What the fully-connected head sees: the last map flattened, or its global maximum per "
                   "channel (airbench).")
@click.option("--logit-scale", type=click.FloatRange(min=0, min_open=True), default=D["logit_scale"],
              show_default=True, help="Multiply the class scores by this (airbench: 1/9, i.e. 0.1111).")
@click.option("--classifier-bias/--no-classifier-bias", default=D["classifier_bias"], show_default=True,
              help="A bias in the last (classifier) layer; airbench's has none.")
@click.option("--tta", type=click.Choice(["none", "flip", "flip+shift"]), default=D["tta"] or "none", show_default=True,
              callback=lambda ctx, param, value: None if value == "none" else value,
              help="Test-time augmentation: flip scores each image as the mean over it and its mirror image; "
                   "flip+shift (airbench's) also over its one-pixel diagonal shifts (reflect padding): 0.5 flip(x) "
                   "+ 0.25 flip(x shifted up-left) + 0.25 flip(x shifted down-right).")
@training_options("convnet")
@precision_option("convnet")
@conv_backend_option
@click.option("--preprocess", "preprocess_spec", default="none", show_default=True, metavar="CHAIN",
              help="Preprocessing fitted on the training split and stored in the model (the net already "
                   "standardises each channel itself); it must keep the image layout (no pca).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, metavar="MODEL.npz",
              help="Save the best-validation model here.")
@data_options
@seed_option
@json_option
@quiet_option
@click.pass_context
def convnet(ctx, preset, filters, filter_size, hidden, pool, pool_position, batchnorm, dropout, activation, init, patch_whiten,
            bn_momentum, stem, stem_bias_epochs, bn_scale, dirac, head, logit_scale, classifier_bias, tta, precision,
            conv_backend, preprocess_spec, output, seed, as_json, quiet, data, n_train, n_test, val, size, color,
            **options):
    """Train a convolutional net: [conv - [bn] - relu] x K - maxpool stages, affine - relu - [dropout], affine.

    The last but three example is airbench's network (Keller Jordan's airbench94): a frozen whitening stem,
    conv-pool-conv blocks with GELU, batch norm without scale, identity-initialised convolutions, a
    global-max head and scores times 1/9.

    Convolutions run as im2col (numba) + one BLAS GEMM on NHWC images, or through oneDNN where it is
    installed (--conv-backend); the number of input channels
    comes from the data (3 for CIFAR-10, 1 for MNIST). The net standardises each input channel with the
    training set's statistics, so raw images need no --preprocess. --augment auto (the default) means
    flips and random crops of up to an eighth of the size (crop:4 on 32x32) for colour images and none
    for grayscale ones. The validation split picks the best
    epoch, whose weights are kept and saved; the test split is scored. Training options, checkpoints,
    --resume, Ctrl-C, early stopping, curves and NaN stop work as for `imgclf train twolayer`.

    \b
    Examples:
      imgclf train convnet
      imgclf train convnet --filters 32x2,64x2 --batchnorm --dropout 0.3 -o conv.npz
      imgclf train convnet --batchnorm --epochs 12 --lr-schedule step:0.7 --plot curves.png
      imgclf train convnet --data mnist --filters 16,32 --hidden 128 --epochs 3
      imgclf train convnet --preset fast --precision bf16
      imgclf train convnet --preset best --precision bf16 --val 0
      imgclf train convnet --filters 64x2,128x2,128x2 --pool-position first --batchnorm --hidden 0 --stem whiten:2 --activation gelu --no-bn-scale --bn-momentum 0.6 --dirac --head maxpool --logit-scale 0.1111 --no-classifier-bias
      imgclf train convnet --checkpoint-dir ckpt --log train.jsonl
      imgclf train convnet --resume ckpt/ckpt_epoch003_step01531_val0.6120.npz
      imgclf viz weights conv.npz
    """
    import time

    from imgclf.nn.convnet import ConvNet

    arch = dict(filters=filters, filter_size=filter_size, hidden=hidden, pool=pool, pool_position=pool_position,
                batchnorm=batchnorm, dropout=dropout, activation=activation, init=init, patch_whiten=patch_whiten,
                bn_momentum=bn_momentum, stem=stem, stem_bias_epochs=stem_bias_epochs, bn_scale=bn_scale, dirac=dirac,
                head=head, logit_scale=logit_scale, classifier_bias=classifier_bias, tta=tta,
                precision=precision, conv_backend=conv_backend)
    if preset:
        # --momentum etc. are checked against the update rule: the preset's, unless --optim is given
        options["optim"] = _apply_preset(ctx, preset, {"optim": options["optim"]})["optim"]
    run, params, extra, preprocess_spec, seed = model_settings(ctx, options, arch, preprocess_spec, seed)
    if preset and not run["resume"]:
        params = _apply_preset(ctx, preset, params)
    rep = reporter(ctx, quiet)
    t0 = time.perf_counter()

    def before_fit(ds, chain):
        check_augment_data("convnet", [params.get("augment")], ds, chain)
        check_images("convnet", ds, chain)

    ds = load_training_data(ctx, preprocess_spec, seed=seed, quiet=quiet, data=data, n_train=n_train,
                            n_test=n_test, val=val, size=size, color=color, before_fit=before_fit)
    params["class_weight"] = class_weights_for(params.get("class_weight"), ds)
    model = ConvNet(random_state=seed, **params)
    model.check_input_shape(ds.feature_shape)  # a bad filter/pool geometry fails before any data conversion
    name = "convnet " + ",".join(map(str, model.filters))
    result = fit_with_progress(ctx, model, ds, name=name, quiet=quiet, checkpoint_dir=run["checkpoint_dir"],
                               keep_checkpoints=run["keep_checkpoints"], resume=run["resume"], log_file=run["log_file"],
                               checkpoint_extra=extra)
    if run["plot"]:
        save_curves(result, run["plot"], title=f"{name} on {ds.name or 'data'}: loss per iteration")
        rep.log(f"training curves written to {run['plot']}")
    report_result(ctx, model, ds, result, output=output, seed=seed, as_json=as_json, quiet=quiet, t0=t0, name=name)
