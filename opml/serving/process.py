"""Endpoint processes: start detached, wait until ready (or failed), probe, stop by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from opml.errors import OpmlError
from opml.serving.server import ready_file


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def log_path(root: Path, name: str) -> Path:
    return root / "logs" / "endpoints" / f"{name}.log"


def start(root: Path, name: str, model: str, host: str, port: int, *, auth: bool, max_request_bytes: int,
          workers: int, timeout: float) -> dict:
    """Start an endpoint process and wait until it is serving; raise with its log tail if it dies."""
    log = log_path(root, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "opml.serving.server", "--workspace", str(root), "--name", name,
           "--model", model, "--host", host, "--port", str(port), "--max-request-bytes", str(max_request_bytes),
           "--workers", str(workers)]
    if not auth:
        cmd.append("--no-auth")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPML_CLIENT")}
    env.setdefault("OMP_NUM_THREADS", "1")  # one request at a time per worker: no thread fan-out
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                start_new_session=True, close_fds=True)
    ready = ready_file(root, name, proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.is_file():
            try:
                info = json.loads(ready.read_text())
            except ValueError:  # being written
                time.sleep(0.05)
                continue
            if _wait_listening(host, port, deadline):
                return info | {"pid": proc.pid}
        if proc.poll() is not None:
            raise OpmlError(f"endpoint {name!r} failed to start: {log_tail(log)}",
                            f"see {log}; the previous deployment, if any, keeps serving")
        time.sleep(0.05)
    stop(proc.pid)
    raise OpmlError(f"endpoint {name!r} was not ready within {timeout:.0f} s",
                    f"see {log}, or raise startup_timeout_seconds in deploy.yaml")


def _wait_listening(host: str, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def log_tail(log: Path) -> str:
    """The last error line of a process's log (else its last line), for a one-line failure message."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or ["no output"])[-1].strip()[:300]


def alive(pid: int | None, name: str | None = None) -> bool:
    """True if `pid` runs (and, given a name, is that endpoint's server: guards against PID reuse)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie has exited
        return False
    return name is None or (b"opml.serving.server" in cmdline and name.encode() in cmdline)


def stop(pid: int | None, name: str | None = None, timeout: float = 10.0) -> bool:
    """SIGTERM the process group (all workers), then SIGKILL after `timeout`. True if it was running."""
    if not alive(pid, name):
        return False
    assert pid is not None
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
