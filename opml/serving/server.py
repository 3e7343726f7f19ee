"""The endpoint server process: `python -m opml.serving.server --workspace ROOT --name NAME ...`.

The process `opml deploy` starts is a supervisor that serves no request itself. It binds one socket
(SO_REUSEPORT, so a redeploy can start beside the old process on the same port) and forks `--workers`
workers that share it: one accept queue, so a connection waiting when a worker dies is taken by another.
Before forking, the supervisor imports what the workers need (numpy, pandas, scikit-learn, the model's
libraries, opml's scoring code, uvicorn: opml.serving.scorer.preload) but never loads the model nor runs
any of it, so no OpenMP thread pool or other runtime state exists to cross a fork; the forks share those
pages. Each worker loads and warms the model after the fork (milliseconds to seconds) and only then serves,
so a model that fails to load never takes traffic: the socket listens once the first worker is ready.

Loading a model takes up to seconds (an ensemble: unpickle, then compile every tree), so once the endpoint
serves the supervisor also forks one standby worker: it loads and warms the model like a worker, reports
"loaded" and waits (SIGUSR1 blocked, in sigwait) without touching the socket. When a serving worker dies the
supervisor promotes the standby at once (SIGUSR1: it builds its app and serves within milliseconds; one still
loading serves as soon as it has loaded, ahead of a fresh fork), logs it, and forks the next standby; without a
standby it forks a replacement (a worker that dies before it is ready is restarted after a growing pause). A
standby that dies is replaced, not counted as a restart; it never holds the endpoint's readiness back, and costs
one worker's private memory. The supervisor keeps the endpoint's state file, the ready file that `opml deploy`
waits for and `opml endpoint show/list` read: its pid and port, the workers expected, ready and starting, the
restarts and the standby. Workers (the standby too) stop when the supervisor dies, even by SIGKILL; SIGTERM
stops them all gracefully and cleans up. Keys are read from the workspace's secrets, never from arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import logging.config
import os
import select
import shutil
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from opml.asgi import LIMITS, LOG_CONFIG, bind, protocol_class, uvicorn_server
from opml.files import atomic_write

STOP_TIMEOUT_S = 10.0  # workers still running this long after SIGTERM are killed
MAX_BACKOFF_S = 30.0  # the longest pause before restarting a worker that keeps dying before it is ready
SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
PROMOTE = signal.SIGUSR1  # supervisor -> standby: serve now

log = logging.getLogger("opml.endpoint")


def ready_file(root: Path, name: str, pid: int) -> Path:
    """The state file of the endpoint process `pid` (its supervisor): written once every worker serves."""
    return root / "run" / "endpoints" / f"{name}.{pid}.ready"


def metrics_dir(root: Path, name: str, parent: int) -> Path:
    """Where the workers of one endpoint process share their counters (see opml.serving.metrics)."""
    return root / "run" / "endpoints" / f"{name}.{parent}.metrics"


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

    logging.Formatter.converter = time.gmtime  # UTC, like the telemetry lines
    logging.config.dictConfig(LOG_CONFIG)
    args.metrics_dir = metrics_dir(args.workspace, args.name, os.getpid())
    _clear_stale(args.workspace)
    # bound, not listening: nothing queues until a worker has loaded the model and starts serving
    sock = bind(args.host, args.port, backlog=LIMITS.backlog, listen=False)
    return Supervisor(args, sock).run()


def _clear_stale(root: Path) -> None:
    """Drop the counter folders and state files of endpoint processes that are gone (killed, so never cleaned)."""
    for path in [*(root / "run" / "endpoints").glob("*.metrics"), *(root / "run" / "endpoints").glob("*.ready")]:
        try:
            os.kill(int(path.name.rsplit(".", 2)[-2]), 0)
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except PermissionError:
            pass


@dataclass
class Worker:
    pid: int
    ready: bool = False  # loaded and serving (a standby: loaded and waiting)


class Supervisor:
    """Forks the workers, restarts the ones that die, keeps the state file; serves nothing itself."""

    def __init__(self, args: argparse.Namespace, sock: socket.socket) -> None:
        self.args = args
        self.sock = sock
        self.pid = os.getpid()
        self.expected = max(1, args.workers)
        self.workers: dict[int, Worker] = {}
        self.restarts = 0
        self.failures = 0  # deaths before ready in a row: the restart pause grows with them
        self.due: list[float] = []  # when to fork the replacements that wait out a pause
        self.standby: Worker | None = None  # the loaded (or loading) worker that waits to replace a dead one
        self.standby_due: float | None = None  # when to fork the next standby, if none runs
        self.standby_failures = 0  # standby deaths before loaded in a row
        self.info: dict = {}  # what the first ready worker reported: inference path, load time
        self.preload_s = 0.0  # how long the supervisor took to import what the workers need
        self.serving = False  # every first worker became ready: the state file exists
        self.stopping = False
        self.t0 = time.monotonic()
        self.state = ready_file(args.workspace, args.name, self.pid)

    # -------------------------------------------------------------------------------- the loop

    def run(self) -> int:
        self.ready_r, self.ready_w = os.pipe()  # workers write one JSON line when they serve
        os.set_blocking(self.ready_r, False)
        self.wake_r, self.wake_w = os.pipe()  # signals wake the loop through this pipe
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        code = 0
        try:
            self._preload()
            for _ in range(0 if self.stopping else self.expected):
                self._fork()
            pending = b""
            while not self.stopping:
                dues = [*self.due, *([self.standby_due] if self.standby_due is not None else [])]
                timeout = max(0.0, min(dues) - time.monotonic()) if dues else None
                readable, _, _ = select.select([self.ready_r, self.wake_r], [], [], timeout)
                if self.wake_r in readable:
                    _read_all(self.wake_r)
                if self.ready_r in readable:
                    pending = self._read_ready(pending + _read_all(self.ready_r))
                if not self._reap():
                    code = 1
                    break
                now = time.monotonic()
                while self.due and min(self.due) <= now and not self.stopping:
                    self.due.remove(min(self.due))
                    self._fork()
                if self.standby_due is not None and self.standby_due <= now and not self.stopping:
                    self._fork_standby()
                    self._write_state()
                if not self.serving and sum(w.ready for w in self.workers.values()) == self.expected:
                    self.serving = True
                    self._fork_standby()  # after the workers: it never holds the endpoint's readiness back
                    self._write_state()
                    log.info("endpoint %s serving %s on http://%s:%d (supervisor pid %d, %d worker(s): %s, loaded in "
                             "%.1f s, %.1f s of it imports)", self.args.name, self.args.model, self.args.host,
                             self.args.port, self.pid, self.expected, self.info.get("inference"),
                             time.monotonic() - self.t0, self.preload_s)
        finally:
            self._shutdown()
        return code

    def _preload(self) -> None:
        """Import what the workers need (not the model) once, here: every fork, restarts too, inherits it."""
        t0 = time.monotonic()
        try:
            from opml.serving.scorer import preload
            from opml.workspace.workspace import Workspace

            ws = Workspace.open(self.args.workspace)
            try:
                failed = preload(ws, self.args.model)
            finally:
                ws.close()  # no database connection crosses a fork
            for name in ("uvloop", "uvicorn", "uvicorn.lifespan.off", "uvicorn.protocols.http.httptools_impl"):
                importlib.import_module(name)
            protocol_class(LIMITS)
        except Exception as exc:  # the workers import for themselves, and report what fails
            failed = [f"{type(exc).__name__}: {exc}"]
        self.preload_s = time.monotonic() - t0
        if failed:
            log.warning("supervisor could not preload %s; the workers import it themselves", ", ".join(failed))

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _read_ready(self, data: bytes) -> bytes:
        """Mark the workers whose ready lines are in `data`; return an unfinished last line."""
        *lines, rest = data.split(b"\n")
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("standby"):  # a standby loaded (one promoted meanwhile reports again when it serves)
                if self.standby is not None and self.standby.pid == msg.get("pid"):
                    self.standby.ready = True
                    self.standby_failures = 0
                    self._write_state()
                continue
            worker = self.workers.get(msg.get("pid"))
            if worker is None:
                continue
            worker.ready = True
            self.failures = 0
            if not self.info:
                self.info = {"inference": msg.get("inference"), "load_s": msg.get("load_s")}
            if self.serving:
                self._write_state()
        return rest

    def _reap(self) -> bool:
        """Collect the workers that ended and restart them; False if one died before the endpoint first served."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            if self.standby is not None and pid == self.standby.pid:
                self._standby_died(status)
                continue
            worker = self.workers.pop(pid, None)
            if worker is None or self.stopping:
                continue
            how = _describe(status)
            if not self.serving:
                log.error("worker %d %s before it was ready: endpoint %s not started", pid, how, self.args.name)
                return False
            self.restarts += 1
            if worker.ready and self.standby is not None:
                new = self._promote()
                log.warning("worker %d %s; standby %d took its place (restart %d)", pid, how, new, self.restarts)
                self._fork_standby()
            elif worker.ready:
                new = self._fork()
                log.warning("worker %d %s; started worker %d in its place (restart %d)", pid, how, new,
                            self.restarts)
            else:  # it could not load the model: pause, longer each time in a row
                self.failures += 1
                pause = min(MAX_BACKOFF_S, 0.5 * 2 ** self.failures)
                self.due.append(time.monotonic() + pause)
                log.warning("worker %d %s before it was ready; starting another in %.0f s (restart %d)", pid, how,
                            pause, self.restarts)
            self._write_state()

    def _promote(self) -> int:
        """Make the standby a serving worker (it serves once loaded, within milliseconds if it is)."""
        standby, self.standby = self.standby, None
        _signal(standby.pid, PROMOTE)
        self.workers[standby.pid] = Worker(standby.pid)  # ready when it reports serving
        return standby.pid

    def _fork_standby(self) -> None:
        self.standby_due = None
        if not self.stopping and self.standby is None:
            self.standby = Worker(self._fork(standby=True))

    def _standby_died(self, status: int) -> None:
        """Replace a standby that died (not a restart of a serving worker): at once if it had loaded."""
        standby, self.standby = self.standby, None
        if self.stopping:
            return
        pause = 0.0
        if not standby.ready:  # it could not load the model: pause, longer each time in a row
            self.standby_failures += 1
            pause = min(MAX_BACKOFF_S, 0.5 * 2 ** self.standby_failures)
        self.standby_due = time.monotonic() + pause
        log.warning("standby worker %d %s; starting another standby in %.0f s", standby.pid, _describe(status), pause)
        self._write_state()

    def _fork(self, standby: bool = False) -> int:
        # signals wait until the child has its own handlers (a SIGTERM in between would reach the supervisor's);
        # PROMOTE stays blocked in a standby, so one sent while it loads waits for its sigwait
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS | {PROMOTE})
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            code = 1
            try:
                code = self._worker(standby)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS | {PROMOTE})
        if not standby:
            self.workers[pid] = Worker(pid)
        return pid

    # -------------------------------------------------------------------------------- the state file

    def _write_state(self) -> None:
        if not self.serving:
            return
        workers = self.workers.values()
        atomic_write(self.state, json.dumps({
            "pid": self.pid, "port": self.args.port, "inference": self.info.get("inference"),
            "load_s": self.info.get("load_s"),
            "workers": {"expected": self.expected, "ready": sorted(w.pid for w in workers if w.ready),
                        "starting": sorted(w.pid for w in workers if not w.ready), "restarts": self.restarts,
                        "standby": self.standby and {"pid": self.standby.pid, "loaded": self.standby.ready}}}))

    def _shutdown(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after STOP_TIMEOUT_S), then remove the state and counters."""
        self.stopping = True
        if self.standby is not None:
            self.workers[self.standby.pid] = self.standby  # stopped and waited for like the workers
            self.standby = None
        for pid in self.workers:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.workers and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.workers.pop(pid, None)
            else:
                select.select([self.wake_r], [], [], 0.05)
                _read_all(self.wake_r)
        for pid in self.workers:
            _signal(pid, signal.SIGKILL)
        self.state.unlink(missing_ok=True)
        shutil.rmtree(self.args.metrics_dir, ignore_errors=True)
        self.sock.close()

    # -------------------------------------------------------------------------------- in a worker

    def _worker(self, standby: bool = False) -> int:
        """Load the model, then serve on the shared socket until SIGTERM (or the supervisor's death); a standby
        waits for PROMOTE after loading."""
        signal.set_wakeup_fd(-1)
        for fd in (self.ready_r, self.wake_r, self.wake_w):
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler in place before run(): exit
        # normally from there (also while the model loads), so the clean-up below runs
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS if standby else SIGNALS | {PROMOTE})
        _die_with(self.pid)
        return serve(self.args, self.sock, self.ready_w, standby=standby)


def serve(args: argparse.Namespace, sock: socket.socket, ready_fd: int, standby: bool = False) -> int:
    """One worker: load and warm the model, then serve the shared socket; report readiness on `ready_fd`.
    A standby reports when it has loaded, then waits for PROMOTE (or SIGTERM) before it touches the socket."""
    from opml.serving.app import ScoringApp
    from opml.serving.keys import KeyChecker, key_file
    from opml.serving.openapi import build
    from opml.serving.scorer import load_scorer
    from opml.serving.telemetry import Telemetry, control_file
    from opml.serving.watch import FileWatch
    from opml.workspace.workspace import Workspace

    t0 = time.monotonic()
    ws = Workspace.open(args.workspace)
    try:
        scorer = load_scorer(ws, args.model)
        secrets = ws.secrets_dir
    finally:
        ws.close()
    pid = os.getpid()
    load_s = round(time.monotonic() - t0, 3)
    if standby and not _promoted(ready_fd, pid, scorer.model_ref, load_s):
        return 0
    # cheap from here (milliseconds): a promoted standby creates its counters file only now
    watch = FileWatch()  # the keys file and the telemetry switch, re-read when they change (opml.serving.watch)
    keys_path = key_file(secrets, args.name)
    keys = None if args.no_auth else KeyChecker(keys_path, watch.watch(keys_path))
    url = f"http://{args.host}:{args.port}"
    openapi = json.dumps(build(scorer.model_ref, scorer.columns, scorer.classes, scorer.example,
                               auth_enabled=keys is not None, server_url=url)).encode()
    telemetry = Telemetry(args.workspace, args.name, scorer.model_ref,
                          watch.watch(control_file(args.workspace, args.name)))
    app = ScoringApp(scorer, keys=keys, max_request_bytes=args.max_request_bytes, openapi=openapi,
                     telemetry=telemetry, metrics_dir=args.metrics_dir)

    def started() -> None:  # in the worker's event loop, once it listens
        watch.attach(asyncio.get_running_loop())
        os.write(ready_fd, json.dumps({"pid": pid, "inference": scorer.inference, "load_s": load_s}).encode() + b"\n")
        log.info("worker %d serving %s (%s, loaded in %.1f s)", pid, scorer.model_ref, scorer.inference, load_s)

    server = uvicorn_server(app, on_started=started)
    try:
        server.run(sockets=[sock])
    finally:
        watch.close()
        telemetry.close()
        app.metrics.close()
    return 0


def _promoted(ready_fd: int, pid: int, model_ref: str, load_s: float) -> bool:
    """A standby: report "loaded", then wait; True once PROMOTE arrives, False on SIGTERM (shutdown)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # taken by sigwait below, not by its handler
    os.write(ready_fd, json.dumps({"pid": pid, "standby": True, "load_s": load_s}).encode() + b"\n")
    log.info("standby worker %d loaded %s in %.1f s; waiting to replace a worker", pid, model_ref, load_s)
    if signal.sigwait({PROMOTE, signal.SIGTERM}) != PROMOTE:
        return False
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    return True


def _die_with(parent: int) -> None:
    """A worker stops when the process that forked it dies (even by SIGKILL): no orphan keeps the port."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"was killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"was killed by signal {sig}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


if __name__ == "__main__":
    sys.exit(main())
