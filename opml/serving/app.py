"""The scoring endpoint as a bare ASGI app: no framework on the request path, orjson in and out.

Routes: POST /score, GET / (health), GET /swagger.json, GET /metrics. Bad input answers 4xx with
{"error": "..."} (405 with Allow); an unexpected failure answers 500 and the process keeps serving.
The key is checked on the headers, before the body is read: a refused request's body is read only
up to LIMITS.drain_bytes (to keep the connection), a longer one is left unread and the connection closed.
POST /score with a body of up to LIMITS.drain_bytes is a direct route (opml.asgi): the protocol hands over the
whole request and writes the reply, with no ASGI task, scope or messages; the checks, replies and
bookkeeping are the same as through the ASGI app, which answers everything else.
A plain {"data": [...]} body goes from its bytes straight into the compiled scorer's record matrix (C, no
Python object per value); any other body, and every problem to name, takes orjson, parse and read. Request
ids are a per-process prefix and a counter.
Where a request's time goes: benchmarks/serving_costs.py.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from pathlib import Path
from typing import Any, Protocol

import orjson

from opml.asgi import (
    CLOSE,
    JSON,
    LIMITS,
    Headers,
    HTTPError,
    Receive,
    Scope,
    Send,
    drain,
    error,
    lifespan,
    read_body,
    respond,
)
from opml.serving.keys import KeyChecker
from opml.serving.metrics import Metrics
from opml.serving.requests import Column, parse

TEXT = [(b"content-type", b"text/plain; version=0.0.4")]
ALLOW_POST: Headers = [(b"allow", b"POST")]
ALLOW_GET: Headers = [(b"allow", b"GET, HEAD")]
NONE: Headers = []
REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


class RequestIds:
    """Ids for requests that bring none: 32 hex digits, a random prefix per process then a counter (made anew in
    a forked child), unique across workers and restarts without a random draw per request."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count()

    def next(self) -> bytes:
        return f"{self._prefix}{next(self._count):016x}".encode()


_IDS = RequestIds()


class Scorer(Protocol):
    model_ref: str
    columns: list[Column]
    classes: list[str]
    inference: str  # "compiled" or "fallback: <why>"

    def read(self, records: list[Any]) -> Any: ...  # checked records (an HTTPError names a bad one)

    def predict_batch(self, batch: Any) -> Any: ...  # probabilities of what read() returned

    def labels(self, proba: Any) -> list[str]: ...


class ScoringApp:
    def __init__(self, scorer: Scorer, *, keys: KeyChecker | None, max_request_bytes: int, openapi: bytes,
                 telemetry: Any = None, metrics_dir: Path | None = None) -> None:
        self.scorer = scorer
        self.keys = keys
        self.max_bytes = max_request_bytes
        self.openapi = openapi
        self.metrics = Metrics(scorer.model_ref, metrics_dir)  # shared by the workers when given
        self.telemetry = telemetry  # opml.serving.telemetry.Telemetry or None
        self.health = orjson.dumps({"status": "Healthy", "model": scorer.model_ref, "classes": scorer.classes,
                                    "inference": scorer.inference, "auth_enabled": keys is not None})
        self._read_json = getattr(scorer, "read_json", None)  # the C reader's body -> batch, when the scorer has it
        # answered by opml.asgi's protocol without the ASGI layer once the whole (short) body has arrived
        self.direct_routes = {b"/score": self.score_now}

    @property
    def direct_max_bytes(self) -> int:
        """The longest body a direct route takes (opml.asgi also caps it at LIMITS.drain_bytes)."""
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        t0 = time.perf_counter()
        logged, wall = self._logged()
        path, method = scope["path"], scope["method"]
        raw_headers = scope["headers"]
        headers = dict(raw_headers)
        request_id = self._request_id(headers)
        rows, records, kind, extra = 0, None, JSON, NONE
        if path == "/score":
            if method != "POST":
                status, body, extra = 405, error("use POST /score"), ALLOW_POST
            else:
                status, body, rows, records, extra = await self._score(raw_headers, headers, receive, logged)
        elif method not in ("GET", "HEAD"):
            status, body, extra = 405, error(f"use GET {path}"), ALLOW_GET
        elif path == "/":
            status, body = 200, self._health()
        elif path == "/swagger.json":
            status, body = 200, self.openapi
        elif path == "/metrics":
            status, body, kind = 200, self.metrics.render(), TEXT
        else:
            status, body = 404, error(f"no route {path}; POST /score, GET /, GET /swagger.json, GET /metrics")
        await respond(send, status, body, [*kind, (b"x-request-id", request_id), *extra])
        self._done(t0, wall, logged, request_id, method, path, status, rows, scope.get("client"), records)

    def score_now(self, raw_headers: Headers, raw: bytes, client: tuple[str, int] | None) -> tuple[int, bytes, Headers]:
        """POST /score whose whole body has arrived, answered without the ASGI layer (opml.asgi's direct routes):
        the same checks, reply and bookkeeping as through __call__; the reply's head and body for the protocol."""
        t0 = time.perf_counter()
        logged, wall = self._logged()
        headers = dict(raw_headers)
        request_id = self._request_id(headers)
        refused = self._refused(raw_headers, headers)
        if refused is None:
            status, body, rows, records = self._score_body(raw, logged)
        else:  # the body is short and read (opml.asgi sends only those here): the connection stays open
            (status, body), rows, records = refused, 0, None
        self._done(t0, wall, logged, request_id, "POST", "/score", status, rows, client, records)
        return status, body, [*JSON, (b"x-request-id", request_id)]

    def _logged(self) -> tuple[bool, float]:
        """Whether telemetry logs this request (the switch re-read when its file changed), and its wall time."""
        tel = self.telemetry
        if tel is None:
            return False, 0.0
        tel.refresh()
        return (True, time.time()) if tel.enabled else (False, 0.0)

    def _request_id(self, headers: dict[bytes, bytes]) -> bytes:
        given = headers.get(b"x-request-id")
        return given if given and REQUEST_ID.match(given) else _IDS.next()

    def _done(self, t0: float, wall: float, logged: bool, request_id: bytes, method: str, path: str, status: int,
              rows: int, client: Any, records: Any) -> None:
        """Count the request, and log it when telemetry is on."""
        elapsed = time.perf_counter() - t0
        self.metrics.observe(path, status, elapsed, rows)
        if logged:
            self.telemetry.record(request_id=request_id.decode(), method=method, path=path, status=status,
                                  latency_s=elapsed, rows=rows, client=client, started=wall, records=records)

    def _health(self) -> bytes:
        """The health reply; with the keys file unreadable, Degraded and why (the last good keys stay in force)."""
        keys = self.keys
        if keys is None:
            return self.health
        keys.refresh()  # re-reads the keys file if it changed, which sets or clears keys.error
        if keys.error is None:
            return self.health
        return orjson.dumps(orjson.loads(self.health) | {"status": "Degraded", "keys_error": keys.error})

    def _refused(self, raw_headers: Headers, headers: dict[bytes, bytes]) -> tuple[int, bytes] | None:
        """The key check, on the headers alone: (status, error body) for a refused request, else None."""
        if self.keys is None:
            return None
        # a repeated header makes the dict shorter than the list: refuse two keys rather than pick one
        if len(headers) != len(raw_headers) and (n := sum(k == b"authorization" for k, _ in raw_headers)) > 1:
            return 400, error(f"send one Authorization header, not {n}")
        if not self.keys.check(headers.get(b"authorization")):
            return 401, error("missing or invalid key: send 'Authorization: Bearer <key>'")
        return None

    async def _score(self, raw_headers: Headers, headers: dict[bytes, bytes], receive: Receive,
                     logged: bool) -> tuple[int, bytes, int, Any, Headers]:
        """Score one request read through ASGI: (status, body, rows, the records telemetry may sample, extra
        headers)."""
        refused = self._refused(raw_headers, headers)
        if refused is not None:
            extra = await _skip_body(headers, receive)
            return *refused, 0, None, extra
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return 413, error(f"request body over {self.max_bytes} bytes; send fewer rows per request"), 0, None, CLOSE
        raw = await read_body(receive, self.max_bytes)
        if raw is None:
            return 413, error(f"request body over {self.max_bytes} bytes; send fewer rows per request"), 0, None, CLOSE
        return *self._score_body(raw, logged), NONE

    def _score_body(self, raw: bytes, logged: bool) -> tuple[int, bytes, int, Any]:
        """(status, body, rows, records) for a whole body; records only when telemetry may sample payloads."""
        payloads = logged and self.telemetry.sample > 0  # sampled payloads need the records
        # a plain {"data": [...]} body goes straight into the C reader's matrix; anything else (and a problem
        # to name) takes orjson, parse and read
        batch = None if self._read_json is None or payloads else self._read_json(raw)
        if batch is not None:
            records, proba_wanted, v2 = None, False, False
        else:
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                return 400, error(f"malformed JSON: {exc}"), 0, None
            try:
                req = parse(doc)
                batch = self.scorer.read(req.records)
            except HTTPError as exc:
                return exc.status, error(exc.message), 0, None
            records, proba_wanted, v2 = req.records, req.method == "predict_proba", req.v2
        try:
            proba = self.scorer.predict_batch(batch)
            # orjson encodes a list of labels faster than joining labels encoded at start-up (measured by
            # benchmarks/serving_costs.py: 0.3 vs 0.6 µs for one row, 0.7 vs 3.5 µs for 100)
            result: Any = proba.tolist() if proba_wanted else self.scorer.labels(proba)
            body = orjson.dumps({"Results" if v2 else "result": result}, option=orjson.OPT_SERIALIZE_NUMPY)
        except Exception as exc:  # a bug, not bad input: say so and keep serving
            return 500, error(f"internal error while scoring: {type(exc).__name__}: {exc}"), 0, None
        return 200, body, batch.rows if records is None else len(records), records


async def _skip_body(headers: dict[bytes, bytes], receive: Receive) -> Headers:
    """Deal with a refused request's body: read and drop a short one (the connection stays open); leave a long
    one unread (one announced as longer than LIMITS.drain_bytes is not read at all) and close the connection."""
    length = headers.get(b"content-length")
    if length is not None and not (length.isdigit() and int(length) <= LIMITS.drain_bytes):
        return CLOSE
    return NONE if await drain(receive, LIMITS.drain_bytes) else CLOSE
