"""The compiled scorer (opml/serving/compiled.py + treecompile.py) against the trained model's predict_proba.

Small pipelines of every algorithm kind are trained on 5,000 rows of the real dataset, then the whole
dataset (32,950 rows) plus rows with missing values and unseen categories is scored both ways: the
probabilities must agree within 1e-6 and the labels exactly, for large batches (vectorised featurizer,
bitmask tree kernel), small ones (row-by-row featurizer) and single rows (tree walker).
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pandas as pd
import pytest

from opml.automl.ensemble import StackModel, VotingModel
from opml.automl.model import OpmlClassifier
from opml.automl.pipeline import CandidatePipeline
from opml.serving import reader, treecompile
from opml.serving.cbuild import CannotCompile, Library
from opml.serving.compiled import SingleScorer, StackScorer, VotingScorer, compile_model
from opml.serving.scorer import schema_columns

pytestmark = pytest.mark.timeout(300)

TOL = 1e-6
LGBM = {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 10, "subsample": 0.9,
        "colsample_bytree": 0.8, "reg_lambda": 0.1, "reg_alpha": 1e-3}
LGBM_WIDE = {**LGBM, "n_estimators": 30, "num_leaves": 100, "min_child_samples": 3}  # > 64 leaves: tree walker
XGB = {"n_estimators": 60, "learning_rate": 0.1, "max_depth": 6, "min_child_weight": 1.0, "subsample": 0.9,
       "colsample_bytree": 0.8, "reg_lambda": 1.0, "reg_alpha": 1e-3}
FOREST = {"n_estimators": 30, "max_features": 0.5, "min_samples_leaf": 3, "criterion": "gini", "max_samples": 0.5}
LR = {"C": 1.0, "class_weight": "none"}
CATBOOST = {"n_estimators": 80, "learning_rate": 0.1, "depth": 5, "l2_leaf_reg": 3.0}  # one-hot categories
CATBOOST_CTR = {**CATBOOST, "one_hot_max_size": 2}  # target statistics over single columns (and a one-hot)


@pytest.fixture(scope="module")
def data(bank_csv):
    df = pd.read_csv(bank_csv)
    y = df.pop("response").astype(str).to_numpy()
    extra = _odd_rows(df)
    full = pd.concat([df, extra], ignore_index=True)
    train = df.sample(5000, random_state=0).index
    return df.loc[train].reset_index(drop=True), y[train], full


def _odd_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with missing values, unseen categories and unseen numeric levels."""
    rng = np.random.default_rng(0)
    base = df.sample(60, random_state=1).reset_index(drop=True).astype(object)
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    categorical = [c for c in df.columns if c not in numeric]
    for i in range(len(base)):
        for c in df.columns:
            r = rng.random()
            if r < 0.25:
                base.at[i, c] = None
            elif r < 0.4 and c in categorical:
                base.at[i, c] = f"never-seen-{i}"
            elif r < 0.5 and c in numeric:
                base.at[i, c] = float(df[c].iloc[0]) + 0.123456789 * (i + 1)
    base.loc[0, :] = None  # one all-missing row
    for c in numeric:
        base[c] = pd.to_numeric(base[c])
    return base


def _cols(frame: pd.DataFrame, columns) -> dict[str, list]:
    out = {}
    for c in columns:
        values = frame[c.name].tolist()
        if c.kind == "numeric":
            out[c.name] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
        else:
            out[c.name] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]
    return out


def _fit(estimator, data) -> OpmlClassifier:
    X, y, _ = data
    return OpmlClassifier(estimator, threshold=0.3).fit(X, y)


def _check(model: OpmlClassifier, data, *, trees: bool = True, singles: int = 150):
    _, _, full = data
    columns, example = schema_columns(model)
    scorer = compile_model(model, "test:1", columns, example, trees=trees)
    cols = _cols(full, columns)
    ref = model.predict_proba(full)
    ref_labels = [str(v) for v in model.predict(full)]
    got = scorer.predict_proba(cols)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < TOL, (scorer.inference, np.abs(got - ref).max())
    assert scorer.labels(got) == ref_labels
    # the endpoint's path: records -> read (the C record reader for batches) -> predict_batch
    records = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    batch = scorer.read(records)
    assert batch.rows == len(records)
    assert (batch.matrix is not None) == ("C record reader" in scorer.inference)
    assert np.abs(scorer.predict_batch(batch) - ref).max() < TOL
    small = scorer.read(records[:3])  # small batches: the Python reader's columns, whatever the scorer has
    assert small.matrix is None and small.rows == 3
    assert np.abs(scorer.predict_batch(small) - ref[:3]).max() < TOL
    assert scorer.labels(scorer.predict_batch(small)) == ref_labels[:3]
    # small batches take the row-by-row featurizer; single rows also take the tree walker
    odd = list(range(len(full) - 60, len(full)))
    for rows in (odd[:7], odd[7:19], list(range(0, 40))):
        sub = {k: [v[i] for i in rows] for k, v in cols.items()}
        assert np.abs(scorer.predict_proba(sub) - ref[rows]).max() < TOL
    for i in [*odd, *range(0, len(full) - 60, (len(full) - 60) // singles)]:
        one = {k: [v[i]] for k, v in cols.items()}
        p = scorer.predict_proba(one)
        assert np.abs(p - ref[i]).max() < TOL, (i, p, ref[i])
        assert scorer.labels(p) == [ref_labels[i]]
    # the endpoint's plain-JSON path: the body read by C straight into the matrix (single rows, small and large
    # batches); without the C reader the app parses every body the usual way
    if "C record reader" in scorer.inference:
        for rows in (list(range(len(records))), odd[:1], odd[1:6], [0], odd[6:19]):
            batch = scorer.read_json(orjson.dumps({"data": [records[i] for i in rows]}))
            assert batch is not None and batch.rows == len(rows)
            got = scorer.predict_batch(batch)
            assert np.abs(got - ref[rows]).max() < TOL
            assert scorer.labels(got) == [ref_labels[i] for i in rows]
            # the same doubles as the records path (one row: the scalar path into the tree walker)
            assert np.array_equal(got, scorer.predict_batch(scorer.read([records[i] for i in rows])))
    else:
        assert scorer.read_json(orjson.dumps({"data": records[:2]})) is None
    return scorer


@pytest.mark.parametrize(("algorithm", "params", "scaler"), [
    ("LightGBM", LGBM, "MaxAbsScaler"),
    ("LightGBM", LGBM_WIDE, "StandardScalerWrapper"),
    ("XGBoostClassifier", XGB, "StandardScalerWrapper"),
    ("RandomForest", FOREST, "SparseNormalizer"),
    ("ExtremeRandomTrees", {**FOREST, "criterion": "entropy"}, "MaxAbsScaler"),
    ("CatBoostClassifier", CATBOOST, "MaxAbsScaler"),
    ("CatBoostClassifier", CATBOOST_CTR, "StandardScalerWrapper"),
    ("LogisticRegression", LR, "StandardScalerWrapper"),
    ("LogisticRegression", LR, "MinMaxScaler"),
    ("LogisticRegression", {"C": 0.1, "class_weight": "balanced"}, "RobustScaler"),
    ("LogisticRegression", LR, "SparseNormalizer"),
])
def test_single_pipeline_parity(data, algorithm, params, scaler):
    model = _fit(CandidatePipeline(algorithm, params, scaler=scaler, n_jobs=1), data)
    scorer = _check(model, data)
    assert type(scorer) is SingleScorer
    if algorithm != "LogisticRegression":
        assert scorer.engines == ["kernel"], scorer.inference


def test_voting_and_stack_parity(data):
    members = [CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1),
               CandidatePipeline("LightGBM", LGBM, scaler="StandardScalerWrapper", n_jobs=1),
               CandidatePipeline("XGBoostClassifier", XGB, scaler="MaxAbsScaler", n_jobs=1),
               CandidatePipeline("ExtremeRandomTrees", FOREST, scaler="MaxAbsScaler", n_jobs=1)]
    voting = _fit(VotingModel(members, [0.4, 0.2, 0.3, 0.1]), data)
    scorer = _check(voting, data, singles=60)
    assert type(scorer) is VotingScorer
    assert "VotingEnsemble of 4" in scorer.inference
    assert "1 shared feature block" in scorer.inference  # one featurization per request for all members
    assert "features: C;" in scorer.inference  # the C featurizer serves, and the inference line says so
    stack_members = [CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1),
                     CandidatePipeline("LogisticRegression", LR, scaler="StandardScalerWrapper", n_jobs=1),
                     CandidatePipeline("RandomForest", FOREST, scaler="MaxAbsScaler", n_jobs=1)]
    stack = _fit(StackModel(stack_members, coef=[[1.1, 0.6, 0.4]], intercept=[-0.2]), data)
    scorer = _check(stack, data, singles=60)
    assert type(scorer) is StackScorer
    assert "StackEnsemble of 3" in scorer.inference


def test_booster_path_parity(data):
    """trees=False (and a machine without a compiler) keeps the libraries' own predict, still exact."""
    members = [CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1),
               CandidatePipeline("XGBoostClassifier", XGB, scaler="StandardScalerWrapper", n_jobs=1)]
    model = _fit(VotingModel(members, [0.5, 0.5]), data)
    scorer = _check(model, data, trees=False, singles=20)
    assert all(e.startswith("booster") for e in scorer.engines), scorer.inference


def test_voting_with_a_catboost_member_parity(data):
    members = [CandidatePipeline("CatBoostClassifier", CATBOOST, scaler="MaxAbsScaler", n_jobs=1),
               CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1)]
    scorer = _check(_fit(VotingModel(members, [0.6, 0.4]), data), data, singles=40)
    assert type(scorer) is VotingScorer and scorer.engines == ["kernel", "kernel"], scorer.inference


def test_multiclass_parity(bank_csv):
    df = pd.read_csv(bank_csv).sample(4000, random_state=2).reset_index(drop=True)
    y = df.pop("marital").astype(str).to_numpy()
    df = df.drop(columns=["response"])
    for algorithm, params in (("LightGBM", LGBM), ("XGBoostClassifier", XGB), ("RandomForest", FOREST),
                              ("LogisticRegression", LR), ("CatBoostClassifier", CATBOOST_CTR)):
        model = OpmlClassifier(CandidatePipeline(algorithm, params, scaler="MaxAbsScaler", n_jobs=1)).fit(df, y)
        columns, example = schema_columns(model)
        scorer = compile_model(model, "test:1", columns, example)
        cols = _cols(df, columns)
        ref = model.predict_proba(df)
        got = scorer.predict_proba(cols)
        assert np.abs(got - ref).max() < TOL, (algorithm, np.abs(got - ref).max())
        assert scorer.labels(got) == [str(v) for v in model.predict(df)]
        one = {k: v[:1] for k, v in cols.items()}
        assert np.abs(scorer.predict_proba(one) - ref[:1]).max() < TOL


def test_no_compiler_degrades_to_booster(data, monkeypatch, tmp_path):
    model = _fit(CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1), data)
    monkeypatch.setenv("OPML_NO_CC", "1")
    monkeypatch.setenv("OPML_KERNEL_CACHE", str(tmp_path))  # nothing cached there
    monkeypatch.setattr(treecompile, "_library", Library(treecompile._load))  # forget the loaded libraries
    monkeypatch.setattr(reader, "_library", Library(reader._load))
    columns, example = schema_columns(model)
    scorer = compile_model(model, "test:1", columns, example)
    assert scorer.engines[0].startswith("booster (no C compiler"), scorer.inference
    assert "batches: Python record reader (no C compiler (gcc) to build the record reader)" in scorer.inference
    _, _, full = data
    cols = _cols(full, columns)
    got = scorer.predict_proba(cols)
    assert np.abs(got - model.predict_proba(full)).max() < TOL
    records = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    batch = scorer.read(records)
    assert batch.matrix is None and isinstance(batch.columns, dict)
    assert np.abs(scorer.predict_batch(batch) - got).max() == 0.0


def test_unsupported_raises_cannot_compile(data):
    from sklearn.naive_bayes import GaussianNB
    from sklearn.preprocessing import QuantileTransformer

    columns, example = schema_columns(_fit(CandidatePipeline("LogisticRegression", LR, n_jobs=1), data))
    with pytest.raises(CannotCompile):
        compile_model(object(), "test:1", columns, example)
    model = _fit(CandidatePipeline("LogisticRegression", LR, scaler="MaxAbsScaler", n_jobs=1), data)
    model.estimator_.model_ = GaussianNB().fit(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(CannotCompile, match="GaussianNB"):
        compile_model(model, "test:1", columns, example)
    model = _fit(CandidatePipeline("LogisticRegression", LR, scaler="MaxAbsScaler", n_jobs=1), data)
    model.estimator_.featurizer_.scaler_ = QuantileTransformer()
    with pytest.raises(CannotCompile, match="QuantileTransformer"):
        compile_model(model, "test:1", columns, example)
    model.estimator_ = GaussianNB()
    with pytest.raises(CannotCompile, match="GaussianNB"):
        compile_model(model, "test:1", columns, example)


def test_high_cardinality_categorical_parity(bank_csv):
    """Category codes >= 64 (wide bitsets in LightGBM / XGBoost categorical splits)."""
    df = pd.read_csv(bank_csv).sample(6000, random_state=3).reset_index(drop=True)
    y = df.pop("response").astype(str).to_numpy()
    rng = np.random.default_rng(3)
    level = (rng.integers(0, 150, len(df)) + np.where(y == "yes", 7, 0)) % 150
    df["area"] = [f"a{v}" for v in level]
    df.loc[rng.random(len(df)) < 0.05, "area"] = None
    for algorithm, params in (("LightGBM", {**LGBM, "min_child_samples": 5}), ("XGBoostClassifier", XGB),
                              ("CatBoostClassifier", CATBOOST), ("CatBoostClassifier", CATBOOST_CTR)):
        model = OpmlClassifier(CandidatePipeline(algorithm, params, scaler="MaxAbsScaler", n_jobs=1)).fit(df, y)
        columns, example = schema_columns(model)
        scorer = compile_model(model, "test:1", columns, example)
        assert scorer.engines == ["kernel"], scorer.inference
        probe = df.copy()
        probe.loc[::7, "area"] = "never-seen"
        cols = _cols(probe, columns)
        ref = model.predict_proba(probe)
        assert np.abs(scorer.predict_proba(cols) - ref).max() < TOL, algorithm
        for i in range(0, len(probe), 300):
            assert np.abs(scorer.predict_proba({k: [v[i]] for k, v in cols.items()}) - ref[i]).max() < TOL


def test_lightgbm_category_codes_at_the_edges(bank_csv):
    """Categorical splits read `(int)x` for x in (-1, 64) and send anything else right; the bitmask kernel
    turns codes into bit rows, the walker tests the bitset: both must agree with LightGBM on odd values."""
    import lightgbm as lgb

    df = pd.read_csv(bank_csv).sample(8000, random_state=5)
    y = (df.pop("response") == "yes").to_numpy()
    num = df.select_dtypes("number").to_numpy(float)
    cat = df.select_dtypes(exclude="number").apply(lambda s: s.astype("category").cat.codes).to_numpy(float)
    X = np.hstack([cat, num])
    booster = lgb.LGBMClassifier(n_estimators=40, num_leaves=31, min_child_samples=5, verbose=-1).fit(
        X, y, categorical_feature=list(range(cat.shape[1]))).booster_
    forest, _, _ = treecompile.lightgbm_forest(booster, X.shape[1])
    assert forest._qs is not None and forest._qs[0].n_bit_feat > 0  # the bit-row path is in use
    odd = np.array([-1.5, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.7, 3.0, 9.99, 62.9, 63.0, 63.99, 64.0, 65.0, 1e10,
                    -1e10, np.inf, -np.inf, np.nan])
    rng = np.random.default_rng(0)
    Z = X[rng.integers(0, len(X), 400)].copy()
    for j in range(cat.shape[1]):
        Z[:, j] = np.where(rng.random(len(Z)) < 0.5, rng.choice(odd, len(Z)), Z[:, j])
    want = booster.predict(Z, raw_score=True)
    assert np.abs(forest.margins(Z)[:, 0] - want).max() == 0.0  # bitmask kernel, 400 rows
    for i in range(0, len(Z), 7):
        assert forest.margins(Z[i: i + 2])[:, 0].tolist() == want[i: i + 2].tolist()  # walker, 2 rows


def test_catboost_codes_at_the_edges(bank_csv):
    """Category splits read a table over the codes (entry 0: a code CatBoost never saw); float splits compare in
    float32. Odd values must score as CatBoost scores them through CatBoostModel (codes cast to int64)."""
    from opml.automl.catboost_model import CatBoostModel

    df = pd.read_csv(bank_csv).sample(6000, random_state=6)
    y = (df.pop("response") == "yes").to_numpy().astype(int)
    num = df.select_dtypes("number").to_numpy(float)
    cat = df.select_dtypes(exclude="number").apply(lambda s: s.astype("category").cat.codes).to_numpy(float).copy()
    cat[::50, 0] = -1.0  # code -1 (a missing category) is a level CatBoost saw in training here
    X = np.hstack([cat, num])
    cats = tuple(range(cat.shape[1]))
    odd = np.array([-3.0, -2.0, -1.9, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.7, 11.0, 11.99, 12.0, 13.0, 1e10, -1e10,
                    np.nan])
    rng = np.random.default_rng(0)
    for params in (CATBOOST, CATBOOST_CTR):
        model = CatBoostModel({"one_hot_max_size": 255, "max_ctr_complexity": 1, **params}, cats).fit(X, y)
        forest, kind = treecompile.catboost_forest(model, X.shape[1])
        assert kind == "binary"
        assert int((forest._arrays["kind"] == 2).sum()) > 0  # category splits are in use
        Z = X[rng.integers(0, len(X), 400)].copy()
        for j in cats:
            Z[:, j] = np.where(rng.random(len(Z)) < 0.5, rng.choice(odd, len(Z)), Z[:, j])
        Z[rng.random(Z.shape) < 0.02] = np.nan  # NaN float features too
        want = model.catboost_.predict(model._frame(Z), prediction_type="RawFormulaVal")
        assert np.abs(forest.margins(Z)[:, 0] - want).max() < 1e-9
        probe = forest.probe_rows()
        want = model.catboost_.predict(model._frame(probe), prediction_type="RawFormulaVal")
        assert np.abs(forest.margins(probe)[:, 0] - want).max() < 1e-9


def test_catboost_that_cannot_compile_says_why(data, monkeypatch, tmp_path):
    """Target statistics over feature combinations, or no C compiler: CannotCompile naming the reason, so the
    endpoint takes the plain path (ModelScorer) and says why; trees=False keeps CatBoost's own predict."""
    combos = _fit(CandidatePipeline("CatBoostClassifier", {**CATBOOST_CTR, "max_ctr_complexity": 3}, n_jobs=1), data)
    columns, example = schema_columns(combos)
    with pytest.raises(CannotCompile, match="CatBoost target statistics over feature combinations"):
        compile_model(combos, "test:1", columns, example)
    scorer = _check(combos, data, trees=False, singles=10)
    assert scorer.engines == ["catboost (tree kernel disabled)"]
    model = _fit(CandidatePipeline("CatBoostClassifier", CATBOOST, n_jobs=1), data)
    monkeypatch.setenv("OPML_NO_CC", "1")
    monkeypatch.setenv("OPML_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(treecompile, "_oblivious_library", Library(treecompile._load_oblivious))
    with pytest.raises(CannotCompile, match=r"CatBoost model not compiled: no C compiler \(gcc\) to build"):
        compile_model(model, "test:1", columns, example)


def test_plain_model_scorer_serves_what_cannot_be_compiled(data):
    """The fallback path (ModelScorer: a DataFrame through the model) behind the same endpoint app."""
    import asyncio

    import orjson

    from opml.serving.app import ScoringApp
    from opml.serving.requests import RequestError
    from opml.serving.scorer import ModelScorer

    model = _fit(CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1), data)
    columns, example = schema_columns(model)
    scorer = ModelScorer(model, "test:1", columns, example, "fallback: injected")
    _, _, full = data
    frame = full.tail(80)  # missing values and unseen categories
    cols = _cols(frame, columns)
    records = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    batch = scorer.read(records)
    assert isinstance(batch, dict)
    assert np.abs(scorer.predict_batch(batch) - model.predict_proba(frame)).max() < TOL
    assert scorer.labels(scorer.predict_batch(batch)) == [str(v) for v in model.predict(frame)]
    with pytest.raises(RequestError, match="record 3: missing column"):
        scorer.read([*records[:3], {}])

    app = ScoringApp(scorer, keys=None, max_request_bytes=1 << 20, openapi=b"{}")
    body = orjson.dumps({"data": records[:5]})
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "path": "/score", "method": "POST", "headers": []}, receive, send))
    assert sent[0]["status"] == 200
    assert orjson.loads(sent[1]["body"]) == {"result": [str(v) for v in model.predict(frame.head(5))]}


def test_every_path_applies_the_same_threshold_decision(data):
    """model.predict, the plain scorer and the compiled scorer share opml.automl.threshold.decide: a row
    whose positive probability equals the threshold goes to the positive class on every path."""
    from opml.automl.threshold import decide
    from opml.serving.scorer import ModelScorer

    model = _fit(CandidatePipeline("LogisticRegression", LR, scaler="MaxAbsScaler", n_jobs=1), data)
    columns, example = schema_columns(model)
    compiled = compile_model(model, "test:1", columns, example)
    plain = ModelScorer(model, "test:1", columns, example, "fallback: injected")
    t, pos = model.threshold_, model.positive_index_
    p = np.zeros((4, 2))
    p[:, pos] = [t, np.nextafter(t, 0.0), np.nextafter(t, 1.0), 0.9]
    p[:, 1 - pos] = 1.0 - p[:, pos]
    want = [str(c) for c in model.classes_[decide(p, t, pos)]]
    positive = str(model.classes_[pos])
    assert want == [positive, str(model.classes_[1 - pos]), positive, positive]
    assert compiled.labels(p) == plain.labels(p) == want
    _, _, full = data
    cols = _cols(full.head(500), columns)
    assert compiled.labels(compiled.predict_proba(cols)) == [str(v) for v in model.predict(full.head(500))]


def test_the_app_replies_alike_with_and_without_the_json_reader(data):
    """Every body gets the same status and bytes whether the C reader took it or orjson and parse did."""
    import asyncio

    from opml.serving.app import ScoringApp

    model = _fit(CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1), data)
    columns, example = schema_columns(model)
    fast = compile_model(model, "test:1", columns, example)
    assert "C record reader" in fast.inference
    plain = compile_model(model, "test:1", columns, example)
    plain.read_json = lambda raw: None  # type: ignore[method-assign]
    _, _, full = data
    records = [dict(zip(r.keys(), r.values(), strict=True)) for r in
               full.head(30).astype(object).where(full.head(30).notna(), None).to_dict("records")]
    bodies = [orjson.dumps({"data": records}), orjson.dumps({"data": records[:1]}),
              orjson.dumps({"Inputs": {"data": records[:3]}}),
              orjson.dumps({"Inputs": {"data": records[:3]}, "GlobalParameters": {"method": "predict_proba"}}),
              b'{"data": [', b'{"data": []}', orjson.dumps({"data": [records[0] | {"age": "forty"}]}),
              orjson.dumps({"data": [records[0] | {"job": 3}]}), orjson.dumps({"data": [records[0] | {"x": 1}]}),
              orjson.dumps({"data": records[:2], "more": 1}),
              orjson.dumps({"data": [records[0] | {"job": "caf\u00e9"}]})]

    def reply(app: ScoringApp, body: bytes) -> tuple[int, bytes]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/score", "headers": [], "client": ("127.0.0.1", 1)}
        asyncio.run(app(scope, receive, send))
        return sent[0]["status"], sent[1]["body"]

    apps = [ScoringApp(s, keys=None, max_request_bytes=1 << 20, openapi=b"{}") for s in (fast, plain)]
    for body in bodies:
        got, want = reply(apps[0], body), reply(apps[1], body)
        assert got == want, (body[:80], got, want)
    assert reply(apps[0], bodies[0])[1] == orjson.dumps({"result": [str(v) for v in model.predict(full.head(30))]})
    assert {reply(apps[0], b)[0] for b in bodies} == {200, 400, 422}
