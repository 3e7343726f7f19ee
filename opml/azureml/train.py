"""`opml train`, `opml runs` on Azure ML: submit the AutoML job, follow it, rank its children, register the best."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from opml.azureml import automl, metrics, models
from opml.azureml import data as assets
from opml.azureml.client import AzureML, azure_errors
from opml.config import AutoMLSettings
from opml.errors import NotFoundError, OpmlError

TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding", "Paused")
LEADERBOARD_METRICS = ("AUC_weighted", "accuracy", "average_precision_score_weighted", "f1_score_macro",
                       "norm_macro_recall", "log_loss")


@dataclass(frozen=True)
class ChildRun:
    """One finished AutoML child job (a candidate pipeline), as the progress callback sees it."""

    name: str
    iteration: int
    pipeline_name: str
    algorithm: str
    status: str
    metrics: dict[str, float]
    score: float | None
    best_so_far: float | None = None


@dataclass
class AzureTrainResult:
    run_id: str  # the AutoML parent job's name
    status: str
    studio_url: str | None
    dataset: assets.AzureDataset
    settings: AutoMLSettings
    model: models.AzureModel | None
    summary: dict[str, Any]
    duration_s: float
    children: list[ChildRun] = field(default_factory=list)


def train(az: AzureML, settings: AutoMLSettings, *, data: str | None = None,
          on_trial: Callable[[ChildRun], None] | None = None, on_status: Callable[[str], None] | None = None,
          on_submit: Callable[[str, str | None], None] | None = None, progress: bool = True, no_wait: bool = False,
          job_name: str | None = None) -> AzureTrainResult:
    """Register the data, submit the AutoML job to azureml.compute, follow it, register the best model.

    Bad settings (e.g. a primary_metric Azure does not know) fail before any request. `on_submit(name,
    studio_url)` is called once the job is accepted; `on_status` on each status change; `on_trial` per child.
    """
    automl.azure_metric(settings.primary_metric)  # before any request
    started = time.monotonic()
    dataset, _ = assets.register_dataset(az, settings.dataset, path=data, label=settings.label, progress=progress)
    job = automl.build_job(settings, compute=az.cfg.compute, training_data=dataset.mltable or "", name=job_name)
    job.tags = dict(job.tags or {}) | {"opml.dataset": dataset.ref}
    with azure_errors("AutoML job"):
        submitted = az.ml.jobs.create_or_update(job)
    name, studio = submitted.name, submitted.studio_url
    if on_submit:
        on_submit(name, studio)
    if no_wait:
        return AzureTrainResult(run_id=name, status=_status(submitted), studio_url=studio, dataset=dataset,
                                settings=settings, model=None,
                                summary=_summary(settings.model_dump(mode="json"), name, [], None, None, None),
                                duration_s=time.monotonic() - started)
    status, children = follow(az, name, settings.primary_metric, on_trial=on_trial, on_status=on_status)
    duration = time.monotonic() - started
    if status != "Completed":
        raise OpmlError(f"AutoML job {name} ended {status}", f"see {studio}")
    best = _best(az, name, [c for c in children if c.status == "Completed"])
    model = models.register_best(az, name=settings.model_name, run_id=name, child_run=best.name,
                                 pipeline=best.pipeline_name, metrics=best.metrics,
                                 primary_metric=settings.primary_metric, dataset=dataset.ref)
    return AzureTrainResult(run_id=name, status=status, studio_url=studio, dataset=dataset, settings=settings,
                            model=model,
                            summary=_summary(settings.model_dump(mode="json"), name, children, best, model, duration),
                            duration_s=duration, children=children)


def follow(az: AzureML, name: str, primary_metric: str, *, on_trial: Callable[[ChildRun], None] | None = None,
           on_status: Callable[[str], None] | None = None, timeout_s: float | None = None,
           ) -> tuple[str, list[ChildRun]]:
    """Poll the job until it ends, reporting status changes and each child run as it finishes."""
    seen: dict[str, ChildRun] = {}
    status = ""
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while True:
        with azure_errors("AutoML job", name):
            job = az.ml.jobs.get(name)
        if _status(job) != status:
            status = _status(job)
            if on_status:
                on_status(status)
        if status in ("Running", *TERMINAL):
            for child in children(az, name, primary_metric, skip=set(seen)):
                best = max([c.score for c in (*seen.values(), child) if c.score is not None], default=None)
                child = ChildRun(**(asdict(child) | {"best_so_far": best}))
                seen[child.name] = child
                if on_trial:
                    on_trial(child)
        if status in TERMINAL:
            return status, sorted(seen.values(), key=lambda c: c.iteration)
        if deadline and time.monotonic() > deadline:
            raise OpmlError(f"AutoML job {name} still {status} after {timeout_s:.0f} s", "see `opml runs show`")
        time.sleep(az.poll_seconds)


def children(az: AzureML, name: str, primary_metric: str, skip: set[str] | None = None) -> list[ChildRun]:
    """The finished child jobs of an AutoML job (Completed ones with their metrics; Failed/Canceled ones too)."""
    out = []
    with azure_errors("child jobs of", name):
        for job in az.ml.jobs.list(parent_job_name=name):
            status = _status(job) if job is not None else ""
            if job is None or job.name in (skip or ()) or status not in TERMINAL:
                continue
            props = job.properties or {}
            found = metrics.run_metrics(az, job.name) if status == "Completed" else {}
            score = found.get(primary_metric)
            if score is None and status == "Completed" and props.get("score") not in (None, ""):
                score = float(props["score"])
            algorithm = props.get("run_algorithm") or ""
            # "MaxAbsScaler, LightGBM": how Azure ML studio and the local backend name a candidate pipeline
            pipeline = ", ".join(p for p in (props.get("run_preprocessor"), algorithm) if p) or str(job.display_name)
            out.append(ChildRun(name=job.name, iteration=int(props.get("iteration", len(out))), pipeline_name=pipeline,
                                algorithm=algorithm, status=status, metrics=found, score=score))
    return out


def _status(job: Any) -> str:
    """JobStatus enum or plain string -> 'Completed' etc."""
    value = getattr(job.status, "value", job.status)
    return str(value) if value is not None else "NotStarted"


def _best(az: AzureML, name: str, kids: list[ChildRun]) -> ChildRun:
    if not kids:
        raise OpmlError(f"AutoML job {name} finished without a completed child run")
    with azure_errors("AutoML job", name):
        tag = (az.ml.jobs.get(name).tags or {}).get("automl_best_child_run_id")
    by_name = {c.name: c for c in kids}
    return by_name.get(tag) or max(kids, key=lambda c: c.score if c.score is not None else float("-inf"))


def _summary(settings: dict[str, Any], name: str, kids: list[ChildRun], best: ChildRun | None,
             model: models.AzureModel | None, duration: float | None) -> dict[str, Any]:
    """The local summary's keys (opml.training.stage._summary); what Azure does not report is None."""
    done = [c for c in kids if c.status == "Completed"]
    ranked = sorted(done, key=lambda c: c.score if c.score is not None else float("-inf"), reverse=True)
    leaderboard = [{"rank": i, "iteration": c.iteration, "pipeline": c.pipeline_name, "algorithm": c.algorithm,
                    "metrics": {k: v for k, v in c.metrics.items() if k in LEADERBOARD_METRICS},
                    "scoring_cost": None, "duration_s": None, "child_run": c.name} for i, c in enumerate(ranked, 1)]
    failed = [{"iteration": c.iteration, "pipeline": c.pipeline_name, "error": f"child job {c.name} {c.status}"}
              for c in kids if c.status != "Completed"]
    return {
        "mlflow_run_id": name,
        "mlflow_experiment_id": None,
        "settings": settings,
        "not_on_azure": list(automl.NO_AZURE_MEANING),
        "guardrails": None,
        "leaderboard": leaderboard,
        "failed_trials": failed,
        "best": ({"pipeline": best.pipeline_name, "metrics": best.metrics, "per_class": None,
                  "confusion_matrix": None} if best else None),
        "selection": {"rule": "best", "child_run": best.name} if best else {},
        "threshold": None,
        "calibration": None,
        "feature_importance": None,
        "timings": {},
        "model": model.ref if model else None,
        "artifacts_dir": None,
        "duration_s": round(duration, 2) if duration is not None else None,
    }


@dataclass(frozen=True)
class AzureRun:
    """The same fields as opml.training.runs.AutoMLRun."""

    id: str
    experiment: str
    dataset: str | None
    status: str
    primary_metric: str | None
    best_pipeline: str | None
    best_score: float | None
    best_child_run: str | None
    trials: int | None  # None in `runs list` (children are read by `runs show`)
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    error: str | None
    summary: dict[str, Any]
    studio_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run(az: AzureML, job: Any, kids: list[ChildRun] | None = None) -> AzureRun:
    """An AzureRun from the parent job; the leaderboard and best child only when `kids` were read."""
    tags = job.tags or {}
    metric = tags.get("opml.primary_metric") or automl.opml_metric(job)
    done = [c for c in kids or [] if c.status == "Completed"]
    ranked = sorted(done, key=lambda c: c.score if c.score is not None else float("-inf"), reverse=True)
    best = next((c for c in ranked if c.name == tags.get("automl_best_child_run_id")), ranked[0] if ranked else None)
    created = job.creation_context.created_at if job.creation_context else None
    data_ref = tags.get("opml.dataset") or getattr(getattr(job, "training_data", None), "path", None)
    summary: dict[str, Any] = {}
    if kids is not None:
        settings = {"experiment_name": job.experiment_name, "primary_metric": metric}
        model = _model_of(az, job.name, tags.get("opml.model_name"))
        summary = _summary(settings, job.name, kids, best, model, None)
    return AzureRun(id=job.name, experiment=job.experiment_name, dataset=str(data_ref) if data_ref else None,
                    status=_status(job), primary_metric=metric, best_pipeline=best.pipeline_name if best else None,
                    best_score=best.score if best else None, best_child_run=best.name if best else None,
                    trials=len(kids) if kids is not None else None, started_at=str(created) if created else None,
                    ended_at=None, duration_s=None, error=None, summary=summary, studio_url=job.studio_url)


def _model_of(az: AzureML, run_id: str, name: str | None) -> models.AzureModel | None:
    """The version of `name` opml registered from this run, if any."""
    if not name:
        return None
    from azure.core.exceptions import ResourceNotFoundError

    try:
        versions = models.list_versions(az, name)
    except (NotFoundError, ResourceNotFoundError):
        return None
    return next((m for m in versions if m.run_id == run_id), None)


def list_runs(az: AzureML, experiment: str | None = None) -> list[AzureRun]:
    """AutoML jobs in the workspace, newest first (children are not read: `runs show` does that)."""
    with azure_errors("jobs"):
        jobs = [j for j in az.ml.jobs.list() if j is not None and j.type == "automl"]
    return [_run(az, j) for j in jobs if experiment is None or j.experiment_name == experiment]


def get_run(az: AzureML, run_id: str) -> AzureRun:
    """One AutoML job with its leaderboard read from the child jobs' metrics."""
    with azure_errors("AutoML job", run_id):
        job = az.ml.jobs.get(run_id)
    if job.type != "automl":
        raise NotFoundError(f"job {run_id!r} is not an AutoML job", "see `opml runs list`")
    metric = (job.tags or {}).get("opml.primary_metric") or automl.opml_metric(job) or "AUC_weighted"
    return _run(az, job, children(az, run_id, metric))
