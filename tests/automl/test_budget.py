"""The search within its time budget: boosting fits stopped at the deadline, untried algorithms' cost predicted
before they start, and the search phase of a whole experiment ending by its deadline."""

from __future__ import annotations

import importlib.util
import pickle
import time

import numpy as np
import pytest

from opml.automl.deadline import BudgetExceeded, fit_deadline
from opml.automl.evaluate import cross_validate
from opml.automl.experiment import COMMAND_OVERHEAD_S, run_experiment
from opml.automl.pipeline import CandidatePipeline
from opml.automl.search import Clock, SearchContext, run_search
from opml.names import ALGORITHMS
from tests.automl.conftest import fold_data, make_settings

HUGE = {  # minutes of boosting per fold if nothing stopped it
    "LightGBM": {"n_estimators": 20_000, "learning_rate": 0.01, "num_leaves": 63, "min_child_samples": 5},
    "XGBoostClassifier": {"n_estimators": 20_000, "learning_rate": 0.01, "max_depth": 8},
}
# every algorithm (CatBoost when its optional extra is installed)
ALL = [a for a in ALGORITHMS if a != "CatBoostClassifier" or importlib.util.find_spec("catboost") is not None]


@pytest.fixture(scope="module")
def bank_data(bank_df):
    data, kinds, _, _ = fold_data(bank_df)
    return data, kinds


@pytest.mark.parametrize("algo", sorted(HUGE))
def test_a_boosting_fit_stops_at_the_deadline(bank_data, algo):
    data, kinds = bank_data
    cand = CandidatePipeline(algo, HUGE[algo], scaler="MaxAbsScaler", kinds=kinds, n_jobs=1)
    for i in range(len(data.splits.folds)):  # featurize first: the deadline is then all fitting
        data.featurized(i, cand)
    deadline = time.monotonic() + 1.0
    with pytest.raises(BudgetExceeded):
        cross_validate(cand, data, deadline=deadline, workers=2)
    late = time.monotonic() - deadline
    assert late < 1.5, f"{algo} ran {late:.1f} s past its deadline"


def test_fold_models_fitted_under_a_deadline_carry_no_callback(bank_data):
    data, kinds = bank_data
    cand = CandidatePipeline("XGBoostClassifier", {"n_estimators": 5, "max_depth": 3}, scaler="MaxAbsScaler",
                             kinds=kinds, n_jobs=1)
    models: list = []
    cross_validate(cand, data, deadline=time.monotonic() + 120, workers=2, models=models)
    assert len(models) == 5 and all(m.model_.callbacks is None for m in models)
    again = pickle.loads(pickle.dumps(models[0]))
    x = data.X.head(20)
    assert np.allclose(again.predict_proba(x), models[0].predict_proba(x))


def test_no_deadline_outside_the_search():
    from opml.automl.deadline import current, lightgbm_callbacks, xgboost_callbacks

    assert current() is None and lightgbm_callbacks() == [] and xgboost_callbacks() is None
    with fit_deadline(time.monotonic() - 1):
        assert lightgbm_callbacks() and xgboost_callbacks()
    assert current() is None


def test_an_untried_algorithm_that_would_not_end_in_time_is_not_started(bank_data):
    """RandomForest's prior cost (its per-row x tree cost, 3 rounds of folds on 2 cores) exceeds a 3 s search:
    no trial starts, and the search ends at once instead of running past its end."""
    data, kinds = bank_data
    started = time.monotonic()
    seen: list = []
    ctx = SearchContext(
        data=data, labels=["no", "yes"], models=["RandomForest"], metric="AUC_weighted", featurization="auto",
        kinds=kinds, seed=0, n_jobs=1, workers=2, clock=Clock(start=started, hard_end=started + 3.0),
        max_trials=None, exit_score=None, early_stopping=True, on_result=seen.append,
    )
    trials, reason = run_search(ctx)
    assert trials == [] and seen == [] and "no candidate fits the time left" in reason
    assert time.monotonic() - started < 3.0


def test_the_search_phase_ends_by_its_deadline(bank_df):
    """Every algorithm allowed, including the slow ones, on the whole data with a 20 s budget: the last searched
    trial ends by the experiment's own end (the budget less the train command's time around the experiment; the
    search itself stops earlier still, by what the ensembles and refit need), and the whole experiment leaves the
    command its time. Margins allow for other processes on the 2 cores."""
    budget = 20.0
    stamps: list[tuple[str, float]] = []
    started = time.monotonic()
    result = run_experiment(bank_df, make_settings(experiment_timeout_seconds=budget, allowed_models=ALL),
                            on_trial=lambda t: stamps.append((t.progress.stage, time.monotonic() - started)))
    elapsed = time.monotonic() - started
    search_end = max(s for stage, s in stamps if stage == "search")
    assert search_end <= budget - COMMAND_OVERHEAD_S, f"search ended at {search_end:.1f} s of a {budget:g} s budget"
    assert elapsed <= budget, f"took {elapsed:.1f} s for a {budget:g} s budget"
    assert result.best.metrics["AUC_weighted"] > 0.94
