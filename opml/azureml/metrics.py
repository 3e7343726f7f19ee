"""Child-run metrics through the workspace's MLflow REST API (what azureml-mlflow reads, without its pins)."""

from __future__ import annotations

import json
from typing import Any

from opml.azureml.client import ARM_SCOPE, AzureML


def tracking_base(az: AzureML) -> str:
    """azureml://HOST/mlflow/v1.0/subscriptions/... -> https://HOST/mlflow/v1.0/subscriptions/..."""
    uri = az.workspace().mlflow_tracking_uri or ""
    return "https://" + uri.removeprefix("azureml://").rstrip("?/")


def run_metrics(az: AzureML, run_id: str) -> dict[str, float]:
    """The last value of every metric a run logged; {} when the tracking API does not know the run."""
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
    from azure.core.rest import HttpRequest

    base = tracking_base(az)
    policies = [RetryPolicy(retry_total=2), BearerTokenCredentialPolicy(az.credential, ARM_SCOPE)]
    kwargs = {"transport": az.transport} if az.transport is not None else {}
    client = PipelineClient(base_url=base, policies=policies, **kwargs)
    resp = client.send_request(HttpRequest("GET", f"{base}/api/2.0/mlflow/runs/get", params={"run_id": run_id}))
    if resp.status_code != 200:
        return {}
    data: dict[str, Any] = json.loads(resp.text() or "{}").get("run", {}).get("data", {})
    return {m["key"]: float(m["value"]) for m in data.get("metrics", [])}
