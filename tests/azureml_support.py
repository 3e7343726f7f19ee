"""Shared set-up for the azureml tests: the real SDK against the in-process fake workspace."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "azure_fake" / "golden"
VALIDATED: list[str] = []  # every body the fake validated, across the azureml tests


def require_schemas() -> None:
    from tests.azure_fake.schemas import SchemasMissing, schemas_dir

    try:
        schemas_dir()
    except SchemasMissing as exc:
        pytest.fail(str(exc))


def check_golden(name: str, lines: list[str]) -> None:
    """Compare a request sequence with tests/azure_fake/golden/<name>.txt (OPML_UPDATE_GOLDEN=1 rewrites it)."""
    path = GOLDEN / f"{name}.txt"
    text = "\n".join(lines) + "\n"
    if os.environ.get("OPML_UPDATE_GOLDEN") == "1" or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"request sequence changed; diff against {path}"


@pytest.fixture
def fake(monkeypatch):
    """(workspace, AzureML client) with blob uploads routed to the same fake."""
    require_schemas()
    import azure.ai.ml._artifacts._blob_storage_helper as blob_helper
    from azure.storage.blob import BlobServiceClient

    from opml.azureml.client import connect
    from opml.config import AzureMLWorkspace
    from tests.azure_fake.transport import FakeCredential, FakeTransport
    from tests.azure_fake.workspace import RG, SUB, WS, FakeWorkspace

    monkeypatch.setenv("AZUREML_DEV_URL_MFE", "https://management.azure.com")
    ws = FakeWorkspace()
    transport = FakeTransport(ws)
    # The SDK builds its own blob client (no transport argument): give it the fake's.
    monkeypatch.setattr(blob_helper, "BlobServiceClient", functools.partial(BlobServiceClient, transport=transport))
    cfg = AzureMLWorkspace(subscription_id=SUB, resource_group=RG, workspace_name=WS, compute="cpu-cluster")
    az = connect(cfg, cred=FakeCredential(), transport=transport, poll_seconds=0, polling_interval=0.01,
                 show_progress=False)
    yield ws, az
    VALIDATED.extend(ws.validated)
