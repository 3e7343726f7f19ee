"""Featurizer (sklearn contract, unseen levels, frequency encoding), metrics and threshold tuning."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.base import clone

from opml.automl.featurize import SCALERS, Featurizer
from opml.automl.metrics import METRIC_NAMES, compute_metrics, fast_auc, primary_score
from opml.automl.threshold import best_f1_threshold, binary_report, choose_threshold
from opml.errors import DataError


@pytest.fixture(scope="module")
def features(small_df):
    return small_df.drop(columns=["response"])


def test_featurizer_follows_the_sklearn_contract(features):
    f = Featurizer(encoding="ordinal")
    assert f.fit(features) is f
    fitted = [k for k in vars(f) if k.endswith("_") and not k.startswith("_")]
    assert {"feature_names_in_", "categories_", "medians_", "scaler_"} <= set(fitted)
    assert not hasattr(clone(f), "categories_")
    Z = f.transform(features)
    assert Z.shape == (len(features), len(f.feature_names_out_)) and Z.dtype == np.float64
    assert [f.feature_names_out_[i] for i in f.categorical_indices_] == f.categorical_


def test_frequency_encoding_targets_repeated_decimal_columns(bank_df, features):
    f = Featurizer(frequency=True).fit(bank_df.drop(columns=["response"]))
    assert f.freq_columns_ == ["emp.var.rate", "cons.price.idx", "cons.conf.idx", "euribor3m", "nr.employed"]
    assert "__joint_freq" in list(f.feature_names_out_)
    assert "age" not in f.freq_columns_ and "duration" not in f.freq_columns_  # integer columns
    assert "__joint_freq" not in list(Featurizer(frequency=False).fit(features).feature_names_out_)
    small = Featurizer(frequency=True).fit(features)  # 4,000 rows: euribor3m has too many levels per row
    assert "euribor3m" not in small.freq_columns_ and "nr.employed" in small.freq_columns_


@pytest.mark.parametrize("encoding", ["ordinal", "onehot"])
def test_unseen_and_missing_values_do_not_fail(features, encoding):
    f = Featurizer(encoding=encoding, unknown="nan").fit(features)
    rows = features.head(3).copy()
    rows.loc[rows.index[0], "job"] = "astronaut"
    rows.loc[rows.index[1], "job"] = None
    rows.loc[rows.index[2], "age"] = np.nan
    Z = f.transform(rows)
    names = list(f.feature_names_out_)
    if encoding == "ordinal":
        assert np.isnan(Z[0, names.index("job")]) and np.isnan(Z[1, names.index("job")])
    else:
        job = [i for i, n in enumerate(names) if n.startswith("job=")]
        assert Z[0, job].sum() == 0 and Z[1, job].sum() == 0
    assert np.isfinite(Z[2, names.index("age")])  # imputed


def test_featurizer_names_missing_columns(features):
    f = Featurizer().fit(features)
    with pytest.raises(DataError, match=r"missing feature column.*duration"):
        f.transform(features.drop(columns=["duration"]))


@pytest.mark.parametrize("scaler", SCALERS)
def test_every_scaler_produces_finite_output(features, scaler):
    Z = Featurizer(encoding="onehot", scaler=scaler).fit(features).transform(features)
    assert np.isfinite(Z).all()


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.15).astype(int)
    p1 = np.clip(0.3 * y + rng.random(3000) * 0.7, 0, 1)
    proba = np.column_stack([1 - p1, p1])
    m, per_class, cm = compute_metrics(y, proba, ["no", "yes"])
    assert set(m) == set(METRIC_NAMES)
    pred = (p1 > 0.5).astype(int)
    assert m["AUC_weighted"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert m["AUC_macro"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["f1_score_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert m["matthews_correlation"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert m["norm_macro_recall"] == pytest.approx(2 * skm.recall_score(y, pred, average="macro") - 1)
    ap = (np.mean(y == 0) * skm.average_precision_score(y == 0, 1 - p1)
          + np.mean(y == 1) * skm.average_precision_score(y, p1))
    assert m["average_precision_score_weighted"] == pytest.approx(ap)
    assert per_class["yes"]["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert cm == skm.confusion_matrix(y, pred).tolist()
    assert primary_score("accuracy", y, proba) == pytest.approx(m["accuracy"])


def test_fast_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(1)
    y = rng.random(5000) < 0.2
    score = np.round(rng.random(5000) + 0.2 * y, 2)  # many ties
    assert fast_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)


def test_best_f1_threshold_is_the_brute_force_optimum():
    rng = np.random.default_rng(2)
    y = rng.random(800) < 0.12
    p = np.clip(0.25 * y + 0.8 * rng.random(800), 0, 1)
    cut = best_f1_threshold(y, p)
    brute = max(skm.f1_score(y, p >= c) for c in np.unique(p))
    assert binary_report(y, p, cut)["f1"] == pytest.approx(brute)
    info = choose_threshold("f1_minority", y.astype(int), np.column_stack([1 - p, p]), ["no", "yes"], 1)
    assert info["tuned"]["f1"] >= info["argmax"]["f1"] and info["applied"] == cut
    fixed = choose_threshold(0.3, y.astype(int), np.column_stack([1 - p, p]), ["no", "yes"], 1)
    assert fixed["applied"] == 0.3 and fixed["tuned"]["threshold"] == 0.3
