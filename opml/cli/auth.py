"""`opml auth`: the workspace, service principals and bearer tokens."""

from __future__ import annotations

import os

import click

from opml.cli.base import Ctx, OpmlGroup, emit_json, json_option, kv, pass_ctx, table


@click.group(cls=OpmlGroup, invoke_without_command=True)
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
        emit_json(summary)
        return
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
    from opml.workspace.identity import issue_token, read_client_secret

    secret = read_client_secret(_prompt_secret)
    reply = issue_token(ctx.workspace(), client_id, secret, expires_in)
    if as_json:
        emit_json(reply)
    else:
        click.echo(reply["access_token"])
        click.echo(f"Bearer token valid for {expires_in} s.", err=True)


def _prompt_secret() -> str:
    try:
        return click.prompt("Client secret", hide_input=True, err=True, default="", show_default=False)
    except click.Abort:
        return ""
