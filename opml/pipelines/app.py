"""The control plane's REST API as a bare ASGI app (orjson in and out; no framework on the request path).

POST /pipelines/<id>/runs   trigger a published pipeline (Bearer token from `opml auth token`)
GET  /runs/<id>             a run's status and steps (a run whose executor died is marked Failed first)
GET  /pipelines             published pipelines
GET  /                      health;   GET /openapi.json  the API description (opml.pipelines.openapi)
Bad input answers 4xx {"error": "..."}: 400 malformed JSON, an empty body or two Authorization headers,
401 token, 404 unknown, 405 wrong method (with Allow), 409 disabled, 413 too large, 422 unknown field or
parameter, wrong type or invalid name, 429 the pipeline's cap of active runs reached (with Retry-After).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

import orjson

from opml.asgi import JSON, Headers, HTTPError, Receive, Scope, Send, error, lifespan, read_body, respond
from opml.errors import AuthError, OpmlError
from opml.naming import check_name, is_name
from opml.pipelines import registry, service
from opml.pipelines.openapi import MAX_DESCRIPTION, RETRY_AFTER_S, document
from opml.workspace.workspace import Workspace

MAX_BODY = 1 << 20
TRIGGER = re.compile(r"^/pipelines/([^/]+)/runs/?$")  # an id that names no published pipeline: 404
RUN = re.compile(r"^/runs/([^/]+)/?$")
ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
PLAIN = ("/", "/openapi.json", "/pipelines", "/pipelines/")  # GET and HEAD
FIELDS = ("ExperimentName", "ParameterAssignments", "Description")


class Refused(HTTPError):
    """An HTTPError whose reply carries headers (Allow on a 405, Retry-After on a 429)."""

    def __init__(self, status: int, message: str, headers: Headers) -> None:
        super().__init__(status, message)
        self.headers = headers


def _method_not_allowed(path: str, allow: str) -> Refused:
    return Refused(405, f"use {allow.split(',')[0]} {path}", [(b"allow", allow.encode())])


class ControlPlane:
    def __init__(self, ws: Workspace, base_url: str, on_run: Callable[[registry.Run], None]) -> None:
        self.ws = ws
        self.base_url = base_url
        self.on_run = on_run  # starts the executor (after the reply is sent)
        self.started = time.time()
        self.pipelines: dict[str, registry.Pipeline] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        after, headers = None, JSON
        try:
            status, body, after = await self.route(path, method, scope["headers"], receive)
        except HTTPError as exc:
            status, body = exc.status, error(exc.message)
            headers = [*JSON, *getattr(exc, "headers", [])]
        except Exception as exc:  # a bug, not bad input
            status, body = 500, error(f"internal error: {type(exc).__name__}: {exc}")
        await respond(send, status, body, headers, head=method == "HEAD")
        if after is not None:
            after()

    async def route(self, path: str, method: str, headers: Headers, receive: Receive):
        m = TRIGGER.match(path)
        if m:
            if method != "POST":
                raise _method_not_allowed(path, "POST")
            return await self.trigger(m.group(1), headers, receive)
        m = RUN.match(path)
        if m:
            if method != "GET":
                raise _method_not_allowed(path, "GET")
            self.auth(headers)
            return 200, orjson.dumps(self.run_doc(m.group(1))), None
        if path not in PLAIN:
            raise HTTPError(404, f"no route {path}; see GET /openapi.json")
        if method not in ("GET", "HEAD"):
            raise _method_not_allowed(path, "GET, HEAD")
        if path == "/":
            return 200, orjson.dumps({"status": "Healthy", "pid": os.getpid(), "uptime_s": round(time.time() -
                                      self.started, 1)}), None
        if path == "/openapi.json":
            return 200, orjson.dumps(self.openapi()), None
        self.auth(headers)  # /pipelines
        return 200, orjson.dumps({"value": [self.published_doc(p) for p in registry.list_published(self.ws)]}), None

    def auth(self, headers: Headers) -> dict:
        from opml.workspace.identity import verify_token

        values = [v for k, v in headers if k == b"authorization"]
        if len(values) > 1:
            raise HTTPError(400, f"send one Authorization header, not {len(values)}")
        scheme, _, token = (values[0] if values else b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPError(401, "missing bearer token: send 'Authorization: Bearer <token from opml auth token>'")
        try:
            return verify_token(self.ws, token.strip())
        except AuthError as exc:
            raise HTTPError(401, exc.line()) from None

    async def trigger(self, pid: str, headers: Headers, receive: Receive):
        claims = self.auth(headers)
        raw = await read_body(receive, MAX_BODY)
        if raw is None:
            raise HTTPError(413, f"request body over {MAX_BODY} bytes")
        if not raw.strip():
            raise HTTPError(400, 'empty request body; send a JSON object: {} for the defaults, or '
                                 '{"ExperimentName": ..., "ParameterAssignments": {...}}')
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HTTPError(400, f"malformed JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise HTTPError(400, 'the body must be a JSON object: {"ExperimentName": ..., "ParameterAssignments": {}}')
        unknown = set(doc) - set(FIELDS)
        if unknown:
            raise HTTPError(422, f"unknown field {sorted(unknown)[0]!r}; allowed: {', '.join(FIELDS)}")
        pub = registry.find_published(self.ws, pid) if ID.match(pid) else None
        if pub is None:
            raise HTTPError(404, f"no published pipeline {pid!r}")
        if pub.status != "Active":
            raise HTTPError(409, f"published pipeline {pid} is {pub.status}; enable it with "
                                 f"`opml pipeline enable {pid}`")
        experiment = doc.get("ExperimentName")
        if experiment is not None:
            if not isinstance(experiment, str) or not experiment.strip():
                raise HTTPError(422, "ExperimentName must be a non-empty string")
            if not is_name(experiment):
                try:
                    check_name(experiment, "experiment")
                except OpmlError as exc:
                    raise HTTPError(422, f"ExperimentName: {exc.line()}") from None
        description = doc.get("Description")
        if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
            raise HTTPError(422, f"Description must be a string of at most {MAX_DESCRIPTION} characters")
        params = doc.get("ParameterAssignments")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise HTTPError(422, "ParameterAssignments must be an object of name: value")
        pipeline = self.pipeline(pub)
        for run in registry.active_runs(self.ws, pid):  # runs whose executor died do not count against the cap
            service.settle(self.ws, run)
        try:
            run = registry.submit_run(self.ws, pipeline, params, experiment=experiment, strict=True,
                                      published_id=pid, submitted_by=str(claims.get("name") or claims.get("sub")),
                                      max_active=pipeline.spec.max_concurrent_runs)
        except registry.TooManyRuns as exc:
            raise Refused(429, exc.line(), [(b"retry-after", str(RETRY_AFTER_S).encode())]) from None
        except OpmlError as exc:  # ParameterError included: unknown name, wrong type, invalid setting
            raise HTTPError(422, exc.line()) from None
        reply = {"Id": run.id, "Status": run.status, "PipelineId": pid, "Pipeline": run.ref,
                 "ExperimentName": run.experiment, "ParameterAssignments": run.parameters,
                 "CreatedTime": run.created_at, "RunUrl": f"{self.base_url}/runs/{run.id}"}
        return 200, orjson.dumps(reply), lambda: self.on_run(run)

    def pipeline(self, pub: registry.Published) -> registry.Pipeline:
        key = f"{pub.name}:{pub.version}"
        return self.pipelines.get(key) or self.pipelines.setdefault(key, registry.get_pipeline(self.ws, key))

    def run_doc(self, run_id: str) -> dict:
        try:
            if not RUN_ID.match(run_id):
                raise OpmlError("not a run id")
            run = service.read_run(self.ws, run_id)
        except OpmlError:
            raise HTTPError(404, f"no pipeline run {run_id!r}") from None
        return run_document(self.ws, run)

    def published_doc(self, p: registry.Published) -> dict:
        return {"Id": p.id, "Name": p.name, "Version": p.version, "Status": p.status,
                "Endpoint": f"{self.base_url}/pipelines/{p.id}/runs"}

    def openapi(self) -> dict:
        return document(self.base_url, [(p.id, self.pipeline(p).spec) for p in registry.list_published(self.ws)])


def run_document(ws: Workspace, run: registry.Run) -> dict:
    steps = [{"Name": s.step, "Type": s.type, "Status": s.status, "Reused": s.reused, "ReusedFrom": s.reused_from,
              "StartTime": s.started_at, "EndTime": s.ended_at, "DurationSeconds": s.duration_s,
              "Outputs": s.outputs, "Error": s.error} for s in registry.steps_of(ws, run.id)]
    return {"Id": run.id, "Status": run.status, "Pipeline": run.ref, "PipelineId": run.published_id,
            "ExperimentName": run.experiment, "ParameterAssignments": run.parameters, "Error": run.error,
            "CreatedTime": run.created_at, "StartTime": run.started_at, "EndTime": run.ended_at,
            "DurationSeconds": run.duration_s, "Steps": steps}
