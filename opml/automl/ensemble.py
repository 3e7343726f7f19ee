"""Ensembles over the searched candidates' out-of-fold predictions.

VotingEnsemble: Caruana ensemble selection (greedy forward selection with replacement) of the
best candidates; its weights are the selection counts. StackEnsemble: a logistic-regression
meta-learner over the best candidates' out-of-fold probabilities (as logits).

Both are scored honestly on the same folds as every candidate: the weights (or the meta-learner)
used for the rows of fold k are chosen on the other folds only ("cross-fitting"); the final
weights / meta-learner are then fitted on all out-of-fold rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from opml.automl.metrics import compute_metrics, primary_score
from opml.automl.results import SUCCEEDED, TrialResult

VOTING_POOL = 8  # best candidates Caruana selection may draw from
VOTING_ITERATIONS = 15
VOTING_PATIENCE = 4  # selection stops after this many steps without improvement
STACK_MEMBERS = 5
META_C = 1.0


def caruana_weights(
    oofs: list[np.ndarray], y: np.ndarray, metric: str, iterations: int = VOTING_ITERATIONS,
    affordable: Callable[[list[int]], bool] | None = None,
) -> np.ndarray:
    """Selection counts (normalised) of greedy forward selection with replacement.

    Starts from the single best model; each step adds (again) the model whose inclusion scores
    best; the returned weights are those of the best-scoring prefix of steps. Ties go to the
    lower index, so the result is deterministic. With `affordable`, a model joins only when
    `affordable(indices of the members with it)` holds (e.g. their refit fits in the time left);
    all zeros when no single model is affordable.
    """
    m = len(oofs)
    counts = np.zeros(m)

    def allowed(j: int) -> bool:
        return affordable is None or counts[j] > 0 or affordable([*np.flatnonzero(counts).tolist(), j])

    singles = [primary_score(metric, y, p) if allowed(j) else -np.inf for j, p in enumerate(oofs)]
    first = int(np.argmax(singles))
    if singles[first] == -np.inf:
        return counts
    counts[first] = 1
    total = oofs[first].copy()
    best_score, best_counts, since = singles[first], counts.copy(), 0
    for step in range(2, iterations + 1):
        scores = [primary_score(metric, y, (total + p) / step) if allowed(j) else -np.inf for j, p in enumerate(oofs)]
        j = int(np.argmax(scores))
        counts[j] += 1
        total += oofs[j]
        if scores[j] > best_score + 1e-12:
            best_score, best_counts, since = scores[j], counts.copy(), 0
        else:
            since += 1
            if since >= VOTING_PATIENCE:
                break
    return best_counts / best_counts.sum()


def _stack_features(oofs: list[np.ndarray]) -> np.ndarray:
    cols = []
    for p in oofs:
        q = np.clip(p, 1e-6, 1 - 1e-6)
        if p.shape[1] == 2:
            cols.append(np.log(q[:, 1] / q[:, 0])[:, None])
        else:
            cols.append(np.log(q))
    return np.hstack(cols)


def _meta(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=META_C, max_iter=1000, random_state=seed)


def _pool(trials: list[TrialResult], size: int) -> list[TrialResult]:
    ok = [t for t in trials if t.status == SUCCEEDED and t.oof is not None and t.score is not None]
    return sorted(ok, key=lambda t: (-t.score, t.iteration))[:size]


def voting_ensemble(
    trials: list[TrialResult], y: np.ndarray, ens_fold: np.ndarray, labels: list[str], metric: str, iteration: int,
    affordable: Callable[[list[TrialResult]], bool] | None = None,
) -> TrialResult | None:
    """A VotingEnsemble trial (cross-fitted OOF, final weights), or None with fewer than 2 candidates.

    With `affordable`, its members (in every cross-fitting fold too) are only sets that `affordable`
    accepts, e.g. whose refit on all rows fits in the time left (None when no candidate alone is).
    """
    started = time.monotonic()
    pool = _pool(trials, VOTING_POOL)
    if len(pool) < 2:
        return None
    fits = None if affordable is None else (lambda idx: affordable([pool[i] for i in idx]))
    oofs = [t.oof for t in pool]
    honest = np.zeros_like(oofs[0])
    for f in np.unique(ens_fold):
        fit, held = ens_fold != f, ens_fold == f
        w = caruana_weights([p[fit] for p in oofs], y[fit], metric, affordable=fits)
        if not w.any():
            return None
        honest[held] = sum(wi * p[held] for wi, p in zip(w, oofs, strict=True))
    weights = caruana_weights(oofs, y, metric, affordable=fits)
    if not weights.any():
        return None
    chosen = [(t, float(w)) for t, w in zip(pool, weights, strict=True) if w > 0]
    result = _ensemble_result("VotingEnsemble", iteration, chosen, honest, y, labels, metric)
    result.params = {"members": [t.iteration for t, _ in chosen], "weights": [round(w, 6) for _, w in chosen]}
    result.duration_s = time.monotonic() - started
    return result


def stack_ensemble(
    trials: list[TrialResult], y: np.ndarray, ens_fold: np.ndarray, labels: list[str], metric: str, iteration: int,
    seed: int, affordable: Callable[[list[TrialResult]], bool] | None = None,
) -> TrialResult | None:
    """A StackEnsemble trial (meta-learner cross-fitted on the OOF rows), or None with fewer than 2 candidates.

    With `affordable`, its members are the longest run of the best candidates that `affordable` accepts.
    """
    started = time.monotonic()
    pool = _pool(trials, STACK_MEMBERS)
    while affordable is not None and len(pool) >= 2 and not affordable(pool):
        pool = pool[:-1]
    if len(pool) < 2:
        return None
    Z = _stack_features([t.oof for t in pool])
    honest = np.zeros_like(pool[0].oof)
    for f in np.unique(ens_fold):
        fit, held = ens_fold != f, ens_fold == f
        meta = _meta(seed).fit(Z[fit], y[fit])
        honest[np.ix_(held, meta.classes_)] = meta.predict_proba(Z[held])
    meta = _meta(seed).fit(Z, y)
    result = _ensemble_result("StackEnsemble", iteration, [(t, 1.0 / len(pool)) for t in pool], honest, y, labels,
                              metric)
    result.params = {"members": [t.iteration for t in pool], "meta_learner": "LogisticRegression",
                     "meta_C": META_C, "meta_coef": meta.coef_.tolist(), "meta_intercept": meta.intercept_.tolist()}
    result.members = [{"iteration": t.iteration, "pipeline": t.pipeline_name, "weight": None} for t in pool]
    result.duration_s = time.monotonic() - started
    return result


def _ensemble_result(
    name: str, iteration: int, chosen: list[tuple[TrialResult, float]], oof: np.ndarray, y: np.ndarray,
    labels: list[str], metric: str,
) -> TrialResult:
    metrics, per_class, cm = compute_metrics(y, oof, labels)
    return TrialResult(
        iteration=iteration, pipeline_name=name, algorithm=name, scaler=None, params={}, status=SUCCEEDED,
        metrics=metrics, per_class=per_class, confusion_matrix=cm, score=primary_score(metric, y, oof),
        members=[{"iteration": t.iteration, "pipeline": t.pipeline_name, "weight": w} for t, w in chosen],
        fit_seconds=sum(t.fit_seconds for t, _ in chosen), scoring_cost=sum(t.scoring_cost for t, _ in chosen),
        oof=oof,
    )


def fold_bag(trial: TrialResult, by_iteration: dict[int, TrialResult], n_classes: int,
             n_jobs: int = 1) -> VotingModel | None:
    """A fitted VotingModel averaging cross-validation fold models: a final model that needs no refit.

    A searched candidate's bag is the mean of its fold models; a VotingEnsemble's holds every member's
    fold models, each at (member weight / folds). Its out-of-fold predictions are the candidate's own
    (each row was scored by the fold model that did not see it). None when a fold model was dropped,
    lacks a class, or for a StackEnsemble (its meta-learner is not a weighted average).
    """
    if trial.algorithm == "VotingEnsemble":
        parts = [(by_iteration.get(m["iteration"]), float(m["weight"])) for m in trial.members]
    elif trial.members:
        return None
    else:
        parts = [(trial, 1.0)]
    members: list[Any] = []
    weights: list[float] = []
    for t, w in parts:
        fitted = getattr(t, "fold_models", None)
        if not fitted or any(m is None or len(m.classes_) != n_classes for m in fitted):
            return None
        members += fitted
        weights += [w / len(fitted)] * len(fitted)
    bag = VotingModel(members, weights, n_jobs)
    bag.members_ = list(members)
    bag.weights_ = np.asarray(weights, dtype=np.float64)
    bag.classes_ = np.arange(n_classes)
    return bag


# ---- fitted ensemble models (raw DataFrame in, probabilities out) ------------------------------------
def fit_members(members: list[Any], X: Any, y: Any, n_jobs: int) -> list[Any]:
    """Clones of `members` fitted on (X, y), `n_jobs` at a time (threads; the models release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    if n_jobs <= 1 or len(members) <= 1:
        return [clone(m).fit(X, y) for m in members]
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(lambda m: clone(m).fit(X, y), members))


class VotingModel(ClassifierMixin, BaseEstimator):
    """Weighted average of member pipelines' probabilities. `members_` are fitted CandidatePipelines.

    `n_jobs` members are fitted at a time.
    """

    def __init__(self, members: list[Any] | None = None, weights: list[float] | None = None, n_jobs: int = 1) -> None:
        self.members = members
        self.weights = weights
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any) -> VotingModel:
        self.members_ = fit_members(list(self.members or []), X, y, self.n_jobs)
        self.weights_ = np.asarray(self.weights, dtype=np.float64)
        self.classes_ = np.unique(np.asarray(y))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        out = None
        for w, m in zip(self.weights_, self.members_, strict=True):
            p = w * m.predict_proba(X)
            out = p if out is None else out + p
        return out

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class StackModel(ClassifierMixin, BaseEstimator):
    """Logistic-regression meta-learner over member pipelines' probabilities (as logits).

    The meta-learner (`coef`, `intercept`) is fitted on out-of-fold member predictions by the
    experiment; `fit` refits the members on all rows (`n_jobs` at a time) and keeps those coefficients.
    """

    def __init__(
        self, members: list[Any] | None = None, coef: Any = None, intercept: Any = None, n_jobs: int = 1
    ) -> None:
        self.members = members
        self.coef = coef
        self.intercept = intercept
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any) -> StackModel:
        self.members_ = fit_members(list(self.members or []), X, y, self.n_jobs)
        self.coef_ = np.asarray(self.coef, dtype=np.float64)
        self.intercept_ = np.asarray(self.intercept, dtype=np.float64)
        self.classes_ = np.unique(np.asarray(y))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        Z = _stack_features([m.predict_proba(X) for m in self.members_])
        return meta_proba(Z, self.coef_, self.intercept_)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def meta_proba(Z: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Class probabilities of a fitted (binary or multinomial) logistic regression."""
    logits = Z @ coef.T + intercept
    if coef.shape[0] == 1:
        p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.column_stack([1.0 - p, p])
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)
