"""Registered models: logged in MLflow model format, registered in MLflow, indexed in opml.db."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from opml.data.registry import parse_ref
from opml.errors import NotFoundError
from opml.naming import check_name
from opml.training.tracking import uri_to_path
from opml.workspace import store
from opml.workspace.workspace import Workspace, now_iso

_REQUIREMENTS = ("scikit-learn", "lightgbm", "xgboost-cpu", "pandas", "numpy", "cloudpickle")


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: int
    run_id: str  # the AutoML (parent) run
    child_run: str  # the candidate's run, which holds the model
    path: str  # local MLflow model folder
    pipeline: str
    metrics: dict[str, Any]
    info: dict[str, Any]  # threshold, schema, classes, dataset, model uri
    created_at: str

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ref": self.ref}


def _row(row: sqlite3.Row) -> RegisteredModel:
    d = dict(row)
    d["metrics"] = json.loads(d["metrics"])
    d["info"] = json.loads(d["info"])
    return RegisteredModel(**d)


def requirements() -> list[str]:
    reqs = []
    for dist in _REQUIREMENTS:
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def log_and_register(ws: Workspace, client: Any, *, name: str, model: Any, child_run: str, run_id: str,
                     sample: Any, pipeline: str, metrics: dict[str, Any], info: dict[str, Any]) -> RegisteredModel:
    """Log `model` in MLflow format under the candidate's run and register it as a new version of `name`."""
    check_name(name, "model")
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    # Integer columns are declared as doubles so rows with missing values still match the schema.
    ints = [c for c in sample.columns if str(sample[c].dtype).startswith(("int", "Int"))]
    sample = sample.astype(dict.fromkeys(ints, "float64"))
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # MLflow's notes on pickles and integer schemas, handled above
        signature = infer_signature(sample, model.predict(sample))
        with mlflow.start_run(run_id=child_run):
            logged = mlflow.sklearn.log_model(
                model, name="model", signature=signature, input_example=sample.head(2),
                pip_requirements=requirements(), serialization_format="cloudpickle",
            )
            mlflow.set_tag("opml.registered_model", name)
        version = mlflow.register_model(logged.model_uri, name, tags={"opml.run_id": run_id}).version
    path = uri_to_path(mlflow.get_logged_model(logged.model_id).artifact_location)
    model_info = info | {"model_uri": f"models:/{name}/{version}", "logged_model_uri": logged.model_uri}
    reg = RegisteredModel(name=name, version=int(version), run_id=run_id, child_run=child_run, path=str(path),
                          pipeline=pipeline, metrics=metrics, info=model_info, created_at=now_iso())
    with store.transaction(ws.db) as db:
        db.execute(
            "INSERT OR REPLACE INTO models (name, version, run_id, child_run, path, pipeline, metrics, info,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (reg.name, reg.version, reg.run_id, reg.child_run, reg.path, reg.pipeline,
             json.dumps(metrics, default=float), json.dumps(model_info, default=str), reg.created_at),
        )
    return reg


def list_models(ws: Workspace) -> list[RegisteredModel]:
    return [_row(r) for r in ws.db.execute("SELECT * FROM models ORDER BY name, version DESC")]


def get_model(ws: Workspace, ref: str) -> RegisteredModel:
    name, version = parse_ref(ref, "model")
    if version is None:
        row = ws.db.execute("SELECT * FROM models WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)).fetchone()
    else:
        row = ws.db.execute("SELECT * FROM models WHERE name = ? AND version = ?", (name, version)).fetchone()
    if row is None:
        raise NotFoundError(f"no registered model {ref!r}", "see `opml models list` or run `opml train`")
    return _row(row)


def load_model(reg: RegisteredModel) -> Any:
    """The fitted classifier, loaded through MLflow's sklearn flavour."""
    from opml.training.tracking import quiet_mlflow

    if not (Path(reg.path) / "MLmodel").is_file():
        raise NotFoundError(f"model files of {reg.ref} are missing at {reg.path}", "retrain with `opml train`")
    import mlflow.sklearn

    quiet_mlflow()
    return mlflow.sklearn.load_model(reg.path)
