"""`imgclf check grad|loss|overfit KIND`: the sanity checks every trainable model kind should pass."""

from __future__ import annotations

import click

from ..console import emit_json, emit_table, reporter
from ..options import data_options, json_option, load_data, quiet_option, seed_option


def _kinds():
    from imgclf.sanity import CASES

    return list(CASES)


class _Kind(click.ParamType):
    """A model kind from the sanity registry (looked up lazily, so --help stays cheap)."""

    name = "KIND"

    def convert(self, value, param, ctx):
        kinds = _kinds()
        if value not in kinds:
            self.fail(f"{value!r} has no sanity checks; choose from {', '.join(kinds)}", param, ctx)
        return value


@click.group()
def check():
    """Sanity checks for a model kind (svm, softmax, and the nets as they register).

    \b
    Examples:
      imgclf check grad softmax
      imgclf check loss svm
      imgclf check overfit softmax
    """


@check.command("grad")
@click.argument("kind", type=_Kind())
@click.option("--n-checks", type=click.IntRange(min=1), default=10, show_default=True,
              help="Random entries checked per parameter array.")
@seed_option
@json_option
@click.pass_context
def grad(ctx, kind, n_checks, seed, as_json):
    """Compare analytic gradients with centered differences (float64) on small random data.

    Relative error |a - n| / max(|a|, |n|) per parameter, judged by the CS231n thresholds: above 1e-2
    wrong, 1e-4..1e-2 uncomfortable, below 1e-7 good. Entries on a kink (a hinge or ReLU switching
    inside the +-h step) are counted apart and never fail. Exits with status 1 when a check fails.

    \b
    Examples:
      imgclf check grad svm
      imgclf check grad softmax --n-checks 50 --json
    """
    import numpy as np

    from imgclf.sanity import grad_check

    report = grad_check(kind, n_checks=n_checks, rng=np.random.default_rng(seed))
    if as_json:
        emit_json({"kind": kind, **report.as_dict()})
    else:
        emit_table(["parameter", "shape", "checked", "max rel error", "mean rel error", "kinks", "status"],
                   [[p.name, "x".join(map(str, p.shape)), p.checked, f"{p.max_rel_error:.2e}",
                     f"{p.mean_rel_error:.2e}", p.kinks, p.status] for p in report.params],
                   title=f"gradient check: {kind}")
    if not report.ok:
        if not as_json:
            click.echo("FAILED: at least one relative error is above 1e-2", err=True)
        ctx.exit(1)


@check.command("loss")
@click.argument("kind", type=_Kind())
@click.option("--n", "n_examples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Training examples the loss is measured on.")
@data_options
@seed_option
@json_option
@quiet_option
@click.pass_context
def loss(ctx, kind, n_examples, data, n_train, n_test, val, size, color, seed, as_json, quiet):
    """Initial loss with small random weights and no regularisation, against its expected value.

    Softmax should start near ln C (2.303 for 10 classes), the SVM near C - 1 (9 for 10 classes).
    Measured on the first --n training images after subtracting their mean (CIFAR-10 when found,
    else the built-in shapes).

    \b
    Examples:
      imgclf check loss softmax
      imgclf check loss svm --data mnist --json
    """
    import numpy as np

    from imgclf.preprocessing_chain import fit_chain, parse_chain_spec
    from imgclf.sanity import CASES, initial_loss

    ds = load_data(ctx, data, n_train or n_examples, 1, val, size, color, default_val=0, quiet=quiet)
    if not ds.transforms:
        ds = fit_chain(parse_chain_spec("mean"), ds)
    train = ds.get("train")
    measured, expected = initial_loss(kind, train.X, train.y, len(ds.classes), np.random.default_rng(seed))
    result = {"kind": kind, "measured": measured, "expected": expected, "expected_from": CASES[kind].expected_text,
              "n_classes": len(ds.classes), "n": len(train), "data": ds.name,
              "ratio": measured / expected if expected else None}
    if as_json:
        emit_json(result)
    else:
        emit_table(["kind", "data", "n", "classes", "measured", "expected", "expected from"],
                   [[kind, ds.name, len(train), len(ds.classes), measured, expected, result["expected_from"]]],
                   title="initial loss (small random weights, no regularisation)")


@check.command("overfit")
@click.argument("kind", type=_Kind())
@click.option("--n", "n_examples", type=click.IntRange(min=2), default=20, show_default=True,
              help="Training examples to overfit.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the kind's epoch count.")
@data_options
@seed_option
@json_option
@quiet_option
@click.pass_context
def overfit(ctx, kind, n_examples, epochs, data, n_train, n_test, val, size, color, seed, as_json, quiet):
    """Train on a handful of examples without regularisation: training accuracy should reach 100%.

    Uses the first --n training images (mean-subtracted). Exits with status 1 when 100% is not reached.

    \b
    Examples:
      imgclf check overfit softmax
      imgclf check overfit svm --n 50 --json
    """
    import numpy as np

    from imgclf.preprocessing_chain import fit_chain, parse_chain_spec
    from imgclf.sanity import overfit as run_overfit

    rep = reporter(ctx, quiet)
    ds = load_data(ctx, data, n_train or n_examples, 1, val, size, color, default_val=0, quiet=quiet)
    if not ds.transforms:
        ds = fit_chain(parse_chain_spec("mean"), ds)
    train = ds.get("train")
    shown = set()

    def callback(event, info):
        # A line for the first epochs, then every tenth, and the one reaching 100%.
        if event == "epoch" and (info["epoch"] <= 3 or info["epoch"] % 10 == 0
                                 or (info["train_acc"] == 1.0 and "done" not in shown)):
            if info["train_acc"] == 1.0:
                shown.add("done")
            rep.log(f"epoch {info['epoch']:4d}  loss {info['loss']:.4f}  train accuracy {info['train_acc']:.4f}")

    extra = {"epochs": epochs} if epochs else {}
    model, acc = run_overfit(kind, train.X, train.y, np.random.default_rng(seed), callback=callback, **extra)
    reached = next((h["epoch"] for h in model.history_ if h["train_acc"] == 1.0), None)
    result = {"kind": kind, "n": len(train), "train_accuracy": acc, "reached_100_at_epoch": reached,
              "epochs": len(model.history_), "final_loss": model.history_[-1]["loss"] if model.history_ else None}
    if as_json:
        emit_json(result)
    else:
        emit_table(["kind", "n", "train accuracy", "100% at epoch", "final loss"],
                   [[kind, len(train), acc, reached if reached else "never", result["final_loss"]]],
                   title="overfitting a small training set")
    if acc < 1.0:
        if not as_json:
            click.echo(f"FAILED: training accuracy {acc:.4f} < 1.0", err=True)
        ctx.exit(1)
