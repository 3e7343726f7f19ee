"""Registered models on Azure ML: the best AutoML child's MLflow model, registered as model_name."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from opml.azureml.client import AzureML, azure_errors
from opml.errors import OpmlError


@dataclass(frozen=True)
class AzureModel:
    """The same fields as opml.training.models.RegisteredModel; what Azure cannot tell is None."""

    name: str
    version: int
    run_id: str | None  # the AutoML parent job
    child_run: str | None  # the child job whose outputs hold the model
    path: str  # azureml:// URI of the MLflow model folder
    pipeline: str | None
    metrics: dict[str, Any]
    info: dict[str, Any]
    created_at: str | None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ref": self.ref}


def model_uri(child_run: str) -> str:
    """Where an AutoML child job keeps its MLflow model (as Azure's AutoML notebooks register it)."""
    return f"azureml://jobs/{child_run}/outputs/artifacts/outputs/mlflow-model/"


def register_best(az: AzureML, *, name: str, run_id: str, child_run: str, pipeline: str,
                  metrics: dict[str, float], primary_metric: str, dataset: str | None) -> AzureModel:
    """Register the child's MLflow model as the next version of `name`."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model

    tags = {"opml.run_id": run_id, "opml.child_run": child_run, "opml.pipeline": pipeline,
            "opml.primary_metric": primary_metric, "opml.dataset": dataset or ""}
    props = {f"metric.{k}": f"{v:.6g}" for k, v in metrics.items()}
    with azure_errors("model", name):
        made = az.ml.models.create_or_update(Model(name=name, path=model_uri(child_run), type=AssetTypes.MLFLOW_MODEL,
                                                   description=f"best AutoML model of {run_id} ({pipeline})",
                                                   tags=tags, properties=props))
    return _model(made)


def _model(m: Any) -> AzureModel:
    tags = m.tags or {}
    props = m.properties or {}
    metrics = {k.removeprefix("metric."): float(v) for k, v in props.items() if k.startswith("metric.")}
    created = m.creation_context.created_at if m.creation_context else None
    return AzureModel(name=m.name, version=int(m.version), run_id=tags.get("opml.run_id") or m.job_name,
                      child_run=tags.get("opml.child_run"), path=m.path, pipeline=tags.get("opml.pipeline"),
                      metrics=metrics, info={"primary_metric": tags.get("opml.primary_metric"),
                                             "dataset": tags.get("opml.dataset") or None, "type": m.type,
                                             "threshold": None, "classes": [], "schema": None},
                      created_at=str(created) if created else None)


def list_models(az: AzureML) -> list[AzureModel]:
    """Every version of every registered model, by name, newest version first."""
    with azure_errors("models"):
        names = sorted(m.name for m in az.ml.models.list())
    return [m for n in names for m in list_versions(az, n)]


def list_versions(az: AzureML, name: str) -> list[AzureModel]:
    """The versions of one model, newest first."""
    with azure_errors("model", name):
        return [_model(v) for v in sorted(az.ml.models.list(name=name), key=lambda v: -int(v.version))]


def get_model(az: AzureML, ref: str) -> AzureModel:
    """NAME (latest version) or NAME:VERSION."""
    from opml.data.registry import parse_ref

    name, version = parse_ref(ref)
    with azure_errors("model", ref):
        m = az.ml.models.get(name, version=str(version)) if version else az.ml.models.get(name, label="latest")
    return _model(m)


def not_loadable(m: AzureModel) -> OpmlError:
    """`opml predict` on this backend: an AutoML MLflow model needs Azure's AutoML runtime to load."""
    return OpmlError(f"model {m.ref} is an Azure AutoML MLflow model; loading it needs Azure's AutoML runtime "
                     "(azureml-automl-runtime), which opml does not install, so it cannot be scored here",
                     f"download it with `az ml model download --name {m.name} --version {m.version}` "
                     "or score it on an Azure ML endpoint")
