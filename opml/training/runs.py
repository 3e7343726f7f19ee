"""AutoML runs as indexed in opml.db (MLflow holds their child runs and artifacts).

A run records the process that runs it (host, pid, start time). Every read here first fails the runs whose
process is gone (kill -9, a crash, a reboot), in opml.db and in MLflow, so no run stays Running forever.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from opml.errors import NotFoundError
from opml.naming import check_name
from opml.output import plain
from opml.processes import same_process, start_ticks
from opml.workspace import store
from opml.workspace.workspace import Workspace, now_iso

OWNER_COLUMNS = ("owner_host", "owner_pid", "owner_start")
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True)
class AutoMLRun:
    id: str
    experiment: str
    dataset: str
    status: str  # Running | Completed | Failed | Canceled
    primary_metric: str
    best_pipeline: str | None
    best_score: float | None
    best_child_run: str | None
    trials: int
    started_at: str
    ended_at: str | None
    duration_s: float | None
    error: str | None
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(row: sqlite3.Row) -> AutoMLRun:
    d = {k: v for k, v in dict(row).items() if k not in OWNER_COLUMNS}
    d["summary"] = json.loads(d["summary"])
    return AutoMLRun(**d)


def start_run(ws: Workspace, run_id: str, experiment: str, dataset: str, primary_metric: str) -> None:
    """Index a new Running run, owned by this process."""
    pid = os.getpid()
    with store.transaction(ws.db) as db:
        db.execute(
            "INSERT INTO automl_runs (id, experiment, dataset, status, primary_metric, started_at, owner_host,"
            " owner_pid, owner_start) VALUES (?, ?, ?, 'Running', ?, ?, ?, ?, ?)",
            (run_id, experiment, dataset, primary_metric, now_iso(), socket.gethostname(), pid, start_ticks(pid)),
        )


def end_run(ws: Workspace, run_id: str, status: str, *, duration_s: float, trials: int = 0,
            best_pipeline: str | None = None, best_score: float | None = None, best_child_run: str | None = None,
            error: str | None = None, summary: dict[str, Any] | None = None) -> None:
    with store.transaction(ws.db) as db:
        db.execute(
            "UPDATE automl_runs SET status = ?, ended_at = ?, duration_s = ?, trials = ?, best_pipeline = ?,"
            " best_score = ?, best_child_run = ?, error = ?, summary = ? WHERE id = ?",
            (status, now_iso(), duration_s, trials, best_pipeline, best_score, best_child_run, error,
             json.dumps(plain(summary or {}), default=str), run_id),
        )


# ---- runs whose process died -----------------------------------------------------------------------


def owner_gone(row: sqlite3.Row | dict[str, Any]) -> str | None:
    """Why a Running run's process is gone, or None while it runs (or runs on another host: not ours to judge)."""
    pid, host = row["owner_pid"], row["owner_host"]
    if pid is None or host != socket.gethostname():
        return None  # indexed by an older opml, or run elsewhere
    if same_process(pid, row["owner_start"]):
        return None
    return f"its process {pid} died before the run ended (killed or crashed?)"


def reap_dead_runs(ws: Workspace) -> list[str]:
    """Fail every Running run whose process is gone; returns their ids. Cheap when there are none."""
    rows = ws.db.execute(f"SELECT id, {', '.join(OWNER_COLUMNS)} FROM automl_runs WHERE status = 'Running'")
    failed = []
    for row in rows.fetchall():
        reason = owner_gone(row)
        if reason is not None and fail_dead_run(ws, row["id"], reason):
            failed.append(row["id"])
    return failed


def fail_dead_run(ws: Workspace, run_id: str, reason: str) -> bool:
    """Mark Running run `run_id` Failed with `reason` and end its MLflow run (and open child runs) as FAILED.

    For callers that know the run's process died (a pipeline executor's reaper). Returns False when the run
    is not Running (already ended, or unknown).
    """
    row = ws.db.execute("SELECT experiment, started_at, summary FROM automl_runs WHERE id = ? AND status = 'Running'",
                        (run_id,)).fetchone()
    if row is None:
        return False
    summary = json.loads(row["summary"] or "{}")
    error = reason
    if _RUN_ID.fullmatch(run_id):
        from opml.training.tracking import fail_orphaned_run

        try:
            parent = fail_orphaned_run(ws, row["experiment"], run_id, reason)
        except Exception as exc:  # the tracking store itself may be what broke: the run is failed all the same
            error += f"; its MLflow run could not be ended ({type(exc).__name__}: {exc})"
        else:
            if parent:
                summary.setdefault("mlflow_run_id", parent)
    with store.transaction(ws.db) as db:
        cur = db.execute(
            "UPDATE automl_runs SET status = 'Failed', ended_at = ?, duration_s = ?, error = ?, summary = ?"
            " WHERE id = ? AND status = 'Running'",
            (now_iso(), _since(row["started_at"]), error, json.dumps(summary), run_id),
        )
    return cur.rowcount == 1


def _since(started_at: str) -> float | None:
    try:
        started = datetime.fromisoformat(started_at)
    except (TypeError, ValueError):
        return None
    return max(0.0, round((datetime.now(started.tzinfo) - started).total_seconds(), 3))


# ---- reads (each fails dead runs first) ---------------------------------------------------------------


def list_runs(ws: Workspace, experiment: str | None = None) -> list[AutoMLRun]:
    """Newest first; only `experiment`'s runs when it is given."""
    if experiment is not None:
        check_name(experiment, "experiment")
    reap_dead_runs(ws)
    if experiment:
        rows = ws.db.execute("SELECT * FROM automl_runs WHERE experiment = ? ORDER BY started_at DESC, rowid DESC",
                             (experiment,))
    else:
        rows = ws.db.execute("SELECT * FROM automl_runs ORDER BY started_at DESC, rowid DESC")
    return [_row(r) for r in rows]


def get_run(ws: Workspace, run_id: str) -> AutoMLRun:
    """By opml run id (AutoML_...) or by the MLflow parent run id."""
    reap_dead_runs(ws)
    row = ws.db.execute("SELECT * FROM automl_runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        row = ws.db.execute("SELECT * FROM automl_runs WHERE json_extract(summary, '$.mlflow_run_id') = ?",
                            (run_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no AutoML run {run_id!r}", "see `opml runs list`")
    return _row(row)


def latest_completed(ws: Workspace, experiment: str | None = None) -> AutoMLRun:
    for run in list_runs(ws, experiment):
        if run.status == "Completed":
            return run
    where = f" in experiment {experiment!r}" if experiment else ""
    raise NotFoundError(f"no completed AutoML run{where}", "run `opml train` first")
