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
