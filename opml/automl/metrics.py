"""Classification metrics under Azure's names, computed from (out-of-fold) class probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    "AUC_weighted",
    "AUC_macro",
    "average_precision_score_weighted",
    "balanced_accuracy",
    "f1_score_weighted",
    "f1_score_macro",
    "precision_score_weighted",
    "precision_score_macro",
    "recall_score_weighted",
    "recall_score_macro",
    "norm_macro_recall",
    "log_loss",
    "matthews_correlation",
)


def decide(proba: np.ndarray, threshold: float | None = None, positive: int = 1) -> np.ndarray:
    """Class index per row: argmax, or for two classes `positive` when its probability >= threshold."""
    if threshold is not None and proba.shape[1] == 2:
        return np.where(proba[:, positive] >= threshold, positive, 1 - positive)
    return np.argmax(proba, axis=1)


def _auc(y: np.ndarray, proba: np.ndarray, average: str) -> float:
    from sklearn.metrics import roc_auc_score

    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average=average, labels=np.arange(proba.shape[1])))


def _average_precision_weighted(y: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    counts = np.bincount(y, minlength=proba.shape[1])
    scores = [average_precision_score(y == k, proba[:, k]) for k in range(proba.shape[1]) if counts[k]]
    weights = [counts[k] for k in range(proba.shape[1]) if counts[k]]
    return float(np.average(scores, weights=weights))


def compute_metrics(
    y: np.ndarray, proba: np.ndarray, labels: list[str], *, threshold: float | None = None, positive: int = 1
) -> tuple[dict[str, float], dict[str, dict[str, float]], list[list[int]]]:
    """(metrics, per-class precision/recall/f1/support, confusion matrix) for integer labels `y`.

    Label-based metrics use argmax unless a binary `threshold` on class `positive` is given.
    """
    from sklearn import metrics as m

    y = np.asarray(y)
    proba = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
    proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-300)
    k = proba.shape[1]
    classes = np.arange(k)
    pred = decide(proba, threshold, positive)
    recall_macro = float(m.recall_score(y, pred, average="macro", labels=classes, zero_division=0))
    out = {
        "accuracy": float(m.accuracy_score(y, pred)),
        "AUC_weighted": _auc(y, proba, "weighted"),
        "AUC_macro": _auc(y, proba, "macro"),
        "average_precision_score_weighted": _average_precision_weighted(y, proba),
        "balanced_accuracy": float(m.balanced_accuracy_score(y, pred)),
        "f1_score_weighted": float(m.f1_score(y, pred, average="weighted", labels=classes, zero_division=0)),
        "f1_score_macro": float(m.f1_score(y, pred, average="macro", labels=classes, zero_division=0)),
        "precision_score_weighted": float(
            m.precision_score(y, pred, average="weighted", labels=classes, zero_division=0)
        ),
        "precision_score_macro": float(m.precision_score(y, pred, average="macro", labels=classes, zero_division=0)),
        "recall_score_weighted": float(m.recall_score(y, pred, average="weighted", labels=classes, zero_division=0)),
        "recall_score_macro": recall_macro,
        "norm_macro_recall": float((recall_macro - 1.0 / k) / (1.0 - 1.0 / k)),
        "log_loss": float(m.log_loss(y, proba, labels=classes)),
        "matthews_correlation": float(m.matthews_corrcoef(y, pred)),
    }
    p, r, f, s = m.precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    per_class = {
        str(labels[i]): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i in classes
    }
    cm = m.confusion_matrix(y, pred, labels=classes).tolist()
    return out, per_class, cm


def fast_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Binary ROC AUC via ranks (ties averaged); equals sklearn's roc_auc_score."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def primary_score(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    """The primary metric alone (argmax decisions), fast where it matters (binary AUC)."""
    from sklearn import metrics as m

    proba = np.asarray(proba, dtype=np.float64)
    if metric == "AUC_weighted":
        return fast_auc(y, proba[:, 1]) if proba.shape[1] == 2 else _auc(y, proba, "weighted")
    if metric == "average_precision_score_weighted":
        return _average_precision_weighted(np.asarray(y), proba)
    pred = np.argmax(proba, axis=1)
    classes = np.arange(proba.shape[1])
    if metric == "accuracy":
        return float(np.mean(pred == y))
    if metric == "precision_score_weighted":
        return float(m.precision_score(y, pred, average="weighted", labels=classes, zero_division=0))
    if metric == "norm_macro_recall":
        k = proba.shape[1]
        rec = float(m.recall_score(y, pred, average="macro", labels=classes, zero_division=0))
        return (rec - 1.0 / k) / (1.0 - 1.0 / k)
    raise ValueError(f"unknown primary metric {metric!r}")


def plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (for JSON and MLflow)."""
    return value.item() if hasattr(value, "item") else value
