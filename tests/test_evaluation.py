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


def test_error_analysis_matches_scikit_learn(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    from imgclf.evaluation import balanced_accuracy, f1_scores, top_k_accuracy

    t = rng.integers(0, 5, 300)
    scores = rng.normal(size=(300, 5)) + 1.5 * np.eye(5)[t]
    p = scores.argmax(axis=1)
    assert balanced_accuracy(t, p, 5) == pytest.approx(metrics.balanced_accuracy_score(t, p))
    np.testing.assert_allclose(f1_scores(t, p, 5), metrics.f1_score(t, p, average=None))
    for k in (1, 2, 4):
        assert top_k_accuracy(t, scores, k) == pytest.approx(metrics.top_k_accuracy_score(t, scores, k=k))
    assert top_k_accuracy(t, scores, 1) == accuracy(t, p)


def test_top_k_ties_rank_the_smaller_class_first():
    from imgclf.evaluation import top_k_accuracy

    scores = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [1 / 3] * 3])
    assert top_k_accuracy([0, 1, 2], scores, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy([0, 1, 2], scores, 2) == pytest.approx(2 / 3)
    with pytest.raises(UsageError, match="k must be"):
        top_k_accuracy([0], [[1.0]], 0)
    with pytest.raises(UsageError, match="scores of shape"):
        top_k_accuracy([0, 1], [[1.0, 0.0]], 1)


def test_f1_and_balanced_accuracy_edge_cases():
    from imgclf.evaluation import balanced_accuracy, f1_scores

    t, p = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0])
    f1 = f1_scores(t, p, 3)
    assert f1[0] == pytest.approx(2 / 3) and f1[1] == 0 and np.isnan(f1[2])  # class 2: absent, never predicted
    assert balanced_accuracy(t, p, 3) == pytest.approx(0.5)  # absent classes do not count


def test_confused_pairs_and_confident_mistakes():
    from imgclf.evaluation import confident_mistakes, confused_pairs

    cm = np.array([[5, 3, 0], [1, 4, 3], [0, 7, 2]])
    assert confused_pairs(cm) == [(2, 1, 7), (0, 1, 3), (1, 2, 3), (1, 0, 1)]
    assert confused_pairs(cm, 2) == [(2, 1, 7), (0, 1, 3)]
    t = np.array([0, 1, 2, 0, 1])
    scores = np.array([[0.9, 0.1, 0], [0.8, 0.2, 0], [0.1, 0.6, 0.3], [0.2, 0.8, 0], [0.3, 0.3, 0.4]])
    # wrong: 1 (0.8), 2 (0.6), 3 (0.8), 4 (0.4); ties by index
    assert confident_mistakes(t, scores).tolist() == [1, 3, 2, 4]
    assert confident_mistakes(t, scores, 2).tolist() == [1, 3]
    r = report(t, scores.argmax(axis=1), ["a", "b", "c"], pairs=1)
    assert r["confused"] == [{"true": "a", "predicted": "b", "count": 1, "share": 0.5}]  # ties: row-major
    assert r["balanced_accuracy"] == pytest.approx((1 / 2 + 0 + 0) / 3)
