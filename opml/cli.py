"""The opml command line: one thin click command per stage over plain Python functions."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from opml import __version__
from opml.errors import OpmlError

if TYPE_CHECKING:
    from opml.config import AutoMLSettings, WorkspaceConfig
    from opml.workspace.workspace import Workspace

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


class UserError(click.ClickException):
    """An OpmlError as click shows it: `Error: <one line>` on stderr, exit code 2."""

    exit_code = 2


class OpmlGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # workflow order, as defined

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OpmlError as exc:
            raise UserError(exc.line()) from None


@dataclass
class Ctx:
    configs: Path

    def workspace_config(self) -> WorkspaceConfig:
        from opml.config import workspace_config

        return workspace_config(self.configs)

    def workspace(self, *, create: bool = False) -> Workspace:
        from opml.workspace.workspace import Workspace, resolve_root

        cfg = self.workspace_config()
        root = resolve_root(self.configs, cfg)
        if create:
            return Workspace.create_or_open(root, cfg.backend)
        return Workspace.open(root, cfg.backend)

    def automl(self, path: Path | None = None) -> AutoMLSettings:
        from opml.config import automl_settings

        return automl_settings(self.configs, path)

    def dataset_spec(self):  # -> DatasetSpec | None
        if not (self.configs / "automl.yaml").is_file():
            return None
        return self.automl().dataset


pass_ctx = click.make_pass_decorator(Ctx)


@click.group(cls=OpmlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--configs",
    envvar="OPML_CONFIGS",
    default="configs",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of YAML configs (env OPML_CONFIGS).",
)
@click.version_option(__version__, prog_name="opml")
@click.pass_context
def main(ctx: click.Context, configs: Path) -> None:
    """opml: operationalize an ML model end to end on an embedded workspace.

    Run the stages in workflow order: auth, data, train, deploy, enable-logs, swagger,
    consume, benchmark, pipeline.
    """
    source = ctx.get_parameter_source("configs")
    if source is not click.core.ParameterSource.DEFAULT and not configs.is_dir():
        raise UserError(
            f"configs folder {configs} not found; pass --configs DIR or set OPML_CONFIGS to an existing folder"
        )
    ctx.obj = Ctx(configs=configs)


# ---- auth -------------------------------------------------------------------


@main.group(cls=OpmlGroup, invoke_without_command=True)
@json_option
@pass_ctx
@click.pass_context
def auth(click_ctx: click.Context, ctx: Ctx, as_json: bool) -> None:
    """Create or open the workspace and show a summary.

    With OPML_CLIENT_ID and OPML_CLIENT_SECRET set, also checks those
    service-principal credentials (like ServicePrincipalAuthentication).
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from opml.workspace.identity import check_secret

    ws = ctx.workspace(create=True)
    summary = ws.summary()
    client_id, secret = os.environ.get("OPML_CLIENT_ID"), os.environ.get("OPML_CLIENT_SECRET")
    if client_id and secret:
        summary["authenticated_as"] = check_secret(ws, client_id, secret).name
    if as_json:
        from opml.output import emit_json

        emit_json(summary)
        return
    from opml.output import kv

    click.echo(kv([(k.replace("_", " "), v) for k, v in summary.items()]))


@auth.group(cls=OpmlGroup)
def sp() -> None:
    """Manage service principals (client id + secret)."""


@sp.command("create")
@click.argument("name")
@json_option
@pass_ctx
def sp_create(ctx: Ctx, name: str, as_json: bool) -> None:
    """Create a service principal; its secret is shown once, here."""
    from opml.workspace.identity import create_principal

    creds = create_principal(ctx.workspace(create=True), name)
    p = creds.principal
    if as_json:
        from opml.output import emit_json

        emit_json({"name": p.name, "client_id": p.client_id, "client_secret": creds.client_secret,
                   "created_at": p.created_at})
        return
    click.echo(f"Created service principal {p.name!r}")
    click.echo(f"client_id:     {p.client_id}")
    click.echo(f"client_secret: {creds.client_secret}")
    click.echo("The secret is shown only now; store it (e.g. as OPML_CLIENT_SECRET).", err=True)


@sp.command("list")
@json_option
@pass_ctx
def sp_list(ctx: Ctx, as_json: bool) -> None:
    """List service principals (never their secrets)."""
    from opml.output import emit_json, table
    from opml.workspace.identity import list_principals

    principals = list_principals(ctx.workspace())
    if as_json:
        emit_json([vars(p) for p in principals])
    elif not principals:
        click.echo("No service principals; create one with `opml auth sp create NAME`.")
    else:
        click.echo(table([(p.name, p.client_id, p.created_at) for p in principals],
                         ["NAME", "CLIENT ID", "CREATED"]))


@sp.command("delete")
@click.argument("name")
@json_option
@pass_ctx
def sp_delete(ctx: Ctx, name: str, as_json: bool) -> None:
    """Delete a service principal; tokens it was issued stop working."""
    from opml.workspace.identity import delete_principal

    p = delete_principal(ctx.workspace(), name)
    if as_json:
        from opml.output import emit_json

        emit_json({"deleted": p.name, "client_id": p.client_id})
    else:
        click.echo(f"Deleted service principal {p.name!r} ({p.client_id}).")


@auth.command("token")
@click.option("--client-id", required=True, envvar="OPML_CLIENT_ID", help="Service principal client id.")
@click.option("--expires-in", default=3600, show_default=True, type=int, help="Token lifetime in seconds.")
@json_option
@pass_ctx
def token(ctx: Ctx, client_id: str, expires_in: int, as_json: bool) -> None:
    """Issue a signed bearer token for the workspace's REST endpoints.

    The secret comes from OPML_CLIENT_SECRET or a hidden prompt, never a flag.
    """
    from opml.workspace.identity import issue_token

    secret = os.environ.get("OPML_CLIENT_SECRET") or _read_secret()
    reply = issue_token(ctx.workspace(), client_id, secret, expires_in)
    if as_json:
        from opml.output import emit_json

        emit_json(reply)
    else:
        click.echo(reply["access_token"])
        click.echo(f"Bearer token valid for {expires_in} s.", err=True)


def _read_secret() -> str:
    """Hidden prompt on a terminal; one line from a pipe otherwise (`... | opml auth token`)."""
    try:
        if sys.stdin.isatty():
            secret = click.prompt("Client secret", hide_input=True, err=True, default="", show_default=False)
        else:
            secret = sys.stdin.readline()
    except (click.Abort, EOFError):
        secret = ""
    if not secret.strip():
        raise OpmlError("no client secret given", "set OPML_CLIENT_SECRET or type it at the prompt")
    return secret.strip()


# ---- data -------------------------------------------------------------------


@main.group(cls=OpmlGroup)
def data() -> None:
    """Register datasets and show their profiles."""


@data.command("register")
@click.option("--name", help="Dataset name (default: automl.yaml dataset.name).")
@click.option("--path", "path", help="Local CSV file (overrides OPML_DATA and the config).")
@click.option("--url", help="http(s) URL of a CSV file, downloaded once into the workspace cache.")
@click.option("--sha256", help="Expected sha256 of the downloaded file.")
@click.option("--label", help="Label column (default: automl.yaml dataset.label_column).")
@json_option
@pass_ctx
def data_register(ctx: Ctx, name: str | None, path: str | None, url: str | None, sha256: str | None,
                  label: str | None, as_json: bool) -> None:
    """Read, profile and register a CSV dataset as NAME:VERSION."""
    from opml.data.stage import register_dataset

    ws = ctx.workspace()
    ds, created = register_dataset(ws, ctx.dataset_spec(), name=name, path=path, url=url, label=label,
                                   sha256=sha256, progress=not as_json)
    if as_json:
        from opml.output import emit_json

        emit_json(ds.to_dict() | {"created": created})
        return
    verb = "Registered" if created else "Already registered (same content)"
    click.echo(f"{verb}: {ds.ref}  sha256 {ds.sha256[:12]}  from {ds.source}")
    _print_profile(ds)


@data.command("list")
@json_option
@pass_ctx
def data_list(ctx: Ctx, as_json: bool) -> None:
    """List registered datasets and their versions."""
    from opml.data.registry import list_datasets
    from opml.output import emit_json, table

    datasets = list_datasets(ctx.workspace())
    if as_json:
        emit_json([{k: v for k, v in d.to_dict().items() if k != "profile"} | {
            "rows": d.profile["rows"], "columns": d.profile["columns"]} for d in datasets])
    elif not datasets:
        click.echo("No datasets; register one with `opml data register`.")
    else:
        rows = [(d.ref, d.profile["rows"], d.profile["columns"], d.label, d.sha256[:12], d.created_at)
                for d in datasets]
        click.echo(table(rows, ["DATASET", "ROWS", "COLUMNS", "LABEL", "SHA256", "CREATED"]))


@data.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
@json_option
@pass_ctx
def data_show(ctx: Ctx, ref: str, as_json: bool) -> None:
    """Show a dataset version's profile (latest version by default)."""
    from opml.data.registry import get_dataset

    ds = get_dataset(ctx.workspace(), ref)
    if as_json:
        from opml.output import emit_json

        emit_json(ds.to_dict())
        return
    click.echo(f"{ds.ref}  sha256 {ds.sha256}\nsource  {ds.source}\ncreated {ds.created_at}")
    _print_profile(ds)


# ---- train, runs, models, predict, ui ----------------------------------------


@main.command()
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
        from opml.output import emit_json

        emit_json({"run_id": result.run_id, "status": "Completed", "dataset": result.dataset.ref,
                   "model": result.model.ref} | result.summary)
        return
    from opml.training.report import render

    click.echo(render(result.summary, run_id=result.run_id))


@main.group(cls=OpmlGroup)
def runs() -> None:
    """AutoML runs (experiments) in the workspace."""


@runs.command("list")
@click.option("--experiment", help="Only runs of this experiment.")
@json_option
@pass_ctx
def runs_list(ctx: Ctx, experiment: str | None, as_json: bool) -> None:
    """List AutoML runs, newest first."""
    from opml.output import emit_json, table
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
        from opml.output import emit_json

        emit_json(run.to_dict())
        return
    from opml.training.report import render

    click.echo(f"{run.id}  experiment {run.experiment}  dataset {run.dataset}  started {run.started_at}")
    if run.error:
        click.echo(f"error: {run.error}")
    click.echo(render(run.summary | {"duration_s": run.duration_s or 0}, run_id=run.id, status=run.status))


@main.group(cls=OpmlGroup)
def models() -> None:
    """Registered models."""


@models.command("list")
@json_option
@pass_ctx
def models_list(ctx: Ctx, as_json: bool) -> None:
    """List registered models and versions."""
    from opml.output import emit_json, table
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
    from opml.output import emit_json, kv, table
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


@main.command()
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
        from opml.output import emit_json

        emit_json(summary)
    else:
        counts = ", ".join(f"{k}: {v}" for k, v in summary["predictions"].items())
        click.echo(f"Scored {summary['rows']} rows with {summary['model']} -> {summary['out']} ({counts})")


@main.command()
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


# ---- deploy, endpoint, consume -------------------------------------------------


@main.command()
@click.option("--best", is_flag=True, help="Deploy the model of the latest completed AutoML run.")
@click.option("--experiment", help="With --best: the latest run of this experiment.")
@click.option("--model", "model_ref", metavar="NAME[:VERSION]", help="Deploy this registered model.")
@click.option("--name", help="Endpoint name (default: deploy.yaml name).")
@json_option
@pass_ctx
def deploy(ctx: Ctx, best: bool, experiment: str | None, model_ref: str | None, name: str | None,
           as_json: bool) -> None:
    """Deploy a model as an authenticated scoring endpoint on 127.0.0.1."""
    from opml.config import deploy_config
    from opml.serving.endpoints import best_model
    from opml.serving.endpoints import deploy as run_deploy

    if best == bool(model_ref):
        raise OpmlError("pass exactly one of --best and --model NAME[:VERSION]")
    if experiment and not best:
        raise OpmlError("--experiment goes with --best")
    ws = ctx.workspace()
    ref = best_model(ws, experiment) if best else model_ref
    ep = run_deploy(ws, ref, deploy_config(ctx.configs), name)
    if as_json:
        from opml.output import emit_json

        emit_json(ep.to_dict() | {"state": "Healthy"})
        return
    from opml.output import kv

    click.echo(f"Endpoint {ep.name!r} is serving {ep.model} (pid {ep.pid}, inference: {ep.inference}).")
    click.echo(kv([("scoring uri", ep.scoring_uri), ("swagger uri", ep.swagger_uri),
                   ("auth", "key (Authorization: Bearer <key>)" if ep.auth_enabled else "off")]))
    if ep.auth_enabled:
        click.echo(f"Keys: opml endpoint keys {ep.name}")


@main.group(cls=OpmlGroup)
def endpoint() -> None:
    """Manage scoring endpoints."""


@endpoint.command("list")
@json_option
@pass_ctx
def endpoint_list(ctx: Ctx, as_json: bool) -> None:
    """List endpoints with their live state."""
    from opml.output import emit_json, table
    from opml.serving.endpoints import list_endpoints, state

    items = [(ep, state(ep)) for ep in list_endpoints(ctx.workspace())]
    if as_json:
        emit_json([ep.to_dict() | {"state": st} for ep, st in items])
    elif not items:
        click.echo("No endpoints; create one with `opml deploy --best`.")
    else:
        click.echo(table([(ep.name, st, ep.model, ep.scoring_uri, ep.inference, ep.started_at) for ep, st in items],
                         ["ENDPOINT", "STATE", "MODEL", "SCORING URI", "INFERENCE", "STARTED"]))


@endpoint.command("show")
@click.argument("name")
@json_option
@pass_ctx
def endpoint_show(ctx: Ctx, name: str, as_json: bool) -> None:
    """Show an endpoint: live state (Healthy, Unhealthy, Stopped), model, URIs, inference path."""
    from opml.serving.endpoints import get_endpoint, log_file, state

    ws = ctx.workspace()
    ep = get_endpoint(ws, name)
    st = state(ep)
    if as_json:
        from opml.output import emit_json

        emit_json(ep.to_dict() | {"state": st, "log": str(log_file(ws, name))})
        return
    from opml.output import kv

    click.echo(kv([("endpoint", ep.name), ("state", st), ("model", ep.model), ("scoring uri", ep.scoring_uri),
                   ("swagger uri", ep.swagger_uri), ("auth", "enabled" if ep.auth_enabled else "off"),
                   ("inference", ep.inference), ("pid", ep.pid), ("started", ep.started_at),
                   ("log", log_file(ws, name))]))


@endpoint.command("keys")
@click.argument("name")
@click.option("--regenerate", type=click.Choice(["primary", "secondary"]), help="Replace this key now.")
@json_option
@pass_ctx
def endpoint_keys_cmd(ctx: Ctx, name: str, regenerate: str | None, as_json: bool) -> None:
    """Show (or regenerate) the endpoint's primary and secondary keys."""
    from opml.serving.endpoints import endpoint_keys

    keys = endpoint_keys(ctx.workspace(), name, regenerate)
    if as_json:
        from opml.output import emit_json

        emit_json({"primaryKey": keys["primary"], "secondaryKey": keys["secondary"]})
    else:
        click.echo(f"primary:   {keys['primary']}\nsecondary: {keys['secondary']}")
        if regenerate:
            click.echo(f"Regenerated the {regenerate} key; the old one is refused from now on.", err=True)


@endpoint.command("restart")
@click.argument("name")
@json_option
@pass_ctx
def endpoint_restart(ctx: Ctx, name: str, as_json: bool) -> None:
    """Restart the endpoint's process (the old one serves until the new one is ready)."""
    from opml.serving.endpoints import restart

    ep = restart(ctx.workspace(), name)
    if as_json:
        from opml.output import emit_json

        emit_json(ep.to_dict() | {"state": "Healthy"})
    else:
        click.echo(f"Restarted {ep.name!r}: pid {ep.pid}, {ep.scoring_uri}")


@endpoint.command("delete")
@click.argument("name")
@json_option
@pass_ctx
def endpoint_delete(ctx: Ctx, name: str, as_json: bool) -> None:
    """Stop the endpoint's process, free its port and forget it (and its keys)."""
    from opml.serving.endpoints import delete

    ep = delete(ctx.workspace(), name)
    if as_json:
        from opml.output import emit_json

        emit_json({"deleted": ep.name, "port": ep.port})
    else:
        click.echo(f"Deleted endpoint {ep.name!r} (port {ep.port} freed).")


@main.command()
@click.option("--endpoint", "name", help="Endpoint name (default: deploy.yaml name).")
@click.option("--data", "data_file", help="JSON file of records ({\"data\": [...]} or a list).")
@click.option("--rows", default=5, show_default=True, type=int, help="Rows of the model's dataset to send.")
@click.option("--proba", is_flag=True, help="Ask for class probabilities (predict_proba).")
@json_option
@pass_ctx
def consume(ctx: Ctx, name: str | None, data_file: str | None, rows: int, proba: bool, as_json: bool) -> None:
    """Send records to an endpoint and print its predictions next to the inputs."""
    from opml.config import deploy_config
    from opml.serving.consume import records_from_dataset, records_from_file, send
    from opml.serving.endpoints import get_endpoint
    from opml.training.models import get_model

    ws = ctx.workspace()
    ep = get_endpoint(ws, name or deploy_config(ctx.configs).name)
    model = get_model(ws, ep.model)
    if data_file:
        records = records_from_file(data_file)
    else:
        records = records_from_dataset(ws, model.info["dataset"], model.info["label"], rows)
    reply = send(ws, ep, records, proba=proba)
    preds = reply["predictions"]
    if as_json:
        from opml.output import emit_json

        emit_json({"endpoint": ep.name, "model": ep.model, "rows": len(records), "predictions": preds})
        return
    from opml.output import table

    keys = list(records[0])[:5]
    classes = model.info.get("classes", [])
    heads = [*keys, *([f"P({c})" for c in classes] if proba else ["PREDICTION"])]
    body = [[r.get(k) for k in keys] + ([f"{p:.4f}" for p in pred] if proba else [pred])
            for r, pred in zip(records, preds, strict=True)]
    click.echo(table(body, heads))


@main.command("enable-logs")
@click.option("--endpoint", "name", help="Endpoint name (default: deploy.yaml name).")
@click.option("--off", is_flag=True, help="Turn request telemetry off.")
@click.option("--sample-payloads", type=float, default=0.0, show_default=True,
              help="Share of requests (0-1) whose payload is logged too.")
@json_option
@pass_ctx
def enable_logs(ctx: Ctx, name: str | None, off: bool, sample_payloads: float, as_json: bool) -> None:
    """Turn request telemetry on (or --off) on the live endpoint, without a restart."""
    from opml.config import deploy_config
    from opml.serving.endpoints import set_telemetry
    from opml.serving.telemetry import telemetry_log

    if off and sample_payloads:
        raise OpmlError("--sample-payloads goes with turning telemetry on", "drop --off or --sample-payloads")
    ws = ctx.workspace()
    ep = set_telemetry(ws, name or deploy_config(ctx.configs).name, not off, sample_payloads)
    info = {"endpoint": ep.name, "telemetry": not off, "sample_payloads": sample_payloads,
            "log": str(telemetry_log(ws.root, ep.name)),
            "otlp_endpoint": os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")}
    if as_json:
        from opml.output import emit_json

        emit_json(info)
    elif off:
        click.echo(f"Telemetry is off for {ep.name!r}.")
    else:
        extra = f", {sample_payloads:.0%} of payloads" if sample_payloads else ""
        click.echo(f"Telemetry is on for {ep.name!r}{extra}: {info['log']}  (see `opml logs --endpoint {ep.name}`)")


@main.command()
@click.option("--endpoint", "name", help="Endpoint name (default: deploy.yaml name).")
@click.option("--tail", default=50, show_default=True, type=int, help="Entries to show.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries until Ctrl-C.")
@json_option
@pass_ctx
def logs(ctx: Ctx, name: str | None, tail: int, follow: bool, as_json: bool) -> None:
    """The endpoint's server log and request telemetry, newest last."""
    import json as _json

    from opml.config import deploy_config
    from opml.serving import logs as endpoint_logs
    from opml.serving.endpoints import get_endpoint

    if tail < 0:
        raise OpmlError(f"--tail must be 0 or more (got {tail})")
    ws = ctx.workspace()
    ep = get_endpoint(ws, name or deploy_config(ctx.configs).name)

    def emit(entry: dict) -> None:
        click.echo(_json.dumps(entry) if as_json and follow else endpoint_logs.format_entry(entry))

    entries = endpoint_logs.read(ws.root, ep.name, tail)
    if as_json and not follow:
        from opml.output import emit_json

        emit_json(entries)
        return
    for entry in entries:
        emit(entry)
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            endpoint_logs.follow(ws.root, ep.name, emit)


@main.command()
@click.option("--endpoint", "name", help="Endpoint name (default: deploy.yaml name).")
@click.option("-n", "--requests", "n", default=1000, show_default=True, type=int, help="Requests to send.")
@click.option("-c", "--concurrency", default=10, show_default=True, type=int, help="Requests at a time.")
@click.option("--rows", default=1, show_default=True, type=int, help="Rows of the dataset per request.")
@click.option("--payload", type=click.Path(dir_okay=False), help="JSON body file instead of dataset rows.")
@click.option("--keepalive", is_flag=True, help="Reuse connections (ab -k).")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a latency chart (PNG) here.")
@json_option
@pass_ctx
def benchmark(ctx: Ctx, name: str | None, n: int, concurrency: int, rows: int, payload: str | None,
              keepalive: bool, plot: str | None, as_json: bool) -> None:
    """Benchmark an endpoint with Apache Bench (ab); fails if any request failed."""
    from opml.bench.stage import render, run_benchmark
    from opml.config import deploy_config
    from opml.serving.endpoints import get_endpoint

    ws = ctx.workspace()
    ep = get_endpoint(ws, name or deploy_config(ctx.configs).name)
    report = run_benchmark(ws, ep, requests=n, concurrency=concurrency, rows=rows, payload=payload,
                           keepalive=keepalive, plot=plot)
    if as_json:
        from opml.output import emit_json

        emit_json(report)
    else:
        click.echo(render(report))
    bad = report["failed_requests"] + report["non_2xx_responses"]
    if bad:
        click.echo(f"Error: {report['failed_requests']} failed and {report['non_2xx_responses']} non-2xx "
                   f"responses out of {report['complete_requests']} requests", err=True)
        raise SystemExit(1)


@main.command()
@click.option("--endpoint", "name", help="Endpoint name (default: deploy.yaml name).")
@click.option("--out", default="swagger/swagger.json", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the endpoint's swagger.json.")
@click.option("--serve", is_flag=True, help="Then serve Swagger UI on 127.0.0.1:PORT until Ctrl-C.")
@click.option("--port", default=9000, show_default=True, type=int, help="Swagger UI port with --serve.")
@json_option
@pass_ctx
def swagger(ctx: Ctx, name: str | None, out: str, serve: bool, port: int, as_json: bool) -> None:
    """Download the endpoint's swagger.json; with --serve, browse it in Swagger UI (works offline)."""
    from opml.config import deploy_config
    from opml.serving.endpoints import get_endpoint
    from opml.serving.swagger import download, serve_ui

    ws = ctx.workspace()
    ep = get_endpoint(ws, name or deploy_config(ctx.configs).name)
    info = download(ws, ep, Path(out))
    if as_json:
        from opml.output import emit_json

        emit_json(info)
    else:
        click.echo(f"Wrote {info['path']} ({info['paths']} paths) from {ep.swagger_uri}")
    if serve:
        click.echo(f"Swagger UI on http://127.0.0.1:{port} (Ctrl-C to stop); authorize with "
                   f"`opml endpoint keys {ep.name}`", err=True)
        serve_ui(ws, ep, Path(out), port)


def _print_profile(ds: Any) -> None:
    from opml.output import table

    p = ds.profile
    click.echo(f"{p['rows']} rows x {p['columns']} columns; label {p['label']['column']!r}:")
    for cls, v in p["label"]["distribution"].items():
        click.echo(f"  {cls:<10} {v['count']:>8}  {v['share']:.1%}")
    rows = []
    for c in p["schema"]:
        detail = (f"{c['min']} .. {c['max']}" if "min" in c
                  else ", ".join(list(c.get("top", {}))[:3]))
        rows.append((c["name"], c["type"], c["missing"], c["unique"], detail))
    click.echo(table(rows, ["COLUMN", "TYPE", "MISSING", "UNIQUE", "RANGE / TOP VALUES"]))


def run() -> None:
    """Console-script entry point."""
    try:
        main(prog_name="opml")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


from opml.pipelines.commands import pipeline, server  # noqa: E402  (registered last: they reuse the helpers above)

main.add_command(pipeline)
main.add_command(server)
