"""The algorithm catalogue: per algorithm its encoding, scalers, Optuna search space, known-good
starting configurations and a builder for the fitted estimator.

`CATALOGUE` maps an Azure algorithm name to its `AlgorithmSpec`; the search only uses names the
settings allow. Tests may monkeypatch an entry (e.g. with a builder that raises).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TREE_SCALERS = ("MaxAbsScaler", "StandardScalerWrapper", "SparseNormalizer")
LINEAR_SCALERS = ("StandardScalerWrapper", "MaxAbsScaler", "MinMaxScaler", "RobustScaler", "SparseNormalizer")


@dataclass(frozen=True)
class AlgorithmSpec:
    """How one algorithm is featurized, searched and built."""

    name: str
    encoding: str  # ordinal | onehot
    unknown: str  # ordinal code of unseen levels: nan | code
    scalers: tuple[str, ...]
    space: Callable[[Any], dict[str, Any]]  # optuna-like trial (suggest_* with plain names) -> params
    build: Callable[[dict[str, Any], Any, int, int], tuple[Any, dict[str, Any]]]
    warm_starts: tuple[dict[str, Any], ...] = field(default_factory=tuple)


# ---- LightGBM ------------------------------------------------------------------------------------
def _lgbm_space(t: Any) -> dict[str, Any]:
    return {
        "n_estimators": t.suggest_int("n_estimators", 50, 1000, log=True),
        "learning_rate": t.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": t.suggest_int("num_leaves", 4, 128, log=True),
        "min_child_samples": t.suggest_int("min_child_samples", 5, 200, log=True),
        "subsample": t.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": t.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": t.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        "reg_alpha": t.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
    }


def _lgbm_build(params: dict[str, Any], featurizer: Any, n_jobs: int, seed: int) -> tuple[Any, dict[str, Any]]:
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(
        **params, subsample_freq=1, n_jobs=n_jobs, random_state=seed, verbose=-1,
        force_col_wise=True, deterministic=True,
    )
    return model, {"categorical_feature": list(featurizer.categorical_indices_) or "auto"}


# ---- XGBoost -------------------------------------------------------------------------------------
def _xgb_space(t: Any) -> dict[str, Any]:
    return {
        "n_estimators": t.suggest_int("n_estimators", 50, 1000, log=True),
        "learning_rate": t.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "max_depth": t.suggest_int("max_depth", 2, 10),
        "min_child_weight": t.suggest_float("min_child_weight", 0.5, 30.0, log=True),
        "subsample": t.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": t.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": t.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        "reg_alpha": t.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
    }


def _xgb_build(params: dict[str, Any], featurizer: Any, n_jobs: int, seed: int) -> tuple[Any, dict[str, Any]]:
    from xgboost import XGBClassifier

    cats = set(featurizer.categorical_indices_)
    types = ["c" if i in cats else "q" for i in range(len(featurizer.feature_names_out_))]
    model = XGBClassifier(
        **params, tree_method="hist", enable_categorical=bool(cats), feature_types=types,
        max_cat_to_onehot=1, n_jobs=n_jobs, random_state=seed, verbosity=0,
    )
    return model, {}


# ---- RandomForest / ExtremeRandomTrees -------------------------------------------------------------
def _forest_space(t: Any) -> dict[str, Any]:
    return {
        "n_estimators": t.suggest_int("n_estimators", 50, 300, log=True),
        "max_features": t.suggest_float("max_features", 0.1, 1.0),
        "min_samples_leaf": t.suggest_int("min_samples_leaf", 1, 50, log=True),
        "criterion": t.suggest_categorical("criterion", ["gini", "entropy"]),
        "max_samples": t.suggest_float("max_samples", 0.2, 1.0),
    }


def _rf_build(params: dict[str, Any], featurizer: Any, n_jobs: int, seed: int) -> tuple[Any, dict[str, Any]]:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(**params, bootstrap=True, n_jobs=n_jobs, random_state=seed), {}


def _et_build(params: dict[str, Any], featurizer: Any, n_jobs: int, seed: int) -> tuple[Any, dict[str, Any]]:
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(**params, bootstrap=True, n_jobs=n_jobs, random_state=seed), {}


# ---- LogisticRegression --------------------------------------------------------------------------
def _lr_space(t: Any) -> dict[str, Any]:
    return {
        "C": t.suggest_float("C", 1e-3, 100.0, log=True),
        "class_weight": t.suggest_categorical("class_weight", ["none", "balanced"]),
    }


def _lr_build(params: dict[str, Any], featurizer: Any, n_jobs: int, seed: int) -> tuple[Any, dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression

    weight = None if params.get("class_weight") in (None, "none") else params["class_weight"]
    model = LogisticRegression(C=params["C"], class_weight=weight, solver="newton-cholesky", max_iter=100,
                               random_state=seed)
    return model, {}


_FAST_LGBM = {
    "n_estimators": 100, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20, "subsample": 1.0,
    "colsample_bytree": 1.0, "reg_lambda": 1e-3, "reg_alpha": 1e-3,
}
_SLOW_LGBM = {
    "n_estimators": 600, "learning_rate": 0.03, "num_leaves": 31, "min_child_samples": 40, "subsample": 0.8,
    "colsample_bytree": 0.5, "reg_lambda": 1.0, "reg_alpha": 1e-3,
}
_DEEP_LGBM = {
    "n_estimators": 200, "learning_rate": 0.025, "num_leaves": 60, "min_child_samples": 8, "subsample": 0.95,
    "colsample_bytree": 0.9, "reg_lambda": 0.01, "reg_alpha": 1e-3,
}
_XGB = {
    "n_estimators": 600, "learning_rate": 0.03, "max_depth": 6, "min_child_weight": 3.0, "subsample": 0.8,
    "colsample_bytree": 0.5, "reg_lambda": 1.0, "reg_alpha": 1e-3,
}

CATALOGUE: dict[str, AlgorithmSpec] = {
    "LightGBM": AlgorithmSpec(
        "LightGBM", "ordinal", "nan", TREE_SCALERS, _lgbm_space, _lgbm_build,
        warm_starts=(
            {"scaler": "MaxAbsScaler", "frequency": True, **_FAST_LGBM},
            {"scaler": "MaxAbsScaler", "frequency": True, **_SLOW_LGBM},
            {"scaler": "StandardScalerWrapper", "frequency": True, **_DEEP_LGBM},
        ),
    ),
    "XGBoostClassifier": AlgorithmSpec(
        "XGBoostClassifier", "ordinal", "nan", TREE_SCALERS, _xgb_space, _xgb_build,
        warm_starts=({"scaler": "StandardScalerWrapper", "frequency": True, **_XGB},),
    ),
    "RandomForest": AlgorithmSpec(
        "RandomForest", "ordinal", "code", TREE_SCALERS, _forest_space, _rf_build,
        warm_starts=({"scaler": "MaxAbsScaler", "frequency": True, "n_estimators": 100, "max_features": 0.4,
                      "min_samples_leaf": 3, "criterion": "gini", "max_samples": 0.5},),
    ),
    "ExtremeRandomTrees": AlgorithmSpec(
        "ExtremeRandomTrees", "ordinal", "code", TREE_SCALERS, _forest_space, _et_build,
        warm_starts=({"scaler": "MaxAbsScaler", "frequency": True, "n_estimators": 100, "max_features": 0.6,
                      "min_samples_leaf": 3, "criterion": "entropy", "max_samples": 0.6},),
    ),
    "LogisticRegression": AlgorithmSpec(
        "LogisticRegression", "onehot", "code", LINEAR_SCALERS, _lr_space, _lr_build,
        warm_starts=({"scaler": "StandardScalerWrapper", "frequency": True, "C": 1.0, "class_weight": "none"},),
    ),
}

# Order in which the known-good configurations are tried first: (algorithm, index into warm_starts).
WARM_START_ORDER: tuple[tuple[str, int], ...] = (
    ("LightGBM", 0),
    ("XGBoostClassifier", 0),
    ("LightGBM", 1),
    ("LightGBM", 2),
    ("LogisticRegression", 0),
    ("ExtremeRandomTrees", 0),
    ("RandomForest", 0),
)
