"""Watching a pipeline run from outside it: follow its steps, wait for a cancel to land, read step logs.

Nothing here prints: progress goes to a callback the caller passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opml.errors import NotFoundError
from opml.pipelines import registry, service
from opml.pipelines.registry import FINAL, Run, StepRun
from opml.pipelines.step import run_dir
from opml.workspace.workspace import Workspace

FOLLOW_POLL_S = 0.3
CANCEL_POLL_S = 0.2
CANCEL_WAIT_S = 15.0


def follow(ws: Workspace, run_id: str, on_step: Callable[[StepRun, float], None] | None = None, *,
           poll_s: float = FOLLOW_POLL_S) -> Run:
    """Poll the run until it ends (or its executor dies: then it is marked Failed) and return it;
    `on_step(step, seconds since the start of following)` is called each time a step reaches a new status other
    than NotStarted."""
    seen: dict[str, str] = {}
    t0 = time.monotonic()
    while True:
        run = service.read_run(ws, run_id)
        for s in registry.steps_of(ws, run_id):
            if seen.get(s.step) != s.status:
                seen[s.step] = s.status
                if on_step is not None and s.status != "NotStarted":
                    on_step(s, time.monotonic() - t0)
        if run.status in FINAL:
            return run
        time.sleep(poll_s)


def cancel(ws: Workspace, run_id: str, *, timeout: float = CANCEL_WAIT_S, poll_s: float = CANCEL_POLL_S) -> Run:
    """Request the cancel, then wait up to `timeout` s for the run to end; returns the run as it then is
    (still active if its executor has not stopped the steps in time)."""
    run = service.cancel(ws, run_id)
    deadline = time.monotonic() + timeout
    while run.status not in FINAL and time.monotonic() < deadline:
        time.sleep(poll_s)
        run = registry.get_run(ws, run_id)
    return run


def step_logs(ws: Workspace, run_id: str, step: str | None = None) -> dict[str, dict[str, str]]:
    """{step: {"path": its log file, "text": the log so far ("" before it starts)}} in run order."""
    registry.get_run(ws, run_id)
    steps = [s.step for s in registry.steps_of(ws, run_id)]
    if step and step not in steps:
        raise NotFoundError(f"run {run_id} has no step {step!r}", f"steps: {', '.join(steps)}")
    folder = run_dir(ws.root, run_id)
    out = {}
    for name in [step] if step else steps:
        path = folder / f"{name}.log"
        out[name] = {"path": str(path), "text": path.read_text(errors="replace") if path.is_file() else ""}
    return out


@dataclass(frozen=True)
class RunView:
    """A run with its steps and the model its steps registered (the last one), as `opml pipeline show` tells it."""

    run: Run
    steps: list[StepRun]
    model: str | None

    def to_dict(self) -> dict[str, Any]:
        return self.run.to_dict() | {"model": self.model, "steps": [s.to_dict() for s in self.steps]}


def describe(ws: Workspace, run_id: str) -> RunView:
    """The run (settled: a run whose executor died is marked Failed first), its steps and model."""
    run = service.read_run(ws, run_id)
    steps = registry.steps_of(ws, run_id)
    model = next((s.outputs.get("model") for s in reversed(steps) if s.outputs.get("model")), None)
    return RunView(run, steps, model)
