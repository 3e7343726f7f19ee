"""`opml server start/stop/status`: the control plane (published pipelines' REST API and the scheduler)."""

from __future__ import annotations

import click

from opml.cli.base import Ctx, OpmlGroup, emit_json, json_option, kv, pass_ctx


@click.group(cls=OpmlGroup)
def server() -> None:
    """The control plane: published pipelines' REST API and the scheduler (127.0.0.1)."""


@server.command("start")
@click.option("--port", type=int, help="Port (default: the previous one, else a free one).")
@json_option
@pass_ctx
def server_start(ctx: Ctx, port: int | None, as_json: bool) -> None:
    """Start the control plane as a detached process (marks crashed runs Failed, catches up schedules)."""
    from opml.pipelines import control

    st = control.start(ctx.workspace().root, port)
    if as_json:
        emit_json(st)
    else:
        verb = "Started" if st["started"] else "Already running:"
        click.echo(f"{verb} control plane on {st['url']} (pid {st['pid']}, log {st['log']})")


@server.command("stop")
@json_option
@pass_ctx
def server_stop(ctx: Ctx, as_json: bool) -> None:
    """Stop the control plane (runs in progress go on)."""
    from opml.pipelines import control

    st = control.stop(ctx.workspace().root)
    if as_json:
        emit_json(st)
    else:
        click.echo("Stopped the control plane." if st["stopped"] else "The control plane was not running.")


@server.command("status")
@json_option
@pass_ctx
def server_status(ctx: Ctx, as_json: bool) -> None:
    """Is the control plane running; where; its log."""
    from opml.pipelines import control

    st = control.status(ctx.workspace().root)
    if as_json:
        emit_json(st)
    else:
        click.echo(kv([(k.replace("_", " "), v if v is not None else "-") for k, v in st.items()]))
