"""The azureml backend's stages: the real azure-ai-ml SDK against the in-process fake workspace.

Every PUT the SDK sends is validated against the ARM schema of its api-version (a failure raises inside the
call); request sequences are compared with golden files in tests/azure_fake/golden/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from opml.config import automl_settings
from opml.errors import ConfigError, NotFoundError, OpmlError
from tests.azureml_support import VALIDATED, check_golden

pytest_plugins = ["tests.azureml_support"]

REPO = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/bankmarketing_train.csv")
URL = "https://example.invalid/data/bankmarketing_train.csv"


def _csv(tmp_path: Path) -> Path:
    """A small copy of the dataset (fast uploads); the full file when present, else a synthetic one."""
    out = tmp_path / "bank.csv"
    if DATA.is_file():
        lines = DATA.read_text().splitlines()[:200]
    else:
        lines = ["age,job,response"] + [f"{20 + i % 50},admin.,{'yes' if i % 7 == 0 else 'no'}" for i in range(199)]
    out.write_text("\n".join(lines) + "\n")
    return out


def _settings(tmp_path: Path, **updates):
    settings = automl_settings(REPO / "configs")
    return settings.model_copy(update=updates) if updates else settings


def test_auth_summary_and_create_compute(fake):
    from opml.azureml import auth

    ws, az = fake
    out = auth.summary(az)
    assert out["workspace"] == "opml-ws" and out["location"] == "westeurope"
    assert out["tracking_uri"].startswith("azureml://") and out["compute_exists"] is True
    az.cfg = az.cfg.model_copy(update={"compute": "new-cluster"})
    out = auth.summary(az, create_compute=True)
    assert out["compute_created"] is True and "new-cluster" in ws.computes
    assert ws.computes["new-cluster"]["properties"]["properties"]["scaleSettings"]["minNodeCount"] == 0
    assert ws.validated == ["workspaces_computes"]
    check_golden("auth", ws.sequence())


def test_token_is_for_azure_ml(fake):
    from opml.azureml import auth

    _, az = fake
    reply = auth.token(az)
    assert reply["token_type"] == "Bearer" and reply["expires_in"] > 3000
    assert az.credential.scopes[-1] == "https://ml.azure.com/.default"
    assert "az ad sp create-for-rbac" in auth.principals_unsupported().line()


def test_data_register_url_then_list_show(fake):
    from opml.azureml import data

    ws, az = fake
    ds, created = data.register_dataset(az, None, name="bank", url=URL, label="response")
    assert created and ds.ref == "bank:1" and ds.mltable == "bank-mltable:1" and ds.source == URL
    ds2, _ = data.register_dataset(az, None, name="bank", url=URL, label="response")
    assert ds2.version == 2  # Azure numbers versions
    assert [d.ref for d in data.list_datasets(az)] == ["bank:2", "bank:1"]
    shown = data.get_dataset(az, "bank:1")
    assert shown.path == URL and shown.label == "response" and shown.profile is None
    assert ws.validated.count("workspaces_data_versions") == 4
    check_golden("data_register_url", ws.sequence())
    with pytest.raises(NotFoundError):
        data.get_dataset(az, "nope:3")


def test_data_register_pinned_url_is_registered_once(fake):
    """A URL with an expected sha256 (automl.yaml's dataset) is pinned content: registering it again reuses it."""
    from opml.azureml import data

    _, az = fake
    first, created = data.register_dataset(az, None, name="bank", url=URL, label="response", sha256="a" * 64)
    again, created_again = data.register_dataset(az, None, name="bank", url=URL, label="response", sha256="a" * 64)
    assert created and not created_again and again.ref == first.ref == "bank:1" and again.mltable == "bank-mltable:1"
    assert again.sha256 is None  # expected, never verified by opml: Azure reads the URL
    other, created_other = data.register_dataset(az, None, name="bank", url=URL, label="response", sha256="b" * 64)
    assert created_other and other.ref == "bank:2"


def test_data_register_local_file_uploads_and_dedupes(fake, tmp_path):
    from opml.azureml import data

    ws, az = fake
    csv = _csv(tmp_path)
    ds, created = data.register_dataset(az, None, name="bank", path=str(csv), label="response")
    assert created and ds.path.startswith("azureml://datastores/workspaceblobstore/paths/LocalUpload/")
    assert ds.profile["rows"] == 199 and ds.sha256
    assert any(k.endswith("/bank.csv") and v == csv.read_bytes() for k, v in ws.blobs.items())
    again, created = data.register_dataset(az, None, name="bank", path=str(csv), label="response")
    assert not created and again.ref == "bank:1"
    assert data.get_dataset(az, "bank").profile["rows"] == 199  # local profile: the file is still here
    check_golden("data_register_local", ws.sequence())


def test_train_end_to_end(fake, tmp_path):
    from opml.azureml import models, train

    ws, az = fake
    statuses, trials = [], []
    result = train.train(
        az,
        _settings(tmp_path),
        data=str(_csv(tmp_path)),
        on_trial=trials.append,
        on_status=statuses.append,
        progress=False,
    )
    assert statuses == ["Queued", "Running", "Completed"]
    assert [t.iteration for t in trials] == [0, 1, 2, 3, 4]
    assert trials[-1].best_so_far == max(t.score for t in trials)
    board = result.summary["leaderboard"]
    assert board[0]["pipeline"] == "VotingEnsemble" and board[0]["metrics"]["AUC_weighted"] == 0.9478
    assert result.model.ref == "bankmarketing-automl:1"
    assert result.model.path == f"azureml://jobs/{result.run_id}_4/outputs/artifacts/outputs/mlflow-model/"
    job = ws.bodies[[b[1] for b in ws.bodies].index(f"jobs/{result.run_id}")][2]["properties"]
    task = job["taskDetails"]
    assert (task["taskType"], task["primaryMetric"], task["targetColumnName"]) == (
        "Classification",
        "AUCWeighted",
        "response",
    )
    assert task["limitSettings"]["timeout"] == "PT2M" and task["nCrossValidations"]["value"] == 5
    assert task["trainingData"]["uri"].endswith("/data/bankmarketing-mltable/versions/1") and job["computeId"].endswith(
        "/computes/cpu-cluster"
    )
    assert ws.models[("bankmarketing-automl", "1")]["properties"]["modelType"] == "mlflow_model"
    assert not ws.invalid
    check_golden("train", ws.sequence())

    runs = train.list_runs(az)
    assert [r.id for r in runs] == [result.run_id] and runs[0].status == "Completed"
    shown = train.get_run(az, result.run_id)
    assert shown.best_pipeline == "VotingEnsemble" and shown.trials == 5 and shown.best_score == 0.9478
    assert [m.ref for m in models.list_models(az)] == ["bankmarketing-automl:1"]
    m = models.get_model(az, "bankmarketing-automl")
    assert m.child_run == f"{result.run_id}_4" and m.metrics["AUC_weighted"] == 0.9478
    with pytest.raises(NotFoundError):
        train.get_run(az, "no_such_job")


def test_train_no_wait_returns_after_submit(fake, tmp_path):
    from opml.azureml import train

    ws, az = fake
    result = train.train(az, _settings(tmp_path), data=str(_csv(tmp_path)), no_wait=True, progress=False)
    assert result.status == "NotStarted" and result.model is None
    assert result.studio_url.startswith("https://ml.azure.com/runs/")
    assert not any(c.template.endswith("/models/{model}/versions/{version}") for c in ws.calls)


def test_bad_primary_metric_is_one_line_before_any_request(fake, tmp_path):
    from opml.azureml import train

    ws, az = fake
    bad = _settings(tmp_path).model_copy(update={"primary_metric": "AUC"})
    with pytest.raises(ConfigError) as err:
        train.train(az, bad, data=str(_csv(tmp_path)))
    assert "primary_metric" in err.value.line() and "\n" not in err.value.line()
    assert ws.calls == []


def test_azure_failures_are_one_line(fake):
    from opml.azureml import models

    _, az = fake
    with pytest.raises(OpmlError) as err:
        models.get_model(az, "missing:1")
    assert "\n" not in err.value.line() and "missing" in err.value.line()


def test_bodies_were_validated():
    """Runs last in this file: how many PUT bodies the schemas checked across the tests above."""
    print(f"\nschema-validated request bodies: {len(VALIDATED)}")
    assert len(VALIDATED) >= 10
