"""Ensembles within the refit plan: with `best` they take only members whose refit fits in the time left, so the
top candidate, most often an ensemble, is refit on all rows instead of going out as a bag of fold models."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from opml.automl.ensemble import (
    STACK_MEMBERS,
    StackModel,
    VotingModel,
    caruana_weights,
    stack_ensemble,
    voting_ensemble,
)
from opml.automl.evaluate import make_splits
from opml.automl.experiment import REFIT_SAFETY, RESERVE_MEMBERS, run_experiment
from opml.automl.results import TrialResult
from tests.automl.conftest import make_settings


def _board(n: int = 8, rows: int = 4000) -> tuple[list[TrialResult], np.ndarray, np.ndarray]:
    """`n` candidates of similar strength and independent errors (so an ensemble of many helps), best first."""
    rng = np.random.default_rng(3)
    y = (rng.random(rows) < 0.2).astype(int)
    trials = []
    for i in range(n):
        margin = (y - 0.5) * 2.0 + rng.normal(0, 1.0 + 0.02 * i, rows)
        p = 1 / (1 + np.exp(-margin))
        trials.append(TrialResult(iteration=i, pipeline_name=f"m{i}", algorithm="LightGBM", scaler=None, params={},
                                  score=0.95 - 0.001 * i, oof=np.column_stack([1 - p, p]), fit_seconds=1.0 + i))
    return trials, y, np.arange(rows) % 5


def test_caruana_selection_takes_only_affordable_members():
    trials, y, _ = _board()
    oofs = [t.oof for t in trials]
    free = caruana_weights(oofs, y, "AUC_weighted")
    assert (free > 0).sum() >= 3  # unconstrained, it spreads over many members
    seen: list[list[int]] = []

    def two(idx: list[int]) -> bool:
        seen.append(idx)
        return len(idx) <= 2

    capped = caruana_weights(oofs, y, "AUC_weighted", affordable=two)
    assert (capped > 0).sum() == 2 and capped.sum() == pytest.approx(1.0) and seen
    assert caruana_weights(oofs, y, "AUC_weighted", affordable=lambda idx: 0 not in idx)[0] == 0
    assert not caruana_weights(oofs, y, "AUC_weighted", affordable=lambda idx: False).any()


def test_voting_and_stack_ensembles_stay_within_the_refit_allowance():
    trials, y, folds = _board()
    labels = ["no", "yes"]

    def cost(members: list[TrialResult]) -> float:
        return sum(t.fit_seconds for t in members)

    free = voting_ensemble(trials, y, folds, labels, "AUC_weighted", 100)
    assert cost([trials[m["iteration"]] for m in free.members]) > 8
    for limit in (3.0, 8.0, 12.0):
        fits = lambda ms, limit=limit: cost(ms) <= limit  # noqa: E731
        voting = voting_ensemble(trials, y, folds, labels, "AUC_weighted", 100, affordable=fits)
        assert cost([trials[m["iteration"]] for m in voting.members]) <= limit
        assert voting.score <= free.score + 1e-12
        stack = stack_ensemble(trials, y, folds, labels, "AUC_weighted", 101, 0, affordable=fits)
        members = [m["iteration"] for m in stack.members]
        assert cost([trials[i] for i in members]) <= limit and members == list(range(len(members)))  # best first
    whole = stack_ensemble(trials, y, folds, labels, "AUC_weighted", 101, 0)
    assert len(whole.members) == STACK_MEMBERS == RESERVE_MEMBERS  # the reserve holds the stack's refit
    assert stack_ensemble(trials, y, folds, labels, "AUC_weighted", 101, 0, affordable=lambda ms: False) is None
    assert voting_ensemble(trials, y, folds, labels, "AUC_weighted", 100, affordable=lambda ms: False) is None


def test_best_at_a_short_budget_refits_the_ensemble_it_built(bank_df):
    """The whole data, rule `best`, 30 s: each ensemble is built only from members whose refit (as the experiment
    estimates it) fits in the time left once it is built, and the top candidate is delivered by a refit on all
    rows, not as a bag of fold models (which costs several times the serving time)."""
    settings = make_settings(experiment_timeout_seconds=30, model_selection="best")
    seen: list[TrialResult] = []
    started = time.monotonic()
    result = run_experiment(bank_df, settings, on_trial=seen.append)
    elapsed = time.monotonic() - started
    y = (bank_df["response"] == "yes").to_numpy().astype(int)
    splits = make_splits(y, settings.cv_folds, settings.validation_size, settings.random_seed)
    train_share = np.mean([len(tr) for tr, _ in splits.folds]) / len(y)
    by_iteration = {t.iteration: t for t in result.trials}
    ensembles = [t for t in seen if t.progress.stage == "ensemble"]
    assert ensembles, "no ensemble was built"
    for ens in ensembles:
        costs = [REFIT_SAFETY * by_iteration[m["iteration"]].fit_seconds / train_share for m in ens.members]
        refit = max(max(costs), sum(costs) / max(1, os.cpu_count() or 1))
        assert refit <= ens.progress.seconds_left, (ens.pipeline_name, refit, ens.progress.seconds_left)
    sel = result.selection
    assert sel["delivery"] == "refit" and "bag of" not in result.final_pipeline, sel
    assert result.best.iteration == sel["top"]["iteration"] == sel["chosen"]["iteration"]
    if result.best.members:
        inner = result.model.estimator_
        assert isinstance(inner, VotingModel | StackModel) and len(inner.members_) == len(result.best.members)
    assert elapsed <= 30 * 1.5, f"took {elapsed:.1f}s"
