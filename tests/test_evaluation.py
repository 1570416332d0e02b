"""Accuracy, confusion matrix, per-class figures."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.errors import UsageError
from imgclf.evaluation import accuracy, confusion_matrix, per_class_accuracy, precision_recall, report


def test_figures():
    t = np.array([0, 0, 1, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 0, 1])
    assert accuracy(t, p) == pytest.approx(3 / 6)
    cm = confusion_matrix(t, p, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(t, p, 4)
    np.testing.assert_allclose(acc[:3], [0.5, 2 / 3, 0.0])
    assert np.isnan(acc[3])  # no examples of class 3
    prec, rec = precision_recall(t, p, 4)
    np.testing.assert_allclose(prec[:2], [0.5, 0.5])
    assert np.isnan(prec[2]) and np.isnan(prec[3])
    np.testing.assert_allclose(rec, acc)
    r = report(t, p, ["a", "b", "c", "d"])
    assert r["per_class"]["b"]["support"] == 3 and r["accuracy"] == pytest.approx(0.5)


@pytest.mark.parametrize("t,p", [([0, 1], [0]), ([], []), ([0, -1], [0, 0]), ([[0]], [[0]])])
def test_bad_labels(t, p):
    with pytest.raises(UsageError):
        confusion_matrix(np.array(t, dtype=int), np.array(p, dtype=int))


def test_label_out_of_range():
    with pytest.raises(UsageError, match="below n_classes"):
        confusion_matrix([0, 3], [0, 0], 3)
