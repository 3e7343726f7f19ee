"""Managing the control-plane process: start detached, status, stop by PID (like endpoint processes)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from opml.errors import OpmlError
from opml.pipelines.server import state_file
from opml.serving.process import log_tail

HOST = "127.0.0.1"


def _state(root: Path) -> dict[str, Any]:
    try:
        return json.loads(state_file(root).read_text())
    except (OSError, ValueError):
        return {}


def _is_server(pid: int | None) -> bool:
    from opml.serving.process import alive

    if not alive(pid):
        return False
    try:
        return b"opml.pipelines.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def log_path(root: Path) -> Path:
    return root / "logs" / "control-plane.log"


def status(root: Path) -> dict[str, Any]:
    st = _state(root)
    running = _is_server(st.get("pid"))
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
    from opml.serving.process import free_port

    st = status(root)
    if st["state"] == "Running":
        if port and port != st["port"]:
            raise OpmlError(f"the control plane already runs on port {st['port']}",
                            "run `opml server stop` first to move it")
        return st | {"started": False}
    if not port:
        port = st["port"] if st.get("port") and _port_free(st["port"]) else free_port(HOST)
    elif not _port_free(port):
        raise OpmlError(f"port {port} on {HOST} is in use", "pick another with --port")
    log = log_path(root)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPML_CLIENT")}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "opml.pipelines.server", "--workspace", str(root),
                                 "--host", HOST, "--port", str(port)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, env=env, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OpmlError(f"the control plane failed to start: {log_tail(log)}", f"see {log}")
        if _state(root).get("pid") == proc.pid:
            try:
                with socket.create_connection((HOST, port), timeout=1):
                    return status(root) | {"started": True}
            except OSError:
                pass
        time.sleep(0.05)
    from opml.serving.process import stop as stop_pid

    stop_pid(proc.pid)
    raise OpmlError(f"the control plane was not ready within {timeout:.0f} s", f"see {log}")


def stop(root: Path) -> dict[str, Any]:
    from opml.serving.process import stop as stop_pid

    st = status(root)
    if st["state"] != "Running":
        return st | {"stopped": False}
    stop_pid(st["pid"])
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
