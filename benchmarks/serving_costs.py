"""Where a scoring request's time goes: a per-request cost table of the running endpoint.

Starts the endpoint (the supervisor module, opml.serving.server, on a copy of the given workspace, auth on),
loads it with Apache Bench (-c 8, keep-alive off) with 1-row and 100-row bodies, telemetry off and on, and
samples every worker with py-spy (--native, so the kernel's socket calls and the idle event loop are told
apart) while ab runs. Each sample is attributed to one stage by its frames (function, file, source line); a
stage's cost per request is its share of the workers' busy samples times the workers' CPU time per request
(/proc, measured in a separate run without the sampler). Then times each stage in-process (perf_counter_ns
loops over the same bodies) as a cross-check. Stops everything it started.

    python benchmarks/serving_costs.py --workspace /tmp/benchws --model bankmarketing-automl:1
    python benchmarks/serving_costs.py --workspace WS --code /tmp/old-checkout    # the same for another checkout
    python benchmarks/serving_costs.py --workspace WS --ab-only --rounds 3         # req/s only, no sampling
    python benchmarks/serving_costs.py --workspace WS --compare /tmp/old-checkout --rounds 3  # old vs this, alternating

Needs ab and py-spy (`pip install -e .[bench]`); py-spy needs ptrace (root, or kernel.yama.ptrace_scope=0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import linecache
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from peers.launch import cpu_seconds

REPO = Path(__file__).resolve().parents[1]
NAME = "costs"
# py-spy on PATH, else beside this interpreter (a venv run without activating it)
PY_SPY = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))

# ---------------------------------------------------------------------------------------------- attribution
# A sample is attributed to the first stage whose rule matches, scanning its frames from the innermost out.
# The stages own the frames of opml's request path; what is left is uvicorn's and uvloop's per-request work.
IDLE = ("epoll_pwait", "epoll_wait")
SYSCALLS = ("write", "writev", "send", "sendmsg", "sendto", "read", "recv", "recvfrom", "readv", "accept4",
            "accept", "close", "shutdown", "epoll_ctl", "setsockopt", "getsockopt", "getsockname", "getpeername",
            "__close", "__libc_write", "__libc_read")
STAGES = (
    "HTTP parse + connection (uvicorn httptools protocol)",
    "ASGI/uvicorn: task, proxy headers, receive",
    "ASGI/uvicorn: send (response head, transport calls)",
    "event loop (uvloop: accept, read/write callbacks, close)",
    "socket syscalls (kernel TCP on loopback)",
    "app: routing, headers dict, request id",
    "auth (key check)",
    "body read",
    "JSON parse",
    "checks: body shape (requests.parse)",
    "read records: (JSON ->) checks -> matrix (reader)",
    "featurize (feature block, scaler)",
    "trees (C kernel + link)",
    "threshold / labels",
    "response encode",
    "response send (asgi.respond)",
    "metrics counters",
    "telemetry",
    "other",
)


def _line(file: str, line: int) -> str:
    return linecache.getline(file, line).strip() if line > 0 else ""


def _frames(stack: str) -> list[tuple[str, str, int]]:
    """py-spy raw frames, outermost first: (function, file, line)."""
    out = []
    for part in stack.split(";"):
        name, _, where = part.rpartition(" (")
        if not _:
            out.append((part, "", 0))
            continue
        file, _, line = where.rstrip(")").rpartition(":")
        out.append((name, file or where.rstrip(")"), int(line) if line.isdigit() else 0))
    return out


def _app_line(text: str) -> str | None:
    """The stage of a line of opml/serving/app.py (or asgi.py's respond) by what it does."""
    if "orjson.loads" in text:
        return "JSON parse"
    if "read_body" in text:
        return "body read"
    if "keys" in text or "authorization" in text or "_skip_body" in text:
        return "auth (key check)"
    if "orjson.dumps" in text or "tolist" in text:
        return "response encode"
    if "labels" in text:
        return "threshold / labels"
    if "respond(" in text or "send(" in text:
        return "response send (asgi.respond)"
    if "metrics" in text:
        return "metrics counters"
    if "tel." in text or "telemetry" in text:
        return "telemetry"
    return None


def classify(stack: str) -> str | None:
    """The stage of one sample (None: the worker was idle in epoll)."""
    frames = _frames(stack)
    if not frames:
        return "other"
    leaf = frames[-1][0]
    if leaf in IDLE:
        return None
    files = [f for _, f, _ in frames]
    if any(f.endswith("serving/telemetry.py") for f in files):
        return "telemetry"
    if any(f.endswith("serving/metrics.py") for f in files):
        return "metrics counters"
    if leaf in SYSCALLS or leaf.startswith("__libc_"):
        return "socket syscalls (kernel TCP on loopback)"
    for func, file, line in reversed(frames):
        if not file.endswith(".py"):
            continue
        base = file.rsplit("/", 1)[-1]
        if "/opml/" in file:
            if base == "keys.py":
                return "auth (key check)"
            if base in ("threshold.py", "model.py") or func.endswith(("labels", "calibrated")):
                return "threshold / labels"
            if base in ("treecompile.py", "rowpath.py") or func.split(".")[-1] in (
                    "lgbm", "xgb", "catboost", "sk", "_link64", "_binary", "lr", "margins", "margins1"):
                return "trees (C kernel + link)"
            if base == "reader.py" or func in ("columnar", "explain"):
                return "read records: (JSON ->) checks -> matrix (reader)"
            if base == "requests.py":
                return "checks: body shape (requests.parse)"
            if base == "compiled.py":
                text = _line(file, line)
                if "self.predict(" in text:
                    return "trees (C kernel + link)"
                if func.startswith(("FeatureBlock", "CompiledFeaturizer", "_compile_scaler", "_center_scale")):
                    return "featurize (feature block, scaler)"
                if "read(" in text:
                    return "read records: (JSON ->) checks -> matrix (reader)"
                continue  # scorer glue: charged to the caller's line
            if base == "asgi.py":
                if func in ("read_body",):
                    return "body read"
                if func in ("drain",):
                    return "auth (key check)"
                if func == "respond":
                    return "response send (asgi.respond)"
                if "LimitedHttpToolsProtocol" in func or "sweep" in func:
                    return "HTTP parse + connection (uvicorn httptools protocol)"
                continue
            if base == "app.py":
                stage = _app_line(_line(file, line))
                if stage is not None:
                    return stage
                if "ScoringApp" in func:
                    return "app: routing, headers dict, request id"
                continue
            continue
        if base == "uuid.py":
            return "app: routing, headers dict, request id"
        if "uvicorn/" in file:
            if "RequestResponseCycle.send" in func:
                return "ASGI/uvicorn: send (response head, transport calls)"
            if "RequestResponseCycle" in func or "proxy_headers" in file:
                return "ASGI/uvicorn: task, proxy headers, receive"
            if "httptools_impl" in file or "protocols/utils" in file or "create_protocol" in func:
                return "HTTP parse + connection (uvicorn httptools protocol)"
    return "event loop (uvloop: accept, read/write callbacks, close)"


def attribute(raw_files: list[Path]) -> tuple[Counter, int]:
    """Busy samples per stage over py-spy raw files, and the idle samples."""
    busy: Counter = Counter()
    idle = 0
    for path in raw_files:
        for row in path.read_text().splitlines():
            stack, _, count = row.rpartition(" ")
            if not count.isdigit():
                continue
            stage = classify(stack)
            if stage is None:
                idle += int(count)
            else:
                busy[stage] += int(count)
    return busy, idle


# ---------------------------------------------------------------------------------------------- the endpoint
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Endpoint:
    """The endpoint's supervisor (opml.serving.server) on a copy of a workspace, run from `code`."""

    def __init__(self, workspace: Path, model: str, workers: int, code: Path, tmp: Path) -> None:
        self.root = tmp / "ws"
        shutil.copytree(workspace, self.root, ignore=shutil.ignore_patterns("run", "logs"))
        self.code = code
        self.env = os.environ | {"PYTHONPATH": str(code)}
        self.key = self._py("from opml.serving.keys import ensure_keys; from pathlib import Path; "
                            f"print(ensure_keys(Path({str(self.root / 'secrets')!r}), {NAME!r})['primary'])").strip()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/score"
        self.telemetry(False)
        cmd = [sys.executable, "-m", "opml.serving.server", "--workspace", str(self.root), "--name", NAME,
               "--model", model, "--port", str(self.port), "--workers", str(workers)]
        self.log = open(tmp / "endpoint.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, cwd=code, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def _py(self, code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], cwd=self.code, env=self.env, check=True,
                              capture_output=True, text=True).stdout

    def telemetry(self, on: bool) -> None:
        self._py("from opml.serving.telemetry import write_control; from pathlib import Path; "
                 f"write_control(Path({str(self.root)!r}), {NAME!r}, {on}, 0.0)")

    def wait(self, body: bytes, timeout: float = 120) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the endpoint exited with code {self.proc.returncode}; see its log")
            req = urllib.request.Request(self.url, data=body, headers={"Authorization": f"Bearer {self.key}"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200 and len(self.workers()) >= 1:
                        time.sleep(0.5)  # the other workers
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise SystemExit(f"the endpoint did not answer 200 within {timeout:.0f} s")

    def workers(self) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def ab(url: str, body_file: Path, n: int, key: str) -> dict:
    from opml.bench.ab import command, run  # from --code's checkout (first on sys.path)

    return run(command(url, body_file, requests=n, concurrency=8, key=key))


def measure(ep: Endpoint, body_file: Path, n: int, spy: Path | None, rate: int) -> dict:
    """One ab run: req/s, p50/p99 and the workers' CPU per request; with `spy`, py-spy samples every worker."""
    pids = ep.workers()
    spies = []
    if spy is not None:
        for pid in pids:
            out = spy.with_name(f"{spy.name}.{pid}.txt")
            spies.append((out, subprocess.Popen(
                [PY_SPY, "record", "--native", "--full-filenames", "--format", "raw", "-r", str(rate), "-o",
                 str(out), "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        time.sleep(1.5)  # attached
    cpu0 = cpu_seconds(pids)
    r = ab(ep.url, body_file, n, ep.key)
    cpu = cpu_seconds(pids) - cpu0
    for _, p in spies:
        p.send_signal(signal.SIGINT)
    for _, p in spies:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    for out, p in spies:
        if not out.exists() or not out.stat().st_size:
            print(f"py-spy wrote no samples for {out.name}: {p.stderr.read().decode()[-300:] if p.stderr else ''}")
    done = r["complete_requests"]
    return {"rps": r["requests_per_second"], "p50": r["latency_ms"].get("50"), "p99": r["latency_ms"].get("99"),
            "failed": r["failed_requests"] + r["non_2xx_responses"], "cpu_us": cpu / max(done, 1) * 1e6,
            "raw": [out for out, _ in spies if out.exists()]}


# ---------------------------------------------------------------------------------------------- in process
def in_process(root: Path, model: str, bodies: dict[str, bytes], key: str, reps: int) -> dict[str, dict[str, float]]:
    """Median µs of each stage of the request path, timed in this process with the endpoint's own objects."""
    import orjson

    from opml.serving.app import ScoringApp
    from opml.serving.keys import KeyChecker, key_file
    from opml.serving.requests import parse
    from opml.serving.scorer import load_scorer
    from opml.serving.telemetry import Telemetry, control_file, write_control
    from opml.workspace.workspace import Workspace

    try:  # as a worker has it: the keys file and the switch watched by inotify (checkouts before it: a stat)
        from opml.serving.watch import FileWatch
    except ImportError:
        FileWatch = None
    loop = asyncio.new_event_loop()  # timed calls run inside it, as in a worker (telemetry batches by its timer)
    ws = Workspace.open(root)
    scorer = load_scorer(ws, model)
    watch = FileWatch() if FileWatch is not None else None
    kf, cf = key_file(ws.secrets_dir, NAME), control_file(root, NAME)
    keys = KeyChecker(kf, watch.watch(kf)) if watch else KeyChecker(kf)
    tel = Telemetry(root, NAME, scorer.model_ref, watch.watch(cf)) if watch else Telemetry(root, NAME, scorer.model_ref)
    if watch:
        watch.attach(loop)
    app = ScoringApp(scorer, keys=keys, max_request_bytes=1 << 20, openapi=b"{}", telemetry=tel,
                     metrics_dir=root / "run" / "inproc.metrics")
    score_now = getattr(app, "score_now", None)  # POST /score as the protocol's direct route, where it exists
    auth = f"Bearer {key}".encode()
    headers = [(b"host", b"127.0.0.1"), (b"user-agent", b"ApacheBench/2.3"), (b"accept", b"*/*"),
               (b"content-length", b"0"), (b"content-type", b"application/json"), (b"authorization", auth)]

    def t(fn, n: int = reps) -> float:
        for _ in range(min(200, n)):
            fn()
        samples = []
        for _ in range(7):
            t0 = time.perf_counter_ns()
            for _ in range(n // 7 + 1):
                fn()
            samples.append((time.perf_counter_ns() - t0) / (n // 7 + 1) / 1000)
        return statistics.median(samples)

    async def inside(fn: Any) -> Any:
        return fn()

    def in_loop(fn: Any) -> Any:
        return loop.run_until_complete(inside(fn))

    def switch(on: bool) -> None:
        write_control(root, NAME, on, 0.0)
        loop.run_until_complete(asyncio.sleep(0.01))  # the watch reads the change, as a worker's loop would
        tel.refresh()

    def app_call(body: bytes) -> None:
        if score_now is not None:
            score_now(headers, body, ("127.0.0.1", 1))
            return
        scope = {"type": "http", "path": "/score", "method": "POST", "headers": headers, "client": ("127.0.0.1", 1)}
        msg = {"type": "http.request", "body": body, "more_body": False}

        async def receive() -> dict:
            return msg

        async def send(message: dict) -> None:
            pass

        coro = app(scope, receive, send)
        with contextlib.suppress(StopIteration):
            coro.send(None)  # the fake receive/send never suspend: one step runs the whole request

    def stages(body: bytes) -> dict[str, float]:
        doc = orjson.loads(body)
        req = parse(doc)
        batch = scorer.read(req.records)
        proba = scorer.predict_batch(batch)
        labels = scorer.labels(proba)
        rows = len(req.records)
        reps_here = reps if rows == 1 else max(200, reps // 20)
        r: dict[str, float] = {}
        r["auth (key check)"] = t(lambda: keys.check(auth), reps_here)
        r["app: routing, headers dict, request id"] = t(lambda: dict(headers), reps_here)
        r["JSON parse"] = t(lambda: orjson.loads(body), reps_here)
        r["checks: body shape (requests.parse)"] = t(lambda: parse(doc), reps_here)
        r["read records: checks -> matrix (reader)"] = t(lambda: scorer.read(req.records), reps_here)
        read_json = getattr(scorer, "read_json", None)  # the plain-body path, where the checkout has it
        if read_json is not None and read_json(body) is not None:
            r["plain body: JSON -> checks -> matrix (read_json)"] = t(lambda: read_json(body), reps_here)
            batch_json = read_json(body)
            r["featurize + trees (predict_batch, read_json's)"] = t(lambda: scorer.predict_batch(batch_json),
                                                                     reps_here)
        r["featurize + trees (predict_batch)"] = t(lambda: scorer.predict_batch(batch), reps_here)
        r["threshold / labels"] = t(lambda: scorer.labels(proba), reps_here)
        r["response encode (orjson)"] = t(lambda: orjson.dumps({"result": labels}), reps_here)
        encoded = {c: orjson.dumps(c) for c in scorer.classes}  # the alternative: labels encoded at start-up
        r["response encode (pre-encoded labels, not used)"] = t(
            lambda: b"".join((b'{"result":[', b",".join(map(encoded.__getitem__, labels)), b"]}")), reps_here)
        r["metrics counters"] = t(lambda: app.metrics.observe("/score", 200, 0.001, rows), reps_here)
        switch(False)
        r["telemetry off (refresh)"] = t(tel.refresh, reps_here)
        r["whole app call, telemetry off"] = in_loop(lambda: t(lambda: app_call(body), reps_here))
        switch(True)
        r["whole app call, telemetry on"] = in_loop(lambda: t(lambda: app_call(body), reps_here))
        switch(False)
        return r

    out = {label: stages(body) for label, body in bodies.items()}
    if watch:
        watch.close()
    tel.close()
    app.metrics.close()
    ws.close()
    loop.close()
    return out


# ---------------------------------------------------------------------------------------------- report
def table(runs: dict[str, dict], inproc: dict[str, dict[str, float]] | None) -> str:
    lines = []
    labels = list(runs)
    head = f"{'stage':<58}" + "".join(f"{lb:>24}" for lb in labels)
    lines.append("per-request cost, µs (% of the worker's CPU per request), from py-spy samples x /proc CPU")
    lines.append(head)
    lines.append("-" * len(head))
    shares = {}
    for lb, run in runs.items():
        busy = run["busy"]
        total = sum(busy.values()) or 1
        shares[lb] = {s: busy.get(s, 0) / total for s in STAGES}
    for stage in STAGES:
        if not any(shares[lb][stage] for lb in labels):
            continue
        cells = "".join(f"{shares[lb][stage] * runs[lb]['cpu_us']:>15.1f} ({shares[lb][stage] * 100:>4.1f}%)"
                        for lb in labels)
        lines.append(f"{stage:<58}{cells}")
    lines.append("-" * len(head))
    lines.append(f"{'worker CPU per request (µs, /proc, run without sampler)':<58}"
                 + "".join(f"{runs[lb]['cpu_us']:>24.1f}" for lb in labels))
    lines.append(f"{'busy samples (idle epoll samples excluded)':<58}"
                 + "".join(f"{sum(runs[lb]['busy'].values()):>24}" for lb in labels))
    lines.append(f"{'ab req/s (-c 8, keep-alive off, run without sampler)':<58}"
                 + "".join(f"{runs[lb]['rps']:>24.0f}" for lb in labels))
    lines.append(f"{'ab p50 / p99 ms':<58}"
                 + "".join(f"{str(runs[lb]['p50']) + ' / ' + str(runs[lb]['p99']):>24}" for lb in labels))
    lines.append(f"{'failed or non-2xx':<58}" + "".join(f"{runs[lb]['failed']:>24}" for lb in labels))
    if inproc:
        lines.append("")
        lines.append("in-process cross-check, µs per call (median of 7 perf_counter_ns loops)")
        cols = list(inproc)
        lines.append(f"{'stage':<58}" + "".join(f"{c:>24}" for c in cols))
        for stage in dict.fromkeys(k for c in cols for k in inproc[c]):
            lines.append(f"{stage:<58}" + "".join(f"{inproc[c].get(stage, float('nan')):>24.2f}" for c in cols))
    return "\n".join(lines)


def compare(args: argparse.Namespace, bodies: dict[str, bytes], files: dict[str, Path], tmp: Path) -> str:
    """Both checkouts' endpoints up at once; ab runs alternate between them, round by round."""
    codes = {"compare": args.compare, "this": args.code}
    eps: dict[str, Endpoint] = {}
    try:
        for name, code in codes.items():
            (tmp / name).mkdir()
            eps[name] = Endpoint(args.workspace, args.model, args.workers, code, tmp / name)
        for ep in eps.values():
            ep.wait(bodies["1 row"])
            for label in bodies:
                ab(ep.url, files[label], 300, ep.key)  # warm-up
        got: dict[tuple[str, str], list[dict]] = {}
        for r in range(args.rounds):
            for label in bodies:
                n = args.n if label == "1 row" else max(500, args.n // 4)
                for name in (list(eps) if r % 2 == 0 else list(eps)[::-1]):
                    got.setdefault((label, name), []).append(measure(eps[name], files[label], n, None, args.rate))
    finally:
        for ep in eps.values():
            ep.stop()
    lines = [f"ab -c 8, keep-alive off, {args.workers} workers each; rounds alternate; compare = {args.compare}",
             f"{'payload':<10}{'server':<9}{'req/s per round':>40}{'median':>9}{'CPU µs/req':>12}{'p99 ms':>8}"]
    for label in bodies:
        med = {}
        for name in eps:
            runs = got[(label, name)]
            med[name] = statistics.median(x["rps"] for x in runs)
            cpu = statistics.median(x["cpu_us"] for x in runs)
            p99 = max(x["p99"] or 0 for x in runs)
            per_round = " ".join(f"{x['rps']:.0f}" for x in runs)
            lines.append(f"{label:<10}{name:<9}{per_round:>40}{med[name]:>9.0f}{cpu:>12.0f}{p99:>8.0f}")
        lines.append(f"{label:<10}{'ratio':<9}{'this / compare (medians)':>40}{med['this'] / med['compare']:>9.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=os.environ.get("OPML_WORKSPACE"),
                    help="a workspace holding the model (copied; default: $OPML_WORKSPACE)")
    ap.add_argument("--model", default="bankmarketing-automl:1")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--code", type=Path, default=REPO, help="the checkout whose opml serves (default: this one)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("OPML_DATA", REPO.parent / "shared" / "data" /
                                                                   "bankmarketing_train.csv")))
    ap.add_argument("-n", type=int, default=10_000, help="ab requests per 1-row run (100-row runs: n / 4)")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--ab-only", action="store_true", help="req/s only: no sampling, no in-process timing")
    ap.add_argument("--rounds", type=int, default=1, help="with --ab-only or --compare: runs of each payload")
    ap.add_argument("--compare", type=Path, help="another checkout: serve both, alternate ab runs (req/s and CPU)")
    ap.add_argument("--no-telemetry-runs", action="store_true", help="skip the telemetry-on runs")
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args()
    if args.workspace is None:
        raise SystemExit("--workspace (or $OPML_WORKSPACE) is required")
    if shutil.which("ab") is None or (not args.ab_only and PY_SPY is None):
        raise SystemExit("needs ab (apache2-utils) and py-spy (pip install py-spy)")
    sys.path.insert(0, str(args.code))
    import csv

    with args.data.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [dict(r) for _, r in zip(range(100), reader, strict=False)]
    for r in rows:
        r.pop("response", None)
        for k, v in r.items():
            try:
                r[k] = int(v)
            except ValueError:
                with contextlib.suppress(ValueError):
                    r[k] = float(v)
    bodies = {"1 row": json.dumps({"data": rows[:1]}).encode(), "100 rows": json.dumps({"data": rows}).encode()}

    with tempfile.TemporaryDirectory(prefix="opml-costs-") as d:
        tmp = Path(d)
        files = {}
        for label, body in bodies.items():
            files[label] = tmp / f"{label.replace(' ', '')}.json"
            files[label].write_bytes(body)
        if args.compare is not None:
            print(compare(args, bodies, files, tmp))
            return
        ep = Endpoint(args.workspace, args.model, args.workers, args.code, tmp)
        runs: dict[str, dict] = {}
        try:
            ep.wait(bodies["1 row"])
            print(f"endpoint up: {ep.url}, workers {ep.workers()}, code {args.code}", flush=True)
            scenarios = [(label, label, False) for label in bodies]
            if not args.no_telemetry_runs and not args.ab_only:
                scenarios += [(f"{label}, telemetry on", label, True) for label in bodies]
            for name, label, tel in scenarios:
                ep.telemetry(tel)
                time.sleep(0.1)
                n = args.n if label == "1 row" else max(500, args.n // 4)
                ab(ep.url, files[label], 300, ep.key)  # warm-up
                if args.ab_only:
                    rps = [measure(ep, files[label], n, None, args.rate)["rps"] for _ in range(args.rounds)]
                    print(f"{name}: req/s {' '.join(f'{x:.0f}' for x in rps)}", flush=True)
                    continue
                plain = measure(ep, files[label], n, None, args.rate)
                for _ in range(2):  # once more if the sampler could not attach
                    spied = measure(ep, files[label], n, tmp / name.replace(" ", "_").replace(",", ""), args.rate)
                    busy, idle = attribute(spied["raw"])
                    if sum(busy.values()):
                        break
                runs[name] = plain | {"busy": busy, "idle": idle}
                print(f"{name}: {plain['rps']:.0f} req/s, {plain['cpu_us']:.0f} µs CPU/request, "
                      f"{sum(busy.values())} busy samples", flush=True)
            ep.telemetry(False)
        finally:
            ep.stop()
        if args.ab_only:
            return
        inproc = in_process(ep.root, args.model, bodies, ep.key, 20_000)
    text = table(runs, inproc)
    print()
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
