"""Fixtures for the AutoML engine tests: the real bank-marketing data, whole and as a small sample."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from opml.config import AutoMLSettings


def fold_data(df: pd.DataFrame) -> tuple[Any, dict[str, str], pd.DataFrame, Any]:
    """The bank rows as the search sees them: (FoldData on 5 stratified folds, column kinds, X, y as 0/1)."""
    from opml.automl.evaluate import FoldData, make_splits
    from opml.automl.experiment import _coerce
    from opml.automl.guardrails import validate_input

    kinds = validate_input(df, make_settings())
    X = df.drop(columns=["response"])
    y = (df["response"] == "yes").to_numpy().astype(int)
    return FoldData(_coerce(X, kinds), y, 2, make_splits(y, 5, None, 0)), kinds, X, y


def make_settings(**overrides: Any) -> AutoMLSettings:
    base: dict[str, Any] = {"dataset": {"name": "bankmarketing", "label_column": "response"}}
    return AutoMLSettings(**(base | overrides))


@pytest.fixture(scope="session")
def bank_df(bank_csv) -> pd.DataFrame:
    return pd.read_csv(bank_csv)


@pytest.fixture(scope="session")
def small_df(bank_df: pd.DataFrame) -> pd.DataFrame:
    """A stratified 4,000-row sample: big enough for real models, small enough for fast tests."""
    parts = [g.sample(frac=4000 / len(bank_df), random_state=1) for _, g in bank_df.groupby("response")]
    return pd.concat(parts).sample(frac=1.0, random_state=2).reset_index(drop=True)


@pytest.fixture(scope="session")
def small_run(small_df: pd.DataFrame):
    """One experiment on the sample: 6 trials (LightGBM, XGBoost, LogisticRegression) plus ensembles."""
    from opml.automl.experiment import run_experiment

    seen: list[Any] = []
    settings = make_settings(max_trials=6, allowed_models=["LightGBM", "XGBoostClassifier", "LogisticRegression"],
                             experiment_timeout_seconds=120, model_selection="one_se")  # the rule with a choice
    result = run_experiment(small_df, settings, on_trial=seen.append)
    return result, seen
