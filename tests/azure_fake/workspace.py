"""An Azure ML workspace in memory: the management routes opml's azureml backend uses.

`FakeWorkspace.handle(method, url, headers, body)` answers one request the way the service does (shapes copied
from the SDK team's recordings in Azure/azure-sdk-assets), validates every PUT body against the ARM schema of
the request's own api-version, and records (method, path template, api-version) for golden files.
Both ways in (transport.FakeTransport in process, tls.FakeServer over TLS) call this one handler.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.azure_fake import schemas

SUB = "00000000-0000-0000-0000-000000000000"
RG = "opml-rg"
WS = "opml-ws"
LOCATION = "westeurope"
ACCOUNT = "opmlstorage"
CONTAINER = "azureml-blobstore-00000000"
RG_ID = f"/subscriptions/{SUB}/resourceGroups/{RG}"
ARM = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
# Child runs an AutoML job produces here: (algorithm, preprocessor, AUC_weighted, accuracy).
CANDIDATES = (
    ("LightGBM", "MaxAbsScaler", 0.9412, 0.9101),
    ("XGBoostClassifier", "SparseNormalizer", 0.9451, 0.9125),
    ("LogisticRegression", "StandardScalerWrapper", 0.9203, 0.9054),
    ("RandomForest", "MinMaxScaler", 0.9302, 0.9040),
    ("VotingEnsemble", "", 0.9478, 0.9138),
)
STATUSES = ("NotStarted", "Queued", "Running", "Completed")


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Call:
    method: str
    template: str
    api_version: str | None

    def line(self) -> str:
        return f"{self.method} {self.template} {self.api_version or '-'}"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.0000000+00:00", time.gmtime())


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}})


class FakeWorkspace:
    """One workspace's state and the routes over it. Thread-safe (the TLS server is threaded)."""

    def __init__(
        self,
        base_url: str = "https://management.azure.com",
        *,
        validate: bool = True,
        computes: tuple[str, ...] = ("cpu-cluster",),
        polls_per_status: int = 1,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = ARM.format(sub=SUB, rg=RG, ws=WS)
        self.validate = validate
        self.calls: list[Call] = []
        self.validated: list[str] = []  # resource definitions of the bodies that validated
        self.invalid: list[str] = []  # messages of bodies that did not
        self.bodies: list[tuple[str, str, Any]] = []  # (api-version, path after the workspace, body) of every PUT
        self.computes: dict[str, dict[str, Any]] = {
            n: self._compute(n, {"properties": {"computeType": "AmlCompute", "properties": {}}}) for n in computes
        }
        self.data: dict[tuple[str, str], dict[str, Any]] = {}
        self.models: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.children: dict[str, list[str]] = {}
        self.metrics: dict[str, dict[str, float]] = {}
        self.blobs: dict[str, bytes] = {}
        self.operations: dict[str, int] = {}
        self.polls_per_status = polls_per_status
        self._job_polls: dict[str, int] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(1)

    # ---- entry point -------------------------------------------------------------------------------------
    def handle(self, method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> Reply:
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        host = parts.hostname or ""
        with self._lock:
            payload = None
            if body:
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = body
            if ".blob." in host or path.startswith("/blob/"):
                return self._blob(method, path, query, body or b"")
            route, reply = self._route(method, path, query, payload)
            self.calls.append(Call(method, route, query.get("api-version")))
            return reply

    def sequence(self) -> list[str]:
        return [c.line() for c in self.calls]

    # ---- routing -----------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, str], payload: Any) -> tuple[str, Reply]:
        if path.startswith("/operations/"):
            return "/operations/{id}", self._operation(path.rsplit("/", 1)[-1])
        if path == "/discovery":
            return "/discovery", Reply(
                200,
                {
                    "api": self.base_url,
                    "catalog": self.base_url,
                    "experimentation": self.base_url,
                    "history": self.base_url,
                },
            )
        history = re.fullmatch(
            r"/history/v1\.0" + re.escape(self.prefix) + r"/(?:experiments/[^/]+/)?runs/([^/]+)/children", path
        )
        if history:
            return "/history/v1.0{ws}/runs/{id}/children", self._children(history.group(1))
        mlflow = re.fullmatch(r"/mlflow/v1\.0" + re.escape(self.prefix) + r"/api/2\.0/mlflow/runs/get", path)
        if mlflow:
            return "/mlflow/v1.0{ws}/api/2.0/mlflow/runs/get", self._mlflow_run(query.get("run_id", ""))
        if not path.startswith(self.prefix):
            return path, _error(404, "NotFound", f"no such route {path}")
        rest = [p for p in path[len(self.prefix) :].split("/") if p]
        template = "{ws}/" + "/".join(
            p if i % 2 == 0 else "{" + rest[i - 1].rstrip("s") + "}" for i, p in enumerate(rest)
        )
        if rest and rest[-1] in ("listSecrets", "listKeys"):
            template = "{ws}/" + "/".join(
                p if i % 2 == 0 or i == len(rest) - 1 else "{name}" for i, p in enumerate(rest)
            )
        template = template.rstrip("/")
        if method == "PUT" and self.validate:
            self._check(query.get("api-version", ""), rest, payload)
        handler: Callable[..., Reply] | None = getattr(self, f"_{rest[0]}" if rest else "_workspace", None)
        if handler is None:
            return template, _error(404, "NotFound", f"no such resource type {rest[0]}")
        return template, handler(method, rest[1:], query, payload)

    def _check(self, api_version: str, rest: list[str], payload: Any) -> None:
        self.bodies.append((api_version, "/".join(rest), payload))
        try:
            self.validated.append(schemas.validate(api_version, rest, payload))
        except schemas.BodyInvalid as exc:
            self.invalid.append(str(exc))
            raise

    def _id(self, *rest: str) -> str:
        return "/".join([self.prefix, *rest])

    # ---- workspace ---------------------------------------------------------------------------------------
    def _workspace(self, method: str, rest: list[str], query: dict[str, str], payload: Any) -> Reply:
        host = urlsplit(self.base_url).netloc
        return Reply(
            200,
            {
                "id": self.prefix,
                "name": WS,
                "type": "Microsoft.MachineLearningServices/workspaces",
                "location": LOCATION,
                "kind": "Default",
                "tags": {},
                "identity": {
                    "type": "SystemAssigned",
                    "principalId": str(uuid.UUID(int=1)),
                    "tenantId": str(uuid.UUID(int=2)),
                },
                "sku": {"name": "Basic", "tier": "Basic"},
                "properties": {
                    "friendlyName": WS,
                    "description": "",
                    "provisioningState": "Succeeded",
                    "workspaceId": str(uuid.UUID(int=3)),
                    "discoveryUrl": f"{self.base_url}/discovery",
                    "mlFlowTrackingUri": f"azureml://{host}/mlflow/v1.0{self.prefix}",
                    "storageAccount": f"{RG_ID}/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}",
                    "keyVault": f"{RG_ID}/providers/Microsoft.Keyvault/vaults/opmlkv",
                    "applicationInsights": f"{RG_ID}/providers/Microsoft.insights/components/opmlai",
                    "publicNetworkAccess": "Enabled",
                    "hbiWorkspace": False,
                    "v1LegacyMode": False,
                },
                "systemData": {"createdAt": "2026-01-01T00:00:00.0000000+00:00", "createdBy": "opml"},
            },
        )

    # ---- computes ----------------------------------------------------------------------------------------
    def _compute(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        props = dict(payload.get("properties", {}))
        props.update(
            {
                "provisioningState": "Succeeded",
                "createdOn": now(),
                "modifiedOn": now(),
                "isAttachedCompute": False,
                "disableLocalAuth": True,
            }
        )
        inner = dict(props.get("properties") or {})
        inner.setdefault("vmSize", "STANDARD_DS3_V2")
        inner.setdefault("scaleSettings", {"maxNodeCount": 4, "minNodeCount": 0, "nodeIdleTimeBeforeScaleDown": "PT2M"})
        inner.update({"allocationState": "Steady", "currentNodeCount": 0, "targetNodeCount": 0})
        props["properties"] = inner
        return {
            "id": self._id("computes", name),
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/computes",
            "location": payload.get("location", LOCATION),
            "properties": props,
            "identity": payload.get("identity"),
            "systemData": {"createdAt": now(), "createdBy": "opml"},
        }

    def _computes(self, method: str, rest: list[str], query: dict[str, str], payload: Any) -> Reply:
        if not rest:
            return Reply(200, {"value": list(self.computes.values())})
        name = rest[0]
        if method == "PUT":
            self.computes[name] = self._compute(name, payload)
            return self._async(201, self.computes[name])
        if name not in self.computes:
            return _error(404, "ResourceNotFound", f"compute {name} not found")
        return Reply(200, self.computes[name])

    def _async(self, status: int, body: Any) -> Reply:
        op = uuid.uuid4().hex
        self.operations[op] = 0
        return Reply(
            status,
            body,
            {
                "Azure-AsyncOperation": f"{self.base_url}/operations/{op}?api-version=2024-10-01-preview",
                "Retry-After": "0",
            },
        )

    def _operation(self, op: str) -> Reply:
        self.operations[op] = self.operations.get(op, 0) + 1
        status = "InProgress" if self.operations[op] < 2 else "Succeeded"
        return Reply(200, {"id": op, "name": op, "status": status})

    # ---- datastores + blob -------------------------------------------------------------------------------
    def _datastore(self) -> dict[str, Any]:
        host = urlsplit(self.base_url).netloc
        return {
            "id": self._id("datastores", "workspaceblobstore"),
            "name": "workspaceblobstore",
            "type": "Microsoft.MachineLearningServices/workspaces/datastores",
            "properties": {
                "description": None,
                "tags": None,
                "properties": None,
                "isDefault": True,
                "credentials": {"credentialsType": "AccountKey"},
                "subscriptionId": SUB,
                "resourceGroup": RG,
                "datastoreType": "AzureBlob",
                "accountName": ACCOUNT,
                "containerName": CONTAINER,
                "endpoint": "core.windows.net",
                "protocol": "https",
                "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
                "opmlFakeHost": host,
            },
            "systemData": {"createdAt": "2026-01-01T00:00:00+00:00"},
        }

    def _datastores(self, method: str, rest: list[str], query: dict[str, str], payload: Any) -> Reply:
        if not rest:
            return Reply(200, {"value": [self._datastore()]})
        if rest[0] != "workspaceblobstore":
            return _error(404, "UserError", f"datastore {rest[0]} not found")
        if rest[1:] == ["listSecrets"]:
            return Reply(200, {"secretsType": "Sas", "sasToken": "?sv=2026-02-06&sig=fake&se=2099-01-01&sp=rcwl"})
        return Reply(200, self._datastore())

    def _blob(self, method: str, path: str, query: dict[str, str], body: bytes) -> Reply:
        key = path.removeprefix("/blob")
        self.calls.append(Call(method, "{blob}" + ("?comp=" + query["comp"] if "comp" in query else ""), None))
        if method == "HEAD" or method == "GET":
            if key not in self.blobs:
                return Reply(404, None, {"x-ms-error-code": "BlobNotFound"})
            data = self.blobs[key]
            return Reply(
                200,
                data if method == "GET" else None,
                {
                    "Content-Length": str(len(data)),
                    "x-ms-blob-type": "BlockBlob",
                    "ETag": '"0x1"',
                    "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT",
                    "x-ms-meta-upload_status": "completed",
                },
            )
        if method == "PUT":
            if query.get("comp") == "metadata":
                return Reply(200, None, {"ETag": '"0x2"', "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"})
            if query.get("comp") in ("block", "blocklist"):
                self.blobs[key] = self.blobs.get(key, b"") + body
                return Reply(201, None, {"ETag": '"0x1"'})
            self.blobs[key] = body
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            return Reply(
                201,
                None,
                {
                    "ETag": '"0x1"',
                    "Content-MD5": md5,
                    "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT",
                    "x-ms-request-server-encrypted": "true",
                },
            )
        return Reply(405, None)

    # ---- data --------------------------------------------------------------------------------------------
    def _data(self, method: str, rest: list[str], query: dict[str, str], payload: Any) -> Reply:
        kind = "Microsoft.MachineLearningServices/workspaces/data"
        if not rest:
            names = sorted({n for n, _ in self.data})
            return Reply(200, {"value": [self._container(n, kind, self.data) for n in names]})
        name = rest[0]
        if len(rest) == 1:
            if not any(n == name for n, _ in self.data):
                return _error(404, "UserError", f"data {name} not found")
            return Reply(200, self._container(name, kind, self.data))
        if len(rest) == 2:  # versions list
            items = [v for (n, _), v in self.data.items() if n == name]
            return Reply(200, {"value": sorted(items, key=lambda v: -int(v["name"]) if v["name"].isdigit() else 0)})
        version = rest[2]
        if method == "PUT":
            props = dict(payload["properties"])
            props.setdefault("isArchived", False)
            props.setdefault("isAnonymous", False)
            props.setdefault("tags", {})
            props.setdefault("properties", {})
            self.data[(name, version)] = {
                "id": self._id("data", name, "versions", version),
                "name": version,
                "type": f"{kind}/versions",
                "properties": props,
                "systemData": {"createdAt": now(), "createdBy": "opml", "createdByType": "User"},
            }
            return Reply(201, self.data[(name, version)])
        if (name, version) not in self.data:
            return _error(404, "UserError", f"data {name}:{version} not found")
        return Reply(200, self.data[(name, version)])

    def _container(self, name: str, kind: str, store: dict[tuple[str, str], Any]) -> dict[str, Any]:
        versions = [v for n, v in store if n == name]
        latest = max(versions, key=lambda v: int(v) if v.isdigit() else 0)
        nxt = str(max([int(v) for v in versions if v.isdigit()] or [0]) + 1)
        props = {"isArchived": False, "latestVersion": latest, "nextVersion": nxt, "tags": {}, "properties": {}}
        if kind.endswith("data"):
            props["dataType"] = store[(name, latest)]["properties"].get("dataType", "uri_file")
        return {
            "id": self._id(kind.rsplit("/", 1)[-1], name),
            "name": name,
            "type": kind,
            "properties": props,
            "systemData": {"createdAt": now()},
        }

    # ---- models ------------------------------------------------------------------------------------------
    def _models(self, method: str, rest: list[str], query: dict[str, str], payload: Any) -> Reply:
        kind = "Microsoft.MachineLearningServices/workspaces/models"
        if not rest:
            names = sorted({n for n, _ in self.models})
            return Reply(200, {"value": [self._container(n, kind, self.models) for n in names]})
        name = rest[0]
        if len(rest) == 1:
            if not any(n == name for n, _ in self.models):
                return _error(404, "UserError", f"model {name} not found")
            return Reply(200, self._container(name, kind, self.models))
        if len(rest) == 2:
            items = sorted((v for (n, _), v in self.models.items() if n == name), key=lambda v: -int(v["name"]))
            if query.get("$top"):
                items = items[: int(query["$top"])]
            return Reply(200, {"value": items})
        version = rest[2]
        if method == "PUT":
            props = dict(payload["properties"])
            props.setdefault("flavors", {})
            props.setdefault("isArchived", False)
            props.setdefault("isAnonymous", False)
            props.setdefault("tags", {})
            props.setdefault("properties", {})
            props["provisioningState"] = "Succeeded"
            self.models[(name, version)] = {
                "id": self._id("models", name, "versions", version),
                "name": version,
                "type": f"{kind}/versions",
                "properties": props,
                "systemData": {"createdAt": now(), "createdBy": "opml", "createdByType": "User"},
            }
            return Reply(201, self.models[(name, version)])
        if (name, version) not in self.models:
            return _error(404, "UserError", f"model {name}:{version} not found")
        return Reply(200, self.models[(name, version)])

    # ---- jobs --------------------------------------------------------------------------------------------
    def _jobs(self, method: str, rest: list[str], query: dict[str, str], payload: Any) -> Reply:
        if not rest:
            parents = [j for j in self.jobs.values() if not j.get("_child")]
            return Reply(
                200,
                {
                    "value": [
                        self._public(j)
                        for j in sorted(parents, key=lambda j: j["systemData"]["createdAt"], reverse=True)
                    ]
                },
            )
        name = rest[0]
        if method == "PUT":
            return Reply(201, self._public(self._submit(name, payload)))
        if name not in self.jobs:
            return _error(404, "UserError", f"job {name} not found")
        self._advance(name)
        return Reply(200, self._public(self.jobs[name]))

    def _public(self, job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    def _submit(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        props = json.loads(json.dumps(payload["properties"]))
        host = urlsplit(self.base_url).netloc
        props.update(
            {
                "status": "NotStarted",
                "services": {
                    "Tracking": {
                        "jobServiceType": "Tracking",
                        "port": None,
                        "endpoint": f"azureml://{host}/mlflow/v1.0{self.prefix}?",
                        "status": None,
                        "errorMessage": None,
                        "properties": None,
                        "nodes": None,
                    },
                    "Studio": {
                        "jobServiceType": "Studio",
                        "port": None,
                        "endpoint": f"https://ml.azure.com/runs/{name}?wsid={self.prefix}",
                        "status": None,
                        "errorMessage": None,
                        "properties": None,
                        "nodes": None,
                    },
                },
            }
        )
        props.setdefault("experimentName", "Default")
        props.setdefault("displayName", name)
        props.setdefault("tags", {})
        props.setdefault("properties", {})
        props.setdefault("outputs", {})
        props["resources"] = {"instanceCount": 1, "shmSize": "2g"}
        job = {
            "id": self._id("jobs", name),
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            "properties": props,
            "systemData": {"createdAt": now(), "createdBy": "opml", "createdByType": "User"},
        }
        self.jobs[name] = job
        self._job_polls[name] = 0
        self.children[name] = []
        return job

    def _advance(self, name: str) -> None:
        """Each GET of a parent job moves it on: Queued, Running (one more child run finishes each poll), Completed."""
        job = self.jobs[name]
        props = job["properties"]
        if job.get("_child") or props["status"] == "Completed":
            return
        self._job_polls[name] += 1
        polls = self._job_polls[name]
        if props["status"] == "NotStarted":
            props["status"] = "Queued"
        elif props["status"] == "Queued":
            props["status"] = "Running"
        elif len(self.children[name]) < len(CANDIDATES):
            self._add_child(name, len(self.children[name]))
        else:
            self._complete(name)
        del polls

    def _add_child(self, parent: str, i: int) -> None:
        algo, prep, auc, acc = CANDIDATES[i]
        task = self.jobs[parent]["properties"].get("taskDetails", {})
        primary = task.get("primaryMetric", "AUCWeighted")
        child = f"{parent}_{i}"
        pipeline = f"{prep} {algo}".strip()
        metrics = {
            "AUC_weighted": auc,
            "accuracy": acc,
            "average_precision_score_weighted": round(auc - 0.0123, 4),
            "f1_score_macro": round(acc - 0.14, 4),
            "norm_macro_recall": round(auc - 0.44, 4),
            "log_loss": round(1.05 - auc, 4),
        }
        self.metrics[child] = metrics
        score = metrics.get(_metric_key(primary), auc)
        props = {
            "status": "Completed",
            "experimentName": self.jobs[parent]["properties"].get("experimentName"),
            "displayName": pipeline,
            "jobType": "Command",
            "isArchived": False,
            "properties": {
                "iteration": str(i),
                "run_algorithm": algo,
                "run_preprocessor": prep,
                "score": str(score),
                "primary_metric": _metric_key(primary),
                "pipeline_id": uuid.uuid5(uuid.NAMESPACE_URL, pipeline).hex,
                "runTemplate": "automl_child",
            },
            "tags": {},
            "outputs": {},
            "command": "python run.py",
            "environmentId": "AzureML-AutoML:1",
            "computeId": self.jobs[parent]["properties"].get("computeId"),
        }
        self.jobs[child] = {
            "id": self._id("jobs", child),
            "name": child,
            "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            "properties": props,
            "systemData": {"createdAt": now()},
            "_child": parent,
        }
        self.children[parent].append(child)

    def _complete(self, name: str) -> None:
        props = self.jobs[name]["properties"]
        best = max(self.children[name], key=lambda c: float(self.jobs[c]["properties"]["properties"]["score"]))
        props["status"] = "Completed"
        props["tags"] = dict(props.get("tags") or {}) | {
            "automl_best_child_run_id": best,
            "model_explain_best_run_child_id": best,
        }
        props["properties"] = dict(props.get("properties") or {}) | {
            "runTemplate": "AutoML",
            "num_iterations": str(len(CANDIDATES)),
        }
        props["outputs"] = {
            "best_model": {
                "jobOutputType": "mlflow_model",
                "mode": "ReadWriteMount",
                "uri": f"azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.{best}/outputs/mlflow-model",
            }
        }

    def _children(self, parent: str) -> Reply:
        if parent not in self.jobs:
            return _error(404, "UserError", f"run {parent} not found")
        values = []
        for c in self.children.get(parent, []):
            p = self.jobs[c]["properties"]
            values.append(
                {
                    "runId": c,
                    "parentRunId": parent,
                    "rootRunId": parent,
                    "runUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, c)),
                    "experimentId": str(uuid.UUID(int=4)),
                    "status": p["status"],
                    "displayName": p["displayName"],
                    "name": p["displayName"],
                    "runType": "azureml.scriptrun",
                    "target": "cpu-cluster",
                    "createdUtc": self.jobs[c]["systemData"]["createdAt"].replace("0000000+00:00", "Z"),
                    "properties": p["properties"],
                    "tags": {},
                    "runDefinition": None,
                }
            )
        return Reply(200, {"value": values, "continuationToken": None, "nextLink": None})

    def _mlflow_run(self, run_id: str) -> Reply:
        if run_id not in self.metrics:
            return Reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"run {run_id} not found"})
        ts = int(time.time() * 1000)
        return Reply(
            200,
            {
                "run": {
                    "info": {"run_id": run_id, "run_uuid": run_id, "status": "FINISHED", "lifecycle_stage": "active"},
                    "data": {
                        "metrics": [
                            {"key": k, "value": v, "timestamp": ts, "step": 0} for k, v in self.metrics[run_id].items()
                        ],
                        "params": [],
                        "tags": [],
                    },
                }
            },
        )


def _metric_key(primary: str) -> str:
    """Azure's REST enum (AUCWeighted) -> the metric name AutoML logs (AUC_weighted)."""
    table = {
        "aucweighted": "AUC_weighted",
        "accuracy": "accuracy",
        "normmacrorecall": "norm_macro_recall",
        "averageprecisionscoreweighted": "average_precision_score_weighted",
        "precisionscoreweighted": "precision_score_weighted",
    }
    return table.get(primary.lower(), primary)
