"""Request telemetry for an endpoint (the Application Insights analogue), switched on and off live.

The switch is a small JSON control file that `opml enable-logs` rewrites; the server re-reads it when
its mtime changes, so toggling needs no restart and fails no request. With telemetry on, each request
becomes one JSON line in `<workspace>/logs/endpoints/NAME.telemetry.jsonl` (rotated by size) and, when
OTEL_EXPORTER_OTLP_ENDPOINT is set, an OpenTelemetry span plus metrics sent over OTLP/HTTP.
Keys and the Authorization header are never recorded; payloads only when sampling asks for it.
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from opml.files import atomic_write

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
MAX_SAMPLED_ROWS = 20


def control_file(root: Path, name: str) -> Path:
    return root / "run" / "endpoints" / f"{name}.telemetry.json"


def telemetry_log(root: Path, name: str) -> Path:
    return root / "logs" / "endpoints" / f"{name}.telemetry.jsonl"


def write_control(root: Path, name: str, enabled: bool, sample_payloads: float) -> None:
    atomic_write(control_file(root, name), json.dumps({"enabled": enabled, "sample_payloads": sample_payloads}))


class JsonLines:
    """Append-only JSON lines with size-based rotation (NAME.jsonl -> NAME.jsonl.1 ... .BACKUPS)."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd = -1
        self._writes = 0

    def write(self, record: dict[str, Any]) -> None:
        if self._fd < 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._fd, orjson.dumps(record, default=str) + b"\n")  # compact JSON, UTF-8
        self._writes += 1
        if self._writes % 64 == 0:
            self._check()

    def _check(self) -> None:
        """Rotate when over size; follow a rotation another worker did (its lines stay in the rotated file)."""
        mine = os.fstat(self._fd)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
            self.close()  # reopened on the next write
        elif mine.st_size > self.max_bytes:
            self.rotate()

    def rotate(self) -> None:
        """Shift NAME -> NAME.1 -> ... under a lock, so workers sharing the log rotate it once."""
        import fcntl

        self.close()
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
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Telemetry:
    def __init__(self, root: Path, name: str, model_ref: str) -> None:
        self.control = control_file(root, name)
        self.model = model_ref
        self.log = JsonLines(telemetry_log(root, name))
        self.enabled = False
        self.sample = 0.0
        self._mtime = -1
        self.otlp = _Otlp.from_env(name, model_ref)
        self.refresh()

    def refresh(self) -> None:
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
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds"),
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(latency_s * 1000, 3),
            "rows": rows,
            "model": self.model,
            "client": f"{client[0]}:{client[1]}" if client else None,
        }
        if records is not None and self.sample > 0 and random.random() < self.sample:
            entry["payload"] = records[:MAX_SAMPLED_ROWS]
        self.log.write(entry)
        if self.otlp is not None:
            self.otlp.export(entry, started, latency_s)

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
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=500))
        self.tracer = self.tracer_provider.get_tracer("opml.serving")
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=1000)
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter = self.meter_provider.get_meter("opml.serving")
        self.requests = meter.create_counter("opml.requests", description="Scoring requests")
        self.latency = meter.create_histogram("opml.request.duration", unit="ms", description="Request latency")
        self.rows = meter.create_counter("opml.rows_scored", description="Rows scored")

    def export(self, entry: dict[str, Any], started: float, latency_s: float) -> None:
        attrs = {"http.request.method": entry["method"], "url.path": entry["path"],
                 "http.response.status_code": entry["status"], "opml.model": entry["model"],
                 "opml.request_id": entry["request_id"], "opml.rows": entry["rows"]}
        start_ns = int(started * 1e9)
        span = self.tracer.start_span(f"{entry['method']} {entry['path']}", start_time=start_ns, attributes=attrs)
        span.end(end_time=start_ns + int(latency_s * 1e9))
        metric_attrs = {"url.path": entry["path"], "http.response.status_code": entry["status"]}
        self.requests.add(1, metric_attrs)
        self.latency.record(latency_s * 1000, metric_attrs)
        if entry["rows"]:
            self.rows.add(entry["rows"], {"opml.model": entry["model"]})

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
