"""Operations shared by the CLI and the control plane: start a run, cancel it, recover after a crash."""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any

from opml.errors import OpmlError
from opml.pipelines import registry
from opml.pipelines.registry import ACTIVE, Run
from opml.workspace.workspace import Workspace, now_iso

# A run inserted but whose executor has not recorded itself yet is left alone this long by recovery.
SPAWN_GRACE_S = 60


def submit(ws: Workspace, ref: str, params: dict[str, Any], *, experiment: str | None = None, strict: bool = False,
           published_id: str | None = None, schedule_id: str | None = None, submitted_by: str = "cli") -> Run:
    pipeline = registry.get_pipeline(ws, ref)
    return registry.submit_run(ws, pipeline, params, experiment=experiment, strict=strict,
                               published_id=published_id, schedule_id=schedule_id, submitted_by=submitted_by)


def start(ws: Workspace, run: Run) -> int:
    """Spawn the run's executor (detached) and record its pid."""
    from opml.pipelines.runner import spawn

    pid = spawn(ws.root, run.id)
    # The executor records itself too; only fill the pid in if it has not started yet.
    with contextlib.suppress(Exception):
        registry.record_runner(ws, run.id, pid)
    return pid


def run_pipeline(ws: Workspace, ref: str, params: dict[str, Any], **kw: Any) -> Run:
    run = submit(ws, ref, params, **kw)
    start(ws, run)
    return registry.get_run(ws, run.id)


def is_active(ws: Workspace, run_id: str) -> bool:
    """The run is NotStarted/Queued/Running and its executor is alive (or just being spawned)."""
    from opml.pipelines.runner import is_runner

    try:
        run = registry.get_run(ws, run_id)
    except OpmlError:
        return False
    if run.status not in ACTIVE:
        return False
    if run.runner_pid is None:
        return _age_s(run.created_at) < SPAWN_GRACE_S
    return is_runner(run.runner_pid, run.id) or (run.status == "NotStarted" and _age_s(run.created_at) < 5)


def cancel(ws: Workspace, run_id: str) -> Run:
    run = registry.request_cancel(ws, run_id)
    if not is_active(ws, run_id):  # nobody to honour the request: record it here
        _close(ws, run, "Canceled", "canceled by request (the executor was not running)")
    return registry.get_run(ws, run_id)


def recover(ws: Workspace, log=print) -> list[str]:
    """Mark runs whose executor died (crash, reboot, kill) Failed, with the reason; stop their leftover steps."""
    failed = []
    for run in registry.list_runs(ws, limit=10_000):
        if run.status not in ACTIVE or is_active(ws, run.id):
            continue
        reason = (f"the run's executor (pid {run.runner_pid}) is gone (crash, kill or reboot); "
                  "marked Failed when the control plane started" if run.runner_pid else
                  "the run's executor never started; marked Failed when the control plane started")
        _close(ws, run, "Failed", reason)
        log(f"recovered run {run.id}: Failed ({reason})")
        failed.append(run.id)
    return failed


def _close(ws: Workspace, run: Run, status: str, reason: str) -> None:
    from opml.pipelines.runner import is_step, kill_group

    for s in registry.steps_of(ws, run.id):
        if s.status in ACTIVE:
            if s.pid and is_step(s.pid, run.id):
                kill_group(s.pid)
            registry.update_step(ws, run.id, s.step, status="Canceled" if status == "Canceled" or s.status != "Running"
                                 else "Failed", error=reason, ended_at=now_iso())
    registry.update_run(ws, run.id, status=status, error=reason, ended_at=now_iso())


def _age_s(iso: str) -> float:
    import time
    from datetime import datetime

    return time.time() - datetime.fromisoformat(iso).timestamp()


def reap(children: list[subprocess.Popen]) -> list[subprocess.Popen]:
    return [p for p in children if p.poll() is None]
