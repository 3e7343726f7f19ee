"""The search driver: Optuna TPE over algorithms, scalers and hyperparameters, warm-started with
known-good configurations, within a wall-clock budget."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from opml.automl.deadline import BudgetExceeded
from opml.automl.evaluate import FoldData, cross_validate
from opml.automl.metrics import compute_metrics, primary_score
from opml.automl.pipeline import CandidatePipeline, pipeline_name
from opml.automl.results import FAILED, SUCCEEDED, TrialResult

EARLY_STOPPING_PATIENCE = 20  # trials without improvement before enable_early_stopping stops the search
MIN_IMPROVEMENT = 1e-5
DEADLINE_GRACE = 1.0  # seconds a trial may run past the search's end (the reserve after it holds 1 s of slack)


@dataclass
class Clock:
    """The experiment's wall budget. `reserve()` is the time still needed after the search."""

    start: float
    hard_end: float
    reserve: Callable[[], float] = field(default=lambda: 0.0)

    def now(self) -> float:
        return time.monotonic()

    def left(self) -> float:
        return self.hard_end - time.monotonic()

    def search_end(self) -> float:
        return self.hard_end - self.reserve()


@dataclass
class SearchContext:
    data: FoldData
    labels: list[str]
    models: list[str]
    metric: str
    featurization: str
    kinds: dict[str, str]
    seed: int
    n_jobs: int  # threads per model fit
    workers: int  # folds fitted concurrently
    clock: Clock
    max_trials: int | None
    exit_score: float | None
    early_stopping: bool
    on_result: Callable[[TrialResult], None]  # records the trial and calls the user's callback


class _Prefixed:
    """An Optuna trial whose parameter names are prefixed by the algorithm (conditional spaces)."""

    def __init__(self, trial: Any, prefix: str) -> None:
        self.trial = trial
        self.prefix = prefix

    def __getattr__(self, attr: str) -> Any:
        method = getattr(self.trial, attr)
        if not attr.startswith("suggest_"):
            return method
        return lambda name, *a, **kw: method(f"{self.prefix}.{name}", *a, **kw)


def _suggest(trial: Any, ctx: SearchContext) -> tuple[str, str, bool, dict[str, Any]]:
    from opml.automl.algorithms import CATALOGUE

    algo = trial.suggest_categorical("algorithm", ctx.models)
    spec = CATALOGUE[algo]
    scaler = trial.suggest_categorical(f"{algo}.scaler", list(spec.scalers))
    frequency = True
    if ctx.featurization == "auto":
        frequency = trial.suggest_categorical(f"{algo}.frequency", [True, False])
    params = spec.space(_Prefixed(trial, algo))
    return algo, scaler, bool(frequency), params


def _warm_starts(ctx: SearchContext) -> list[dict[str, Any]]:
    from opml.automl.algorithms import CATALOGUE, WARM_START_ORDER

    order = [(a, i) for a, i in WARM_START_ORDER if a in ctx.models]
    # algorithms with starts not listed in the order (e.g. added later) follow, in catalogue order
    listed = set(order)
    for algo in ctx.models:
        for i in range(len(CATALOGUE[algo].warm_starts)):
            if (algo, i) not in listed:
                order.append((algo, i))
    fixed = []
    for algo, i in order:
        start = dict(CATALOGUE[algo].warm_starts[i])
        entry = {"algorithm": algo, f"{algo}.scaler": start.pop("scaler")}
        frequency = start.pop("frequency", True)
        if ctx.featurization == "auto":
            entry[f"{algo}.frequency"] = frequency
        entry.update({f"{algo}.{k}": v for k, v in start.items()})
        fixed.append(entry)
    return fixed


def _prior(algo: str, params: dict[str, Any], rows: int) -> float:
    """Seconds to fit one fold of `rows` training rows on one core, from the catalogue's cost per row x tree."""
    from opml.automl.algorithms import CATALOGUE

    trees = float(params.get("n_estimators", 100))
    return CATALOGUE[algo].cost * rows / 1000.0 * trees / 100.0


def _expected_cost(algo: str, params: dict[str, Any], done: list[TrialResult], rows: int, rounds: int) -> float:
    """Seconds a proposed trial will likely take: from earlier trials of the same algorithm, else the algorithm's
    prior cost (`rounds` folds one after another) scaled by how this machine ran the trials so far against theirs."""
    ok = [t for t in done if t.status == SUCCEEDED and t.duration_s > 0]
    same = [t for t in ok if t.algorithm == algo]
    if same:
        costs = []
        for t in same:
            ratio = 1.0
            if "n_estimators" in params and "n_estimators" in t.params:
                ratio = params["n_estimators"] / max(1, t.params["n_estimators"])
            costs.append(t.duration_s * float(np.clip(ratio, 0.3, 3.0)))
        return float(np.median(costs))
    speed = float(np.median([t.duration_s / (rounds * _prior(t.algorithm, t.params, rows)) for t in ok])) if ok else 1.0
    return rounds * speed * _prior(algo, params, rows)


def run_search(ctx: SearchContext, first_iteration: int = 0) -> tuple[list[TrialResult], str]:
    """Run trials until max_trials, the budget, the exit score or early stopping; return them and why it stopped."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warm = _warm_starts(ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=ctx.seed, multivariate=True, group=True, n_startup_trials=len(warm) + 4,
        )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for params in warm:
        study.enqueue_trial(params)

    folds = ctx.data.splits.folds
    rows = int(np.mean([len(train) for train, _ in folds]))
    rounds = -(-len(folds) // max(1, min(ctx.workers, len(folds))))
    trials: list[TrialResult] = []
    best = -np.inf
    since_best = 0
    iteration = first_iteration
    skipped = 0
    while True:
        if ctx.max_trials is not None and len(trials) >= ctx.max_trials:
            return trials, f"max_trials ({ctx.max_trials}) reached"
        if ctx.clock.now() >= ctx.clock.search_end():
            return trials, "time budget reached"
        trial = study.ask()
        algo, scaler, frequency, params = _suggest(trial, ctx)
        if ctx.clock.now() + _expected_cost(algo, params, trials, rows, rounds) > ctx.clock.search_end():
            study.tell(trial, state=TrialState.PRUNED)
            skipped += 1
            if skipped >= 10:
                return trials, "time budget reached (no candidate fits the time left)"
            continue
        skipped = 0
        result = evaluate_candidate(ctx, iteration, algo, scaler, frequency, params)
        iteration += 1
        trials.append(result)
        if result.status == SUCCEEDED:
            study.tell(trial, result.score)
        else:
            study.tell(trial, state=TrialState.FAIL)
        ctx.on_result(result)
        if result.status == SUCCEEDED and result.score is not None and result.score > best + MIN_IMPROVEMENT:
            best, since_best = result.score, 0
        else:
            since_best += 1
        if ctx.exit_score is not None and best >= ctx.exit_score:
            return trials, f"experiment_exit_score ({ctx.exit_score}) reached"
        if ctx.early_stopping and len(trials) >= len(warm) and since_best >= EARLY_STOPPING_PATIENCE:
            return trials, f"early stopping: no improvement in {EARLY_STOPPING_PATIENCE} trials"


def evaluate_candidate(
    ctx: SearchContext, iteration: int, algo: str, scaler: str, frequency: bool, params: dict[str, Any]
) -> TrialResult:
    """Cross-validate one pipeline; any exception becomes a failed trial."""
    result = TrialResult(
        iteration=iteration, pipeline_name=pipeline_name(scaler, algo), algorithm=algo, scaler=scaler,
        params=dict(params), featurization={"mode": ctx.featurization, "frequency": frequency},
    )
    started = time.monotonic()
    candidate = CandidatePipeline(
        algo, dict(params), scaler=scaler, frequency=frequency, featurization=ctx.featurization, kinds=ctx.kinds,
        n_jobs=ctx.n_jobs, random_state=ctx.seed,
    )
    fold_models: list[Any] = []
    try:
        oof, fit_seconds, cost = cross_validate(candidate, ctx.data, deadline=ctx.clock.search_end() + DEADLINE_GRACE,
                                          workers=ctx.workers, models=fold_models)
        if not np.all(np.isfinite(oof)):
            raise ValueError("the model produced non-finite probabilities")
        result.oof = oof
        result.fold_models = fold_models
        result.fit_seconds = fit_seconds
        result.scoring_cost = cost
        result.score = primary_score(ctx.metric, ctx.data.y_eval, oof)
        result.metrics, result.per_class, result.confusion_matrix = compute_metrics(
            ctx.data.y_eval, oof, ctx.labels
        )
        result.status = SUCCEEDED
    except BudgetExceeded as exc:
        result.status, result.error = FAILED, str(exc)
    except Exception as exc:  # a failing candidate must not stop the experiment
        result.status, result.error = FAILED, f"{type(exc).__name__}: {exc}"
    result.duration_s = time.monotonic() - started
    return result
