"""`opml` commands on the azureml backend, in process: the real SDK against the in-process fake workspace.

Each command's --json keys are compared with what the local backend prints for the same command (taken from
a real local run, not from a list kept here): the same keys, plus the few Azure-only ones named in EXTRAS.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import Project

pytest_plugins = ["tests.azureml_support"]

SECTION = {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "opml-rg",
           "workspace_name": "opml-ws", "compute": "cpu-cluster"}
# Keys the azureml backend adds to a command's --json (everything else is the local backend's keys).
EXTRAS = {
    "auth": {"workspace", "subscription_id", "resource_group", "location", "credential", "compute",
             "compute_exists", "compute_created"},
    "data register": {"mltable"},
    "data list": {"mltable"},
    "data show": {"mltable"},
    "train": {"not_on_azure", "studio_url"},
    "runs list": {"studio_url"},
    "runs show": {"studio_url"},
    "run summary": {"not_on_azure"},
}


def _small(bank_csv: Path, folder: Path) -> Path:
    out = folder / "small.csv"
    out.write_text("".join(bank_csv.read_text().splitlines(keepends=True)[:300]))
    return out


def _json(res) -> object:
    return json.loads(res.stdout)


def _keys(obj: object) -> set[str]:
    return set(obj[0] if isinstance(obj, list) else obj)


def _shapes(proj: Project, small: Path, *, secret_env: dict[str, str] | None = None) -> dict[str, object]:
    """Run the stage commands with --json; the replies by command."""
    out: dict[str, object] = {"auth": _json(proj.ok("auth", "--json"))}
    out["data register"] = _json(proj.ok("data", "register", "--path", str(small), "--json"))
    out["data list"] = _json(proj.ok("data", "list", "--json"))
    out["data show"] = _json(proj.ok("data", "show", out["data register"]["ref"], "--json"))
    out["train"] = _json(proj.ok("train", "--data", str(small), "--max-trials", "2", "--time-budget", "20", "--json"))
    run_id = out["train"]["run_id"]
    out["runs list"] = _json(proj.ok("runs", "list", "--json"))
    out["runs show"] = _json(proj.ok("runs", "show", run_id, "--json"))
    out["run summary"] = out["runs show"]["summary"]
    out["leaderboard row"] = out["runs show"]["summary"]["leaderboard"][0]
    out["models list"] = _json(proj.ok("models", "list", "--json"))
    out["models show"] = _json(proj.ok("models", "show", out["train"]["model"], "--json"))
    return out


@pytest.fixture(scope="module")
def local(tmp_path_factory, bank_csv) -> dict[str, object]:
    """The local backend's --json replies (a real, small local run: 2 trials)."""
    folder = tmp_path_factory.mktemp("local")
    proj = Project(folder)
    shapes = _shapes(proj, _small(bank_csv, folder))
    proj.ok("auth", "sp", "create", "ci")
    creds = _json(proj.ok("auth", "sp", "create", "ci2", "--json"))
    env = proj.env() | {"OPML_CLIENT_SECRET": creds["client_secret"]}
    res = proj.cli.ok("--configs", str(proj.configs), "auth", "token", "--client-id", creds["client_id"], "--json",
                      env=env)
    shapes["auth token"] = json.loads(res.stdout)
    return shapes


@pytest.fixture
def azure(tmp_path, fake, monkeypatch):
    """(project with backend: azureml, fake workspace): `opml` reaches the fake through the fixture's client."""
    ws, az = fake
    proj = Project(tmp_path)
    (proj.configs / "workspace.yaml").write_text(yaml.safe_dump({"backend": "azureml", "azureml": SECTION}))
    monkeypatch.setattr("opml.azureml.client.connect", lambda cfg, **kw: dataclasses.replace(az, cfg=cfg))
    return proj, ws


def test_json_keys_are_the_local_backends(azure, local, bank_csv, tmp_path):
    proj, ws = azure
    remote = _shapes(proj, _small(bank_csv, tmp_path))
    for command, reply in local.items():
        if command == "auth token":
            continue
        assert _keys(remote[command]) == _keys(reply) | EXTRAS.get(command, set()), command
    assert remote["auth"]["backend"] == "azureml" and remote["auth"]["path"] is None
    assert remote["train"]["status"] == "Completed" and remote["train"]["model"] == "bankmarketing-automl:1"
    assert remote["train"]["guardrails"] is None and remote["train"]["leaderboard"][0]["duration_s"] is None
    assert remote["leaderboard row"]["pipeline"] == "VotingEnsemble" and remote["runs show"]["trials"] == 5
    assert remote["runs list"][0]["trials"] is None  # not read by `runs list`: null, not 0
    assert remote["data register"]["profile"]["rows"] == 299 and remote["data list"][0]["rows"] is None
    # register (uri_file + mltable); train reuses that upload (same sha256), submits the job, registers the model
    assert ws.validated == ["workspaces_data_versions", "workspaces_data_versions", "workspaces_jobs",
                            "workspaces_models_versions"] and not ws.invalid


def test_token_has_the_local_shape(azure, local):
    proj, _ = azure
    reply = _json(proj.ok("auth", "token", "--json"))
    assert set(reply) == set(local["auth token"]) and reply["token_type"] == "Bearer"
    line = proj.fails("auth", "token", "--expires-in", "60")
    assert "--expires-in is for the local backend" in line


def test_tables_print_on_azure(azure, bank_csv, tmp_path):
    proj, _ = azure
    proj.ok("data", "register", "--url", "https://example.invalid/bank.csv", "--name", "bank", "--label", "y")
    out = proj.ok("data", "list").stdout
    assert out.splitlines()[0].split() == ["DATASET", "ROWS", "COLUMNS", "LABEL", "SHA256", "CREATED"]
    shown = proj.ok("data", "show", "bank").stdout
    assert "No profile" in shown and "https://example.invalid/bank.csv" in shown
    res = proj.ok("train", "--data", str(_small(bank_csv, tmp_path)))
    assert "Leaderboard (5 models, ranked by AUC_weighted" in res.stdout and "studio      https://" in res.stdout
    assert "Best run: VotingEnsemble" in res.stdout
    assert "not used on Azure ML (no AutoML equivalent): decision_threshold" in res.stderr
    assert "child   4  VotingEnsemble" in res.stderr and "job status Completed" in res.stderr
    run_id = next(ln.split()[1] for ln in res.stdout.splitlines() if ln.startswith("run "))
    shown = proj.ok("runs", "show", run_id).stdout
    assert shown.startswith(f"{run_id}  experiment bankmarketing-automl  dataset bankmarketing:1")
    assert "1     VotingEnsemble" in shown and "duration    -" in shown
    assert "bankmarketing-automl:1  VotingEnsemble  AUC_weighted  0.9478" in proj.ok("models", "list").stdout


def test_auth_creates_the_compute(azure):
    proj, ws = azure
    out = _json(proj.ok("auth", "--json"))
    assert out["compute"] == "cpu-cluster" and out["compute_exists"] is True and out["compute_created"] is False
    section = SECTION | {"compute": "gpu-cluster"}
    (proj.configs / "workspace.yaml").write_text(yaml.safe_dump({"backend": "azureml", "azureml": section}))
    assert _json(proj.ok("auth", "--json"))["compute_exists"] is False
    out = _json(proj.ok("auth", "--create-compute", "--json"))
    assert out["compute"] == "gpu-cluster" and out["compute_created"] is True and "gpu-cluster" in ws.computes
    assert ws.computes["gpu-cluster"]["properties"]["properties"]["scaleSettings"]["minNodeCount"] == 0
    text = proj.ok("auth").stdout
    rows = [line.split("  ", 1) for line in text.splitlines()]
    rows = [(k, v.strip()) for k, v in rows]
    assert ("workspace", "opml-ws") in rows and ("compute exists", "True") in rows and "path" not in text


def test_no_wait_returns_after_submitting(azure, bank_csv, tmp_path):
    proj, ws = azure
    out = _json(proj.ok("train", "--data", str(_small(bank_csv, tmp_path)), "--no-wait", "--json"))
    assert out["status"] == "NotStarted" and out["model"] is None and out["studio_url"].startswith("https://")
    assert not ws.models and sum(c.template == "{ws}/jobs/{job}" for c in ws.calls) == 1


def test_dry_run_sends_nothing_and_loads_back(azure, bank_csv, tmp_path):
    from azure.ai.ml import load_data, load_job

    proj, ws = azure
    small = _small(bank_csv, tmp_path)
    out = _json(proj.ok("train", "--data", str(small), "--dry-run", "--json"))
    files = [Path(f) for f in out["files"]]
    assert [f.name for f in files] == ["data-bankmarketing.yml", "data-bankmarketing-mltable.yml", "automl-job.yml"]
    assert all(f.parent == proj.root / "azureml" for f in files)
    assert out["commands"][-1] == f"az ml job create -f {files[-1]} -g opml-rg -w opml-ws"
    job = load_job(files[-1])
    assert job.compute == "cpu-cluster" and job.training_data.path == "bankmarketing-mltable@latest"
    assert [load_data(f).type for f in files[:2]] == ["uri_file", "mltable"]
    assert (proj.root / "azureml" / "bankmarketing-mltable" / "small.csv").read_bytes() == small.read_bytes()
    text = proj.ok("data", "register", "--url", "https://example.invalid/b.csv", "--name", "b", "--label", "y",
                   "--dry-run").stdout
    assert text.startswith("Dry run: nothing was sent to Azure ML.") and "az ml data create -f" in text
    assert not (proj.root / "azureml" / "b-mltable" / "small.csv").exists()
    assert ws.calls == []


def test_bad_primary_metric_is_one_line_before_any_request(azure):
    proj, ws = azure
    proj.set_config(primary_metric="AUC")
    line = proj.fails("train")
    assert "primary_metric" in line and "AUC_weighted" in line
    assert ws.calls == []


def test_what_azure_does_not_do_is_one_line(azure):
    proj, ws = azure
    assert "az ad sp create-for-rbac" in proj.fails("auth", "sp", "create", "ci")
    assert "az ad sp create-for-rbac" in proj.fails("auth", "sp", "list")
    for args in (("deploy",), ("endpoint", "list"), ("consume",), ("enable-logs",), ("logs",), ("benchmark",),
                 ("swagger",), ("pipeline", "list"), ("server", "status")):
        line = proj.fails(*args)
        assert f"`opml {' '.join(args)}` is not yet on the azureml backend (issue: part 2)" in line, line
    assert "Azure ML studio" in proj.fails("ui")
    assert "Deploy a model" in proj.ok("deploy", "--help").stdout  # help still works
    assert "part 2" not in proj.fails("--backend", "local", "endpoint", "list")  # the local backend still runs it
    assert ws.calls == []


def test_predict_says_the_model_is_not_loadable_here(azure, bank_csv, tmp_path):
    proj, _ = azure
    proj.ok("train", "--data", str(_small(bank_csv, tmp_path)), "--json")
    line = proj.fails("predict", "--data", str(bank_csv), "--out", str(tmp_path / "o.csv"))
    assert "bankmarketing-automl:1 is an Azure AutoML MLflow model" in line
    assert "az ml model download --name bankmarketing-automl --version 1" in line
    assert not (tmp_path / "o.csv").exists()


def test_azure_only_options_on_the_local_backend(tmp_path):
    proj = Project(tmp_path)
    proj.ok("auth")
    assert "--create-compute is for the azureml backend" in proj.fails("auth", "--create-compute")
    assert "--no-wait is for the azureml backend" in proj.fails("train", "--no-wait")
    assert "--dry-run" in proj.fails("train", "--dry-run") and "--dry-run" in proj.fails("data", "register",
                                                                                          "--dry-run")
    line = proj.fails("auth", "token")  # as when click required it: (in process, click names the program `main`)
    assert line == "Error: Missing option '--client-id' (see `main auth token --help`)"
    (proj.configs / "workspace.yaml").write_text("backend: azureml\n")
    assert "missing required key 'azureml'" in proj.fails("auth")
    assert "unknown backend 'aws'" in proj.cli.fails("--configs", str(proj.configs), "auth",
                                                     env=proj.env() | {"OPML_BACKEND": "aws"})
