"""Endpoint processes: start one (detached) and wait until it serves, probe it, stop it by PID."""

from __future__ import annotations

import json
from pathlib import Path

from opml import processes
from opml.errors import OpmlError
from opml.serving.server import ready_file

SERVER = "opml.serving.server"


def log_path(root: Path, name: str) -> Path:
    return root / "logs" / "endpoints" / f"{name}.log"


def start(root: Path, name: str, model: str, host: str, port: int, *, auth: bool, max_request_bytes: int,
          workers: int, timeout: float) -> dict:
    """Start an endpoint process and wait until it is serving; raise with its log tail if it dies."""
    log = log_path(root, name)
    args = ["--workspace", str(root), "--name", name, "--model", model, "--host", host, "--port", str(port),
            "--max-request-bytes", str(max_request_bytes), "--workers", str(workers)]
    if not auth:
        args.append("--no-auth")
    # one request at a time per worker: no thread fan-out
    proc = processes.spawn(SERVER, args, log, env={"OMP_NUM_THREADS": "1"})
    ready = ready_file(root, name, proc.pid)

    def info() -> dict | None:
        try:
            return json.loads(ready.read_text())
        except (OSError, ValueError):  # not there yet, or being written
            return None

    try:
        return processes.wait_ready(proc, info, host, port, timeout) | {"pid": proc.pid}
    except processes.Exited:
        raise OpmlError(f"endpoint {name!r} failed to start: {processes.log_tail(log)}",
                        f"see {log}; the previous deployment, if any, keeps serving") from None
    except TimeoutError:
        raise OpmlError(f"endpoint {name!r} was not ready within {timeout:.0f} s",
                        f"see {log}, or raise startup_timeout_seconds in deploy.yaml") from None


def state_info(root: Path, name: str, pid: int | None) -> dict | None:
    """What the endpoint process `pid` last wrote to its state file (opml.serving.server), None if nothing."""
    if not pid:
        return None
    try:
        info = json.loads(ready_file(root, name, pid).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def alive(pid: int | None, name: str | None = None) -> bool:
    """True if `pid` runs (and, given a name, is that endpoint's server: guards against PID reuse)."""
    return processes.alive(pid, *_marks(name))


def stop(pid: int | None, name: str | None = None, timeout: float = 10.0) -> bool:
    """Stop an endpoint process and its workers (only if it is that endpoint's, given a name)."""
    return processes.stop(pid, *_marks(name), timeout=timeout)


def _marks(name: str | None) -> tuple[str, ...]:
    return (SERVER, name) if name is not None else ()
