"""Request telemetry for an endpoint (the Application Insights analogue), switched on and off live.

The switch is a small JSON control file that `opml enable-logs` rewrites; the server re-reads it when
its mtime changes, so toggling needs no restart and fails no request. With telemetry on, each request
becomes one JSON line in `<workspace>/logs/endpoints/NAME.telemetry.jsonl` (rotated by size) and, when
OTEL_EXPORTER_OTLP_ENDPOINT is set, an OpenTelemetry span plus metrics sent over OTLP/HTTP.
Keys and the Authorization header are never recorded; payloads only when sampling asks for it.

A worker writes its first AT_ONCE lines of every FLUSH_S (0.1 s; env OPML_TELEMETRY_FLUSH_S) at once, so
an endpoint that is not busy writes each line as it happens, in the order of the requests across workers.
Past that (a busy endpoint) lines wait for a batch, which a timer on the worker's event loop writes in one
write() at most FLUSH_S later, making the lines (JSON) together then; a full batch (MAX_BUFFER bytes) is
written at once. A graceful stop (SIGTERM: `opml endpoint restart/delete`, a redeploy) writes what is left.
So every line is on disk within FLUSH_S of its request, or at the stop if that comes first; a worker killed
outright (SIGKILL, a crash) loses at most its last FLUSH_S of lines. Costs: benchmarks/serving_costs.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from opml.errors import OpmlError
from opml.files import atomic_write

if TYPE_CHECKING:
    from opml.serving.watch import Watched

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
MAX_SAMPLED_ROWS = 20
FLUSH_S = 0.1  # seconds a line may wait for its batch; OPML_TELEMETRY_FLUSH_S overrides it
AT_ONCE = 10  # lines a worker writes as they come in every FLUSH_S, before it batches them
MAX_BUFFER = 256 * 1024  # bytes of lines held before they are written whatever the time
ENTRY_BYTES = 256  # what a request's line takes, about, before it is made
CHECK_EVERY = 64  # lines between two checks for rotation


def flush_interval() -> float:
    """FLUSH_S, or OPML_TELEMETRY_FLUSH_S; OpmlError when that is not a finite number of seconds >= 0."""
    raw = os.environ.get("OPML_TELEMETRY_FLUSH_S", "").strip()
    if not raw:
        return FLUSH_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise OpmlError(f"OPML_TELEMETRY_FLUSH_S must be a number of seconds >= 0 (got {raw!r})",
                        "set it to e.g. 0.1, or unset it")
    return value


def control_file(root: Path, name: str) -> Path:
    return root / "run" / "endpoints" / f"{name}.telemetry.json"


def telemetry_log(root: Path, name: str) -> Path:
    return root / "logs" / "endpoints" / f"{name}.telemetry.jsonl"


def write_control(root: Path, name: str, enabled: bool, sample_payloads: float) -> None:
    atomic_write(control_file(root, name), json.dumps({"enabled": enabled, "sample_payloads": sample_payloads}))


class JsonLines:
    """Append-only JSON lines with size-based rotation (NAME.jsonl -> NAME.jsonl.1 ... .BACKUPS), written in
    batches by `append` (see the module docstring) or one at a time by `write`.

    A batch holds lines (bytes) and, given `render`, entries that it turns into lines when the batch is written:
    `render(batch)` gives the bytes of all of them, in order (made together, the lines cost less CPU).
    """

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS,
                 flush_s: float | None = None, render: Callable[[list[Any]], bytes] | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.flush_s = flush_interval() if flush_s is None else flush_s
        self.render = render
        self._fd = -1
        self._lines: list[Any] = []  # the batch: lines (or entries) not written yet
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._window = -math.inf  # time.monotonic() when the current FLUSH_S began
        self._at_once = 0  # lines written as they came in this FLUSH_S
        self._unchecked = 0  # lines written since the last rotation check

    def write(self, record: dict[str, Any]) -> None:
        """Write one record now (with whatever the batch holds before it)."""
        self._lines.append(orjson.dumps(record, default=str) + b"\n")  # compact JSON, UTF-8
        self.flush()

    def append(self, line: Any) -> None:
        """Add one line (JSON ending in a newline) or entry (for `render`): written now while this FLUSH_S has
        written fewer than AT_ONCE (or the batch is full, or no event loop runs here), else by a timer at most
        FLUSH_S from now."""
        self._lines.append(line)
        self._size += len(line) if line.__class__ is bytes else ENTRY_BYTES
        if self._size >= MAX_BUFFER:
            self.flush()
        elif self._timer is None:  # else the batch is already due
            now = time.monotonic()
            if now - self._window >= self.flush_s:
                self._window, self._at_once = now, 0
            if self._at_once < AT_ONCE:
                self._at_once += 1
                self.flush()
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self._window + self.flush_s - now, self._due)

    def _due(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Write the batch in one write() (appends are whole on a local file system: workers' lines never mix)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines = self._lines
        if not lines:
            return
        self._lines, self._size = [], 0  # taken whatever happens next: a failed write drops them, once
        data = b"".join(lines) if self.render is None else self.render(lines)
        count = len(lines)
        if self._fd < 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._unchecked += count
        if self._unchecked >= CHECK_EVERY:
            self._unchecked = 0
            self._check()

    def _check(self) -> None:
        """Rotate when over size; follow a rotation another worker did (its lines stay in the rotated file)."""
        mine = os.fstat(self._fd)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
            self._close_fd()  # reopened on the next write
        elif mine.st_size > self.max_bytes:
            self.rotate()

    def rotate(self) -> None:
        """Shift NAME -> NAME.1 -> ... under a lock, so workers sharing the log rotate it once."""
        import fcntl

        self.flush()  # nothing of this writer's waits to land in the file being rotated
        self._close_fd()
        lock = os.open(self.path.parent, os.O_RDONLY)  # flock on the folder: no lock file to leave behind
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if os.stat(self.path).st_size <= self.max_bytes:
                    return  # another worker rotated it first
            except FileNotFoundError:
                return
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        finally:
            os.close(lock)

    def close(self) -> None:
        """Write what the batch holds, then close the file (reopened by a later write)."""
        self.flush()
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Telemetry:
    """One worker's telemetry: the live switch (`refresh`, once a request), its lines (`record`) and OTLP export."""

    def __init__(self, root: Path, name: str, model_ref: str, watched: Watched | None = None) -> None:
        self.control = control_file(root, name)
        self._watched = watched  # the switch is looked at only when it may have changed
        self.model = model_ref
        self.log = JsonLines(telemetry_log(root, name), render=self._render)
        self.enabled = False
        self.sample = 0.0
        self._mtime = -1
        self.otlp = _Otlp.from_env(name, model_ref)
        self._model_json = orjson.dumps(model_ref)
        self._strings: dict[str, bytes] = {}  # methods and paths as JSON strings
        self._second, self._second_text = -1, b""  # the timestamp up to its seconds, made once a second
        self.refresh()

    def refresh(self) -> None:
        if self._watched is not None and not self._watched.stale():
            return
        try:
            mtime = os.stat(self.control).st_mtime_ns
        except FileNotFoundError:
            self.enabled, self._mtime = False, -1
            return
        if mtime != self._mtime:
            try:
                cfg = json.loads(self.control.read_text())
            except (OSError, ValueError):
                return  # mid-replace or unreadable: keep the last good setting
            self.enabled = bool(cfg.get("enabled"))
            self.sample = float(cfg.get("sample_payloads") or 0.0)
            self._mtime = mtime

    def record(self, *, request_id: str, method: str, path: str, status: int, latency_s: float, rows: int,
               client: tuple[str, int] | None, started: float, records: list[Any] | None = None) -> None:
        """One request's line: timestamp (UTC, ms), request_id, method, path, status, latency_ms, rows, model,
        client, and a sampled payload (its first MAX_SAMPLED_ROWS records) when sampling picks it. Its fields
        wait as they are in the batch; the line is made with the batch's others when the batch is written."""
        entry = (request_id, method, path, status, latency_s, rows, client, started)
        if records is not None and self.sample > 0 and random.random() < self.sample:
            payload = orjson.dumps(records[:MAX_SAMPLED_ROWS], default=str)  # now: the records are the caller's
            self.log.append(b"%b,\"payload\":%b}\n" % (self._render([entry])[:-2], payload))
        else:
            self.log.append(entry)
        if self.otlp is not None:
            self.otlp.export(method, path, status, request_id, rows, started, latency_s)

    def _render(self, batch: list[Any]) -> bytes:
        """The lines of a batch of entries (and lines): the same JSON as orjson.dumps of each record's dict, made
        from bytes with the model, the methods and paths, and each second's timestamp encoded once."""
        strings, dumps, model = self._strings, orjson.dumps, self._model_json
        out = []
        for entry in batch:
            if entry.__class__ is bytes:
                out.append(entry)
                continue
            request_id, method, path, status, latency_s, rows, client, started = entry
            second = int(started)
            micro = round((started - second) * 1e6)  # as datetime.fromtimestamp rounds
            if micro >= 1_000_000:
                second, micro = second + 1, micro - 1_000_000
            if second != self._second:
                text = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")
                self._second, self._second_text = second, text[:-6].encode()  # without "+00:00"
            out.append(
                b'{"timestamp":"%b.%03d+00:00","request_id":%b,"method":%b,"path":%b,"status":%d,"latency_ms":%b,'
                b'"rows":%d,"model":%b,"client":%b}\n' % (
                    self._second_text, micro // 1000, dumps(request_id), strings.get(method) or self._string(method),
                    strings.get(path) or self._string(path), status, dumps(round(latency_s * 1000, 3)), rows, model,
                    dumps(f"{client[0]}:{client[1]}") if client else b"null"))
        return b"".join(out)

    def _string(self, text: str) -> bytes:
        encoded = orjson.dumps(text)
        if len(self._strings) < 64:  # the routes and methods; not every path a scanner tries
            self._strings[text] = encoded
        return encoded

    def close(self) -> None:
        self.log.close()
        if self.otlp is not None:
            self.otlp.shutdown()


class _Otlp:
    """OpenTelemetry spans and metrics over OTLP/HTTP, configured by the standard OTEL_* variables."""

    @classmethod
    def from_env(cls, name: str, model: str) -> _Otlp | None:
        if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            return None
        return cls(name, model)

    def __init__(self, name: str, model: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", f"opml-endpoint-{name}"),
                                    "opml.endpoint": name, "opml.model": model})
        self.model = model
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=500))
        self.tracer = self.tracer_provider.get_tracer("opml.serving")
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=1000)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter = self.meter_provider.get_meter("opml.serving")
        self.requests = meter.create_counter("opml.requests", description="Scoring requests")
        self.latency = meter.create_histogram("opml.request.duration", unit="ms", description="Request latency")
        self.rows = meter.create_counter("opml.rows_scored", description="Rows scored")

    def export(self, method: str, path: str, status: int, request_id: str, rows: int, started: float,
               latency_s: float) -> None:
        attrs = {"http.request.method": method, "url.path": path, "http.response.status_code": status,
                 "opml.model": self.model, "opml.request_id": request_id, "opml.rows": rows}
        start_ns = int(started * 1e9)
        span = self.tracer.start_span(f"{method} {path}", start_time=start_ns, attributes=attrs)
        span.end(end_time=start_ns + int(latency_s * 1e9))
        metric_attrs = {"url.path": path, "http.response.status_code": status}
        self.requests.add(1, metric_attrs)
        self.latency.record(latency_s * 1000, metric_attrs)
        if rows:
            self.rows.add(rows, {"opml.model": self.model})

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
