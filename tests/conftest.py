"""Shared fixtures: the real dataset (found or fetched once), an isolated project folder, a CLI runner."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

REPO = Path(__file__).resolve().parents[1]
DATA_SHA256 = "c4def7b2da7e398dc50a8195cd00ac6143ee51ae7377d24ba0347860e9a9a525"


@pytest.fixture(scope="session")
def bank_csv() -> Path:
    """$OPML_TEST_DATA, else ../shared/data/, else downloaded once into the user cache (opml.data.reference)."""
    from opml.data.reference import reference_csv
    from opml.errors import OpmlError

    try:
        return reference_csv(REPO)
    except OpmlError as exc:
        problem = exc.line()
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project folder holding a copy of the repo's configs/, used as the working directory."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    for var in ("OPML_WORKSPACE", "OPML_DATA", "OPML_CONFIGS", "OPML_CLIENT_ID", "OPML_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


class Cli:
    """Runs `opml ...` in-process through click, as a user would from the project folder."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        from opml.cli import main

        return self.runner.invoke(main, list(args), input=input, env=env, catch_exceptions=True)

    def ok(self, *args: str, **kw) -> Result:
        res = self(*args, **kw)
        assert res.exit_code == 0, f"opml {' '.join(args)} failed ({res.exit_code}): {res.output}\n{res.exception!r}"
        return res

    def fails(self, *args: str, **kw) -> str:
        """Assert a user error: exit 2, one line on stderr, no traceback. Returns that line."""
        res = self(*args, **kw)
        assert res.exit_code == 2, f"expected exit 2, got {res.exit_code}: {res.output}\n{res.exception!r}"
        assert "Traceback" not in res.output
        lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("Usage:")]
        assert len(lines) >= 1
        assert lines[-1].startswith("Error:"), res.stderr
        return lines[-1]


class Project:
    """A project folder (configs + workspace) driven through the CLI without changing directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.configs = root / "configs"
        self.ws = root / ".opml"
        self.cli = Cli()
        shutil.copytree(REPO / "configs", self.configs)

    def env(self) -> dict[str, str]:
        return {"OPML_WORKSPACE": str(self.ws), "OPML_DATA": "", "OPML_CONFIGS": ""}

    def ok(self, *args: str):
        return self.cli.ok("--configs", str(self.configs), *args, env=self.env())

    def fails(self, *args: str) -> str:
        return self.cli.fails("--configs", str(self.configs), *args, env=self.env())

    def set_config(self, file: str = "automl.yaml", **updates) -> None:
        path = self.configs / file
        cfg = (yaml.safe_load(path.read_text()) or {}) | updates
        path.write_text(yaml.safe_dump(cfg))

    def delete_endpoints(self) -> None:
        """Stop every endpoint this project started (for a fixture's `finally`)."""
        for item in json.loads(self.ok("endpoint", "list", "--json").stdout):
            self.ok("endpoint", "delete", item["name"])


def sampled_project(root: Path, bank_csv: Path, rows: int, seed: int) -> tuple[Project, Path]:
    """A project under `root` that has run `auth`, and a `rows`-row sample of the bank CSV beside it."""
    import pandas as pd

    sample = root / "sample.csv"
    pd.read_csv(bank_csv).sample(rows, random_state=seed).to_csv(sample, index=False)
    proj = Project(root / "p")
    proj.ok("auth")
    return proj, sample


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture
def workspace(project: Path, cli: Cli):
    """A created workspace in the project folder, opened through the Python API."""
    from opml.workspace.workspace import Workspace

    cli.ok("auth")
    ws = Workspace.open(project / ".opml")
    yield ws
    ws.close()


def run_opml(*args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """Run opml as a separate process (for concurrency and start-up behaviour)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPML_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "opml", *args], cwd=cwd, env=full_env, input=input,
                          capture_output=True, text=True, timeout=timeout)


def benchmark_module(name: str):
    """benchmarks/<name>.py imported as a module (the benchmarks are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
