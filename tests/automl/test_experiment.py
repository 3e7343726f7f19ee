"""run_experiment end to end on the real data (small samples and trial counts)."""

from __future__ import annotations

import dataclasses
import pickle
import time

import numpy as np
import pandas as pd
import pytest

from opml.automl.experiment import run_experiment
from opml.automl.plots import write_plots
from opml.errors import DataError
from tests.automl.conftest import make_settings

PNG = b"\x89PNG\r\n\x1a\n"


def test_trials_leaderboard_and_callback(small_run):
    result, seen = small_run
    singles = [t for t in result.trials if t.algorithm not in ("VotingEnsemble", "StackEnsemble")]
    assert len(singles) == 6
    assert [t.iteration for t in seen] == [t.iteration for t in result.trials] == list(range(len(result.trials)))
    assert all(t.progress is not None and t.progress.trials_done == i + 1 for i, t in enumerate(seen))
    first = result.trials[0]
    assert first.pipeline_name == "MaxAbsScaler, LightGBM" and first.status == "succeeded"
    assert first.params["n_estimators"] == 100 and first.duration_s > 0
    assert set(first.per_class) == {"no", "yes"} and sum(map(sum, first.confusion_matrix)) == 4000
    board = result.leaderboard
    scores = [t.metrics["AUC_weighted"] for t in board]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.9
    assert all(t.status == "succeeded" for t in board)
    assert {t.algorithm for t in singles} == {"LightGBM", "XGBoostClassifier", "LogisticRegression"}
    assert "max_trials (6)" in result.stop_reason
    assert set(result.timings) >= {"search_s", "ensembles_s", "refit_s", "total_s"}


def test_ensembles_are_candidates_on_the_leaderboard(small_run):
    result, _ = small_run
    names = {t.pipeline_name: t for t in result.leaderboard}
    assert {"VotingEnsemble", "StackEnsemble"} <= set(names)
    voting = names["VotingEnsemble"]
    assert voting.members and sum(m["weight"] for m in voting.members) == pytest.approx(1.0)
    assert len(names["StackEnsemble"].members) >= 2 and "meta_coef" in names["StackEnsemble"].params
    for ens in (voting, names["StackEnsemble"]):
        assert set(ens.metrics) == set(result.trials[0].metrics)
        assert ens.iteration > max(t.iteration for t in result.trials if t.algorithm == "LightGBM")


def test_threshold_tuning_improves_minority_f1(small_run):
    result, _ = small_run
    thr = result.threshold
    assert thr["minority_class"] == "yes" and 0.0 < thr["applied"] < 0.5
    assert thr["tuned"]["f1"] > thr["argmax"]["f1"]
    assert thr["tuned"]["recall"] > thr["argmax"]["recall"]
    assert result.model.threshold_ == pytest.approx(thr["applied"])


def test_final_model_on_raw_frames(small_run, small_df):
    model = small_run[0].model
    assert list(model.classes_) == ["no", "yes"] and model.positive_index_ == 1
    rows = small_df.head(400)  # the label column is present and must be ignored
    proba = model.predict_proba(rows)
    assert proba.shape == (400, 2) and np.allclose(proba.sum(axis=1), 1.0)
    labels = model.predict(rows)
    assert set(labels) <= {"no", "yes"}
    assert (labels == np.where(proba[:, 1] >= model.threshold_, "yes", "no")).all()
    assert (labels == rows["response"].to_numpy()).mean() > 0.85
    assert list(model.feature_names_in_) == [c for c in small_df.columns if c != "response"]
    schema = {c["name"]: c for c in model.schema_["columns"]}
    assert schema["age"]["kind"] == "numeric" and schema["job"]["kind"] == "categorical"
    assert "admin." in schema["job"]["categories"] and set(model.schema_["example"]) == set(schema)
    assert model.predict(pd.DataFrame([model.schema_["example"]]))[0] in {"no", "yes"}


def test_unseen_category_and_missing_column(small_run, small_df):
    model = small_run[0].model
    rows = small_df.head(5).copy()
    rows.loc[rows.index[0], "job"] = "astronaut"
    rows.loc[rows.index[1], "month"] = None
    rows.loc[rows.index[2], "age"] = np.nan
    assert np.isfinite(model.predict_proba(rows)).all()
    with pytest.raises(DataError) as err:
        model.predict(small_df.head(5).drop(columns=["duration", "age"]))
    assert "duration" in str(err.value) and "age" in str(err.value)


def test_model_pickles_round_trip(small_run, small_df):
    model = small_run[0].model
    again = pickle.loads(pickle.dumps(model))
    rows = small_df.head(200)
    assert np.array_equal(again.predict_proba(rows), model.predict_proba(rows))
    assert again.threshold_ == model.threshold_ and again.schema_ == model.schema_


def test_fitted_structure_is_inspectable(small_run):
    result, _ = small_run
    pipelines = result.model.pipelines_
    assert pipelines and all(hasattr(p, "featurizer_") and hasattr(p, "model_") for p in pipelines)
    if result.best.algorithm == "VotingEnsemble":
        assert len(pipelines) == len(result.best.members)


def test_feature_importance_in_raw_columns(small_run, small_df):
    importance = small_run[0].feature_importance
    cols = [c for c, _ in importance]
    assert sorted(cols) == sorted(c for c in small_df.columns if c != "response")
    values = [v for _, v in importance]
    assert values == sorted(values, reverse=True) and sum(values) == pytest.approx(1.0, abs=1e-3)
    assert "duration" in cols[:3]


def test_plots_are_valid_pngs(small_run, tmp_path):
    files = write_plots(small_run[0], tmp_path / "plots")
    assert sorted(p.name for p in files) == [
        "confusion_matrix.png", "feature_importance.png", "precision_recall_curve.png", "roc_curve.png",
    ]
    for p in files:
        data = p.read_bytes()
        assert data[:8] == PNG and len(data) > 5000


def test_result_parts_are_plain_data(small_run):
    result, _ = small_run
    for g in result.guardrails:
        assert set(dataclasses.asdict(g)) == {"name", "status", "details"}
    assert isinstance(result.threshold["tuned"]["f1"], float)
    assert result.oof["proba"].shape == (4000, 2) and result.oof["y"].shape == (4000,)


def test_failing_candidate_is_recorded_and_the_search_goes_on(small_df, monkeypatch):
    from opml.automl import algorithms

    def broken(params, featurizer, n_jobs, seed):
        raise RuntimeError("boom: injected failure")

    spec = dataclasses.replace(algorithms.CATALOGUE["LogisticRegression"], build=broken)
    monkeypatch.setitem(algorithms.CATALOGUE, "LogisticRegression", spec)
    settings = make_settings(max_trials=4, allowed_models=["LightGBM", "LogisticRegression"],
                             enable_stack_ensemble=False)
    seen = []
    result = run_experiment(small_df, settings, on_trial=seen.append)
    failed = [t for t in result.trials if t.status == "failed"]
    assert failed and all(t.algorithm == "LogisticRegression" for t in failed)
    assert "RuntimeError: boom: injected failure" in failed[0].error and failed[0].metrics == {}
    assert failed[0] in seen and failed[0] not in result.leaderboard
    assert result.best.status == "succeeded" and result.model.predict(small_df.head(3)).shape == (3,)


def test_same_seed_same_leaderboard(small_df):
    settings = make_settings(max_trials=9, allowed_models=["LightGBM", "LogisticRegression"], random_seed=3)
    a = run_experiment(small_df, settings)
    b = run_experiment(small_df, settings)
    assert len(a.trials) >= 9  # warm starts and TPE proposals both ran
    key = [(t.iteration, t.pipeline_name, round(t.score, 12)) for t in a.leaderboard]
    assert key == [(t.iteration, t.pipeline_name, round(t.score, 12)) for t in b.leaderboard]
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert a.best.pipeline_name == b.best.pipeline_name
    rows = small_df.head(100)
    assert np.allclose(a.model.predict_proba(rows), b.model.predict_proba(rows))


def test_holdout_validation(small_df):
    settings = make_settings(validation_size=0.25, max_trials=3, allowed_models=["LightGBM"])
    result = run_experiment(small_df, settings)
    assert result.oof["proba"].shape == (1000, 2)
    assert sum(map(sum, result.best.confusion_matrix)) == 1000
    assert {"VotingEnsemble", "StackEnsemble"} <= {t.pipeline_name for t in result.leaderboard}


def test_exit_score_stops_the_search(small_df):
    settings = make_settings(experiment_exit_score=0.5, enable_voting_ensemble=False,
                             enable_stack_ensemble=False)
    result = run_experiment(small_df, settings)
    assert len(result.trials) == 1 and "experiment_exit_score" in result.stop_reason


def test_time_budget_is_respected_on_the_full_data(bank_df):
    settings = make_settings(experiment_timeout_seconds=15)
    started = time.monotonic()
    result = run_experiment(bank_df, settings)
    elapsed = time.monotonic() - started
    # The +10% wall target is measured by benchmarks/automl_quality.py on a quiet machine; here, where other
    # processes may share the 2 cores, check only that the clock, not the trial count, ended the search.
    assert elapsed <= 15 * 1.5, f"took {elapsed:.1f}s for a 15s budget"
    assert "time budget" in result.stop_reason and result.leaderboard  # stopped by the clock, with a model
    assert result.best.metrics["AUC_weighted"] > 0.94
