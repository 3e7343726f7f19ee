"""Input validation (before any work) and Azure-style data guardrails (after it is validated)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opml.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from opml.config import AutoMLSettings

MINORITY_ALERT_SHARE = 0.20  # below this share the class-balance guardrail is alerted
HIGH_CARDINALITY = 50  # categorical columns with more levels than this are alerted


@dataclass(frozen=True)
class Guardrail:
    """One data guardrail as Azure reports it: passed, done (something was fixed) or alerted."""

    name: str
    status: str  # passed | done | alerted
    details: str


def validate_input(df: pd.DataFrame, settings: AutoMLSettings) -> dict[str, str]:
    """Check the training frame before any work; return each feature column's kind.

    Raises DataError (one line: the problem and the fix) for: no rows, a missing label column,
    empty labels, a single class, too few rows of a class for the folds, no feature columns, an
    entirely empty column, a non-numeric value in a numeric column, and non-numeric columns when
    featurization is off.
    """
    from opml.automl.columns import infer_kinds, to_numeric

    label = settings.label
    if len(df) == 0:
        raise DataError("the training data has no rows", "check the dataset file")
    if label not in df.columns:
        shown = ", ".join(map(str, list(df.columns)[:25]))
        raise DataError(
            f"label column {label!r} not found; columns are: {shown}",
            "set dataset.label_column in automl.yaml to one of them",
        )
    y = df[label]
    if y.isna().any():
        raise DataError(
            f"label column {label!r} has {int(y.isna().sum())} empty value(s)",
            "drop those rows or fill in their labels",
        )
    counts = y.astype(str).value_counts()
    if len(counts) < 2:
        raise DataError(
            f"label column {label!r} has only one class ({counts.index[0]!r}); classification needs two or more",
            "use data that contains every class",
        )
    folds = settings.cv_folds or 2
    if counts.min() < folds:
        raise DataError(
            f"class {counts.idxmin()!r} has only {int(counts.min())} row(s), fewer than the {folds} needed "
            "to validate the models",
            "add rows of that class or lower n_cross_validations",
        )
    features = df.drop(columns=[label])
    if features.shape[1] == 0:
        raise DataError("the training data has no feature columns besides the label", "add feature columns")
    empty = [str(c) for c in features.columns if features[c].isna().all()]
    if empty:
        raise DataError(f"column(s) {', '.join(map(repr, empty))} are entirely empty", "drop them or fill them in")
    kinds = infer_kinds(features)
    for col, kind in kinds.items():
        if kind == "numeric":
            converted = to_numeric(features[col], str(col))  # raises on a non-numeric value
            if converted.isna().all():
                raise DataError(f"column {col!r} is entirely empty", "drop it or fill it in")
    if settings.featurization == "off":
        text = [str(c) for c, k in kinds.items() if k != "numeric"]
        if text:
            raise DataError(
                f"featurization is off but column(s) {', '.join(map(repr, text[:10]))} are not numeric",
                "set featurization: auto in automl.yaml or encode those columns as numbers",
            )
    return kinds


def run_guardrails(
    features: pd.DataFrame, y: pd.Series, kinds: dict[str, str], settings: AutoMLSettings
) -> list[Guardrail]:
    """The four guardrails: validation split, class balance, missing values, high cardinality."""
    return [
        _split(len(features), settings),
        _balance(y, settings),
        _missing(features, kinds, settings),
        _cardinality(features, kinds, settings),
    ]


def _split(n: int, settings: AutoMLSettings) -> Guardrail:
    if settings.cv_folds is None:
        size = settings.validation_size or 0.0
        details = (
            f"holdout validation: a stratified {size:.0%} validation set ({round(n * size):,} of {n:,} rows, "
            f"seed {settings.random_seed}); every candidate is scored on it"
        )
    else:
        details = (
            f"{settings.cv_folds}-fold stratified cross-validation (shuffled, seed {settings.random_seed}) "
            f"over {n:,} rows; every candidate and ensemble is scored on the same folds"
        )
    return Guardrail("Validation split handling", "done", details)


def _balance(y: pd.Series, settings: AutoMLSettings) -> Guardrail:
    counts = y.astype(str).value_counts()
    minority, n_min, n = counts.idxmin(), int(counts.min()), int(counts.sum())
    share = n_min / n
    parts = ", ".join(f"{k!r}: {int(v):,}" for k, v in counts.items())
    if share >= MINORITY_ALERT_SHARE:
        return Guardrail(
            "Class balancing detection", "passed", f"classes are balanced enough ({parts}; smallest {share:.1%})"
        )
    if settings.decision_threshold == "argmax":
        how = "decision_threshold is argmax, so nothing corrects it; set decision_threshold: f1_minority"
    elif settings.decision_threshold == "f1_minority":
        how = (
            "handled by tuning the decision threshold on out-of-fold predictions to maximise the minority "
            "class's F1 (and class weighting is searched for LogisticRegression)"
        )
    else:
        how = f"the decision threshold is fixed at {settings.decision_threshold}"
    return Guardrail(
        "Class balancing detection",
        "alerted",
        f"imbalanced classes: minority class {minority!r} is {share:.1%} of rows ({n_min:,} of {n:,}; {parts}); "
        + how,
    )


def _missing(features: pd.DataFrame, kinds: dict[str, str], settings: AutoMLSettings) -> Guardrail:
    from opml.automl.columns import to_numeric

    notes = []
    for col, kind in kinds.items():
        if kind == "numeric":
            values = to_numeric(features[col], str(col))
            n_missing = int(values.isna().sum())
            if n_missing:
                notes.append(f"{col}: {n_missing} missing, imputed with the median {values.median():g}")
        else:
            n_missing = int(features[col].isna().sum())
            if n_missing:
                notes.append(f"{col}: {n_missing} missing, kept as a separate 'missing' level")
    if not notes:
        return Guardrail("Missing feature values imputation", "passed", "no missing values in the feature columns")
    if settings.featurization == "off":
        notes.append("featurization is off: numeric imputation is still applied so every model can train")
    return Guardrail("Missing feature values imputation", "done", "; ".join(notes))


def _cardinality(features: pd.DataFrame, kinds: dict[str, str], settings: AutoMLSettings) -> Guardrail:
    high = []
    for col, kind in kinds.items():
        if kind == "categorical":
            levels = int(features[col].nunique(dropna=True))
            if levels > HIGH_CARDINALITY:
                high.append(f"{col} ({levels} levels)")
    if not high:
        return Guardrail(
            "High cardinality feature detection", "passed",
            f"no categorical column has more than {HIGH_CARDINALITY} levels",
        )
    return Guardrail(
        "High cardinality feature detection",
        "alerted",
        f"high-cardinality categorical column(s): {', '.join(high)}; one-hot encoding keeps the "
        f"{HIGH_CARDINALITY} most frequent levels and groups the rest, tree models use frequency-ordered codes",
    )
