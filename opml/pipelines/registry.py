"""Pipelines, published pipelines, runs, step runs and schedules as rows in opml.db.

Every change of a run's state goes through here; `close_run` is the one way a run that lost its executor ends.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from opml import processes
from opml.errors import NotFoundError, OpmlError
from opml.naming import check_name
from opml.pipelines.spec import PipelineSpec, order, resolve_parameters
from opml.workspace import store
from opml.workspace.workspace import Workspace, now_iso

ACTIVE = ("NotStarted", "Queued", "Running")
FINAL = ("Completed", "Failed", "Canceled")
_IN_ACTIVE = f"status IN ({', '.join(repr(s) for s in ACTIVE)})"


class TooManyRuns(OpmlError):
    """A published pipeline already has its maximum of active runs (REST: 429 with Retry-After)."""


@dataclass(frozen=True)
class Pipeline:
    name: str
    version: int
    description: str
    spec: PipelineSpec
    digest: str
    source: str
    configs: str
    created_at: str

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "ref": self.ref, "description": self.description,
                "parameters": [p.model_dump() for p in self.spec.parameters],
                "steps": [{"name": s.name, "type": s.type, "inputs": s.inputs} for s in self.spec.steps],
                "digest": self.digest, "source": self.source, "configs": self.configs,
                "created_at": self.created_at}


def _pipeline(row: sqlite3.Row) -> Pipeline:
    d = dict(row)
    d["spec"] = PipelineSpec.model_validate(json.loads(d["spec"]))
    return Pipeline(**d)


def create_pipeline(ws: Workspace, spec: PipelineSpec, source: Path, configs: Path) -> tuple[Pipeline, bool]:
    """Register `spec` as NAME:VERSION; a new version only when the definition changed."""
    digest = spec.digest()
    with store.transaction(ws.db) as db:
        row = db.execute("SELECT * FROM pipelines WHERE name = ? AND digest = ?", (spec.name, digest)).fetchone()
        if row is not None:
            return _pipeline(row), False
        version = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM pipelines WHERE name = ?",
                             (spec.name,)).fetchone()[0]
        db.execute("INSERT INTO pipelines (name, version, description, spec, digest, source, configs, created_at)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (spec.name, version, spec.description, json.dumps(spec.model_dump(mode="json")), digest,
                    str(source.absolute()), str(configs.absolute()), now_iso()))
    return get_pipeline(ws, f"{spec.name}:{version}"), True


def get_pipeline(ws: Workspace, ref: str) -> Pipeline:
    name, _, version = ref.partition(":")
    check_name(name, "pipeline")
    if version and not version.isdigit():
        raise OpmlError(f"invalid pipeline version in {ref!r}", "write NAME or NAME:VERSION")
    if version:
        row = ws.db.execute("SELECT * FROM pipelines WHERE name = ? AND version = ?", (name, int(version))).fetchone()
    else:
        row = ws.db.execute("SELECT * FROM pipelines WHERE name = ? ORDER BY version DESC LIMIT 1",
                            (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"no pipeline {ref!r}", "see `opml pipeline list` or run `opml pipeline create`")
    return _pipeline(row)


def list_pipelines(ws: Workspace) -> list[Pipeline]:
    return [_pipeline(r) for r in ws.db.execute("SELECT * FROM pipelines ORDER BY name, version DESC")]


# ---- published pipelines ---------------------------------------------------------


@dataclass(frozen=True)
class Published:
    id: str
    name: str
    version: int
    status: str  # Active | Disabled
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"pipeline": f"{self.name}:{self.version}"}


def publish(ws: Workspace, ref: str) -> Published:
    p = get_pipeline(ws, ref)
    pid, now = str(uuid.uuid4()), now_iso()
    with store.transaction(ws.db) as db:
        db.execute("INSERT INTO published_pipelines (id, name, version, status, created_at, updated_at)"
                   " VALUES (?, ?, ?, 'Active', ?, ?)", (pid, p.name, p.version, now, now))
    return get_published(ws, pid)


def find_published(ws: Workspace, pid: str) -> Published | None:
    row = ws.db.execute("SELECT * FROM published_pipelines WHERE id = ?", (pid,)).fetchone()
    return Published(**dict(row)) if row else None


def get_published(ws: Workspace, pid: str) -> Published:
    pub = find_published(ws, pid)
    if pub is None:
        raise NotFoundError(f"no published pipeline {pid!r}", "see `opml pipeline list --published`")
    return pub


def list_published(ws: Workspace) -> list[Published]:
    return [Published(**dict(r)) for r in ws.db.execute("SELECT * FROM published_pipelines ORDER BY created_at")]


def set_published_status(ws: Workspace, pid: str, status: str) -> Published:
    get_published(ws, pid)
    with store.transaction(ws.db) as db:
        db.execute("UPDATE published_pipelines SET status = ?, updated_at = ? WHERE id = ?", (status, now_iso(), pid))
    return get_published(ws, pid)


# ---- runs -----------------------------------------------------------------------


@dataclass(frozen=True)
class StepRun:
    run_id: str
    step: str
    position: int
    type: str
    status: str
    reused: bool
    reused_from: str | None
    hash: str | None
    inputs: dict[str, Any]
    settings: dict[str, Any]
    outputs: dict[str, Any]
    error: str | None
    pid: int | None
    started_at: str | None
    ended_at: str | None
    duration_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Run:
    id: str
    pipeline: str
    version: int
    experiment: str
    parameters: dict[str, Any]
    status: str
    error: str | None
    published_id: str | None
    schedule_id: str | None
    submitted_by: str
    runner_pid: int | None
    cancel_requested: bool
    created_at: str
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    runner_ticks: int | None = None  # the executor's start time (opml.processes.start_ticks), with runner_pid

    @property
    def ref(self) -> str:
        return f"{self.pipeline}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"pipeline_ref": self.ref}


def _run(row: sqlite3.Row) -> Run:
    d = dict(row)
    d["parameters"] = json.loads(d["parameters"])
    d["cancel_requested"] = bool(d["cancel_requested"])
    return Run(**d)


def _step(row: sqlite3.Row) -> StepRun:
    d = dict(row)
    for k in ("inputs", "settings", "outputs"):
        d[k] = json.loads(d[k])
    d["reused"] = bool(d["reused"])
    return StepRun(**d)


def new_run_id(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:12]}"


def submit_run(ws: Workspace, pipeline: Pipeline, params: dict[str, Any], *, experiment: str | None = None,
               strict: bool = False, published_id: str | None = None, schedule_id: str | None = None,
               submitted_by: str = "cli", max_active: int | None = None) -> Run:
    """Validate the parameters and insert the run (NotStarted) with its steps; the caller starts the runner.

    `max_active`: refuse (TooManyRuns) when the published pipeline already has that many active runs.
    """
    experiment = check_name(pipeline.name if experiment is None else experiment, "experiment")
    values = resolve_parameters(pipeline.spec, params, strict=strict)
    run_id, now = new_run_id(pipeline.name), now_iso()
    positions = {n: i for i, n in enumerate(n for level in order(pipeline.spec) for n in level)}
    with store.transaction(ws.db) as db:
        if max_active is not None and published_id is not None:
            active = db.execute(f"SELECT COUNT(*) FROM pipeline_runs WHERE published_id = ? AND {_IN_ACTIVE}",
                                (published_id,)).fetchone()[0]
            if active >= max_active:
                raise TooManyRuns(f"{active} runs of published pipeline {published_id} are active (at most "
                                  f"{max_active} at a time)", "retry when one has ended")
        db.execute("INSERT INTO pipeline_runs (id, pipeline, version, experiment, parameters, status, published_id,"
                   " schedule_id, submitted_by, created_at) VALUES (?, ?, ?, ?, ?, 'NotStarted', ?, ?, ?, ?)",
                   (run_id, pipeline.name, pipeline.version, experiment, json.dumps(values), published_id,
                    schedule_id, submitted_by, now))
        db.executemany("INSERT INTO pipeline_step_runs (run_id, step, position, type, status)"
                       " VALUES (?, ?, ?, ?, 'NotStarted')",
                       [(run_id, s.name, positions[s.name], s.type) for s in pipeline.spec.steps])
    return get_run(ws, run_id)


def get_run(ws: Workspace, run_id: str) -> Run:
    row = ws.db.execute("SELECT * FROM pipeline_runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no pipeline run {run_id!r}", "see `opml pipeline runs`")
    return _run(row)


def list_runs(ws: Workspace, pipeline: str | None = None, limit: int = 50) -> list[Run]:
    if pipeline:
        rows = ws.db.execute("SELECT * FROM pipeline_runs WHERE pipeline = ? ORDER BY created_at DESC, rowid DESC"
                             " LIMIT ?", (pipeline, limit))
    else:
        rows = ws.db.execute("SELECT * FROM pipeline_runs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
    return [_run(r) for r in rows]


def active_runs(ws: Workspace, published_id: str | None = None) -> list[Run]:
    """Runs NotStarted, Queued or Running (of one published pipeline if given), oldest first."""
    where = _IN_ACTIVE + (" AND published_id = ?" if published_id else "")
    rows = ws.db.execute(f"SELECT * FROM pipeline_runs WHERE {where} ORDER BY created_at, rowid",
                         (published_id,) if published_id else ())
    return [_run(r) for r in rows]


def steps_of(ws: Workspace, run_id: str) -> list[StepRun]:
    rows = ws.db.execute("SELECT * FROM pipeline_step_runs WHERE run_id = ? ORDER BY position, rowid", (run_id,))
    return [_step(r) for r in rows]


def update_run(ws: Workspace, run_id: str, **fields: Any) -> None:
    _update(ws, "UPDATE pipeline_runs SET {} WHERE id = ?", fields, (run_id,))


def update_step(ws: Workspace, run_id: str, step: str, **fields: Any) -> None:
    _update(ws, "UPDATE pipeline_step_runs SET {} WHERE run_id = ? AND step = ?", fields, (run_id, step))


def _update(ws: Workspace, sql: str, fields: dict[str, Any], key: tuple) -> None:
    cols = ", ".join(f"{k} = ?" for k in fields)
    vals = [json.dumps(v) if isinstance(v, dict | list) else v for v in fields.values()]
    with store.transaction(ws.db) as db:
        db.execute(sql.format(cols), (*vals, *key))


def request_cancel(ws: Workspace, run_id: str) -> Run:
    run = get_run(ws, run_id)
    if run.status in FINAL:
        raise OpmlError(f"pipeline run {run_id} is already {run.status}")
    update_run(ws, run_id, cancel_requested=1)
    return get_run(ws, run_id)


def record_runner(ws: Workspace, run_id: str, pid: int) -> None:
    """Note the pid and start time of the run's spawned executor, unless the executor has recorded itself already."""
    # One autocommit statement: atomic without a transaction on the (possibly shared) connection.
    ws.db.execute("UPDATE pipeline_runs SET runner_pid = ?, runner_ticks = ? WHERE id = ? AND runner_pid IS NULL",
                  (pid, processes.start_ticks(pid), run_id))


def close_run(ws: Workspace, run_id: str, status: str, reason: str) -> bool:
    """End a run whose executor is not there to do it: the run gets `status` and `reason`; its Running steps
    become Failed (Canceled when `status` is), its steps not yet started Canceled. False, changing nothing, if the
    run has ended meanwhile (its executor wrote the end first)."""
    now = now_iso()
    with store.transaction(ws.db) as db:
        row = db.execute(f"SELECT started_at FROM pipeline_runs WHERE id = ? AND {_IN_ACTIVE}", (run_id,)).fetchone()
        if row is None:
            return False
        duration = _seconds_since(row["started_at"]) if row["started_at"] else None
        db.execute("UPDATE pipeline_runs SET status = ?, error = ?, ended_at = ?, duration_s = ? WHERE id = ?",
                   (status, reason, now, duration, run_id))
        db.execute(f"UPDATE pipeline_step_runs SET status = CASE WHEN status = 'Running' AND ? = 'Failed' THEN 'Failed'"
                   f" ELSE 'Canceled' END, error = ?, ended_at = ? WHERE run_id = ? AND {_IN_ACTIVE}",
                   (status, reason, now, run_id))
    return True


def _seconds_since(iso: str) -> float:
    import time
    from datetime import datetime

    return round(max(0.0, time.time() - datetime.fromisoformat(iso).timestamp()), 3)


def reusable(ws: Workspace, digest: str, run_id: str) -> StepRun | None:
    """The latest Completed step run with this hash (in another run)."""
    row = ws.db.execute("SELECT s.* FROM pipeline_step_runs s JOIN pipeline_runs r ON r.id = s.run_id"
                        " WHERE s.hash = ? AND s.status = 'Completed' AND s.run_id != ?"
                        " ORDER BY s.ended_at DESC, s.rowid DESC LIMIT 1", (digest, run_id)).fetchone()
    return _step(row) if row else None


# ---- schedules --------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    id: str
    pipeline: str
    version: int
    cron: str | None
    interval_s: float | None
    parameters: dict[str, Any]
    experiment: str
    status: str  # Active | Disabled
    next_fire_at: float
    last_fire_at: float | None
    last_run_id: str | None
    last_note: str | None
    created_at: str

    @property
    def recurrence(self) -> str:
        return f"cron {self.cron}" if self.cron else f"every {_span(self.interval_s or 0)}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"recurrence": self.recurrence, "next_fire": _iso(self.next_fire_at),
                               "last_fire": _iso(self.last_fire_at) if self.last_fire_at else None}


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _schedule(row: sqlite3.Row) -> Schedule:
    d = dict(row)
    d["parameters"] = json.loads(d["parameters"])
    return Schedule(**d)


def create_schedule(ws: Workspace, pipeline: Pipeline, *, cron: str | None, interval_s: float | None,
                    values: dict[str, Any], experiment: str | None, next_fire_at: float) -> Schedule:
    """Insert an Active schedule; `values` are resolved parameters (see opml.pipelines.schedule.create)."""
    sid = f"sched_{uuid.uuid4().hex[:10]}"
    with store.transaction(ws.db) as db:
        db.execute("INSERT INTO pipeline_schedules (id, pipeline, version, cron, interval_s, parameters, experiment,"
                   " status, next_fire_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'Active', ?, ?)",
                   (sid, pipeline.name, pipeline.version, cron, interval_s, json.dumps(values),
                    experiment or pipeline.name, next_fire_at, now_iso()))
    return get_schedule(ws, sid)


def get_schedule(ws: Workspace, sid: str) -> Schedule:
    check_name(sid, "schedule")
    row = ws.db.execute("SELECT * FROM pipeline_schedules WHERE id = ?", (sid,)).fetchone()
    if row is None:
        raise NotFoundError(f"no schedule {sid!r}", "see `opml pipeline schedule list`")
    return _schedule(row)


def list_schedules(ws: Workspace) -> list[Schedule]:
    return [_schedule(r) for r in ws.db.execute("SELECT * FROM pipeline_schedules ORDER BY created_at")]


def update_schedule(ws: Workspace, sid: str, **fields: Any) -> None:
    _update(ws, "UPDATE pipeline_schedules SET {} WHERE id = ?", fields, (sid,))
