"""Fault injection: what opml does when its processes are killed or its clients misbehave, one table per run.

Rows (targets from issue 11): kill -9 one endpoint worker during `ab -r -n 20000 -c 8` (failed requests <= 8,
a replacement within 1 s, show Degraded then Healthy, unless serving again within 0.1 s); a 100,000-request
soak at -c 16 (0 failed, worker RSS growth < 5 MB, flat fds); slowloris with 300 connections (valid requests
still served, none held past the read timeout); kill -9 of the endpoint's supervisor (workers follow it, show
Stopped, restart serves again); kill -9 of `opml train` and of a pipeline executor (time until `opml runs list`
/ `opml pipeline show` say Failed). Everything runs on 127.0.0.1 in a workspace of its own and stops what it starts.

    python benchmarks/faults.py                            # trains a small model in a temp workspace first
    python benchmarks/faults.py --workspace /tmp/benchws   # works on a copy of that workspace (left untouched)
    python benchmarks/faults.py --workspace WS --skip-runs --soak-n 20000
    python benchmarks/faults.py --workspace WS --only worker            # one row (repeat --only for more)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from opml.processes import group_members  # noqa: E402  (light: stdlib only)

NAME = "faults"
DETECT_S = 60.0  # how long to wait for a killed run to show Failed
ENDPOINT_ROWS = ("worker", "soak", "slowloris", "supervisor")  # --only names, in the order they run
RUN_ROWS = ("train", "executor")


class Bench:
    """The workspace copy, the CLI, and the processes this run started (stopped at the end)."""

    def __init__(self, root: Path, data: Path) -> None:
        self.root = root
        self.data = data
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OPML_")} | {
            "OPML_WORKSPACE": str(root), "OPML_DATA": str(data)}
        self.started: list[int] = []  # process groups to stop

    def cli(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "opml", "--configs", str(REPO / "configs"), *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"opml {' '.join(args)}: {(proc.stderr or proc.stdout).strip()[-300:]}")
        return proc

    def json(self, *args: str, timeout: float = 600) -> object:
        return json.loads(self.cli(*args, "--json", timeout=timeout).stdout)

    def spawn(self, args: list[str], log: Path) -> subprocess.Popen:
        with log.open("ab") as out:
            proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.started.append(proc.pid)
        return proc

    def stop_all(self) -> None:
        for pgid in self.started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------ process probes




def with_args(*marks: str) -> list[int]:
    """Processes whose command line holds every one of `marks` (e.g. a module and a run id)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if all(m.encode() in args for m in marks):
            found.append(int(cmdline.parent.name))
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(pred: Callable[[], object], timeout: float, step: float = 0.01) -> tuple[object, float]:
    """(the first true value of pred(), seconds it took), or (None, timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = pred()
        if value:
            return value, time.monotonic() - t0
        time.sleep(step)
    return None, timeout


def ab(url: str, payload: Path, key: str, n: int, c: int) -> subprocess.Popen:
    return subprocess.Popen(["ab", "-r", "-q", "-n", str(n), "-c", str(c), "-s", "30", "-p", str(payload), "-T",
                             "application/json", "-H", f"Authorization: Bearer {key}", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ab_result(proc: subprocess.Popen, timeout: float = 900) -> dict:
    from opml.bench.ab import parse

    out, err = proc.communicate(timeout=timeout)
    if "Requests per second" not in out:
        raise RuntimeError(f"ab: {err.strip()[-200:]}")
    return parse(out)  # its unanswered_requests counts each failed request once (ab counts a reset one thrice)


# ------------------------------------------------------------------------------------------ the endpoint rows


class Endpoint:
    def __init__(self, bench: Bench, model: str, payload: Path) -> None:
        self.bench = bench
        self.payload = payload
        ep = bench.json("deploy", "--model", model, "--name", NAME)
        self.url, self.port = ep["scoring_uri"], ep["port"]
        self.key = bench.json("endpoint", "keys", NAME)["primaryKey"]

    def show(self) -> dict:
        return self.bench.json("endpoint", "show", NAME)

    def serving(self, pid: int) -> list[int]:
        """The ready workers of supervisor `pid`, from its state file (what `endpoint show` reads)."""
        from opml.serving.process import alive, state_info

        info = state_info(self.bench.root, NAME, pid) or {}
        return [p for p in info.get("workers", {}).get("ready", []) if alive(p, NAME)]


def describe(shown: dict) -> str:
    from opml.serving.endpoints import workers_line

    return f"{shown['state']} ({workers_line(shown.get('workers'))})"


QUICK_S = 0.1  # a worker replaced this fast needs no Degraded look (see kill_one_worker)


def kill_one_worker(ep: Endpoint) -> tuple[str, str, bool]:
    shown = ep.show()
    sup, workers = shown["pid"], shown["workers"]["pids"]
    victim = workers[0]
    load = ab(ep.url, ep.payload, ep.key, 20_000, 8)
    time.sleep(2.0)
    before = set(group_members(sup))
    seen: list[int] = []  # serving workers at each look at the state file (what `endpoint show` counts)

    def back() -> bool:
        serving = ep.serving(sup)
        seen.append(len(serving))
        return len(serving) == len(workers) and victim not in serving

    # one loop from the kill on, looking at the state file every millisecond or so (a standby serves within tens
    # of milliseconds: a first look only once the replacement fork shows up can miss the Degraded window); the
    # slower process scan only every 10th look
    new: set[int] = set()
    forked = serving_s = 0.0

    def step() -> bool:
        nonlocal new, forked, serving_s
        serving = back()
        if not new and (serving or len(seen) % 10 == 1):
            new = set(group_members(sup)) - before
            forked = time.monotonic() - t0
        if serving and not serving_s:
            serving_s = time.monotonic() - t0
        return serving and bool(new)

    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    if not wait_for(step, 120.0, 0.001)[0]:
        serving_s = serving_s or 120.0
    result = ab_result(load)
    after = ep.show()
    log = (ep.bench.root / "logs" / "endpoints" / f"{NAME}.log").read_text()
    logged = sum(f"worker {victim} " in ln and "restart" in ln for ln in log.splitlines())
    failed = result["unanswered_requests"] + result["non_2xx_responses"]
    low = min(seen)
    text = (f"{failed} of {result['complete_requests']} failed (ab's count: {result['failed_requests']}); "
            f"replacement forked in {forked * 1000:.0f} ms, "
            f"serving {serving_s * 1000:.0f} ms after the kill; show during: "
            f"{'Degraded' if low < len(workers) else 'Healthy'} ({low}/{len(workers)} alive"
            f"{'' if low < len(workers) else ': serving again before a look could see it'}), "
            f"after: {describe(after)}; {logged} restart line logged")
    # Degraded must show while a worker is missing; a standby back within QUICK_S can be missed by this process's
    # looks (it shares 2 busy cores with ab and the workers), and then there was nothing to show
    ok = bool(new) and failed <= 8 and serving_s < 1.0 and (low < len(workers) or serving_s < QUICK_S) \
        and after["state"] == "Healthy" and after["workers"]["restarts"] == 1 and logged == 1
    target = f"failed <= 8, serving again < 1 s, Degraded -> Healthy (or back < {QUICK_S * 1000:.0f} ms), logged"
    return text, target, ok


def soak(ep: Endpoint, n: int) -> tuple[str, str, bool]:
    shown = ep.show()
    workers = shown["workers"]["pids"]
    ab_result(ab(ep.url, ep.payload, ep.key, 5_000, 16))  # warm-up
    rss0 = {p: rss_mb(p) for p in workers}
    fds0 = {p: fds(p) for p in workers}
    result = ab_result(ab(ep.url, ep.payload, ep.key, n, 16), timeout=3600)
    growth = max(rss_mb(p) - rss0[p] for p in workers)
    fds1 = {p: fds(p) for p in workers}
    failed = result["failed_requests"] + result["non_2xx_responses"]
    text = (f"{failed} of {result['complete_requests']} failed, {result['requests_per_second']:.0f} req/s; "
            f"worker RSS growth max {growth:+.1f} MB; fds {sorted(fds0.values())} -> {sorted(fds1.values())}")
    return text, "0 failed, RSS growth < 5 MB, fds flat", failed == 0 and growth < 5 and fds1 == fds0


def slowloris(ep: Endpoint, conns: int = 300) -> tuple[str, str, bool]:
    from opml.asgi import LIMITS, SWEEP_S

    socks: dict[socket.socket, float] = {}
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", ep.port), timeout=5)
        s.sendall(b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        s.setblocking(False)
        socks[s] = time.monotonic()
    load = ab(ep.url, ep.payload, ep.key, 2_000, 4)
    held: list[float] = []
    answered = 0
    last_drip = time.monotonic()
    deadline = time.monotonic() + 30
    while socks and time.monotonic() < deadline:
        readable, _, _ = select.select(list(socks), [], [], 0.05)
        for s in readable:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 408"):
                answered += 1
            if not data or b"\r\n\r\n" in data:
                held.append(time.monotonic() - socks.pop(s))
                s.close()
        if time.monotonic() - last_drip >= 1.0:  # one more header byte a second, never finishing
            last_drip = time.monotonic()
            for s in list(socks):
                with contextlib.suppress(OSError):
                    s.send(b"a")
    for s in socks:
        s.close()
    result = ab_result(load)
    failed = result["failed_requests"] + result["non_2xx_responses"]
    limit = LIMITS.head_timeout + SWEEP_S + 0.5
    text = (f"valid: {result['complete_requests'] - failed} of {result['complete_requests']} OK "
            f"(p99 {result['latency_ms'].get('99', 0):.0f} ms); slow: {len(held)} of {conns} closed by the server "
            f"({answered} with 408), longest held {max(held, default=0):.1f} s, {len(socks)} still open after 30 s")
    ok = failed == 0 and len(held) == conns and max(held, default=99) <= limit
    return text, f"valid served; none held past the {LIMITS.head_timeout:g} s read timeout (+{SWEEP_S:g} s check)", ok


def kill_supervisor(ep: Endpoint) -> tuple[str, str, bool]:
    shown = ep.show()
    sup = shown["pid"]
    os.kill(sup, signal.SIGKILL)
    _, gone = wait_for(lambda: not group_members(sup), 30.0, 0.01)
    stopped = ep.show()["state"]
    t0 = time.monotonic()
    ep.bench.json("endpoint", "restart", NAME)
    restart_s = time.monotonic() - t0
    again = ep.show()
    text = (f"workers gone {gone:.2f} s after it (PR_SET_PDEATHSIG); show: {stopped}; `opml endpoint restart` "
            f"serving again in {restart_s:.1f} s: {describe(again)}")
    return text, "no orphan worker, Stopped, restart serves", not group_members(sup) and stopped == "Stopped" and \
        again["state"] == "Healthy"


# ------------------------------------------------------------------------------------------ the run rows


def kill_train(bench: Bench) -> tuple[str, str, bool]:
    experiment = f"faults-train-{os.getpid()}"
    proc = bench.spawn([sys.executable, "-m", "opml", "--configs", str(REPO / "configs"), "train", "--data",
                        str(bench.data), "--time-budget", "900", "--max-trials", "1000", "--experiment", experiment],
                       bench.root / "faults-train.log")

    def run_of(status: str | None = None) -> dict | None:
        for r in bench.json("runs", "list", "--experiment", experiment):
            if status is None or r["status"] == status:
                return r
        return None

    run, _ = wait_for(lambda: run_of("Running"), 300.0, 0.5)
    if not run:
        raise RuntimeError("the train run never showed Running")
    time.sleep(3.0)  # a few trials in
    os.kill(proc.pid, signal.SIGKILL)
    t0 = time.monotonic()
    proc.wait()  # reaped at once, as a shell would
    failed, _ = wait_for(lambda: run_of("Failed"), DETECT_S, 0.25)
    took = time.monotonic() - t0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind
    if not failed:
        now = run_of() or {}
        return (f"run {run['id']} still {now.get('status')} {DETECT_S:.0f} s after kill -9",
                "Failed on the next read", False)
    return (f"run {run['id']} Failed {took:.1f} s after kill -9 (`opml runs list`): {failed.get('error')}",
            "Failed on the next read", True)


def kill_executor(bench: Bench) -> tuple[str, str, bool]:
    bench.json("server", "start")
    try:
        bench.cli("pipeline", "create", "--file", str(REPO / "configs" / "pipeline.yaml"))
        run = bench.json("pipeline", "run", "bankmarketing-train", "--param", "time_budget=900", "--param",
                         "max_trials=1000", "--param", "dataset_version=1", "--experiment",
                         f"faults-pipeline-{os.getpid()}")
        run_id = run.get("Id") or run.get("id")

        def show() -> dict:
            return bench.json("pipeline", "show", run_id)

        def automl_running() -> bool:
            doc = show()
            steps = doc.get("steps") or doc.get("Steps") or []
            return any((s.get("step") or s.get("Name")) == "automl" and (s.get("status") or s.get("Status"))
                       == "Running" for s in steps)

        if not wait_for(automl_running, 300.0, 0.5)[0]:
            raise RuntimeError(f"pipeline run {run_id} never reached a running automl step")
        time.sleep(3.0)
        executors = with_args("opml.pipelines.runner", run_id)
        if not executors:
            raise RuntimeError(f"no executor process found for {run_id}")
        os.kill(executors[0], signal.SIGKILL)

        def failed() -> dict | None:
            doc = show()
            run_doc = doc.get("run", doc)
            status = run_doc.get("status") or run_doc.get("Status")
            return run_doc if status == "Failed" else None

        done, took = wait_for(failed, DETECT_S, 0.25)
        for pid in with_args(run_id):  # the step processes it may have left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not done:
            return (f"run {run_id} not Failed {DETECT_S:.0f} s after kill -9 of executor {executors[0]}",
                    "Failed on the next read", False)
        return (f"run {run_id} Failed {took:.1f} s after kill -9 of executor {executors[0]} (`opml pipeline show`): "
                f"{done.get('error') or done.get('Error')}", "Failed on the next read", True)
    finally:
        bench.cli("server", "stop", check=False)


# ------------------------------------------------------------------------------------------ main


class _Skip(Exception):
    """No endpoint row wanted (--skip-endpoint, or --only with run rows)."""


def prepare(args: argparse.Namespace, tmp: Path) -> tuple[Bench, str]:
    from opml.data.reference import reference_csv
    from opml.errors import OpmlError

    try:
        data = reference_csv(REPO, env_var="OPML_DATA")
    except OpmlError as exc:
        raise SystemExit(exc.line()) from None
    root = tmp / "ws"
    if args.workspace:
        shutil.copytree(args.workspace, root, ignore=shutil.ignore_patterns("run", "logs"))
        bench = Bench(root, data)
        return bench, args.model
    bench = Bench(root, data)
    bench.cli("auth")
    print(f"training a model ({args.train_budget:.0f} s budget) ...", flush=True)
    bench.cli("train", "--data", str(data), "--time-budget", str(args.train_budget), "--max-trials", "8",
              timeout=args.train_budget * 4 + 120)
    return bench, "bankmarketing-automl:1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, help="a trained workspace, copied first (default: a temp one)")
    ap.add_argument("--model", default="bankmarketing-automl:1")
    ap.add_argument("--train-budget", type=float, default=60.0, help="seconds, when training a model here")
    ap.add_argument("--soak-n", type=int, default=100_000)
    ap.add_argument("--skip-runs", action="store_true", help="leave out the kill -9 train / executor rows")
    ap.add_argument("--skip-endpoint", action="store_true", help="leave out the endpoint rows")
    ap.add_argument("--only", action="append", choices=ENDPOINT_ROWS + RUN_ROWS, metavar="ROW",
                    help=f"run only this row (repeatable): {', '.join(ENDPOINT_ROWS + RUN_ROWS)}")
    args = ap.parse_args()
    wanted = set(args.only or ENDPOINT_ROWS + RUN_ROWS)
    if args.skip_endpoint:
        wanted -= set(ENDPOINT_ROWS)
    if args.skip_runs:
        wanted -= set(RUN_ROWS)
    if not shutil.which("ab"):
        raise SystemExit("Apache Bench (ab) is missing: apt-get install apache2-utils")

    rows: list[tuple[str, str, str, str]] = []

    def row(key: str, label: str, fn: Callable[[], tuple[str, str, bool]]) -> None:
        if key not in wanted:
            return
        print(f"... {label}", flush=True)
        try:
            text, target, ok = fn()
        except Exception as exc:  # one broken row does not hide the others
            text, target, ok = f"could not measure: {type(exc).__name__}: {exc}", "-", False
        rows.append((label, text, target, "yes" if ok else "NO"))

    with tempfile.TemporaryDirectory(prefix="opml-faults-") as tmp:
        bench, model = prepare(args, Path(tmp))
        payload = Path(tmp) / "one.json"
        import pandas as pd

        row_df = pd.read_csv(bench.data, nrows=1).drop(columns=["response"])
        payload.write_text(json.dumps({"data": json.loads(row_df.to_json(orient="records"))}))
        ep = None
        try:
            if not wanted & set(ENDPOINT_ROWS):
                raise _Skip
            ep = Endpoint(bench, model, payload)
            row("worker", "kill -9 one worker during ab -r -n 20000 -c 8", lambda: kill_one_worker(ep))
            row("soak", f"soak: ab -n {args.soak_n:,} -c 16", lambda: soak(ep, args.soak_n))
            row("slowloris", "slowloris: 300 connections", lambda: slowloris(ep))
            row("supervisor", "kill -9 the endpoint's supervisor", lambda: kill_supervisor(ep))
        except _Skip:
            pass
        finally:
            if ep is not None:
                bench.cli("endpoint", "delete", NAME, check=False)
        try:
            row("train", "kill -9 `opml train`", lambda: kill_train(bench))
            row("executor", "kill -9 a pipeline executor (control plane up)", lambda: kill_executor(bench))
        finally:
            bench.stop_all()

    from opml.output import table

    print(f"\nfaults on 127.0.0.1 ({os.cpu_count()} cores), model {model}, endpoint workers from configs/deploy.yaml")
    print(table([(label, ok, target, text) for label, text, target, ok in rows], ["FAULT", "MET", "TARGET", "RESULT"]))


if __name__ == "__main__":
    main()
