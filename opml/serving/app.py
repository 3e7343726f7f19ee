"""The scoring endpoint as a bare ASGI app: no framework on the request path, orjson in and out.

Routes: POST /score, GET / (health), GET /swagger.json, GET /metrics. Bad input answers 4xx with
{"error": "..."} (405 with Allow); an unexpected failure answers 500 and the process keeps serving.
The key is checked on the headers, before the body is read: a refused request's body is read only
up to LIMITS.drain_bytes (to keep the connection), a longer one is left unread and the connection closed.
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        t0 = time.perf_counter()
        tel = self.telemetry
        if tel is not None:
            tel.refresh()  # re-reads the switch only when its file changed
            logged = tel.enabled
            wall = time.time() if logged else 0.0
        else:
            logged = False
        path, method = scope["path"], scope["method"]
        raw_headers = scope["headers"]
        headers = dict(raw_headers)
        given = headers.get(b"x-request-id")
        request_id = given if given and REQUEST_ID.match(given) else _IDS.next()
        rows, records, kind, extra = 0, None, JSON, NONE
        if path == "/score":
            if method != "POST":
                status, body, extra = 405, error("use POST /score"), ALLOW_POST
            else:
                payloads = logged and tel is not None and tel.sample > 0  # sampled payloads need the records
                status, body, rows, records, extra = await self._score(raw_headers, headers, receive, payloads)
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
        elapsed = time.perf_counter() - t0
        self.metrics.observe(path, status, elapsed, rows)
        if logged and tel is not None:
            tel.record(request_id=request_id.decode(), method=method, path=path, status=status, latency_s=elapsed,
                       rows=rows, client=scope.get("client"), started=wall, records=records)

    def _health(self) -> bytes:
        """The health reply; with the keys file unreadable, Degraded and why (the last good keys stay in force)."""
        keys = self.keys
        if keys is None:
            return self.health
        keys.check(None)  # re-reads the keys file if it changed, which sets or clears keys.error
        if keys.error is None:
            return self.health
        return orjson.dumps(orjson.loads(self.health) | {"status": "Degraded", "keys_error": keys.error})

    async def _score(self, raw_headers: Headers, headers: dict[bytes, bytes], receive: Receive,
                     payloads: bool = False) -> tuple[int, bytes, int, Any, Headers]:
        """Score one request: (status, body, rows, the records when `payloads` asks for them, extra headers)."""
        if self.keys is not None:
            # a repeated header makes the dict shorter than the list: refuse two keys rather than pick one
            if len(headers) != len(raw_headers) and (n := sum(k == b"authorization" for k, _ in raw_headers)) > 1:
                extra = await _skip_body(headers, receive)
                return 400, error(f"send one Authorization header, not {n}"), 0, None, extra
            if not self.keys.check(headers.get(b"authorization")):
                extra = await _skip_body(headers, receive)
                return 401, error("missing or invalid key: send 'Authorization: Bearer <key>'"), 0, None, extra
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return 413, error(f"request body over {self.max_bytes} bytes; send fewer rows per request"), 0, None, CLOSE
        raw = await read_body(receive, self.max_bytes)
        if raw is None:
            return 413, error(f"request body over {self.max_bytes} bytes; send fewer rows per request"), 0, None, CLOSE
        # a plain {"data": [...]} body goes straight into the C reader's matrix; anything else (and a problem
        # to name) takes orjson, parse and read
        batch = None if self._read_json is None or payloads else self._read_json(raw)
        if batch is not None:
            records, proba_wanted, v2 = None, False, False
        else:
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                return 400, error(f"malformed JSON: {exc}"), 0, None, NONE
            try:
                req = parse(doc)
                batch = self.scorer.read(req.records)
            except HTTPError as exc:
                return exc.status, error(exc.message), 0, None, NONE
            records, proba_wanted, v2 = req.records, req.method == "predict_proba", req.v2
        try:
            proba = self.scorer.predict_batch(batch)
            # orjson encodes a list of labels faster than joining labels encoded at start-up (measured by
            # benchmarks/serving_costs.py: 0.3 vs 0.6 µs for one row, 0.7 vs 3.5 µs for 100)
            result: Any = proba.tolist() if proba_wanted else self.scorer.labels(proba)
            body = orjson.dumps({"Results" if v2 else "result": result}, option=orjson.OPT_SERIALIZE_NUMPY)
        except Exception as exc:  # a bug, not bad input: say so and keep serving
            return 500, error(f"internal error while scoring: {type(exc).__name__}: {exc}"), 0, None, NONE
        return 200, body, batch.rows if records is None else len(records), records, NONE


async def _skip_body(headers: dict[bytes, bytes], receive: Receive) -> Headers:
    """Deal with a refused request's body: read and drop a short one (the connection stays open); leave a long
    one unread (one announced as longer than LIMITS.drain_bytes is not read at all) and close the connection."""
    length = headers.get(b"content-length")
    if length is not None and not (length.isdigit() and int(length) <= LIMITS.drain_bytes):
        return CLOSE
    return NONE if await drain(receive, LIMITS.drain_bytes) else CLOSE
