"""Algorithm and primary-metric names as Azure AutoML spells them (no imports: any layer may use them).

The config schema validates settings against these; the AutoML engine implements each of them
(`opml.automl.algorithms.CATALOGUE`, `opml.automl.metrics.METRIC_NAMES`).
"""

from __future__ import annotations

# Algorithm names as Azure AutoML spells them, plus CatBoostClassifier: opml's addition (Azure AutoML has no
# CatBoost; the azureml backend cannot train it).
ALGORITHMS: tuple[str, ...] = (
    "LightGBM",
    "XGBoostClassifier",
    "RandomForest",
    "ExtremeRandomTrees",
    "LogisticRegression",
    "CatBoostClassifier",
)

# Names opml adds to Azure's (the azureml backend refuses them in allowed_models and drops them from blocked_models).
OPML_ONLY_ALGORITHMS: tuple[str, ...] = ("CatBoostClassifier",)

# What the search tries when allowed_models is not set. CatBoostClassifier is left out: at the default 120 s
# budget on 2 cores, adding it moved the top 5-fold CV AUC by +0.0002 and +0.00004 in two paired runs (seeds 0
# and 1), far inside one standard error (0.0016), while one CatBoost fit costs 2-5x a LightGBM fit of a
# better single score (0.9506 vs 0.9511) and the import alone ~0.5 s. List it in allowed_models to try it.
DEFAULT_ALGORITHMS: tuple[str, ...] = tuple(a for a in ALGORITHMS if a != "CatBoostClassifier")

# Primary metrics accepted for classification; every one is "higher is better".
PRIMARY_METRICS: tuple[str, ...] = (
    "AUC_weighted",
    "accuracy",
    "average_precision_score_weighted",
    "norm_macro_recall",
    "precision_score_weighted",
)
