"""Live progress of an AutoML search on stderr: a redrawn bar on a terminal, a line per trial otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class TrialProgress:
    def __init__(self, metric: str, budget_s: float, max_trials: int | None, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.metric = metric
        self.budget_s = budget_s
        self.max_trials = max_trials
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.done = 0
        self.failed = 0
        self.best: float | None = None
        self.best_name = ""

    def update(self, trial: Any) -> None:
        self.done += 1
        score = (trial.metrics or {}).get(self.metric) if trial.status == "succeeded" else None
        if trial.status != "succeeded":
            self.failed += 1
        elif score is not None and (self.best is None or score > self.best):
            self.best, self.best_name = float(score), trial.pipeline_name
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.started
        left = max(0.0, self.budget_s - elapsed)
        best = f"best {self.metric} {self.best:.4f} ({self.best_name})" if self.best is not None else "no score yet"
        if self.tty:
            frac = min(1.0, elapsed / self.budget_s) if self.budget_s else 0.0
            if self.max_trials:
                frac = max(frac, self.done / self.max_trials)
            bar = "#" * int(frac * 24)
            line = f"\r[{bar:<24}] {self.done} trials | {best} | {left:.0f}s left"
            self.stream.write(line[: 160].ljust(100))
        else:
            this = f"{score:.4f}" if score is not None else f"failed: {str(trial.error or '')[:60]}"
            self.stream.write(
                f"trial {trial.iteration:>3}  {trial.pipeline_name:<40} {self.metric} {this}"
                f"  ({trial.duration_s:.1f}s)  {best}  {left:.0f}s left\n"
            )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
