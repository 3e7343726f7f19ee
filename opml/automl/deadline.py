"""A deadline for the model fits of the current thread, and the boosting callbacks that enforce it.

The search sets a deadline around each cross-validation fold (`fit_deadline`); LightGBM and XGBoost
fits then check it after every boosting round and raise BudgetExceeded once it has passed, so a trial
that would overrun the budget is stopped mid-fit and discarded. Other models (sklearn forests, linear
models, CatBoost) cannot be stopped this way: the search predicts their cost before starting them.
Outside `fit_deadline` (refits, serving) the callbacks are not attached and change nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()


class BudgetExceeded(Exception):
    """A trial was stopped because it would overrun the time budget."""


@contextmanager
def fit_deadline(at: float | None) -> Iterator[None]:
    """Model fits in this thread stop (BudgetExceeded) once time.monotonic() passes `at` (None: no limit)."""
    before = getattr(_local, "at", None)
    _local.at = at
    try:
        yield
    finally:
        _local.at = before


def current() -> float | None:
    """The deadline of this thread's fits, if any."""
    return getattr(_local, "at", None)


def check() -> None:
    """Raise BudgetExceeded when this thread's deadline has passed."""
    at = current()
    if at is not None and time.monotonic() > at:
        raise BudgetExceeded("stopped mid-fit at the time budget's end")


def lightgbm_callbacks() -> list[Any]:
    """Fit callbacks for LightGBM (empty without a deadline)."""
    return [_lightgbm_check] if current() is not None else []


def _lightgbm_check(env: Any) -> None:
    check()


def xgboost_callbacks() -> list[Any] | None:
    """Constructor callbacks for XGBoost (None without a deadline; `detach` them after the fit)."""
    if current() is None:
        return None
    from xgboost.callback import TrainingCallback

    class _Check(TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            check()
            return False

    return [_Check()]


def detach(model: Any) -> None:
    """Drop the deadline callbacks from a fitted model (kept fold models are pickled with the final model)."""
    if getattr(model, "callbacks", None) is not None:
        model.set_params(callbacks=None)
