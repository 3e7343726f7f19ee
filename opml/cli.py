"""The opml command line: one thin click command per stage over plain Python functions."""

from __future__ import annotations

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

    Run the stages in workflow order: auth, then data.
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
