"""One candidate: featurizer + scaler + model, as an sklearn classifier over raw DataFrames."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from opml.automl.featurize import Featurizer


def pipeline_name(scaler: str | None, algorithm: str) -> str:
    """Azure-style candidate name, e.g. "MaxAbsScaler, LightGBM"."""
    return f"{scaler}, {algorithm}" if scaler else algorithm


class CandidatePipeline(ClassifierMixin, BaseEstimator):
    """Fits `featurizer_` (a Featurizer) then `model_` (LightGBM, XGBoost, sklearn...) on integer labels.

    `fit(X, y)` takes a raw DataFrame and labels 0..k-1; `predict_proba(X)` returns class
    probabilities in the order of `classes_`.
    """

    def __init__(
        self,
        algorithm: str = "LightGBM",
        params: dict[str, Any] | None = None,
        *,
        scaler: str | None = "MaxAbsScaler",
        frequency: bool = True,
        featurization: str = "auto",
        kinds: dict[str, str] | None = None,
        n_jobs: int = 2,
        random_state: int = 0,
    ) -> None:
        self.algorithm = algorithm
        self.params = params
        self.scaler = scaler
        self.frequency = frequency
        self.featurization = featurization
        self.kinds = kinds
        self.n_jobs = n_jobs
        self.random_state = random_state

    @property
    def name(self) -> str:
        return pipeline_name(self.scaler, self.algorithm)

    def make_featurizer(self) -> Featurizer:
        from opml.automl.algorithms import CATALOGUE

        spec = CATALOGUE[self.algorithm]
        return Featurizer(
            kinds=self.kinds, mode=self.featurization, encoding=spec.encoding, unknown=spec.unknown,
            frequency=self.frequency, scaler=self.scaler,
        )

    def fit(self, X: Any, y: Any) -> CandidatePipeline:
        featurizer = self.make_featurizer().fit(X)
        return self.fit_featurized(featurizer, featurizer.transform(X), y)

    def fit_featurized(self, featurizer: Featurizer, Z: np.ndarray, y: Any) -> CandidatePipeline:
        """Fit the model on an already featurized matrix (lets the search reuse featurized folds)."""
        from opml.automl.algorithms import CATALOGUE

        y = np.asarray(y)
        self.classes_ = np.unique(y)
        model, fit_kwargs = CATALOGUE[self.algorithm].build(dict(self.params or {}), featurizer, self.n_jobs,
                                                            self.random_state)
        model.fit(Z, y, **fit_kwargs)
        self.featurizer_ = featurizer
        self.model_ = model
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.predict_proba_featurized(self.featurizer_.transform(X))

    def predict_proba_featurized(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.predict_proba(Z), dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def scoring_cost(self) -> int:
        """The fitted model's scoring cost: see `scoring_cost`."""
        return scoring_cost(self.model_)

    def set_n_jobs(self, n_jobs: int) -> None:
        """Thread count used when predicting (e.g. 1 inside a serving worker)."""
        self.n_jobs = n_jobs
        model = getattr(self, "model_", None)
        if model is not None and hasattr(model, "n_jobs"):
            model.set_params(n_jobs=n_jobs)


def scoring_cost(model: Any) -> int:
    """Leaves over all trees (linear models: coefficients) of a fitted model.

    A machine-independent proxy of the time to score a row: the compiled tree kernel tests every
    node of every tree for a batch of rows, and a tree of L leaves has L - 1 nodes. Counted on the
    fitted model (trees often stop short of num_leaves), so it is the same on every run of a seed.
    """
    kind = type(model).__name__
    if kind == "LGBMClassifier":
        text = model.booster_.model_to_string()
        return sum(int(line[11:]) for line in text.splitlines() if line.startswith("num_leaves="))
    if kind == "XGBClassifier":
        return sum(tree.count("leaf=") for tree in model.get_booster().get_dump())
    if kind == "CatBoostModel":
        return model.leaf_count()
    if hasattr(model, "estimators_") and all(hasattr(e, "tree_") for e in model.estimators_):
        return int(sum(e.tree_.n_leaves for e in model.estimators_))
    if hasattr(model, "coef_"):
        return int(np.size(model.coef_))
    return 0
