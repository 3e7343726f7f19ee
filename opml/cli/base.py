"""What every command module shares: the context object, the group class, shared options, output helpers.

Only click and light opml modules at import time: `opml --help` stays instant.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from opml.errors import OpmlError
from opml.naming import check_name

if TYPE_CHECKING:
    from opml.backends import Backend
    from opml.config import AutoMLSettings, DatasetSpec, WorkspaceConfig
    from opml.serving.endpoints import Endpoint
    from opml.workspace.workspace import Workspace

__all__ = ["Ctx", "OpmlError", "OpmlGroup", "UserError", "check_name", "emit_json", "endpoint_option", "json_option",
           "kv", "local_only", "param_option", "parse_params", "pass_ctx", "table"]

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
endpoint_option = click.option("--endpoint", "name", help="Endpoint name (default: deploy.yaml name).")
param_option = click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
                            help="Set a pipeline parameter (repeatable).")


class UserError(click.ClickException):
    """An OpmlError as click shows it: `Error: <one line>` on stderr, exit code 2."""

    exit_code = 2


class OpmlGroup(click.Group):
    """Lists commands in the order they were added (workflow order); turns OpmlError and click's usage errors
    (bad options or arguments of this group or its commands) into one line. Help is click's own.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OpmlError as exc:
            raise UserError(exc.line()) from None
        except click.UsageError as exc:
            raise one_line_usage(exc) from None


def one_line_usage(exc: click.UsageError) -> click.ClickException:
    """click's usage error (Usage:, Try ..., Error: ...) as one `Error:` line naming the help to read.

    A group called without a command shows its whole help (click's NoArgsIsHelpError), as before.
    """
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc
    command = exc.ctx.command_path if exc.ctx is not None else "opml"
    return UserError(f"{exc.format_message().rstrip('.')} (see `{command} --help`)")


@dataclass
class Ctx:
    """The root command's state: where the configs are, the --backend given; opens the workspace, the backend
    and configs on demand.
    """

    configs: Path
    backend_option: str | None = None  # --backend (over $OPML_BACKEND over workspace.yaml backend)
    _backend: Backend | None = field(default=None, repr=False)

    def workspace_config(self) -> WorkspaceConfig:
        from opml.config import workspace_config

        return workspace_config(self.configs)

    def backend_name(self) -> str:
        """'local' or 'azureml' (a one-line error when the choice or the azureml: section is wrong)."""
        from opml.config import select_backend

        return select_backend(self.configs, self.backend_option)[0]

    def backend(self) -> Backend:
        """The stage functions of the selected backend (opml.backends)."""
        if self._backend is None:
            from opml.backends import open_backend

            self._backend = open_backend(self, self.backend_name())
        return self._backend

    def workspace(self, *, create: bool = False) -> Workspace:
        """The embedded workspace (the local backend's)."""
        from opml.workspace.workspace import Workspace, resolve_root

        cfg = self.workspace_config()
        root = resolve_root(self.configs, cfg)
        ws = Workspace.create_or_open(root, "local") if create else Workspace.open(root, "local")
        click_ctx = click.get_current_context(silent=True)
        if click_ctx is not None:  # close the SQLite connection when the command ends, not at garbage collection
            click_ctx.call_on_close(ws.close)
        return ws

    def automl(self, path: Path | None = None) -> AutoMLSettings:
        from opml.config import automl_settings

        return automl_settings(self.configs, path)

    def dataset_spec(self) -> DatasetSpec | None:
        if not (self.configs / "automl.yaml").is_file():
            return None
        return self.automl().dataset

    def endpoint_name(self, name: str | None) -> str:
        """`--endpoint NAME` (checked: an empty one is not the default), else deploy.yaml's name."""
        if name is not None:
            return check_name(name, "endpoint")
        from opml.config import deploy_config

        return deploy_config(self.configs).name

    def endpoint(self, ws: Workspace, name: str | None) -> Endpoint:
        """The endpoint `--endpoint NAME` (default: deploy.yaml's name) names."""
        from opml.serving.endpoints import get_endpoint

        return get_endpoint(ws, self.endpoint_name(name))


pass_ctx = click.make_pass_decorator(Ctx)


def local_only(cmd: click.Command, problem: str, fix: str) -> None:
    """Make `cmd` and its subcommands refuse to run on the azureml backend, with `problem; fix` as the error.

    The check runs when a command body would, after its options are parsed: `--help` still works, and a group
    that goes on to a subcommand leaves the check to that subcommand.
    """
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            local_only(sub, problem, fix)
    body = cmd.callback
    if body is None:
        return

    @functools.wraps(body)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        click_ctx = click.get_current_context()
        ctx = click_ctx.find_object(Ctx)
        if click_ctx.invoked_subcommand is None and ctx is not None and ctx.backend_name() == "azureml":
            command = " ".join(["opml", *click_ctx.command_path.split()[1:]])
            raise OpmlError(f"`{command}` {problem}", fix)
        return body(*args, **kwargs)

    cmd.callback = guarded


def emit_json(obj: Any) -> None:
    """Print `obj` as indented JSON (the --json output)."""
    from opml import output  # json is imported on first use: `opml --help` need not load it

    output.emit_json(obj)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    from opml import output

    return output.table(rows, headers)


def kv(pairs: Sequence[tuple[str, Any]]) -> str:
    from opml import output

    return output.kv(pairs)


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--param NAME=VALUE` flags -> {NAME: VALUE}."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise OpmlError(f"invalid --param {pair!r}", "write --param NAME=VALUE")
        out[name.strip()] = value
    return out
