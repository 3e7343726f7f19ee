"""`opml pipeline ...` and `opml server ...`: thin click commands over opml.pipelines.

Only click and opml.cli helpers at module level: `opml --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from opml.cli import Ctx, OpmlError, OpmlGroup, json_option, pass_ctx

param_option = click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
                            help="Set a pipeline parameter (repeatable).")


def _emit(obj: Any) -> None:
    from opml.output import emit_json

    emit_json(obj)


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise OpmlError(f"invalid --param {pair!r}", "write --param NAME=VALUE")
        out[name.strip()] = value
    return out


def _ws(ctx: Ctx):
    return ctx.workspace()


@click.group(cls=OpmlGroup)
def pipeline() -> None:
    """Pipelines: define (configs/pipeline.yaml), run, publish as a REST endpoint, schedule."""


@pipeline.command("create")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path),
              help="Pipeline definition (default: <configs>/pipeline.yaml).")
@json_option
@pass_ctx
def create(ctx: Ctx, file: Path | None, as_json: bool) -> None:
    """Validate a pipeline definition and register it as NAME:VERSION (new version only on change)."""
    from opml.pipelines.registry import create_pipeline
    from opml.pipelines.spec import load_spec

    path = file or ctx.configs / "pipeline.yaml"
    spec = load_spec(path)
    p, created = create_pipeline(_ws(ctx), spec, path, ctx.configs)
    if as_json:
        _emit(p.to_dict() | {"created": created})
        return
    click.echo(f"{'Created' if created else 'Unchanged'}: pipeline {p.ref} ({len(spec.steps)} steps) from {path}")
    _print_steps_plan(p)


def _print_steps_plan(p) -> None:
    from opml.output import table

    rows = [(s.name, s.type, ", ".join(f"{k}<-{v}" for k, v in s.inputs.items()) or "-",
             "yes" if s.allow_reuse else "no") for s in p.spec.steps]
    click.echo(table(rows, ["STEP", "TYPE", "INPUTS", "REUSE"]))
    if p.spec.parameters:
        click.echo("parameters: " + ", ".join(f"{x.name} ({x.type}, default {x.default!r})"
                                              for x in p.spec.parameters))


@pipeline.command("list")
@click.option("--published", is_flag=True, help="List published pipelines (id, status, REST endpoint).")
@json_option
@pass_ctx
def list_cmd(ctx: Ctx, published: bool, as_json: bool) -> None:
    """List pipelines (every NAME:VERSION), or published pipelines with --published."""
    from opml.output import table
    from opml.pipelines import registry
    from opml.pipelines.control import endpoint_url

    ws = _ws(ctx)
    if published:
        items = [p.to_dict() | {"endpoint": endpoint_url(ws.root, p.id)} for p in registry.list_published(ws)]
        if as_json:
            _emit(items)
        elif not items:
            click.echo("No published pipelines; publish one with `opml pipeline publish NAME`.")
        else:
            click.echo(table([(i["id"], i["pipeline"], i["status"], i["endpoint"] or "-", i["created_at"])
                              for i in items], ["ID", "PIPELINE", "STATUS", "ENDPOINT", "PUBLISHED"]))
        return
    pipes = registry.list_pipelines(ws)
    if as_json:
        _emit([p.to_dict() for p in pipes])
    elif not pipes:
        click.echo("No pipelines; register one with `opml pipeline create`.")
    else:
        click.echo(table([(p.ref, len(p.spec.steps), ", ".join(x.name for x in p.spec.parameters) or "-",
                           p.description[:50], p.created_at) for p in pipes],
                         ["PIPELINE", "STEPS", "PARAMETERS", "DESCRIPTION", "CREATED"]))


@pipeline.command("run")
@click.argument("ref", metavar="NAME[:VERSION]")
@param_option
@click.option("--experiment", help="Experiment name (default: the pipeline name).")
@click.option("--wait", is_flag=True, help="Follow the run's steps until it ends.")
@json_option
@pass_ctx
def run_cmd(ctx: Ctx, ref: str, params: tuple[str, ...], experiment: str | None, wait: bool, as_json: bool) -> None:
    """Submit a pipeline run; its steps run in the background, each in its own process with its own log."""
    from opml.pipelines import service

    ws = _ws(ctx)
    run = service.run_pipeline(ws, ref, _params(params), experiment=experiment, strict=False)
    if not wait:
        if as_json:
            _emit(run.to_dict())
        else:
            click.echo(f"Submitted {run.id} ({run.ref}, experiment {run.experiment!r}); "
                       f"follow it with `opml pipeline show {run.id}` or `opml pipeline logs {run.id}`")
        return
    if not as_json:
        click.echo(f"Run {run.id} of {run.ref}, experiment {run.experiment!r}, parameters {run.parameters}")
    final = _follow(ws, run.id, quiet=as_json)
    _show(ws, final.id, as_json)
    if final.status != "Completed":
        click.echo(f"Error: pipeline run {final.id} {final.status}: {final.error}", err=True)
        raise SystemExit(1)


def _follow(ws, run_id: str, *, quiet: bool):
    import time

    from opml.pipelines import registry
    from opml.pipelines.registry import FINAL

    seen: dict[str, str] = {}
    t0 = time.monotonic()
    try:
        while True:
            run = registry.get_run(ws, run_id)
            for s in registry.steps_of(ws, run_id):
                if seen.get(s.step) != s.status:
                    seen[s.step] = s.status
                    if not quiet and s.status != "NotStarted":
                        extra = " (reused)" if s.reused else ""
                        if s.duration_s is not None and s.status in FINAL:
                            extra += f" in {s.duration_s:.1f} s"
                        if s.error and s.status == "Failed":
                            extra += f": {s.error}"
                        click.echo(f"[{time.monotonic() - t0:6.1f}s] {s.step:<20} {s.status}{extra}", err=True)
            if run.status in FINAL:
                return run
            time.sleep(0.3)
    except KeyboardInterrupt:
        click.echo(f"Stopped following; the run goes on. Cancel it with `opml pipeline cancel {run_id}`.", err=True)
        raise SystemExit(130) from None


@pipeline.command("runs")
@click.argument("name", required=False)
@click.option("--limit", default=20, show_default=True, type=int)
@json_option
@pass_ctx
def runs_cmd(ctx: Ctx, name: str | None, limit: int, as_json: bool) -> None:
    """List pipeline runs, newest first."""
    from opml.output import table
    from opml.pipelines import registry

    items = registry.list_runs(_ws(ctx), name, limit)
    if as_json:
        _emit([r.to_dict() for r in items])
    elif not items:
        click.echo("No pipeline runs; start one with `opml pipeline run NAME`.")
    else:
        click.echo(table([(r.id, r.ref, r.status, r.experiment, r.submitted_by,
                           f"{r.duration_s:.1f}s" if r.duration_s is not None else "-", r.created_at)
                          for r in items], ["RUN", "PIPELINE", "STATUS", "EXPERIMENT", "BY", "DURATION", "CREATED"]))


@pipeline.command("show")
@click.argument("run_id")
@json_option
@pass_ctx
def show(ctx: Ctx, run_id: str, as_json: bool) -> None:
    """A run: status, steps (durations, reused or not, outputs) and the registered model."""
    _show(_ws(ctx), run_id, as_json)


def _show(ws, run_id: str, as_json: bool) -> None:
    from opml.output import kv, table
    from opml.pipelines import registry

    run = registry.get_run(ws, run_id)
    steps = registry.steps_of(ws, run_id)
    model = next((s.outputs.get("model") for s in reversed(steps) if s.outputs.get("model")), None)
    if as_json:
        _emit(run.to_dict() | {"model": model, "steps": [s.to_dict() for s in steps]})
        return
    click.echo(kv([("run", run.id), ("pipeline", run.ref), ("status", run.status), ("experiment", run.experiment),
                   ("parameters", run.parameters), ("submitted by", run.submitted_by),
                   ("duration", f"{run.duration_s:.1f} s" if run.duration_s is not None else "-"),
                   ("model", model or "-")] + ([("error", run.error)] if run.error else [])))
    if run.status in registry.ACTIVE and run.runner_pid:
        from opml.pipelines.runner import is_runner

        if not is_runner(run.runner_pid, run.id):
            click.echo(f"note: its executor (pid {run.runner_pid}) is gone; `opml server start` marks it Failed",
                       err=True)
    rows = []
    for s in steps:
        outs = ", ".join(f"{k}={v}" for k, v in s.outputs.items() if not isinstance(v, dict))
        rows.append((s.step, s.type, s.status, f"{s.duration_s:.1f}s" if s.duration_s is not None else "-",
                     f"yes ({s.reused_from})" if s.reused else "no", (outs or s.error or "")[:80]))
    click.echo(table(rows, ["STEP", "TYPE", "STATUS", "DURATION", "REUSED", "OUTPUTS / ERROR"]))


@pipeline.command("logs")
@click.argument("run_id")
@click.option("--step", help="Only this step's log.")
@json_option
@pass_ctx
def logs_cmd(ctx: Ctx, run_id: str, step: str | None, as_json: bool) -> None:
    """Print a run's step logs (each step has its own log file)."""
    from opml.errors import NotFoundError
    from opml.pipelines import registry
    from opml.pipelines.step import run_dir

    ws = _ws(ctx)
    registry.get_run(ws, run_id)
    steps = [s.step for s in registry.steps_of(ws, run_id)]
    if step and step not in steps:
        raise NotFoundError(f"run {run_id} has no step {step!r}", f"steps: {', '.join(steps)}")
    folder = run_dir(ws.root, run_id)
    out = {}
    for name in [step] if step else steps:
        path = folder / f"{name}.log"
        out[name] = {"path": str(path), "text": path.read_text(errors="replace") if path.is_file() else ""}
    if as_json:
        _emit(out)
        return
    for name, item in out.items():
        click.echo(f"==> {name} ({item['path']})")
        click.echo(item["text"].rstrip() or "(no output yet)")


@pipeline.command("cancel")
@click.argument("run_id")
@json_option
@pass_ctx
def cancel_cmd(ctx: Ctx, run_id: str, as_json: bool) -> None:
    """Cancel a run: running steps are stopped, the rest never start."""
    import time

    from opml.pipelines import registry, service

    ws = _ws(ctx)
    run = service.cancel(ws, run_id)
    deadline = time.monotonic() + 15
    while run.status not in registry.FINAL and time.monotonic() < deadline:
        time.sleep(0.2)
        run = registry.get_run(ws, run_id)
    if as_json:
        _emit(run.to_dict())
    else:
        click.echo(f"Run {run.id}: {run.status}" + ("" if run.status in registry.FINAL else " (cancel requested)"))


@pipeline.command("publish")
@click.argument("ref", metavar="NAME[:VERSION]")
@json_option
@pass_ctx
def publish(ctx: Ctx, ref: str, as_json: bool) -> None:
    """Publish a pipeline: an id, status Active, and a REST endpoint on the control plane (started if needed)."""
    from opml.pipelines import control, registry

    ws = _ws(ctx)
    pub = registry.publish(ws, ref)
    st = control.start(ws.root)
    endpoint = control.endpoint_url(ws.root, pub.id)
    if as_json:
        _emit(pub.to_dict() | {"endpoint": endpoint, "control_plane": st["url"]})
        return
    click.echo(f"Published {pub.name}:{pub.version} as {pub.id} (status {pub.status})")
    click.echo(f"REST endpoint: {endpoint}")
    click.echo("Trigger: POST it with 'Authorization: Bearer <opml auth token>' and "
               '{"ExperimentName": "...", "ParameterAssignments": {...}}', err=True)


def _set_status(ctx: Ctx, pid: str, status: str, as_json: bool) -> None:
    from opml.pipelines import registry

    pub = registry.set_published_status(_ws(ctx), pid, status)
    if as_json:
        _emit(pub.to_dict())
    else:
        click.echo(f"Published pipeline {pub.id} ({pub.name}:{pub.version}) is {pub.status}.")


@pipeline.command("disable")
@click.argument("pid", metavar="ID")
@json_option
@pass_ctx
def disable(ctx: Ctx, pid: str, as_json: bool) -> None:
    """Disable a published pipeline: its endpoint answers 409 until enabled."""
    _set_status(ctx, pid, "Disabled", as_json)


@pipeline.command("enable")
@click.argument("pid", metavar="ID")
@json_option
@pass_ctx
def enable(ctx: Ctx, pid: str, as_json: bool) -> None:
    """Enable a disabled published pipeline."""
    _set_status(ctx, pid, "Active", as_json)


@pipeline.group(cls=OpmlGroup)
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
    from opml.pipelines import control, registry
    from opml.pipelines.schedule import Cron, parse_every

    if bool(cron) == bool(every):
        raise OpmlError("pass exactly one of --cron EXPR and --every INTERVAL")
    interval = parse_every(every) if every else None
    if cron:
        Cron(cron)
    ws = _ws(ctx)
    s = registry.create_schedule(ws, registry.get_pipeline(ws, ref), cron=cron, interval_s=interval,
                                 params=_params(params), experiment=experiment)
    st = control.start(ws.root)
    if as_json:
        _emit(s.to_dict() | {"control_plane": st["url"]})
    else:
        click.echo(f"Schedule {s.id}: {s.pipeline}:{s.version} {s.recurrence}; next fire "
                   f"{s.to_dict()['next_fire']} (control plane {st['url']})")


@schedule.command("list")
@json_option
@pass_ctx
def schedule_list(ctx: Ctx, as_json: bool) -> None:
    """Schedules with their next fire time and what the last fire did."""
    from opml.output import table
    from opml.pipelines import control, registry

    ws = _ws(ctx)
    items = [s.to_dict() for s in registry.list_schedules(ws)]
    if as_json:
        _emit(items)
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
    from opml.pipelines import registry

    ws = _ws(ctx)
    registry.get_schedule(ws, sid)
    registry.update_schedule(ws, sid, status="Disabled")
    s = registry.get_schedule(ws, sid)
    if as_json:
        _emit(s.to_dict())
    else:
        click.echo(f"Schedule {s.id} is Disabled.")


# ---- server (the control plane) --------------------------------------------------------


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

    st = control.start(_ws(ctx).root, port)
    if as_json:
        _emit(st)
    else:
        verb = "Started" if st["started"] else "Already running:"
        click.echo(f"{verb} control plane on {st['url']} (pid {st['pid']}, log {st['log']})")


@server.command("stop")
@json_option
@pass_ctx
def server_stop(ctx: Ctx, as_json: bool) -> None:
    """Stop the control plane (runs in progress go on)."""
    from opml.pipelines import control

    st = control.stop(_ws(ctx).root)
    if as_json:
        _emit(st)
    else:
        click.echo("Stopped the control plane." if st["stopped"] else "The control plane was not running.")


@server.command("status")
@json_option
@pass_ctx
def server_status(ctx: Ctx, as_json: bool) -> None:
    """Is the control plane running; where; its log."""
    from opml.output import kv
    from opml.pipelines import control

    st = control.status(_ws(ctx).root)
    if as_json:
        _emit(st)
    else:
        click.echo(kv([(k.replace("_", " "), v if v is not None else "-") for k, v in st.items()]))
