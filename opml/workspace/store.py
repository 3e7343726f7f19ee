"""The workspace's SQLite metadata store: WAL, busy timeout, forward-only schema migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from opml.errors import WorkspaceError

# Each entry moves the schema from version i to i+1. Append only; never edit a shipped one.
MIGRATIONS: list[str] = [
    # 1: identities (service principals) and datasets
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE identities (
        name        TEXT PRIMARY KEY,
        client_id   TEXT NOT NULL UNIQUE,
        secret_salt BLOB NOT NULL,
        secret_hash BLOB NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE datasets (
        name       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        source     TEXT NOT NULL,
        path       TEXT NOT NULL,
        label      TEXT NOT NULL,
        profile    TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (name, version),
        UNIQUE (name, sha256)
    );
    """,
    # 2: AutoML runs and registered models, indexed here so list commands and endpoints
    #    need not import MLflow (which holds the full detail: child runs, artifacts, registry)
    """
    CREATE TABLE automl_runs (
        id             TEXT PRIMARY KEY,
        experiment     TEXT NOT NULL,
        dataset        TEXT NOT NULL,
        status         TEXT NOT NULL,
        primary_metric TEXT NOT NULL,
        best_pipeline  TEXT,
        best_score     REAL,
        best_child_run TEXT,
        trials         INTEGER NOT NULL DEFAULT 0,
        started_at     TEXT NOT NULL,
        ended_at       TEXT,
        duration_s     REAL,
        error          TEXT,
        summary        TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX automl_runs_by_experiment ON automl_runs (experiment, started_at);
    CREATE TABLE models (
        name       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        run_id     TEXT NOT NULL,
        child_run  TEXT NOT NULL,
        path       TEXT NOT NULL,
        pipeline   TEXT NOT NULL,
        metrics    TEXT NOT NULL,
        info       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    """,
    # 3: scoring endpoints (their keys live in secrets/, never here)
    """
    CREATE TABLE endpoints (
        name         TEXT PRIMARY KEY,
        model        TEXT NOT NULL,
        host         TEXT NOT NULL,
        port         INTEGER NOT NULL,
        pid          INTEGER,
        auth_enabled INTEGER NOT NULL,
        settings     TEXT NOT NULL,
        inference    TEXT,
        started_at   TEXT,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    );
    """,
    # 4: pipelines (versioned definitions), published pipelines, pipeline runs, step runs, schedules
    """
    CREATE TABLE pipelines (
        name        TEXT NOT NULL,
        version     INTEGER NOT NULL,
        description TEXT NOT NULL,
        spec        TEXT NOT NULL,
        digest      TEXT NOT NULL,
        source      TEXT NOT NULL,
        configs     TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (name, version),
        UNIQUE (name, digest)
    );
    CREATE TABLE published_pipelines (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        status     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE pipeline_runs (
        id               TEXT PRIMARY KEY,
        pipeline         TEXT NOT NULL,
        version          INTEGER NOT NULL,
        experiment       TEXT NOT NULL,
        parameters       TEXT NOT NULL,
        status           TEXT NOT NULL,
        error            TEXT,
        published_id     TEXT,
        schedule_id      TEXT,
        submitted_by     TEXT NOT NULL,
        runner_pid       INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at       TEXT NOT NULL,
        started_at       TEXT,
        ended_at         TEXT,
        duration_s       REAL
    );
    CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs (pipeline, created_at);
    CREATE INDEX pipeline_runs_by_status ON pipeline_runs (status);
    CREATE TABLE pipeline_step_runs (
        run_id      TEXT NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
        step        TEXT NOT NULL,
        position    INTEGER NOT NULL,
        type        TEXT NOT NULL,
        status      TEXT NOT NULL,
        reused      INTEGER NOT NULL DEFAULT 0,
        reused_from TEXT,
        hash        TEXT,
        inputs      TEXT NOT NULL DEFAULT '{}',
        settings    TEXT NOT NULL DEFAULT '{}',
        outputs     TEXT NOT NULL DEFAULT '{}',
        error       TEXT,
        pid         INTEGER,
        started_at  TEXT,
        ended_at    TEXT,
        duration_s  REAL,
        PRIMARY KEY (run_id, step)
    );
    CREATE INDEX pipeline_step_runs_by_hash ON pipeline_step_runs (hash, status);
    CREATE TABLE pipeline_schedules (
        id           TEXT PRIMARY KEY,
        pipeline     TEXT NOT NULL,
        version      INTEGER NOT NULL,
        cron         TEXT,
        interval_s   REAL,
        parameters   TEXT NOT NULL,
        experiment   TEXT NOT NULL,
        status       TEXT NOT NULL,
        next_fire_at REAL NOT NULL,
        last_fire_at REAL,
        last_run_id  TEXT,
        last_note    TEXT,
        created_at   TEXT NOT NULL
    );
    """,
    # 5: a pipeline run's executor is recorded as pid + start time (opml.processes.start_ticks), so a recycled
    #    pid is not taken for it
    """
    ALTER TABLE pipeline_runs ADD COLUMN runner_ticks INTEGER;
    """,
    # 6: an AutoML run's process (host, pid, start time), so a read can tell a run whose process died
    """
    ALTER TABLE automl_runs ADD COLUMN owner_host TEXT;
    ALTER TABLE automl_runs ADD COLUMN owner_pid INTEGER;
    ALTER TABLE automl_runs ADD COLUMN owner_start INTEGER;
    """,
]

BUSY_TIMEOUT_MS = 30_000


def connect(path: Path, on_new: Callable[[], None] | None = None) -> sqlite3.Connection:
    """Open the store, creating or migrating it to the newest schema.

    `on_new` runs (under the write lock) before the schema is created in a database that has none;
    it may raise to refuse, e.g. when the database was lost but the rest of the workspace was not.
    """
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise WorkspaceError(f"cannot open workspace database {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if schema_version(conn) == 0 and conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
            # Committed migrations always bump user_version, so tables at version 0 are someone else's.
            raise WorkspaceError(
                f"{path} is an SQLite database but not an opml workspace database",
                "point OPML_WORKSPACE at another folder, or move that file away",
            )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn, on_new=on_new)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise WorkspaceError(
            f"workspace database {path} is unreadable ({exc})",
            "restore it from a backup or point OPML_WORKSPACE at another folder",
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection, migrations: list[str] | None = None, on_new: Callable[[], None] | None = None
) -> int:
    """Apply pending migrations atomically; safe when several processes start at once.

    `on_new` runs before the first migration of an empty database and may veto it.
    """
    steps = MIGRATIONS if migrations is None else migrations
    if schema_version(conn) == len(steps):
        return len(steps)
    with transaction(conn):
        # Re-read inside the write lock: another process may have migrated meanwhile.
        current = schema_version(conn)
        if current > len(steps):
            raise WorkspaceError(
                f"workspace schema version {current} is newer than this opml knows ({len(steps)})",
                "upgrade opml",
            )
        if current == 0 and on_new is not None:
            on_new()
        for version in range(current, len(steps)):
            for statement in _statements(steps[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
    return len(steps)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction, so split and run one by one.
    return [s.strip() for s in script.split(";") if s.strip()]


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the lock up front, so concurrent writers queue, not fail."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
