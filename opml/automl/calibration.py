"""Probability calibration of the final model, judged on its out-of-fold predictions.

Every run reports the Brier score of the out-of-fold probabilities (binary: of the positive class;
multiclass: summed over the classes). Binary problems are also calibrated when it helps. Two maps of
the positive class's probability are tried: sigmoid (Platt scaling of the logit) and isotonic
(pool-adjacent-violators over equal-count bins, interpolated linearly between the blocks' centres, so
the map is continuous and increasing and a tiny table of knots). Each is cross-fitted on the folds
(fitted on the other folds' out-of-fold rows, applied to the fold's rows); the one with the lower Brier
score is applied only when its mean improvement over the raw probabilities exceeds NOISE_SE standard
errors of the per-fold improvements and the map keeps the out-of-fold AUC (within AUC_TOLERANCE).
Otherwise the probabilities are left as they are and the report says why.

A map is a small dict (`method` plus its numbers) stored on the model (OpmlClassifier.calibration);
`apply_map` is the one implementation predict_proba and the compiled scorer share.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

METHODS = ("sigmoid", "isotonic")
BINS = 100  # isotonic: at most this many equal-count bins ...
MIN_BIN = 50  # ... of at least this many rows
NOISE_SE = 2.0  # applied only when the mean per-fold Brier improvement exceeds this many standard errors
AUC_TOLERANCE = 1e-4
EPS = 1e-12  # sigmoid: probabilities are clipped to [EPS, 1 - EPS] before the logit


def brier(y_pos: np.ndarray, p_pos: np.ndarray) -> float:
    """Mean squared difference between the positive class's probability and the 0/1 outcome."""
    return float(np.mean((np.asarray(p_pos, dtype=np.float64) - np.asarray(y_pos, dtype=np.float64)) ** 2))


def multiclass_brier(y: np.ndarray, proba: np.ndarray) -> float:
    """Brier score summed over classes (rows: class probabilities; y: class indices)."""
    onehot = np.zeros_like(proba, dtype=np.float64)
    onehot[np.arange(len(y)), np.asarray(y)] = 1.0
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def fit_map(method: str, y_pos: np.ndarray, p_pos: np.ndarray) -> dict[str, Any]:
    """A calibration map of `method` fitted on (probability, outcome) pairs."""
    y_pos = np.asarray(y_pos, dtype=np.float64)
    p_pos = np.asarray(p_pos, dtype=np.float64)
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        z = _logit(p_pos)[:, None]
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(z, y_pos.astype(int))
        return {"method": "sigmoid", "coef": float(lr.coef_[0, 0]), "intercept": float(lr.intercept_[0])}
    if method == "isotonic":
        x, y = _isotonic_knots(y_pos, p_pos)
        return {"method": "isotonic", "x": x.tolist(), "y": y.tolist()}
    raise ValueError(f"unknown calibration method {method!r}")


def apply_map(cal: dict[str, Any], p_pos: np.ndarray) -> np.ndarray:
    """The calibrated probability of the positive class."""
    p_pos = np.asarray(p_pos, dtype=np.float64)
    if cal["method"] == "sigmoid":
        from scipy.special import expit

        return expit(cal["coef"] * _logit(p_pos) + cal["intercept"])
    return np.interp(p_pos, np.asarray(cal["x"], dtype=np.float64), np.asarray(cal["y"], dtype=np.float64))


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1.0 - EPS)
    return np.log(q / (1.0 - q))


def _isotonic_knots(y_pos: np.ndarray, p_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (strictly increasing x and y) of the binned pool-adjacent-violators fit."""
    order = np.argsort(p_pos, kind="mergesort")
    n = len(order)
    n_bins = max(1, min(BINS, n // MIN_BIN))
    edges = np.linspace(0, n, n_bins + 1).astype(int)
    blocks: list[list[float]] = []  # [sum of w*x, sum of w*y, sum of w]
    for a, b in itertools.pairwise(edges):
        rows = order[a:b]
        blocks.append([float(p_pos[rows].sum()), float(y_pos[rows].sum()), float(b - a)])
        # merge while the last block does not rise above the one before it (or sits at the same x)
        while len(blocks) > 1 and (blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]
                                   or blocks[-2][0] / blocks[-2][2] >= blocks[-1][0] / blocks[-1][2]):
            last = blocks.pop()
            blocks[-1] = [u + v for u, v in zip(blocks[-1], last, strict=True)]
    sums = np.asarray(blocks)
    return sums[:, 0] / sums[:, 2], sums[:, 1] / sums[:, 2]


def assess(y: np.ndarray, proba: np.ndarray, folds: np.ndarray, positive: int) -> dict[str, Any]:
    """The calibration report of out-of-fold probabilities, and the map to apply (`map`, or None).

    `y`: class indices; `folds`: each row's fold (the rows a cross-fitted map is applied to).
    """
    from opml.automl.metrics import fast_auc

    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    if proba.shape[1] != 2:
        return {"brier": multiclass_brier(y, proba), "applied": None, "map": None,
                "reason": "multiclass: the Brier score is reported, probabilities are not calibrated"}
    y_pos = (y == positive).astype(np.float64)
    p = proba[:, positive]
    ids = np.unique(folds)
    raw_fold = np.array([brier(y_pos[folds == f], p[folds == f]) for f in ids])
    report: dict[str, Any] = {"brier": brier(y_pos, p), "brier_per_fold": raw_fold.tolist(), "methods": {},
                              "applied": None, "map": None, "source": "out-of-fold predictions of the final model"}
    auc = fast_auc(y_pos.astype(bool), p)
    candidates = []
    for method in METHODS:
        crossed = np.empty_like(p)
        try:
            for f in ids:
                held = folds == f
                crossed[held] = apply_map(fit_map(method, y_pos[~held], p[~held]), p[held])
            final = fit_map(method, y_pos, p)
        except ValueError as exc:  # e.g. a fold without one of the classes
            report["methods"][method] = {"error": str(exc)}
            continue
        per_fold = np.array([brier(y_pos[folds == f], crossed[folds == f]) for f in ids])
        gain = raw_fold - per_fold
        se = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else float("inf")
        keeps_auc = fast_auc(y_pos.astype(bool), apply_map(final, p)) >= auc - AUC_TOLERANCE
        report["methods"][method] = {"brier": brier(y_pos, crossed), "improvement": float(gain.mean()),
                                     "standard_error": se, "keeps_auc": bool(keeps_auc)}
        if gain.mean() > 0 and gain.mean() > NOISE_SE * se and keeps_auc:
            candidates.append((brier(y_pos, crossed), method, final))
    if candidates:
        _, method, final = min(candidates, key=lambda c: c[0])
        m = report["methods"][method]
        report.update(applied=method, map=final,
                      reason=f"{method} lowers the cross-fitted out-of-fold Brier score by {m['improvement']:.5f} "
                             f"(> {NOISE_SE:g} x its fold standard error {m['standard_error']:.5f})")
    else:
        report["reason"] = (f"not applied: no map lowers the cross-fitted out-of-fold Brier score by more than "
                            f"{NOISE_SE:g} standard errors of its per-fold change while keeping the AUC")
    return report
