"""Optimiser update rules against hand-written reference steps; learning-rate schedules."""

import sys
from pathlib import Path

import numpy as np
import pytest

from imgclf.errors import UsageError
from imgclf.nn import optim, schedules

sys.path.insert(0, str(Path(__file__).parent))
import reference  # noqa: E402


@pytest.mark.parametrize("rule", list(optim.RULES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_three_steps_match_reference(rule, dtype, rng):
    w = rng.standard_normal((4, 3)).astype(dtype)
    config = optim.make_config(rule, 0.05)
    hyper = {k: v for k, v in config.items() if k != "learning_rate"}
    ref_w, ref_state = w.astype(np.float64), {}
    for _ in range(3):
        dw = rng.standard_normal(w.shape).astype(dtype)
        out, config = optim.RULES[rule](w, dw, config)
        assert out is w and w.dtype == dtype  # in place, dtype kept
        ref_w, ref_state = reference.optim_step_naive(rule, ref_w, dw, ref_state, 0.05, **hyper)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(w, ref_w, rtol=tol, atol=tol)


def test_state_lives_in_config_as_arrays():
    w = np.ones(5, np.float32)
    config = optim.make_config("adam", 1e-3)
    optim.adam(w, np.ones(5, np.float32), config)
    assert config["t"] == 1 and config["m"].shape == (5,) and config["v"].dtype == np.float32


def test_make_config_validation():
    with pytest.raises(UsageError, match="unknown optimiser"):
        optim.make_config("lbfgs", 1e-3)
    with pytest.raises(UsageError, match="learning rate"):
        optim.make_config("sgd", 0.0)
    with pytest.raises(UsageError, match="no setting"):
        optim.make_config("sgd", 1e-3, momentum=0.9)
    assert optim.make_config("momentum", 1e-2, momentum=0.5)["momentum"] == 0.5


def test_rules_refuse_mismatched_gradients():
    with pytest.raises(UsageError, match="same shape"):
        optim.sgd(np.ones(3, np.float32), np.ones(4, np.float32), optim.make_config("sgd", 0.1))
    with pytest.raises(UsageError, match="same shape and dtype"):
        optim.sgd(np.ones(3, np.float32), np.ones(3), optim.make_config("sgd", 0.1))


def test_schedules():
    assert schedules.parse("step:0.5")(3) == 0.125
    assert schedules.parse("step:0.5:2")(3) == 0.5
    assert schedules.parse("exp:0.1")(2) == pytest.approx(np.exp(-0.2))
    assert schedules.parse("inv:1")(3) == 0.25
    assert schedules.parse(None)(5) == 1.0
    assert schedules.parse(None, 0.9)(2) == pytest.approx(0.81)
    for bad in ("step:2", "exp:-1", "cosine", "step:x"):
        with pytest.raises(UsageError):
            schedules.parse(bad)
    for bad in ("warmup:1", "warmup:0.2:2", "warmup:0.1:0.2:3"):
        with pytest.raises(UsageError):
            schedules.parse(bad)


def test_warmup_schedule_rises_then_falls_to_zero_per_step():
    f = schedules.parse("warmup:0.25:0.2", epochs=8)
    assert f.per_step and not getattr(schedules.parse("step:0.5"), "per_step", False)
    assert [f(e) for e in (0, 1, 2, 5, 8)] == pytest.approx([0.2, 0.6, 1.0, 0.5, 0.0])
    assert schedules.parse("warmup", epochs=10)(2) == pytest.approx(1.0)  # defaults: peak at 0.2, from 0.2
    assert schedules.parse("warmup:0", epochs=4)(0) == 1.0  # no warm-up: linear decay only


def test_warmup_schedule_end_value():
    """warmup:P:S:E ends at E instead of 0 (airbench's triangle: warmup:0.23:0.2:0.07); E = 0 is the
    schedule without an end value, bit for bit."""
    f = schedules.parse("warmup:0.25:0.2:0.1", epochs=8)
    assert [f(e) for e in (0, 1, 2, 5, 8)] == pytest.approx([0.2, 0.6, 1.0, 0.1 + 0.9 * 0.5, 0.1])
    air = schedules.parse("warmup:0.23:0.2:0.07", epochs=10)
    assert air(0) == pytest.approx(0.2) and air(2.3) == pytest.approx(1.0) and air(10) == pytest.approx(0.07)
    assert air(6.15) == pytest.approx(0.07 + 0.93 * 0.5)
    old, zero = schedules.parse("warmup:0.3:0.1", epochs=7), schedules.parse("warmup:0.3:0.1:0", epochs=7)
    steps = np.linspace(0, 7, 331)
    assert [old(e) for e in steps] == [zero(e) for e in steps]
    assert schedules.parse("warmup:0.3:0.1:1", epochs=7)(7) == 1.0  # constant after the warm-up
    for bad in ("warmup:0.2:0.2:-0.1", "warmup:0.2:0.2:1.5", "warmup:0.2:0.2:0.1:0", "warmup:0.2:0.2:nan"):
        with pytest.raises(UsageError, match="warmup"):
            schedules.parse(bad)


@pytest.mark.parametrize("rule", list(optim.RULES))
def test_folded_l2_equals_l2_in_the_gradient(rule, rng):
    w = rng.standard_normal((5, 3))
    dw = rng.standard_normal((5, 3))
    plain, folded = optim.make_config(rule, 0.05), optim.make_config(rule, 0.05)
    folded["l2"] = 0.3
    w1, w2 = w.copy(), w.copy()
    optim.RULES[rule](w1, dw + 0.3 * w, plain)
    optim.RULES[rule](w2, dw, folded)
    np.testing.assert_allclose(w2, w1, rtol=1e-12, atol=1e-14)
    assert folded["sum_sq"] == pytest.approx(float(np.sum(w * w)))


@pytest.mark.parametrize("rule", list(optim.RULES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_step_is_the_serial_step_bit_for_bit(rule, dtype, rng, monkeypatch):
    """Big weights are stepped over the threads (kernels/elementwise._step_parallel): the weights, the
    rule's state and sum(w^2) equal the serial kernel's exactly, block remainder included."""
    from imgclf.kernels import elementwise as ew

    n = ew.PARALLEL_STEP_MIN + 3 * ew.BLOCK // 2 + 5
    w0 = rng.standard_normal(n).astype(dtype)

    def three_steps():
        w, config = w0.copy(), optim.make_config(rule, 0.05)
        config["l2"] = 1e-3
        grads = np.random.default_rng(1)
        for _ in range(3):
            optim.RULES[rule](w, grads.standard_normal(n).astype(dtype), config)
        return w, {k: v for k, v in config.items() if isinstance(v, np.ndarray)}, config["sum_sq"]

    w2, s2, q2 = three_steps()
    monkeypatch.setattr(ew, "PARALLEL_STEP_MIN", n + 1)  # now the serial kernel
    w1, s1, q1 = three_steps()
    np.testing.assert_array_equal(w1, w2)
    assert s1.keys() == s2.keys() and all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert q1 == q2
