"""`opml data`: register datasets and show their profiles (on the selected backend)."""

from __future__ import annotations

from typing import Any

import click

from opml.cli.base import Ctx, OpmlGroup, check_name, emit_json, json_option, pass_ctx, table


@click.group(cls=OpmlGroup)
def data() -> None:
    """Register datasets and show their profiles."""


@data.command("register")
@click.option("--name", help="Dataset name (default: automl.yaml dataset.name).")
@click.option("--path", "path", help="Local CSV file (overrides OPML_DATA and the config).")
@click.option("--url", help="http(s) URL of a CSV file, downloaded once into the workspace cache.")
@click.option("--sha256", help="Expected sha256 of the downloaded file.")
@click.option("--label", help="Label column (default: automl.yaml dataset.label_column).")
@click.option("--dry-run", is_flag=True,
              help="azureml backend: write the YAML `az ml data create -f` takes under azureml/; send nothing.")
@json_option
@pass_ctx
def data_register(ctx: Ctx, name: str | None, path: str | None, url: str | None, sha256: str | None,
                  label: str | None, dry_run: bool, as_json: bool) -> None:
    """Read, profile and register a CSV dataset as NAME:VERSION.

    On the azureml backend: a uri_file data asset (a local file is uploaded
    to the default datastore) and the NAME-mltable asset AutoML trains on.
    """
    if name is not None:  # an empty --name is an error, not the configured name
        check_name(name, "dataset")
    stage = ctx.backend().data
    if dry_run:
        print_dry_run(stage.dry_run(name=name, path=path, url=url, label=label, sha256=sha256), as_json)
        return
    ds, created = stage.register(name=name, path=path, url=url, label=label, sha256=sha256, progress=not as_json)
    if as_json:
        emit_json(ds.to_dict() | {"created": created})
        return
    verb = "Registered" if created else "Already registered (same content)"
    click.echo(f"{verb}: {ds.ref}  sha256 {_short_hash(ds.sha256)}  from {ds.source}")
    if getattr(ds, "mltable", None):
        click.echo(f"MLTable asset for AutoML: {ds.mltable}")
    _print_profile(ds)


@data.command("list")
@json_option
@pass_ctx
def data_list(ctx: Ctx, as_json: bool) -> None:
    """List registered datasets and their versions."""
    datasets = ctx.backend().data.list()
    if as_json:
        emit_json([{k: v for k, v in d.to_dict().items() if k != "profile"} | {
            "rows": _shape(d, "rows"), "columns": _shape(d, "columns")} for d in datasets])
    elif not datasets:
        click.echo("No datasets; register one with `opml data register`.")
    else:
        rows = [(d.ref, _shape(d, "rows"), _shape(d, "columns"), d.label, _short_hash(d.sha256), d.created_at)
                for d in datasets]
        click.echo(table(rows, ["DATASET", "ROWS", "COLUMNS", "LABEL", "SHA256", "CREATED"]))


@data.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
@json_option
@pass_ctx
def data_show(ctx: Ctx, ref: str, as_json: bool) -> None:
    """Show a dataset version's profile (latest version by default)."""
    ds = ctx.backend().data.get(ref)
    if as_json:
        emit_json(ds.to_dict())
        return
    click.echo(f"{ds.ref}  sha256 {ds.sha256 or '-'}\nsource  {ds.source}\ncreated {ds.created_at}")
    _print_profile(ds)


def print_dry_run(dry: Any, as_json: bool) -> None:
    """What `--dry-run` wrote and the `az ml` commands that would send it (train uses it too)."""
    if as_json:
        emit_json(dry.to_dict())
        return
    click.echo("Dry run: nothing was sent to Azure ML. Wrote:")
    for f in dry.files:
        click.echo(f"  {f}")
    click.echo("Create them with the Azure CLI (ml extension):")
    for c in dry.commands:
        click.echo(f"  {c}")


def _short_hash(sha256: str | None) -> str:
    return sha256[:12] if sha256 else "-"


def _shape(ds: Any, key: str) -> Any:
    """Rows or columns from the profile; None when the backend has no profile (an Azure asset from a URL)."""
    return ds.profile[key] if ds.profile else None


def _print_profile(ds: Any) -> None:
    p = ds.profile
    if not p:
        click.echo("No profile: Azure ML reads this source itself (a local file registered here is profiled).")
        return
    click.echo(f"{p['rows']} rows x {p['columns']} columns; label {p['label']['column']!r}:")
    for cls, v in p["label"]["distribution"].items():
        click.echo(f"  {cls:<10} {v['count']:>8}  {v['share']:.1%}")
    rows = []
    for c in p["schema"]:
        detail = (f"{c['min']} .. {c['max']}" if "min" in c
                  else ", ".join(list(c.get("top", {}))[:3]))
        rows.append((c["name"], c["type"], c["missing"], c["unique"], detail))
    click.echo(table(rows, ["COLUMN", "TYPE", "MISSING", "UNIQUE", "RANGE / TOP VALUES"]))
