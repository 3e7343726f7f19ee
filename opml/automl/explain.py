"""Global feature importance of a fitted model in terms of the raw input columns."""

from __future__ import annotations

from typing import Any

import numpy as np


def pipeline_importance(pipeline: Any) -> dict[str, float]:
    """Importance per raw column of one fitted CandidatePipeline, summing to 1.

    Model-native importances over the featurized columns (gain for LightGBM/XGBoost, impurity
    decrease for forests, |coefficient| x column spread for linear models) are mapped back to the
    raw columns each featurized column came from (shared equally when it came from several).
    """
    model, featurizer = pipeline.model_, pipeline.featurizer_
    n_out = len(featurizer.feature_names_out_)
    if hasattr(model, "booster_"):  # LightGBM
        raw = np.asarray(model.booster_.feature_importance(importance_type="gain"), dtype=np.float64)
    elif hasattr(model, "get_booster"):  # XGBoost
        scores = model.get_booster().get_score(importance_type="total_gain")
        raw = np.array([scores.get(f"f{i}", 0.0) for i in range(n_out)], dtype=np.float64)
    elif hasattr(model, "feature_importances_"):
        raw = np.asarray(model.feature_importances_, dtype=np.float64)
    elif hasattr(model, "coef_"):
        spread = np.nan_to_num(np.asarray(featurizer.output_std_, dtype=np.float64), nan=1.0)
        raw = np.abs(np.asarray(model.coef_)).mean(axis=0) * spread
    else:
        raw = np.ones(n_out)
    out: dict[str, float] = {str(c): 0.0 for c in featurizer.feature_names_in_}
    for value, sources in zip(raw, featurizer.feature_sources_, strict=True):
        for col in sources:
            out[col] += float(value) / len(sources)
    total = sum(out.values())
    return {k: v / total for k, v in out.items()} if total > 0 else out


def feature_importance(model: Any) -> list[tuple[str, float]]:
    """(raw column, importance) sorted by importance, for an OpmlClassifier (single or ensemble).

    Ensembles average their members' importances with the voting weights (stack: |meta coef|).
    """
    inner = model.estimator_
    pipelines = list(getattr(inner, "members_", [inner]))
    if hasattr(inner, "weights_"):
        weights = np.asarray(inner.weights_, dtype=np.float64)
    elif hasattr(inner, "coef_"):
        weights = np.abs(np.asarray(inner.coef_)).reshape(len(inner.coef_), len(pipelines), -1).mean(axis=(0, 2))
    else:
        weights = np.ones(len(pipelines))
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(pipelines), 1.0 / len(pipelines))
    total: dict[str, float] = {}
    for w, p in zip(weights, pipelines, strict=True):
        for col, v in pipeline_importance(p).items():
            total[col] = total.get(col, 0.0) + float(w) * v
    return sorted(((c, round(v, 6)) for c, v in total.items()), key=lambda cv: (-cv[1], cv[0]))


def permutation_importance(
    model: Any, X: Any, y: Any, *, n_rows: int = 2000, n_repeats: int = 2, seed: int = 0
) -> list[tuple[str, float]]:
    """Model-agnostic alternative: mean drop in ROC AUC (binary) or accuracy when a raw column is shuffled."""
    import pandas as pd
    from sklearn.metrics import accuracy_score, roc_auc_score

    X = pd.DataFrame(X).reset_index(drop=True)
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    if len(X) > n_rows:
        pick = rng.choice(len(X), n_rows, replace=False)
        X, y = X.iloc[pick].reset_index(drop=True), y[pick]
    classes = list(model.classes_)

    def score(frame: Any) -> float:
        proba = model.predict_proba(frame)
        if len(classes) == 2:
            return float(roc_auc_score(y == classes[model.positive_index_], proba[:, model.positive_index_]))
        return float(accuracy_score(y, np.asarray(classes)[np.argmax(proba, axis=1)]))

    base = score(X)
    out = []
    for col in model.feature_names_in_:
        drops = []
        for _ in range(n_repeats):
            shuffled = X.copy()
            shuffled[col] = X[col].to_numpy()[rng.permutation(len(X))]
            drops.append(base - score(shuffled))
        out.append((str(col), round(float(np.mean(drops)), 6)))
    return sorted(out, key=lambda cv: (-cv[1], cv[0]))
