"""The endpoint server process: `python -m opml.serving.server --workspace ROOT --name NAME ...`.

It loads and warms the model *before* binding, so a model that fails to load never takes traffic;
binds with SO_REUSEPORT, so a redeploy can start beside the old process on the same port; then
writes a ready file that `opml deploy` waits for. Keys are read from the workspace's secrets, never
from arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from opml.asgi import LOG_CONFIG, bind, uvicorn_server


def ready_file(root: Path, name: str, pid: int) -> Path:
    return root / "run" / "endpoints" / f"{name}.{pid}.ready"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="opml-endpoint")
    ap.add_argument("--workspace", required=True, type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-request-bytes", type=int, default=1_048_576)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-auth", action="store_true")
    args = ap.parse_args(argv)

    parent = os.getpid()
    args.metrics_dir = metrics_dir(args.workspace, args.name, parent)
    _clear_stale_metrics(args.workspace)
    for _ in range(args.workers - 1):  # fork before loading anything: OpenMP state must not cross a fork
        if os.fork() == 0:
            _die_with(parent)
            break
    try:
        return serve(args)
    finally:
        if os.getpid() == parent:
            shutil.rmtree(args.metrics_dir, ignore_errors=True)


def metrics_dir(root: Path, name: str, parent: int) -> Path:
    """Where the workers of one endpoint process share their counters (see opml.serving.metrics)."""
    return root / "run" / "endpoints" / f"{name}.{parent}.metrics"


def _clear_stale_metrics(root: Path) -> None:
    """Drop the counter folders of endpoint processes that are gone (killed, so never cleaned up)."""
    for d in (root / "run" / "endpoints").glob("*.metrics"):
        try:
            os.kill(int(d.name.rsplit(".", 2)[-2]), 0)
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def _die_with(parent: int) -> None:
    """A worker stops when the process that forked it dies (even by SIGKILL): no orphan keeps the port."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def serve(args: argparse.Namespace) -> int:
    from opml.serving.app import ScoringApp
    from opml.serving.keys import KeyChecker, key_file
    from opml.serving.openapi import build
    from opml.serving.scorer import load_scorer
    from opml.serving.telemetry import Telemetry
    from opml.workspace.workspace import Workspace

    t0 = time.monotonic()
    logging.Formatter.converter = time.gmtime  # UTC, like the telemetry lines
    logging.config.dictConfig(LOG_CONFIG)
    ws = Workspace.open(args.workspace)
    scorer = load_scorer(ws, args.model)
    keys = None if args.no_auth else KeyChecker(key_file(ws.secrets_dir, args.name))
    url = f"http://{args.host}:{args.port}"
    openapi = json.dumps(build(scorer.model_ref, scorer.columns, scorer.classes, scorer.example,
                               auth_enabled=keys is not None, server_url=url)).encode()
    telemetry = Telemetry(args.workspace, args.name, scorer.model_ref)
    app = ScoringApp(scorer, keys=keys, max_request_bytes=args.max_request_bytes, openapi=openapi,
                     telemetry=telemetry, metrics_dir=getattr(args, "metrics_dir", None))
    ws.close()

    sock = bind(args.host, args.port)
    pid = os.getpid()
    ready = ready_file(args.workspace, args.name, pid)
    ready.parent.mkdir(parents=True, exist_ok=True)

    server = uvicorn_server(app, backlog=2048)  # handles SIGTERM/SIGINT with a graceful shutdown
    ready.write_text(json.dumps({"pid": pid, "port": args.port, "inference": scorer.inference,
                                 "load_s": round(time.monotonic() - t0, 3)}))
    logging.getLogger("opml.endpoint").info(
        "endpoint %s serving %s on %s (pid %d, %s, loaded in %.1f s)", args.name, scorer.model_ref, url, pid,
        scorer.inference, time.monotonic() - t0)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler in place before run():
    # exit normally from there, so the clean-up below runs (with the default handler, it never did)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run(sockets=[sock])
    finally:
        ready.unlink(missing_ok=True)
        telemetry.close()
        app.metrics.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
