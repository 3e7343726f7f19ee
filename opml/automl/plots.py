"""Report plots of an experiment's best candidate, written as PNG files (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

TOP_FEATURES = 20


def write_plots(result: Any, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Confusion matrix, ROC curve, precision-recall curve and feature importance of the best
    candidate (from its out-of-fold predictions); returns the written files."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(result.oof["y"])
    proba = np.asarray(result.oof["proba"])
    labels = [str(c) for c in result.classes]
    title = f"{result.best.pipeline_name} (out-of-fold)"
    written = []
    for name, draw in (
        ("confusion_matrix.png", _confusion),
        ("roc_curve.png", _roc),
        ("precision_recall_curve.png", _pr),
        ("feature_importance.png", _importance),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
        try:
            draw(ax, result, y, proba, labels, title)
            fig.tight_layout()
            path = out / name
            tmp = out / f".{name}.tmp"
            fig.savefig(tmp, format="png")
            tmp.replace(path)
            written.append(path)
        finally:
            plt.close(fig)
    return written


def write_calibration_plot(result: Any, out_dir: str | os.PathLike[str]) -> Path:
    """The calibration (reliability) curve of the final model's out-of-fold probabilities, with their
    Brier score, and of the calibrated ones when a map was applied: calibration_curve.png."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    try:
        _calibration(ax, result)
        fig.tight_layout()
        path = out / "calibration_curve.png"
        tmp = out / ".calibration_curve.png.tmp"
        fig.savefig(tmp, format="png")
        tmp.replace(path)
    finally:
        plt.close(fig)
    return path


def _calibration(ax: Any, result: Any) -> None:
    from opml.automl.calibration import brier

    y = np.asarray(result.oof["y"])
    k = _positive(result)
    label = str(result.classes[k])
    cal = getattr(result, "calibration", None) or {}
    curves = [("out-of-fold", np.asarray(result.oof.get("raw_proba", result.oof["proba"]))[:, k])]
    if cal.get("applied"):
        curves.append((f"{cal['applied']} calibrated", np.asarray(result.oof["proba"])[:, k]))
    for name, p in curves:
        x, frac = _reliability(y == k, p)
        ax.plot(x, frac, marker="o", markersize=3, label=f"{name} (Brier {brier(y == k, p):.4f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfectly calibrated")
    ax.set_xlabel(f"predicted probability of {label!r} (mean per bin)")
    ax.set_ylabel(f"observed share of {label!r}")
    ax.legend(loc="upper left", fontsize=8)
    verdict = f"applied: {cal['applied']}" if cal.get("applied") else "not applied"
    ax.set_title(f"Calibration curve, 10 equal-count bins ({verdict})\n"
                 f"{result.final_pipeline or result.best.pipeline_name} (out-of-fold)", fontsize=9)


def _reliability(y_pos: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted probability, observed share) per equal-count bin of the predictions."""
    order = np.argsort(p, kind="mergesort")
    groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    return np.array([p[g].mean() for g in groups]), np.array([np.mean(y_pos[g]) for g in groups])


def _positive(result: Any) -> int:
    return int((result.threshold or {}).get("positive_index", 1))


def _confusion(ax: Any, result: Any, y: np.ndarray, proba: np.ndarray, labels: list[str], title: str) -> None:
    from opml.automl.metrics import decide

    threshold = (result.threshold or {}).get("applied")
    pred = decide(proba, threshold, _positive(result))
    k = len(labels)
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (y, pred), 1)
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]:,}", ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    how = f"threshold {threshold:.3f}" if threshold is not None else "argmax"
    ax.set_title(f"Confusion matrix, {how}\n{title}", fontsize=9)


def _roc(ax: Any, result: Any, y: np.ndarray, proba: np.ndarray, labels: list[str], title: str) -> None:
    from sklearn.metrics import auc, roc_curve

    for k, label in enumerate(labels):
        if len(labels) == 2 and k != _positive(result):
            continue
        fpr, tpr, _ = roc_curve(y == k, proba[:, k])
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc(fpr, tpr):.4f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    ax.set_title(f"ROC curve\n{title}", fontsize=9)


def _pr(ax: Any, result: Any, y: np.ndarray, proba: np.ndarray, labels: list[str], title: str) -> None:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    for k, label in enumerate(labels):
        if len(labels) == 2 and k != _positive(result):
            continue
        precision, recall, _ = precision_recall_curve(y == k, proba[:, k])
        ap = average_precision_score(y == k, proba[:, k])
        ax.plot(recall, precision, label=f"{label} (AP {ap:.4f})")
        ax.axhline(np.mean(y == k), linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(loc="upper right")
    ax.set_title(f"Precision-recall curve\n{title}", fontsize=9)


def _importance(ax: Any, result: Any, y: np.ndarray, proba: np.ndarray, labels: list[str], title: str) -> None:
    items = list(result.feature_importance)[:TOP_FEATURES][::-1]
    ax.barh([c for c, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_xlabel("share of importance")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(f"Feature importance (raw columns)\n{result.final_pipeline or result.best.pipeline_name}",
                 fontsize=9)
