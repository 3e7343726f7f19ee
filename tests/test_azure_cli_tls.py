"""`opml` as a separate process on the azureml backend, against the fake workspace over real TLS.

Nothing is patched in the `opml` process: the SDK reaches the fake through AZUREML_DEV_URL_MFE, trusts its
certificate through REQUESTS_CA_BUNDLE, uploads blobs through the fake's CONNECT tunnel, and opml's credential
code (DefaultAzureCredential) gets its tokens from a stand-in `az` (tests/azure_fake/azcli.py). Also runs
scripts/run_azure_fake.sh, the demo of the same, in bounded time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.azureml_support import require_schemas
from tests.conftest import REPO, run_opml

SECTION = {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "opml-rg",
           "workspace_name": "opml-ws", "compute": "cpu-cluster", "poll_seconds": 0.05}
URL = "https://example.invalid/data/bankmarketing_train.csv"


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """(project folder, environment for `opml`, the running fake server)."""
    require_schemas()
    from tests.azure_fake.azcli import cli_env
    from tests.azure_fake.tls import FakeServer

    folder = tmp_path_factory.mktemp("tls")
    project = folder / "project"
    (project / "configs").mkdir(parents=True)
    for name in ("automl.yaml", "deploy.yaml"):
        (project / "configs" / name).write_text((REPO / "configs" / name).read_text())
    (project / "configs" / "workspace.yaml").write_text(yaml.safe_dump({"backend": "azureml", "azureml": SECTION}))
    with FakeServer(folder) as srv:
        yield project, cli_env(srv, folder), srv


def _ok(remote, *args: str) -> subprocess.CompletedProcess:
    project, env, _ = remote
    res = run_opml(*args, cwd=project, env=env, timeout=120)
    assert res.returncode == 0, (args, res.stderr[-3000:])
    return res


def test_stages_over_tls(remote):
    project, env, srv = remote
    auth = json.loads(_ok(remote, "auth", "--json").stdout)
    assert (auth["backend"], auth["workspace"], auth["location"]) == ("azureml", "opml-ws", "westeurope")
    assert auth["credential"] == "DefaultAzureCredential" and auth["compute_exists"] is True

    ds = json.loads(_ok(remote, "data", "register", "--url", URL, "--name", "bank", "--label", "y", "--json").stdout)
    assert (ds["ref"], ds["mltable"], ds["source"], ds["sha256"], ds["created"]) == ("bank:1", "bank-mltable:1", URL,
                                                                                     None, True)
    assert any(k.endswith("/MLTable") for k in srv.workspace.blobs)  # the MLTable folder went through the tunnel

    before = len(srv.workspace.calls)
    dry = json.loads(_ok(remote, "data", "register", "--url", URL, "--name", "bank", "--label", "y", "--dry-run",
                         "--json").stdout)
    assert [Path(f).name for f in dry["files"]] == ["data-bank.yml", "data-bank-mltable.yml"]
    good = (project / "configs" / "automl.yaml").read_text()
    (project / "configs" / "bad.yaml").write_text(good.replace("primary_metric: AUC_weighted", "primary_metric: AUC"))
    res = run_opml("train", "--config", "configs/bad.yaml", cwd=project, env=env)
    assert res.returncode == 2 and res.stdout == "" and len(res.stderr.splitlines()) == 1
    assert "primary_metric" in res.stderr and "Traceback" not in res.stderr
    assert len(srv.workspace.calls) == before  # neither sent a request

    run = json.loads(_ok(remote, "train", "--no-wait", "--json").stdout)
    assert run["status"] == "NotStarted" and run["model"] is None and run["dataset"] == "bankmarketing:1"
    shown = json.loads(_ok(remote, "runs", "show", run["run_id"], "--json").stdout)
    assert shown["id"] == run["run_id"] and shown["dataset"] == "bankmarketing:1"
    assert srv.workspace.validated.count("workspaces_jobs") == 1 and not srv.workspace.invalid and not srv.errors


def test_demo_script_runs_end_to_end():
    require_schemas()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPML_", "AZURE"))}
    env.pop("OPML_DATA", None)
    if os.environ.get("OPML_AZURE_SCHEMAS"):
        env["OPML_AZURE_SCHEMAS"] = os.environ["OPML_AZURE_SCHEMAS"]
    res = subprocess.run(["bash", str(REPO / "scripts" / "run_azure_fake.sh")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    for header in ("== auth:", "== data:", "== train:", "== runs show", "== models list", "== the fake workspace"):
        assert header in out, header
    assert re.search(r"^workspace +opml-ws$", out, re.M) and re.search(r"^compute exists +True$", out, re.M)
    assert "Registered: bankmarketing:1" in out
    assert out.count("Leaderboard (5 models, ranked by AUC_weighted") == 2  # train, then runs show
    assert "bankmarketing-automl:1  VotingEnsemble  AUC_weighted  0.9478" in out
    assert "request bodies schema-validated, 0 invalid" in out
    assert "PUT {ws}/jobs/{job} 2024-01-01-preview" in out
