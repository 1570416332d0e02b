"""`imgclf tune`: random hyperparameter search (coarse to fine), in parallel or on a Dask cluster."""

from __future__ import annotations

import click
from imgclf.kinds import TRAINED

from ..console import emit_json, format_table, reporter
from ..options import capped_workers, data_options, json_option, load_data, quiet_option, seed_option
from ..training import check_augment_data, check_images

KINDS = TRAINED + ("knn",)  # imgclf/kinds.py
ENSEMBLE_TOP = 5  # trials in the suggested ensemble (on CIFAR-10 five gained more than three: docs/tuning.md)

# Searched when no --param is given: around the train command's defaults (a decade each way for the
# learning rate, two for the regularisation), plus the usual architecture choices.
EXTRA_DEFAULT_SPACE = {
    "twolayer": ["hidden=200,500,1000"],
    "knn": ["k=1,3,5,8,10,15,20", "metric=l1,l2"],
}


def command_for(kind: str) -> tuple[click.Command, str]:
    """The click command a configuration of `kind` is trained with, and how it is spelt."""
    from ..registry import COMMANDS, TRAIN_COMMANDS, load_command

    if kind == "knn":
        return load_command(COMMANDS["knn"]), "imgclf knn"
    return load_command(TRAIN_COMMANDS[kind]), f"imgclf train {kind}"


def train_defaults(cmd: click.Command) -> str | None:
    """The preprocessing spec of the plain training command. Its estimator parameters are the
    estimator's own defaults (the library owns them; `imgclf train KIND` with no flags uses them too),
    so a trial with nothing searched is exactly the plain command."""
    ctx = click.Context(cmd)
    return next((p.process_value(ctx, p.default) for p in cmd.params if p.name == "preprocess_spec"), None)


def default_space(kind: str, estimator: str, X) -> list[str]:
    """Around the estimator's defaults (inspect.signature; "auto" rates as they come out on X): a decade
    each way for the learning rate, two for the regularisation, plus the usual architecture choices."""
    import inspect

    from imgclf.kinds import load_class

    cls = load_class(estimator)
    defaults = {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()}
    if hasattr(cls, "rates_for"):
        defaults["lr"], defaults["reg"] = cls().rates_for(X)
    specs = []
    for name, decades in (("lr", 1), ("reg", 2)):
        v = defaults.get(name)
        if isinstance(v, (int, float)) and v > 0:
            specs.append(f"{name}={v / 10 ** decades:.3g}:{v * 10 ** decades:.3g}:log")
    return specs + EXTRA_DEFAULT_SPACE.get(kind, [])


def _cli_value(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def command_line(cmd: click.Command, base: str, params: dict, extra_args: list[str]) -> tuple[str, list[str]]:
    """The shell command that trains `params`, and the names it cannot express."""
    import shlex

    options = {p.name: p for p in cmd.params if isinstance(p, click.Option)}
    args, missing = [], []
    for name, value in params.items():
        opt = options.get(name)
        if opt is None:
            missing.append(name)
        elif opt.is_flag and opt.secondary_opts:
            args.append(opt.opts[0] if value else opt.secondary_opts[0])
        else:
            args += [opt.opts[0], _cli_value(value)]
    return " ".join([base] + [shlex.quote(a) for a in args + extra_args]), missing


@click.command()
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Random configurations in the first (coarse) round.")
@click.option("--param", "param_specs", multiple=True, metavar="NAME=SPEC",
              help="A searched parameter: NAME=LOW:HIGH:log (log-uniform), NAME=LOW:HIGH (uniform; integer "
                   "bounds give integers), NAME=A,B,C (choices; NAME=500|1024,512 when a choice is a list) or "
                   "NAME=VALUE (fixed). Repeatable. "
                   "Default: lr and reg around the train command's defaults (plus hidden for twolayer, "
                   "k and metric for knn).")
@click.option("--refine", type=click.IntRange(min=0), default=0, show_default=True,
              help="Further rounds, each halving every range (in log space for log ranges) around the best "
                   "quarter of the trials so far and keeping only the choices they used.")
@click.option("--refine-trials", type=click.IntRange(min=1), default=None,
              help="Trials per refinement round [default: --trials].")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials run at once in local worker processes; each gets cores/jobs BLAS and numba threads.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT|local:N",
              help="Run the trials on a Dask cluster (or N local Dask worker processes) instead; the data is "
                   "sent to every worker once. Needs pip install 'imgclf[dask]'.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs for every trial (short trials for a coarse search).")
@click.option("--preprocess", "preprocess_spec", default=None, metavar="CHAIN",
              help="Preprocessing fitted once on the training split [default: the train command's].")
@click.option("--save-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Keep every successful trial's model file as DIR/trial-NNN.npz.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="Scatter of validation accuracy over the two main log-scaled parameters.")
@data_options
@seed_option
@json_option
@quiet_option
@click.pass_context
def tune(ctx, kind, trials, param_specs, refine, refine_trials, jobs, scheduler, epochs, preprocess_spec, save_dir,
         plot, data, n_train, n_test, val, size, color, seed, as_json, quiet):
    """Random search over hyperparameters: every trial trains on the training split and is scored on
    the validation split; the table is sorted by validation accuracy and the best configuration is
    printed as a ready `imgclf train` command line.

    Trials are drawn from --seed before any runs, so the same command gives the same trials whatever
    the parallelism; every trial trains with the same seed, which makes the printed command reproduce
    the best trial exactly. Parameters not searched keep the train command's defaults. A trial that
    fails or diverges is listed with its reason and the search goes on. Ctrl-C stops the search and
    still prints the finished trials (exit status 130).

    \b
    Examples:
      imgclf tune softmax --trials 20
      imgclf tune twolayer --trials 40 --param lr=1e-4:1e-2:log --param reg=1e-6:1e-2:log \\
          --param hidden=100,200,500 --epochs 4 --n-train 10000 --jobs 2
      imgclf tune twolayer --trials 16 --refine 2 --save-dir trials --plot search.png
      imgclf tune svm --scheduler tcp://10.0.0.5:8786 --trials 100
      imgclf tune knn --param k=1,3,5,10,20 --param metric=l1,l2 --scheduler local:2
      imgclf ensemble -m trials/trial-003.npz -m trials/trial-011.npz -o ens.npz
    """
    import time

    from imgclf import limits
    from imgclf.errors import ImgclfError, UsageError
    from imgclf.executors import make_executor
    from imgclf.preprocessing_chain import fit_chain, parse_chain_spec
    from imgclf.tuning import ESTIMATORS, SearchSpace, estimator_params, random_search

    rep = reporter(ctx, quiet)
    t0 = time.perf_counter()
    estimator = ESTIMATORS[kind]
    known = estimator_params(estimator)
    cmd, base = command_for(kind)
    fixed, default_chain = {}, train_defaults(cmd)
    if epochs is not None:
        if "epochs" not in known:
            raise UsageError(f"{kind} has no epochs to set")
        fixed["epochs"] = epochs
    space = SearchSpace.parse(param_specs) if param_specs else None

    ds = load_data(ctx, data, n_train, n_test, val, size, color, quiet=quiet)
    if not ds.has("train") or not ds.has("val"):
        raise UsageError("tuning trains on the training split and scores on the validation split; the data has "
                         f"no non-empty {'val' if ds.has('train') else 'train'} split (set --val N)")
    chain_spec = preprocess_spec if preprocess_spec is not None else default_chain
    chain = parse_chain_spec(chain_spec, seed) if chain_spec and chain_spec.strip().lower() != "none" else []
    # augment=flip on feature rows (or a linear model's mirrors of a chain's output) would fail, or be
    # wrong, in every trial: a usage error now, before the chain is fitted
    if space is not None:
        check_augment_data(kind, getattr(space.params.get("augment"), "values", ()), ds, chain)
    if kind == "convnet":
        check_images(kind, ds, chain)  # else every trial would fail on feature rows
    if chain:
        ds = fit_chain(chain, ds)  # as the printed train command does
    train, valid = ds.get("train"), ds.get("val")
    if space is None:
        space = SearchSpace.parse(default_space(kind, estimator, train.X))  # never searches augment
    for name in space.params:
        fixed.pop(name, None)
    arrays = {"X_train": train.X, "y_train": train.y, "X_val": valid.X, "y_val": valid.y}

    n_total = trials + refine * (refine_trials or trials)
    limits.check("trials", n_total, "the number of trials (--trials + --refine x --refine-trials)")
    saver = _Saver(save_dir, kind, ds, seed) if save_dir else None
    jobs, scheduler = capped_workers(rep, jobs, scheduler)
    with make_executor(jobs=jobs, scheduler=scheduler) as ex:
        rep.log(f"tune {kind}: {n_total} trials on {len(train)} training / {len(valid)} validation examples, "
                f"{ex.description}; searching {', '.join(f'{n}={d}' for n, d in space.describe().items())}")
        shared = ex.share(arrays)
        with rep.progress(f"tune {kind}", n_total) as advance:
            best = [None]

            def on_trial(trial):
                if trial.ok and (best[0] is None or trial.val_acc > best[0]):
                    best[0] = trial.val_acc
                if saver:
                    saver.save(trial)
                what = f"val {trial.val_acc:.4f}" if trial.ok else f"{trial.status}: {trial.reason}"
                rep.log(f"trial {trial.index:3d} (round {trial.round}) {_params_text(trial.params)}: {what} "
                        f"({trial.seconds:.1f}s)")
                advance(status=f"best {best[0]:.4f}" if best[0] is not None else "")

            result = random_search(estimator, space, shared, ex, trials=trials, refine=refine,
                                   refine_trials=refine_trials, fixed=fixed, seed=seed,
                                   keep_models=bool(save_dir), on_trial=on_trial)
    for note in result.notes:
        rep.notice(note)

    extra_args = _data_args(data, n_train, n_test, val, size, color)
    if preprocess_spec is not None:
        extra_args += ["--preprocess", preprocess_spec]
    if any(p.name == "seed" for p in cmd.params):  # kNN has no randomness, and no --seed
        extra_args += ["--seed", str(seed)]
    best = result.best
    shown = {"epochs": fixed["epochs"]} if epochs is not None else {}
    command, missing = command_line(cmd, base, {**shown, **best.params}, extra_args) if best else (None, [])
    if missing:
        rep.notice(f"the command line cannot set {', '.join(missing)}; use the Python API for those")
    top_files = [t.path for t in result.ranked() if t.ok and t.path][:ENSEMBLE_TOP]
    ensemble_cmd = ("imgclf ensemble " + " ".join(f"-m {p}" for p in top_files)) if len(top_files) > 1 else None
    if plot:
        _plot(result, space, kind, plot)
        rep.log(f"wrote the search scatter to {plot}")
    seconds = time.perf_counter() - t0

    if as_json:
        emit_json({"model": kind, "accuracy": best.val_acc if best else None, "split": "val",
                   "n_train": len(train), "n_eval": len(valid), "seconds": seconds, "search_seconds": result.seconds,
                   "executor": ex.description, "interrupted": result.interrupted,
                   "spaces": [s.describe() for s in result.spaces], "fixed": _jsonable(fixed),
                   "trials": [t.as_dict() for t in result.ranked()], "best": best.as_dict() if best else None,
                   "command": command, "ensemble_command": ensemble_cmd, "notes": result.notes})
    else:
        _print_table(result, space, kind, len(train), len(valid))
        if best:
            click.echo(f"\nbest: trial {best.index}, val accuracy {best.val_acc:.4f}\n  {command}")
        if ensemble_cmd:
            click.echo(f"ensemble of the top trials:\n  {ensemble_cmd}")
        click.echo(f"{len(result.trials)} trials in {result.seconds:.1f}s ({ex.description})")
    if result.interrupted:
        click.echo(f"Interrupted: {len(result.trials)} of {n_total} trials finished.", err=True)
        ctx.exit(130)
    if result.trials and best is None:
        first = min(result.trials, key=lambda t: t.index)
        raise ImgclfError(f"every trial failed (trial {first.index}: {first.reason})")


class _Saver:
    """Writes each successful trial's model file (with the search's preprocessing chain) as it arrives."""

    def __init__(self, directory, kind, ds, seed):
        from pathlib import Path

        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ds, self.seed = ds, seed

    def save(self, trial) -> None:
        from imgclf import storage
        from imgclf.io import modelfile

        if trial.model is None:
            return
        model_kind, hyper, arrays, history = trial.model
        trial.model = None  # the arrays are on disk now; the search keeps only the path
        model = modelfile.model_class(model_kind).from_arrays(hyper, arrays)
        bundle = modelfile.ModelBundle(model, list(self.ds.classes), self.ds.input_shape,
                                       list(self.ds.transforms), history, self.seed,
                                       {"trained_on": self.ds.name, "n_train": len(self.ds.get("train")),
                                        "tuning_trial": trial.index, "val_accuracy": trial.val_acc,
                                        "tuned": _jsonable(trial.params)})
        path = self.dir / f"trial-{trial.index:03d}.npz"
        storage.save_model(bundle, path)
        trial.path = str(path)


def _data_args(data, n_train, n_test, val, size, color) -> list[str]:
    args = []
    for flag, value in (("--data", data), ("--n-train", n_train), ("--n-test", n_test), ("--val", val),
                        ("--color", color)):
        if value is not None:
            args += [flag, str(value)]
    if size is not None:
        args += ["--size", f"{size[0]}x{size[1]}"]
    return args


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={_cli_value(v)}" for k, v in params.items())


def _print_table(result, space, kind, n_train, n_val) -> None:
    names = space.searched() or list(space.params)
    rows = []
    for rank, t in enumerate(result.ranked(), start=1):
        status = "ok" if t.ok else f"{t.status}: {t.reason}"
        if len(status) > 70:
            status = status[:67] + "..."
        rows.append([rank if t.ok else "-", t.index, t.round] + [_cli_value(t.params.get(n)) for n in names]
                    + [t.val_acc if t.val_acc is not None else "-", t.train_acc if t.train_acc is not None else "-",
                       f"{t.seconds:.1f}", status])
    headers = ["rank", "trial", "round"] + names + ["val_acc", "train_acc", "seconds", "status"]
    click.echo(format_table(headers, rows, title=f"tune {kind}: {len(result.trials)} trials "
                                                 f"({n_train} train / {n_val} val), best first"))


def _plot(result, space, kind, path) -> None:
    from imgclf.errors import UsageError
    from imgclf.plots import save_png, scatter_plot

    ok = [t for t in result.trials if t.ok]
    if not ok:
        raise UsageError("no successful trial to plot")
    logs = space.log_scaled()
    numeric = [n for n in space.searched() if n not in logs and all(isinstance(t.params[n], (int, float)) for t in ok)]
    axes = (logs + numeric)[:2]
    acc = [t.val_acc for t in ok]
    title = f"tune {kind}: validation accuracy of {len(ok)} trials"
    if len(axes) == 2:
        img = scatter_plot([t.params[axes[0]] for t in ok], [t.params[axes[1]] for t in ok], acc,
                           log_x=axes[0] in logs, log_y=axes[1] in logs, title=title, xlabel=axes[0],
                           ylabel=axes[1], value_label="val acc")
    elif len(axes) == 1:
        img = scatter_plot([t.params[axes[0]] for t in ok], acc, log_x=axes[0] in logs, title=title,
                           xlabel=axes[0], ylabel="val accuracy")
    else:
        img = scatter_plot([t.index for t in ok], acc, title=title, xlabel="trial", ylabel="val accuracy")
    save_png(img, path)
