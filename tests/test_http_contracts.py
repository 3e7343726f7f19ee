"""The HTTP contracts of the scoring app, the control plane and the Swagger UI proxy, driven in process.

Each app is called as ASGI (scope, receive, send) with the bytes a client would send: no server, no
subprocess, no trained model. The scoring app gets a small scorer that checks records with the real
schema check (opml.serving.requests.columnar); the control plane a real workspace with the shipped
pipeline published and a real service principal. The end-to-end tests (test_serving, test_pipelines,
test_swagger) run the same apps behind uvicorn in their own processes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest

from opml.serving.requests import Column, columnar
from tests.conftest import REPO

# ------------------------------------------------------------------------------------------ the ASGI client


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    unread: int  # request chunks the app did not read

    def json(self):
        return orjson.loads(self.body)

    @property
    def error(self) -> str:
        doc = self.json()
        assert set(doc) == {"error"} and isinstance(doc["error"], str), doc
        return doc["error"]


def call(app, method: str, path: str, body: bytes | list[bytes] = b"", headers: dict[str, str] | None = None,
         *, length: bool = True, via: str = "auto") -> Reply:
    """One request through `app`. A list body arrives in chunks (more_body); `length` sends content-length.

    As opml's protocol routes it (opml.asgi.protocol_class), a POST whose whole short body has a content-length
    goes to the app's direct route when it has one for `path`; `via` "asgi" or "direct" forces a path (a
    request the protocol would not send to the direct route fails with "direct")."""
    chunks = body if isinstance(body, list) else [body]
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if length and not isinstance(body, list):
        raw.append((b"content-length", str(len(body)).encode()))
    from opml.asgi import LIMITS

    route = getattr(app, "direct_routes", {}).get(path.encode())
    direct = (route is not None and method == "POST" and length and isinstance(body, bytes)
              and len(body) <= min(app.direct_max_bytes, LIMITS.drain_bytes) and b"expect" not in dict(raw))
    assert via != "direct" or direct, "the protocol would not take this request to a direct route"
    if direct and via != "asgi":
        status, reply, reply_headers = route(raw, body, ("127.0.0.1", 50000))
        assert all(k != b"content-length" for k, _ in reply_headers)  # the protocol adds it
        return Reply(status, dict(reply_headers), reply, 0)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "headers": raw, "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8000), "scheme": "http"}
    incoming = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], sent
    start, body_msg = sent
    reply_headers = dict(start["headers"])
    assert int(reply_headers[b"content-length"]) == len(body_msg["body"]) or method == "HEAD"
    return Reply(start["status"], reply_headers, body_msg["body"], len(incoming))


def post_json(app, path: str, doc, headers: dict[str, str] | None = None, via: str = "auto") -> Reply:
    return call(app, "POST", path, orjson.dumps(doc), {"content-type": "application/json"} | (headers or {}),
                via=via)


def test_lifespan_is_answered():
    from opml.asgi import lifespan

    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict] = []

    async def receive():
        return incoming.pop(0)

    async def send(m):
        sent.append(m)

    asyncio.run(lifespan(receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


# ------------------------------------------------------------------------------------------ scoring app

COLUMNS = [Column("age", "numeric"), Column("job", "categorical"), Column("euribor3m", "numeric")]
ROW = {"age": 41, "job": "admin.", "euribor3m": 4.86}
MAX_BYTES = 4096


class FakeScorer:
    """The interface ScoringApp uses: schema, read (the real record check), predict_batch, labels.

    P(yes) = age / 100, so replies can be checked exactly.
    """

    def __init__(self) -> None:
        self.model_ref = "bank:3"
        self.columns = COLUMNS
        self.classes = ["no", "yes"]
        self.inference = "fallback: a test scorer"
        self.example = ROW
        self.fail = False  # predict_batch raises: a scorer bug

    def read(self, records):
        return columnar(records, self.columns)

    def predict_batch(self, batch) -> np.ndarray:
        if self.fail:
            raise ZeroDivisionError("a scorer bug")
        yes = np.array([(a or 0) / 100 for a in batch["age"]])
        return np.column_stack([1 - yes, yes])

    def labels(self, proba: np.ndarray) -> list[str]:
        return ["yes" if p >= 0.5 else "no" for p in proba[:, 1]]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[dict[str, str], Path]:
    from opml.serving.keys import ensure_keys, key_file

    secrets_dir = tmp_path_factory.mktemp("secrets")
    return ensure_keys(secrets_dir, "ep"), key_file(secrets_dir, "ep")


def scoring_app(key_path: Path | None, scorer: FakeScorer | None = None):
    from opml.serving.app import ScoringApp
    from opml.serving.keys import KeyChecker
    from opml.serving.openapi import build

    scorer = scorer or FakeScorer()
    openapi = json.dumps(build(scorer.model_ref, scorer.columns, scorer.classes, scorer.example,
                               auth_enabled=key_path is not None, server_url="http://127.0.0.1:8000")).encode()
    return ScoringApp(scorer, keys=KeyChecker(key_path) if key_path else None, max_request_bytes=MAX_BYTES,
                      openapi=openapi)


@pytest.fixture
def app(keys):
    return scoring_app(keys[1])


@pytest.fixture
def auth(keys) -> dict[str, str]:
    return {"authorization": f"Bearer {keys[0]['primary']}"}


VIA = pytest.mark.parametrize("via", ["direct", "asgi"])  # POST /score: as a direct route, and through ASGI


@VIA
def test_both_body_forms_score(app, auth, via):
    rows = [ROW, ROW | {"age": 70}, ROW | {"age": None, "job": None, "euribor3m": None}]
    r = post_json(app, "/score", {"data": rows}, auth, via)
    assert r.status == 200 and r.json() == {"result": ["no", "yes", "no"]}
    assert r.headers[b"content-type"] == b"application/json"
    doc = {"Inputs": {"data": rows}, "GlobalParameters": {"method": "predict_proba"}}
    r = post_json(app, "/score", doc, auth, via)
    assert r.status == 200 and np.allclose(r.json()["Results"], [[0.59, 0.41], [0.3, 0.7], [1.0, 0.0]])
    r = post_json(app, "/score", {"Inputs": {"data": rows}, "GlobalParameters": {"method": "predict"}}, auth, via)
    assert r.json() == {"Results": ["no", "yes", "no"]}
    r = post_json(app, "/score", {"Inputs": {"data": rows}}, auth, via)  # method defaults to predict
    assert r.json() == {"Results": ["no", "yes", "no"]}


def test_request_id_is_echoed_or_made(app, auth):
    r = post_json(app, "/score", {"data": [ROW]}, auth | {"x-request-id": "abc-123.x:y"})
    assert r.headers[b"x-request-id"] == b"abc-123.x:y"
    for bad in ("has space", "x" * 65, "<script>"):
        made = call(app, "GET", "/", headers={"x-request-id": bad}).headers[b"x-request-id"]
        assert re.fullmatch(rb"[0-9a-f]{32}", made), made
    assert call(app, "GET", "/").headers[b"x-request-id"] != call(app, "GET", "/").headers[b"x-request-id"]


@VIA
@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic dXNlcjpwYXNz", "Bearer", "bearer  "])
def test_401_missing_or_invalid_key(app, header, via):
    r = post_json(app, "/score", {"data": [ROW]}, {"authorization": header} if header else {}, via)
    assert r.status == 401 and r.error == "missing or invalid key: send 'Authorization: Bearer <key>'"


def test_both_keys_work_and_a_refused_body_is_drained(app, keys):
    for slot in ("primary", "secondary"):
        auth = {"authorization": f"bearer {keys[0][slot]}"}  # the scheme is case-insensitive
        assert post_json(app, "/score", {"data": [ROW]}, auth).status == 200
    r = call(app, "POST", "/score", [b'{"data": [', b"{}", b"]}"], {"authorization": "Bearer no"})
    assert r.status == 401 and r.unread == 0  # read to the end: the connection can be kept alive


@VIA
def test_400_malformed_json(app, auth, via):
    for raw in (b'{"data": [', b"", b"\xff\xfe", b'{"data": [1,]}'):
        r = call(app, "POST", "/score", raw, auth, via=via)
        assert r.status == 400 and r.error.startswith("malformed JSON: "), (raw, r.body)


def test_413_too_large(app, auth):
    message = f"request body over {MAX_BYTES} bytes; send fewer rows per request"
    big = orjson.dumps({"data": [ROW] * 200})
    assert len(big) > MAX_BYTES
    r = call(app, "POST", "/score", big, auth)  # refused on content-length, before reading
    assert r.status == 413 and r.error == message
    r = call(app, "POST", "/score", [big[:3000], big[3000:]], auth, length=False)  # streamed: refused while reading
    assert r.status == 413 and r.error == message
    assert call(app, "POST", "/score", orjson.dumps({"data": [ROW] * 40}), auth).status == 200  # under the limit


SCHEMA = [
    ([ROW], 422, "body must be a JSON object"),
    ({"rows": [ROW]}, 422, 'missing "data"'),
    ({"data": []}, 422, '"data" is empty'),
    ({"data": ROW}, 422, '"data" must be a list of records'),
    ({"data": [ROW], "extra": 1}, 422, "unknown top-level field(s): extra"),
    ({"Inputs": [ROW]}, 422, 'Inputs must be an object with a "data" list'),
    ({"Inputs": {"data": [ROW]}, "GlobalParameters": "fast"}, 422, "GlobalParameters must be an object"),
    ({"Inputs": {"data": [ROW]}, "GlobalParameters": {"method": "explain"}}, 422, "unknown method 'explain'"),
    ({"data": [ROW, {"age": 41, "job": "admin."}]}, 422, "record 1: missing column(s): euribor3m"),
    ({"data": [ROW | {"colour": "red"}]}, 422, "record 0: unknown column(s): colour"),
    ({"data": [ROW, ROW, ROW | {"age": "forty"}]}, 422, "record 2: column 'age' must be a number, got a string"),
    ({"data": [ROW | {"age": True}]}, 422, "record 0: column 'age' must be a number, got a boolean"),
    ({"data": [ROW | {"job": 3}]}, 422, "record 0: column 'job' must be a string, got int"),
    ({"data": [ROW, [41, "admin.", 4.86]]}, 422, "record 1 is not an object of column: value pairs"),
]


@VIA
@pytest.mark.parametrize(("doc", "status", "message"), SCHEMA, ids=[m for _, _, m in SCHEMA])
def test_422_schema_problems_are_named(app, auth, doc, status, message, via):
    r = post_json(app, "/score", doc, auth, via)
    assert r.status == status and message in r.error, r.body


def test_405_and_404(app, auth):
    r = call(app, "GET", "/score")
    assert r.status == 405 and r.error == "use POST /score"
    for method, path in (("POST", "/"), ("PUT", "/metrics"), ("DELETE", "/swagger.json")):
        r = call(app, method, path, headers=auth)
        assert r.status == 405 and r.error == f"use GET {path}"
    r = call(app, "GET", "/predict")
    assert r.status == 404 and r.error == "no route /predict; POST /score, GET /, GET /swagger.json, GET /metrics"


def test_health_swagger_and_metrics(keys, auth):
    app = scoring_app(keys[1])
    health = call(app, "GET", "/")
    assert health.status == 200 and health.json() == {"status": "Healthy", "model": "bank:3", "classes": ["no", "yes"],
                                                      "inference": "fallback: a test scorer", "auth_enabled": True}
    spec = call(app, "GET", "/swagger.json")
    assert spec.status == 200 and spec.headers[b"content-type"] == b"application/json"
    doc = spec.json()
    assert doc["openapi"].startswith("3.") and set(doc["paths"]) == {"/score", "/", "/metrics"}
    assert doc["components"]["securitySchemes"]["Bearer"]["scheme"] == "bearer"
    assert set(doc["paths"]["/score"]["post"]["responses"]) == {"200", "400", "401", "413", "422"}
    assert post_json(app, "/score", {"data": [ROW, ROW]}, auth).status == 200
    assert post_json(app, "/score", {"data": [ROW]}).status == 401
    assert post_json(app, "/score", {"data": []}, auth).status == 422
    metrics = call(app, "GET", "/metrics")
    assert metrics.status == 200 and metrics.headers[b"content-type"].startswith(b"text/plain")
    text = metrics.body.decode()
    for path, status in (("/", 200), ("/swagger.json", 200), ("/score", 200), ("/score", 401), ("/score", 422)):
        assert f'opml_requests_total{{model="bank:3",path="{path}",status="{status}"}} 1\n' in text, text
    assert 'opml_rows_scored_total{model="bank:3"} 2\n' in text
    assert 'opml_request_duration_seconds_count{model="bank:3"} 5\n' in text


def test_auth_off_needs_no_key():
    app = scoring_app(None)
    assert call(app, "GET", "/").json()["auth_enabled"] is False
    r = post_json(app, "/score", {"data": [ROW]})
    assert r.status == 200 and r.json() == {"result": ["no"]}
    assert "securitySchemes" not in call(app, "GET", "/swagger.json").json()["components"]


@VIA
def test_a_scorer_bug_is_a_500_and_the_app_keeps_serving(keys, auth, via):
    scorer = FakeScorer()
    app = scoring_app(keys[1], scorer)
    scorer.fail = True
    r = post_json(app, "/score", {"data": [ROW]}, auth, via)
    assert r.status == 500 and r.error == "internal error while scoring: ZeroDivisionError: a scorer bug"
    scorer.fail = False
    assert post_json(app, "/score", {"data": [ROW]}, auth, via).status == 200


def test_405_names_the_allowed_methods(app, auth):
    """Issue 11 item 12: a 405 reply carries Allow."""
    r = call(app, "GET", "/score")
    assert r.status == 405 and r.headers[b"allow"] == b"POST"
    for method, path in (("POST", "/"), ("PUT", "/metrics"), ("DELETE", "/swagger.json"), ("PATCH", "/")):
        r = call(app, method, path, headers=auth)
        assert r.status == 405 and r.headers[b"allow"] == b"GET, HEAD", (method, path)


@VIA
def test_duplicate_authorization_is_400(app, keys, via):
    """Issue 11 item 11d: two Authorization headers are refused, not 'the last one wins'."""
    good = f"Bearer {keys[0]['primary']}"
    for first in ("Bearer wrong-key", good):
        r = post_json(app, "/score", {"data": [ROW]}, {"authorization": first, "Authorization": good}, via)
        assert r.status == 400 and r.error == "send one Authorization header, not 2", r.body
    assert post_json(app, "/score", {"data": [ROW]}, {"authorization": good}).status == 200


BIG = [b" " * 65536] * 160  # 10 MiB in 64 KiB chunks


def test_refused_bodies_are_not_read_and_the_connection_closes(app, auth):
    """Issue 11 item 8: a request refused before its body (no key, too large) is answered without reading
    the body (at most 64 KiB of it) and with `connection: close`, so the server drops the rest unread."""
    length = {"content-length": str(len(BIG) * 65536)}
    r = call(app, "POST", "/score", BIG, length, length=False)  # no key, length announced: nothing read
    assert r.status == 401 and r.unread == len(BIG) and r.headers[b"connection"] == b"close"
    r = call(app, "POST", "/score", BIG, {}, length=False)  # no key, streamed: at most 64 KiB read
    assert r.status == 401 and r.unread >= len(BIG) - 2 and r.headers[b"connection"] == b"close"
    r = call(app, "POST", "/score", BIG, auth | length, length=False)  # too large by content-length
    assert r.status == 413 and r.unread == len(BIG) and r.headers[b"connection"] == b"close"
    r = call(app, "POST", "/score", BIG, auth, length=False)  # too large while reading
    assert r.status == 413 and r.unread > 0 and r.headers[b"connection"] == b"close"
    r = call(app, "POST", "/score", [b'{"data": [', b"{}", b"]}"], {"authorization": "Bearer no"}, length=False)
    assert r.status == 401 and r.unread == 0 and b"connection" not in r.headers  # small: drained, kept alive


def test_global_parameters_must_be_an_object_or_null(app, auth):
    for bad in ([], 0, "", False, "fast"):
        r = post_json(app, "/score", {"Inputs": {"data": [ROW]}, "GlobalParameters": bad}, auth)
        assert r.status == 422 and r.error == "GlobalParameters must be an object", bad
    r = post_json(app, "/score", {"Inputs": {"data": [ROW]}, "GlobalParameters": None}, auth)
    assert r.status == 200 and r.json() == {"Results": ["no"]}


def test_health_reports_an_unreadable_keys_file(tmp_path):
    """Issue 11 item 11c: the last good keys stay in force, and GET / (what `endpoint show` reads) says why."""
    from opml.serving.keys import ensure_keys, key_file

    key = ensure_keys(tmp_path, "ep")["primary"]
    path = key_file(tmp_path, "ep")
    app = scoring_app(path)
    assert call(app, "GET", "/").json()["status"] == "Healthy"
    saved = path.read_bytes()
    path.write_text("{not json")
    health = call(app, "GET", "/").json()
    assert health["status"] == "Degraded" and "is corrupt" in health["keys_error"], health
    assert post_json(app, "/score", {"data": [ROW]}, {"authorization": f"Bearer {key}"}).status == 200
    path.write_bytes(saved)
    assert "keys_error" not in call(app, "GET", "/").json()


def test_openapi_documents_what_the_scoring_app_does(keys):
    """Issue 11 item 12: closed objects where extra fields are refused, 401 exactly where a key is needed,
    a required body."""
    for key_path in (keys[1], None):
        doc = call(scoring_app(key_path), "GET", "/swagger.json").json()
        schemas = doc["components"]["schemas"]
        for name in ("ScoreRequest", "ScoreRequestV2", "Record"):
            assert schemas[name]["additionalProperties"] is False, name
        assert schemas["ScoreRequestV2"]["properties"]["GlobalParameters"]["nullable"] is True
        op = doc["paths"]["/score"]["post"]
        assert op["requestBody"]["required"] is True
        assert ("401" in op["responses"]) is (key_path is not None)
        assert ("security" in op) is (key_path is not None)
        for path, item in doc["paths"].items():
            for method, operation in item.items():
                secured = bool(operation.get("security", doc.get("security")))
                assert not secured or "401" in operation["responses"], (method, path)


# ------------------------------------------------------------------------------------------ control plane


@dataclass
class Plane:
    app: object
    ws: object
    pub: object
    token: str
    started: list
    base: str = "http://127.0.0.1:8765"

    @property
    def url(self) -> str:
        return f"/pipelines/{self.pub.id}/runs"

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token or self.token}"}

    def runs(self) -> int:
        from opml.pipelines import registry

        return len(registry.list_runs(self.ws, limit=10_000))


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    """The control plane's app over a real workspace: configs/pipeline.yaml published, a service principal."""
    from opml.pipelines import registry
    from opml.pipelines.app import ControlPlane
    from opml.pipelines.spec import load_spec
    from opml.workspace import identity
    from opml.workspace.workspace import Workspace

    ws = Workspace.create_or_open(tmp_path_factory.mktemp("plane") / ".opml")
    creds = identity.create_principal(ws, "bot")
    token = identity.issue_token(ws, creds.principal.client_id, creds.client_secret, 600)["access_token"]
    source = REPO / "configs" / "pipeline.yaml"
    pipeline, _ = registry.create_pipeline(ws, load_spec(source), source, REPO / "configs")
    pub = registry.publish(ws, pipeline.ref)
    started: list = []
    app = ControlPlane(ws, Plane.base, started.append)  # on_run: would spawn the executor
    yield Plane(app, ws, pub, token, started)
    ws.close()


def test_control_plane_health_and_openapi(plane):
    r = call(plane.app, "GET", "/")
    assert r.status == 200 and r.json()["status"] == "Healthy"
    doc = call(plane.app, "GET", "/openapi.json").json()
    assert "/pipelines/{id}/runs" in doc["paths"] and doc["servers"] == [{"url": plane.base}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_trigger_success_shape_then_run_status(plane):
    before = len(plane.started)
    body = {"ExperimentName": "rest-exp", "ParameterAssignments": {"time_budget": 20, "max_trials": 2}}
    r = post_json(plane.app, plane.url, body, plane.auth())
    assert r.status == 200, r.body
    reply = r.json()
    assert set(reply) == {"Id", "Status", "PipelineId", "Pipeline", "ExperimentName", "ParameterAssignments",
                          "CreatedTime", "RunUrl"}
    assert reply["Status"] == "NotStarted" and reply["PipelineId"] == plane.pub.id
    assert reply["Pipeline"] == "bankmarketing-train:1" and reply["ExperimentName"] == "rest-exp"
    assert reply["ParameterAssignments"] == {"time_budget": 20.0, "max_trials": 2, "primary_metric": "AUC_weighted",
                                             "dataset_version": 0}  # coerced, defaults filled in
    assert reply["Id"].startswith("bankmarketing-train_") and reply["RunUrl"] == f"{plane.base}/runs/{reply['Id']}"
    assert [run.id for run in plane.started[before:]] == [reply["Id"]]  # the executor is started once, after the reply

    doc = call(plane.app, "GET", f"/runs/{reply['Id']}", headers=plane.auth())
    assert doc.status == 200
    run = doc.json()
    assert run["Id"] == reply["Id"] and run["Status"] == "NotStarted" and run["PipelineId"] == plane.pub.id
    assert [(s["Name"], s["Status"]) for s in run["Steps"]] == [
        ("prepare_data", "NotStarted"), ("automl", "NotStarted"), ("register_model", "NotStarted")]
    listed = call(plane.app, "GET", "/pipelines", headers=plane.auth()).json()["value"]
    assert {"Id": plane.pub.id, "Name": "bankmarketing-train", "Version": 1, "Status": "Active",
            "Endpoint": f"{plane.base}{plane.url}"} in listed
    empty = post_json(plane.app, plane.url, {}, plane.auth())  # every field optional
    assert empty.status == 200 and empty.json()["ExperimentName"] == "bankmarketing-train"
    before = plane.runs()
    r = call(plane.app, "POST", plane.url, b"", plane.auth())  # no body at all: refused (the body is required)
    assert r.status == 400 and r.error.startswith("empty request body; send a JSON object"), r.body
    assert plane.runs() == before


def _token(ws, name: str, *, issued_ago: float = 0.0, ttl: int = 600) -> tuple[str, str]:
    """A real token of a new principal `name`, issued `issued_ago` seconds ago (for an expired one)."""
    from opml.workspace import identity

    creds = identity.create_principal(ws, name)
    with pytest.MonkeyPatch.context() as mp:
        if issued_ago:
            now = time.time()
            mp.setattr(identity.time, "time", lambda: now - issued_ago)
        token = identity.issue_token(ws, creds.principal.client_id, creds.client_secret, ttl)["access_token"]
    return token, creds.principal.client_id


def test_401_no_or_bad_token(plane):
    from opml.workspace import identity
    from opml.workspace.workspace import Workspace

    expired, _ = _token(plane.ws, "late", issued_ago=3600, ttl=60)
    gone, _ = _token(plane.ws, "gone")
    identity.delete_principal(plane.ws, "gone")
    other_ws = Workspace.create_or_open(plane.ws.root.parent / "other")
    try:
        foreign, _ = _token(other_ws, "elsewhere")
    finally:
        other_ws.close()
    before = plane.runs()
    cases = [
        (None, "missing bearer token: send 'Authorization: Bearer <token from opml auth token>'"),
        ("Basic dXNlcjpwYXNz", "missing bearer token"),
        ("Bearer ", "missing bearer token"),
        ("Bearer not-a-token", "malformed bearer token"),
        (f"Bearer {plane.token[:-4]}AAAA", "invalid bearer token signature"),
        (f"Bearer {expired}", "bearer token has expired; get a new one with `opml auth token`"),
        (f"Bearer {gone}", "service principal no longer exists"),
        (f"Bearer {foreign}", "invalid bearer token signature"),  # another workspace signs with another key
    ]
    for header, message in cases:
        headers = {"authorization": header} if header else {}
        r = post_json(plane.app, plane.url, {"ParameterAssignments": {}}, headers)
        assert r.status == 401 and message in r.error, (header, r.body)
        assert call(plane.app, "GET", "/runs/anything", headers=headers).status == 401
        assert call(plane.app, "GET", "/pipelines", headers=headers).status == 401
    assert plane.runs() == before


def test_404_unknown_pipeline_run_or_route(plane):
    r = post_json(plane.app, "/pipelines/00000000-0000-0000-0000-000000000000/runs", {}, plane.auth())
    assert r.status == 404 and r.error == "no published pipeline '00000000-0000-0000-0000-000000000000'"
    r = call(plane.app, "GET", "/runs/nope", headers=plane.auth())
    assert r.status == 404 and r.error == "no pipeline run 'nope'"
    r = call(plane.app, "GET", "/pipelines/x/y", headers=plane.auth())
    assert r.status == 404 and r.error == "no route /pipelines/x/y; see GET /openapi.json"


def test_405_wrong_method(plane):
    r = call(plane.app, "GET", plane.url, headers=plane.auth())
    assert r.status == 405 and r.error == f"use POST {plane.url}"
    assert r.headers[b"allow"] == b"POST"
    r = call(plane.app, "POST", "/runs/x", b"{}", plane.auth())
    assert r.status == 405 and r.headers[b"allow"] == b"GET"
    r = call(plane.app, "DELETE", "/pipelines", headers=plane.auth())
    assert r.status == 405 and r.headers[b"allow"] == b"GET, HEAD"
    assert call(plane.app, "PUT", "/", b"{}").headers[b"allow"] == b"GET, HEAD"


BAD_BODIES = [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 400, "the body must be a JSON object"),
    (b'"run"', 400, "the body must be a JSON object"),
    ({"ParameterAssignments": {}, "Priority": 1}, 422, "unknown field 'Priority'"),
    ({"ExperimentName": ""}, 422, "ExperimentName must be a non-empty string"),
    ({"ExperimentName": 7}, 422, "ExperimentName must be a non-empty string"),
    ({"ExperimentName": "a\u0000b"}, 422, "ExperimentName: invalid experiment name"),
    ({"ExperimentName": "x" * 100_000}, 422, "ExperimentName: invalid experiment name"),
    ({"ExperimentName": "../../escape"}, 422, "ExperimentName: invalid experiment name"),
    ({"ParameterAssignments": [1]}, 422, "ParameterAssignments must be an object of name: value"),
    ({"ParameterAssignments": {"time_budgt": 5}}, 422, "unknown parameter 'time_budgt'"),
    ({"ParameterAssignments": {"max_trials": "two"}}, 422, "parameter 'max_trials' must be an integer"),
    ({"ParameterAssignments": {"max_trials": 1.5}}, 422, "parameter 'max_trials' must be an integer"),
    ({"ParameterAssignments": {"primary_metric": "f1"}}, 422, "unknown metric 'f1'"),
    ({"ParameterAssignments": {"time_budget": -3}}, 422, "setting 'time_budget'"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_BODIES, ids=[m for _, _, m in BAD_BODIES])
def test_bad_bodies_are_400_or_422_and_start_nothing(plane, body, status, message):
    before, started = plane.runs(), len(plane.started)
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    r = call(plane.app, "POST", plane.url, raw, plane.auth() | {"content-type": "application/json"})
    assert r.status == status and message in r.error, r.body
    assert plane.runs() == before and len(plane.started) == started


def test_413_and_409(plane):
    from opml.pipelines import registry
    from opml.pipelines.app import MAX_BODY

    r = call(plane.app, "POST", plane.url, [b" " * 65536] * (MAX_BODY // 65536 + 1), plane.auth(), length=False)
    assert r.status == 413 and r.error == f"request body over {MAX_BODY} bytes"
    before = plane.runs()
    registry.set_published_status(plane.ws, plane.pub.id, "Disabled")
    try:
        r = post_json(plane.app, plane.url, {"ParameterAssignments": {}}, plane.auth())
        assert r.status == 409 and r.error == (f"published pipeline {plane.pub.id} is Disabled; enable it with "
                                               f"`opml pipeline enable {plane.pub.id}`")
    finally:
        registry.set_published_status(plane.ws, plane.pub.id, "Active")
    assert plane.runs() == before


def test_control_plane_duplicate_authorization_is_400(plane):
    """Issue 11 item 11d: two Authorization headers are refused, not 'the last one wins'."""
    before = plane.runs()
    two = {"authorization": "Bearer not-a-token", "Authorization": f"Bearer {plane.token}"}
    r = post_json(plane.app, plane.url, {}, two)
    assert r.status == 400 and r.error == "send one Authorization header, not 2", r.body
    assert call(plane.app, "GET", "/pipelines", headers=two).status == 400
    assert plane.runs() == before


def test_openapi_documents_what_the_control_plane_does(plane):
    """Issue 11 item 12: 401 on every authenticated operation, required bodies, closed objects, 405 and 429."""
    doc = call(plane.app, "GET", "/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            secured = op.get("security", doc.get("security")) != []
            assert not secured or "401" in op["responses"], (method, path)
            if "requestBody" in op:
                assert op["requestBody"]["required"] is True, (method, path)
    assert "/openapi.json" in doc["paths"]
    trigger = doc["paths"]["/pipelines/{id}/runs"]["post"]["responses"]
    assert {"400", "401", "404", "409", "413", "422", "429"} <= set(trigger)
    assert "Retry-After" in trigger["429"]["headers"]
    schemas = doc["components"]["schemas"]
    assert schemas["TriggerRequest"]["additionalProperties"] is False
    name = schemas["TriggerRequest"]["properties"]["ExperimentName"]
    assert (name["minLength"], name["maxLength"]) == (1, 64) and name["pattern"]


def _script_pipeline(plane, name: str, tmp: Path, extra: dict | None = None, settings: dict | None = None):
    """Register and publish a one-step script pipeline in the plane's workspace (bypassing `pipeline create`'s
    checks, as an older opml would have stored it)."""
    from opml.pipelines import registry
    from opml.pipelines.spec import PipelineSpec

    (tmp / "ok.py").write_text("print('ok')\n")
    doc = {"name": name, "steps": [{"name": "s", "type": "script",
                                    "settings": settings or {"script": str(tmp / "ok.py")}}]} | (extra or {})
    pipeline, _ = registry.create_pipeline(plane.ws, PipelineSpec.model_validate(doc), tmp / "p.yaml", tmp)
    return registry.publish(plane.ws, pipeline.ref)


def test_concurrency_cap_answers_429_with_retry_after(plane, tmp_path):
    """Issue 11 item 11b: at most 4 active runs per published pipeline by default; more get 429 + Retry-After."""
    from opml.pipelines import registry

    pub = _script_pipeline(plane, "capped", tmp_path)
    url = f"/pipelines/{pub.id}/runs"
    ids = []
    for _ in range(4):
        r = post_json(plane.app, url, {}, plane.auth())
        assert r.status == 200, r.body
        ids.append(r.json()["Id"])
    before = plane.runs()
    r = post_json(plane.app, url, {}, plane.auth())
    assert r.status == 429 and "4 runs of published pipeline" in r.error, r.body
    assert int(r.headers[b"retry-after"]) > 0
    assert plane.runs() == before
    registry.update_run(plane.ws, ids[0], status="Completed")  # one ends: room for one more
    assert post_json(plane.app, url, {}, plane.auth()).status == 200
    for run in registry.list_runs(plane.ws, "capped"):
        registry.update_run(plane.ws, run.id, status="Completed")


def test_concurrency_cap_is_a_pipeline_setting(plane, tmp_path):
    from opml.pipelines import registry

    pub = _script_pipeline(plane, "single", tmp_path, {"max_concurrent_runs": 1})
    url = f"/pipelines/{pub.id}/runs"
    assert post_json(plane.app, url, {}, plane.auth()).status == 200
    r = post_json(plane.app, url, {}, plane.auth())
    assert r.status == 429 and "1 runs of published pipeline" in r.error
    for run in registry.list_runs(plane.ws, "single"):
        registry.update_run(plane.ws, run.id, status="Completed")


def test_rest_trigger_cannot_choose_the_script(plane, tmp_path):
    """Issue 11 item 10: a parameter cannot name the script, whatever the stored definition says."""
    pub = _script_pipeline(plane, "probe", tmp_path, {"parameters": [{"name": "script", "type": "string",
                                                                       "default": str(tmp_path / "ok.py")}]},
                           {"script": "${script}"})
    before, started = plane.runs(), len(plane.started)
    r = post_json(plane.app, f"/pipelines/{pub.id}/runs", {"ParameterAssignments": {"script": "/etc/passwd"}},
                  plane.auth())
    assert r.status == 422 and "step 's': setting 'script' cannot take a parameter" in r.error, r.body
    assert plane.runs() == before and len(plane.started) == started


def test_rest_url_parameter_host_must_be_allowed(plane, tmp_path):
    pub = _script_pipeline(plane, "fetch", tmp_path, {
        "allowed_url_hosts": ["127.0.0.1"],
        "parameters": [{"name": "u", "type": "string", "default": "http://127.0.0.1:9/d.csv"}],
        "steps": [{"name": "d", "type": "dataset", "settings": {"url": "${u}", "label": "y"}}]})
    before = plane.runs()
    for url in ("http://evil.example/d.csv", "http://127.0.0.1@evil.example/d.csv", "file:///etc/passwd"):
        r = post_json(plane.app, f"/pipelines/{pub.id}/runs", {"ParameterAssignments": {"u": url}}, plane.auth())
        assert r.status == 422 and "allowed_url_hosts" in r.error, (url, r.body)
    assert plane.runs() == before


def test_rest_get_fails_a_run_whose_executor_died(plane):
    """Issue 11 item 6: a read of a run whose executor is gone marks it Failed, with the reason."""
    import subprocess

    from opml.pipelines import registry

    proc = subprocess.Popen(["true"])
    proc.wait()
    r = post_json(plane.app, plane.url, {}, plane.auth())
    run_id = r.json()["Id"]
    registry.update_run(plane.ws, run_id, status="Running", runner_pid=proc.pid)
    registry.update_step(plane.ws, run_id, "prepare_data", status="Running")
    doc = call(plane.app, "GET", f"/runs/{run_id}", headers=plane.auth()).json()
    assert doc["Status"] == "Failed" and doc["Error"] == f"executor process {proc.pid} died (killed?)"
    assert [s["Status"] for s in doc["Steps"]] == ["Failed", "Canceled", "Canceled"]
    assert registry.get_run(plane.ws, run_id).status == "Failed"  # recorded, not just reported


# ------------------------------------------------------------------------------------------ Swagger UI proxy


@pytest.fixture(scope="module")
def swagger_app():
    from opml.processes import free_port
    from opml.serving.endpoints import Endpoint
    from opml.serving.openapi import build
    from opml.serving.swagger import SwaggerUIApp

    dead = free_port()  # nothing listens there: the proxied routes answer 502
    ep = Endpoint(name="ep", model="bank:3", host="127.0.0.1", port=dead, pid=None, auth_enabled=True,
                  settings={"max_request_bytes": 1000}, inference=None, started_at=None, created_at="", updated_at="")
    spec = build("bank:3", COLUMNS, ["no", "yes"], ROW, auth_enabled=True, server_url=ep.base_uri)
    return SwaggerUIApp(ep, spec, 9000, log=False)


def test_swagger_ui_routes(swagger_app):
    local = {"host": "127.0.0.1:9000"}
    doc = call(swagger_app, "GET", "/swagger.json", headers=local).json()
    assert doc["servers"][0]["url"] == "http://127.0.0.1:9000" and "/score" in doc["paths"]
    assert call(swagger_app, "GET", "/swagger.json", headers={"host": "localhost:9000"}).json()["servers"][0][
        "url"] == "http://localhost:9000"
    page = call(swagger_app, "GET", "/docs", headers=local)
    assert page.status == 200 and b"default-src 'none'" in page.headers[b"content-security-policy"]
    head = call(swagger_app, "HEAD", "/docs", headers=local)
    assert head.status == 200 and head.body == b"" and int(head.headers[b"content-length"]) == len(page.body)
    nav = call(swagger_app, "GET", "/", headers=local | {"sec-fetch-mode": "navigate"})
    assert nav.status == 307 and nav.headers[b"location"] == b"/docs"
    r = call(swagger_app, "GET", "/", headers={"host": "attacker.example"})
    assert r.status == 403 and r.error == "this server answers only on 127.0.0.1 / localhost"
    r = call(swagger_app, "POST", "/swagger.json", b"{}", local)
    assert r.status == 405 and r.error == "use GET /swagger.json"
    r = call(swagger_app, "GET", "/nope", headers=local)
    assert r.status == 404 and r.error == "no route /nope; Swagger UI is at /docs"
    assert all(r.headers[b"x-content-type-options"] == b"nosniff" for r in (page, nav))


def test_swagger_proxy_413_and_502(swagger_app):
    local = {"host": "127.0.0.1:9000"}
    r = call(swagger_app, "POST", "/score", [b" " * 40_000, b" " * 40_000], local, length=False)
    assert r.status == 413 and r.error == f"request body over {1000 + 65_536} bytes"
    r = post_json(swagger_app, "/score", {"data": [ROW]}, local | {"authorization": "Bearer k"})
    assert r.status == 502 and "endpoint 'ep' did not answer" in r.error and "opml endpoint show ep" in r.error
