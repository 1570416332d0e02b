"""`imgclf data`: find, describe, fetch and export datasets."""

from __future__ import annotations

import click

from ..console import emit_json, emit_table, reporter
from ..options import binary_output_target, data_options, json_option, load_data, parse_size, quiet_option


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
      imgclf data audit cifar10 --cross-only
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
    if ds.report is not None:
        summary["read_report"] = ds.report.to_dict()
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


@data.command("audit")
@click.argument("name", required=False, metavar="[DATA]")
@click.option("--data", "data", metavar="NAME|PATH|-", default=None, help="The dataset, if not given as DATA.")
@click.option("--metric", type=click.Choice(["l2", "l1"]), default="l2", show_default=True,
              help="Distance for near duplicates (exact integer sums on the raw pixels).")
@click.option("--near", type=click.FloatRange(min=0), default=None, metavar="D",
              help="Per-pixel distance (0..255 scale: RMS difference for l2, mean absolute difference for l1) up "
                   "to which two different images are near duplicates; 0 turns the near search off.  "
                   "[default: 12, which covers a JPEG re-encoding of a 32x32 image]")
@click.option("--neighbors", type=click.IntRange(min=1), default=None, metavar="K",
              help="Nearest images examined per image for near duplicates.  [default: 3]")
@click.option("--cross-only", is_flag=True,
              help="Search near duplicates only across splits (val/test against earlier splits: the leakage "
                   "check, one kNN pass of test against train), not within each split. Exact duplicates are "
                   "always found everywhere.")
@click.option("--size", callback=parse_size, default=None, metavar="HxW",
              help="Image folders: resize to this size to compare (default: the most common size).")
@click.option("--color", type=click.Choice(["rgb", "gray"]), default=None,
              help="Image folders: colour mode to compare in (default: as the majority of images).")
@click.option("--examples", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many duplicate groups and near pairs the table lists (--json lists them all).")
@click.option("--memory", "memory_mb", type=click.IntRange(min=16), default=None, metavar="MB",
              help="Working-memory budget for the distance blocks (default 1024).")
@json_option
@quiet_option
@click.pass_context
def audit(ctx, name, data, metric, near, neighbors, cross_only, size, color, examples, memory_mb, as_json, quiet):
    """Audit a dataset: exact and near-duplicate images within and across splits (train/test leakage),
    class counts, image sizes and colour modes, unreadable files.

    DATA (or --data) is a dataset name, a path (an image folder, CIFAR batches, idx files) or a raw
    pipeline .npz. The splits are audited as stored (no validation split is carved off; an image
    folder's val/ and test/ are their own splits). Exact duplicates are found by hashing every image;
    near duplicates by the exact kNN kernels among the distinct images: each image's few nearest
    images within its split and in every earlier split, kept when their per-pixel distance is at
    most --near. "test/train" counts test images with a copy in train; "train" counts train images
    that copy another train image. Findings are not errors: the exit status is 0.

    \b
    Examples:
      imgclf data audit cifar10
      imgclf data audit cifar10 --cross-only --near 6 --json
      imgclf data audit ./my-photos --size 64x64
      imgclf data audit cifar10 --metric l1 --near 13 --examples 20
    """
    import time

    from imgclf.audit import DEFAULT_NEAR, DEFAULT_NEIGHBORS
    from imgclf.audit import audit as run_audit
    from imgclf.config import DEFAULT_MEMORY_MB

    rep = reporter(ctx, quiet)
    t0 = time.perf_counter()
    splits, classes, names, report, label = _audit_data(ctx, name or data, size, color, rep, quiet)
    total = sum(len(y) for _, y in splits.values())
    with rep.progress("near duplicates", None) as advance:
        res = run_audit(splits, classes, names=names, metric=metric,
                        near=DEFAULT_NEAR if near is None else near,
                        neighbors=neighbors or DEFAULT_NEIGHBORS, cross_only=cross_only,
                        memory_mb=memory_mb or DEFAULT_MEMORY_MB, report=report, progress=advance)
    res["seconds"]["total"] = time.perf_counter() - t0
    res["dataset"] = label
    if as_json:
        emit_json(res)
        return
    _print_audit(res, total, examples)


def _audit_data(ctx, spec, size, color, rep, quiet):
    """(splits {name: (X, y)}, classes, names or None, folder report or None, label) as stored."""
    import os
    from pathlib import Path

    from imgclf.datasets.registry import detect_layout, resolve

    from ..options import folder_summary, load_data, stdin_is_piped

    if spec is None and stdin_is_piped():
        spec = "-"
    kind, path = resolve(spec) if spec else ("name", None)
    if kind == "path" and detect_layout(Path(path)) == "folder":
        from imgclf.datasets.folder import common_size, load_image_folder, scan_image_folder

        if size is None:
            _, _, scanned = scan_image_folder(path)
            if len(scanned.sizes) > 1:
                size = common_size(scanned)
                rep.notice(f"images differ in size; comparing them at the most common size "
                           f"{size[0]}x{size[1]} (choose with --size)")
        found = load_image_folder(path, size=size, mode=color)
        for line in folder_summary(found.report):
            rep.log(line)
        return found.splits, found.classes, found.files, found.report, os.path.basename(os.path.normpath(path))
    ds = load_data(ctx, spec, None, None, 0, size, color, quiet=quiet)
    return {k: (v.X, v.y) for k, v in ds.splits.items()}, ds.classes, None, None, ds.name


def _print_audit(res: dict, total: int, examples: int) -> None:
    def counts(d):
        return ", ".join(f"{k} ({n})" for k, n in d.items()) or "none"

    click.echo(f"audit of {res['dataset']}: {total} images ("
               + ", ".join(f"{k} {n}" for k, n in res["splits"].items()) + f"), {len(res['classes'])} classes")
    click.echo(f"sizes: {counts(res['sizes'])}; modes: {counts(res['modes'])}")
    if res["skipped_counts"]:
        click.echo(f"skipped files: {counts(res['skipped_counts'])}")
        for s in res["unreadable"][:examples]:
            click.echo(f"  {s['reason']}: {s['path']}" + (f" ({s['detail']})" if s["detail"] else ""))
    click.echo("")
    emit_table(["split"] + res["classes"], [[k] + v for k, v in res["class_counts"].items()], title="class counts")
    ex, near = res["exact"], res["near_duplicates"]
    click.echo("")
    scope = "across splits only" if res["cross_only"] else "within and across splits"
    rows = sorted(set(ex["by_pair"]) | set(near["by_pair"]), key=lambda k: ("/" in k, k))
    title = (f"duplicates ({scope}): {ex['groups']} exact groups holding {ex['images']} images, "
             f"{ex['conflicting_labels']} with conflicting labels; {near['pairs']} near pairs "
             f"(per-pixel {res['metric']} <= {res['near']:g})")
    if rows:
        emit_table(["split pair", "exact copies", "near copies"],
                   [[k, ex["by_pair"].get(k, 0), near["by_pair"].get(k, 0)] for k in rows], title=title)
    else:
        click.echo(title)
    for split, leak in res["leakage"].items():
        click.echo(f"leakage: {leak['exact']} {split} images are exact copies of earlier-split images, "
                   f"{leak['near']} more are near copies")

    def who(m):
        return f"{m['split']}[{m['index']}]" + (f" {m['file']}" if "file" in m else "") + f" label {m['label']}"

    shown = ex["list"][:examples]
    if shown:
        click.echo("\nexact duplicate groups:")
        for group in shown:
            click.echo("  " + " = ".join(who(m) for m in group))
    if near["list"][:examples]:
        click.echo("\nnearest near-duplicate pairs:")
        for e in near["list"][:examples]:
            click.echo(f"  {who(e['a'])} ~ {who(e['b'])}  distance {e['distance']:.2f}")
    click.echo(f"\n{res['seconds']['total']:.1f} s (hashing {res['seconds']['exact']:.1f} s, "
               f"near search {res['seconds']['near']:.1f} s)")
