"""`opml deploy`, `opml endpoint`, `opml consume`: scoring endpoints and their clients."""

from __future__ import annotations

import click

from opml.cli.base import Ctx, OpmlError, OpmlGroup, emit_json, endpoint_option, json_option, kv, pass_ctx, table


@click.command()
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
        emit_json(ep.to_dict() | {"state": "Healthy"})
        return
    click.echo(f"Endpoint {ep.name!r} is serving {ep.model} (pid {ep.pid}, inference: {ep.inference}).")
    click.echo(kv([("scoring uri", ep.scoring_uri), ("swagger uri", ep.swagger_uri),
                   ("auth", "key (Authorization: Bearer <key>)" if ep.auth_enabled else "off")]))
    if ep.auth_enabled:
        click.echo(f"Keys: opml endpoint keys {ep.name}")


@click.group(cls=OpmlGroup)
def endpoint() -> None:
    """Manage scoring endpoints."""


@endpoint.command("list")
@json_option
@pass_ctx
def endpoint_list(ctx: Ctx, as_json: bool) -> None:
    """List endpoints with their live state (Healthy, Degraded, Unhealthy, Stopped) and workers serving."""
    from opml.serving.endpoints import list_endpoints, status

    ws = ctx.workspace()
    items = [(ep, status(ws, ep)) for ep in list_endpoints(ws)]
    if as_json:
        emit_json([ep.to_dict() | st for ep, st in items])
    elif not items:
        click.echo("No endpoints; create one with `opml deploy --best`.")
    else:
        rows = [(ep.name, st["state"], _alive(st["workers"]), ep.model, ep.scoring_uri, ep.inference, ep.started_at)
                for ep, st in items]
        click.echo(table(rows, ["ENDPOINT", "STATE", "WORKERS", "MODEL", "SCORING URI", "INFERENCE", "STARTED"]))


def _alive(workers: dict | None) -> str:
    return f"{workers['alive']}/{workers['expected']}" if workers else "-"


@endpoint.command("show")
@click.argument("name")
@json_option
@pass_ctx
def endpoint_show(ctx: Ctx, name: str, as_json: bool) -> None:
    """Show an endpoint: live state (Healthy, Degraded, Unhealthy, Stopped), workers, model, URIs, inference path."""
    from opml.serving.endpoints import get_endpoint, log_file, status, workers_line

    ws = ctx.workspace()
    ep = get_endpoint(ws, name)
    st = status(ws, ep)
    if as_json:
        emit_json(ep.to_dict() | st | {"log": str(log_file(ws, name))})
        return
    problems = [("keys error", st["keys_error"])] if st["keys_error"] else []
    click.echo(kv([("endpoint", ep.name), ("state", st["state"]), ("workers", workers_line(st["workers"])),
                   *problems, ("model", ep.model), ("scoring uri", ep.scoring_uri), ("swagger uri", ep.swagger_uri),
                   ("auth", "enabled" if ep.auth_enabled else "off"), ("inference", ep.inference), ("pid", ep.pid),
                   ("started", ep.started_at), ("log", log_file(ws, name))]))


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
        emit_json({"deleted": ep.name, "port": ep.port})
    else:
        click.echo(f"Deleted endpoint {ep.name!r} (port {ep.port} freed).")


@click.command()
@endpoint_option
@click.option("--data", "data_file", help="JSON file of records ({\"data\": [...]} or a list).")
@click.option("--rows", default=5, show_default=True, type=int, help="Rows of the model's dataset to send.")
@click.option("--proba", is_flag=True, help="Ask for class probabilities (predict_proba).")
@json_option
@pass_ctx
def consume(ctx: Ctx, name: str | None, data_file: str | None, rows: int, proba: bool, as_json: bool) -> None:
    """Send records to an endpoint and print its predictions next to the inputs."""
    from opml.serving.consume import records_from_dataset, records_from_file, send
    from opml.training.models import get_model

    ws = ctx.workspace()
    ep = ctx.endpoint(ws, name)
    model = get_model(ws, ep.model)
    if data_file:
        records = records_from_file(data_file)
    else:
        records = records_from_dataset(ws, model.info["dataset"], model.info["label"], rows)
    reply = send(ws, ep, records, proba=proba)
    preds = reply["predictions"]
    if as_json:
        emit_json({"endpoint": ep.name, "model": ep.model, "rows": len(records), "predictions": preds})
        return
    keys = list(records[0])[:5]
    classes = model.info.get("classes", [])
    heads = [*keys, *([f"P({c})" for c in classes] if proba else ["PREDICTION"])]
    body = [[r.get(k) for k in keys] + ([f"{p:.4f}" for p in pred] if proba else [pred])
            for r, pred in zip(records, preds, strict=True)]
    click.echo(table(body, heads))
