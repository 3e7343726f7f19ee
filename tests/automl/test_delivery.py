"""Delivering the chosen model within the budget: the refit plan, bags of fold models, honest fallbacks."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from opml.automl import selection
from opml.automl.ensemble import VotingModel, fold_bag
from opml.automl.evaluate import cross_validate
from opml.automl.experiment import run_experiment
from opml.automl.model import OpmlClassifier
from opml.automl.pipeline import CandidatePipeline
from opml.automl.results import TrialResult
from opml.serving.compiled import VotingScorer, compile_model
from opml.serving.scorer import schema_columns
from opml.training.report import render
from tests.automl.conftest import fold_data, make_settings

TOL = 1e-6
LGBM = {"n_estimators": 40, "learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 20}
LR = {"C": 1.0, "class_weight": "none"}


def compiled_parity(model: OpmlClassifier, frame: pd.DataFrame) -> VotingScorer:
    """The compiled scorer against model.predict_proba / predict: batches, small batches, single rows."""
    columns, example = schema_columns(model)
    scorer = compile_model(model, "test:1", columns, example)
    cols = {}
    for c in columns:
        values = frame[c.name].tolist()
        missing = [v is None or (isinstance(v, float) and math.isnan(v)) for v in values]
        cols[c.name] = [None if m else (v if c.kind == "numeric" else str(v)) for v, m in zip(values, missing,
                                                                                              strict=True)]
    ref = model.predict_proba(frame)
    assert np.abs(scorer.predict_proba(cols) - ref).max() < TOL, scorer.inference
    records = [dict(zip(cols, v, strict=True)) for v in zip(*cols.values(), strict=True)]
    assert np.abs(scorer.predict_batch(scorer.read(records)) - ref).max() < TOL
    for i in range(0, len(frame), max(1, len(frame) // 25)):
        one = scorer.predict_batch(scorer.read(records[i: i + 1]))
        assert np.abs(one - ref[i]).max() < TOL
        assert scorer.labels(one) == [str(model.predict(frame.iloc[i: i + 1])[0])]
    return scorer


@pytest.fixture(scope="module")
def folds(small_df):
    """Two searched candidates' cross-validation (5 folds) with their fold models kept."""
    data, kinds, X, y = fold_data(small_df)
    trials = {}
    for i, (algo, params, scaler) in enumerate((("LightGBM", LGBM, "MaxAbsScaler"),
                                                ("LogisticRegression", LR, "StandardScalerWrapper"))):
        cand = CandidatePipeline(algo, params, scaler=scaler, kinds=kinds, n_jobs=1)
        models: list = []
        oof, fit_s, cost = cross_validate(cand, data, workers=2, models=models)
        trials[i] = TrialResult(iteration=i, pipeline_name=cand.name, algorithm=algo, scaler=scaler, params=params,
                                oof=oof, fold_models=models, fit_seconds=fit_s, scoring_cost=cost)
    return X, y, data, kinds, trials


def test_fold_models_are_the_out_of_fold_predictions(folds):
    X, _, data, _, trials = folds
    t = trials[0]
    assert len(t.fold_models) == 5 and len({id(m) for m in t.fold_models}) == 5
    for model, (_, slots) in zip(t.fold_models, data.splits.folds, strict=True):
        rows = data.splits.eval_rows[slots]
        assert np.allclose(model.predict_proba(X.iloc[rows]), t.oof[slots], rtol=0, atol=1e-12)


def test_a_bag_averages_fold_models_and_compiles(folds, small_df, bank_df):
    X, y, _, kinds, trials = folds
    bag = fold_bag(trials[0], trials, 2)
    assert isinstance(bag, VotingModel) and len(bag.members_) == 5 and np.allclose(bag.weights_, 0.2)
    rows = X.head(300)
    mean = np.mean([m.predict_proba(rows) for m in trials[0].fold_models], axis=0)
    assert np.allclose(bag.predict_proba(rows), mean, rtol=0, atol=1e-12)
    labels = np.where(y == 1, "yes", "no")
    model = OpmlClassifier(bag, threshold=0.3, positive_label="yes", kinds=kinds).fit(X, labels, prefit=True)
    assert model.estimator_ is bag  # no refit
    scorer = compiled_parity(model, bank_df.sample(3000, random_state=4).drop(columns=["response"]))
    assert type(scorer) is VotingScorer and "VotingEnsemble of 5" in scorer.inference
    # a clone fits afresh (the bag is not frozen): honest re-evaluation, e.g. by benchmarks/automl_quality.py
    again = clone(model).fit(X, labels)
    assert again.estimator_ is not bag and all(a is not b for a, b in zip(again.estimator_.members_, bag.members_,
                                                                          strict=True))
    assert again.predict_proba(rows).shape == (300, 2)


def test_a_voting_ensemble_bags_its_members_fold_models(folds, bank_df):
    X, y, _, kinds, trials = folds
    members = [{"iteration": 0, "pipeline": trials[0].pipeline_name, "weight": 0.75},
               {"iteration": 1, "pipeline": trials[1].pipeline_name, "weight": 0.25}]
    voting = TrialResult(iteration=2, pipeline_name="VotingEnsemble", algorithm="VotingEnsemble", scaler=None,
                         params={}, members=members)
    bag = fold_bag(voting, trials, 2)
    assert len(bag.members_) == 10 and bag.weights_.sum() == pytest.approx(1.0)
    rows = X.head(200)
    want = sum(w * np.mean([m.predict_proba(rows) for m in trials[i].fold_models], axis=0)
               for i, w in ((0, 0.75), (1, 0.25)))
    assert np.allclose(bag.predict_proba(rows), want, rtol=0, atol=1e-12)
    labels = np.where(y == 1, "yes", "no")
    model = OpmlClassifier(bag, threshold=0.25, positive_label="yes", kinds=kinds).fit(X, labels, prefit=True)
    compiled_parity(model, bank_df.sample(1500, random_state=5).drop(columns=["response"]))
    stack = TrialResult(iteration=3, pipeline_name="StackEnsemble", algorithm="StackEnsemble", scaler=None,
                        params={}, members=members)
    assert fold_bag(stack, trials, 2) is None  # a meta-learner is not a weighted average
    dropped = dict(trials)
    dropped[1] = TrialResult(iteration=1, pipeline_name="x", algorithm="LogisticRegression", scaler=None, params={})
    assert fold_bag(voting, dropped, 2) is None  # a member's fold models were dropped


def _t(i: int, score: float, cost: int, rng: np.random.Generator, y: np.ndarray) -> TrialResult:
    margin = (y - 0.5) * 2 * score + rng.normal(0, 1.0, len(y))
    p = 1 / (1 + np.exp(-margin))
    return TrialResult(iteration=i, pipeline_name=f"m{i}", algorithm="LightGBM", scaler=None, params={},
                       score=score, scoring_cost=cost, oof=np.column_stack([1 - p, p]), fit_seconds=float(i + 1))


def test_deliver_prefers_refit_then_the_bag_then_says_what_replaced_it():
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.2).astype(int)
    folds = np.arange(3000) % 5
    board = [_t(0, 0.950, 9000, rng, y), _t(1, 0.949, 800, rng, y), _t(2, 0.948, 3000, rng, y),
             _t(3, 0.900, 50, rng, y)]

    def run(rule, refit, bag):
        return selection.deliver(board, rule, "AUC_weighted", y, folds, refit_fits=lambda t: t.iteration in refit,
                                 has_bag=lambda t: t.iteration in bag, refit_seconds=lambda t: t.fit_seconds)

    final, how, rec = run("one_se", {0, 1, 2, 3}, set())
    assert final.iteration == rec["chosen"]["iteration"] and how == "refit" and rec["delivery"] == "refit"
    chosen = final.iteration
    assert board[chosen].score >= rec["floor"] and not rec["below_floor"] and "refit_instead" not in rec
    final, how, rec = run("one_se", {i for i in range(4) if i != chosen}, {chosen})
    assert final.iteration == chosen and how == "fold_bag"  # the rule's choice, without a refit
    final, how, rec = run("one_se", {0, 2, 3} - {chosen}, set())  # neither: the rule over what can be delivered
    assert final.iteration != chosen and final.score >= rec["floor"] and not rec["below_floor"]
    assert rec["refit_instead"]["iteration"] == final.iteration and "could not be refit" in rec["undelivered"]
    final, how, rec = run("best", {3}, set())
    assert final.iteration == 3 and rec["below_floor"] and rec["delivered"]["iteration"] == 3
    final, how, rec = run("best", set(), set())  # nothing deliverable in time: the quickest refit, said so
    assert final.iteration == 0 and how == "refit" and rec["undelivered"]


def test_the_report_says_plainly_when_the_chosen_model_was_not_delivered():
    sel = {"rule": "one_se", "standard_error": 0.0017, "floor": 0.9497, "eligible": 4,
           "top": {"iteration": 5, "pipeline": "VotingEnsemble", "score": 0.9514, "scoring_cost": 33700},
           "chosen": {"iteration": 0, "pipeline": "MaxAbsScaler, LightGBM", "score": 0.9505, "scoring_cost": 3100},
           "delivered": {"iteration": 4, "pipeline": "StandardScalerWrapper, LogisticRegression", "score": 0.936},
           "refit_instead": {"iteration": 4, "pipeline": "StandardScalerWrapper, LogisticRegression"},
           "undelivered": "MaxAbsScaler, LightGBM could not be refit in the time left", "below_floor": True,
           "delivery": "refit"}
    summary = {"settings": {"primary_metric": "AUC_weighted"}, "selection": sel,
               "best": {"pipeline": "StandardScalerWrapper, LogisticRegression",
                        "metrics": {"AUC_weighted": 0.936, "accuracy": 0.9}}}
    text = render(summary, run_id="AutoML_x")
    assert "WARNING: model_selection one_se chose MaxAbsScaler, LightGBM (0.9505)" in text
    assert "registered StandardScalerWrapper, LogisticRegression (AUC_weighted 0.9360) instead" in text
    assert "BELOW the selection floor 0.9497" in text and "raise --time-budget" in text
    sel.update(delivery="fold_bag", bag_models=5, delivered=sel["chosen"], below_floor=False)
    del sel["refit_instead"], sel["undelivered"]
    text = render(summary, run_id="AutoML_x")
    assert "WARNING" not in text and "delivered as a bag of 5 cross-validation fold models" in text


def _never_refit(monkeypatch):
    real = selection.deliver
    monkeypatch.setattr(selection, "deliver",
                        lambda *a, **kw: real(*a, **{**kw, "refit_fits": lambda t: False}))


@pytest.mark.parametrize("rule", ["one_se", "best"])
def test_no_time_to_refit_delivers_fold_models(small_df, monkeypatch, rule):
    _never_refit(monkeypatch)
    settings = make_settings(max_trials=4, allowed_models=["LightGBM", "LogisticRegression"], model_selection=rule)
    result = run_experiment(small_df, settings)
    sel = result.selection
    assert sel["delivery"] == "fold_bag" and "bag of" in result.final_pipeline and "bag of" in result.stop_reason
    inner = result.model.estimator_
    assert isinstance(inner, VotingModel) and len(inner.members_) == sel["bag_models"] >= 5
    assert result.best.algorithm != "StackEnsemble"  # not a weighted average: no bag
    if sel["chosen"]["pipeline"] != "StackEnsemble":  # the rule's choice itself, without a refit
        assert result.best.iteration == sel["chosen"]["iteration"] and "refit_instead" not in sel
    else:  # replaced, and said so
        assert sel["refit_instead"]["iteration"] == result.best.iteration and sel["undelivered"]
    assert result.best.score >= sel["floor"] or sel["below_floor"]
    rows = small_df.head(400)
    proba = result.model.predict_proba(rows)
    assert (result.model.predict(rows) == np.where(proba[:, 1] >= result.model.threshold_, "yes", "no")).all()
    compiled_parity(result.model, rows.drop(columns=["response"]))


def test_a_short_budget_delivers_a_tree_model_within_one_standard_error(bank_df):
    """The issue's silent downgrade: at a short budget on the whole data, the registered model is a tree model or
    an ensemble, within one standard error of the run's top score, and was not replaced (30 s; 60 s and 120 s
    are measured by benchmarks/automl_quality.py --budgets)."""
    started = time.monotonic()
    result = run_experiment(bank_df, make_settings(experiment_timeout_seconds=30))
    elapsed = time.monotonic() - started
    sel = result.selection
    assert elapsed <= 30 * 1.5, f"took {elapsed:.1f}s"
    assert result.best.algorithm != "LogisticRegression", result.best.pipeline_name
    assert "refit_instead" not in sel and not sel["below_floor"], sel
    assert result.best.iteration == sel["chosen"]["iteration"]
    assert result.best.score >= sel["top"]["score"] - sel["standard_error"]
    assert result.best.metrics["AUC_weighted"] > 0.945
