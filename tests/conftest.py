"""Shared fixtures: a CLI runner, small synthetic datasets, and real data that skips when absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path | None:
    """IMGCLF_DATA (first entry) or ../shared/datasets beside the checkout, if present."""
    for entry in os.environ.get("IMGCLF_DATA", "").split(os.pathsep):
        if entry and Path(entry).is_dir():
            return Path(entry)
    shared = ROOT.parent / "shared" / "datasets"
    return shared if shared.is_dir() else None


@pytest.fixture
def real_data():
    d = real_data_dir()
    if d is None:
        pytest.skip("real datasets not available: set IMGCLF_DATA or place ../shared/datasets beside the checkout")
    return d


@pytest.fixture
def cifar_dir(real_data):
    p = real_data / "cifar-10-batches-py"
    if not p.is_dir():
        pytest.skip(f"CIFAR-10 python batches not found under {real_data}")
    return p


@pytest.fixture
def mnist_dir(real_data):
    p = real_data / "mnist"
    if not p.is_dir():
        pytest.skip(f"MNIST not found under {real_data}")
    return p


@pytest.fixture(autouse=True)
def _isolated_data_path(monkeypatch, tmp_path_factory):
    """Tests never see a developer's ./data or cache dir unless they ask for it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def make_images(n, n_classes=3, shape=(8, 8, 3), seed=0):
    """Separable synthetic uint8 images: each class a different mean brightness plus noise."""
    r = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    base = (y[:, None, None, None] * (200 // max(n_classes - 1, 1))).astype(np.int16)
    X = np.clip(base + r.integers(-20, 21, size=(n,) + shape), 0, 255).astype(np.uint8)
    return X, y.astype(np.int64)


def interrupt_at(iteration: int):
    """A Solver callback that sends this process SIGINT after step `iteration` (a user's Ctrl-C)."""
    import signal

    def callback(event, info):
        if event == "step" and info["iteration"] == iteration:
            os.kill(os.getpid(), signal.SIGINT)
    return callback


def full_and_resumed(make, data, tmp_path, stop_at: int):
    """(uninterrupted, interrupted, resumed) fits of fresh `make()` models on `data` (X, y, X_val, y_val):
    the second stopped by SIGINT after step `stop_at`, checkpointing into tmp_path, the third resumed from
    its checkpoint."""
    full = make().fit(*data)
    first = make().fit(*data, checkpoint_dir=tmp_path, stop_signal=True, callback=interrupt_at(stop_at))
    assert first.stopped_ == "interrupted"
    return full, first, make().fit(*data, resume=first.result_.checkpoint)


def assert_same_state(a, b) -> None:
    """Two fitted nets' weights and buffers bit for bit, and their step losses."""
    for k in a.params_:
        np.testing.assert_array_equal(b.params_[k], a.params_[k], err_msg=k)
    for k in a.buffers_:
        np.testing.assert_array_equal(b.buffers_[k], a.buffers_[k], err_msg=k)
    assert b.result_.loss_history == a.result_.loss_history


def assert_runs_without_jit(code: str, timeout: float = 300) -> None:
    """Run `code` in a fresh interpreter with NUMBA_DISABLE_JIT=1 (the kernels' Python source, on small
    inputs), with the project and tests/ importable; it must exit 0 and print "ok"."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_DISABLE_JIT="1",
               PYTHONPATH=os.pathsep.join([os.environ.get("PYTHONPATH", root), root, os.path.join(root, "tests")]))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root,
                         timeout=timeout)
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stdout.strip() == "ok"


def check_linear_gradients(forward, params, grads_of, seed=0, **kw):
    """Numerical check of every gradient of f(params) = sum(forward(params) * G) for a fixed random G;
    `grads_of(G)` gives the analytic gradients."""
    from imgclf.gradcheck import check_gradients

    out = forward(params)
    G = np.random.default_rng(seed).standard_normal(out.shape)
    report = check_gradients(lambda p: float(np.sum(forward(p) * G)), params, grads_of(G), n_checks=12, **kw)
    assert report.ok and report.max_rel_error < 1e-6, report.as_dict()


def check_bn_layer_gradients(forward, backward, x, rng):
    """Gradient check of a fused batch-norm layer's `forward`/`backward` pair (training mode) in x, gamma and
    beta (drawn from `rng`)."""
    C = x.shape[-1]
    params = {"x": x, "gamma": rng.standard_normal(C), "beta": rng.standard_normal(C)}

    def fwd(q):
        return forward(q["x"], q["gamma"], q["beta"], np.zeros(C), np.ones(C), "train")

    def grads(G):
        dx, g = backward(G, fwd(params)[1])
        return {"x": dx, **g}

    check_linear_gradients(lambda q: fwd(q)[0], params, grads)


def check_model_gradients(model, X, y, seed=3):
    """Gradient check of a ConvNet's loss_and_grads over every parameter (float64 models), dropout masks
    fixed by a fresh rng per call; the weights moved off their initial values (beta = 0, b = 0, gamma = 1),
    a whitening stem's frozen filters too. Returns the model."""
    from imgclf.gradcheck import check_gradients

    model._check_params()
    model.input_shape_ = X.shape[1:]
    model.initialize(int(np.prod(X.shape[1:])), int(y.max()) + 1, np.random.default_rng(seed))
    r = np.random.default_rng(seed)
    for v in model.params_.values():
        v += 0.1 * r.standard_normal(v.shape)
    if getattr(model, "stem_w_", None) is not None:
        model.stem_w_[...] = 0.5 * r.standard_normal(model.stem_w_.shape)
    Xp = model.prepare(X)
    _, grads = model.loss_and_grads(Xp, y, "train", np.random.default_rng(7))
    assert set(grads) == set(model.params_)
    saved = model.params_

    def f(p):
        model.params_ = p
        try:
            return model.loss_and_grads(Xp, y, "train", np.random.default_rng(7))[0]
        finally:
            model.params_ = saved

    report = check_gradients(f, model.params_, grads, n_checks=6, rng=np.random.default_rng(seed))
    assert report.ok and report.max_rel_error < 1e-5, report.as_dict()
    return model


@pytest.fixture
def small_stream(tmp_path):
    """A pipeline .npz with train/val/test of separable 8x8x3 images, 3 classes."""
    from imgclf import storage
    from imgclf.datasets.base import Dataset, Split

    Xtr, ytr = make_images(120, seed=1)
    Xva, yva = make_images(30, seed=2)
    Xte, yte = make_images(30, seed=3)
    ds = Dataset({"train": Split(Xtr, ytr), "val": Split(Xva, yva), "test": Split(Xte, yte)},
                 ["a", "b", "c"], (8, 8, 3), [], "tiny")
    path = tmp_path / "tiny.npz"
    storage.write_stream(ds, path)
    return path
