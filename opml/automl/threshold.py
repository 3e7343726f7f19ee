"""Decision threshold for imbalanced binary data, chosen on out-of-fold probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np


def best_f1_threshold(y_pos: np.ndarray, p_pos: np.ndarray) -> float:
    """The probability cut (predict positive when p >= cut) that maximises the positive class's F1.

    Scans every distinct probability; ties go to the highest F1 then the cut nearest 0.5.
    """
    y_pos = np.asarray(y_pos).astype(bool)
    p_pos = np.asarray(p_pos, dtype=np.float64)
    order = np.argsort(-p_pos, kind="mergesort")
    p_sorted, y_sorted = p_pos[order], y_pos[order]
    tp = np.cumsum(y_sorted)
    k = np.arange(1, len(p_sorted) + 1)
    # only cut where the next probability differs (all rows with p >= cut are positive)
    last = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    tp, k, cuts = tp[last], k[last], p_sorted[last]
    f1 = 2.0 * tp / (k + y_pos.sum())
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    pick = best[np.argmin(np.abs(cuts[best] - 0.5))]
    return float(cuts[pick])


def decide(proba: np.ndarray, threshold: float | None, positive: int) -> np.ndarray:
    """The predicted class index per row: the one decision rule of predict and of every scorer.

    A binary problem with a threshold predicts class `positive` when its probability is >= `threshold`
    (ties go to `positive`), else the other class; otherwise (no threshold, or not binary) the argmax.
    """
    if threshold is not None and proba.shape[1] == 2:
        return np.where(proba[:, positive] >= threshold, positive, 1 - positive)
    return np.argmax(proba, axis=1)


def decision_of(model: Any) -> tuple[float | None, int]:
    """(threshold, positive class index) that `decide` applies for a fitted OpmlClassifier."""
    threshold = getattr(model, "threshold_", None)
    binary = len(model.classes_) == 2
    return (float(threshold) if threshold is not None and binary else None), int(getattr(model, "positive_index_", 1))


def binary_report(y_pos: np.ndarray, p_pos: np.ndarray, threshold: float) -> dict[str, float]:
    """accuracy and the positive (minority) class's precision, recall and F1 at `threshold`."""
    y_pos = np.asarray(y_pos).astype(bool)
    pred = np.asarray(p_pos) >= threshold
    tp = float(np.sum(pred & y_pos))
    fp = float(np.sum(pred & ~y_pos))
    fn = float(np.sum(~pred & y_pos))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold),
        "accuracy": float(np.mean(pred == y_pos)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def choose_threshold(
    setting: Any, y: np.ndarray, proba: np.ndarray, classes: list[str], positive: int
) -> dict[str, Any]:
    """Threshold info: the applied threshold on class `positive` plus metrics at argmax and tuned.

    `setting` is settings.decision_threshold: "f1_minority" (maximise the minority class's F1 on
    the given out-of-fold probabilities), "argmax" (0.5) or a fixed number. Multiclass data always
    uses argmax (applied is None).
    """
    if proba.shape[1] != 2:
        return {"mode": "argmax", "minority_class": str(classes[positive]), "applied": None,
                "argmax": None, "tuned": None}
    y_pos = np.asarray(y) == positive
    p_pos = proba[:, positive]
    if setting == "f1_minority":
        tuned = best_f1_threshold(y_pos, p_pos)
    elif setting == "argmax":
        tuned = 0.5
    else:
        tuned = float(setting)
    return {
        "mode": str(setting),
        "minority_class": str(classes[positive]),
        "positive_index": int(positive),
        "applied": float(tuned),
        "argmax": binary_report(y_pos, p_pos, 0.5),
        "tuned": binary_report(y_pos, p_pos, tuned),
        "source": "out-of-fold predictions of the best candidate",
    }
