"""workspace.yaml's azureml: section and the backend switch ($OPML_BACKEND over `backend`)."""

from __future__ import annotations

import pytest

from opml import config
from opml.config import select_backend, workspace_config
from opml.errors import ConfigError

SECTION = "azureml:\n  subscription_id: s\n  resource_group: rg\n  workspace_name: ws\n"


def write(tmp_path, text):
    (tmp_path / "workspace.yaml").write_text(text)
    return tmp_path


def test_azureml_section_loads_with_defaults(tmp_path):
    cfg = workspace_config(write(tmp_path, "backend: local\n" + SECTION + "  tenant_id: t\n"))
    az = cfg.azureml
    assert (az.subscription_id, az.resource_group, az.workspace_name, az.tenant_id) == ("s", "rg", "ws", "t")
    assert az.compute == "cpu-cluster" and az.instance_type == "Standard_DS3_v2" and az.location is None


def test_unknown_key_names_file_and_key(tmp_path):
    folder = write(tmp_path, SECTION + "  colour: red\n")
    with pytest.raises(ConfigError) as err:
        workspace_config(folder)
    msg = err.value.line()
    assert str(folder / "workspace.yaml") in msg and "'azureml.colour'" in msg and "\n" not in msg
    assert "allowed keys: subscription_id, resource_group, workspace_name, tenant_id, compute" in msg


def test_missing_key_names_file_and_key(tmp_path):
    folder = write(tmp_path, "azureml:\n  subscription_id: s\n  workspace_name: ws\n")
    with pytest.raises(ConfigError) as err:
        workspace_config(folder)
    assert "missing required key 'azureml.resource_group'" in err.value.line()


def test_env_overrides_backend_and_needs_the_section(tmp_path, monkeypatch):
    assert config.BACKENDS == ("local", "azureml")
    folder = write(tmp_path, "backend: local\n")
    monkeypatch.setenv("OPML_BACKEND", "azureml")
    with pytest.raises(ConfigError) as err:
        select_backend(folder)
    assert "missing required key 'azureml'" in err.value.line()
    write(tmp_path, "backend: local\n" + SECTION)
    assert select_backend(folder)[0] == "azureml"
    monkeypatch.setenv("OPML_BACKEND", "aws")
    with pytest.raises(ConfigError, match="unknown backend 'aws'"):
        select_backend(folder)
    monkeypatch.delenv("OPML_BACKEND")
    assert select_backend(folder)[0] == "local"


def test_backend_option_overrides_env_and_file(tmp_path, monkeypatch):
    folder = write(tmp_path, "backend: azureml\n" + SECTION)
    monkeypatch.setenv("OPML_BACKEND", "azureml")
    assert select_backend(folder, "local")[0] == "local"
    with pytest.raises(ConfigError, match="--backend: unknown backend 'gcp'"):
        select_backend(folder, "gcp")
    monkeypatch.delenv("OPML_BACKEND")
    assert select_backend(folder)[0] == "azureml"
