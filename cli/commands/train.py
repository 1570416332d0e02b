"""`imgclf train`: one subcommand per model kind, each in its own module (loaded on use)."""

from __future__ import annotations

import click

from ..registry import PACKAGE, TRAIN_COMMANDS, LazyGroup


@click.group(cls=LazyGroup, lazy=TRAIN_COMMANDS, package=PACKAGE)
def train():
    """Train a model and report its accuracy; -o saves it as a model file.

    \b
    Examples:
      imgclf train softmax
      imgclf train svm --reg 1e-3 -o svm.npz
      imgclf train twolayer --hidden 500 --epochs 10
      imgclf train convnet --filters 32,64 --batchnorm
    """
