"""`opml pipeline publish/disable/enable`: published pipelines, triggered over REST on the control plane."""

from __future__ import annotations

import click

from opml.cli.base import Ctx, emit_json, json_option, pass_ctx


@click.command("publish")
@click.argument("ref", metavar="NAME[:VERSION]")
@json_option
@pass_ctx
def publish(ctx: Ctx, ref: str, as_json: bool) -> None:
    """Publish a pipeline: an id, status Active, and a REST endpoint on the control plane (started if needed)."""
    from opml.pipelines import control, registry

    ws = ctx.workspace()
    pub = registry.publish(ws, ref)
    st = control.start(ws.root)
    endpoint = control.endpoint_url(ws.root, pub.id)
    if as_json:
        emit_json(pub.to_dict() | {"endpoint": endpoint, "control_plane": st["url"]})
        return
    click.echo(f"Published {pub.name}:{pub.version} as {pub.id} (status {pub.status})")
    click.echo(f"REST endpoint: {endpoint}")
    click.echo("Trigger: POST it with 'Authorization: Bearer <opml auth token>' and "
               '{"ExperimentName": "...", "ParameterAssignments": {...}}', err=True)


def _set_status(ctx: Ctx, pid: str, status: str, as_json: bool) -> None:
    from opml.pipelines import registry

    pub = registry.set_published_status(ctx.workspace(), pid, status)
    if as_json:
        emit_json(pub.to_dict())
    else:
        click.echo(f"Published pipeline {pub.id} ({pub.name}:{pub.version}) is {pub.status}.")


@click.command("disable")
@click.argument("pid", metavar="ID")
@json_option
@pass_ctx
def disable(ctx: Ctx, pid: str, as_json: bool) -> None:
    """Disable a published pipeline: its endpoint answers 409 until enabled."""
    _set_status(ctx, pid, "Disabled", as_json)


@click.command("enable")
@click.argument("pid", metavar="ID")
@json_option
@pass_ctx
def enable(ctx: Ctx, pid: str, as_json: bool) -> None:
    """Enable a disabled published pipeline."""
    _set_status(ctx, pid, "Active", as_json)
