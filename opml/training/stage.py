"""The `train` stage: register the data if needed, run AutoML, track it in MLflow, register the best model."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opml.config import AutoMLSettings
from opml.data.registry import Dataset
from opml.data.stage import training_dataset
from opml.errors import OpmlError
from opml.output import plain
from opml.training import runs
from opml.training.models import RegisteredModel, log_and_register
from opml.training.tracking import Tracker, uri_to_path
from opml.workspace.workspace import Workspace

LEADERBOARD_METRICS = ("AUC_weighted", "accuracy", "average_precision_score_weighted", "f1_score_macro",
                       "norm_macro_recall")


@dataclass
class TrainResult:
    run_id: str
    mlflow_run_id: str
    dataset: Dataset
    settings: AutoMLSettings
    experiment: Any  # opml.automl.experiment.ExperimentResult
    model: RegisteredModel
    summary: dict[str, Any]
    duration_s: float


def train(ws: Workspace, settings: AutoMLSettings, *, data: str | None = None,
          on_trial: Callable[[Any], None] | None = None, progress: bool = True) -> TrainResult:
    """Run one AutoML experiment end to end. Bad input (a column in settings.drop_columns the data lacks
    included) fails before any work starts; dropped columns are not part of the model's input."""
    from opml.automl.experiment import run_experiment
    from opml.automl.guardrails import validate_input

    started = time.monotonic()
    dataset = training_dataset(ws, settings.dataset, path=data, label=settings.label, progress=progress)
    df = dataset.load()
    validate_input(df, settings)

    run_id = f"AutoML_{uuid.uuid4().hex[:12]}"
    tracker = Tracker(ws, settings.experiment_name, run_id, params=_settings_params(settings),
                      tags={"opml.kind": "automl", "opml.run_id": run_id, "opml.dataset": dataset.ref,
                            "opml.primary_metric": settings.primary_metric})
    runs.start_run(ws, run_id, settings.experiment_name, dataset.ref, settings.primary_metric)

    def trial_done(trial: Any) -> None:
        tracker.trial(trial)
        if on_trial:
            on_trial(trial)

    try:
        result = run_experiment(df, settings, on_trial=trial_done, scratch=ws.cache_dir)
        tracker.wait()
        with tempfile.TemporaryDirectory(prefix="opml-run-") as tmp:
            artifacts = _write_artifacts(result, Path(tmp))
            best = result.best
            child = tracker.child_ids.get(int(best.iteration))
            if child is None:
                raise OpmlError(f"the best candidate ({best.pipeline_name}) has no tracked run")
            info = {
                "dataset": dataset.ref,
                "label": settings.label,
                "primary_metric": settings.primary_metric,
                "threshold": plain(result.threshold),
                "classes": [str(c) for c in result.model.classes_],
                "schema": plain(getattr(result.model, "schema_", None)),
            }
            model = log_and_register(
                ws, tracker.client, name=settings.model_name, model=result.model, child_run=child, run_id=run_id,
                sample=df.drop(columns=[settings.label, *settings.drop_columns]).head(50), pipeline=best.pipeline_name,
                metrics=plain(best.metrics), info=info,
            )
            tracker.finish("FINISHED", metrics={f"best_{k}": v for k, v in best.metrics.items()},
                           tags={"opml.best_pipeline": best.pipeline_name, "opml.best_child_run": child,
                                 "opml.model_selection": settings.model_selection,
                                 "opml.registered_model": model.ref},
                           artifacts=artifacts)
        artifacts_dir = uri_to_path(tracker.client.get_run(tracker.parent_id).info.artifact_uri)
        duration = time.monotonic() - started
        summary = _summary(result, settings, tracker, model, artifacts_dir, duration)
        runs.end_run(ws, run_id, "Completed", duration_s=duration, trials=len(result.trials),
                     best_pipeline=best.pipeline_name, best_score=best.metrics.get(settings.primary_metric),
                     best_child_run=child, summary=summary)
    except BaseException as exc:
        status = "Canceled" if isinstance(exc, KeyboardInterrupt) else "Failed"
        message = exc.line() if isinstance(exc, OpmlError) else f"{type(exc).__name__}: {exc}"
        runs.end_run(ws, run_id, status, duration_s=time.monotonic() - started, error=message,
                     summary={"mlflow_run_id": tracker.parent_id})
        with contextlib.suppress(Exception):  # the tracking store itself may be what failed
            tracker.fail(message)
        raise
    return TrainResult(run_id=run_id, mlflow_run_id=tracker.parent_id, dataset=dataset, settings=settings,
                       experiment=result, model=model, summary=summary, duration_s=duration)


def _settings_params(settings: AutoMLSettings) -> dict[str, Any]:
    d = settings.model_dump(exclude={"dataset"})
    return {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in d.items()}


def _write_artifacts(result: Any, out: Path) -> list[Path]:
    from opml.automl.plots import write_calibration_plot, write_plots

    files = [*write_plots(result, out), write_calibration_plot(result, out)]
    for name, obj in (
        ("guardrails.json", result.guardrails),
        ("leaderboard.json", [_trial_row(t) for t in result.leaderboard]),
        ("threshold.json", result.threshold),
        ("calibration.json", result.calibration),
        ("feature_importance.json", result.feature_importance),
    ):
        path = out / name
        path.write_text(json.dumps(plain(obj), indent=2, default=str))
        files.append(path)
    return files


def _trial_row(t: Any) -> dict[str, Any]:
    return {"iteration": t.iteration, "pipeline": t.pipeline_name, "algorithm": t.algorithm,
            "metrics": plain(t.metrics), "scoring_cost": int(t.scoring_cost),
            "duration_s": round(float(t.duration_s), 3)}


def _summary(result: Any, settings: AutoMLSettings, tracker: Tracker, model: RegisteredModel,
             artifacts_dir: Path, duration: float) -> dict[str, Any]:
    leaderboard = []
    for rank, t in enumerate(result.leaderboard, 1):
        row = _trial_row(t) | {"rank": rank, "child_run": tracker.child_ids.get(int(t.iteration))}
        row["metrics"] = {k: v for k, v in row["metrics"].items() if k in (*LEADERBOARD_METRICS, "log_loss")}
        leaderboard.append(row)
    failed = [{"iteration": t.iteration, "pipeline": t.pipeline_name, "error": str(t.error)[:300]}
              for t in result.trials if t.status != "succeeded"]
    return {
        "mlflow_run_id": tracker.parent_id,
        "mlflow_experiment_id": tracker.experiment_id,
        "settings": settings.model_dump(mode="json"),
        "guardrails": plain(result.guardrails),
        "leaderboard": leaderboard,
        "failed_trials": failed,
        "best": {"pipeline": result.best.pipeline_name, "metrics": plain(result.best.metrics),
                 "per_class": plain(getattr(result.best, "per_class", None)),
                 "confusion_matrix": plain(getattr(result.best, "confusion_matrix", None))},
        "selection": plain(getattr(result, "selection", {})),
        "threshold": plain(result.threshold),
        "calibration": plain(getattr(result, "calibration", {})),
        "feature_importance": plain(result.feature_importance)[:20],
        "timings": plain(getattr(result, "timings", {})),
        "model": model.ref,
        "artifacts_dir": str(artifacts_dir),
        "duration_s": round(duration, 2),
    }
