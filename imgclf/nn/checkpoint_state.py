"""What a checkpoint's training state must be before the Solver restores any of it.

A checkpoint (io/checkpoint.py) is as untrusted as a model file: it may be hand-edited or forged. Every
field the Solver restores is checked here against the run that resumes it, before anything is assigned
or allocated, so that a bad file is one ModelFileError naming it, never a crash inside training, a
Python warning, a NaN run or a silently different one. The rules are those of the state a run leaves:

- counters: `epoch`, `iteration` and `position` integers >= 0; `history` one record per finished epoch
  (epochs numbered from 1) and `loss_history` one finite loss (or null) per step, so that
  `epoch == len(history)` and `iteration == len(loss_history)`; the position within the epoch at most
  its number of steps, and 0 between epochs (no `order`);
- `best_epoch` an integer in 1..epoch with `best_val_acc` a score in [0, 1], or both null; the best
  weights present exactly when there is a best epoch;
- arrays: only the names a checkpoint holds; every weight-shaped array (the weights, best, average,
  lookahead slow weights, the update rule's moments) has its parameter's shape and dtype and finite
  values, running sums of squares >= 0, batch-norm statistics as a model file's;
- `order` a permutation of the training rows, `train_sample` sorted distinct row indices;
- `optim_state` one dict per parameter with the rule's settings (the ranges fit takes), the last
  step's learning rate, the folded L2 factor and sum of squares (finite, >= 0) and Adam's step count;
- `rng` a state the run's bit generator accepts (tried on a fresh one).
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, UsageError
from ..validation import check_int, check_number
from . import optim as optim_rules

BUFFER = "buffer:"  # a weight snapshot's key prefix for a batch-norm statistic (Solver._snapshot)

# EpochRecord's numbers: (may be null, lowest value)
_RECORD_NUMBERS = {"loss": (False, None), "train_acc": (False, 0), "val_acc": (True, 0), "lr": (False, 0),
                   "update_ratio": (True, 0), "seconds": (False, 0)}
_SCALARS = ("learning_rate", "l2", "sum_sq", "t")


def check(solver, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Refuse (UsageError naming the field) a checkpoint state `solver` could not resume exactly."""
    epoch = check_int(meta.get("epoch"), "epoch", 0)
    iteration = check_int(meta.get("iteration"), "iteration", 0)
    position = check_int(meta.get("position"), "position", 0)
    _check_history(meta.get("history"), epoch)
    _check_losses(meta.get("loss_history"), iteration)
    has_order = "order" in arrays
    if position > (solver.steps_per_epoch if has_order else 0):
        raise UsageError(f"position must be within the epoch's {solver.steps_per_epoch} steps (0 between epochs, "
                         f"when there is no order), got {position}")
    _check_best(meta, arrays, epoch)
    _check_arrays(solver, arrays)
    _check_optim_state(solver, meta.get("optim_state"))
    _check_rng(solver.rng, meta.get("rng"))


def _check_history(history, epoch: int) -> None:
    if not isinstance(history, list) or len(history) != epoch:
        raise UsageError(f"history must be a list of one record per finished epoch ({epoch}), got "
                         f"{type(history).__name__}{f' of {len(history)}' if isinstance(history, list) else ''}")
    for i, record in enumerate(history):
        if not isinstance(record, dict) or set(record) != {"epoch", *_RECORD_NUMBERS}:
            raise UsageError(f"history[{i}] must be an epoch record ({', '.join(['epoch', *_RECORD_NUMBERS])})")
        if check_int(record["epoch"], f"history[{i}].epoch", 1) != i + 1:
            raise UsageError(f"history[{i}].epoch must be {i + 1}, got {record['epoch']!r}")
        for key, (nullable, low) in _RECORD_NUMBERS.items():
            if not (nullable and record[key] is None):
                check_number(record[key], f"history[{i}].{key}",
                             "a finite number" + ("" if low is None else f" >= {low}"), low=low)


def _check_losses(losses, iteration: int) -> None:
    if not isinstance(losses, list) or len(losses) != iteration:
        raise UsageError(f"loss_history must be a list of one loss per step ({iteration}), got "
                         f"{type(losses).__name__}{f' of {len(losses)}' if isinstance(losses, list) else ''}")
    for i, loss in enumerate(losses):
        if loss is not None:
            check_number(loss, f"loss_history[{i}]", "a finite number or null")


def _check_best(meta: dict, arrays: dict, epoch: int) -> None:
    best_epoch, score = meta.get("best_epoch"), meta.get("best_val_acc")
    if best_epoch is None or score is None:
        if best_epoch is not None or score is not None:
            raise UsageError("best_epoch and best_val_acc must both be set or both be null")
    else:
        check_int(best_epoch, "best_epoch", 1)
        if best_epoch > epoch:
            raise UsageError(f"best_epoch must be a finished epoch (1..{epoch}), got {best_epoch!r}")
        check_number(score, "best_val_acc", "a score in [0, 1]", low=0, high=1)
    if any(k.startswith("best/") for k in arrays) != (best_epoch is not None):
        raise UsageError("the best weights (best/...) must be present exactly when best_epoch is set")


def _state_shapes(solver) -> dict[str, np.ndarray]:
    """The arrays a checkpoint of this run may hold, each mapped to the array it must match."""
    params = solver.model.params_
    buffers = getattr(solver.model, "buffers_", {})
    snapshot = {**params, **{f"{BUFFER}{k}": v for k, v in buffers.items()}}  # Solver._snapshot's keys
    like = {f"param/{k}": v for k, v in params.items()}
    like.update({f"buffer/{k}": v for k, v in buffers.items()})
    like.update({f"best/{k}": v for k, v in snapshot.items()})
    if solver.ema_state is not None:
        like.update({f"ema/{k}": v for k, v in snapshot.items()})
    if solver.slow_state is not None:  # "K:ramp" averages the batch-norm statistics too
        like.update({f"lookahead/{k}": v for k, v in (snapshot if solver.ramp else params).items()})
    for name, w in params.items():
        like.update({f"opt/{name}/{key}": w for key in optim_rules.STATE[solver.optim_name]})
    return like


def _check_arrays(solver, arrays: dict[str, np.ndarray]) -> None:
    like = _state_shapes(solver)
    n = len(solver.y_train)
    unknown = sorted(set(arrays) - set(like) - {"order", "train_sample", "augment_state"})
    if unknown:
        raise UsageError(f"unknown arrays {', '.join(unknown[:5])} (not state of this run)")
    # The weights and statistics, the average and slow weights the run keeps, the best weights if any.
    required = ("param/", "buffer/", "ema/", "lookahead/") + (("best/",) if any(k.startswith("best/") for k in arrays)
                                                            else ())
    missing = [k for k in like if k.startswith(required) and k not in arrays]
    if missing:
        raise UsageError(f"{missing[0]} is missing")
    for key, arr in arrays.items():
        if key in like:
            ref = like[key]
            if arr.shape != ref.shape or arr.dtype != ref.dtype:
                raise UsageError(f"{key} has shape {arr.shape} {arr.dtype}, the run needs {ref.shape} {ref.dtype}")
            if not np.isfinite(arr).all():
                raise UsageError(f"{key} holds NaN or infinite values")
            if key.rsplit("/", 1)[1] in optim_rules.NONNEGATIVE_STATE and key.startswith("opt/") and np.any(arr < 0):
                raise UsageError(f"{key} is a running sum of squares and holds negative values")
    stats = {k.split("/", 1)[1].replace("buffer:", "") + f" ({k})": v for k, v in arrays.items()
             if k.startswith(("buffer/", "best/buffer:", "ema/buffer:", "lookahead/buffer:"))}
    if hasattr(solver.model, "check_buffers"):
        solver.model.check_buffers(stats, "the batch-norm statistics")
    order = arrays.get("order")
    if order is not None and not (order.dtype.kind in "iu" and order.shape == (n,)
                                  and np.array_equal(np.sort(order), np.arange(n))):
        raise UsageError(f"order must be a permutation of the {n} training rows")
    sample = arrays.get("train_sample")
    if sample is None:
        raise UsageError("train_sample is missing")
    if not (sample.dtype.kind in "iu" and sample.ndim == 1 and 1 <= len(sample) <= n
            and sample[0] >= 0 and sample[-1] < n and np.all(np.diff(sample) > 0)):
        raise UsageError(f"train_sample must be sorted distinct indices of the {n} training rows")


def _check_optim_state(solver, state) -> None:
    names = set(solver.model.params_)
    if not isinstance(state, dict) or set(state) != names:
        raise UsageError(f"optim_state must be a dict of one entry per parameter ({', '.join(sorted(names))})")
    settings = set(optim_rules.DEFAULTS[solver.optim_name])
    for name, config in state.items():
        if not isinstance(config, dict):
            raise UsageError(f"optim_state[{name!r}] must be a dict, got {config!r}")
        unknown = set(config) - settings - set(_SCALARS)
        if unknown:
            raise UsageError(f"optim_state[{name!r}] has unknown settings {', '.join(sorted(map(str, unknown)))} "
                             f"for {solver.optim_name}")
        for key, value in config.items():
            where = f"optim_state[{name!r}].{key}"
            if key in settings:
                optim_rules.check_setting(key, value, where)
            elif key == "t":
                check_int(value, where, 0)
            else:  # learning_rate (0 where a schedule starts or ends there), l2, sum_sq
                check_number(value, where, "a finite number >= 0", low=0)


def _check_rng(rng: np.random.Generator, state) -> None:
    kind = type(rng.bit_generator)
    if not isinstance(state, dict) or state.get("bit_generator") != kind.__name__:
        raise UsageError(f"rng must be the state of a {kind.__name__} bit generator")
    fresh = kind()  # not the run's own: that is set only once the whole file is checked
    try:
        fresh.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise UsageError(f"rng is not a valid {kind.__name__} state ({type(exc).__name__}: {exc})") from None
    # numpy truncates a float silently and keeps any has_uint32: the state read back must be the one given.
    if fresh.state != state or state.get("has_uint32", 0) not in (0, 1):
        raise UsageError(f"rng is not a valid {kind.__name__} state (it does not read back as written)")


def checked(source, solver, meta: dict, arrays: dict) -> None:
    """`check`, with a refusal as ModelFileError naming the file."""
    try:
        check(solver, meta, arrays)
    except ModelFileError:
        raise
    except UsageError as exc:
        raise ModelFileError(f"{source}: malformed checkpoint ({exc})") from None
