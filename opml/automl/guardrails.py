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
# A feature that alone ranks the classes this well is alerted as a possible leak. On the bank data
# `duration` (known only after the call) scores 0.820 alone, and the strongest legitimate features
# (the macro-economic indicators, which identify the calendar month) 0.74-0.78: 0.80 separates them,
# and a single column that strong is worth a look on any data.
LEAKAGE_AUC = 0.80
LEAKAGE_BINS = 20  # numeric columns are also scored by their out-of-fold rate in this many quantile bins


@dataclass(frozen=True)
class Guardrail:
    """One data guardrail as Azure reports it: passed, done (something was fixed) or alerted."""

    name: str
    status: str  # passed | done | alerted
    details: str


def validate_input(df: pd.DataFrame, settings: AutoMLSettings) -> dict[str, str]:
    """Check the training frame before any work; return each feature column's kind.

    Raises DataError (one line: the problem and the fix) for: no rows, a missing label column,
    a column to drop (drop_columns) that the data lacks, empty labels, a single class, too few rows
    of a class for the folds, no feature columns, an entirely empty column, a non-numeric value in a
    numeric column, and non-numeric columns when featurization is off. Dropped columns are not checked
    and get no kind.
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
    unknown = [c for c in settings.drop_columns if c not in df.columns]
    if unknown:
        shown = ", ".join(map(str, [c for c in df.columns if c != label][:30]))
        raise DataError(
            f"column(s) to drop not in the data: {', '.join(map(repr, unknown))}; columns are: {shown}",
            "fix --drop-columns (or drop_columns in automl.yaml)",
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
    features = df.drop(columns=[label, *settings.drop_columns])
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
    """The guardrails: validation split, class balance, missing values, high cardinality, feature leakage.

    `features` are the columns the models train on (drop_columns already dropped).
    """
    return [
        _split(len(features), settings),
        _balance(y, settings),
        _missing(features, kinds, settings),
        _cardinality(features, kinds, settings),
        _leakage(features, y, kinds, settings),
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


def single_feature_auc(features: pd.DataFrame, y: pd.Series, kinds: dict[str, str], seed: int = 0,
                       folds: int = 5) -> dict[str, float]:
    """How well each column alone ranks the classes: its AUC (one-vs-rest, weighted by class share).

    A numeric column scores the better of its values' own ranking (either direction) and an
    out-of-fold class rate per quantile bin (LEAKAGE_BINS bins, missing as its own bin); a categorical
    column the out-of-fold class rate per level (missing as its own level). Out-of-fold rates keep a
    column of many rare levels from scoring well by memorising them.
    """
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    from opml.automl.columns import to_categorical, to_numeric
    from opml.automl.metrics import fast_auc

    labels = np.asarray(y.astype(str))
    classes, codes_y = np.unique(labels, return_inverse=True)
    shares = np.bincount(codes_y) / len(codes_y)
    targets = [1] if len(classes) == 2 else list(range(len(classes)))
    split = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(codes_y)), codes_y))
    out: dict[str, float] = {}
    for col, kind in kinds.items():
        if kind == "numeric":
            values = to_numeric(features[col], str(col)).to_numpy(dtype=np.float64)
            ranked = pd.Series(values).rank(method="average", na_option="keep").to_numpy()
            edges = np.unique(np.nanquantile(values, np.linspace(0, 1, LEAKAGE_BINS + 1)[1:-1]))
            level = np.where(np.isnan(values), len(edges) + 1, np.searchsorted(edges, values, side="right"))
        else:
            ranked = None
            level = pd.factorize(to_categorical(features[col]).fillna("\x00missing"))[0]
        n_levels = int(level.max()) + 1
        scores = []
        for k in targets:
            hit = codes_y == k
            rate = np.zeros(len(hit))
            for train, held in split:
                pos = np.bincount(level[train], weights=hit[train], minlength=n_levels)
                cnt = np.bincount(level[train], minlength=n_levels)
                prior = hit[train].mean()
                rate[held] = ((pos + prior) / (cnt + 1.0))[level[held]]  # one pseudo-row of the prior
            best = fast_auc(hit, rate)
            if ranked is not None:
                present = ~np.isnan(ranked)
                auc = fast_auc(hit[present], ranked[present])
                best = max(best, auc, 1.0 - auc)
            scores.append(best)
        weights = [shares[k] for k in targets] if len(targets) > 1 else [1.0]
        out[str(col)] = float(np.average(scores, weights=weights))
    return out


def _leakage(features: pd.DataFrame, y: pd.Series, kinds: dict[str, str], settings: AutoMLSettings) -> Guardrail:
    aucs = single_feature_auc(features, y, kinds, settings.random_seed)
    post = [c for c in settings.dataset.post_outcome_columns if c in aucs]
    strong = [c for c, a in sorted(aucs.items(), key=lambda ca: -ca[1]) if a >= LEAKAGE_AUC]
    flagged = post + [c for c in strong if c not in post]
    dropped = [c for c in settings.drop_columns if c in settings.dataset.post_outcome_columns]
    note = f"; post-outcome column(s) dropped: {', '.join(dropped)}" if dropped else ""
    if not flagged:
        top = max(aucs.items(), key=lambda ca: ca[1])
        return Guardrail("Feature leakage detection", "passed",
                         f"no feature scores AUC >= {LEAKAGE_AUC:.2f} alone (highest: {top[0]} {top[1]:.3f}){note}")
    parts = []
    for c in flagged:
        why = "listed in dataset.post_outcome_columns: known only after the outcome" if c in post else \
            "predicts the label almost alone"
        parts.append(f"{c} (AUC {aucs[c]:.3f} alone; {why})")
    return Guardrail(
        "Feature leakage detection", "alerted",
        f"possible target leakage: {'; '.join(parts)}; the model keeps them, as the reference does; "
        f"train without them with `opml train --drop-columns {','.join(flagged)}`{note}",
    )
