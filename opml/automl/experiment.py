"""`run_experiment`: validate, guard, search, ensemble, pick, deliver, calibrate and explain, within the budget.

The final model is planned while the search runs: after every candidate the selection rule is applied
to the leaderboard so far, and the time the refit of its choice needs stays reserved, through the
ensembles too; with `best` (the top score, most often an ensemble) the reserve holds an ensemble's refit,
and the ensembles take only members whose refit fits in the time then left. The rule's final choice is then
refit on all rows when that fits in the time left, or else delivered as a bag of its cross-validation fold
models (kept for the few candidates that may become the model), which needs no refit. Only when neither is
possible does another candidate take its place, and the selection record says so
(opml.automl.selection.deliver).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from opml.automl.results import SUCCEEDED, ExperimentResult, Progress, TrialResult

if TYPE_CHECKING:
    from pathlib import Path

    from opml.automl.oof_store import OofStore
    from opml.config import AutoMLSettings

BUDGET_SHARE = 0.97  # the engine aims to finish within this share of experiment_timeout_seconds
# ... and this many seconds before it: the `opml train` command's time outside the experiment (start-up, dataset
# registration, MLflow logging, model registration; measured 6-7 s on a 2-core machine), so the whole command ends
# within the budget
COMMAND_OVERHEAD_S = 6.0
REFIT_SAFETY = 1.2  # refit-time estimates are padded by this factor
# the ensembles' refit allowance pads their build-time estimate by this factor (1.7x measured on a loaded machine;
# the reserve is not padded: at short budgets the few candidates make the ensembles quick)
ENSEMBLE_SAFETY = 1.5
# model_selection best: the refit reserve holds the refit of an ensemble of this many of the best candidates (the
# StackEnsemble's members); the ensembles are then built from members whose refit fits in the time actually left
RESERVE_MEMBERS = 5
# fold models kept, in tree leaves over all their folds (the planned model's first); fitted trees take about
# 100-160 bytes a leaf (LightGBM, XGBoost, sklearn forests), so at most ~150 MB
FOLD_MODEL_LEAVES = 1_000_000
KEEP_FOLD_MODELS = 8  # besides the planned model's, the best candidates' fold models are kept (VotingEnsemble's pool)


def run_experiment(
    df: pd.DataFrame, settings: AutoMLSettings, *, on_trial: Callable[[TrialResult], None] | None = None,
    scratch: Path | None = None,
) -> ExperimentResult:
    """Run one AutoML experiment on `df` (features + label column) and return its result.

    `on_trial(trial)` is called after every candidate, failed ones and ensembles included; the
    trial's `progress` says how many are done, the best so far and the seconds left. The whole
    call aims to finish within experiment_timeout_seconds (search, ensembles, refit, explanation), less
    the train command's own time around it (COMMAND_OVERHEAD_S).
    Columns in settings.drop_columns are left out. While it runs, the candidates' out-of-fold
    predictions are kept in a folder under `scratch` (default: the system's temporary folder), removed
    at the end.
    """
    from opml.automl.oof_store import OofStore

    with OofStore(scratch) as store:
        return _run(df, settings, on_trial, store)


def _run(df: pd.DataFrame, settings: AutoMLSettings, on_trial: Callable[[TrialResult], None] | None,
         store: OofStore) -> ExperimentResult:
    from opml.automl.evaluate import FoldData, make_splits
    from opml.automl.guardrails import run_guardrails, validate_input
    from opml.automl.search import Clock, SearchContext, run_search
    from opml.automl.selection import select

    start = time.monotonic()
    budget = float(settings.experiment_timeout_seconds)
    timings: dict[str, float] = {}
    kinds = validate_input(df, settings)
    label = settings.label
    features = df.drop(columns=[label, *settings.drop_columns])
    X = _coerce(features, kinds)
    y_raw = np.asarray(df[label].to_numpy())
    classes = np.unique(y_raw)
    y = np.searchsorted(classes, y_raw)
    counts = np.bincount(y, minlength=len(classes))
    positive = int(np.argmin(counts))
    labels = [str(c) for c in classes]
    guardrails = run_guardrails(features, df[label], kinds, settings)
    splits = make_splits(y, settings.cv_folds, settings.validation_size, settings.random_seed)
    data = FoldData(X, y, len(classes), splits)
    timings["prepare_s"] = time.monotonic() - start

    n_rows = len(X)
    train_share = np.mean([len(tr) for tr, _ in splits.folds]) / n_rows
    ensembles_on = settings.enable_voting_ensemble or settings.enable_stack_ensemble
    ensemble_est = (0.5 + 2.5 * len(splits.eval_rows) / 33_000) if ensembles_on else 0.0
    trials: list[TrialResult] = []
    by_iteration: dict[int, TrialResult] = {}
    workers = max(1, os.cpu_count() or 1)
    planned: list[TrialResult] = []  # the rule's choice among the candidates so far (re-planned per trial)

    def fit_cost(members: list[TrialResult]) -> float:
        """Seconds to refit `members` on all rows, `workers` at a time."""
        costs = [REFIT_SAFETY * t.fit_seconds / train_share for t in members]
        return max(max(costs, default=0.0), sum(costs) / workers)

    def refit_cost(t: TrialResult) -> float:
        members = [by_iteration[m["iteration"]] for m in t.members] if t.members else [t]
        return fit_cost(members)

    def planned_refit() -> float:
        return refit_cost(planned[0]) if planned else 0.0

    def reserve() -> float:
        need = planned_refit()
        if settings.model_selection != "one_se" and ensembles_on:  # the choice may then be an ensemble
            ok = sorted((t for t in trials if t.status == SUCCEEDED), key=lambda t: -(t.score or 0.0))
            need = max(need, fit_cost(ok[:RESERVE_MEMBERS]))
        return ensemble_est + need + 1.0

    def replan(keep: bool = True) -> None:
        board = sorted((t for t in trials if t.status == SUCCEEDED), key=lambda t: (-(t.score or 0.0), t.iteration))
        pick, _ = select(board, settings.model_selection, settings.primary_metric, data.y_eval, splits.ens_fold,
                         settings.selection_tolerance)
        planned[:] = [pick]
        if keep:
            _keep_fold_models([pick, *board[:KEEP_FOLD_MODELS]], trials)

    hard_end = start + max(min(budget * BUDGET_SHARE - 0.3, budget - COMMAND_OVERHEAD_S), budget * 0.5)
    clock = Clock(start=start, hard_end=hard_end, reserve=reserve)
    best_so_far: list[TrialResult] = []

    def record(trial: TrialResult, stage: str) -> None:
        if trial.oof is not None:
            trial.oof = store.keep(trial.iteration, trial.oof)
        trials.append(trial)
        by_iteration[trial.iteration] = trial
        if trial.status == SUCCEEDED:
            replan(keep=stage == "search")  # an ensemble may become the plan; its members' fold models stay kept
        lead_score = best_so_far[0].score if best_so_far else None
        if trial.status == SUCCEEDED and (lead_score is None or (trial.score or -np.inf) > lead_score):
            best_so_far[:] = [trial]
        lead = best_so_far[0] if best_so_far else None
        trial.progress = Progress(
            trials_done=len(trials), best_score=lead.score if lead else None,
            best_pipeline=lead.pipeline_name if lead else None, seconds_left=max(0.0, hard_end - time.monotonic()),
            stage=stage,
        )
        if on_trial is not None:
            on_trial(trial)

    n_jobs = 1  # per model; parallelism comes from fitting folds / ensemble members side by side
    ctx = SearchContext(
        data=data, labels=labels, models=settings.models(), metric=settings.primary_metric,
        featurization=settings.featurization, kinds=kinds, seed=settings.random_seed, n_jobs=n_jobs, workers=workers,
        clock=clock,
        max_trials=settings.max_trials, exit_score=settings.experiment_exit_score,
        early_stopping=settings.enable_early_stopping, on_result=lambda t: record(t, "search"),
    )
    t0 = time.monotonic()
    _, stop_reason = run_search(ctx)
    timings["search_s"] = time.monotonic() - t0
    singles = [t for t in trials if t.status == SUCCEEDED]
    if not singles:
        from opml.errors import OpmlError

        errors = "; ".join(sorted({str(t.error)[:120] for t in trials})) or "no trial could run in the time budget"
        raise OpmlError(f"every AutoML candidate failed ({errors})",
                        "raise experiment_timeout_seconds or check allowed_models")

    def refit_allowance(building: float) -> float | None:
        """Seconds an ensemble's refit may take, with `building` estimated seconds of ensembles still to build;
        None (no limit) for one_se, which takes an ensemble only as the cheapest within its floor; the other rules
        take an ensemble whenever it leads (a larger one would then go as a fold bag)."""
        if settings.model_selection == "one_se":
            return None
        return clock.left() - ENSEMBLE_SAFETY * building - 0.5

    t0 = time.monotonic()
    # an ensemble starts only when the planned model's refit still fits after it, and (rule best) takes only
    # members whose refit fits in the time left after it and the ensembles after it
    _ensembles(settings, singles, data, labels,
               lambda each: clock.left() >= each + planned_refit() + 0.5, refit_allowance,
               fit_cost, ensemble_est, lambda t: record(t, "ensemble"), max(t.iteration for t in trials) + 1)
    timings["ensembles_s"] = time.monotonic() - t0

    from opml.automl.ensemble import fold_bag
    from opml.automl.selection import FOLD_BAG, deliver

    leaderboard = sorted((t for t in trials if t.status == SUCCEEDED), key=lambda t: (-(t.score or 0.0), t.iteration))
    bags: dict[int, Any] = {}

    def has_bag(t: TrialResult) -> bool:
        if t.iteration not in bags:
            bags[t.iteration] = fold_bag(t, by_iteration, len(classes), n_jobs)
        return bags[t.iteration] is not None

    final, delivery, selection = deliver(
        leaderboard, settings.model_selection, settings.primary_metric, data.y_eval, splits.ens_fold,
        refit_fits=lambda t: time.monotonic() + refit_cost(t) <= hard_end, has_bag=has_bag, refit_seconds=refit_cost,
        tolerance=settings.selection_tolerance)
    prefit = delivery == FOLD_BAG
    note = ""
    if prefit:
        selection["bag_models"] = len(bags[final.iteration].members_)
        note = f"; {final.pipeline_name} delivered as a bag of its fold models (no time left to refit it)"
    if "refit_instead" in selection:
        note += (f"; {final.pipeline_name} delivered instead of {selection['chosen']['pipeline']} to stay within "
                 "the budget" + (" (below the selection floor)" if selection["below_floor"] else ""))

    from opml.automl.calibration import assess
    from opml.automl.explain import feature_importance
    from opml.automl.model import OpmlClassifier, calibrated
    from opml.automl.threshold import choose_threshold

    final.oof = np.array(final.oof)  # out of the store, which goes with the run
    calibration = assess(data.y_eval, final.oof, splits.ens_fold, positive)
    proba = calibrated(final.oof, calibration["map"], positive)
    threshold = choose_threshold(settings.decision_threshold, data.y_eval, proba, labels, positive)
    t0 = time.monotonic()
    estimator = bags[final.iteration] if prefit else _estimator(final, by_iteration, settings, kinds, n_jobs, workers)
    model = OpmlClassifier(
        estimator, threshold=threshold["applied"], positive_label=classes[positive], kinds=kinds,
        pipeline_name=final.pipeline_name, calibration=calibration["map"],
    ).fit(features, y_raw, prefit=prefit)
    timings["refit_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    importance = feature_importance(model)
    timings["explain_s"] = time.monotonic() - t0
    timings["total_s"] = time.monotonic() - start

    oof = {"y": data.y_eval, "proba": proba, "raw_proba": final.oof, "rows": splits.eval_rows}
    for t in trials:
        t.fold_models = None  # the model holds the fold models it uses
        if t is not final:
            t.oof = None
    bagged = f" (bag of {selection['bag_models']} fold models)" if prefit else ""
    return ExperimentResult(
        settings=settings.model_dump(mode="json"), classes=[c.item() if hasattr(c, "item") else c for c in classes],
        guardrails=guardrails, trials=trials, leaderboard=leaderboard, best=final, model=model, threshold=threshold,
        feature_importance=importance, oof=oof, timings={k: round(v, 3) for k, v in timings.items()},
        stop_reason=stop_reason + note, final_pipeline=final.pipeline_name + bagged, selection=selection,
        calibration=calibration,
    )


def _keep_fold_models(priority: list[TrialResult], trials: list[TrialResult]) -> None:
    """Keep the fold models of `priority` (in order, while they fit in FOLD_MODEL_LEAVES); drop all others'."""
    kept: set[int] = set()
    used = 0
    for t in priority:
        if t.iteration in kept or not t.fold_models:
            continue
        size = max(1, t.scoring_cost) * len(t.fold_models)
        if used + size <= FOLD_MODEL_LEAVES:
            kept.add(t.iteration)
            used += size
    for t in trials:
        if t.iteration not in kept:
            t.fold_models = None


def _coerce(features: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Numeric columns as float64, categorical columns as strings (done once, reused by every fold)."""
    from opml.automl.columns import to_categorical, to_numeric

    return pd.DataFrame(
        {
            c: to_numeric(features[c], str(c)) if kinds[c] == "numeric" else to_categorical(features[c])
            for c in features.columns
        },
        index=features.index,
    )


def _ensembles(
    settings: AutoMLSettings, singles: list[TrialResult], data: Any, labels: list[str],
    may_start: Callable[[float], bool], allowance: Callable[[float], float | None],
    fit_cost: Callable[[list[TrialResult]], float], estimate: float, record: Callable[[TrialResult], None],
    iteration: int,
) -> None:
    """Build the enabled ensembles in turn (each `estimate / count` seconds); each starts only when
    `may_start(its estimate)`, and its members' `fit_cost` stays within `allowance(build time of it and those
    after)`, that estimate scaled to the candidates there are (it is for a full VOTING_POOL)."""
    from opml.automl.ensemble import VOTING_POOL, stack_ensemble, voting_ensemble

    builders = []
    if settings.enable_voting_ensemble:
        builders.append(lambda it, fits: voting_ensemble(singles, data.y_eval, data.splits.ens_fold, labels,
                                                         settings.primary_metric, it, affordable=fits))
    if settings.enable_stack_ensemble:
        builders.append(lambda it, fits: stack_ensemble(singles, data.y_eval, data.splits.ens_fold, labels,
                                                        settings.primary_metric, it, settings.random_seed,
                                                        affordable=fits))
    each = estimate / max(1, len(builders))
    for i, build in enumerate(builders):
        if not may_start(each):
            break
        limit = allowance(each * min(1.0, len(singles) / VOTING_POOL) * (len(builders) - i))
        fits = None if limit is None else (lambda members, limit=limit: fit_cost(members) <= limit)
        result = build(iteration, fits)
        if result is not None:
            record(result)
            iteration += 1


def _estimator(final: TrialResult, by_iteration: dict[int, TrialResult], settings: AutoMLSettings,
               kinds: dict[str, str], n_jobs: int, workers: int) -> Any:
    from opml.automl.ensemble import StackModel, VotingModel
    from opml.automl.pipeline import CandidatePipeline

    def pipeline(t: TrialResult) -> CandidatePipeline:
        return CandidatePipeline(
            t.algorithm, dict(t.params), scaler=t.scaler, frequency=bool(t.featurization.get("frequency", True)),
            featurization=settings.featurization, kinds=kinds, n_jobs=n_jobs, random_state=settings.random_seed,
        )

    if final.algorithm == "VotingEnsemble":
        members = [by_iteration[m["iteration"]] for m in final.members]
        return VotingModel([pipeline(t) for t in members], [float(m["weight"]) for m in final.members], workers)
    if final.algorithm == "StackEnsemble":
        members = [by_iteration[m["iteration"]] for m in final.members]
        return StackModel([pipeline(t) for t in members], final.params["meta_coef"], final.params["meta_intercept"],
                          workers)
    return pipeline(final)
