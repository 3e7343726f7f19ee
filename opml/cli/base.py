"""What every command module shares: the context object, the group class, shared options, output helpers.

Only click and light opml modules at import time: `opml --help` stays instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from opml.errors import OpmlError

if TYPE_CHECKING:
    from opml.config import AutoMLSettings, DatasetSpec, WorkspaceConfig
    from opml.serving.endpoints import Endpoint
    from opml.workspace.workspace import Workspace

__all__ = ["Ctx", "OpmlError", "OpmlGroup", "UserError", "emit_json", "endpoint_option", "json_option", "kv",
           "param_option", "parse_params", "pass_ctx", "table"]

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
endpoint_option = click.option("--endpoint", "name", help="Endpoint name (default: deploy.yaml name).")
param_option = click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
                            help="Set a pipeline parameter (repeatable).")


class UserError(click.ClickException):
    """An OpmlError as click shows it: `Error: <one line>` on stderr, exit code 2."""

    exit_code = 2


class OpmlGroup(click.Group):
    """Lists commands in the order they were added (workflow order); turns OpmlError into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OpmlError as exc:
            raise UserError(exc.line()) from None


@dataclass
class Ctx:
    """The root command's state: where the configs are; opens the workspace and configs on demand."""

    configs: Path

    def workspace_config(self) -> WorkspaceConfig:
        from opml.config import workspace_config

        return workspace_config(self.configs)

    def workspace(self, *, create: bool = False) -> Workspace:
        from opml.workspace.workspace import Workspace, resolve_root

        cfg = self.workspace_config()
        root = resolve_root(self.configs, cfg)
        ws = Workspace.create_or_open(root, cfg.backend) if create else Workspace.open(root, cfg.backend)
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
        """`--endpoint NAME`, else deploy.yaml's name."""
        if name:
            return name
        from opml.config import deploy_config

        return deploy_config(self.configs).name

    def endpoint(self, ws: Workspace, name: str | None) -> Endpoint:
        """The endpoint `--endpoint NAME` (default: deploy.yaml's name) names."""
        from opml.serving.endpoints import get_endpoint

        return get_endpoint(ws, self.endpoint_name(name))


pass_ctx = click.make_pass_decorator(Ctx)


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
