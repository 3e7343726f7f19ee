"""AutoML runs as indexed in opml.db (MLflow holds their child runs and artifacts)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from opml.errors import NotFoundError
from opml.output import plain
from opml.workspace import store
from opml.workspace.workspace import Workspace, now_iso


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
    d = dict(row)
    d["summary"] = json.loads(d["summary"])
    return AutoMLRun(**d)


def start_run(ws: Workspace, run_id: str, experiment: str, dataset: str, primary_metric: str) -> None:
    with store.transaction(ws.db) as db:
        db.execute(
            "INSERT INTO automl_runs (id, experiment, dataset, status, primary_metric, started_at)"
            " VALUES (?, ?, ?, 'Running', ?, ?)",
            (run_id, experiment, dataset, primary_metric, now_iso()),
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



def list_runs(ws: Workspace, experiment: str | None = None) -> list[AutoMLRun]:
    if experiment:
        rows = ws.db.execute("SELECT * FROM automl_runs WHERE experiment = ? ORDER BY started_at DESC, rowid DESC",
                             (experiment,))
    else:
        rows = ws.db.execute("SELECT * FROM automl_runs ORDER BY started_at DESC, rowid DESC")
    return [_row(r) for r in rows]


def get_run(ws: Workspace, run_id: str) -> AutoMLRun:
    """By opml run id (AutoML_...) or by the MLflow parent run id."""
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
