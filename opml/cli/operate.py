"""`opml enable-logs`, `opml logs`, `opml benchmark`, `opml swagger`: operating a live endpoint."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from opml.cli.base import Ctx, OpmlError, emit_json, endpoint_option, json_option, pass_ctx


@click.command("enable-logs")
@endpoint_option
@click.option("--off", is_flag=True, help="Turn request telemetry off.")
@click.option("--sample-payloads", type=float, default=0.0, show_default=True,
              help="Share of requests (0-1) whose payload is logged too.")
@json_option
@pass_ctx
def enable_logs(ctx: Ctx, name: str | None, off: bool, sample_payloads: float, as_json: bool) -> None:
    """Turn request telemetry on (or --off) on the live endpoint, without a restart."""
    from opml.serving.endpoints import set_telemetry
    from opml.serving.telemetry import telemetry_log

    if off and sample_payloads:
        raise OpmlError("--sample-payloads goes with turning telemetry on", "drop --off or --sample-payloads")
    ws = ctx.workspace()
    ep = set_telemetry(ws, ctx.endpoint_name(name), not off, sample_payloads)
    info = {"endpoint": ep.name, "telemetry": not off, "sample_payloads": sample_payloads,
            "log": str(telemetry_log(ws.root, ep.name)),
            "otlp_endpoint": os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")}
    if as_json:
        emit_json(info)
    elif off:
        click.echo(f"Telemetry is off for {ep.name!r}.")
    else:
        extra = f", {sample_payloads:.0%} of payloads" if sample_payloads else ""
        click.echo(f"Telemetry is on for {ep.name!r}{extra}: {info['log']}  (see `opml logs --endpoint {ep.name}`)")


@click.command()
@endpoint_option
@click.option("--tail", default=50, show_default=True, type=int, help="Entries to show.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries until Ctrl-C.")
@json_option
@pass_ctx
def logs(ctx: Ctx, name: str | None, tail: int, follow: bool, as_json: bool) -> None:
    """The endpoint's server log and request telemetry, newest last."""
    import json

    from opml.serving import logs as endpoint_logs

    if tail < 0:
        raise OpmlError(f"--tail must be 0 or more (got {tail})")
    ws = ctx.workspace()
    ep = ctx.endpoint(ws, name)

    def emit(entry: dict) -> None:
        click.echo(json.dumps(entry) if as_json and follow else endpoint_logs.format_entry(entry))

    entries = endpoint_logs.read(ws.root, ep.name, tail)
    if as_json and not follow:
        emit_json(entries)
        return
    for entry in entries:
        emit(entry)
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            endpoint_logs.follow(ws.root, ep.name, emit)


@click.command()
@endpoint_option
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

    ws = ctx.workspace()
    ep = ctx.endpoint(ws, name)
    report = run_benchmark(ws, ep, requests=n, concurrency=concurrency, rows=rows, payload=payload,
                           keepalive=keepalive, plot=plot)
    if as_json:
        emit_json(report)
    else:
        click.echo(render(report))
    bad = report["failed_requests"] + report["non_2xx_responses"]
    if bad:
        click.echo(f"Error: {report['failed_requests']} failed and {report['non_2xx_responses']} non-2xx "
                   f"responses out of {report['complete_requests']} requests", err=True)
        raise SystemExit(1)


@click.command()
@endpoint_option
@click.option("--out", default="swagger/swagger.json", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the endpoint's swagger.json.")
@click.option("--serve", is_flag=True, help="Then serve Swagger UI on 127.0.0.1:PORT until Ctrl-C.")
@click.option("--port", default=9000, show_default=True, type=int, help="Swagger UI port with --serve.")
@json_option
@pass_ctx
def swagger(ctx: Ctx, name: str | None, out: str, serve: bool, port: int, as_json: bool) -> None:
    """Download the endpoint's swagger.json; with --serve, browse it in Swagger UI (works offline)."""
    from opml.serving.swagger import download, serve_ui

    ws = ctx.workspace()
    ep = ctx.endpoint(ws, name)
    info = download(ws, ep, Path(out))
    if as_json:
        emit_json(info)
    else:
        click.echo(f"Wrote {info['path']} ({info['paths']} paths) from {ep.swagger_uri}")
    if serve:
        click.echo(f"Swagger UI on http://127.0.0.1:{port} (Ctrl-C to stop); authorize with "
                   f"`opml endpoint keys {ep.name}`", err=True)
        serve_ui(ws, ep, Path(out), port)
