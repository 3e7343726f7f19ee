"""The final model: a picklable sklearn classifier over raw DataFrames with original labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from opml.automl.featurize import check_columns
from opml.automl.threshold import decide


class OpmlClassifier(ClassifierMixin, BaseEstimator):
    """Wraps a fitted pipeline or ensemble (`estimator_`) trained on integer-coded labels.

    Input: a pandas DataFrame (or a list of records / a dict of columns) holding the training
    feature columns; extra columns (e.g. the label) are ignored, a missing one is a DataError.
    `predict` returns the original labels, applying `threshold_` to the probability of class
    `positive_index_` for binary problems (None: argmax). `schema_` describes the input columns.
    `calibration` (binary problems; opml.automl.calibration) maps the estimator's probability of the
    positive class before anything else sees it; `threshold` then applies to the calibrated probability.
    """

    calibration: dict[str, Any] | None = None  # models pickled before the parameter existed read None

    def __init__(
        self,
        estimator: Any = None,
        *,
        threshold: float | None = None,
        positive_label: Any = None,
        kinds: dict[str, str] | None = None,
        pipeline_name: str = "",
        calibration: dict[str, Any] | None = None,
    ) -> None:
        self.estimator = estimator
        self.threshold = threshold
        self.positive_label = positive_label
        self.kinds = kinds
        self.pipeline_name = pipeline_name
        self.calibration = calibration

    # ---- fitting ---------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, *, prefit: bool = False) -> OpmlClassifier:
        """Fit a clone of `estimator` on the raw feature frame `X` and labels `y`.

        `prefit=True`: `estimator` is already fitted on these rows' labels coded 0..k-1 (e.g. a bag of
        cross-validation fold models, opml.automl.ensemble.fold_bag) and is used as is. A clone of this
        classifier fits a fresh copy again.
        """
        X = _frame(X)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        codes = np.searchsorted(self.classes_, y)
        if self.positive_label is not None:
            self.positive_index_ = int(np.flatnonzero(self.classes_ == self.positive_label)[0])
        else:
            self.positive_index_ = int(np.argmin(np.bincount(codes))) if len(self.classes_) == 2 else 1
        self.threshold_ = None if self.threshold is None or len(self.classes_) != 2 else float(self.threshold)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.estimator_ = self.estimator if prefit else clone(self.estimator).fit(X, codes)
        binary = len(self.classes_) == 2
        self.calibration_ = dict(self.calibration) if self.calibration is not None and binary else None
        self.schema_ = self._schema(X)
        return self

    def _schema(self, X: pd.DataFrame) -> dict[str, Any]:
        from opml.automl.columns import infer_kinds, to_categorical, to_numeric

        kinds = self.kinds or infer_kinds(X)
        columns = []
        example: dict[str, Any] = {}
        for c in self.feature_names_in_:
            kind = kinds.get(c, "categorical")
            entry: dict[str, Any] = {"name": c, "kind": kind, "dtype": str(X[c].dtype)}
            if kind == "numeric":
                values = to_numeric(X[c], c)
                entry.update(min=_num(values.min()), max=_num(values.max()), categories=None)
                example[c] = _num(values.median())
                if values.dropna().eq(values.dropna().round()).all() and example[c] is not None:
                    example[c] = round(example[c])
            else:
                counts = to_categorical(X[c]).value_counts(dropna=True)
                levels = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
                entry["categories"] = [str(k) for k, _ in levels]
                example[c] = entry["categories"][0] if levels else None
            entry["missing"] = int(X[c].isna().sum())
            columns.append(entry)
        return {"columns": columns, "example": example, "classes": [_py(c) for c in self.classes_]}

    # ---- prediction ------------------------------------------------------------------------------
    def _features(self, X: Any) -> pd.DataFrame:
        X = _frame(X)
        check_columns(X, self.feature_names_in_)
        return X[list(self.feature_names_in_)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of `classes_` (calibrated when `calibration_` is set)."""
        proba = np.asarray(self.estimator_.predict_proba(self._features(X)), dtype=np.float64)
        return calibrated(proba, getattr(self, "calibration_", None), self.positive_index_)

    def predict(self, X: Any) -> np.ndarray:
        """Original labels; a binary model applies `threshold_` to the minority class's probability."""
        return self.classes_[decide(self.predict_proba(X), self.threshold_, self.positive_index_)]

    # ---- inspection ------------------------------------------------------------------------------
    @property
    def pipelines_(self) -> list[Any]:
        """The fitted CandidatePipelines inside (one, or an ensemble's members)."""
        inner = self.estimator_
        return list(getattr(inner, "members_", [inner]))

    def set_n_jobs(self, n_jobs: int) -> OpmlClassifier:
        """Threads used by the models when predicting (e.g. 1 per serving worker)."""
        for p in self.pipelines_:
            p.set_n_jobs(n_jobs)
        return self


def calibrated(proba: np.ndarray, calibration: dict[str, Any] | None, positive: int) -> np.ndarray:
    """Binary class probabilities with the positive class's mapped by `calibration` (None: unchanged).

    The one calibration step of predict_proba and of every scorer (opml.serving.compiled).
    """
    if calibration is None or proba.shape[1] != 2:
        return proba
    from opml.automl.calibration import apply_map

    p = apply_map(calibration, proba[:, positive])
    out = np.empty_like(proba)
    out[:, positive] = p
    out[:, 1 - positive] = 1.0 - p
    return out


def _frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, list | dict):
        return pd.DataFrame(X)
    return X  # check_columns names the problem


def _num(v: Any) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
