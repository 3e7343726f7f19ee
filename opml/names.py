"""Algorithm and primary-metric names as Azure AutoML spells them (no imports: any layer may use them).

The config schema validates settings against these; the AutoML engine implements each of them
(`opml.automl.algorithms.CATALOGUE`, `opml.automl.metrics.METRIC_NAMES`).
"""

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
