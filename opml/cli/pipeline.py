"""`opml pipeline ...`: define, run, follow, publish and cancel pipelines (schedules in opml.cli.schedule)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from opml.cli.base import Ctx, OpmlGroup, emit_json, json_option, kv, param_option, parse_params, pass_ctx, table
from opml.cli.publish import disable, enable, publish
from opml.cli.schedule import schedule

if TYPE_CHECKING:
    from opml.pipelines.registry import StepRun
    from opml.pipelines.watch import RunView


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
    p, created = create_pipeline(ctx.workspace(), spec, path, ctx.configs)
    if as_json:
        emit_json(p.to_dict() | {"created": created})
        return
    click.echo(f"{'Created' if created else 'Unchanged'}: pipeline {p.ref} ({len(spec.steps)} steps) from {path}")
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
    from opml.pipelines import registry
    from opml.pipelines.control import endpoint_url

    ws = ctx.workspace()
    if published:
        items = [p.to_dict() | {"endpoint": endpoint_url(ws.root, p.id)} for p in registry.list_published(ws)]
        if as_json:
            emit_json(items)
        elif not items:
            click.echo("No published pipelines; publish one with `opml pipeline publish NAME`.")
        else:
            click.echo(table([(i["id"], i["pipeline"], i["status"], i["endpoint"] or "-", i["created_at"])
                              for i in items], ["ID", "PIPELINE", "STATUS", "ENDPOINT", "PUBLISHED"]))
        return
    pipes = registry.list_pipelines(ws)
    if as_json:
        emit_json([p.to_dict() for p in pipes])
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
    from opml.pipelines import service, watch

    ws = ctx.workspace()
    run = service.run_pipeline(ws, ref, parse_params(params), experiment=experiment, strict=False)
    if not wait:
        if as_json:
            emit_json(run.to_dict())
        else:
            click.echo(f"Submitted {run.id} ({run.ref}, experiment {run.experiment!r}); "
                       f"follow it with `opml pipeline show {run.id}` or `opml pipeline logs {run.id}`")
        return
    if not as_json:
        click.echo(f"Run {run.id} of {run.ref}, experiment {run.experiment!r}, parameters {run.parameters}")
    try:
        final = watch.follow(ws, run.id, None if as_json else _echo_step)
    except KeyboardInterrupt:
        click.echo(f"Stopped following; the run goes on. Cancel it with `opml pipeline cancel {run.id}`.", err=True)
        raise SystemExit(130) from None
    _show(watch.describe(ws, final.id), as_json)
    if final.status != "Completed":
        click.echo(f"Error: pipeline run {final.id} {final.status}: {final.error}", err=True)
        raise SystemExit(1)


def _echo_step(s: StepRun, elapsed: float) -> None:
    """One progress line per step status change (stderr), e.g. `[  12.3s] automl  Completed in 11.9 s`."""
    from opml.pipelines.registry import FINAL

    extra = " (reused)" if s.reused else ""
    if s.duration_s is not None and s.status in FINAL:
        extra += f" in {s.duration_s:.1f} s"
    if s.error and s.status == "Failed":
        extra += f": {s.error}"
    click.echo(f"[{elapsed:6.1f}s] {s.step:<20} {s.status}{extra}", err=True)


@pipeline.command("runs")
@click.argument("name", required=False)
@click.option("--limit", default=20, show_default=True, type=int)
@json_option
@pass_ctx
def runs_cmd(ctx: Ctx, name: str | None, limit: int, as_json: bool) -> None:
    """List pipeline runs, newest first."""
    from opml.pipelines import service

    items = service.read_runs(ctx.workspace(), name, limit)
    if as_json:
        emit_json([r.to_dict() for r in items])
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
    from opml.pipelines import watch

    _show(watch.describe(ctx.workspace(), run_id), as_json)


def _show(view: RunView, as_json: bool) -> None:
    if as_json:
        emit_json(view.to_dict())
        return
    run = view.run
    click.echo(kv([("run", run.id), ("pipeline", run.ref), ("status", run.status), ("experiment", run.experiment),
                   ("parameters", run.parameters), ("submitted by", run.submitted_by),
                   ("duration", f"{run.duration_s:.1f} s" if run.duration_s is not None else "-"),
                   ("model", view.model or "-")] + ([("error", run.error)] if run.error else [])))
    rows = []
    for s in view.steps:
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
    from opml.pipelines import watch

    out = watch.step_logs(ctx.workspace(), run_id, step)
    if as_json:
        emit_json(out)
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
    from opml.pipelines import watch

    run = watch.cancel(ctx.workspace(), run_id)
    if as_json:
        emit_json(run.to_dict())
    else:
        click.echo(f"Run {run.id}: {run.status}" + ("" if run.status in watch.FINAL else " (cancel requested)"))


for command in (publish, disable, enable, schedule):
    pipeline.add_command(command)
