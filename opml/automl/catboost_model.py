"""CatBoost over the featurizer's matrix, with CatBoost's own categorical handling.

The Featurizer (ordinal encoding, unseen levels coded -1) hands over one float column of integer
category codes per categorical input; `CatBoostModel` passes those columns to CatBoost as categorical
features (as integers, which CatBoost reads as category names), so CatBoost encodes them itself
(one-hot splits or target statistics, as its parameters say) instead of splitting on the codes as
numbers. The catboost package is imported only when such a model is fitted or used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class CatBoostModel(ClassifierMixin, BaseEstimator):
    """A CatBoostClassifier on a float matrix whose `cat_features` columns hold category codes.

    `params` are CatBoostClassifier's (e.g. n_estimators, learning_rate, depth); `n_jobs` is its
    thread_count for fitting and predicting. The fitted booster is `catboost_`; `cat_levels_` holds,
    per categorical column, how many codes (0..n-1) the fit data had.
    """

    def __init__(self, params: dict[str, Any] | None = None, cat_features: tuple[int, ...] = (), n_jobs: int = 1,
                 random_state: int = 0) -> None:
        self.params = params
        self.cat_features = cat_features
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _frame(self, Z: np.ndarray) -> Any:
        """Z as CatBoost input: a DataFrame whose categorical columns are int64 codes (column names: positions)."""
        import pandas as pd

        Z = np.asarray(Z, dtype=np.float64)
        cats = set(self.cat_features)
        with np.errstate(invalid="ignore"):  # (codes are integers; anything else becomes a category never seen)
            return pd.DataFrame({i: Z[:, i].astype(np.int64) if i in cats else Z[:, i] for i in range(Z.shape[1])})

    def fit(self, Z: np.ndarray, y: Any) -> CatBoostModel:
        from catboost import CatBoostClassifier

        y = np.asarray(y)
        self.classes_ = np.unique(y)
        model = CatBoostClassifier(**dict(self.params or {}), thread_count=self.n_jobs, random_seed=self.random_state,
                                   verbose=False, allow_writing_files=False)
        model.fit(self._frame(Z), y, cat_features=list(self.cat_features))
        self.catboost_ = model
        self.n_features_in_ = int(np.shape(Z)[1])
        codes = np.asarray(Z, dtype=np.float64)[:, list(self.cat_features)]
        self.cat_levels_ = [int(max(np.nanmax(c, initial=-1.0), -1.0)) + 1 for c in codes.T]  # codes 0..n-1 seen
        return self

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(self.catboost_.predict_proba(self._frame(Z), thread_count=self.n_jobs), dtype=np.float64)

    def predict(self, Z: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(Z), axis=1)]

    @property
    def feature_importances_(self) -> np.ndarray:
        """CatBoost's PredictionValuesChange importance per input column."""
        return np.asarray(self.catboost_.get_feature_importance(), dtype=np.float64)

    def leaf_count(self) -> int:
        """Leaves over all trees (a symmetric tree of depth d has 2**d)."""
        return int(np.sum(self.catboost_.get_tree_leaf_counts()))
