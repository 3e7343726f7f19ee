"""The algorithm catalogue: per algorithm its encoding, scalers, Optuna search space, known-good
starting configurations and a builder for the fitted estimator.

`CATALOGUE` maps an Azure algorithm name (or CatBoostClassifier, opml's addition) to its `AlgorithmSpec`;
the search only uses names the settings allow, and starts from the portfolio of known-good
configurations (`warm_starts`, tried in WARM_START_ORDER) before Optuna proposes any. Tests may
monkeypatch an entry (e.g. with a builder that raises).
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
    # seconds to fit one fold on one core, per 1,000 training rows and per 100 trees (linear models: per 1,000
    # rows): the prior the search uses to predict a trial's time before the algorithm has run once
    cost: float = 0.05


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

    from opml.automl.deadline import lightgbm_callbacks

    model = LGBMClassifier(
        **params, subsample_freq=1, n_jobs=n_jobs, random_state=seed, verbose=-1,
        force_col_wise=True, deterministic=True,
    )
    fit = {"categorical_feature": list(featurizer.categorical_indices_) or "auto"}
    callbacks = lightgbm_callbacks()
    return model, {**fit, "callbacks": callbacks} if callbacks else fit


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

    from opml.automl.deadline import xgboost_callbacks

    cats = set(featurizer.categorical_indices_)
    types = ["c" if i in cats else "q" for i in range(len(featurizer.feature_names_out_))]
    model = XGBClassifier(
        **params, tree_method="hist", enable_categorical=bool(cats), feature_types=types,
        max_cat_to_onehot=1, n_jobs=n_jobs, random_state=seed, verbosity=0, callbacks=xgboost_callbacks(),
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


# ---- CatBoostClassifier (opml's addition: Azure AutoML has no CatBoost) -------------------------------
# Columns of up to this many levels get one-hot splits; wider ones get target statistics, over single columns
# only (max_ctr_complexity 1: feature combinations would cost time and keep the model off the compiled scorer).
CATBOOST_ONE_HOT_MAX = 255


def _cat_space(t: Any) -> dict[str, Any]:
    return {
        "n_estimators": t.suggest_int("n_estimators", 100, 1500, log=True),
        "learning_rate": t.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "depth": t.suggest_int("depth", 3, 8),
        "l2_leaf_reg": t.suggest_float("l2_leaf_reg", 0.5, 30.0, log=True),
        "random_strength": t.suggest_float("random_strength", 0.1, 10.0, log=True),
        "bagging_temperature": t.suggest_float("bagging_temperature", 0.0, 1.5),
    }


def _cat_build(params: dict[str, Any], featurizer: Any, n_jobs: int, seed: int) -> tuple[Any, dict[str, Any]]:
    from opml.automl.catboost_model import CatBoostModel

    params = {"one_hot_max_size": CATBOOST_ONE_HOT_MAX, "max_ctr_complexity": 1, **params}
    return CatBoostModel(params, tuple(featurizer.categorical_indices_), n_jobs=n_jobs, random_state=seed), {}


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


# The portfolio: known-good configurations the search tries first, chosen by 5-fold CV AUC_weighted on the bank
# marketing data (seed 0, opml's featurizer; seconds per fold on one core of a loaded 2-core machine):
#   LightGBM  _FAST_LGBM 0.9505 (1.0 s), _DEEP_LGBM 0.9511 (2.5 s), _SMALL_LGBM 0.9510 (2.3 s); replaced:
#             600 trees x 31 leaves at 0.03 0.9506 (5.3 s), 1000 x 24 at 0.02 0.9509 (7.6 s)
#   XGBoost   _XGB 0.9508 (5.3 s); replaced: 600 x depth 6 at 0.03 0.9502 (4.6 s); depth 4 x 400 at 0.05 0.9505
#   CatBoost  _CATBOOST 0.9506 (6.2 s); depth 5 with l2 3: 0.9504; depth 6 x 500 at 0.08: 0.9495; depth 4: 0.9503;
#             single-column target statistics instead of one-hot: 0.9502 at 4x the time
#   forests   _RF 0.9491 (5.3 s; was 0.9474), _ET 0.9486 (4.2 s; was 0.9476); LogisticRegression C=1 0.9362
# Each spec's `cost` (seconds per fold per 1,000 rows per 100 trees) comes from these timings (26,360 rows a fold).
_FAST_LGBM = {
    "n_estimators": 100, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20, "subsample": 1.0,
    "colsample_bytree": 1.0, "reg_lambda": 1e-3, "reg_alpha": 1e-3,
}
_SMALL_LGBM = {
    "n_estimators": 300, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 30, "subsample": 0.8,
    "colsample_bytree": 0.5, "reg_lambda": 3.0, "reg_alpha": 1e-3,
}
_DEEP_LGBM = {
    "n_estimators": 200, "learning_rate": 0.025, "num_leaves": 60, "min_child_samples": 8, "subsample": 0.95,
    "colsample_bytree": 0.9, "reg_lambda": 0.01, "reg_alpha": 1e-3,
}
_XGB = {
    "n_estimators": 800, "learning_rate": 0.02, "max_depth": 5, "min_child_weight": 5.0, "subsample": 0.7,
    "colsample_bytree": 0.5, "reg_lambda": 5.0, "reg_alpha": 1e-3,
}
_CATBOOST = {
    "n_estimators": 600, "learning_rate": 0.06, "depth": 5, "l2_leaf_reg": 10.0, "random_strength": 2.0,
    "bagging_temperature": 0.5,
}
_RF = {"n_estimators": 150, "max_features": 0.3, "min_samples_leaf": 5, "criterion": "entropy", "max_samples": 0.6}
_ET = {"n_estimators": 100, "max_features": 0.8, "min_samples_leaf": 5, "criterion": "entropy", "max_samples": 0.7}

CATALOGUE: dict[str, AlgorithmSpec] = {
    "LightGBM": AlgorithmSpec(
        "LightGBM", "ordinal", "nan", TREE_SCALERS, _lgbm_space, _lgbm_build, cost=0.045,
        warm_starts=(
            {"scaler": "MaxAbsScaler", "frequency": True, **_FAST_LGBM},
            {"scaler": "StandardScalerWrapper", "frequency": True, **_DEEP_LGBM},
            {"scaler": "MaxAbsScaler", "frequency": True, **_SMALL_LGBM},
        ),
    ),
    "XGBoostClassifier": AlgorithmSpec(
        "XGBoostClassifier", "ordinal", "nan", TREE_SCALERS, _xgb_space, _xgb_build, cost=0.03,
        warm_starts=({"scaler": "StandardScalerWrapper", "frequency": True, **_XGB},),
    ),
    "RandomForest": AlgorithmSpec(
        "RandomForest", "ordinal", "code", TREE_SCALERS, _forest_space, _rf_build, cost=0.15,
        warm_starts=({"scaler": "MaxAbsScaler", "frequency": True, **_RF},),
    ),
    "ExtremeRandomTrees": AlgorithmSpec(
        "ExtremeRandomTrees", "ordinal", "code", TREE_SCALERS, _forest_space, _et_build, cost=0.17,
        warm_starts=({"scaler": "MaxAbsScaler", "frequency": True, **_ET},),
    ),
    "CatBoostClassifier": AlgorithmSpec(
        "CatBoostClassifier", "ordinal", "code", TREE_SCALERS, _cat_space, _cat_build, cost=0.045,
        warm_starts=({"scaler": "MaxAbsScaler", "frequency": True, **_CATBOOST},),
    ),
    "LogisticRegression": AlgorithmSpec(
        "LogisticRegression", "onehot", "code", LINEAR_SCALERS, _lr_space, _lr_build, cost=0.015,
        warm_starts=({"scaler": "StandardScalerWrapper", "frequency": True, "C": 1.0, "class_weight": "none"},),
    ),
}

# Order in which the known-good configurations are tried first: (algorithm, index into warm_starts).
WARM_START_ORDER: tuple[tuple[str, int], ...] = (
    ("LightGBM", 0),
    ("LightGBM", 1),
    ("LightGBM", 2),
    ("XGBoostClassifier", 0),
    ("CatBoostClassifier", 0),
    ("LogisticRegression", 0),
    ("ExtremeRandomTrees", 0),
    ("RandomForest", 0),
)
