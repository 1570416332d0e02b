"""`imgclf train twolayer`: fully-connected nets (two-layer with --hidden 500, deeper with --hidden 1024,512)."""

from __future__ import annotations

import click

from ..console import reporter
from ..options import data_options, json_option, quiet_option, seed_option
from ..training import (check_augment_data, class_weights_for, estimator_defaults, fit_with_progress, load_training_data,
                        model_settings, precision_option, report_result, save_curves, training_options)

# The estimator's defaults (imgclf.nn.net.NeuralNet), measured on CIFAR-10 (49000/1000/10000): docs/recipes.md.
D = estimator_defaults("twolayer")


def _hidden(ctx, param, value):
    try:
        sizes = tuple(int(v) for v in value.split(","))
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"expected layer sizes such as 500 or 1024,512, got {value!r}") from None
    return sizes


@click.command()
@click.option("--hidden", callback=_hidden, default=",".join(map(str, D["hidden"])), show_default=True,
              metavar="H[,H...]",
              help="Hidden layer sizes: 500 is a two-layer net, 1024,512 a three-layer one.")
@click.option("--activation", default=D["activation"], show_default=True, metavar="NAME",
              help="relu, leaky_relu[:SLOPE], tanh, sigmoid, elu[:ALPHA] or gelu (exact erf form, as torch.nn.GELU).")
@click.option("--batchnorm/--no-batchnorm", default=D["batchnorm"], show_default=True,
              help="Batch normalisation in each hidden layer, between the affine layer and the activation.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=D["dropout"],
              show_default=True, help="Probability of dropping a hidden unit in training (inverted dropout).")
@click.option("--init", default=D["init"], show_default=True, metavar="SCHEME",
              help="Weight initialisation: he, xavier or normal:STD.")
@click.option("--loss", type=click.Choice(["softmax", "svm"]), default=D["loss"], show_default=True,
              help="Loss on the class scores.")
@training_options("twolayer")
@precision_option("twolayer")
@click.option("--preprocess", "preprocess_spec", default="none", show_default=True,
              metavar="CHAIN", help="Preprocessing fitted on the training split and stored in the model, e.g. "
                                    "mean,normalize or pca:100 (the net standardises its input itself).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, metavar="MODEL.npz",
              help="Save the best-validation model (with its preprocessing chain) here.")
@data_options
@seed_option
@json_option
@quiet_option
@click.pass_context
def twolayer(ctx, hidden, activation, batchnorm, dropout, init, loss, precision, preprocess_spec, output, seed, as_json,
             quiet, data, n_train, n_test, val, size, color, **options):
    """Train a fully-connected net: affine - [batchnorm] - activation - [dropout] - ... - affine - loss.

    The training split (49000 of CIFAR-10's 50000 by default) is fitted, the validation split (the
    last 1000) picks the best epoch, whose weights are kept and saved; the test split is scored.
    Each epoch logs the loss, the accuracy on a fixed training sample and on val, the learning rate
    and the first layer's update/weight ratio (about 1e-3 is healthy). Everything is float32. The net
    standardises its input with the training split's statistics (per channel of images), so raw pixels
    and any features need no --preprocess; with no flags it is `imgclf.nn.net.NeuralNet()`.

    Ctrl-C finishes the current step, writes a checkpoint (with --checkpoint-dir) and exits with
    status 130; --resume CKPT continues exactly where it stopped (same final weights as a run that
    was never interrupted). A NaN/inf loss stops training and keeps the best epoch so far.

    \b
    Examples:
      imgclf train twolayer
      imgclf train twolayer --hidden 1000 --dropout 0.3 --epochs 20 -o net.npz
      imgclf train twolayer --hidden 1024,512 --batchnorm --augment flip,crop:4
      imgclf train twolayer --optim momentum --momentum 0.95 --lr 1e-2 --lr-schedule step:0.5:5
      imgclf train twolayer --checkpoint-dir ckpt --log train.jsonl --plot curves.png
      imgclf train twolayer --resume ckpt/ckpt_epoch003_step00120_val0.4510.npz
      imgclf train twolayer --data mnist --class-weight 0=2,1=0.5
      imgclf data export cifar10 | imgclf preprocess mean | imgclf train twolayer --preprocess none
    """
    import time

    from imgclf.nn.net import NeuralNet

    arch = dict(hidden=hidden, activation=activation, batchnorm=batchnorm, dropout=dropout, init=init, loss=loss,
                precision=precision)
    run, params, extra, preprocess_spec, seed = model_settings(ctx, options, arch, preprocess_spec, seed)
    rep = reporter(ctx, quiet)
    t0 = time.perf_counter()
    ds = load_training_data(ctx, preprocess_spec, seed=seed, quiet=quiet, data=data, n_train=n_train,
                            n_test=n_test, val=val, size=size, color=color,
                            before_fit=lambda ds, chain: check_augment_data("twolayer", [params.get("augment")], ds,
                                                                            chain))
    params["class_weight"] = class_weights_for(params.get("class_weight"), ds)
    model = NeuralNet(random_state=seed, **params)
    hidden = model.hidden_sizes()
    name = "twolayer" if len(hidden) == 1 else f"net {','.join(map(str, hidden))}"
    result = fit_with_progress(ctx, model, ds, name=name, quiet=quiet, checkpoint_dir=run["checkpoint_dir"],
                               keep_checkpoints=run["keep_checkpoints"], resume=run["resume"], log_file=run["log_file"],
                               checkpoint_extra=extra)
    if run["plot"]:
        save_curves(result, run["plot"], title=f"{name} on {ds.name or 'data'}: loss per iteration")
        rep.log(f"training curves written to {run['plot']}")
    report_result(ctx, model, ds, result, output=output, seed=seed, as_json=as_json, quiet=quiet, t0=t0, name=name)

