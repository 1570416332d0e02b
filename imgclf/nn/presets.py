"""Named training recipes: estimator parameters measured on CIFAR-10 (docs/recipes.md has the runs).

`preset("convnet", "fast")` returns the ConvNet keyword arguments of the recipe; a caller's explicit
settings go on top (the CLI maps `--preset NAME` here and lets flags given on the command line win).

  convnet fast   the 32,64,128 batch-norm net with the fast-CIFAR-10 methods (one-cycle warm-up/decay,
                 label smoothing 0.1, weight averaging, patch-whitening first layer, flip+crop training
                 and flip test-time augmentation), 9 epochs: what fits the 5-minute training budget of an
                 idle 2-core machine (about 30 s an epoch with two threads, validation included)
  convnet best   the same recipe over 28 epochs: the 15-minute budget
"""

from __future__ import annotations

from ..errors import UsageError

_CONVNET = dict(filters=(32, 64, 128), batchnorm=True, hidden=256, dropout=0.0, optim="adam", lr=2e-3, reg=1e-4,
                lr_schedule="warmup:0.2", batch_size=64, augment="flip,crop:4", label_smoothing=0.1, ema=0.999,
                tta="flip", patch_whiten=True)

PRESETS = {
    "convnet": {
        "fast": dict(_CONVNET, epochs=9),
        "best": dict(_CONVNET, epochs=28),
    },
}


def preset(kind: str, name: str) -> dict:
    """The parameters of preset `name` for estimator `kind` (a fresh dict)."""
    names = PRESETS.get(kind, {})
    if name not in names:
        choices = ", ".join(names) or "none"
        raise UsageError(f"unknown {kind} preset {name!r}; choose from {choices}")
    return dict(names[name])
