"""Names shared by the config schema and the AutoML engine (kept import-light)."""

from __future__ import annotations

# Algorithm names as Azure AutoML spells them.
ALGORITHMS: tuple[str, ...] = (
    "LightGBM",
    "XGBoostClassifier",
    "RandomForest",
    "ExtremeRandomTrees",
    "LogisticRegression",
)

# Primary metrics accepted for classification; every one is "higher is better".
PRIMARY_METRICS: tuple[str, ...] = (
    "AUC_weighted",
    "accuracy",
    "average_precision_score_weighted",
    "norm_macro_recall",
    "precision_score_weighted",
)
