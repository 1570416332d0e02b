"""Weight initialisation: `he` (std sqrt(2/fan_in), for ReLU-like units), `xavier` (std sqrt(1/fan_in),
for tanh/sigmoid), `normal:STD` (a fixed standard deviation, e.g. normal:0.01 as in the CS231n notes)."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError


def parse(spec: str) -> tuple[str, float | None]:
    name, _, arg = str(spec).partition(":")
    if name in ("he", "xavier") and not arg:
        return name, None
    if name == "normal":
        try:
            std = float(arg) if arg else 0.01
        except ValueError:
            raise UsageError(f"bad init {spec!r}: normal:STD with a number STD") from None
        if not (np.isfinite(std) and std > 0):
            raise UsageError(f"bad init {spec!r}: STD must be a positive number")
        return name, std
    raise UsageError(f"unknown init {spec!r}; choose from he, xavier, normal:STD")


def weight(spec: str, fan_in: int, fan_out: int, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """A (fan_in, fan_out) weight matrix drawn from N(0, std^2) for the chosen scheme."""
    from .. import limits

    name, std = parse(spec)
    limits.spend_parameters(int(fan_in) * int(fan_out), f"a {fan_in}x{fan_out} weight matrix")
    if name == "he":
        std = np.sqrt(2.0 / fan_in)
    elif name == "xavier":
        std = np.sqrt(1.0 / fan_in)
    return (rng.standard_normal((fan_in, fan_out)) * std).astype(dtype)
