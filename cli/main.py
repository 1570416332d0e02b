"""The `imgclf` command group: lazy subcommand loading, global flags, error -> exit status mapping."""

from __future__ import annotations

import io
import os
import sys

import click

import imgclf  # noqa: F401 - before anything loads numpy: sets the thread-spin defaults (imgclf/_threading.py)

from .registry import COMMANDS, PACKAGE, LazyGroup

# Library parameter -> the option that sets it, where the option is not `--` + the name with dashes.
FLAGS = {"source": "--from", "mode": "--color", "param": "--param"}


def in_flags(exc) -> str:
    """The library's message with the parameter it names (`exc.param`, named first in the message)
    spelt as the command-line option that sets it: "batch_size must be >= 1" -> "--batch-size ..."."""
    import re

    message = str(exc)
    param = getattr(exc, "param", None)
    if not param:
        return message
    flag = FLAGS.get(param, "--" + param.replace("_", "-"))
    return re.sub(rf"(?<![\w-]){re.escape(param)}(?![\w-])", flag, message, count=1)


class App(LazyGroup):
    """Runs commands with imgclf's error handling: one line and exit 2 for bad input, 1 otherwise."""

    def invoke(self, ctx):
        from imgclf.errors import ImgclfError

        if sys.stdout is None:  # started with >&-: results must not vanish silently
            sys.stdout = _ClosedStdout()
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away (`... | head -1`): what it wanted it has; end quietly. Python would
            # otherwise complain again when it flushes stdout at exit.
            _silence_stdout()
            ctx.exit(1)
        except ImgclfError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {_one_line(in_flags(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except MemoryError:
            click.echo("Error: out of memory (try a smaller --memory, --n-train or --batch-size)", err=True)
            ctx.exit(1)
        except Exception as exc:  # noqa: BLE001 - the last line of defence for unexpected failures
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)",
                       err=True)
            ctx.exit(1)


def _one_line(exc: BaseException) -> str:
    """An error is one line on stderr, even when a library's message has several (tarfile's does)."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text if len(text) <= 2000 else text[:2000] + " ..."


class _ClosedStdout(io.TextIOBase):
    """Stands in for a closed standard output: the first write is a usage error, not a lost result."""

    def write(self, s):
        from imgclf.errors import UsageError

        raise UsageError("standard output is closed (>&-); redirect it to a file or /dev/null")

    @property
    def buffer(self):
        return self

    def fileno(self):
        raise OSError("standard output is closed")


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass


@click.group(cls=App, lazy=COMMANDS, package=PACKAGE, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-q", "--quiet", is_flag=True, help="No progress or log output on stderr.")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="imgclf")
@click.pass_context
def cli(ctx, quiet, debug):
    """imgclf: classic image classifiers from the shell.

    \b
    Examples:
      imgclf knn --k 5 --metric l2
      imgclf knn --cv 5
      imgclf train softmax --reg 1e-3
      imgclf data export cifar10 | imgclf preprocess mean | imgclf knn --k 5

    Data comes from --data NAME|PATH|- (default: cifar10 if found, else the
    built-in `shapes`). Results go to stdout, progress to stderr.
    """
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    ctx.obj["debug"] = debug


def main(argv=None):
    cli.main(args=argv, prog_name="imgclf")


if __name__ == "__main__":
    sys.exit(main())
