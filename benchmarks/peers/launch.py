"""Start, probe and stop the servers benchmarks/serving.py measures beside opml's endpoint, all on 127.0.0.1.

Stacks (the do-nothing app of noop_app.py, or Starlette's): "uvicorn" under opml's own supervisor and server
settings (noop_supervised.py), "starlette" under uvicorn's CLI, "granian", "socketify". Peers (the registered
model's pipeline, POST /score with the endpoint's body): "bentoml", "mlserver"; and `mlflow models serve`.
Each server runs in its own session (process group), its output in a log file, and stops by its group's id.
A stack or peer that is not installed is reported with the command that installs it, and skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = "pip install 'opml[bench]'"
# what a stack or peer imports, and how to install it
STACKS = {"uvicorn": ("uvicorn", "pip install opml"), "direct": ("uvicorn", "pip install opml"),
          "starlette": ("starlette", "pip install starlette"),
          "granian": ("granian", BENCH), "socketify": ("socketify", "pip install socketify")}
PEERS = {"bentoml": ("bentoml", BENCH),
         # MLServer pins older starlette, fastapi, protobuf and OpenTelemetry than opml's: a venv of its own
         # (and MLServer 1.7 fails on uvloop >= 0.22)
         "mlserver": ("mlserver", "it conflicts with opml's dependencies: python -m venv V && V/bin/pip install "
                                  "mlserver 'uvloop<0.22' -e .; then --peers-python V/bin/python")}


@dataclass
class Server:
    """A server process group started here: its label, scoring URL and log."""

    label: str
    url: str
    proc: subprocess.Popen
    log: Path
    body: bytes | None = None  # the 1-row body when it is not the endpoint's (mlflow's dataframe_records)
    notes: list[str] = field(default_factory=list)

    def processes(self) -> list[int]:
        """The server's processes: the one started and all its descendants."""
        return tree(self.proc.pid)

    def stop(self) -> None:
        stop(self.proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def installed(module: str, python: str = sys.executable) -> bool:
    """Whether `python` imports `module` (this interpreter: looked up without importing it)."""
    if python == sys.executable:
        return importlib.util.find_spec(module) is not None
    probe = subprocess.run([python, "-c", f"import {module}, opml.automl.model"], capture_output=True, timeout=120)
    return probe.returncode == 0


def start(label: str, cmd: list[str], url: str, logs: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Server:
    """Start `cmd` in a new session, output to logs/<label>.log, with OMP_NUM_THREADS=1 like the endpoint."""
    log = logs / f"{label.replace(' ', '_').replace('/', '_')}.log"
    # `mlflow models serve` execs `uvicorn` through bash: the venv's bin folder must be on PATH.
    path = f"{Path(cmd[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                start_new_session=True,
                                env=os.environ | {"PATH": path, "OMP_NUM_THREADS": "1"} | (env or {}))
    return Server(label, url, proc, log)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it after 20 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


def wait_ready(server: Server, body: bytes, headers: dict[str, str], timeout: float = 180) -> None:
    """Wait until the server answers `body` with 200; raise with its log's tail if it dies or never does."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        try:
            if requests.post(server.url, data=body, headers=headers, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    tail = server.log.read_text(errors="replace").strip().splitlines()[-5:]
    server.stop()
    raise RuntimeError(f"{server.label} at {server.url} did not answer 200 within {timeout:.0f} s: "
                       + " | ".join(tail))


# ---------------------------------------------------------------------------------------------- the stacks

def stack(name: str, workers: int, logs: Path) -> Server:
    """The do-nothing app on stack `name` (STACKS) with `workers` worker processes."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/score"
    py = sys.executable
    if name == "uvicorn":  # opml's supervisor, uvicorn settings and HTTP protocol: only the app differs
        cmd = [py, str(HERE / "noop_supervised.py"), "--port", str(port), "--workers", str(workers)]
        return start("do-nothing (opml stack)", cmd, url, logs)
    if name == "direct":  # the same, with POST /score a direct route of opml's protocol, as the endpoint has it
        cmd = [py, str(HERE / "noop_supervised.py"), "--port", str(port), "--workers", str(workers), "--direct"]
        return start("do-nothing, direct route", cmd, url, logs)
    if name == "starlette":  # uvicorn's own CLI and settings, as most apps run it
        cmd = [py, "-m", "uvicorn", "starlette_app:app", "--host", "127.0.0.1", "--port", str(port), "--loop",
               "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning", "--workers", str(workers)]
        return start("do-nothing starlette", cmd, url, logs, env={"PYTHONPATH": str(HERE)})
    if name == "granian":
        cmd = [str(Path(py).parent / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--loop", "uvloop", "--http", "1", "--no-ws", "--no-access-log",
               "--log-level", "warning", "--backlog", "2048", "noop_app:app"]
        return start("do-nothing granian", cmd, url, logs, env={"PYTHONPATH": str(HERE)})
    if name == "socketify":
        cmd = [py, str(HERE / "socketify_app.py"), str(port), str(workers)]
        return start("do-nothing socketify", cmd, url, logs)
    raise ValueError(f"unknown stack {name!r}")


# ---------------------------------------------------------------------------------------------- the peers

def peer(name: str, python: str, model_pkl: Path, workers: int, logs: Path) -> Server:
    """The registered model (its pickle) on peer `name` (PEERS), run by `python`, with `workers` workers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/score"
    if name == "bentoml":
        home = logs / "bentoml-home"
        home.mkdir(exist_ok=True)
        cmd = [python, "-m", "bentoml", "serve", "bentoml_service:Opml", "--working-dir", str(HERE), "--host",
               "127.0.0.1", "--port", str(port)]
        env = {"OPML_BENCH_MODEL": str(model_pkl), "OPML_BENCH_WORKERS": str(workers), "BENTOML_HOME": str(home),
               "BENTOML_DO_NOT_TRACK": "True", "PYTHONPATH": str(HERE)}
        return start("bentoml", cmd, url, logs, env=env, cwd=HERE)
    if name == "mlserver":
        models = logs / "mlserver-models"
        (models / "opml").mkdir(parents=True, exist_ok=True)
        (models / "opml" / "model-settings.json").write_text(json.dumps({
            "name": "opml", "implementation": "mlserver_runtime.OpmlRuntime", "parameters": {"uri": str(model_pkl)}}))
        cmd = [str(Path(python).parent / "mlserver"), "start", str(models)]
        env = {"MLSERVER_HOST": "127.0.0.1", "MLSERVER_HTTP_PORT": str(port), "MLSERVER_GRPC_PORT": str(free_port()),
               "MLSERVER_METRICS_PORT": str(free_port()), "MLSERVER_PARALLEL_WORKERS": str(workers),
               "MLSERVER_DEBUG": "false", "PYTHONPATH": str(HERE)}
        return start("mlserver", cmd, url, logs, env=env, cwd=HERE)
    raise ValueError(f"unknown peer {name!r}")


def mlflow_serve(model_path: str, workers: int, logs: Path) -> Server:
    """`mlflow models serve` on the registered model (MLflow's own scoring server)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_path, "--env-manager", "local", "--host",
           "127.0.0.1", "-p", str(port), "-w", str(workers)]
    return start("mlflow models serve", cmd, f"http://127.0.0.1:{port}/invocations", logs)


# ---------------------------------------------------------------------------------------------- processes, memory

def tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def children(pid: int) -> list[int]:
    """The direct child processes of `pid`."""
    return [c for c in tree(pid) if c != pid and _ppid(c) == pid]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes `pids` have used so far (0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def memory(pid: int) -> dict[str, float]:
    """A process's memory in MB from /proc/PID/smaps_rollup: rss, pss and uss (private: clean + dirty)."""
    kb: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, value = line.split(":", 1)
            kb[key] = int(value.split()[0])
    except (OSError, ValueError):
        return {}
    return {"rss": kb.get("Rss", 0) / 1024, "pss": kb.get("Pss", 0) / 1024,
            "uss": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024}
