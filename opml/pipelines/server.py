"""The control-plane process: `python -m opml.pipelines.server --workspace ROOT --port P`.

On start it marks runs left Running by a crash as Failed (with the reason), then serves the published
pipelines' REST API on 127.0.0.1 and runs the scheduler (a thread ticking twice a second: each tick marks
runs whose executor died Failed, then fires due schedules; fires missed while it was down are coalesced
into one catch-up run). Runs it starts are detached: they survive a control-plane restart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from opml.files import atomic_write

TICK_S = 0.5


def state_file(root: Path) -> Path:
    return root / "run" / "control-plane.json"


def log(msg: str) -> None:
    from opml.workspace.workspace import now_iso

    print(f"{now_iso()} {msg}", flush=True)


class Scheduler(threading.Thread):
    def __init__(self, root: Path) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.root = root
        self.children: list[subprocess.Popen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def spawned(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.children.append(proc)

    def run(self) -> None:
        from opml.errors import OpmlError
        from opml.pipelines import schedule, service
        from opml.workspace.workspace import Workspace

        ws = Workspace.open(self.root)

        def fire(s) -> str:
            run = service.submit(ws, f"{s.pipeline}:{s.version}", s.parameters, experiment=s.experiment,
                                 strict=True, schedule_id=s.id, submitted_by=f"schedule {s.id}")
            service.start(ws, run)
            return run.id

        def sweep() -> None:  # runs whose executor died: Failed, with the reason
            service.sweep(ws, log=log)

        def fire_due() -> None:
            schedule.tick(ws, time.time(), is_active=lambda rid: service.is_active(ws, rid), fire=fire, log=log)

        while not self.stopping.wait(TICK_S):
            for job in (sweep, fire_due):
                try:
                    job()
                except OpmlError as exc:
                    log(f"scheduler: {exc.line()}")
                except Exception as exc:  # keep sweeping and scheduling whatever one tick hit
                    log(f"scheduler error: {type(exc).__name__}: {exc}")
            with self.lock:
                self.children = [p for p in self.children if p.poll() is None]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="opml-control-plane")
    ap.add_argument("--workspace", required=True, type=Path)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)

    from opml.asgi import bind, uvicorn_server
    from opml.pipelines import service
    from opml.pipelines.app import ControlPlane
    from opml.pipelines.runner import spawn
    from opml.workspace.workspace import Workspace, now_iso

    ws = Workspace.open(args.workspace)
    log(f"control plane starting (pid {os.getpid()})")
    service.sweep(ws, log=log)
    scheduler = Scheduler(args.workspace)
    url = f"http://{args.host}:{args.port}"

    def on_run(run) -> None:
        from opml.pipelines.registry import record_runner

        proc = spawn(args.workspace, run.id, popen=True)
        record_runner(ws, run.id, proc.pid)
        scheduler.spawned(proc)

    app = ControlPlane(ws, url, on_run)
    sock = bind(args.host, args.port)
    state = state_file(args.workspace)
    atomic_write(state, json.dumps({"pid": os.getpid(), "host": args.host, "port": args.port, "url": url,
                                    "started_at": now_iso()}))
    scheduler.start()
    server = uvicorn_server(app)
    log(f"control plane serving on {url}")
    try:
        server.run(sockets=[sock])
    finally:
        scheduler.stopping.set()
        log("control plane stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
