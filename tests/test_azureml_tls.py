"""The subprocess path: a separate Python process drives MLClient against the fake over real TLS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.azureml_support import require_schemas

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
from azure.ai.ml import MLClient
from azure.ai.ml.entities import Data
from tests.azure_fake.transport import FakeCredential
from tests.azure_fake.workspace import RG, SUB, WS
ml = MLClient(FakeCredential(), SUB, RG, WS)
ws = ml.workspaces.get(WS)
d = ml.data.create_or_update(Data(name="bank", path="https://example.invalid/bank.csv", type="uri_file"))
print(ws.name, ws.location, d.name, d.version)
"""


def test_mlclient_in_a_subprocess_over_tls(tmp_path):
    require_schemas()
    from tests.azure_fake.tls import FakeServer

    with FakeServer(tmp_path) as srv:
        env = os.environ | {"AZUREML_DEV_URL_MFE": srv.url, "REQUESTS_CA_BUNDLE": str(srv.cert),
                            "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["opml-ws", "westeurope", "bank", "1"]
    assert srv.workspace.validated == ["workspaces_data_versions"] and not srv.errors
    assert srv.workspace.sequence()[-1] == "PUT {ws}/data/{data}/versions/{version} 2023-04-01-preview"
