"""Data audit: planted exact and near duplicates within and across splits are found, nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.audit import audit, exact_groups
from imgclf.errors import UsageError


def _planted(seed=0):
    """train 40 / test 20 random 6x6x3 images (far apart) with known copies planted."""
    r = np.random.default_rng(seed)
    train = r.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    test = r.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)
    ytr, yte = np.arange(40) % 4, np.arange(20) % 4
    train[7] = train[3]  # exact, within train, same label (3 and 7 are both class 3)
    test[5] = train[10]  # exact leak, test 5 (class 1) copies train 10 (class 2): conflicting labels
    test[6] = test[2]  # exact, within test
    noise = r.integers(-2, 3, (6, 6, 3))
    test[9] = np.clip(train[20].astype(int) + noise, 0, 255)  # near leak (RMS ~1.4)
    train[30] = np.clip(train[25].astype(int) + noise, 0, 255)  # near, within train
    return {"train": (train, ytr), "test": (test, yte)}


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_audit_finds_the_planted_duplicates(metric):
    res = audit(_planted(), list("abcd"), metric=metric, near=4)
    ex = res["exact"]
    assert ex["groups"] == 3 and ex["images"] == 6
    assert ex["by_pair"] == {"train": 1, "test/train": 1, "test": 1}
    assert ex["conflicting_labels"] == 1
    assert [m["index"] for m in ex["conflicting"][0]] == [10, 5]
    near = res["near_duplicates"]
    assert near["pairs"] == 2 and near["by_pair"] == {"train": 1, "test/train": 1}
    found = {(e["a"]["split"], e["a"]["index"], e["b"]["split"], e["b"]["index"]) for e in near["list"]}
    assert found == {("train", 25, "train", 30), ("test", 9, "train", 20)}
    assert all(0 < e["distance"] <= 4 for e in near["list"])
    assert res["leakage"] == {"test": {"exact": 1, "near": 1}}
    assert res["class_counts"] == {"train": [10] * 4, "test": [5] * 4}
    assert res["sizes"] == {"6x6": 60} and res["modes"] == {"RGB": 60}


def test_audit_threshold_cross_only_and_names():
    data = _planted()
    assert audit(data, list("abcd"), near=0)["near_duplicates"]["pairs"] == 0
    assert audit(data, list("abcd"), near=0.5)["near_duplicates"]["pairs"] == 0  # RMS of the noise is above
    res = audit(data, list("abcd"), cross_only=True)
    assert res["near_duplicates"]["by_pair"] == {"test/train": 1}
    assert res["exact"]["by_pair"] == {"train": 1, "test/train": 1, "test": 1}  # hashing sees everything
    names = {"train": [f"tr{i}.png" for i in range(40)], "test": [f"te{i}.png" for i in range(20)]}
    res = audit(data, list("abcd"), names=names)
    assert [m["file"] for m in res["exact"]["list"][0]] == ["tr3.png", "tr7.png"]


def test_near_duplicate_distance_is_per_pixel():
    X = np.zeros((2, 4, 4, 1), np.uint8)
    X[1] = 3  # every pixel differs by 3: RMS 3 and mean absolute difference 3
    for metric in ("l2", "l1"):
        ex = audit({"train": (X, np.array([0, 1]))}, ["a", "b"], metric=metric, near=3)["near_duplicates"]
        assert ex["pairs"] == 1 and ex["list"][0]["distance"] == pytest.approx(3)
        assert audit({"train": (X, np.array([0, 1]))}, ["a", "b"], metric=metric, near=2.9)[
            "near_duplicates"]["pairs"] == 0


def test_exact_groups_compare_bytes_not_only_hashes(monkeypatch):
    import hashlib

    from imgclf import audit as audit_module

    class Same:
        def __init__(self, *a, **k):
            pass

        def digest(self):
            return b"0" * 16

    monkeypatch.setattr(audit_module.hashlib, "blake2b", Same)  # every image collides
    X = np.array([[1, 2], [3, 4], [1, 2]], np.uint8)
    parts = audit_module._parts({"train": (X, np.zeros(3, int))}, None)
    assert exact_groups(parts) == [[(0, 0), (0, 2)]]
    assert hashlib.blake2b is Same


def test_audit_refuses_what_it_cannot_compare():
    X = np.zeros((3, 4), np.float32)
    with pytest.raises(UsageError, match="raw 8-bit images"):
        audit({"train": (X, np.zeros(3, int))}, ["a"])
    with pytest.raises(UsageError, match="near must be"):
        audit({"train": (X.astype(np.uint8), np.zeros(3, int))}, ["a"], near=-1)
    with pytest.raises(UsageError, match="unknown metric"):
        audit({"train": (X.astype(np.uint8), np.zeros(3, int))}, ["a"], metric="cos")
