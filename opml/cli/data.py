"""`opml data`: register datasets and show their profiles."""

from __future__ import annotations

from typing import Any

import click

from opml.cli.base import Ctx, OpmlGroup, emit_json, json_option, pass_ctx, table


@click.group(cls=OpmlGroup)
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
        emit_json(ds.to_dict())
        return
    click.echo(f"{ds.ref}  sha256 {ds.sha256}\nsource  {ds.source}\ncreated {ds.created_at}")
    _print_profile(ds)


def _print_profile(ds: Any) -> None:
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
