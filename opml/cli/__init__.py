"""The opml command line: the root group, with one module of thin click commands per stage group.

Each command parses its options, calls one stage function and prints; the work lives in the stage
packages. Only click and light opml modules are imported here: `opml --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from opml import __version__
from opml.cli.auth import auth
from opml.cli.base import Ctx, OpmlGroup, UserError, local_only
from opml.cli.data import data
from opml.cli.deploy import consume, deploy, endpoint
from opml.cli.operate import benchmark, enable_logs, logs, swagger
from opml.cli.pipeline import pipeline
from opml.cli.server import server
from opml.cli.train import models, predict, runs, train, ui

__all__ = ["main", "run"]

# Workflow order: `opml --help` lists the commands in this order.
COMMANDS = (auth, data, train, runs, models, predict, ui, deploy, endpoint, consume, enable_logs, logs, benchmark,
            swagger, pipeline, server)
# Stages the azureml backend does not run yet (endpoints and pipelines: the second part of the Azure ML issue).
PART_2 = (deploy, endpoint, consume, enable_logs, logs, benchmark, swagger, pipeline, server)
BACKENDS = ("local", "azureml")  # opml.config.BACKENDS, spelt out here: `opml --help` does not import config


@click.group(cls=OpmlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--configs",
    envvar="OPML_CONFIGS",
    default="configs",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of YAML configs (env OPML_CONFIGS).",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    help="Where the stages run: the embedded workspace or an Azure ML workspace "
    "(default: $OPML_BACKEND, else workspace.yaml backend).",
)
@click.version_option(__version__, prog_name="opml")
@click.pass_context
def main(ctx: click.Context, configs: Path, backend: str | None) -> None:
    """opml: operationalize an ML model end to end on an embedded workspace (or on Azure ML: --backend azureml).

    Run the stages in workflow order: auth, data, train, deploy, enable-logs, swagger,
    consume, benchmark, pipeline.
    """
    source = ctx.get_parameter_source("configs")
    if source is not click.core.ParameterSource.DEFAULT and not configs.is_dir():
        raise UserError(
            f"configs folder {configs} not found; pass --configs DIR or set OPML_CONFIGS to an existing folder"
        )
    ctx.obj = Ctx(configs=configs, backend_option=backend)


for _command in COMMANDS:
    main.add_command(_command)
for _command in PART_2:
    local_only(_command, "is not yet on the azureml backend (issue: part 2)", "run it with --backend local")
local_only(ui, "opens the local tracking store's MLflow UI", "on the azureml backend, open Azure ML studio "
           "(the studio URL `opml runs show` prints)")


def run() -> None:
    """Console-script entry point."""
    try:
        main(prog_name="opml")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
