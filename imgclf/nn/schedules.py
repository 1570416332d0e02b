"""Learning-rate schedules: lr(epoch) as a multiple of the base rate, evaluated once per epoch, except
`warmup`, which is evaluated every step at the fractional epoch (its attribute `per_step` is True)."""

from __future__ import annotations

import math

from ..errors import UsageError


class Warmup:
    """Linear warm-up from `start` to 1 over the first `peak` fraction of the run, then linear decay to
    `end` (default 0) at its end (the one-cycle shape of fast CIFAR-10 recipes such as airbench, whose
    triangle ends at 0.07), per step."""

    per_step = True

    def __init__(self, peak: float, start: float, epochs: float, end: float = 0.0):
        self.peak, self.start, self.epochs, self.end = peak, start, float(epochs), float(end)

    def __call__(self, epoch: float) -> float:
        t = min(max(epoch / self.epochs, 0.0), 1.0)
        if t < self.peak:
            return self.start + (1.0 - self.start) * t / self.peak
        down = (1.0 - t) / (1.0 - self.peak)
        # end = 0 takes the very formula of the schedule without an end value (the same rates, bit for bit)
        return self.end + (1.0 - self.end) * down if self.end else down


def parse(spec: str | None, default_decay: float = 1.0, epochs: int | None = None):
    """`step:0.95` (multiply by 0.95 every epoch; `step:0.5:10` every 10 epochs), `exp:0.1` (lr0*e^(-k*epoch)),
    `inv:0.5` (lr0 / (1 + k*epoch)), `warmup:P[:S[:E]]` (per step: linear from S*lr0 (default 0.2) up to lr0
    at fraction P of the run (default 0.2), then linear down to E*lr0 (default 0) at the last of `epochs`;
    airbench's is warmup:0.23:0.2:0.07), `none`.
    Returns a function epoch -> multiplier."""
    if spec in (None, "", "none"):
        return lambda epoch: default_decay**epoch
    kind, _, rest = spec.partition(":")
    try:
        args = [float(a) for a in rest.split(":")] if rest else []
    except ValueError:
        raise UsageError(f"bad lr_schedule {spec!r}: numbers expected after the colon", param="lr_schedule") from None
    if not all(math.isfinite(a) for a in args):  # exp:nan would make every learning rate NaN
        raise UsageError(f"bad lr_schedule {spec!r}: the numbers must be finite", param="lr_schedule")
    if kind == "step":
        factor = args[0] if args else 0.95
        every = args[1] if len(args) > 1 else 1
        if not 0 < factor <= 1 or every < 1 or every != int(every):
            raise UsageError(f"bad lr_schedule {spec!r}: step:FACTOR[:EVERY] with 0 < FACTOR <= 1, EVERY >= 1",
                             param="lr_schedule")
        every = int(every)
        return lambda epoch: factor ** (epoch // every)
    if kind == "exp":
        k = args[0] if args else 0.1
        if k < 0:
            raise UsageError(f"bad lr_schedule {spec!r}: exp:K with K >= 0", param="lr_schedule")
        return lambda epoch: math.exp(-k * epoch)
    if kind == "inv":
        k = args[0] if args else 0.5
        if k < 0:
            raise UsageError(f"bad lr_schedule {spec!r}: inv:K with K >= 0", param="lr_schedule")
        return lambda epoch: 1.0 / (1.0 + k * epoch)
    if kind == "warmup":
        peak = args[0] if args else 0.2
        start = args[1] if len(args) > 1 else 0.2
        end = args[2] if len(args) > 2 else 0.0
        if not (0 <= peak < 1 and 0 <= start <= 1 and 0 <= end <= 1) or len(args) > 3:
            raise UsageError(f"bad lr_schedule {spec!r}: warmup:P[:S[:E]] with 0 <= P < 1, 0 <= S <= 1 and "
                             f"0 <= E <= 1", param="lr_schedule")
        return Warmup(peak, start, epochs if epochs else 1, end)
    raise UsageError(f"unknown learning-rate schedule {spec!r}; use step:F[:E], exp:K, inv:K, warmup:P[:S[:E]] or "
                     f"none", param="lr_schedule")
