"""The checks bite: mistakes in request bodies are caught by the schema validator; dry-run YAML loads back."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from opml.config import AzureMLWorkspace, automl_settings

pytest_plugins = ["tests.azureml_support"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def job_body(fake, tmp_path):
    """The AutoML job body the SDK really sends (captured by the fake), with its api-version."""
    from opml.azureml import train

    ws, az = fake
    csv = tmp_path / "d.csv"
    csv.write_text("age,response\n" + "".join(f"{i},{'yes' if i % 3 else 'no'}\n" for i in range(30)))
    train.train(az, automl_settings(REPO / "configs"), data=str(csv), no_wait=True, progress=False)
    version, path, body = next(b for b in ws.bodies if b[1].startswith("jobs/"))
    return version, path.split("/"), body


def _invalid(version, path, body) -> str:
    from tests.azure_fake.schemas import BodyInvalid, validate

    with pytest.raises(BodyInvalid) as err:
        validate(version, path, body)
    return str(err.value)


def test_real_body_validates(job_body):
    from tests.azure_fake.schemas import validate

    assert validate(*job_body) == "workspaces_jobs"


def test_misspelt_automl_setting_is_caught(job_body):
    version, path, body = job_body
    bad = copy.deepcopy(body)
    bad["properties"]["taskDetails"]["primaryMetrik"] = bad["properties"]["taskDetails"].pop("primaryMetric")
    assert "primaryMetrik" in _invalid(version, path, bad)


def test_wrong_enum_is_caught(job_body):
    version, path, body = job_body
    bad = copy.deepcopy(body)
    bad["properties"]["taskDetails"]["primaryMetric"] = "AUC"
    msg = _invalid(version, path, bad)
    assert "primaryMetric" in msg and "schema" in msg


def test_missing_training_data_is_caught(job_body):
    version, path, body = job_body
    bad = copy.deepcopy(body)
    del bad["properties"]["taskDetails"]["trainingData"]
    assert "trainingData" in _invalid(version, path, bad)


def test_wrong_type_is_caught(job_body):
    """(An unknown key inside limitSettings is not caught: that schema object allows extra keys.)"""
    version, path, body = job_body
    bad = copy.deepcopy(body)
    bad["properties"]["taskDetails"]["limitSettings"]["maxTrials"] = "three"
    assert "maxTrials" in _invalid(version, path, bad)


def test_body_failing_schema_fails_the_sdk_call(fake):
    """Through the transport: a PUT that does not validate raises inside the SDK call."""
    from tests.azure_fake.schemas import BodyInvalid

    ws, _ = fake
    with pytest.raises(BodyInvalid, match="workspaces_computes"):
        ws.handle("PUT", f"https://management.azure.com{ws.prefix}/computes/x?api-version=2023-08-01-preview",
                  {}, b'{"properties": {"computeType": "AmlKompute"}}')
    assert ws.invalid


def test_every_key_of_automl_yaml_is_mapped_or_listed():
    from opml.azureml.automl import MAPPING, NO_AZURE_MEANING, unmapped_note
    from opml.config import AutoMLSettings

    assert set(AutoMLSettings.model_fields) == set(MAPPING) | set(NO_AZURE_MEANING)
    assert "decision_threshold" in unmapped_note(automl_settings(REPO / "configs"))


def test_dry_run_yaml_loads_back_with_the_sdk(tmp_path):
    from azure.ai.ml import load_data, load_job

    from opml.azureml import dryrun

    cfg = AzureMLWorkspace(subscription_id="s", resource_group="r", workspace_name="w", compute="cpu-cluster")
    settings = automl_settings(REPO / "configs")
    job = load_job(dryrun.job_yaml(settings, cfg, tmp_path / "azureml"))
    assert job.primary_metric.value == "AUCWeighted" and job.compute == "cpu-cluster"
    assert job.limits.timeout_minutes == 2 and job.n_cross_validations == 5
    assert job.training_data.path == "bankmarketing-mltable@latest"  # load_job drops the azureml: prefix
    csv = tmp_path / "bank.csv"
    csv.write_text("age,response\n1,no\n")
    files = dryrun.data_yaml("bank", str(csv), tmp_path / "azureml", label="response")
    loaded = [load_data(f) for f in files]
    assert [(d.name, d.type) for d in loaded] == [("bank", "uri_file"), ("bank-mltable", "mltable")]
    assert (tmp_path / "azureml" / "bank-mltable" / "MLTable").read_text().startswith("paths:")
