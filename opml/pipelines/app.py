"""The control plane's REST API as a bare ASGI app (orjson in and out; no framework on the request path).

POST /pipelines/<id>/runs   trigger a published pipeline (Bearer token from `opml auth token`)
GET  /runs/<id>             a run's status and steps
GET  /pipelines             published pipelines
GET  /                      health;   GET /openapi.json  the API description
Bad input answers 4xx {"error": "..."}: 400 malformed JSON, 401 token, 404 unknown, 409 disabled,
413 too large, 422 unknown parameter or wrong type.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

import orjson

from opml.asgi import JSON, HTTPError, Receive, Scope, Send, error, lifespan, read_body, respond
from opml.errors import AuthError, OpmlError
from opml.pipelines import registry
from opml.pipelines.spec import ParameterError
from opml.workspace.workspace import Workspace

MAX_BODY = 1 << 20
TRIGGER = re.compile(r"^/pipelines/([A-Za-z0-9-]{1,64})/runs/?$")
RUN = re.compile(r"^/runs/([A-Za-z0-9_.-]{1,128})/?$")


class ControlPlane:
    def __init__(self, ws: Workspace, base_url: str, on_run: Callable[[registry.Run], None]) -> None:
        self.ws = ws
        self.base_url = base_url
        self.on_run = on_run  # starts the executor (after the reply is sent)
        self.started = time.time()
        self.pipelines: dict[str, registry.Pipeline] = {}
        self.openapi = orjson.dumps(openapi(base_url))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        headers = dict(scope["headers"])
        after = None
        try:
            status, body, after = await self.route(path, method, headers, receive)
        except HTTPError as exc:
            status, body = exc.status, error(exc.message)
        except Exception as exc:  # a bug, not bad input
            status, body = 500, error(f"internal error: {type(exc).__name__}: {exc}")
        await respond(send, status, body, JSON)
        if after is not None:
            after()

    async def route(self, path: str, method: str, headers: dict, receive: Receive):
        m = TRIGGER.match(path)
        if m:
            if method != "POST":
                raise HTTPError(405, f"use POST {path}")
            return await self.trigger(m.group(1), headers, receive)
        m = RUN.match(path)
        if m:
            if method != "GET":
                raise HTTPError(405, f"use GET {path}")
            self.auth(headers)
            return 200, orjson.dumps(self.run_doc(m.group(1))), None
        if method not in ("GET", "HEAD"):
            raise HTTPError(405, f"use GET {path}")
        if path == "/":
            return 200, orjson.dumps({"status": "Healthy", "pid": os.getpid(), "uptime_s": round(time.time() -
                                      self.started, 1)}), None
        if path == "/openapi.json":
            return 200, self.openapi, None
        if path in ("/pipelines", "/pipelines/"):
            self.auth(headers)
            return 200, orjson.dumps({"value": [self.published_doc(p) for p in registry.list_published(self.ws)]}), \
                None
        raise HTTPError(404, f"no route {path}; see GET /openapi.json")

    def auth(self, headers: dict) -> dict:
        from opml.workspace.identity import verify_token

        value = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPError(401, "missing bearer token: send 'Authorization: Bearer <token from opml auth token>'")
        try:
            return verify_token(self.ws, token.strip())
        except AuthError as exc:
            raise HTTPError(401, exc.line()) from None

    async def trigger(self, pid: str, headers: dict, receive: Receive):
        claims = self.auth(headers)
        raw = await read_body(receive, MAX_BODY)
        if raw is None:
            raise HTTPError(413, f"request body over {MAX_BODY} bytes")
        try:
            doc = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise HTTPError(400, f"malformed JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise HTTPError(400, 'the body must be a JSON object: {"ExperimentName": ..., "ParameterAssignments": {}}')
        unknown = set(doc) - {"ExperimentName", "ParameterAssignments", "Description"}
        if unknown:
            raise HTTPError(422, f"unknown field {sorted(unknown)[0]!r}; allowed: ExperimentName, "
                                 "ParameterAssignments, Description")
        pub = registry.find_published(self.ws, pid)
        if pub is None:
            raise HTTPError(404, f"no published pipeline {pid!r}")
        if pub.status != "Active":
            raise HTTPError(409, f"published pipeline {pid} is {pub.status}; enable it with "
                                 f"`opml pipeline enable {pid}`")
        experiment = doc.get("ExperimentName")
        if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
            raise HTTPError(422, "ExperimentName must be a non-empty string")
        params = doc.get("ParameterAssignments") or {}
        if not isinstance(params, dict):
            raise HTTPError(422, "ParameterAssignments must be an object of name: value")
        key = f"{pub.name}:{pub.version}"
        pipeline = self.pipelines.get(key) or self.pipelines.setdefault(key, registry.get_pipeline(self.ws, key))
        try:
            run = registry.submit_run(self.ws, pipeline, params, experiment=experiment, strict=True,
                                      published_id=pid, submitted_by=str(claims.get("name") or claims.get("sub")))
        except ParameterError as exc:
            raise HTTPError(422, exc.line()) from None
        except OpmlError as exc:
            raise HTTPError(422, exc.line()) from None
        reply = {"Id": run.id, "Status": run.status, "PipelineId": pid, "Pipeline": run.ref,
                 "ExperimentName": run.experiment, "ParameterAssignments": run.parameters,
                 "CreatedTime": run.created_at, "RunUrl": f"{self.base_url}/runs/{run.id}"}
        return 200, orjson.dumps(reply), lambda: self.on_run(run)

    def run_doc(self, run_id: str) -> dict:
        try:
            run = registry.get_run(self.ws, run_id)
        except OpmlError:
            raise HTTPError(404, f"no pipeline run {run_id!r}") from None
        return run_document(self.ws, run)

    def published_doc(self, p: registry.Published) -> dict:
        return {"Id": p.id, "Name": p.name, "Version": p.version, "Status": p.status,
                "Endpoint": f"{self.base_url}/pipelines/{p.id}/runs"}


def run_document(ws: Workspace, run: registry.Run) -> dict:
    steps = [{"Name": s.step, "Type": s.type, "Status": s.status, "Reused": s.reused, "ReusedFrom": s.reused_from,
              "StartTime": s.started_at, "EndTime": s.ended_at, "DurationSeconds": s.duration_s,
              "Outputs": s.outputs, "Error": s.error} for s in registry.steps_of(ws, run.id)]
    return {"Id": run.id, "Status": run.status, "Pipeline": run.ref, "PipelineId": run.published_id,
            "ExperimentName": run.experiment, "ParameterAssignments": run.parameters, "Error": run.error,
            "CreatedTime": run.created_at, "StartTime": run.started_at, "EndTime": run.ended_at,
            "DurationSeconds": run.duration_s, "Steps": steps}


def openapi(base_url: str) -> dict:
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "opml control plane: published pipelines", "version": "1",
                 "description": "Trigger published pipelines and follow their runs. Authenticate with "
                                "`Authorization: Bearer <token>` from `opml auth token`."},
        "servers": [{"url": base_url}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "TriggerRequest": {"type": "object", "additionalProperties": False, "properties": {
                    "ExperimentName": {"type": "string", "example": "pipeline-rest-endpoint"},
                    "ParameterAssignments": {"type": "object", "additionalProperties": True,
                                             "example": {"time_budget": 30}},
                    "Description": {"type": "string"}}},
                "TriggerReply": {"type": "object", "properties": {
                    "Id": {"type": "string"}, "Status": {"type": "string", "example": "NotStarted"},
                    "PipelineId": {"type": "string"}, "Pipeline": {"type": "string"},
                    "ExperimentName": {"type": "string"}, "ParameterAssignments": {"type": "object"},
                    "CreatedTime": {"type": "string"}, "RunUrl": {"type": "string"}}},
                "Run": {"type": "object", "properties": {
                    "Id": {"type": "string"},
                    "Status": {"type": "string", "enum": ["NotStarted", "Queued", "Running", "Completed", "Failed",
                                                          "Canceled"]},
                    "Error": {"type": "string", "nullable": True},
                    "Steps": {"type": "array", "items": {"type": "object"}}}},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/pipelines/{id}/runs": {"post": {
                "summary": "Trigger a published pipeline; answers at once, the run goes on in the background",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/TriggerRequest"}}}},
                "responses": {
                    "200": {"description": "run submitted", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/TriggerReply"}}}},
                    "400": err | {"description": "malformed JSON"},
                    "401": err | {"description": "missing, expired or invalid token"},
                    "404": err | {"description": "no such published pipeline"},
                    "409": err | {"description": "the published pipeline is disabled"},
                    "422": err | {"description": "unknown parameter or wrong type"}}}},
            "/runs/{id}": {"get": {
                "summary": "A pipeline run's status and steps",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the run", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Run"}}}},
                    "401": err | {"description": "missing, expired or invalid token"},
                    "404": err | {"description": "no such run"}}}},
            "/pipelines": {"get": {"summary": "Published pipelines and their endpoints",
                                   "responses": {"200": {"description": "list"}}}},
            "/": {"get": {"summary": "Health", "security": [], "responses": {"200": {"description": "Healthy"}}}},
        },
    }
