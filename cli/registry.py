"""Where each command lives, and the click group that imports a command's module only when it is used.

`main.py` (the `imgclf` group), `commands/train.py` (the `train` group) and `tune` (which trains through
the training commands' options) all read the maps here, so no command imports another or main.py.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

PACKAGE = "imgclf_cli.commands"

# name -> "module:attribute" under imgclf_cli.commands; imported only when used, so that
# `imgclf --help` never pays for numpy or numba.
COMMANDS = {
    "data": "data:data",
    "knn": "knn:knn",
    "train": "train:train",
    "preprocess": "preprocess:preprocess",
    "predict": "predict:predict",
    "evaluate": "evaluate:evaluate",
    "check": "check:check",
    "viz": "viz:viz",
    "tune": "tune:tune",
    "ensemble": "ensemble:ensemble",
}

# `imgclf train KIND`: one subcommand per model kind, each in its own module.
TRAIN_COMMANDS = {
    "svm": "train_linear:svm",
    "softmax": "train_linear:softmax",
    "twolayer": "train_net:twolayer",
    "convnet": "train_convnet:convnet",
}


def load_command(spec: str) -> click.Command:
    """The click command a "module:attribute" spec of the maps above names."""
    module, attr = spec.split(":")
    return getattr(importlib.import_module(f"{PACKAGE}.{module}"), attr)


class LazyGroup(click.Group):
    """A click group whose subcommands live in modules imported on first use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, package: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}
        self.package = package

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | {k for k in self.lazy if self._exists(k)})

    def _exists(self, name):
        module = self.lazy[name].split(":")[0]
        return importlib.util.find_spec(f"{self.package}.{module}") is not None

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        if name not in self.lazy or not self._exists(name):
            return None
        module, attr = self.lazy[name].split(":")
        cmd = getattr(importlib.import_module(f"{self.package}.{module}"), attr)
        self.add_command(cmd, name)
        return cmd
