"""Shared validation splits and out-of-fold scoring of candidates, with a featurization cache."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from opml.automl.deadline import BudgetExceeded, detach, fit_deadline
from opml.automl.pipeline import CandidatePipeline

CACHE_BYTES = 400 * 2**20  # featurized folds kept for reuse across trials


@dataclass
class Splits:
    """Train/validation splits every candidate and ensemble is scored on.

    `eval_rows` are the input-row positions that receive out-of-fold predictions (all rows for
    cross-validation, the holdout for validation_size); `folds[i]` = (train rows, eval slots),
    where eval slots index `eval_rows`. `ens_fold` assigns each eval slot to a fold used to
    cross-fit ensembles (the CV fold itself, or an inner 5-fold split of the holdout).
    """

    folds: list[tuple[np.ndarray, np.ndarray]]
    eval_rows: np.ndarray
    ens_fold: np.ndarray
    description: str


def make_splits(y: np.ndarray, cv_folds: int | None, validation_size: float | None, seed: int) -> Splits:
    from sklearn.model_selection import StratifiedKFold, train_test_split

    n = len(y)
    if cv_folds is not None:
        skf = StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed)
        folds = [(tr, va) for tr, va in skf.split(np.zeros(n), y)]
        ens_fold = np.empty(n, dtype=int)
        for i, (_, va) in enumerate(folds):
            ens_fold[va] = i
        return Splits(folds, np.arange(n), ens_fold, f"{cv_folds}-fold stratified CV")
    rows = np.arange(n)
    train, valid = train_test_split(rows, test_size=validation_size, stratify=y, random_state=seed)
    train, valid = np.sort(train), np.sort(valid)
    inner = StratifiedKFold(n_splits=min(5, int(np.bincount(y[valid]).min()) or 2), shuffle=True,
                            random_state=seed)
    ens_fold = np.empty(len(valid), dtype=int)
    for i, (_, va) in enumerate(inner.split(np.zeros(len(valid)), y[valid])):
        ens_fold[va] = i
    return Splits([(train, np.arange(len(valid)))], valid, ens_fold, f"holdout ({validation_size:.0%})")


class FoldData:
    """The training frame, labels and splits, plus a cache of featurized folds."""

    def __init__(self, X: pd.DataFrame, y: np.ndarray, n_classes: int, splits: Splits) -> None:
        self.X = X
        self.y = y
        self.n_classes = n_classes
        self.splits = splits
        self.y_eval = y[splits.eval_rows]
        self._cache: OrderedDict[tuple, tuple[Any, np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_bytes = 0

    def featurized(self, fold: int, candidate: CandidatePipeline) -> tuple[Any, np.ndarray, np.ndarray]:
        """(fitted featurizer, train matrix, eval matrix) of `fold` for the candidate's featurizer."""
        featurizer = candidate.make_featurizer()
        key = (fold, repr(sorted(featurizer.get_params().items())))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        train, slots = self.splits.folds[fold]
        rows = self.splits.eval_rows[slots]
        featurizer.fit(self.X.iloc[train])
        value = (featurizer, featurizer.transform(self.X.iloc[train]), featurizer.transform(self.X.iloc[rows]))
        self._cache[key] = value
        self._cache_bytes += value[1].nbytes + value[2].nbytes
        while self._cache_bytes > CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old[1].nbytes + old[2].nbytes
        return value


def cross_validate(
    candidate: CandidatePipeline, data: FoldData, *, deadline: float | None = None, workers: int = 1,
    models: list[Any] | None = None,
) -> tuple[np.ndarray, float, int]:
    """Out-of-fold class probabilities (eval slots x classes), the mean fit time of one fold and the
    scoring cost of the first fold's model (opml.automl.pipeline.scoring_cost). `models`, when given,
    receives the fitted fold models in fold order (each a whole pipeline over raw frames, featurizer
    fitted on its fold's training rows): averaged, they are a final model that needs no refit.

    Folds are fitted by `workers` threads (the candidate's own n_jobs should then be 1: single-
    threaded models in parallel degrade gracefully when other processes compete for the CPU,
    multi-threaded OpenMP models do not). Raises BudgetExceeded when, judged after each finished
    fold, finishing would pass `deadline` (time.monotonic() seconds), and when it passes: a fold not
    yet started then does not start, and boosting fits stop mid-fit (opml.automl.deadline).
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    n_folds = len(data.splits.folds)
    oof = np.zeros((len(data.splits.eval_rows), data.n_classes))
    fit_times: list[float] = []
    fold_times: list[float] = []  # fit + predict of each finished fold
    costs: list[int] = []
    fitted: list[Any] = [None] * n_folds

    def fit_fold(i: int) -> None:
        train, slots = data.splits.folds[i]
        featurizer, z_train, z_eval = inputs[i]
        t = time.monotonic()
        with fit_deadline(deadline):
            if deadline is not None and t > deadline:
                raise BudgetExceeded(f"fold {i + 1} of {n_folds} not started: the time budget has run out")
            model = clone(candidate).fit_featurized(featurizer, z_train, data.y[train])
        detach(model.model_)
        fit_times.append(time.monotonic() - t)
        if i == 0:  # the folds' models differ by a few leaves; counting one (~30-70 ms for 600 trees) is enough
            costs.append(model.scoring_cost())
        proba = model.predict_proba_featurized(z_eval)
        if proba.shape[1] != data.n_classes:  # a fold lacking a class: spread into full width
            full = np.zeros((len(slots), data.n_classes))
            full[:, model.classes_] = proba
            proba = full
        oof[slots] = proba
        fitted[i] = model
        fold_times.append(time.monotonic() - t)

    inputs = [data.featurized(i, candidate) for i in range(n_folds)]
    workers = max(1, min(workers, n_folds))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opml-fold")
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            pending = {pool.submit(fit_fold, i) for i in range(n_folds)}
            done = 0
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()  # re-raise a fold's exception
                done += len(finished)
                if deadline is not None and pending:  # the running folds count as not begun (a margin)
                    rounds = -(-len(pending) // workers)
                    if time.monotonic() + max(fold_times) * rounds > deadline:
                        raise BudgetExceeded(
                            f"canceled after {done} of {n_folds} folds: finishing would exceed the time budget"
                        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if models is not None:
        models[:] = fitted
    return oof, float(np.mean(fit_times)), costs[0] if costs else 0
