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


# Usage errors: click prints "Usage: ... / Try ... / Error: ..."; opml prints the one Error line, with the fix.
USAGE_PROBES = [
    (("swagger", "--out", "{dir}"), "Invalid value for '--out'", "opml swagger --help"),
    (("deploy", "--bogus"), "No such option '--bogus'", "opml deploy --help"),
    (("data", "show"), "Missing argument 'NAME[:VERSION]'", "opml data show --help"),
    (("nosuch",), "No such command 'nosuch'", "opml --help"),
    (("--bogus",), "No such option '--bogus'", "opml --help"),
    (("train", "--max-trials", "many"), "'many' is not a valid integer", "opml train --help"),
    (("auth", "sp", "create"), "Missing argument 'NAME'", "opml auth sp create --help"),
]


def test_usage_errors_are_one_line(project, tmp_path):
    for args, problem, fix in USAGE_PROBES:
        args = tuple(a.format(dir=tmp_path) for a in args)
        res = run_opml(*args, cwd=project)
        assert res.returncode == 2 and res.stdout == "", (args, res)
        lines = res.stderr.splitlines()
        assert len(lines) == 1, (args, res.stderr)
        assert lines[0].startswith("Error: ") and problem in lines[0] and fix in lines[0], lines


def test_help_is_still_full_help(project):
    """Only errors became one line: `--help`, and a group called without a command, print the whole help."""
    res = run_opml("swagger", "--help", cwd=project)
    assert res.returncode == 0 and res.stdout.startswith("Usage: opml swagger [OPTIONS]")
    assert "Options:" in res.stdout and "--out FILE" in res.stdout and "-h, --help" in res.stdout
    res = run_opml("runs", cwd=project)
    out = res.stdout + res.stderr
    assert out.startswith("Usage: opml runs [OPTIONS] COMMAND [ARGS]...") and "Commands:" in out and "list" in out


def test_help_imports_no_backend_and_names_the_backend_switch():
    """`opml --help` loads neither Azure nor the backends (azure-ai-ml is imported when an azureml stage runs)."""
    prefixes = ("azure", "opml.azureml", "opml.config")
    code = ("import sys; from opml.cli import main\n"
            "try: main(['--help'], standalone_mode=False)\nexcept SystemExit: pass\n"
            f"print('LOADED=' + ','.join(m for m in sys.modules if m.startswith({prefixes!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--backend [local|azureml]" in out
    assert out.strip().splitlines()[-1] == "LOADED="


def test_backend_choices_are_the_configs():
    from opml import cli, config

    assert cli.BACKENDS == config.BACKENDS
