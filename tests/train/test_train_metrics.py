"""Our numpy metrics equal scikit-learn's on the same predictions."""

import itertools

import numpy as np
import pytest
from sklearn import metrics as skm

from train.metrics import calibration_bins, classification_report, expected_calibration_error, roc_curve

CLASSES = ("Normal", "Noise", "Surface", "Corona", "Void")


def _predictions(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    logits = rng.normal(size=(n, 5)) + 2.0 * np.eye(5)[y] * rng.random((n, 1))
    if ties:
        logits = np.round(logits)  # many tied scores: the rank-based AUC must average them
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False)])
def test_report_equals_sklearn(seed, ties):
    y, probs = _predictions(seed, ties=ties)
    pred = probs.argmax(axis=1)
    report = classification_report(y, probs, CLASSES)
    assert report.accuracy == pytest.approx(skm.accuracy_score(y, pred))
    assert report.macro_f1 == pytest.approx(skm.f1_score(y, pred, average="macro"))
    np.testing.assert_allclose(report.precision, skm.precision_score(y, pred, average=None, zero_division=0))
    np.testing.assert_allclose(report.recall, skm.recall_score(y, pred, average=None, zero_division=0))
    np.testing.assert_array_equal(report.confusion, skm.confusion_matrix(y, pred, labels=range(5)))
    assert report.macro_auc == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    for k in range(5):
        assert report.auc[k] == pytest.approx(skm.roc_auc_score(y == k, probs[:, k]))


def test_macro_f1_with_a_class_never_predicted_matches_sklearn():
    y = np.array([0, 1, 2, 3, 4, 4, 3])
    pred = np.array([0, 1, 1, 3, 3, 3, 3])
    probs = np.eye(5)[pred] * 0.9 + 0.02
    report = classification_report(y, probs, CLASSES)
    assert report.macro_f1 == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))


def test_roc_curve_matches_sklearn():
    y, probs = _predictions(3, ties=True)
    fpr, tpr = roc_curve(y == 2, probs[:, 2])
    sk_fpr, sk_tpr, _ = skm.roc_curve(y == 2, probs[:, 2], drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_ece_equals_a_direct_per_bin_computation():
    y, probs = _predictions(4)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    expected = 0.0
    edges = np.linspace(0, 1, 16)
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            expected += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    assert expected_calibration_error(probs, y, 15) == pytest.approx(expected)
    counts, _, _ = calibration_bins(conf, correct, 15)
    assert counts.sum() == len(y)


def test_perfectly_calibrated_confident_predictions_have_zero_ece():
    y = np.arange(50) % 5
    assert expected_calibration_error(np.eye(5)[y], y) == pytest.approx(0.0)


def test_alignment_uniformity_tells_learned_random_and_collapsed_embeddings_apart():
    from train.metrics import alignment_uniformity

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    random = rng.normal(size=(200, 32))
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    learned = np.eye(32)[labels] + 0.05 * rng.normal(size=(200, 32))
    learned /= np.linalg.norm(learned, axis=1, keepdims=True)
    collapsed = np.tile(random[:1], (200, 1))
    r, g, c = (alignment_uniformity(x, labels) for x in (random, learned, collapsed))
    assert g["alignment"] < 0.2 < 1.5 < r["alignment"]  # same-class pairs: tight when learned, ~2 when random
    assert c["alignment"] == pytest.approx(0.0, abs=1e-9) and c["uniformity"] == pytest.approx(0.0, abs=1e-9)
    assert r["uniformity"] < g["uniformity"] < -1.0  # learned: 5 clusters, still spread
