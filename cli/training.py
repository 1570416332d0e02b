"""What every `imgclf train <net>` command shares: optimiser, schedule, stopping, checkpoint, logging and
plotting options (click decorators), and `fit_with_progress`, which trains any Solver-backed model
with a rich progress bar, one log line per epoch, and the Ctrl-C behaviour.

A model used here follows the NeuralNet contract: `fit(X, y, X_val, y_val, *, callback, checkpoint_dir,
keep_checkpoints, resume, log, stop_signal, checkpoint_extra)` passing them to imgclf.nn.solver.Solver, and afterwards `result_` (the
Solver's TrainResult), `history_`, `stopped_`, `best_epoch_`. Its constructor takes the training
hyperparameters `optim, lr, optim_options, lr_schedule, reg, epochs, batch_size, augment, patience,
label_smoothing, ema, lookahead, bias_lr_scale`
(what `training_params(**options)` returns).
"""

from __future__ import annotations

import functools

import click

# Option name -> key in imgclf.nn.optim.DEFAULTS, and the optimisers it applies to.
_OPTIM_SETTINGS = {
    "momentum": ("momentum", ("momentum", "nesterov")),
    "beta1": ("beta1", ("adam",)),
    "beta2": ("beta2", ("adam",)),
    "decay_rate": ("decay_rate", ("rmsprop",)),
    "epsilon": ("epsilon", ("adagrad", "rmsprop", "adam")),
}
# The update rules of imgclf.nn.optim.RULES (a test keeps them equal; importing it would load numpy
# into `--help`).
OPTIMISERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")

TRAINING_KEYS = ("optim", "lr", "lr_schedule", "reg", "epochs", "batch_size", "augment", "patience", "class_weight",
                 "label_smoothing", "ema", "lookahead", "bias_lr_scale")
RUN_KEYS = ("momentum", "beta1", "beta2", "decay_rate", "epsilon", "checkpoint_dir", "keep_checkpoints", "resume",
            "log_file", "plot")


@functools.lru_cache(maxsize=None)
def estimator_defaults(kind: str) -> dict:
    """The constructor defaults of a kind's estimator (imgclf/kinds.py): the library owns the defaults
    and the options show them; a test checks them against inspect.signature."""
    from imgclf.kinds import ESTIMATORS

    return class_defaults(ESTIMATORS[kind])


def class_defaults(target: str) -> dict:
    """The constructor defaults of the class 'module:Name', read from its source, not by importing it,
    so that `--help` never loads numpy."""
    import ast
    import importlib.util
    from pathlib import Path

    module, name = target.split(":")
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = [a.arg for a in init.args.args[1:]]
    return {a: ast.literal_eval(d) for a, d in zip(args[len(args) - len(init.args.defaults):], init.args.defaults)}


class AutoOr(click.ParamType):
    """`auto` (the estimator works the value out from the data) or a value of `inner`."""

    def __init__(self, inner: click.ParamType):
        self.inner = inner
        self.name = f"auto|{inner.name}"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        return self.inner.convert(value, param, ctx)


def _class_weight(ctx, param, value):
    if value is None or value in ("none", "balanced"):
        return None if value == "none" else value
    weights = {}
    for part in value.split(","):
        label, sep, weight = part.partition("=")
        try:
            if not sep or not label.strip():
                raise ValueError
            weights[label.strip()] = float(weight)
            if not weights[label.strip()] >= 0:
                raise ValueError
        except ValueError:
            msg = f"expected balanced or CLASS=WEIGHT,... (e.g. cat=2,dog=0.5), got {value!r}"
            raise click.BadParameter(msg) from None
    return weights


def _lookahead(ctx, param, value):
    """--lookahead K:ALPHA or K:ramp, checked before any data is loaded (the library's rules)."""
    if value in (None, "", "none"):
        return None
    from imgclf.errors import UsageError
    from imgclf.nn.optim import parse_lookahead

    try:
        parse_lookahead(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def class_weight_option(func):
    return click.option("--class-weight", callback=_class_weight, default=None, metavar="balanced|C=W,...",
                        help="Weigh the loss of each class: balanced (n / (classes x count), for imbalanced "
                             "data) or CLASS=WEIGHT pairs by class name or index (others weigh 1).")(func)


def _precision(ctx, param, value):
    """--precision bf16 is refused before any data is loaded where the CPU or MKL lacks it."""
    if value == "bf16":
        from imgclf import bf16

        bf16.require("precision")
    return value


def precision_option(kind: str):
    """--precision float32|bf16 of the nets' training products (NeuralNet's `precision`)."""
    return click.option("--precision", type=click.Choice(["float32", "bf16"]),
                        default=estimator_defaults(kind)["precision"], show_default=True, callback=_precision,
                        help="The training steps' matrix products: bf16 rounds their inputs to bfloat16 and "
                             "accumulates in float32 (CPUs with AVX512-BF16/AMX-BF16 and Intel MKL: pip install "
                             "'imgclf[bf16]'); weights, optimiser and batch norm stay float32, and predictions "
                             "are computed in float32 either way.")


def _conv_backend(ctx, param, value):
    """--conv-backend dnnl is refused before any data is loaded where oneDNN is not installed."""
    if value == "dnnl":
        from imgclf import dnnl

        dnnl.require("conv_backend")
    return value


def conv_backend_option(func):
    """--conv-backend auto|im2col|dnnl of ConvNet (`conv_backend`)."""
    return click.option("--conv-backend", type=click.Choice(["auto", "im2col", "dnnl"]),
                        default=estimator_defaults("convnet")["conv_backend"], show_default=True,
                        callback=_conv_backend,
                        help="How the convolutions run: im2col + one matrix product, dnnl (oneDNN's direct "
                             "convolutions: pip install 'imgclf[dnnl]'; the fast preset's epoch ran 1.5x faster in "
                             "float32 and 2.2x with --precision bf16 on an AMX CPU, docs/dnnl.md), or auto: dnnl "
                             "where installed (im2col for maps of 4x4 pixels or fewer). A speed choice: the model is "
                             "the same and is not tied to it.")(func)


def class_weights_for(spec, ds):
    """--class-weight for the estimator: class names of the data -> their label indices."""
    if not isinstance(spec, dict):
        return spec
    from imgclf.errors import UsageError

    names = [str(c) for c in ds.classes]
    out = {}
    for label, weight in spec.items():
        if label in names:
            out[names.index(label)] = weight
        elif label.isdigit() and int(label) < len(names):
            out[int(label)] = weight
        else:
            raise UsageError(f"--class-weight names {label!r}, which is neither a class of the data "
                             f"({', '.join(names)}) nor an index below {len(names)}")
    return out


def training_options(kind: str):
    """Decorator adding the shared training options, their defaults those of `kind`'s estimator."""
    d = estimator_defaults(kind)

    def wrap(func):
        opts = [
            click.option("--optim", type=click.Choice(OPTIMISERS), default=d["optim"], show_default=True,
                         help="Update rule."),
            click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=d["lr"], show_default=True,
                         help="Base learning rate."),
            click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=None,
                         help="Momentum for momentum/nesterov [default: 0.9]."),
            click.option("--beta1", type=click.FloatRange(0, 1, max_open=True), default=None,
                         help="Adam's first-moment decay [default: 0.9]."),
            click.option("--beta2", type=click.FloatRange(0, 1, max_open=True), default=None,
                         help="Adam's second-moment decay [default: 0.999]."),
            click.option("--decay-rate", type=click.FloatRange(0, 1, max_open=True), default=None,
                         help="RMSprop's squared-gradient decay [default: 0.99]."),
            click.option("--epsilon", type=click.FloatRange(min=0, min_open=True), default=None,
                         help="Adagrad/RMSprop/Adam denominator guard [default: 1e-8]."),
            click.option("--lr-schedule", default=d["lr_schedule"] or "none", show_default=True, metavar="SPEC",
                         help="Learning-rate schedule: step:F[:E] (times F every E epochs), exp:K "
                              "(lr0 e^-Kt), inv:K (lr0/(1+Kt)), warmup:P[:S[:E]] (per step: linear from S*lr0 to "
                              "lr0 over the first fraction P of the run, then linear to E*lr0; default 0.2:0.2:0; "
                              "airbench: warmup:0.23:0.2:0.07) or none."),
            click.option("--reg", type=click.FloatRange(min=0), default=d["reg"], show_default=True,
                         help="L2 strength: reg * sum(W^2) over the weight matrices."),
            click.option("--epochs", type=AutoOr(click.IntRange(min=1)), default=d["epochs"], show_default=True,
                         help="Passes over the training split; auto: the measured number, stretched to at least "
                              "600 steps (with an early stop) on small data."),
            click.option("--batch-size", type=click.IntRange(min=1), default=d["batch_size"], show_default=True,
                         help="Examples per step."),
            click.option("--augment", default=d["augment"] or "none", show_default=True, metavar="SPEC",
                         help="Training-time augmentation of image data: flip, flip:alt (alternating: each "
                              "image flipped at random in the first epoch, then the other way each epoch), "
                              "crop:PAD (zero padding), crop:PAD:reflect (reflect padding, as airbench), e.g. "
                              "flip,crop:4 or flip:alt,crop:2:reflect; none; "
                              "auto = the kind's choice for colour images, none for grayscale (digits) or "
                              "feature vectors."),
            click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True),
                         default=d.get("label_smoothing", 0.0), show_default=True,
                         help="Softmax target (1-e) onehot + e/classes instead of onehot."),
            click.option("--ema", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=d.get("ema"),
                         help="Keep a moving average of the weights with this decay per step (e.g. 0.999); it is "
                              "what is evaluated, kept and saved."),
            click.option("--lookahead", default=d.get("lookahead") or "none", show_default=True,
                         metavar="K:ALPHA|K:ramp", callback=_lookahead,
                         help="Lookahead around the update rule: after every K steps the slow weights move ALPHA "
                              "of the way to the live ones, which restart from them (e.g. 5:0.5); K:ramp is "
                              "airbench's averaging (e.g. 5:ramp: ALPHA = 1 - 0.95^K (t/T)^3 at step t of T, "
                              "batch-norm statistics included, live = slow at each epoch's end); none: off."),
            click.option("--bias-lr-scale", type=click.FloatRange(min=0, min_open=True),
                         default=d.get("bias_lr_scale", 1.0), show_default=True,
                         help="Learning rate of the biases and batch-norm betas as a multiple of --lr (airbench: "
                              "64)."),
            click.option("--patience", type=click.IntRange(min=1), default=None,
                         help="Stop when val accuracy has not improved for this many epochs."),
            class_weight_option,
            click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
                         help="Write a checkpoint (weights, optimiser and RNG state) every epoch: "
                              "ckpt_epochNNN_valA.AAAA.npz."),
            click.option("--keep-checkpoints", type=click.IntRange(min=0), default=3, show_default=True,
                         help="Keep the newest N checkpoints (and the best epoch's); 0 keeps all."),
            click.option("--resume", type=click.Path(dir_okay=False, exists=True), default=None, metavar="CKPT",
                         help="Continue from a checkpoint, with the model, training and preprocessing settings "
                              "stored in it (give the same data options; --epochs may extend the run)."),
            click.option("--log", "log_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                         help="Append one JSON line per epoch (and stop events) to FILE."),
            click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
                         help="Draw the training curves: loss per iteration, train/val accuracy per epoch."),
        ]
        for opt in reversed(opts):
            func = opt(func)
        return func

    return wrap


def training_params(optim, lr, lr_schedule, reg, epochs, batch_size, augment, patience, class_weight=None,
                    momentum=None, beta1=None, beta2=None, decay_rate=None, epsilon=None, label_smoothing=0.0, ema=None,
                    lookahead=None, bias_lr_scale=1.0, **_):
    """The model's training hyperparameters from the shared options; settings of other optimisers
    than the chosen one are refused rather than silently ignored."""
    given = {"momentum": momentum, "beta1": beta1, "beta2": beta2, "decay_rate": decay_rate, "epsilon": epsilon}
    options = {}
    for name, value in given.items():
        if value is None:
            continue
        key, applies = _OPTIM_SETTINGS[name]
        if optim not in applies:
            raise click.UsageError(f"--{name.replace('_', '-')} applies to {', '.join(applies)}, not --optim {optim}")
        options[key] = value
    return {"optim": optim, "lr": lr, "optim_options": options or None,
            "lr_schedule": None if lr_schedule in (None, "", "none") else lr_schedule, "reg": reg, "epochs": epochs,
            "batch_size": batch_size, "augment": None if augment in (None, "", "none") else augment,
            "patience": patience, "class_weight": class_weight, "label_smoothing": label_smoothing or 0.0, "ema": ema,
            "lookahead": None if lookahead in (None, "", "none") else lookahead, "bias_lr_scale": bias_lr_scale}


def model_settings(ctx: click.Context, options: dict, arch: dict, preprocess_spec, seed):
    """Split the shared training options into (run, params, extra, preprocess_spec, seed).

    `params` are the model's constructor arguments (architecture + training); with --resume they, the
    preprocessing spec and the seed come from the checkpoint instead.
    """
    run = {k: options.pop(k) for k in RUN_KEYS}
    optim_settings = {k: run[k] for k in ("momentum", "beta1", "beta2", "decay_rate", "epsilon")}
    params = dict(arch, **training_params(**options, **optim_settings))
    extra = {"preprocess": preprocess_spec, "seed": seed}
    if run["resume"]:
        stored, extra = resume_settings(ctx, run["resume"], options["epochs"])
        # Settings a (hand-edited) checkpoint lacks keep the command's values; unknown ones are dropped.
        params = {**params, **{k: v for k, v in stored.items() if k in params}}
        preprocess_spec, seed = extra.get("preprocess", preprocess_spec), extra.get("seed", seed)
        params.pop("random_state", None)
    return run, params, extra, preprocess_spec, seed


def load_training_data(ctx: click.Context, preprocess_spec, *, seed: int, quiet: bool, mirror: bool = False,
                       before_fit=None, **data_options):
    """Load --data with its splits and fit the --preprocess chain on the training split (`none`: no chain).

    --seed seeds the chain's random steps too (k-means features), unless the spec gives them a seed.
    `mirror`: append the horizontal mirrors of the training images before the chain (features of a mirror
    image are not a permutation of the original's), so the chain is fitted on, and transforms, 2N rows;
    the standardisation the model's rows get is then that of the rows it trains on. Data that arrives
    already preprocessed (a stream or .npz whose chain is not empty) is refused with `mirror`: its mirrors
    would be those of transformed images or of feature rows, not of the images.
    `before_fit(ds, chain)`: a check of the loaded data and the unfitted --preprocess steps (empty for
    `none`), run before the chain is fitted (which can take minutes: k-means)."""
    from imgclf.datasets.base import Dataset, Split
    from imgclf.errors import UsageError
    from imgclf.mirror import append_mirrors
    from imgclf.preprocessing_chain import fit_chain, parse_chain_spec

    from .options import load_data

    ds = load_data(ctx, quiet=quiet, **data_options)
    if not ds.has("train"):
        raise UsageError("the data has no training split to fit on")
    if mirror:
        if ds.transforms:
            steps = " -> ".join(t.kind for t in ds.transforms)
            raise UsageError(f"augment flip: the data was already preprocessed by {steps}; mirror the images "
                             "before preprocessing: give the raw images and the steps with --preprocess (a mirrored "
                             "preprocessed image is not the preprocessed mirror image, and feature rows have no "
                             "left and right)", param="augment")
        X, y, _ = append_mirrors(ds.splits["train"].X, ds.splits["train"].y, param="augment")
        ds = Dataset({**ds.splits, "train": Split(X, y)}, ds.classes, ds.image_shape, ds.transforms, ds.name,
                     ds.report)
    chain = parse_chain_spec(preprocess_spec, seed) if preprocess_spec and preprocess_spec.strip().lower() != "none" \
        else []
    if before_fit is not None:
        before_fit(ds, chain)
    return fit_chain(chain, ds) if chain else ds


def _feature_rows(ds, chain) -> str | None:
    """How the data reaches the model as feature rows rather than (N, H, W, C) images, known before the
    --preprocess `chain` is fitted (each step knows whether it keeps its input's shape); None: images."""
    if len(ds.feature_shape) != 3:
        steps = " -> ".join(t.kind for t in ds.transforms)
        return (f"the data was preprocessed by {steps} into" if steps else "the data was made of") + \
            f" feature rows of shape {ds.feature_shape}"
    flat = next((t for t in chain if not t.keeps_shape()), None)
    if flat is not None:
        return f"--preprocess {' -> '.join(t.kind for t in chain)} turns the images into feature rows ({flat.kind} does)"
    return None


def check_images(kind: str, ds, chain=()) -> None:
    """A model that needs images (the convnet) refused feature rows, before the chain is fitted."""
    from imgclf.errors import UsageError

    rows = _feature_rows(ds, chain)
    if rows is not None:
        raise UsageError(f"a {kind} needs images (N, H, W, C); {rows} (give the raw images; a chain that keeps them "
                         "images, such as mean, normalize or zca, may follow)")


def check_augment_data(kind: str, specs, ds, chain=()) -> None:
    """Refuse augmentation the data cannot take, before any training and before the --preprocess `chain`
    (unfitted steps still to apply to ds) is fitted: the nets flip and crop, per batch, the images they
    train on, so feature rows (a chain's projection, or a stream already preprocessed into features) are
    a usage error, as `train svm --augment flip` refuses preprocessed data; a linear model given
    augment=flip by `tune` mirrors what it is fitted on, the chain's output, so any chain is refused
    there. `specs`: the augmentation specs the run may use ("auto" and "none" pass)."""
    from imgclf.errors import UsageError
    from imgclf.nn import augment as augment_mod

    for spec in specs:
        if spec is None or (isinstance(spec, str) and spec in ("auto", "none")):
            continue
        if kind in ("svm", "softmax"):
            if ds.transforms or chain:
                done = (f"the data was already preprocessed by {' -> '.join(t.kind for t in ds.transforms)}"
                        if ds.transforms else f"the model would mirror the output of --preprocess "
                                              f"{' -> '.join(t.kind for t in chain)}, not the images")
                raise UsageError(f"augment {spec}: {done}; mirror the images before preprocessing: train {kind} "
                                 "--augment flip mirrors the raw images before its --preprocess chain", param="augment")
            continue
        rows = _feature_rows(ds, chain) if augment_mod.parse(spec) is not None else None
        if rows is not None:
            raise UsageError(f"augment {spec}: {rows}; flips and crops need images (N, H, W, C): give the raw images "
                             "(a chain that keeps them images, such as mean or normalize, may follow) or drop the "
                             "augmentation", param="augment")


def resume_settings(ctx: click.Context, path: str, epochs: int) -> tuple[dict, dict]:
    """(model hyperparameters, extra) stored in a checkpoint; --epochs overrides only when given."""
    from click.core import ParameterSource

    from imgclf.errors import ModelFileError, UsageError
    from imgclf.io.checkpoint import read as read_checkpoint
    from imgclf.validation import check_int

    meta, _ = read_checkpoint(path)
    model = meta.get("model") or {}
    if isinstance(model, dict) and "hyperparameters" not in model:
        raise ModelFileError(f"{path}: the checkpoint does not record its model's settings")
    if not isinstance(model, dict) or not isinstance(model.get("hyperparameters"), dict):
        raise ModelFileError(f"{path}: the checkpoint's 'model' field is malformed")
    if model.get("kind") != ctx.info_name:  # the command's name is the kind it trains (twolayer, convnet)
        raise ModelFileError(f"{path}: a checkpoint of a {model.get('kind')} run, not a {ctx.info_name} one; resume "
                             f"it with the command that wrote it")
    params = {k: v for k, v in model["hyperparameters"].items() if not k.endswith("_")}
    if ctx.get_parameter_source("epochs") == ParameterSource.COMMANDLINE:
        params["epochs"] = epochs
    extra = meta.get("extra") or {}
    if not isinstance(extra, dict):
        raise ModelFileError(f"{path}: the checkpoint's 'extra' field is malformed")
    # What the CLI keeps there and uses in place of --preprocess and --seed.
    spec, seed = extra.get("preprocess"), extra.get("seed")
    if not (spec is None or isinstance(spec, str)):
        raise ModelFileError(f"{path}: the checkpoint's 'extra' field is malformed (preprocess must be a "
                             f"preprocessing spec, got {spec!r})")
    try:
        check_int(seed, "seed", 0, none=True)
    except UsageError as exc:
        raise ModelFileError(f"{path}: the checkpoint's 'extra' field is malformed ({exc})") from None
    return params, extra


def fit_with_progress(ctx, model, ds, *, name: str, quiet: bool, checkpoint_dir=None, keep_checkpoints=3,
                      resume=None, log_file=None, checkpoint_extra=None):
    """Fit `model` on ds's train split (val picks the best epoch) with progress on stderr.

    Ctrl-C finishes the current step, writes a checkpoint when --checkpoint-dir is set, prints how to
    resume and exits with status 130. A diverged run reports why and keeps its best epoch; with no
    finished epoch it fails (imgclf.errors.Diverged, exit 1)."""
    import contextlib

    import numpy as np

    from imgclf.errors import Diverged

    from .console import reporter

    rep = reporter(ctx, quiet)
    train, valid = ds.get("train"), ds.splits.get("val")
    steps = max(1, len(train) // min(model.batch_size, len(train)))
    rep.log(f"{name}: {len(train)} training examples, {int(np.prod(train.X.shape[1:]))} features, "
            f"{len(ds.classes)} classes" + (f", {len(valid)} validation" if valid is not None else "")
            + (f", augment {model.augment}" if model.augment not in (None, "none") else ""))
    epochs = model.epochs_for(len(train))[0]
    with rep.progress(f"train {name}", epochs * steps) as advance:
        def callback(event, info):
            if event == "step":
                advance(status=f"epoch {info['epoch']}  loss {info['loss']:.4f}")
                return
            val_txt = f"  val {info['val_acc']:.4f}" if info["val_acc"] is not None else ""
            ratio = info["update_ratio"]
            ratio_txt = f"  update/weight {ratio:.1e}" if ratio is not None else ""
            rep.log(f"epoch {info['epoch']:3d}/{epochs}  loss {info['loss']:.4f}  train {info['train_acc']:.4f}"
                    f"{val_txt}  lr {info['lr']:.3g}{ratio_txt}  {info['seconds']:.1f}s")

        budget = contextlib.nullcontext()
        if resume:
            # Progress restarts from the checkpoint's iteration.
            from imgclf import limits
            from imgclf.io.checkpoint import read as read_checkpoint

            meta, arrays = read_checkpoint(resume)
            iteration = meta.get("iteration", 0)
            advance(iteration if isinstance(iteration, int) else 0)
            # A hand-edited checkpoint may not make the model allocate more weights than it holds.
            budget = limits.parameter_budget(sum(a.size for k, a in arrays.items() if k.startswith("param/")))
        with budget:
            model.fit(train.X, train.y, valid.X if valid is not None else None, valid.y if valid is not None else None,
                      callback=callback, checkpoint_dir=checkpoint_dir, keep_checkpoints=keep_checkpoints,
                      resume=resume, log=log_file, stop_signal=True, checkpoint_extra=checkpoint_extra)
    result = model.result_
    if result.stopped == "interrupted":
        if result.checkpoint:
            click.echo(f"Interrupted: checkpoint written to {result.checkpoint}; continue with --resume "
                       f"{result.checkpoint}", err=True)
        else:
            click.echo("Interrupted (no --checkpoint-dir, so nothing was saved).", err=True)
        ctx.exit(130)
    if result.stopped and result.stopped.startswith("diverged"):
        if result.best_epoch is None:
            raise Diverged(f"training {result.stopped}")
        rep.notice(f"training stopped: {result.stopped}")
    elif result.stopped:
        rep.notice(result.stopped)
    return result


def save_curves(result, path, title: str = "") -> None:
    """Loss per iteration above train/val accuracy per epoch, one PNG."""
    import numpy as np

    from imgclf.plots import line_plot, save_png, stack

    losses = result.loss_history
    top = line_plot([("loss", range(1, len(losses) + 1), losses)], title=title or "training loss",
                    xlabel="iteration", ylabel="loss", size=(720, 320))
    epochs = [h["epoch"] for h in result.history]
    series = [("train (sample)", epochs, [h["train_acc"] for h in result.history])]
    if any(h["val_acc"] is not None for h in result.history):
        series.append(("val", epochs, [np.nan if h["val_acc"] is None else h["val_acc"] for h in result.history]))
    bottom = line_plot(series, title="accuracy per epoch", xlabel="epoch", ylabel="accuracy", size=(720, 320))
    save_png(stack([top, bottom]), path)


def report_result(ctx, model, ds, result, *, output, seed, as_json, quiet, t0, name, augmentation=None):
    """Score on test (else val, else train), save with -o, print the table or JSON. Shared by every
    Solver-trained kind; `result` (the Solver's TrainResult) may be None when there is no checkpoint to name.

    `augmentation`: what the command itself did to the training images before the chain (`train svm
    --augment flip`: {"kind": "flip", "before_chain": True, "n_images": N}), kept in the model file's
    metadata (`extra["augmentation"]`) since the model, fitted on the chain's output, did not augment;
    None: the model's own augmentation (`augment_`, the nets') is what is reported."""
    import time

    from imgclf import storage
    from imgclf.io import modelfile

    from .console import emit_json, emit_table, reporter

    rep = reporter(ctx, quiet)
    eval_key = "test" if ds.has("test") else ("val" if ds.has("val") else "train")
    evaluation = ds.get(eval_key)
    accuracy = model.score(evaluation.X, evaluation.y)
    seconds = time.perf_counter() - t0
    train = ds.get("train")
    if output:
        extra = {"trained_on": ds.name, "n_train": len(train), "stopped": model.stopped_}
        if augmentation:
            extra["augmentation"] = augmentation
        bundle = modelfile.ModelBundle(model, list(ds.classes), ds.input_shape, list(ds.transforms),
                                       model.history_, seed, extra)
        storage.save_model(bundle, output)
        rep.log(f"saved the epoch-{model.best_epoch_} weights to {output}")
    best = model.history_[model.best_epoch_ - 1] if model.best_epoch_ else {}
    out = {
        "model": name,
        "accuracy": accuracy,
        "split": eval_key,
        "n_train": len(train),
        "n_eval": len(evaluation),
        "seconds": seconds,
        "val_accuracy": best.get("val_acc"),
        "train_accuracy": best.get("train_acc"),
        "best_epoch": model.best_epoch_,
        "epochs_run": len(model.history_),
        "stopped": model.stopped_,
        "checkpoint": getattr(result, "checkpoint", None),
        "preprocess": [t.describe() for t in ds.transforms],
        "hyperparameters": model.get_params(),
        "augmentation": augmentation["kind"] if augmentation else getattr(model, "augment_", None),
        "history": model.history_,
    }
    if as_json:
        emit_json(out)
        return
    rows = [["accuracy", f"{accuracy:.4f}"], ["split", eval_key], ["n_train", len(train)], ["n_eval", len(evaluation)],
            ["val_accuracy", f"{best['val_acc']:.4f}" if best.get("val_acc") is not None else "-"],
            ["best_epoch", model.best_epoch_], ["epochs_run", len(model.history_)], ["seconds", f"{seconds:.1f}"]]
    if model.stopped_:
        rows.append(["stopped", model.stopped_])
    emit_table(["metric", "value"], rows, title=f"{name} on {ds.name or 'data'}")
