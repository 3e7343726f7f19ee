"""`opml train`, `opml runs`, `opml models`, `opml predict`, `opml ui`: AutoML and what it produces."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from opml.cli.base import Ctx, OpmlError, OpmlGroup, check_name, emit_json, json_option, kv, pass_ctx, table


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="AutoML settings file (default: <configs>/automl.yaml).")
@click.option("--data", help="Local CSV to train on (registered first); default: the configured dataset.")
@click.option("--experiment", help="Experiment name (default: automl.yaml experiment_name).")
@click.option("--time-budget", type=float, help="Wall-time budget in seconds (experiment_timeout_seconds).")
@click.option("--max-trials", type=int, help="Stop after N candidates (reproducible runs).")
@click.option("--model-selection", type=click.Choice(["tolerance", "best", "one_se"]),
              help="tolerance: cheapest to score within selection_tolerance (0.0005) of the top score (default); "
                   "best: the top score; one_se: cheapest to score within 1 standard error of it.")
@click.option("--drop-columns", metavar="COL[,COL...]",
              help="Feature columns to leave out of training, comma-separated (e.g. duration, known only after "
                   "the call).")
@click.option("--no-wait", is_flag=True, help="azureml backend: submit the job, print its name and Studio URL, return.")
@click.option("--dry-run", is_flag=True,
              help="azureml backend: write the YAML `az ml job create -f` takes under azureml/; send nothing.")
@json_option
@pass_ctx
def train(ctx: Ctx, config_file: Path | None, data: str | None, experiment: str | None,
          time_budget: float | None, max_trials: int | None, model_selection: str | None, drop_columns: str | None,
          no_wait: bool, dry_run: bool, as_json: bool) -> None:
    """Run an AutoML classification experiment and register the best model.

    On the azureml backend: an AutoML classification job on the configured
    compute, followed until it ends; the best child's MLflow model is
    registered as automl.yaml model_name.
    """
    if experiment is not None:  # an empty --experiment is an error, not the configured name
        check_name(experiment, "experiment")
    settings = ctx.automl(config_file).with_overrides(experiment=experiment, time_budget=time_budget,
                                                      max_trials=max_trials, model_selection=model_selection,
                                                      drop_columns=_column_list(drop_columns))
    backend = ctx.backend()
    if settings.drop_columns and backend.name != "local":
        raise OpmlError(f"drop_columns ({', '.join(settings.drop_columns)}) is not supported on the {backend.name} "
                        "backend (its AutoML jobs have no such setting)",
                        "register the data without those columns, or train with the local backend")
    stage = backend.train
    if dry_run:
        from opml.cli.data import print_dry_run

        print_dry_run(stage.dry_run(settings, data=data), as_json)
        return
    result = stage.train(settings, data=data, progress=not as_json, no_wait=no_wait)
    if as_json:
        emit_json(result.to_dict())
        return
    if no_wait:
        click.echo(kv([("submitted", result.run_id), ("status", result.status), ("dataset", result.dataset),
                       ("studio", result.extra.get("studio_url"))]))
        click.echo(f"Follow it with `opml runs show {result.run_id}`.", err=True)
        return
    from opml.training.report import render

    click.echo(render(result.summary, run_id=result.run_id, status=result.status))
    if result.extra.get("studio_url"):
        click.echo(f"studio      {result.extra['studio_url']}")


def _column_list(text: str | None) -> list[str] | None:
    """--drop-columns "a, b" -> ["a", "b"]; None when not given. An empty name is a one-line error."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise OpmlError(f"--drop-columns {text!r} has an empty column name", "pass names separated by commas")
    return list(dict.fromkeys(names))


@click.group(cls=OpmlGroup)
def runs() -> None:
    """AutoML runs (experiments) in the workspace."""


@runs.command("list")
@click.option("--experiment", help="Only runs of this experiment.")
@json_option
@pass_ctx
def runs_list(ctx: Ctx, experiment: str | None, as_json: bool) -> None:
    """List AutoML runs, newest first."""
    items = ctx.backend().train.list_runs(experiment)
    if as_json:
        emit_json([{k: v for k, v in r.to_dict().items() if k != "summary"} for r in items])
    elif not items:
        click.echo("No AutoML runs; start one with `opml train`.")
    else:
        rows = [(r.id, r.experiment, r.status, r.dataset, r.best_pipeline or "-",
                 f"{r.best_score:.4f}" if r.best_score is not None else "-", r.trials if r.trials is not None else "-",
                 f"{r.duration_s:.0f}s" if r.duration_s else "-", r.started_at) for r in items]
        click.echo(table(rows, ["RUN", "EXPERIMENT", "STATUS", "DATASET", "BEST PIPELINE", "SCORE", "TRIALS",
                                "DURATION", "STARTED"]))


@runs.command("show")
@click.argument("run_id")
@json_option
@pass_ctx
def runs_show(ctx: Ctx, run_id: str, as_json: bool) -> None:
    """Show a run: leaderboard, best model, guardrails, threshold, feature importance, artifacts."""
    backend = ctx.backend()
    run = backend.train.get_run(run_id)
    if as_json:
        emit_json(run.to_dict())
        return
    from opml.training.report import render

    click.echo(f"{run.id}  experiment {run.experiment}  dataset {run.dataset}  started {run.started_at}")
    if run.error:
        click.echo(f"error: {run.error}")
    # A local run still running has no duration yet and shows 0 s; Azure does not report one ("-").
    duration = (run.duration_s or 0) if backend.name == "local" else run.duration_s
    click.echo(render(run.summary | {"duration_s": duration}, run_id=run.id, status=run.status))
    if getattr(run, "studio_url", None):
        click.echo(f"studio      {run.studio_url}")


@click.group(cls=OpmlGroup)
def models() -> None:
    """Registered models."""


@models.command("list")
@json_option
@pass_ctx
def models_list(ctx: Ctx, as_json: bool) -> None:
    """List registered models and versions."""
    items = ctx.backend().train.list_models()
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
    m = ctx.backend().train.get_model(ref)
    if as_json:
        emit_json(m.to_dict())
        return
    thr = m.info.get("threshold") or {}
    click.echo(kv([("model", m.ref), ("pipeline", m.pipeline), ("run", m.run_id), ("mlflow run", m.child_run),
                   ("dataset", m.info.get("dataset")), ("classes", ", ".join(m.info.get("classes", []))),
                   ("decision threshold", thr.get("applied", thr) if thr else "-"), ("path", m.path),
                   ("created", m.created_at)]))
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
    ref = model_ref if model_ref is not None else ctx.automl().model_name
    summary = ctx.backend().train.predict(ref, data, out)
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
