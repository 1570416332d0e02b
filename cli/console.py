"""Where output goes: results to stdout (a plain table, or one JSON object); logs and progress to stderr.

Progress bars are drawn by rich only when stderr is a terminal; otherwise log lines are plain text,
and `-q` silences both.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys

import click


class Reporter:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=sys.stderr, highlight=False)
        return self._console

    @property
    def interactive(self) -> bool:
        return not self.quiet and self.console.is_terminal

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self.interactive:
            self.console.print(message, markup=False)
        else:
            click.echo(message, err=True)

    def notice(self, message: str) -> None:
        self.log(f"note: {message}")

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None):
        """Yield `advance(n=1, **fields)`; a rich bar on a terminal, nothing otherwise."""
        if not self.interactive:
            yield lambda n=1, **_: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[status]}")]
        with Progress(*cols, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total, status="")

            def advance(n=1, status=None):
                bar.update(task, advance=n, **({"status": status} if status is not None else {}))

            yield advance


def reporter(ctx: click.Context, quiet: bool = False) -> Reporter:
    root = ctx.find_root().obj or {}
    return Reporter(quiet=quiet or root.get("quiet", False))


def _clean(obj):
    """Make numpy scalars/arrays and non-finite floats JSON-safe."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def emit_json(obj: dict) -> None:
    click.echo(json.dumps(_clean(obj)))


def format_table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) if rows else False for i in range(len(headers))]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [title] if title else []
    out += [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def emit_table(headers, rows, title=None) -> None:
    click.echo(format_table(headers, rows, title))
