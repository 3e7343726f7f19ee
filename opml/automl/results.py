"""Plain result records of an experiment: one per trial, and the experiment as a whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUCCEEDED = "succeeded"
FAILED = "failed"


@dataclass
class Progress:
    """Where the experiment stands after a trial (drives a progress bar)."""

    trials_done: int
    best_score: float | None
    best_pipeline: str | None
    seconds_left: float
    stage: str  # search | ensemble


@dataclass
class TrialResult:
    """One candidate (a searched pipeline or an ensemble), scored on the shared folds.

    `metrics` are Azure-named and use argmax decisions; `per_class` holds precision, recall, f1 and
    support per class label; `confusion_matrix` is rows = true class, columns = predicted (argmax),
    both in class order. `oof` (eval rows x classes) is kept only while the experiment runs and for
    the best candidate; `fold_models` likewise.
    """

    iteration: int
    pipeline_name: str
    algorithm: str
    scaler: str | None
    params: dict[str, Any]
    status: str = SUCCEEDED
    metrics: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None
    duration_s: float = 0.0
    error: str | None = None
    score: float | None = None  # the primary metric
    featurization: dict[str, Any] = field(default_factory=dict)
    members: list[dict[str, Any]] = field(default_factory=list)  # ensembles: iteration, pipeline, weight
    fit_seconds: float = 0.0  # mean time to fit one fold (estimates the refit cost)
    scoring_cost: int = 0  # tree leaves (linear models: coefficients); ensembles: their members' sum
    progress: Progress | None = None
    oof: Any = field(default=None, repr=False, compare=False)
    # the fitted cross-validation fold models (searched candidates; kept for the few that may become
    # the model, as a bag that needs no refit); None once dropped
    fold_models: list[Any] | None = field(default=None, repr=False, compare=False)


@dataclass
class ExperimentResult:
    """Everything `run_experiment` produces. The fitted model is `model` (an OpmlClassifier)."""

    settings: dict[str, Any]
    classes: list[str]
    guardrails: list[Any]
    trials: list[TrialResult]
    leaderboard: list[TrialResult]
    best: TrialResult
    model: Any
    threshold: dict[str, Any]
    feature_importance: list[tuple[str, float]]
    oof: dict[str, Any] = field(repr=False)  # y (int labels), proba, rows (positions in the input frame)
    timings: dict[str, float] = field(default_factory=dict)
    stop_reason: str = ""
    final_pipeline: str = ""  # the model's pipeline (`best`'s); selection["delivery"]: refit or fold bag
    selection: dict[str, Any] = field(default_factory=dict)  # how `best` was chosen (opml.automl.selection)
    calibration: dict[str, Any] = field(default_factory=dict)  # Brier score, maps tried, `map` applied (or None)
