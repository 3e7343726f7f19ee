"""Input validation (DataError before any work) and the four data guardrails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opml.automl.guardrails import LEAKAGE_AUC, run_guardrails, single_feature_auc, validate_input
from opml.errors import DataError
from tests.automl.conftest import make_settings


def _statuses(df: pd.DataFrame, **settings) -> dict[str, object]:
    s = make_settings(**settings)
    kinds = validate_input(df, s)
    return {g.name: g for g in run_guardrails(df.drop(columns=["response"]), df["response"], kinds, s)}


def test_guardrails_on_clean_data(small_df):
    g = _statuses(small_df)
    assert [x.status for x in g.values()][:4] == ["done", "alerted", "passed", "passed"]
    assert g["Feature leakage detection"].status == "alerted"  # duration: see test_leakage_guardrail_names_duration
    assert "5-fold stratified" in g["Validation split handling"].details
    balance = g["Class balancing detection"].details
    assert "'yes'" in balance and "11.2%" in balance and "threshold" in balance
    assert g["Missing feature values imputation"].details.startswith("no missing")


def test_holdout_split_is_described(small_df):
    g = _statuses(small_df, validation_size=0.25)
    assert "holdout" in g["Validation split handling"].details and "25%" in g["Validation split handling"].details


def test_injected_missing_values_are_imputed(small_df):
    df = small_df.copy()
    df.loc[[3, 7], "age"] = np.nan
    df.loc[5, "job"] = None
    missing = _statuses(df)["Missing feature values imputation"]
    assert missing.status == "done"
    assert "age: 2 missing, imputed with the median" in missing.details
    assert "job: 1 missing" in missing.details


def test_high_cardinality_is_alerted(small_df):
    df = small_df.assign(customer_ref=[f"c{i % 120}" for i in range(len(small_df))])
    card = _statuses(df)["High cardinality feature detection"]
    assert card.status == "alerted" and "customer_ref (120 levels)" in card.details


def test_balanced_classes_pass(small_df):
    df = pd.concat([small_df[small_df.response == "yes"], small_df[small_df.response == "no"].head(500)])
    assert _statuses(df)["Class balancing detection"].status == "passed"


def _bad(df: pd.DataFrame, change) -> pd.DataFrame:
    df = df.copy()
    change(df)
    return df


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("response"), "label column 'response' not found"),
        (lambda d: d.__setitem__("response", "no"), "only one class ('no')"),
        (lambda d: d.__setitem__("poutcome", np.nan), "'poutcome'"),
        (lambda d: d.__setitem__("age", d["age"].astype(str).where(d.index != 17, "forty")),
         "column 'age' is numeric but holds a non-numeric value 'forty'"),
        (lambda d: d.__setitem__("response", d["response"].where(d.index != 4)), "1 empty value"),
    ],
    ids=["label-missing", "one-class", "empty-column", "non-numeric", "empty-label"],
)
def test_bad_input_is_a_one_line_data_error(small_df, change, expected):
    with pytest.raises(DataError) as err:
        validate_input(_bad(small_df, change), make_settings())
    line = err.value.line()
    assert expected in line and "\n" not in line and ";" in line  # the problem; the fix


def test_entirely_empty_column_message(small_df):
    with pytest.raises(DataError, match="entirely empty"):
        validate_input(small_df.assign(notes=np.nan), make_settings())


def test_featurization_off_rejects_text_columns(small_df):
    with pytest.raises(DataError, match=r"featurization is off.*'job'"):
        validate_input(small_df, make_settings(featurization="off"))
    numeric = small_df[["age", "duration", "campaign", "euribor3m", "response"]]
    assert set(validate_input(numeric, make_settings(featurization="off")).values()) == {"numeric"}


def test_too_few_minority_rows_for_the_folds(small_df):
    df = pd.concat([small_df[small_df.response == "no"], small_df[small_df.response == "yes"].head(3)])
    with pytest.raises(DataError, match="only 3 row"):
        validate_input(df, make_settings())


def test_mostly_text_column_is_categorical_not_an_error(small_df):
    df = small_df.copy()
    df["job"] = df["job"].where(df.index % 50 != 0, "7")  # a few numeric-looking levels in a text column
    kinds = validate_input(df, make_settings())
    assert kinds["job"] == "categorical" and kinds["age"] == "numeric"


def test_single_feature_auc_singles_out_duration(bank_df):
    """The leakage threshold's evidence: on the whole bank data only `duration` (known after the call)
    ranks the classes with AUC >= LEAKAGE_AUC alone; the strongest legitimate columns stay under it."""
    s = make_settings()
    kinds = validate_input(bank_df, s)
    aucs = single_feature_auc(bank_df.drop(columns=["response"]), bank_df["response"], kinds)
    assert set(aucs) == set(kinds)
    assert aucs["duration"] == pytest.approx(0.820, abs=0.005)
    assert [c for c, a in aucs.items() if a >= LEAKAGE_AUC] == ["duration"]
    others = sorted(a for c, a in aucs.items() if c != "duration")
    assert 0.74 < others[-1] < LEAKAGE_AUC  # the macro-economic indicators: strong, but below the line
    # a column of many rare levels cannot score by memorising them (out-of-fold rates)
    noise = bank_df.assign(ref=[f"r{i}" for i in range(len(bank_df))])
    kinds = validate_input(noise, s)
    assert single_feature_auc(noise.drop(columns=["response"]), noise["response"], kinds)["ref"] < 0.55


def test_leakage_guardrail_names_duration(small_df):
    leak = _statuses(small_df)["Feature leakage detection"]
    assert leak.status == "alerted" and "duration (AUC 0.8" in leak.details
    assert "--drop-columns duration" in leak.details and "the model keeps them" in leak.details
    profiled = _statuses(small_df, dataset={"name": "bankmarketing", "label_column": "response",
                                            "post_outcome_columns": ["duration", "pdays"]})["Feature leakage detection"]
    assert "duration (AUC" in profiled.details and "pdays (AUC" in profiled.details  # listed: named whatever its AUC
    assert profiled.details.count("post_outcome_columns") == 2
    assert "--drop-columns duration,pdays" in profiled.details


def test_dropped_columns_are_not_trained_on(small_df):
    settings = make_settings(drop_columns=["duration"],
                             dataset={"name": "bankmarketing", "label_column": "response",
                                      "post_outcome_columns": ["duration"]})
    kinds = validate_input(small_df, settings)
    assert "duration" not in kinds and "age" in kinds
    features = small_df.drop(columns=["response", "duration"])
    leak = {g.name: g for g in run_guardrails(features, small_df["response"], kinds, settings)}
    assert leak["Feature leakage detection"].status == "passed"
    assert "post-outcome column(s) dropped: duration" in leak["Feature leakage detection"].details
    # a dropped column is not checked: an empty one may be dropped instead of filled in
    assert "notes" not in validate_input(small_df.assign(notes=np.nan), make_settings(drop_columns=["notes"]))


def test_unknown_column_to_drop_is_a_one_line_error(small_df):
    with pytest.raises(DataError) as err:
        validate_input(small_df, make_settings(drop_columns=["duration", "durration"]))
    line = err.value.line()
    assert "column(s) to drop not in the data: 'durration'" in line and "\n" not in line
    assert "--drop-columns" in line and "duration" in line.split("columns are:")[1]
    with pytest.raises(ValueError, match="cannot be dropped"):
        make_settings(drop_columns=["response"])
