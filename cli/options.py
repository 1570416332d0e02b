"""Options shared by many commands, and turning them into library calls."""

from __future__ import annotations

import os
import stat
import sys

import click

from .console import reporter


def parse_size(ctx, param, value):
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value.lower().split("x"))
        if h < 1 or w < 1:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"expected HxW such as 32x32, got {value!r}") from None
    from imgclf import limits

    side = limits.get("image_side")
    if max(h, w) > side:
        raise click.BadParameter(f"{value} exceeds the limit of {side} pixels a side ({limits.hint('image_side')})")
    return (h, w)


def data_options(func):
    """--data, --n-train, --n-test, --val, --size, --grayscale/--rgb."""
    opts = [
        click.option("--data", "data", metavar="NAME|PATH|-", default=None,
                     help="Dataset name (cifar10, mnist, fashion-mnist, shapes), a dataset folder or archive, "
                          "a pipeline .npz, or - for stdin. Default: stdin when piped, else cifar10 if found, "
                          "else the built-in shapes."),
        click.option("--n-train", type=click.IntRange(min=1), default=None, help="Use the first N training images."),
        click.option("--n-test", type=click.IntRange(min=1), default=None, help="Use the first N test images."),
        click.option("--val", type=click.IntRange(min=0), default=None,
                     help="Validation images taken from the end of the training set (default 1000, or a fifth "
                          "of a small set; 0 for none). An image folder's val/ (or valid/) replaces them."),
        click.option("--size", callback=parse_size, default=None, metavar="HxW", help="Resize image-folder data."),
        click.option("--color", type=click.Choice(["rgb", "gray"]), default=None,
                     help="Colour mode for image-folder data (default: as the majority of images)."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")(func)


def seed_option(func):
    return click.option("--seed", type=int, default=0, show_default=True, help="Seed for every random choice.")(func)


def quiet_option(func):
    return click.option("-q", "--quiet", is_flag=True, help="No progress or logs on stderr.")(func)


def capped_workers(rep, jobs: int = 1, scheduler: str | None = None) -> tuple[int, str | None]:
    """--jobs and --scheduler local:N capped at the worker ceiling (the core count unless
    IMGCLF_MAX_WORKERS raises it), with a note: more processes than cores only thrash. The library
    refuses such counts outright; the CLI, which can tell the user, runs with the cap instead."""
    from imgclf import limits

    cap = limits.get("workers")
    hint = "(the core count; set IMGCLF_MAX_WORKERS to force more)"
    if jobs > cap:
        rep.notice(f"--jobs {jobs} capped at {cap} worker processes {hint}")
        jobs = cap
    count = scheduler[len("local:"):] if scheduler and scheduler.startswith("local:") else ""
    if count.isdigit() and int(count) > cap:  # anything malformed is the library's to refuse
        rep.notice(f"--scheduler {scheduler} capped at local:{cap} {hint}")
        scheduler = f"local:{cap}"
    return jobs, scheduler


def stdin_is_piped() -> bool:
    """True when stdin is a pipe or a non-empty redirected file (not a terminal, not /dev/null)."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    if stat.S_ISFIFO(mode):
        return True
    return stat.S_ISREG(mode) and os.fstat(sys.stdin.fileno()).st_size > 0


def load_data(ctx: click.Context, data=None, n_train=None, n_test=None, val=None, size=None, color=None,
              default_val=None, quiet=False):
    """Resolve --data (stdin when piped and not given) and load the dataset with its splits."""
    from imgclf.datasets import default_name, load

    rep = reporter(ctx, quiet)
    if data is None:
        if stdin_is_piped():
            data = "-"
        else:
            data = default_name()
            if data == "shapes":
                rep.notice("no CIFAR-10 found; using the built-in `shapes` dataset (see `imgclf data get --help`)")
    if val is None:
        val = default_val
    ds = load(data, val=val, n_train=n_train, n_test=n_test, size=size, mode=color)
    if ds.report is not None:
        for line in folder_summary(ds.report):
            rep.log(line)
    return ds


def folder_summary(report, examples: int = 3) -> list[str]:
    """Lines telling what an image folder gave: images per split, sizes and modes, what was skipped and why."""
    read = ", ".join(f"{k} {n}" for k, n in report.read.items())
    subs = f" from {', '.join(f'{v}/' for v in report.sub_roots.values())}" if report.sub_roots else ""
    sizes = ", ".join(f"{k} ({n})" for k, n in list(report.sizes.items())[:examples])
    more = f" and {len(report.sizes) - examples} more" if len(report.sizes) > examples else ""
    lines = [f"read {sum(report.read.values())} images{subs} in {report.root} ({read}); "
             f"sizes {sizes}{more}; modes {', '.join(f'{k} ({n})' for k, n in report.modes.items())}"]
    counts = report.skipped_counts()
    if not counts:
        return lines
    lines.append(f"skipped {len(report.skipped)}: " + ", ".join(f"{n} {why}" for why, n in counts.items()))
    for why in counts:
        these = [s for s in report.skipped if s.reason == why]
        for s in these[:examples]:
            lines.append(f"  {why}: {s.path}" + (f" ({s.detail})" if s.detail else ""))
        if len(these) > examples:
            lines.append(f"  ... and {len(these) - examples} more {why}")
    return lines


def binary_output_target(output: str | None):
    """`-o FILE|-`; refuses to write binary data to a terminal."""
    target = output or "-"
    if target == "-":
        try:
            tty = os.isatty(sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):
            tty = False
        if tty:
            raise click.UsageError("refusing to write binary .npz data to a terminal; redirect it (> file.npz), "
                                   "pipe it into another imgclf command, or use -o FILE")
    return target
