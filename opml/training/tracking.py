"""Log an AutoML experiment to the workspace's MLflow store: a parent run, one child run per candidate.

MLflow's import and first database set-up cost several seconds, so the Tracker does them, and logs
child runs, on a background thread while the search runs; the caller only queues trials.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from opml.errors import OpmlError
from opml.naming import check_name
from opml.output import plain
from opml.workspace.workspace import Workspace

_MAX_PARAM = 6000


def quiet_mlflow() -> None:
    for name in ("mlflow", "alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def setup(ws: Workspace):  # -> mlflow.MlflowClient
    """Point MLflow (tracking and registry) at the workspace and return a client."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    quiet_mlflow()
    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.tracking_uri)
    return mlflow.MlflowClient(ws.tracking_uri, ws.tracking_uri)


def experiment_id(client: Any, ws: Workspace, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = (ws.artifacts_dir / check_name(name, "experiment")).as_uri()  # a new folder: a checked name only
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def fail_orphaned_run(ws: Workspace, experiment: str, run_id: str, error: str) -> str | None:
    """End the MLflow parent run of opml run `run_id`, and its child runs still open, as FAILED now.

    For a run whose process died: nothing else will end them. Returns the parent's MLflow id, or None
    when the run never reached MLflow. `run_id` must be a plain id (it goes into a search filter).
    """
    client = setup(ws)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    ids = [exp.experiment_id]
    parents = client.search_runs(ids, f"tags.`opml.run_id` = '{run_id}'", max_results=10)
    now = int(time.time() * 1000)
    for parent in parents:
        children = client.search_runs(ids, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
                                           " and attributes.status = 'RUNNING'", max_results=10_000)
        for run in (*children, parent):
            if run.info.status in ("RUNNING", "SCHEDULED"):
                client.set_tag(run.info.run_id, "opml.error", error[:5000])
                client.set_terminated(run.info.run_id, "FAILED", end_time=now)
    return parents[0].info.run_id if parents else None


def uri_to_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def _params(d: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v)[:_MAX_PARAM] for k, v in d.items()}


class Tracker:
    """A parent MLflow run plus child runs, logged off the caller's thread."""

    def __init__(self, ws: Workspace, experiment: str, run_name: str, params: dict[str, Any],
                 tags: dict[str, str]) -> None:
        self.ws = ws
        self.experiment = experiment
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.client: Any = None
        self.parent_id = ""
        self.experiment_id = ""
        self.child_ids: dict[int, str] = {}
        self._start = (run_name, params, tags)
        self._thread = threading.Thread(target=self._work, name="opml-tracker", daemon=True)
        self._thread.start()

    # ---- caller side --------------------------------------------------------
    def trial(self, trial: Any, ended_at: float | None = None) -> None:
        self._queue.put(("trial", (trial, ended_at or time.time())))

    def wait(self) -> None:
        """Block until every queued trial is logged; re-raise a failure of the logging thread."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise OpmlError(f"could not write to the MLflow tracking store: {self._error}",
                            f"check {self.ws.tracking_uri}") from self._error

    def wait_ready(self, timeout: float = 120) -> str:
        """Wait for the parent run to exist; returns its id."""
        self._ready.wait(timeout)
        if self._error is not None:
            raise OpmlError(f"could not open the MLflow tracking store: {self._error}",
                            f"check {self.ws.tracking_uri}") from self._error
        return self.parent_id

    # ---- logging thread -----------------------------------------------------
    def _work(self) -> None:
        try:
            self.client = setup(self.ws)
            self.experiment_id = experiment_id(self.client, self.ws, self.experiment)
            run_name, params, tags = self._start
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
            self.parent_id = run.info.run_id
            self.client.log_batch(self.parent_id, params=_as_params(params))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            self._drain()
            return
        self._ready.set()
        while (item := self._queue.get()) is not None:
            try:
                self._log_trial(*item[1])
            except BaseException as exc:
                self._error = exc
                self._drain()
                return

    def _drain(self) -> None:
        while self._queue.get() is not None:
            pass

    def _log_trial(self, trial: Any, ended_at: float) -> None:
        from mlflow.entities import Metric, RunTag

        start_ms = int((ended_at - float(trial.duration_s)) * 1000)
        end_ms = int(ended_at * 1000)
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "opml.pipeline": trial.pipeline_name,
            "opml.algorithm": str(trial.algorithm),
            "opml.iteration": str(trial.iteration),
        }
        run = self.client.create_run(self.experiment_id, start_time=start_ms,
                                     run_name=f"{trial.iteration}: {trial.pipeline_name}", tags=tags)
        rid = run.info.run_id
        self.child_ids[int(trial.iteration)] = rid
        metrics = {k: v for k, v in (trial.metrics or {}).items() if _is_number(v)}
        metrics["duration_s"] = float(trial.duration_s)
        for cls, values in (getattr(trial, "per_class", None) or {}).items():
            for name, v in values.items():
                if _is_number(v):
                    metrics[f"{name}_{cls}"] = v
        extra_tags = []
        if getattr(trial, "confusion_matrix", None) is not None:
            extra_tags.append(RunTag("opml.confusion_matrix", json.dumps(plain(trial.confusion_matrix))))
        if trial.status != "succeeded" and getattr(trial, "error", None):
            extra_tags.append(RunTag("opml.error", str(trial.error)[:5000]))
        self.client.log_batch(
            rid,
            metrics=[Metric(k, float(v), end_ms, 0) for k, v in metrics.items()],
            params=_as_params({"algorithm": trial.algorithm, "scaler": getattr(trial, "scaler", ""),
                               **(trial.params or {})}),
            tags=extra_tags,
        )
        self.client.set_terminated(rid, "FINISHED" if trial.status == "succeeded" else "FAILED", end_time=end_ms)

    # ---- after the search ---------------------------------------------------
    def finish(self, status: str, metrics: dict[str, float], tags: dict[str, str],
               artifacts: list[Path]) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.parent_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if _is_number(v)],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        for path in artifacts:
            self.client.log_artifact(self.parent_id, str(path))
        self.client.set_terminated(self.parent_id, status)

    def fail(self, error: str) -> None:
        if self.client is not None and self.parent_id:
            self.client.set_tag(self.parent_id, "opml.error", error[:5000])
            self.client.set_terminated(self.parent_id, "FAILED")


def _as_params(d: dict[str, Any]):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in _params(d).items()]


def _is_number(v: Any) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return f == f and f not in (float("inf"), float("-inf"))
