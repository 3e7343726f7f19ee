"""`opml logs`: an endpoint's server log and request telemetry, merged by time, newest last."""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from opml.serving.process import log_path
from opml.serving.telemetry import telemetry_log

SERVER_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00) (\w+) ([\w.]+): (.*)$")


def parse_server(line: str) -> dict[str, Any]:
    m = SERVER_LINE.match(line)
    if m:
        return {"source": "server", "timestamp": m[1], "level": m[2], "logger": m[3], "message": m[4]}
    return {"source": "server", "timestamp": None, "level": None, "logger": None, "message": line}


def parse_telemetry(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return {"source": "telemetry", **entry} if isinstance(entry, dict) else None


def _tail_lines(path: Path, n: int) -> list[str]:
    if not path.is_file():
        return []
    with path.open(errors="replace") as fh:
        return [ln.rstrip("\n") for ln in deque(fh, maxlen=n) if ln.strip()]


def read(root: Path, name: str, tail: int = 50) -> list[dict[str, Any]]:
    """The last `tail` entries of the server log and telemetry together, oldest first."""
    server = [parse_server(ln) for ln in _tail_lines(log_path(root, name), tail)]
    last = None
    for e in server:  # continuation lines (tracebacks) inherit the time of the line they follow
        if e["timestamp"] is None:
            e["timestamp"] = last
        last = e["timestamp"]
    telemetry = [e for e in map(parse_telemetry, _tail_lines(telemetry_log(root, name), tail)) if e]
    merged = sorted(server + telemetry, key=lambda e: e.get("timestamp") or "")
    return merged[-tail:] if tail else merged


def follow(root: Path, name: str, emit: Callable[[dict[str, Any]], None], poll_s: float = 0.5,
           should_stop: Callable[[], bool] = lambda: False) -> None:
    """Emit new entries as they are written (both files), until `should_stop()` or Ctrl-C."""
    streams = [(log_path(root, name), parse_server), (telemetry_log(root, name), parse_telemetry)]
    offsets = {p: p.stat().st_size if p.is_file() else 0 for p, _ in streams}
    while not should_stop():
        for path, parse in streams:
            for line in _new_lines(path, offsets):
                entry = parse(line)
                if entry:
                    emit(entry)
        time.sleep(poll_s)


def _new_lines(path: Path, offsets: dict[Path, int]) -> Iterator[str]:
    if not path.is_file():
        return
    size = path.stat().st_size
    if size < offsets[path]:  # rotated: start from the top of the new file
        offsets[path] = 0
    if size == offsets[path]:
        return
    with path.open("rb") as fh:
        fh.seek(offsets[path])
        data = fh.read()
    complete = data.rfind(b"\n") + 1
    offsets[path] += complete
    for raw in data[:complete].splitlines():
        if raw.strip():
            yield raw.decode(errors="replace")


def format_entry(e: dict[str, Any]) -> str:
    if e["source"] == "server":
        return f"{e['timestamp'] or '':<29} server     {e['level'] or '':<7} {e['message']}"
    return (f"{e.get('timestamp', ''):<29} telemetry  {e.get('method', '')} {e.get('path', '')} {e.get('status', '')} "
            f"{e.get('latency_ms', 0):.2f} ms rows={e.get('rows', 0)} id={e.get('request_id', '')} "
            f"client={e.get('client', '')}")
