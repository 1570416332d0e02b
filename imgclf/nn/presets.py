"""Named training recipes: estimator parameters measured on CIFAR-10 (docs/recipes.md has the runs).

`preset("convnet", "fast")` returns the ConvNet keyword arguments of the recipe; a caller's explicit
settings go on top (the CLI maps `--preset NAME` here and lets flags given on the command line win).

  convnet fast   airbench's recipe (Jordan 2024; docs/recipes.md) on a 32x2,128x2,128x2 conv-pool-conv net:
                 a frozen 2x2 whitening stem, GELU, batch norm without scale (momentum 0.6), identity-
                 initialised convolutions, a global-max head with scores times 1/9; Nesterov SGD (momentum
                 0.85, batch 512, lr 0.75, biases at 64x the rate), label smoothing 0.2, the triangular
                 warm-up/decay schedule, Lookahead with airbench's ramp, alternating flips and 2-pixel
                 reflect-padded crops, and flip+shift test-time augmentation; 5 epochs: 0.8636 on CIFAR-10
                 (50000 training images) in 145 s of training with --precision bf16 and oneDNN's
                 convolutions on this project's 2-core machine (298 s with im2col's)
  convnet best   the same recipe on airbench94's widths (64x2,256x2,256x2) for 10 epochs (the 15-minute
                 budget): 0.9074 on CIFAR-10 in 758 s of training with --precision bf16 and oneDNN's
                 convolutions (the `dnnl` extra; conv_backend "auto" picks them)
The presets leave `precision` at float32 (the reference); add precision="bf16" (`--precision bf16`) where
the CPU and MKL have it: that is how the figures above were measured (docs/recipes.md, sixth session).
"""

from __future__ import annotations

from ..errors import UsageError

_CONVNET = dict(filters=("32x2", "128x2", "128x2"), pool_position="first", batchnorm=True, hidden=0, dropout=0.0,
                stem="whiten:2", stem_bias_epochs=0, activation="gelu", bn_scale=False, bn_momentum=0.6, dirac=True,
                head="maxpool", logit_scale=1 / 9, classifier_bias=False, optim="nesterov",
                optim_options={"momentum": 0.85}, lr=0.75, bias_lr_scale=64.0, reg=6.65e-4, batch_size=512,
                lr_schedule="warmup:0.23:0.2:0.07", label_smoothing=0.2, ema=None, lookahead="5:ramp",
                augment="flip:alt,crop:2:reflect", tta="flip+shift", patch_whiten=False)

PRESETS = {
    "convnet": {
        "fast": dict(_CONVNET, epochs=5),
        "best": dict(_CONVNET, filters=("64x2", "256x2", "256x2"), epochs=10),
    },
}


def preset(kind: str, name: str) -> dict:
    """The parameters of preset `name` for estimator `kind` (a fresh dict)."""
    names = PRESETS.get(kind, {})
    if name not in names:
        choices = ", ".join(names) or "none"
        raise UsageError(f"unknown {kind} preset {name!r}; choose from {choices}")
    return dict(names[name])
