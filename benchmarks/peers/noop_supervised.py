"""The do-nothing app under opml's own endpoint supervisor and server settings: only the app differs.

    python benchmarks/peers/noop_supervised.py --port PORT --workers N [--direct]

opml.serving.server's Supervisor binds the socket (not listening until a worker serves) and forks the workers;
each worker runs noop_app.app in opml.asgi.uvicorn_server: uvloop, opml's httptools protocol enforcing LIMITS,
no access log, no lifespan; with --direct, noop_app.direct_app (POST /score as a direct route, as the endpoint
has it). Its state file goes to a temporary folder, removed at exit. Stop it with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging.config
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import noop_app

from opml.asgi import LIMITS, LOG_CONFIG, bind, protocol_class, uvicorn_server
from opml.serving import server


def serve(args: argparse.Namespace, sock: socket.socket, ready_fd: int, standby: bool = False) -> int:
    """One worker, as opml.serving.server.serve runs it, with the do-nothing app in place of the scoring app
    (the standby, too, waits to be promoted as the endpoint's does)."""
    pid = os.getpid()
    if standby and not server._promoted(ready_fd, pid, "do-nothing", 0.0):
        return 0

    def started() -> None:
        os.write(ready_fd, json.dumps({"pid": pid, "inference": "do-nothing", "load_s": 0.0}).encode() + b"\n")

    uvicorn_server(args.app, on_started=started).run(sockets=[sock])
    return 0


class NoopSupervisor(server.Supervisor):
    def _preload(self) -> None:  # no model: only what the endpoint's supervisor imports for the server
        import uvicorn.protocols.http.httptools_impl  # noqa: F401
        import uvloop  # noqa: F401

        protocol_class(LIMITS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--direct", action="store_true", help="answer POST /score as a direct route")
    cli = ap.parse_args()
    logging.Formatter.converter = time.gmtime
    logging.config.dictConfig(LOG_CONFIG)
    with tempfile.TemporaryDirectory(prefix="opml-noop-") as tmp:
        root = Path(tmp)
        args = argparse.Namespace(app=noop_app.direct_app if cli.direct else noop_app.app,  # what workers serve
                                  workspace=root, name="noop", model="do-nothing", host=cli.host, port=cli.port,
                                  workers=cli.workers, metrics_dir=root / "metrics", no_auth=True)
        sock = bind(cli.host, cli.port, backlog=LIMITS.backlog, listen=False)
        server.serve = serve  # what Supervisor._worker runs in each forked worker
        return NoopSupervisor(args, sock).run()


if __name__ == "__main__":
    sys.exit(main())
