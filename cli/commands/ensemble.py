"""`imgclf ensemble`: combine saved models, score each member and the ensemble, save it as one file."""

from __future__ import annotations

import click

from ..console import emit_json, emit_table, reporter
from ..options import data_options, json_option, load_data, quiet_option


@click.command()
@click.option("-m", "--model", "model_paths", multiple=True, required=True, type=click.Path(dir_okay=False),
              metavar="MODEL.npz", help="A member model file (repeat for each member; any kinds, same classes).")
@click.option("--voting", type=click.Choice(["auto", "soft", "hard"]), default="auto", show_default=True,
              help="soft: average the class probabilities; hard: majority vote (ties to the smallest label); "
                   "auto: soft when every member gives probabilities.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="Which split of the data to score.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, metavar="ENS.npz",
              help="Save the ensemble as one model file (members nested) for predict and evaluate.")
@data_options
@json_option
@quiet_option
@click.pass_context
def ensemble(ctx, model_paths, voting, split, output, data, n_train, n_test, val, size, color, as_json, quiet):
    """Combine trained models: average their class probabilities (softmax-type models) or let them vote,
    and report each member's and the ensemble's accuracy.

    Every member applies its own preprocessing chain to the raw images, so members trained with
    different chains (or of different kinds) combine freely; they must share the class list and input
    shape. The saved ensemble is a model file like any other.

    \b
    Examples:
      imgclf ensemble -m a.npz -m b.npz -m c.npz
      imgclf ensemble -m trials/trial-003.npz -m trials/trial-011.npz -o ens.npz --json
      imgclf ensemble -m softmax.npz -m knn.npz --voting hard
      imgclf evaluate -m ens.npz
    """
    import time

    import numpy as np

    from imgclf import storage
    from imgclf.ensemble import ensemble_bundle
    from imgclf.errors import DataError

    from ..predicting import model_inputs

    rep = reporter(ctx, quiet)
    t0 = time.perf_counter()
    members = [storage.load_model(p) for p in model_paths]
    n_trains = {m.extra.get("n_train") for m in members}
    bundle = ensemble_bundle(members, voting, extra={"members": list(model_paths),
                                                     "n_train": n_trains.pop() if len(n_trains) == 1 else None})
    ds = load_data(ctx, data, n_train, n_test, val, size, color, quiet=quiet)
    if list(ds.classes) != list(bundle.classes):
        raise DataError(f"the data's classes {ds.classes} differ from the models' {bundle.classes}")
    part = ds.get(split)
    if not len(part):
        raise DataError(f"the {split} split is empty")
    X = model_inputs(bundle, part.X, ds.transforms, f"the {split} split")
    rep.log(f"scoring {len(members)} members and their ensemble on {len(part)} {split} examples")
    preds, member_preds = [], [[] for _ in members]
    for i in range(0, len(X), 1000):
        p, mp = bundle.model.predict_all(X[i:i + 1000])
        preds.append(p)
        for acc, q in zip(member_preds, mp):
            acc.append(q)
    y = part.y
    accuracy = float(np.mean(np.concatenate(preds) == y))
    member_acc = [float(np.mean(np.concatenate(q) == y)) for q in member_preds]
    seconds = time.perf_counter() - t0
    if output:
        storage.save_model(bundle, output)
        rep.log(f"saved the ensemble of {len(members)} models to {output}")
    mode = "soft" if bundle.model.soft else "hard"
    if as_json:
        emit_json({"model": "ensemble", "accuracy": accuracy, "split": split, "n_train": bundle.extra["n_train"],
                   "n_eval": len(part), "seconds": seconds, "voting": mode,
                   "best_member_accuracy": max(member_acc),
                   "members": [{"path": p, "kind": m.kind, "accuracy": a}
                               for p, m, a in zip(model_paths, members, member_acc)]})
        return
    rows = [[p, m.kind, a] for p, m, a in zip(model_paths, members, member_acc)]
    rows.append([f"ensemble ({mode} voting)", "ensemble", accuracy])
    emit_table(["model", "kind", "accuracy"], rows,
               title=f"{len(members)} models on {ds.name or 'data'} {split} ({len(part)} examples)")
    click.echo(f"ensemble {accuracy:.4f} vs best member {max(member_acc):.4f} ({accuracy - max(member_acc):+.4f})")
