"""`opml pipeline schedule ...`: recurring runs the control plane fires."""

from __future__ import annotations

import click

from opml.cli.base import Ctx, OpmlGroup, emit_json, json_option, param_option, parse_params, pass_ctx, table


@click.group(cls=OpmlGroup)
def schedule() -> None:
    """Recurring runs fired by the control plane.

    Policy: a fire that finds the schedule's previous run still going is skipped (and logged);
    fires missed while the control plane was down are coalesced into one catch-up run on start.
    """


@schedule.command("create")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--cron", help='5-field cron expression in UTC, e.g. "0 6 * * 1-5".')
@click.option("--every", help="Interval: 30s, 10m, 1h, 1d.")
@param_option
@click.option("--experiment", help="Experiment name (default: the pipeline name).")
@json_option
@pass_ctx
def schedule_create(ctx: Ctx, ref: str, cron: str | None, every: str | None, params: tuple[str, ...],
                    experiment: str | None, as_json: bool) -> None:
    """Schedule a pipeline (--cron or --every); starts the control plane if it is not running."""
    from opml.pipelines import control
    from opml.pipelines import schedule as schedules

    cron, interval_s = schedules.recurrence(cron, every)
    ws = ctx.workspace()
    s = schedules.create(ws, ref, cron=cron, interval_s=interval_s, params=parse_params(params),
                         experiment=experiment)
    st = control.start(ws.root)
    if as_json:
        emit_json(s.to_dict() | {"control_plane": st["url"]})
    else:
        click.echo(f"Schedule {s.id}: {s.pipeline}:{s.version} {s.recurrence}; next fire "
                   f"{s.to_dict()['next_fire']} (control plane {st['url']})")


@schedule.command("list")
@json_option
@pass_ctx
def schedule_list(ctx: Ctx, as_json: bool) -> None:
    """Schedules with their next fire time and what the last fire did."""
    from opml.pipelines import control, registry

    ws = ctx.workspace()
    items = [s.to_dict() for s in registry.list_schedules(ws)]
    if as_json:
        emit_json(items)
        return
    if not items:
        click.echo("No schedules; create one with `opml pipeline schedule create NAME --every 1h`.")
        return
    click.echo(table([(i["id"], f"{i['pipeline']}:{i['version']}", i["recurrence"], i["status"],
                       i["next_fire"] if i["status"] == "Active" else "-", i["last_run_id"] or "-",
                       (i["last_note"] or "")[:60]) for i in items],
                     ["ID", "PIPELINE", "RECURRENCE", "STATUS", "NEXT FIRE (UTC)", "LAST RUN", "NOTE"]))
    if control.status(ws.root)["state"] != "Running":
        click.echo("The control plane is stopped: schedules fire once `opml server start` runs.", err=True)


@schedule.command("disable")
@click.argument("sid", metavar="ID")
@json_option
@pass_ctx
def schedule_disable(ctx: Ctx, sid: str, as_json: bool) -> None:
    """Stop a schedule from firing."""
    from opml.pipelines import schedule as schedules

    s = schedules.disable(ctx.workspace(), sid)
    if as_json:
        emit_json(s.to_dict())
    else:
        click.echo(f"Schedule {s.id} is Disabled.")
