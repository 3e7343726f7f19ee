"""Which leaderboard candidate becomes the model.

- `best`: the top primary score (Azure's rule).
- `one_se`: the one-standard-error rule (Breiman et al.; glmnet's lambda.1se) with serving cost as
  the measure of simplicity: among the candidates scoring within one standard error of the top
  score, the cheapest to score (opml.automl.pipeline.scoring_cost), ties to the higher score. The
  standard error is that of the top candidate's per-fold scores (cross-validation folds; for a
  holdout, its inner ensemble folds). Differences inside it are mostly the luck of the split, while
  an ensemble of five boosters costs five times the scoring time of one, on every request.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opml.automl.metrics import primary_score
from opml.automl.results import TrialResult

RULES = ("best", "one_se")


def fold_scores(metric: str, y: np.ndarray, oof: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The primary metric on each fold's out-of-fold rows."""
    return np.array([primary_score(metric, y[folds == k], oof[folds == k]) for k in np.unique(folds)])


def select(leaderboard: list[TrialResult], rule: str, metric: str, y: np.ndarray,
           folds: np.ndarray) -> tuple[TrialResult, dict[str, Any]]:
    """(chosen candidate, a record of the choice) from a leaderboard sorted best first.

    Candidates need their `oof` predictions for `one_se`; the record names the rule, the top
    candidate, the standard error and the tolerance it implies.
    """
    if rule not in RULES:
        raise ValueError(f"unknown model_selection {rule!r}; allowed: {', '.join(RULES)}")
    top = leaderboard[0]
    record: dict[str, Any] = {"rule": rule, "top": _brief(top), "chosen": _brief(top)}
    if rule == "best" or len(leaderboard) == 1 or top.oof is None:
        return top, record
    per_fold = fold_scores(metric, y, top.oof, folds)
    se = float(per_fold.std(ddof=1) / np.sqrt(len(per_fold))) if len(per_fold) > 1 else 0.0
    floor = float(top.score) - se
    eligible = [t for t in leaderboard if t.score is not None and t.score >= floor]
    chosen = min(eligible, key=lambda t: (t.scoring_cost, -float(t.score), t.iteration))
    record.update(chosen=_brief(chosen), standard_error=se, floor=floor, eligible=len(eligible),
                  top_fold_scores=[float(s) for s in per_fold])
    return chosen, record


def _brief(t: TrialResult) -> dict[str, Any]:
    return {"iteration": t.iteration, "pipeline": t.pipeline_name, "score": t.score, "scoring_cost": t.scoring_cost}
