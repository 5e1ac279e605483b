"""Classification metrics in vectorised numpy (checked against scikit-learn in tests).

Conventions: a class with no predicted (or no true) sample has precision (recall) 0, as
scikit-learn's `zero_division=0`; macro AUC averages one-vs-rest AUCs over classes that occur
and do not cover every sample (an AUC needs both positives and negatives).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    index = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Macro F1 over the classes present in y_true or y_pred (scikit-learn's default labels)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    return float(precision_recall_f1(cm)[2][present].mean()) if present.any() else 0.0


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks 1..n of each column, ties sharing their mean rank (as scipy.stats.rankdata)."""
    n, k = scores.shape
    order = np.argsort(scores, axis=0, kind="mergesort")
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    ranks = np.empty((n, k), dtype=np.float64)
    for column in range(k):  # per class, not per sample: k is 5
        values = sorted_scores[:, column]
        starts = np.r_[True, values[1:] != values[:-1]]
        group = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        last = np.r_[first[1:], n] - 1
        mean_rank = (first + last) / 2.0 + 1.0
        ranks[order[:, column], column] = mean_rank[group]
    return ranks


def roc_auc_ovr(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC per class (Mann-Whitney U / (n_pos * n_neg)); NaN where undefined."""
    y_true = np.asarray(y_true, dtype=np.int64)
    n, k = probs.shape
    positive = y_true[:, None] == np.arange(k)[None, :]
    n_pos = positive.sum(axis=0).astype(np.float64)
    n_neg = n - n_pos
    rank_sum = (_average_ranks(np.asarray(probs, dtype=np.float64)) * positive).sum(axis=0)
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    valid = (n_pos > 0) & (n_neg > 0)
    return np.where(valid, u / np.where(valid, n_pos * n_neg, 1.0), np.nan)


def binary_auroc(y_true_binary: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of `scores` for the positives in `y_true_binary` (ties count half); NaN unless both occur.
    E.g. positives = windows of families a model never saw, scores = minus its familiarity."""
    y = np.asarray(y_true_binary, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y.shape != scores.shape or y.ndim != 1:
        raise ValueError(f"y_true_binary and scores must be 1-D of one length, got {y.shape} and {scores.shape}")
    return float(roc_auc_ovr(y.astype(np.int64), np.stack([-scores, scores], axis=1))[1])


def roc_curve(y_true_binary: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold (for the ROC figure)."""
    order = np.argsort(-scores, kind="mergesort")
    scores, y = scores[order], np.asarray(y_true_binary, dtype=np.float64)[order]
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tps = np.cumsum(y)[last_of_tie]
    fps = np.cumsum(1 - y)[last_of_tie]
    tpr = np.r_[0.0, tps / max(tps[-1], 1.0)] if len(tps) else np.zeros(1)
    fpr = np.r_[0.0, fps / max(fps[-1], 1.0)] if len(fps) else np.zeros(1)
    return fpr, tpr


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15):
    """Per equal-width confidence bin: count, mean confidence, accuracy (for ECE and the diagram)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are (lo, hi], as in Guo et al. 2017; a confidence of exactly 0 goes to the first bin.
    bin_index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(bin_index, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(bin_index, weights=correct.astype(np.float64), minlength=n_bins)
    safe = np.maximum(counts, 1.0)
    return counts, conf_sum / safe, acc_sum / safe


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    counts, mean_conf, accuracy = calibration_bins(confidence, correct, n_bins)
    return float(np.sum(counts / max(len(confidence), 1) * np.abs(accuracy - mean_conf)))


@dataclass
class ClassificationReport:
    n: int
    accuracy: float
    macro_f1: float
    macro_auc: float
    ece: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    auc: list[float | None]
    confusion: list[list[int]]
    class_names: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def classification_report(y_true: np.ndarray, probs: np.ndarray, class_names: list[str] | tuple[str, ...],
                          n_bins: int = 15) -> ClassificationReport:
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(y_true), k):
        raise ValueError(f"probs must be ({len(y_true)}, {k}), got {probs.shape}")
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    precision, recall, f1 = precision_recall_f1(cm)
    auc = roc_auc_ovr(y_true, probs)
    return ClassificationReport(
        n=len(y_true),
        accuracy=float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        macro_f1=macro_f1(y_true, y_pred, k),
        macro_auc=float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan"),
        ece=expected_calibration_error(probs, y_true, n_bins),
        precision=precision.tolist(),
        recall=recall.tolist(),
        f1=f1.tolist(),
        support=cm.sum(axis=1).tolist(),
        auc=[None if np.isnan(a) else float(a) for a in auc],
        confusion=cm.tolist(),
        class_names=list(class_names),
    )


def negative_log_likelihood(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Mean -log p(true class) (nats); what temperature scaling minimises."""
    p = np.asarray(probs, dtype=np.float64)[np.arange(len(y_true)), np.asarray(y_true, dtype=np.int64)]
    return float(-np.log(np.clip(p, 1e-12, 1.0)).mean()) if len(p) else 0.0


def familiarity_gate_report(y_true: np.ndarray, probs: np.ndarray, familiar: np.ndarray,
                            class_names: list[str] | tuple[str, ...], n_bins: int = 15) -> dict:
    """The familiarity gate on a labelled set: how many windows it flags `unfamiliar`, and the
    classification report of the windows it lets through (those the agent would act on)."""
    familiar = np.asarray(familiar, dtype=bool)
    y_true = np.asarray(y_true, dtype=np.int64)
    flagged = int((~familiar).sum())
    y_pred = np.asarray(probs).argmax(axis=1)
    flagged_per_class = np.bincount(y_true[~familiar], minlength=len(class_names)).tolist()
    result = {
        "n": len(y_true), "unfamiliar": flagged, "unfamiliar_fraction": flagged / max(len(y_true), 1),
        "unfamiliar_per_true_class": dict(zip(class_names, flagged_per_class, strict=True)),
        "errors_flagged": int(((y_pred != y_true) & ~familiar).sum()), "errors": int((y_pred != y_true).sum()),
        "familiar": None,
    }
    if familiar.any():
        result["familiar"] = classification_report(y_true[familiar], probs[familiar], class_names, n_bins).to_dict()
    return result


def alignment_uniformity(feats: np.ndarray, labels: np.ndarray, t: float = 2.0) -> dict[str, float]:
    """Geometry of L2-normalised embeddings (Wang & Isola 2020), read with labels as SupCon does:
    alignment = mean squared distance between embeddings of the same class (lower: classes are tight),
    uniformity = log mean exp(-t x squared distance) over all pairs (lower: spread over the sphere).
    A SupCon stage that learns drives alignment down while uniformity stays well below 0; a collapse
    shows as both near 0."""
    z = np.asarray(feats, dtype=np.float64)
    sq = np.maximum(2.0 - 2.0 * (z @ z.T), 0.0)  # unit vectors: |a - b|^2 = 2 - 2 a.b
    off = ~np.eye(len(z), dtype=bool)
    same = (labels[:, None] == labels[None, :]) & off
    alignment = float(sq[same].mean()) if same.any() else float("nan")
    uniformity = float(np.log(np.exp(-t * sq[off]).mean())) if off.any() else float("nan")
    return {"alignment": alignment, "uniformity": uniformity}
