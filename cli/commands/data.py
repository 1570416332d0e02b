"""`imgclf data`: find, describe, fetch and export datasets."""

from __future__ import annotations

import click

from ..console import emit_json, emit_table, reporter
from ..options import binary_output_target, data_options, json_option, load_data, quiet_option


@click.group()
def data():
    """Find, describe, fetch and export datasets.

    \b
    Examples:
      imgclf data list
      imgclf data info cifar10
      imgclf data export cifar10 --n-train 5000 --n-test 500 > small.npz
      imgclf data export shapes | imgclf data info -
    """


@data.command("export")
@click.argument("name", required=False)
@data_options
@click.option("-o", "--output", default="-", metavar="FILE|-", help="Where to write the pipeline .npz (default stdout).")
@quiet_option
@click.pass_context
def export(ctx, name, data, n_train, n_test, val, size, color, output, quiet):
    """Write a dataset as a pipeline .npz (to stdout by default) for other commands to read.

    NAME (or --data) is a dataset name, a path, or - for stdin. The stream holds X_train/y_train,
    X_val/y_val and X_test/y_test, class names, the image shape and the preprocessing chain so far
    (see docs/format.md).

    \b
    Examples:
      imgclf data export cifar10 --n-train 5000 --n-test 500 -o small.npz
      imgclf data export mnist | imgclf preprocess mean | imgclf knn --k 3
    """
    from imgclf.io import pipeline

    target = binary_output_target(output)
    ds = load_data(ctx, name or data, n_train, n_test, val, size, color, quiet=quiet)
    pipeline.write(ds, target)
    reporter(ctx, quiet).log(f"exported {ds.name}: " + ", ".join(f"{k} {len(v)}" for k, v in ds.splits.items()))


@data.command("info")
@click.argument("name", required=False)
@data_options
@json_option
@quiet_option
@click.pass_context
def info(ctx, name, data, n_train, n_test, val, size, color, as_json, quiet):
    """Describe a dataset or pipeline stream: splits, shapes, classes, label counts, chain.

    \b
    Examples:
      imgclf data info cifar10
      imgclf data export shapes | imgclf data info -
    """
    ds = load_data(ctx, name or data, n_train, n_test, val, size, color, quiet=quiet)
    summary = ds.summary()
    if as_json:
        emit_json(summary)
        return
    click.echo(f"dataset: {summary['name']}")
    click.echo(f"image shape: {tuple(summary['image_shape'])}  features: {tuple(summary['feature_shape'])}  dtype: {summary['dtype']}")
    click.echo(f"classes: {', '.join(summary['classes'])}")
    click.echo("chain: " + (" -> ".join(t["kind"] for t in summary["transforms"]) or "(none)"))
    rows = [[k, n] + summary["label_counts"][k] for k, n in summary["splits"].items()]
    emit_table(["split", "n"] + [str(i) for i in range(len(summary["classes"]))], rows)


@data.command("list")
@json_option
def list_(as_json):
    """List the known datasets and where each was found.

    Named datasets are looked up in the folders of IMGCLF_DATA (separated by the OS path separator),
    then ./data, then the user cache directory.
    """
    from imgclf import config
    from imgclf.datasets.registry import KNOWN, find
    from imgclf.datasets.sizes import disk_size

    rows = []
    for name in KNOWN:
        path = None if name == "shapes" else find(name)
        where = "built in" if name == "shapes" else (str(path) if path else "not found")
        rows.append({"name": name, "path": where, "bytes": disk_size(path) if path else None,
                     "get": KNOWN[name].how_to_get})
    if as_json:
        emit_json({"datasets": rows, "search_path": [str(p) for p in config.data_search_path()]})
        return
    emit_table(["name", "where", "size MB"],
               [[r["name"], r["path"], f"{r['bytes'] / 1e6:.1f}" if r["bytes"] else "-"] for r in rows])
    click.echo("search path: " + ", ".join(str(p) for p in config.data_search_path()))
