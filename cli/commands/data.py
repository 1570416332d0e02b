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
      imgclf data get mnist
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
    from imgclf import storage

    target = binary_output_target(output)
    ds = load_data(ctx, name or data, n_train, n_test, val, size, color, quiet=quiet)
    storage.write_stream(ds, target)
    reporter(ctx, quiet).log(f"exported {ds.name}: " + ", ".join(f"{k} {len(v)}" for k, v in ds.splits.items()))


@data.command("info")
@click.argument("name", required=False)
@data_options
@json_option
@quiet_option
@click.pass_context
def info(ctx, name, data, n_train, n_test, val, size, color, as_json, quiet):
    """Describe a dataset or pipeline stream: where it is, splits, shapes, classes, label counts, chain.

    NAME (or --data) is a dataset name, a path, or - for stdin.

    \b
    Examples:
      imgclf data info cifar10
      imgclf data info ./my-photos --size 32x32 --color rgb
      imgclf data export shapes | imgclf data info -
    """
    from ..options import stdin_is_piped

    spec = name or data
    if spec is None and stdin_is_piped():
        spec = "-"
    ds = load_data(ctx, spec, n_train, n_test, val, size, color, quiet=quiet)
    summary = ds.summary()
    summary["source"] = _where(spec or ds.name)
    if as_json:
        emit_json(summary)
        return
    click.echo(f"dataset: {summary['name']}  ({summary['source']})")
    click.echo(f"image shape: {tuple(summary['image_shape'])}  features: {tuple(summary['feature_shape'])}  dtype: {summary['dtype']}")
    click.echo(f"classes: {', '.join(summary['classes'])}")
    click.echo("chain: " + (" -> ".join(t["kind"] for t in summary["transforms"]) or "(none)"))
    rows = [[k, n] + summary["label_counts"][k] for k, n in summary["splits"].items()]
    emit_table(["split", "n"] + [str(i) for i in range(len(summary["classes"]))], rows)


def _where(spec: str) -> str:
    """Where a --data spec was read from, for messages."""
    from imgclf.datasets.registry import resolve

    kind, path = resolve(spec)
    return {"stdin": "<stdin>", "shapes": "built in"}.get(kind) or str(path)


@data.command("get")
@click.argument("name")
@click.option("--url", metavar="URL", default=None,
              help="Download from this mirror instead: the archive's URL for cifar10, a base URL (file names "
                   "are appended) for mnist and fashion-mnist.")
@click.option("--from", "source", metavar="PATH", default=None,
              help="Import a local archive (.tar.gz) or folder instead of downloading.")
@click.option("--dir", "dest", metavar="DIR", default=None,
              help="Data directory to install into (default ./data when it exists, else ~/.cache/imgclf).")
@click.option("--force", is_flag=True, help="Replace the dataset if it is already installed there.")
@json_option
@quiet_option
@click.pass_context
def get(ctx, name, url, source, dest, force, as_json, quiet):
    """Download a dataset, verify its checksum and install it; or import a local copy.

    NAME is cifar10 (python batches), cifar10-binary, mnist or fashion-mnist. Downloads come from
    the official URLs in data/manifest.json and are checked against its sha256 (md5 where that is
    all that is published). Archives are extracted into a temporary folder beside the target and
    renamed into place only once the data loads: an interrupted, truncated or corrupt download
    leaves nothing behind. Archive members that would land outside the target (absolute paths,
    `..`, links pointing outside, devices) are refused. Prints where the dataset now is.

    \b
    Examples:
      imgclf data get cifar10
      imgclf data get mnist --dir ~/datasets && export IMGCLF_DATA=~/datasets
      imgclf data get cifar10 --from ~/Downloads/cifar-10-python.tar.gz
      imgclf data get mnist --from /mnt/shared/mnist
      imgclf data get fashion-mnist --url https://my-mirror.example/fashion/
    """
    from imgclf import config
    from imgclf.datasets import download
    from imgclf.datasets.registry import find
    from imgclf.datasets.sizes import disk_size

    rep = reporter(ctx, quiet)

    def progress(description, total):
        return rep.progress(f"{description} ({total / 1e6:.1f} MB)" if total else description, total)

    result = download.get(name, dest, url=url, source=source, force=force, progress=progress, log=rep.log)
    for note in result.checks:
        rep.log(note)
    if result.status == "present":
        rep.notice(f"{name} is already at {result.path} (use --force to replace it)")
    found = find(result.provides)
    by_name = found is not None and found.resolve() == result.path.resolve()
    if found is None:
        rep.notice(f"{result.path.parent} is not on the data search path; "
                   f"set IMGCLF_DATA={result.path.parent} to use `--data {result.provides}`")
    elif not by_name:
        rep.notice(f"`--data {result.provides}` finds {found} first (search path: "
                   f"{', '.join(str(d) for d in config.data_search_path())}); pass --data {result.path}")
    size = disk_size(result.path)
    if as_json:
        emit_json({"name": name, "provides": result.provides, "status": result.status, "path": str(result.path),
                   "bytes": size, "checks": result.checks, "found_by_name": by_name})
        return
    emit_table(["name", "status", "path", "size MB"], [[name, result.status, str(result.path), f"{size / 1e6:.1f}"]])


@data.command("list")
@json_option
def list_(as_json):
    """List the known datasets, where each was found, its layout and size.

    Named datasets are looked up in the folders of IMGCLF_DATA (separated by the OS path separator),
    then ./data, then the user cache directory; the first match wins.

    \b
    Examples:
      imgclf data list
      IMGCLF_DATA=/mnt/datasets imgclf data list --json
    """
    from imgclf import config
    from imgclf.datasets.registry import KNOWN, detect_layout, find
    from imgclf.datasets.sizes import disk_size
    from imgclf.errors import DataError

    rows = []
    for name in KNOWN:
        path = None if name == "shapes" else find(name)
        where = "built in" if name == "shapes" else (str(path) if path else "not found")
        try:
            layout = "built in" if name == "shapes" else (detect_layout(path) if path else None)
        except DataError:
            layout = "unrecognised"
        rows.append({"name": name, "path": where, "layout": layout, "bytes": disk_size(path) if path else None,
                     "get": KNOWN[name].how_to_get})
    if as_json:
        emit_json({"datasets": rows, "search_path": [str(p) for p in config.data_search_path()]})
        return
    emit_table(["name", "where", "layout", "size MB"],
               [[r["name"], r["path"], r["layout"] or "-", f"{r['bytes'] / 1e6:.1f}" if r["bytes"] else "-"]
                for r in rows])
    click.echo("search path: " + ", ".join(str(p) for p in config.data_search_path()))
