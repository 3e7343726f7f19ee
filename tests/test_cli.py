from __future__ import annotations

import json
import subprocess
import sys

import click

from opml import __version__
from opml.cli import main
from tests.conftest import run_opml

HEAVY = ("pandas", "numpy", "sklearn", "lightgbm", "xgboost", "mlflow", "optuna", "matplotlib", "fastapi",
         "pydantic", "requests")


def test_help_imports_no_heavy_library():
    code = ("import sys; from opml.cli import main\n"
            "try: main(['--help'], standalone_mode=False)\nexcept SystemExit: pass\n"
            f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage: " in out
    assert out.strip().splitlines()[-1] == "HEAVY="


def test_version_and_help(project):
    res = run_opml("--version", cwd=project)
    assert res.returncode == 0 and __version__ in res.stdout
    res = run_opml("--help", cwd=project)
    assert res.returncode == 0 and "auth" in res.stdout and "data" in res.stdout


# Commands that run a foreground server instead of printing results.
NO_RESULTS = {("ui",)}


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.append(((*prefix, name), cmd))
            out += _leaf_commands(cmd, (*prefix, name))
        else:
            out.append(((*prefix, name), cmd))
    return out


def test_every_command_has_help_and_printing_commands_take_json(cli):
    for path, cmd in _leaf_commands(main):
        res = cli.ok(*path, "--help")
        assert "not implemented" not in res.output.lower()
        if path in NO_RESULTS:
            continue
        if not isinstance(cmd, click.Group) or cmd.invoke_without_command:
            assert "--json" in res.output, f"opml {' '.join(path)} lacks --json"


def test_json_outputs_chain(cli, workspace, bank_csv):
    summary = json.loads(cli.ok("auth", "--json").stdout)
    ds = json.loads(cli.ok("data", "register", "--path", str(bank_csv), "--json").stdout)
    assert json.loads(cli.ok("data", "show", ds["ref"], "--json").stdout)["sha256"] == ds["sha256"]
    assert json.loads(cli.ok("auth", "--json").stdout)["dataset_versions"] == summary["dataset_versions"] + 1


def test_missing_configs_folder_is_an_error(project, cli):
    line = cli.fails("--configs", str(project / "nowhere"), "auth")
    assert "configs folder" in line and "not found" in line
