"""Managing the control-plane process: start detached, status, stop by PID (like endpoint processes)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from opml import processes
from opml.errors import OpmlError
from opml.pipelines.server import state_file

HOST = "127.0.0.1"
SERVER = "opml.pipelines.server"


def _state(root: Path) -> dict[str, Any]:
    try:
        return json.loads(state_file(root).read_text())
    except (OSError, ValueError):
        return {}


def log_path(root: Path) -> Path:
    return root / "logs" / "control-plane.log"


def status(root: Path) -> dict[str, Any]:
    st = _state(root)
    running = processes.alive(st.get("pid"), SERVER)
    return {"state": "Running" if running else "Stopped", "pid": st.get("pid") if running else None,
            "host": st.get("host", HOST), "port": st.get("port"), "url": st.get("url") if running else None,
            "started_at": st.get("started_at") if running else None, "log": str(log_path(root))}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def start(root: Path, port: int | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Start the control plane unless it runs; keeps its previous port so published URLs stay valid."""
    st = status(root)
    if st["state"] == "Running":
        if port and port != st["port"]:
            raise OpmlError(f"the control plane already runs on port {st['port']}",
                            "run `opml server stop` first to move it")
        return st | {"started": False}
    if not port:
        port = st["port"] if st.get("port") and _port_free(st["port"]) else processes.free_port(HOST)
    elif not _port_free(port):
        raise OpmlError(f"port {port} on {HOST} is in use", "pick another with --port")
    log = log_path(root)
    proc = processes.spawn(SERVER, ["--workspace", str(root), "--host", HOST, "--port", str(port)], log)
    try:
        processes.wait_ready(proc, lambda: _state(root).get("pid") == proc.pid, HOST, port, timeout)
    except processes.Exited:
        raise OpmlError(f"the control plane failed to start: {processes.log_tail(log)}", f"see {log}") from None
    except TimeoutError:
        raise OpmlError(f"the control plane was not ready within {timeout:.0f} s", f"see {log}") from None
    return status(root) | {"started": True}


def stop(root: Path) -> dict[str, Any]:
    st = status(root)
    if st["state"] != "Running":
        return st | {"stopped": False}
    processes.stop(st["pid"], SERVER)
    return status(root) | {"stopped": True}


def require(root: Path) -> dict[str, Any]:
    st = status(root)
    if st["state"] != "Running":
        raise OpmlError("the control plane is not running", "start it with `opml server start`")
    return st


def endpoint_url(root: Path, published_id: str) -> str | None:
    st = status(root)
    port = st.get("port")
    return f"http://{HOST}:{port}/pipelines/{published_id}/runs" if port else None
