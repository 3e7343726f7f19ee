"""`opml auth` on Azure ML: the workspace, its tracking URI, the compute cluster, Entra ID tokens."""

from __future__ import annotations

import time
from typing import Any

from opml.azureml.client import ML_SCOPE, AzureML, azure_errors
from opml.errors import OpmlError

SP_HINT = "create service principals with `az ad sp create-for-rbac` (not the Azure ML workspace's job)"


def summary(az: AzureML, *, create_compute: bool = False) -> dict[str, Any]:
    """What `opml auth` prints: the local summary's keys (null where Azure has no such thing), then the
    workspace's name, location and MLflow tracking URI, and whether the configured compute exists.
    """
    ws = az.workspace()
    exists = compute_exists(az)
    created = False
    if create_compute and not exists:
        create_cluster(az, location=az.cfg.location or ws.location)
        exists = created = True
    return {
        "path": None,
        "backend": "azureml",
        "id": ws.id,
        "schema_version": None,
        "tracking_uri": ws.mlflow_tracking_uri,
        "service_principals": None,
        "datasets": None,
        "dataset_versions": None,
        "workspace": ws.name,
        "subscription_id": az.cfg.subscription_id,
        "resource_group": az.cfg.resource_group,
        "location": ws.location,
        "credential": type(az.credential).__name__,
        "compute": az.cfg.compute,
        "compute_exists": exists,
        "compute_created": created,
    }


def compute_exists(az: AzureML) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    with azure_errors("compute", az.cfg.compute):
        try:
            az.ml.compute.get(az.cfg.compute)
        except ResourceNotFoundError:
            return False
    return True


def create_cluster(az: AzureML, *, location: str | None = None, max_nodes: int = 4,
                   size: str = "STANDARD_DS3_V2") -> dict[str, Any]:
    """An AmlCompute cluster named azureml.compute, scaling from 0 nodes (no cost when idle)."""
    from azure.ai.ml.entities import AmlCompute

    cluster = AmlCompute(name=az.cfg.compute, size=size, min_instances=0, max_instances=max_nodes,
                         idle_time_before_scale_down=120, location=location)
    with azure_errors("compute", az.cfg.compute):
        made = az.ml.compute.begin_create_or_update(cluster).result()
    return {"name": made.name, "size": made.size, "min_instances": made.min_instances,
            "max_instances": made.max_instances, "provisioning_state": str(made.provisioning_state)}


def token(az: AzureML) -> dict[str, Any]:
    """An Entra ID bearer token for https://ml.azure.com (what a REST call to a published pipeline needs)."""
    with azure_errors("token"):
        tok = az.credential.get_token(ML_SCOPE)
    return {"access_token": tok.token, "token_type": "Bearer", "expires_in": max(0, int(tok.expires_on - time.time())),
            "expires_on": tok.expires_on}


def principals_unsupported() -> OpmlError:
    """`opml auth sp create/list/delete` on this backend."""
    return OpmlError("service principals are not managed by opml on the azureml backend", SP_HINT)
