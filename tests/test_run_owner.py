"""A run whose `opml train` process died is marked Failed, with the reason, by the next read, in opml.db and MLflow.

Each AutoML run records its process (pid + start time); a read (`opml runs list/show`, `deploy --best`) that finds
the process gone, or the pid now held by another process, fails the run and ends its MLflow run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import Project

pytestmark = pytest.mark.timeout(300)


def poll(what, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    return None


def query(db_path, sql: str, *args):
    if not db_path.is_file():
        return []
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # the schema is still being created
        return []
    finally:
        db.close()


def test_killed_train_is_failed_on_the_next_read_in_opml_and_mlflow(tmp_path, bank_csv):
    proj = Project(tmp_path)
    proj.ok("auth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPML_")} | {
        "OPML_WORKSPACE": str(proj.ws), "OPML_CONFIGS": str(proj.configs)}
    proc = subprocess.Popen([sys.executable, "-m", "opml", "train", "--data", str(bank_csv), "--time-budget", "30"],
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        running = poll(lambda: query(proj.ws / "opml.db", "SELECT id FROM automl_runs WHERE status = 'Running'"), 120)
        assert running, "the run never showed Running"
        run_id = running[0][0]
        mlflow_db = proj.ws / "mlflow.db"
        parent = poll(lambda: query(mlflow_db, "SELECT run_uuid FROM tags WHERE key = 'opml.run_id' AND value = ?",
                                    run_id), 120)
        assert parent, "the MLflow parent run was never created"
        # while its process lives, a read leaves the run alone
        listed = json.loads(proj.ok("runs", "list", "--json").stdout)
        assert [(r["id"], r["status"]) for r in listed] == [(run_id, "Running")]
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    t0 = time.monotonic()
    listed = json.loads(proj.ok("runs", "list", "--json").stdout)
    assert time.monotonic() - t0 < 30
    assert [(r["id"], r["status"]) for r in listed] == [(run_id, "Failed")]
    error = listed[0]["error"]
    assert f"process {proc.pid}" in error and "died" in error, error
    assert listed[0]["ended_at"] and listed[0]["duration_s"] > 0
    shown = proj.ok("runs", "show", run_id).stdout
    assert "Failed" in shown and f"process {proc.pid}" in shown

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{mlflow_db}")
    run = client.get_run(parent[0][0])
    assert run.info.status == "FAILED" and run.info.end_time, run.info
    assert "died" in run.data.tags["opml.error"]
    # no child run of it is left RUNNING either
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert all(c.info.status != "RUNNING" and c.info.end_time for c in children)
    # nothing to do on the next read; the run stays as it was failed
    again = json.loads(proj.ok("runs", "show", run_id, "--json").stdout)
    assert (again["status"], again["error"], again["ended_at"]) == ("Failed", error, listed[0]["ended_at"])


def test_a_recycled_pid_is_not_the_owner(workspace):
    """The pid still runs (this test's own), but it started at another time: the run's process is gone."""
    from opml.processes import start_ticks
    from opml.training import runs

    runs.start_run(workspace, "AutoML_recycled01", "exp", "d:1", "AUC_weighted")
    runs.start_run(workspace, "AutoML_alive00001", "exp", "d:1", "AUC_weighted")
    with workspace.db:
        workspace.db.execute("UPDATE automl_runs SET owner_start = ? WHERE id = 'AutoML_recycled01'",
                             (start_ticks(os.getpid()) - 1,))
    by_id = {r.id: r for r in runs.list_runs(workspace)}
    assert by_id["AutoML_alive00001"].status == "Running"  # this very process: alive
    failed = by_id["AutoML_recycled01"]
    assert failed.status == "Failed" and f"process {os.getpid()}" in failed.error and "died" in failed.error
    # an explicit call (what a pipeline executor's reaper uses) fails a run once, and says whether it did
    assert runs.fail_dead_run(workspace, "AutoML_alive00001", "executor process 1 died (killed?)") is True
    assert runs.get_run(workspace, "AutoML_alive00001").error == "executor process 1 died (killed?)"
    assert runs.fail_dead_run(workspace, "AutoML_alive00001", "again") is False
