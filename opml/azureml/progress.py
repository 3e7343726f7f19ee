"""Live progress of an Azure AutoML job on stderr: the submission, status changes, a line per finished child job.

The local backend's counterpart is opml.training.progress.TrialProgress; Azure reports no per-child duration
or time left, so this prints what it does report: the job's status, each child's score and the best so far.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class JobProgress:
    def __init__(self, metric: str, *, stream: TextIO | None = None) -> None:
        self.metric = metric
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.best: float | None = None
        self.best_name = ""

    def _line(self, text: str) -> None:
        self.stream.write(f"{text}  ({time.monotonic() - self.started:.0f}s)\n")
        self.stream.flush()

    def submitted(self, name: str, studio_url: str | None) -> None:
        self._line(f"submitted AutoML job {name}" + (f"  studio {studio_url}" if studio_url else ""))

    def status(self, status: str) -> None:
        self._line(f"job status {status}")

    def child(self, child: Any) -> None:
        """A finished child job (opml.azureml.train.ChildRun)."""
        if child.score is not None and (self.best is None or child.score > self.best):
            self.best, self.best_name = float(child.score), child.pipeline_name
        this = f"{child.score:.4f}" if child.score is not None else f"({child.status})"
        best = f"best {self.metric} {self.best:.4f} ({self.best_name})" if self.best is not None else "no score yet"
        self._line(f"child {child.iteration:>3}  {child.pipeline_name:<40} {self.metric} {this}  {best}")
