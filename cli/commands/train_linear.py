"""`imgclf train svm|softmax`: linear classifiers trained by minibatch SGD or full-batch L-BFGS."""

from __future__ import annotations

import click

from ..console import reporter
from ..options import data_options, json_option, quiet_option, seed_option
from ..training import (AutoOr, class_weight_option, class_weights_for, estimator_defaults, load_training_data,
                        report_result)


def common_options(kind: str):
    # The estimator's defaults (imgclf.linear), measured on CIFAR-10 (49000/1000/10000): docs/linear.md.
    d = estimator_defaults(kind)

    def wrap(func):
        opts = [
            click.option("--solver", type=click.Choice(["sgd", "lbfgs"]), default=d["solver"], show_default=True,
                         help="sgd: minibatch SGD. lbfgs: deterministic full-batch L-BFGS on the same objective, "
                              "from zero weights, validation checked every 10 iterations (best kept, stop after "
                              "20 checks without improvement); --lr, --epochs, --batch-size, --lr-decay and "
                              "--weight-scale are then unused."),
            click.option("--reg", type=AutoOr(click.FloatRange(min=0)), default=d["reg"], show_default=True,
                         help="L2 regularisation strength on W (not the bias); auto scales with the mean squared "
                              "norm of the training rows (with lbfgs: 7.8e-7 x that for svm, so standardised "
                              "6400-feature rows get 0.005, C = 1 / (2 reg) = 100)."),
            click.option("--lr", type=AutoOr(click.FloatRange(min=0, min_open=True)), default=d["lr"],
                         show_default=True, help="SGD learning rate; auto: inversely proportional to the mean "
                                                 "squared norm of the training rows (any feature scale)."),
            click.option("--epochs", type=AutoOr(click.IntRange(min=1)), default=d["epochs"], show_default=True,
                         help="Passes over the training split; auto: 10, stretched to at least 600 steps (with "
                              "an early stop) on small data."),
            click.option("--iters", type=click.IntRange(min=1), default=None,
                         help="Stop after this many SGD steps instead (overrides --epochs); with --solver lbfgs "
                              "the iteration cap (default 1000)."),
            click.option("--batch-size", type=click.IntRange(min=1), default=d["batch_size"], show_default=True,
                         help="Examples per SGD step."),
            click.option("--lr-decay", type=click.FloatRange(min=0, max=1, min_open=True), default=d["lr_decay"],
                         show_default=True, help="Multiply the learning rate by this after every epoch."),
            click.option("--bias-trick/--no-bias-trick", default=d["bias_trick"], show_default=True,
                         help="Fold the bias into W as an extra row (a constant-1 feature), or keep a separate b."),
            click.option("--weight-scale", type=click.FloatRange(min=0, min_open=True), default=d["weight_scale"],
                         show_default=True, help="Standard deviation of the random initial weights."),
            class_weight_option,
            click.option("--augment", type=click.Choice(["none", "flip"]), default=d["augment"] or "none",
                         show_default=True,
                         help="flip: add the horizontal mirror of every training image (2N rows) before "
                              "--preprocess; validation and test data are never augmented. Raw images only: "
                              "data already preprocessed (a stream from imgclf preprocess) is refused."),
            click.option("--preprocess", "preprocess_spec", default="mean", show_default=True, metavar="CHAIN",
                         help="Preprocessing fitted on the training split and stored in the model, e.g. "
                              "mean, mean,normalize, or none."),
            click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, metavar="MODEL.npz",
                         help="Save the best-validation model (with its preprocessing chain) here."),
        ]
        for opt in reversed(opts):
            func = opt(func)
        return data_options(seed_option(json_option(quiet_option(click.pass_context(func)))))

    return wrap


def run(ctx, kind, model_params, *, preprocess_spec, output, seed, as_json, quiet,
        data, n_train, n_test, val, size, color):
    """Load, preprocess, fit with progress, score on test, print, save."""
    import time

    import numpy as np

    from imgclf.linear import LinearSVM, SoftmaxClassifier

    rep = reporter(ctx, quiet)
    t0 = time.perf_counter()
    augment = model_params.pop("augment", None)
    augment = None if augment in (None, "none") else augment
    cls = LinearSVM if kind == "svm" else SoftmaxClassifier
    # The mirrors go in before the --preprocess chain (imgclf.mirror), so here rather than in the model's
    # fit, which sees the chain's output: the estimator is fitted (and saved) with augment=None, and the
    # model file's metadata records that the training images were mirrored before the chain.
    ds = load_training_data(ctx, preprocess_spec, seed=seed, quiet=quiet, mirror=augment == "flip", data=data,
                            n_train=n_train, n_test=n_test, val=val, size=size, color=color)
    train = ds.get("train")
    valid = ds.splits.get("val")
    model_params["class_weight"] = class_weights_for(model_params.get("class_weight"), ds)
    model = cls(random_state=seed, **model_params)
    rep.log(f"{kind}: {len(train)} training examples" + (" (with their mirrors)" if augment else "")
            + f", {int(np.prod(train.X.shape[1:]))} features, "
            f"{len(ds.classes)} classes" + (f", {len(valid)} validation" if valid is not None else ""))

    model.check_params()
    lbfgs = model_params["solver"] == "lbfgs"
    if lbfgs:
        total = model_params["iters"] or model.LBFGS_MAX_ITER
    else:
        steps = max(1, len(train) // min(model_params["batch_size"], len(train)))
        total = model_params["iters"] or model.epochs_for(len(train))[0] * steps
    with rep.progress(f"train {kind}", total) as advance:
        def callback(event, info):
            if event == "step":
                where = f"iteration {info['iteration']}" if lbfgs else f"epoch {info['epoch']}"
                advance(status=f"{where} loss {info['loss']:.4f}")
                return
            val_txt = f" val {info['val_acc']:.4f}" if info["val_acc"] is not None else ""
            where = f"iteration {info['iteration']:4d}" if lbfgs else f"epoch {info['epoch']:3d}"
            rate = "" if info["lr"] is None else f"  lr {info['lr']:.3g}"
            rep.log(f"{where}  loss {info['loss']:.4f}  train {info['train_acc']:.4f}{val_txt}{rate}"
                    f"  {info['seconds']:.2f}s")

        model.fit(train.X, train.y, valid.X if valid is not None else None,
                  valid.y if valid is not None else None, callback=callback)
    if model.stopped_:
        rep.notice(f"training stopped early: {model.stopped_}")
    mirrored = {"kind": augment, "before_chain": True, "n_images": len(train) // 2} if augment else None
    report_result(ctx, model, ds, None, output=output, seed=seed, as_json=as_json, quiet=quiet, t0=t0, name=kind,
                  augmentation=mirrored)


@click.command()
@common_options("svm")
@click.option("--delta", type=click.FloatRange(min=0, min_open=True), default=estimator_defaults("svm")["delta"],
              show_default=True,
              help="Hinge margin.")
@click.option("--squared-hinge", is_flag=True, help="Use max(0, margin)^2 instead of max(0, margin).")
@click.option("--multiclass", type=click.Choice(["weston-watkins", "ovr"]),
              default=estimator_defaults("svm")["multiclass"], show_default=True,
              help="weston-watkins: one hinge per wrong class against the true one; ovr: one binary SVM per "
                   "class against the rest (with --squared-hinge the L2-SVM of Coates, Lee & Ng).")
def svm(ctx, solver, reg, lr, epochs, iters, batch_size, lr_decay, bias_trick, weight_scale, class_weight, augment,
        preprocess_spec, output, delta, squared_hinge, multiclass, seed, as_json, quiet, data, n_train, n_test, val,
        size, color):
    """Train a linear multiclass SVM with minibatch SGD or full-batch L-BFGS.

    
    Weston-Watkins (default):  L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + delta)
    --multiclass ovr:          L_i = sum_j max(0, delta - t_ij s_j),
                               t_ij = +1 if j == y_i else -1
    (each squared with --squared-hinge)

    The training split (49000 of CIFAR-10's 50000 by default) is fitted, the validation split (the
    last 1000) picks the best epoch (lbfgs: the best check), whose weights are kept and saved; the test
    split is scored.
    Progress goes to stderr, one line per epoch.

    \b
    Objective (N examples, D features, C classes, W is D x C, bias b):
      L = 1/N sum_i L_i(x_i W + b, y_i) + reg * sum_{d,c} W[d,c]^2
    The bias is never penalised: with the bias trick the last row of the
    (D+1) x C matrix holds b and is left out of the sum.

    \b
    Examples:
      imgclf train svm
      imgclf train svm --reg 1e3 --lr 1e-7 --epochs 20 -o svm.npz
      imgclf train svm --squared-hinge --delta 0.5 --json
      imgclf train svm --data mnist --class-weight balanced
      imgclf data export cifar10 | imgclf preprocess mean | imgclf train svm --preprocess none

    
    Coates, Lee & Ng's recipe (k-means features, L2-SVM with C = 100 by
    L-BFGS; C = 1 / (2 reg), so reg 0.005):
      imgclf train svm --preprocess kmeans:1600,standardize:0.01 \\
          --solver lbfgs --multiclass ovr --squared-hinge --reg 0.005
    With the training images' mirrors (2N rows): add --augment flip.
    """
    run(ctx, "svm", dict(solver=solver, reg=reg, lr=lr, epochs=epochs, iters=iters, batch_size=batch_size,
                         lr_decay=lr_decay, delta=delta, squared_hinge=squared_hinge, multiclass=multiclass,
                         bias_trick=bias_trick, weight_scale=weight_scale, class_weight=class_weight,
                         augment=augment),
        preprocess_spec=preprocess_spec, output=output, seed=seed, as_json=as_json, quiet=quiet,
        data=data, n_train=n_train, n_test=n_test, val=val, size=size, color=color)


@click.command()
@common_options("softmax")
def softmax(ctx, solver, reg, lr, epochs, iters, batch_size, lr_decay, bias_trick, weight_scale, class_weight,
            augment, preprocess_spec, output, seed, as_json, quiet, data, n_train, n_test, val, size, color):
    """Train a softmax (multinomial logistic regression) classifier with minibatch SGD or full-batch L-BFGS.

    L_i = -s_{y_i} + log sum_j exp(s_j)   (computed after subtracting max_j s_j)

    The training split (49000 of CIFAR-10's 50000 by default) is fitted, the validation split (the
    last 1000) picks the best epoch (lbfgs: the best check), whose weights are kept and saved; the test
    split is scored.
    Progress goes to stderr, one line per epoch.

    \b
    Objective (N examples, D features, C classes, W is D x C, bias b):
      L = 1/N sum_i L_i(x_i W + b, y_i) + reg * sum_{d,c} W[d,c]^2
    The bias is never penalised: with the bias trick the last row of the
    (D+1) x C matrix holds b and is left out of the sum.

    \b
    Examples:
      imgclf train softmax
      imgclf train softmax --reg 1e3 --epochs 20 -o softmax.npz
      imgclf train softmax --no-bias-trick --json
      imgclf train softmax --solver lbfgs --preprocess hog+colorhist,standardize
      imgclf predict -m softmax.npz cat.png --top 3
    """
    run(ctx, "softmax", dict(solver=solver, reg=reg, lr=lr, epochs=epochs, iters=iters, batch_size=batch_size,
                             lr_decay=lr_decay, bias_trick=bias_trick, weight_scale=weight_scale,
                             class_weight=class_weight, augment=augment),
        preprocess_spec=preprocess_spec, output=output, seed=seed, as_json=as_json, quiet=quiet,
        data=data, n_train=n_train, n_test=n_test, val=val, size=size, color=color)


