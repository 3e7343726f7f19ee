"""`opml auth`: the workspace, service principals and bearer tokens (on the selected backend)."""

from __future__ import annotations

import click

from opml.backends import LOCAL_TOKEN_TTL
from opml.cli.base import Ctx, OpmlGroup, emit_json, json_option, kv, pass_ctx, table


@click.group(cls=OpmlGroup, invoke_without_command=True)
@click.option("--create-compute", is_flag=True,
              help="azureml backend: create the configured compute cluster (AmlCompute, 0 nodes when idle) if missing.")
@json_option
@pass_ctx
@click.pass_context
def auth(click_ctx: click.Context, ctx: Ctx, create_compute: bool, as_json: bool) -> None:
    """Create or open the workspace and show a summary.

    With OPML_CLIENT_ID and OPML_CLIENT_SECRET set, also checks those
    service-principal credentials (like ServicePrincipalAuthentication).
    On the azureml backend: signs in, fetches the Azure ML workspace and
    checks the configured compute.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    summary = ctx.backend().auth.summary(create_compute=create_compute)
    if as_json:
        emit_json(summary)
        return
    click.echo(kv([(k.replace("_", " "), v) for k, v in summary.items() if v is not None]))  # null: not on this backend


@auth.group(cls=OpmlGroup)
def sp() -> None:
    """Manage service principals (client id + secret)."""


@sp.command("create")
@click.argument("name")
@json_option
@pass_ctx
def sp_create(ctx: Ctx, name: str, as_json: bool) -> None:
    """Create a service principal; its secret is shown once, here."""
    creds = ctx.backend().auth.create_principal(name)
    p = creds.principal
    if as_json:
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
    principals = ctx.backend().auth.list_principals()
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
    p = ctx.backend().auth.delete_principal(name)
    if as_json:
        emit_json({"deleted": p.name, "client_id": p.client_id})
    else:
        click.echo(f"Deleted service principal {p.name!r} ({p.client_id}).")


@auth.command("token")
@click.option("--client-id", envvar="OPML_CLIENT_ID",
              help="Service principal client id (required on the local backend).")
@click.option("--expires-in", default=LOCAL_TOKEN_TTL, show_default=True, type=int,
              help="Token lifetime in seconds (local backend).")
@json_option
@pass_ctx
def token(ctx: Ctx, client_id: str | None, expires_in: int, as_json: bool) -> None:
    """Issue a signed bearer token for the workspace's REST endpoints.

    The secret comes from OPML_CLIENT_SECRET or a hidden prompt, never a flag.
    On the azureml backend: an Entra ID token for https://ml.azure.com from
    the configured credential.
    """
    if client_id is None and ctx.backend_name() == "local":
        click_ctx = click.get_current_context()
        raise click.MissingParameter(ctx=click_ctx, param=next(p for p in token.params if p.name == "client_id"))
    reply = ctx.backend().auth.token(client_id, expires_in, _prompt_secret)
    if as_json:
        emit_json(reply)
    else:
        click.echo(reply["access_token"])
        click.echo(f"Bearer token valid for {reply['expires_in']} s.", err=True)


def _prompt_secret() -> str:
    try:
        return click.prompt("Client secret", hide_input=True, err=True, default="", show_default=False)
    except click.Abort:
        return ""
