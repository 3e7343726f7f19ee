"""Operations shared by the CLI and the control plane: start a run, read it, cancel it, and notice an executor
that died (a read or the control plane's periodic sweep marks its run Failed, with the reason)."""

from __future__ import annotations

import contextlib
import subprocess
from typing import Any

from opml import processes
from opml.errors import OpmlError
from opml.pipelines import registry
from opml.pipelines.registry import ACTIVE, Run
from opml.workspace.workspace import Workspace

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


def owner_gone(run: Run) -> str | None:
    """Why `run`, active on record, has nobody executing it (the reason to record), or None: it has ended, its
    executor runs, or it is still being spawned."""
    from opml.pipelines.runner import is_runner

    if run.status not in ACTIVE:
        return None
    if run.runner_pid is None:
        return None if _age_s(run.created_at) < SPAWN_GRACE_S else "the run's executor never started"
    if run.runner_ticks is not None:  # pid + start time: a recycled pid is not the executor
        alive = processes.same_process(run.runner_pid, run.runner_ticks)
    else:  # recorded by an older opml: recognise it by its command line
        alive = is_runner(run.runner_pid, run.id) or (run.status == "NotStarted" and _age_s(run.created_at) < 5)
    return None if alive else f"executor process {run.runner_pid} died (killed?)"


def is_active(ws: Workspace, run_id: str) -> bool:
    """The run is NotStarted/Queued/Running and its executor is alive (or just being spawned)."""
    try:
        run = registry.get_run(ws, run_id)
    except OpmlError:
        return False
    return run.status in ACTIVE and owner_gone(run) is None


def settle(ws: Workspace, run: Run) -> Run:
    """`run` as it stands: if it is active on record but its executor is gone, it is marked Failed now (its
    running steps Failed, the rest Canceled, with the reason) and its orphaned step processes are stopped (an
    AutoML step ends its MLflow run as it stops; one whose process is gone too is failed there, see
    opml.training.runs.reap_dead_runs)."""
    reason = owner_gone(run)
    if reason is None:
        return run
    steps = registry.steps_of(ws, run.id)
    if registry.close_run(ws, run.id, "Failed", reason):  # only the first reader to notice stops the steps
        _stop_steps(run.id, steps, wait=False)
        if any(s.type == "automl" and s.status == "Running" for s in steps):
            _reap_training(ws)
    return registry.get_run(ws, run.id)


def read_run(ws: Workspace, run_id: str) -> Run:
    """A run by id, settled (see settle): what `pipeline show` and REST GET /runs/<id> report."""
    return settle(ws, registry.get_run(ws, run_id))


def read_runs(ws: Workspace, pipeline: str | None = None, limit: int = 50) -> list[Run]:
    """The newest runs, settled: what `pipeline runs` lists."""
    return [settle(ws, r) for r in registry.list_runs(ws, pipeline, limit)]


def cancel(ws: Workspace, run_id: str) -> Run:
    run = registry.request_cancel(ws, run_id)
    if not is_active(ws, run_id):  # nobody to honour the request: record it here
        steps = registry.steps_of(ws, run_id)
        if registry.close_run(ws, run.id, "Canceled", "canceled by request (the executor was not running)"):
            _stop_steps(run.id, steps, wait=True)
    return registry.get_run(ws, run_id)


def sweep(ws: Workspace, log=print) -> list[str]:
    """Mark every active run whose executor is gone Failed, with the reason (the control plane runs this when it
    starts and on every scheduler tick). Returns their ids."""
    failed = []
    for run in registry.active_runs(ws):
        after = settle(ws, run)
        if after.status != run.status:
            log(f"run {run.id}: {after.status} ({after.error})")
            failed.append(run.id)
    for run_id in _reap_training(ws):  # AutoML runs (a pipeline's step or `opml train`) whose process died
        log(f"AutoML run {run_id}: Failed (its process died); its MLflow run is ended")
    return failed


def _reap_training(ws: Workspace) -> list[str]:
    from opml.training.runs import reap_dead_runs

    try:
        return reap_dead_runs(ws)
    except OpmlError:
        return []


def _stop_steps(run_id: str, steps: list[registry.StepRun], *, wait: bool) -> None:
    """Stop the step processes an executor left behind (SIGTERM to each group; wait: then SIGKILL if need be)."""
    import os
    import signal

    from opml.pipelines.runner import is_step, kill_group

    for s in steps:
        if s.status in ACTIVE and s.pid and is_step(s.pid, run_id):
            if wait:
                kill_group(s.pid)
            else:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(s.pid, signal.SIGTERM)


def _age_s(iso: str) -> float:
    import time
    from datetime import datetime

    return time.time() - datetime.fromisoformat(iso).timestamp()


def reap(children: list[subprocess.Popen]) -> list[subprocess.Popen]:
    return [p for p in children if p.poll() is None]
