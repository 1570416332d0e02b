"""Learning-rate schedules, evaluated once per epoch: lr(epoch) from the base rate."""

from __future__ import annotations

import math

from ..errors import UsageError


def parse(spec: str | None, default_decay: float = 1.0):
    """`step:0.95` (multiply by 0.95 every epoch; `step:0.5:10` every 10 epochs), `exp:0.1` (lr0*e^(-k*epoch)),
    `inv:0.5` (lr0 / (1 + k*epoch)), `none`. Returns a function epoch -> multiplier."""
    if spec in (None, "", "none"):
        return lambda epoch: default_decay**epoch
    kind, _, rest = spec.partition(":")
    try:
        args = [float(a) for a in rest.split(":")] if rest else []
    except ValueError:
        raise UsageError(f"bad learning-rate schedule {spec!r}: numbers expected after the colon") from None
    if kind == "step":
        factor = args[0] if args else 0.95
        every = int(args[1]) if len(args) > 1 else 1
        if not 0 < factor <= 1 or every < 1:
            raise UsageError(f"bad schedule {spec!r}: step:FACTOR[:EVERY] with 0 < FACTOR <= 1, EVERY >= 1")
        return lambda epoch: factor ** (epoch // every)
    if kind == "exp":
        k = args[0] if args else 0.1
        if k < 0:
            raise UsageError(f"bad schedule {spec!r}: exp:K with K >= 0")
        return lambda epoch: math.exp(-k * epoch)
    if kind == "inv":
        k = args[0] if args else 0.5
        if k < 0:
            raise UsageError(f"bad schedule {spec!r}: inv:K with K >= 0")
        return lambda epoch: 1.0 / (1.0 + k * epoch)
    raise UsageError(f"unknown learning-rate schedule {spec!r}; use step:F[:E], exp:K, inv:K or none")
