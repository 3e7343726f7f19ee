"""Which leaderboard candidate becomes the model.

- `tolerance` (the default): the cheapest to score among the candidates within a fixed tolerance
  (selection_tolerance, 0.0005) of the top score, ties to the higher score. Chosen from evidence: on ten
  outer splits of the bank data (benchmarks/automl_quality.py --outer 5x2) it gave up 0.0003 +-0.0002
  outer AUC against `best`, inside the 0.0005 it allows (so the CV gap it accepts is not an optimistic
  one), at a third of `best`'s scoring time (67 vs 181 us a row: mostly a single booster, an ensemble
  only where ensembles lead by more than the tolerance); `one_se` gave up 0.0007, lower in 9 of 10 splits.
- `best`: the top primary score (Azure's rule; most often an ensemble).
- `one_se`: the one-standard-error rule (Breiman et al.; glmnet's lambda.1se) with serving cost as
  the measure of simplicity: among the candidates scoring within one standard error of the top
  score, the cheapest to score (opml.automl.pipeline.scoring_cost), ties to the higher score. The
  standard error is that of the top candidate's per-fold scores (cross-validation folds; for a
  holdout, its inner ensemble folds). It trades score for serving cost (on the bank data a single
  booster at about a third of an ensemble's one-row scoring time), and the outer splits show the lost
  score is real, not the luck of the split: an option for when scoring cost matters most.

`deliver` then decides how the choice becomes the model within the time left: refit on all rows, or
its cross-validation fold models averaged (no refit); another candidate only when neither is possible,
recorded as such.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from opml.automl.metrics import primary_score
from opml.automl.results import TrialResult

RULES = ("tolerance", "best", "one_se")
TOLERANCE = 0.0005  # the default selection_tolerance, in units of the primary metric
REFIT = "refit"  # delivered: the chosen pipeline fitted again on all rows
FOLD_BAG = "fold_bag"  # delivered: the chosen candidate's cross-validation fold models, averaged (no refit)


def fold_scores(metric: str, y: np.ndarray, oof: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The primary metric on each fold's out-of-fold rows."""
    return np.array([primary_score(metric, y[folds == k], oof[folds == k]) for k in np.unique(folds)])


def select(leaderboard: list[TrialResult], rule: str, metric: str, y: np.ndarray,
           folds: np.ndarray, tolerance: float = TOLERANCE) -> tuple[TrialResult, dict[str, Any]]:
    """(chosen candidate, a record of the choice) from a leaderboard sorted best first.

    Candidates need their `oof` predictions for `one_se`; the record names the rule, the top
    candidate, the standard error and the floor it implies (one standard error under the top score;
    recorded for every rule, as the line a fallback must not fall below unannounced), and for
    `tolerance` the tolerance and how many candidates were within it.
    """
    if rule not in RULES:
        raise ValueError(f"unknown model_selection {rule!r}; allowed: {', '.join(RULES)}")
    top = leaderboard[0]
    record: dict[str, Any] = {"rule": rule, "top": _brief(top), "chosen": _brief(top)}
    eligible: list[TrialResult] = []
    if top.oof is not None:
        per_fold = fold_scores(metric, y, top.oof, folds)
        se = float(per_fold.std(ddof=1) / np.sqrt(len(per_fold))) if len(per_fold) > 1 else 0.0
        floor = float(top.score) - se
        eligible = [t for t in leaderboard if t.score is not None and t.score >= floor]
        record.update(standard_error=se, floor=floor, eligible=len(eligible),
                      top_fold_scores=[float(s) for s in per_fold])
    if rule == "tolerance":
        eligible = within_tolerance(leaderboard, tolerance)
        record.update(tolerance=tolerance, eligible=len(eligible))
    if rule == "best" or len(leaderboard) == 1 or not eligible:
        return top, record
    chosen = cheapest(eligible)
    record.update(chosen=_brief(chosen))
    return chosen, record


def within_tolerance(leaderboard: list[TrialResult], tolerance: float) -> list[TrialResult]:
    """The candidates scoring within `tolerance` of the top score (leaderboard sorted best first)."""
    top = float(leaderboard[0].score or 0.0)
    return [t for t in leaderboard if t.score is not None and float(t.score) >= top - tolerance - 1e-12]


def cheapest(candidates: list[TrialResult]) -> TrialResult:
    """The cheapest to score of `candidates` (tree leaves), ties to the higher score, then the earlier trial."""
    return min(candidates, key=lambda t: (t.scoring_cost, -float(t.score or 0.0), t.iteration))


def deliver(leaderboard: list[TrialResult], rule: str, metric: str, y: np.ndarray, folds: np.ndarray, *,
            refit_fits: Callable[[TrialResult], bool], has_bag: Callable[[TrialResult], bool],
            refit_seconds: Callable[[TrialResult], float],
            tolerance: float = TOLERANCE) -> tuple[TrialResult, str, dict[str, Any]]:
    """(the candidate that becomes the model, how it is delivered, the selection record).

    The rule's choice, refit on all rows when `refit_fits` it in the time left, else as a bag of its
    cross-validation fold models when it `has_bag` (same out-of-fold score, no refit). Only when it
    can be neither does another candidate take its place: the rule applied to the deliverable ones
    under the same floor (`best`: the top deliverable score), else the quickest refit. The record's
    `delivery` says how, `refit_instead` names a replacement and `below_floor` whether it scores under
    the floor; `undelivered` says in words why the rule's choice was not delivered.
    """
    preferred, record = select(leaderboard, rule, metric, y, folds, tolerance)

    def how(t: TrialResult) -> str | None:
        return REFIT if refit_fits(t) else FOLD_BAG if has_bag(t) else None

    final, method = preferred, how(preferred)
    if method is None:
        deliverable = [t for t in leaderboard if how(t) is not None]
        floor = record.get("floor", float("-inf"))
        within = [t for t in deliverable if float(t.score or 0.0) >= floor]
        if rule == "tolerance":
            within = [t for t in within_tolerance(leaderboard, tolerance) if how(t) is not None]
        if rule != "best" and within:
            final = cheapest(within)
        elif deliverable:
            final = deliverable[0]
        else:
            final = min(leaderboard, key=refit_seconds)
        method = how(final) or REFIT
        record["undelivered"] = (f"{preferred.pipeline_name} could not be refit in the time left (about "
                                 f"{refit_seconds(preferred):.0f} s needed) and has no fold models to bag")
        record["refit_instead"] = {"iteration": final.iteration, "pipeline": final.pipeline_name}
    record["delivery"] = method
    record["delivered"] = _brief(final)
    record["below_floor"] = bool("floor" in record and float(final.score or 0.0) < record["floor"])
    return final, method, record


def _brief(t: TrialResult) -> dict[str, Any]:
    return {"iteration": t.iteration, "pipeline": t.pipeline_name, "score": t.score, "scoring_cost": t.scoring_cost}
