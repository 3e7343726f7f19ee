"""Serving throughput: opml's endpoint vs the do-nothing app on the same stack, other stacks and peers, side by side.

Every server runs on 127.0.0.1 with the same number of worker processes (configs/deploy.yaml's `workers`, or
--workers) and is measured with Apache Bench in one run (-c 8, keep-alive off), the rows run alternately
--rounds times (opml, do-nothing, ..., opml, do-nothing, ...) and reported as medians:
- opml's endpoint (auth on), with 1-row and 100-row bodies, and with telemetry on (`opml enable-logs`);
- the do-nothing app (benchmarks/peers/noop_app.py: reads the body, answers a fixed small JSON) under opml's own
  supervisor and server settings (uvloop, httptools, opml's limits), with the same 1-row and 100-row bodies:
  the targets are ratios to it;
- --stacks: the do-nothing app on other stacks (starlette under uvicorn's CLI, granian, socketify), 1 row;
- --peers: the same model (the registered sklearn pipeline) on BentoML and MLServer (a custom runtime reading
  the raw JSON records), POST /score with the same bodies; a peer not installed is named and skipped.
  MLServer conflicts with opml's dependencies: install it in a venv of its own and pass --peers-python;
- `mlflow models serve` on the same model (1 row; --mlflow-n 0 skips it).
Then memory per worker (RSS and private USS from /proc/PID/smaps_rollup) and the issue's targets. Also times
one-row scoring in-process: the model's predict_proba on a DataFrame vs the compiled scorer.

    python benchmarks/serving.py                       # trains a model in a temp workspace first
    python benchmarks/serving.py --model-selection best   # ... deploying the top score (often an ensemble)
    python benchmarks/serving.py --workspace .opml --model bankmarketing-automl:1 --rounds 2
    python benchmarks/serving.py --workspace WS --stacks starlette,granian,socketify --peers bentoml,mlserver \\
        --peers-python /tmp/peervenv/bin/python       # a venv with mlserver, 'uvloop<0.22' and opml (-e .)

`pip install -e '.[bench]'` brings BentoML and granian (they resolve beside opml's pins); socketify: pip install
socketify. The endpoint is deployed into --workspace as bench-PID and deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import launch
from peers.names import names

from opml.automl.selection import RULES

REPO = Path(__file__).resolve().parents[1]
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class Row:
    """One line of the table: a server answering one body, measured once per round."""

    label: str
    server: str  # the key of the server it measures (for memory and the ratios)
    url: str
    body: bytes
    n: int
    rows: int = 1
    key: str | None = None
    before: Callable[[], None] | None = None  # e.g. telemetry on
    after: Callable[[], None] | None = None
    runs: list[dict] = field(default_factory=list)


def ab(url: str, body: bytes, n: int, key: str | None = None) -> dict:
    """ab -c 8, keep-alive off, -r: a connection reset or refused is a failed request, not the end of the run."""
    from opml.bench.ab import command, run

    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as fh:
        fh.write(body)
    try:
        cmd = command(url, Path(fh.name), requests=n, concurrency=8, key=key)
        return run([cmd[0], "-r", *cmd[1:]])
    finally:
        os.unlink(fh.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, help="existing workspace (default: a temp one, trained here)")
    ap.add_argument("--model", default="bankmarketing-automl:1")
    ap.add_argument("--train-budget", type=float, default=120.0, help="seconds (configs/automl.yaml's default)")
    ap.add_argument("--model-selection", choices=list(RULES),
                    help="train with this rule (default: configs/automl.yaml's)")
    ap.add_argument("-n", type=int, default=20_000, help="1-row requests per run for opml and the do-nothing apps")
    ap.add_argument("--n100", type=int, help="100-row requests per run (default: max(2000, n/10))")
    ap.add_argument("--rounds", type=int, default=1, help="run every row this many times, alternately; medians")
    ap.add_argument("--stacks", type=lambda v: names(v, launch.STACKS), default=["starlette"],
                    help="do-nothing app on other stacks too: starlette,granian,socketify (default: starlette)")
    ap.add_argument("--peers", type=lambda v: names(v, launch.PEERS), default=[],
                    help="serve the same model with peers too: bentoml,mlserver")
    ap.add_argument("--peers-python", help="a Python (another venv) for the peers this one lacks (mlserver)")
    ap.add_argument("--peer-n", type=int, default=2_000, help="requests per run for the peers")
    ap.add_argument("--mlflow-n", type=int, default=1_000, help="requests for mlflow models serve (0: skip it)")
    ap.add_argument("--workers", type=int, help="worker processes of every server (default: configs/deploy.yaml's)")
    ap.add_argument("--telemetry-pairs", type=int, default=0,
                    help="then this many back-to-back pairs of 1-row runs of opml, telemetry off and on (order "
                         "alternating): the telemetry cost as the median of the pairs' ratios, and worker CPU")
    args = ap.parse_args()
    # the do-nothing app on opml's stack runs always, through ASGI (uvicorn) and as a direct route (direct)
    args.stacks = [s for s in dict.fromkeys(args.stacks) if s not in ("uvicorn", "direct")]

    import pandas as pd

    from opml.config import deploy_config
    from opml.data.reference import reference_csv
    from opml.errors import OpmlError
    from opml.serving.endpoints import delete as delete_endpoint
    from opml.serving.endpoints import deploy, endpoint_keys, set_telemetry
    from opml.serving.scorer import pickled_model
    from opml.training.models import get_model, load_model
    from opml.workspace.workspace import Workspace

    try:
        data = reference_csv(REPO, env_var="OPML_DATA")  # $OPML_DATA, ../shared/data/, else downloaded once
    except OpmlError as exc:
        raise SystemExit(exc.line()) from None
    tmp = tempfile.TemporaryDirectory(prefix="opml-bench-")
    logs = Path(tmp.name) / "logs"
    logs.mkdir()
    root = args.workspace
    if root is None:
        root = train(Path(tmp.name) / "ws", data, args)
    ws = Workspace.open(root)
    reg = get_model(ws, args.model)
    df = pd.read_csv(data).drop(columns=["response"])
    records = json.loads(df.head(100).to_json(orient="records"))
    one = json.dumps({"data": records[:1]}).encode()
    hundred = json.dumps({"data": records}).encode()
    n100 = args.n100 or max(2000, args.n // 10)

    # ---- in-process: one row through the model vs the compiled scorer ----------------------------
    from opml.serving.scorer import load_scorer

    model = load_model(reg)
    scorer = load_scorer(ws, reg.ref)
    row = df.head(1)
    cols = {c: [v] for c, v in records[0].items()}
    t_model = _time(lambda: model.predict_proba(row), 200)
    t_comp = _time(lambda: scorer.predict_proba(cols), 2000)
    print(f"\nmodel: {reg.ref} ({reg.pipeline}); endpoint inference: {scorer.inference}")
    print(f"one-row predict_proba, median: model on a DataFrame {t_model * 1e3:.3f} ms; "
          f"compiled scorer {t_comp * 1e3:.3f} ms ({t_model / t_comp:.0f}x)")

    settings = deploy_config(REPO / "configs")
    args.workers = args.workers or settings.workers
    name = f"bench-{os.getpid()}"
    servers: dict[str, launch.Server] = {}
    pids: dict[str, int] = {}  # server -> the process whose children are its workers
    rows: list[Row] = []
    pairs: list[dict] = []
    deployed = False
    try:
        # ---- opml endpoint ------------------------------------------------------------------------
        ep = deploy(ws, reg.ref, settings.model_copy(update={"name": name, "port": launch.free_port(),
                                                             "workers": args.workers}), name)
        deployed = True
        key = endpoint_keys(ws, name)["primary"]
        pids["opml"] = ep.pid
        url = ep.scoring_uri
        wait_for_standby(ws.root, name, ep.pid)  # its loading would take CPU from the first round
        ab(url, one, 500, key)  # warm-up

        def telemetry(on: bool) -> Callable[[], None]:
            return lambda: set_telemetry(ws, name, on)

        # ---- the do-nothing app on opml's stack, then the other stacks ---------------------------------
        for stack in dict.fromkeys(["uvicorn", "direct", *args.stacks]):
            module, how = launch.STACKS[stack]
            if not launch.installed(module):
                print(f"{stack} not installed ({how})")
                continue
            servers[stack] = launch.stack(stack, args.workers, logs)
        # ---- peers on the same model ---------------------------------------------------------------------
        pkl = pickled_model(reg.path)
        for peer in args.peers:
            module, how = launch.PEERS[peer]
            python = sys.executable if launch.installed(module) else args.peers_python
            if python is None or not launch.installed(module, python):
                print(f"{peer} not installed ({how})")
                continue
            if pkl is None:
                print(f"{peer} skipped: {reg.ref} is not a pickled sklearn-flavour model")
                continue
            servers[peer] = launch.peer(peer, python, pkl, args.workers, logs)
        if args.mlflow_n > 0:
            servers["mlflow"] = launch.mlflow_serve(reg.path, args.workers, logs)
            servers["mlflow"].body = json.dumps({"dataframe_records": records[:1]}).encode()
        for label, server in list(servers.items()):
            try:
                launch.wait_ready(server, server.body or one, JSON_HEADERS)
            except RuntimeError as exc:
                print(f"{label} skipped: {exc}")
                del servers[label]
                continue
            pids[label] = server.proc.pid
            ab(server.url, server.body or one, 100 if label in launch.PEERS or label == "mlflow" else 500)

        # ---- the rows, alternately -----------------------------------------------------------------------
        def add(label: str, server: str, body: bytes, n: int, rows_per_request: int = 1, **kw) -> None:
            target = url if server == "opml" else servers[server].url
            rows.append(Row(label, server, target, body, n, rows_per_request, **kw))

        add("opml", "opml", one, args.n, key=key)
        for stack in ("uvicorn", "direct"):
            if stack in servers:
                add(servers[stack].label, stack, one, args.n)
        add("opml, telemetry on", "opml", one, args.n, key=key, before=telemetry(True), after=telemetry(False))
        for stack in args.stacks:
            if stack in servers and stack not in ("uvicorn", "direct"):
                add(servers[stack].label, stack, one, args.n)
        for peer in args.peers:
            if peer in servers:
                add(peer, peer, one, args.peer_n)
        if "mlflow" in servers:
            add("mlflow models serve", "mlflow", servers["mlflow"].body, args.mlflow_n)
        add("opml", "opml", hundred, n100, 100, key=key)
        for stack in ("uvicorn", "direct"):
            if stack in servers:
                add(servers[stack].label, stack, hundred, n100, 100)
        for peer in args.peers:
            if peer in servers:
                add(peer, peer, hundred, args.peer_n, 100)
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds} ...", flush=True)
            for row in rows:
                print(f"  {row.label}, {row.rows} row(s): {row.n} requests", flush=True)
                if row.before:
                    row.before()
                try:
                    row.runs.append(ab(row.url, row.body, row.n, row.key))
                except OpmlError as exc:  # no report at all (the server died?): the row shows no result
                    print(f"  {row.label}: {exc.line()}")
                finally:
                    if row.after:
                        row.after()
        if args.telemetry_pairs:
            pairs = telemetry_pairs(url, one, args.n, key, ep.pid, lambda on: set_telemetry(ws, name, on),
                                    args.telemetry_pairs)
        mem = {label: memory(pid) for label, pid in pids.items()}
    finally:
        for server in servers.values():
            server.stop()
        if deployed:
            delete_endpoint(ws, name)
        ws.close()
    report(rows, mem, args, servers, pairs)
    tmp.cleanup()


def telemetry_pairs(url: str, body: bytes, n: int, key: str, pid: int, set_telemetry: Callable[[bool], None],
                    count: int) -> list[dict]:
    """`count` pairs of back-to-back 1-row runs, telemetry off and on (on first in every other pair, so a drift
    cancels out): req/s and the workers' CPU µs per request (/proc) of each. Telemetry is off between runs."""
    workers = launch.children(pid)
    pairs = []
    for i in range(count):
        print(f"telemetry pair {i + 1}/{count} ...", flush=True)
        pair = {}
        for on in ((False, True) if i % 2 == 0 else (True, False)):
            if on:
                set_telemetry(True)
            try:
                cpu0 = launch.cpu_seconds(workers)
                result = ab(url, body, n, key)
                cpu = launch.cpu_seconds(workers) - cpu0
            finally:
                if on:
                    set_telemetry(False)
            pair["on" if on else "off"] = {"rps": result["requests_per_second"],
                                           "cpu_us": 1e6 * cpu / max(1, result["complete_requests"])}
        pairs.append(pair)
    return pairs


def wait_for_standby(root: Path, name: str, pid: int, timeout: float = 120.0) -> None:
    """Wait until the endpoint's standby worker has loaded the model (it loads after the endpoint serves)."""
    from opml.serving.process import state_info

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        standby = ((state_info(root, name, pid) or {}).get("workers") or {}).get("standby")
        if standby and standby.get("loaded"):
            return
        time.sleep(0.2)
    print(f"the standby worker did not report loaded within {timeout:.0f} s; measuring anyway")


def train(root: Path, data: Path, args: argparse.Namespace) -> Path:
    """A new workspace at `root` with a model trained by `opml train` (default settings)."""
    env = os.environ | {"OPML_WORKSPACE": str(root)}
    opml = [sys.executable, "-m", "opml", "--configs", str(REPO / "configs")]
    subprocess.run([*opml, "auth"], env=env, check=True, capture_output=True)
    print(f"training a model ({args.train_budget:.0f} s budget) ...", flush=True)
    rule = ["--model-selection", args.model_selection] if args.model_selection else []
    done = subprocess.run([*opml, "train", "--data", str(data), "--time-budget", str(args.train_budget), *rule,
                           "--json"], env=env, check=True, capture_output=True, text=True)
    sel = json.loads(done.stdout)["selection"]
    top, chosen = sel["top"], sel["chosen"]
    print(f"model_selection {sel['rule']}: top score {top['pipeline']} {top['score']:.4f} "
          f"({top['scoring_cost']:,} leaves); chosen {chosen['pipeline']} {chosen['score']:.4f} "
          f"({chosen['scoring_cost']:,} leaves)"
          + (f"; one standard error {sel['standard_error']:.4f}" if "standard_error" in sel else ""))
    return root


def memory(pid: int) -> dict:
    """A server's processes and its workers' memory (the children of `pid`: the supervisor's or arbiter's)."""
    procs = launch.tree(pid)
    workers = [launch.memory(c) for c in launch.children(pid)] or [launch.memory(pid)]
    workers = [w for w in workers if w]
    every = [m for m in map(launch.memory, procs) if m]
    return {"processes": len(procs), "workers": len(workers),
            "rss": statistics.median(w["rss"] for w in workers) if workers else 0.0,
            "uss": statistics.median(w["uss"] for w in workers) if workers else 0.0,
            "uss_total": sum(m["uss"] for m in every), "rss_total": sum(m["rss"] for m in every)}


def summary(row: Row) -> dict:
    """The medians (req/s, latency percentiles) and the totals (requests, failures) of a row's runs."""
    runs = row.runs
    return {"requests": sum(r["complete_requests"] for r in runs),
            "rps": statistics.median(r["requests_per_second"] for r in runs),
            "p50": statistics.median(r["latency_ms"].get("50", 0) for r in runs),
            "p99": statistics.median(r["latency_ms"].get("99", 0) for r in runs),
            "failed": sum(r["failed_requests"] for r in runs),
            "non2xx": sum(r["non_2xx_responses"] for r in runs),
            "by_round": [r["requests_per_second"] for r in runs]}


def report(rows: list[Row], mem: dict[str, dict], args: argparse.Namespace,
           servers: dict[str, launch.Server], pairs: list[dict] | None = None) -> None:
    """The side-by-side table (medians), the ratios, memory per worker and the issue's targets."""
    s = {(row.label, row.rows): summary(row) for row in rows if row.runs}
    noop_label = servers["uvicorn"].label if "uvicorn" in servers else None
    direct_label = servers["direct"].label if "direct" in servers else None

    def rps(label: str | None, nrows: int) -> float | None:
        got = s.get((label, nrows)) if label else None
        return got["rps"] if got else None

    print(f"\nApache Bench, 127.0.0.1, -c 8, keep-alive off ({os.cpu_count()} cores; {args.workers} worker "
          f"process(es) for each server); median of {args.rounds} round(s), rows run alternately")
    print(f"{'server':<26}{'body':>9}{'requests':>9}{'req/s':>8}{'rows/s':>9}{'p50 ms':>7}{'p99 ms':>7}"
          f"{'failed':>7}{'non-2xx':>8}{'x noop':>8}{'opml/x':>8}  req/s by round")
    for row in rows:
        r = s.get((row.label, row.rows))
        if r is None:
            print(f"{row.label:<26}{'1 row' if row.rows == 1 else f'{row.rows} rows':>9}  no result (see above)")
            continue
        noop, opml = rps(noop_label, row.rows), rps("opml", row.rows)
        print(f"{row.label:<26}{'1 row' if row.rows == 1 else f'{row.rows} rows':>9}{r['requests']:>9}"
              f"{r['rps']:>8.0f}{r['rps'] * row.rows:>9.0f}{r['p50']:>7.0f}{r['p99']:>7.0f}{r['failed']:>7}"
              f"{r['non2xx']:>8}{_ratio(r['rps'], noop):>8}{_ratio(opml, r['rps']):>8}  "
              + "/".join(f"{v:.0f}" for v in r["by_round"]))
    print("x noop: req/s over the do-nothing ASGI app's (opml stack, same body); opml/x: opml's req/s over this "
          "row's (same body).\nab reports whole milliseconds: p99 '0'/'1' means under 1/2 ms.")

    print(f"\n{'memory (MB)':<26}{'procs':>6}{'workers':>8}{'RSS/worker':>11}{'USS/worker':>11}{'USS total':>10}")
    for label, m in mem.items():
        if not m["workers"]:
            print(f"{label:<26}  not running any more (it died during the runs)")
            continue
        print(f"{label:<26}{m['processes']:>6}{m['workers']:>8}{m['rss']:>11.0f}{m['uss']:>11.0f}"
              f"{m['uss_total']:>10.0f}")
    print("workers: the children of the server's first process (supervisor, arbiter, or MLServer's inference pool); "
          "USS: private pages (clean + dirty).")

    one, hundred, tel = s.get(("opml", 1)), s.get(("opml", 100)), s.get(("opml, telemetry on", 1))
    print("\ntargets (issue 14; 'by round': the ratio within each round, which a machine's drift affects less):")
    if one and hundred:
        noop1, noop100 = rps(noop_label, 1), rps(noop_label, 100)
        print(f"  1 row: opml/do-nothing {_ratio(one['rps'], noop1)} (>= 0.90; by round "
              f"{_by_round(one, s.get((noop_label, 1)))}); p99 {one['p99']:.0f} ms (<= 5)"
              + ("  [ensemble target: >= 0.6 with --model-selection best]" if args.model_selection == "best" else ""))
        print(f"  100 rows: opml/do-nothing {_ratio(hundred['rps'], noop100)} (>= 0.50; by round "
              f"{_by_round(hundred, s.get((noop_label, 100)))}); "
              f"{hundred['rps'] * 100:,.0f} rows/s (>= 200,000); p99 {hundred['p99']:.0f} ms (<= 15)")
        if direct_label and (direct_label, 1) in s:
            print(f"  against the do-nothing app as a direct route too (the floor of opml's stack without ASGI): "
                  f"1 row {_ratio(one['rps'], rps(direct_label, 1))} (by round "
                  f"{_by_round(one, s.get((direct_label, 1)))}), "
                  f"100 rows {_ratio(hundred['rps'], rps(direct_label, 100))} "
                  f"(by round {_by_round(hundred, s.get((direct_label, 100)))})")
    if one and tel:
        print(f"  telemetry on: {100 * (1 - tel['rps'] / one['rps']):.1f}% fewer req/s (<= 5%; opml with/without by "
              f"round {_by_round(tel, one)})")
    if pairs:
        ratios = [p["on"]["rps"] / p["off"]["rps"] for p in pairs]
        cpu = [p["on"]["cpu_us"] - p["off"]["cpu_us"] for p in pairs]
        print(f"  telemetry on, {len(pairs)} back-to-back pairs of {args.n} requests: "
              f"{100 * (1 - statistics.median(ratios)):.1f}% fewer req/s (median of the pairs; <= 5%; pairs "
              + "/".join(f"{r:.2f}" for r in ratios) + f"); worker CPU {statistics.median(cpu):+.1f} µs per request "
              f"(median; off {statistics.median(p['off']['cpu_us'] for p in pairs):.0f} µs)")
    if "opml" in mem:
        print(f"  memory per worker: RSS {mem['opml']['rss']:.0f} MB, USS {mem['opml']['uss']:.0f} MB "
              f"(<= about 245 MB RSS)")
    peers = [p for p in args.peers if (p, 1) in s]
    if one and peers:
        print("  opml/peer: " + "; ".join(
            f"{p} {_ratio(one['rps'], s[(p, 1)]['rps'])} (1 row), "
            f"{_ratio(hundred and hundred['rps'], s.get((p, 100), {}).get('rps'))} (100 rows)" for p in peers))
    noop = s.get((noop_label, 1))
    stacks = [servers[k].label for k in args.stacks if k in servers and (servers[k].label, 1) in s]
    if noop and stacks:
        wins = [x for x in stacks if s[(x, 1)]["rps"] > noop["rps"] and s[(x, 1)]["p99"] <= noop["p99"]
                and not s[(x, 1)]["failed"] + s[(x, 1)]["non2xx"]]
        print(f"  stack: a server replaces uvicorn+uvloop+httptools only if it wins on req/s and p99 (no failures): "
              f"{', '.join(wins) or 'none does'}")
    failures = sum(x["failed"] + x["non2xx"] for x in s.values())
    print(f"  failed or non-2xx, all rows: {failures}")
    if one and ("mlflow models serve", 1) in s:
        print(f"  (earlier target) opml >= 20x mlflow req/s: "
              f"{one['rps'] / s[('mlflow models serve', 1)]['rps']:.1f}x")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def _by_round(a: dict | None, b: dict | None) -> str:
    """The ratios a/b of two rows' req/s, round by round (the rows ran alternately in each)."""
    if not a or not b:
        return "-"
    ratios = [x / y for x, y in zip(a["by_round"], b["by_round"], strict=False)]
    median = f", median {statistics.median(ratios):.2f}" if len(ratios) > 2 else ""
    return "/".join(f"{r:.2f}" for r in ratios) + median


def _time(fn: Callable[[], object], n: int) -> float:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


if __name__ == "__main__":
    main()
