"""`opml train`, `opml runs`, `opml models`, `opml predict`, `opml ui`: AutoML and what it produces."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from opml.cli.base import Ctx, OpmlGroup, emit_json, json_option, kv, pass_ctx, table


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="AutoML settings file (default: <configs>/automl.yaml).")
@click.option("--data", help="Local CSV to train on (registered first); default: the configured dataset.")
@click.option("--experiment", help="Experiment name (default: automl.yaml experiment_name).")
@click.option("--time-budget", type=float, help="Wall-time budget in seconds (experiment_timeout_seconds).")
@click.option("--max-trials", type=int, help="Stop after N candidates (reproducible runs).")
@click.option("--model-selection", type=click.Choice(["one_se", "best"]),
              help="one_se: cheapest to score within 1 standard error of the top score; best: the top score.")
@json_option
@pass_ctx
def train(ctx: Ctx, config_file: Path | None, data: str | None, experiment: str | None,
          time_budget: float | None, max_trials: int | None, model_selection: str | None, as_json: bool) -> None:
    """Run an AutoML classification experiment and register the best model."""
    from opml.training.progress import TrialProgress
    from opml.training.stage import train as run_train
    from opml.training.stage import with_overrides

    settings = with_overrides(ctx.automl(config_file), experiment=experiment, time_budget=time_budget,
                              max_trials=max_trials, model_selection=model_selection)
    ws = ctx.workspace()
    bar = TrialProgress(settings.primary_metric, settings.experiment_timeout_seconds, settings.max_trials)
    try:
        result = run_train(ws, settings, data=data, on_trial=bar.update, progress=not as_json)
    finally:
        bar.close()
    if as_json:
        emit_json({"run_id": result.run_id, "status": "Completed", "dataset": result.dataset.ref,
                   "model": result.model.ref} | result.summary)
        return
    from opml.training.report import render

    click.echo(render(result.summary, run_id=result.run_id))


@click.group(cls=OpmlGroup)
def runs() -> None:
    """AutoML runs (experiments) in the workspace."""


@runs.command("list")
@click.option("--experiment", help="Only runs of this experiment.")
@json_option
@pass_ctx
def runs_list(ctx: Ctx, experiment: str | None, as_json: bool) -> None:
    """List AutoML runs, newest first."""
    from opml.training.runs import list_runs

    items = list_runs(ctx.workspace(), experiment)
    if as_json:
        emit_json([{k: v for k, v in r.to_dict().items() if k != "summary"} for r in items])
    elif not items:
        click.echo("No AutoML runs; start one with `opml train`.")
    else:
        rows = [(r.id, r.experiment, r.status, r.dataset, r.best_pipeline or "-",
                 f"{r.best_score:.4f}" if r.best_score is not None else "-", r.trials,
                 f"{r.duration_s:.0f}s" if r.duration_s else "-", r.started_at) for r in items]
        click.echo(table(rows, ["RUN", "EXPERIMENT", "STATUS", "DATASET", "BEST PIPELINE", "SCORE", "TRIALS",
                                "DURATION", "STARTED"]))


@runs.command("show")
@click.argument("run_id")
@json_option
@pass_ctx
def runs_show(ctx: Ctx, run_id: str, as_json: bool) -> None:
    """Show a run: leaderboard, best model, guardrails, threshold, feature importance, artifacts."""
    from opml.training.runs import get_run

    run = get_run(ctx.workspace(), run_id)
    if as_json:
        emit_json(run.to_dict())
        return
    from opml.training.report import render

    click.echo(f"{run.id}  experiment {run.experiment}  dataset {run.dataset}  started {run.started_at}")
    if run.error:
        click.echo(f"error: {run.error}")
    click.echo(render(run.summary | {"duration_s": run.duration_s or 0}, run_id=run.id, status=run.status))


@click.group(cls=OpmlGroup)
def models() -> None:
    """Registered models."""


@models.command("list")
@json_option
@pass_ctx
def models_list(ctx: Ctx, as_json: bool) -> None:
    """List registered models and versions."""
    from opml.training.models import list_models

    items = list_models(ctx.workspace())
    if as_json:
        emit_json([m.to_dict() for m in items])
    elif not items:
        click.echo("No registered models; `opml train` registers the best one.")
    else:
        rows = [(m.ref, m.pipeline, m.info.get("primary_metric", ""),
                 f"{m.metrics.get(m.info.get('primary_metric', ''), float('nan')):.4f}", m.run_id, m.created_at)
                for m in items]
        click.echo(table(rows, ["MODEL", "PIPELINE", "METRIC", "SCORE", "RUN", "CREATED"]))


@models.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
@json_option
@pass_ctx
def models_show(ctx: Ctx, ref: str, as_json: bool) -> None:
    """Show a registered model: pipeline, metrics, threshold, input schema, files."""
    from opml.training.models import get_model

    m = get_model(ctx.workspace(), ref)
    if as_json:
        emit_json(m.to_dict())
        return
    thr = m.info.get("threshold") or {}
    click.echo(kv([("model", m.ref), ("pipeline", m.pipeline), ("run", m.run_id), ("mlflow run", m.child_run),
                   ("dataset", m.info.get("dataset")), ("classes", ", ".join(m.info.get("classes", []))),
                   ("decision threshold", thr.get("applied", thr)), ("path", m.path), ("created", m.created_at)]))
    metrics = sorted((k, v) for k, v in m.metrics.items() if isinstance(v, int | float))
    click.echo("\n" + table([(k, f"{v:.4f}") for k, v in metrics], ["METRIC", "VALUE"]))
    schema = m.info.get("schema") or {}
    cols = schema.get("columns", []) if isinstance(schema, dict) else []
    if cols:
        click.echo("\nInput schema:")
        click.echo(table([(c.get("name"), c.get("kind"), c.get("dtype")) for c in cols], ["COLUMN", "KIND", "DTYPE"]))


@click.command()
@click.option("--model", "model_ref", help="NAME[:VERSION] (default: latest version of automl.yaml model_name).")
@click.option("--data", required=True, help="CSV file to score.")
@click.option("--out", required=True, help="CSV file to write (input columns + prediction + probabilities).")
@json_option
@pass_ctx
def predict(ctx: Ctx, model_ref: str | None, data: str, out: str, as_json: bool) -> None:
    """Batch-score a CSV file with a registered model."""
    from opml.training.predict import predict_csv

    ref = model_ref or ctx.automl().model_name
    summary = predict_csv(ctx.workspace(), ref, data, out)
    if as_json:
        emit_json(summary)
    else:
        counts = ", ".join(f"{k}: {v}" for k, v in summary["predictions"].items())
        click.echo(f"Scored {summary['rows']} rows with {summary['model']} -> {summary['out']} ({counts})")


@click.command()
@click.option("--port", default=5000, show_default=True, type=int)
@pass_ctx
def ui(ctx: Ctx, port: int) -> None:
    """Open the MLflow UI on the workspace's tracking store (127.0.0.1), until Ctrl-C."""
    import subprocess

    ws = ctx.workspace()
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", ws.tracking_uri,
           "--default-artifact-root", ws.artifact_uri, "--host", "127.0.0.1", "--port", str(port)]
    click.echo(f"MLflow UI on http://127.0.0.1:{port} (Ctrl-C to stop)", err=True)
    try:
        raise SystemExit(subprocess.call(cmd))
    except KeyboardInterrupt:
        raise SystemExit(0) from None
