"""Serving throughput: opml's endpoint vs `mlflow models serve` vs a do-nothing Starlette app, side by side.

All three servers are started here, on 127.0.0.1, with the same number of worker processes (configs/
deploy.yaml's `workers`, or --workers), and measured with Apache Bench in one run:
single-row payload, -c 8, keep-alive off; then opml with 100-row payloads (rows/s). Also times
one-row scoring in-process: the model's predict_proba on a DataFrame vs the compiled scorer.

    python benchmarks/serving.py                       # trains a model in a temp workspace first
    python benchmarks/serving.py --model-selection best   # ... deploying the top score (often an ensemble)
    python benchmarks/serving.py --workspace .opml --model bankmarketing-automl:1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NOOP_APP = '''
import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def score(request):
    await request.body()
    return Response(orjson.dumps({"result": ["no"]}), media_type="application/json")

app = Starlette(routes=[Route("/score", score, methods=["POST"])])
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, body: bytes, headers: dict[str, str], timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.post(url, data=body, headers=headers, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise SystemExit(f"server at {url} did not answer 200 within {timeout:.0f} s")


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    # `mlflow models serve` execs `uvicorn` through bash: the venv's bin folder must be on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=os.environ | {"PATH": path} | (env or {}))


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def ab(url: str, body: bytes, n: int, key: str | None = None) -> dict:
    from opml.bench.ab import command, run

    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as fh:
        fh.write(body)
    try:
        return run(command(url, Path(fh.name), requests=n, concurrency=8, key=key))
    finally:
        os.unlink(fh.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, help="existing workspace (default: a temp one, trained here)")
    ap.add_argument("--model", default="bankmarketing-automl:1")
    ap.add_argument("--train-budget", type=float, default=120.0, help="seconds (configs/automl.yaml's default)")
    ap.add_argument("--model-selection", choices=["one_se", "best"],
                    help="train with this rule (default: configs/automl.yaml's, one_se)")
    ap.add_argument("-n", type=int, default=20_000, help="requests for opml and the do-nothing server")
    ap.add_argument("--mlflow-n", type=int, default=1_000, help="requests for mlflow models serve")
    ap.add_argument("--workers", type=int, help="opml endpoint worker processes (default: configs/deploy.yaml's)")
    args = ap.parse_args()

    import pandas as pd

    from opml.config import deploy_config
    from opml.data.reference import reference_csv
    from opml.errors import OpmlError
    from opml.serving.endpoints import delete as delete_endpoint
    from opml.serving.endpoints import deploy, endpoint_keys
    from opml.training.models import get_model, load_model
    from opml.workspace.workspace import Workspace

    try:
        data = reference_csv(REPO, env_var="OPML_DATA")  # $OPML_DATA, ../shared/data/, else downloaded once
    except OpmlError as exc:
        raise SystemExit(exc.line()) from None
    tmp = tempfile.TemporaryDirectory(prefix="opml-bench-")
    root = args.workspace
    if root is None:
        root = Path(tmp.name) / "ws"
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
    ws = Workspace.open(root)
    reg = get_model(ws, args.model)
    df = pd.read_csv(data).drop(columns=["response"])
    row = df.head(1)
    one = json.dumps({"data": json.loads(row.to_json(orient="records"))}).encode()
    hundred = json.dumps({"data": json.loads(df.head(100).to_json(orient="records"))}).encode()

    # ---- in-process: one row through the model vs the compiled scorer ----------------------------
    from opml.serving.scorer import load_scorer

    model = load_model(reg)
    scorer = load_scorer(ws, reg.ref)
    cols = {c: [v] for c, v in json.loads(row.to_json(orient="records"))[0].items()}
    t_model = _time(lambda: model.predict_proba(row), 200)
    t_comp = _time(lambda: scorer.predict_proba(cols), 2000)
    print(f"\nmodel: {reg.ref} ({reg.pipeline}); endpoint inference: {scorer.inference}")
    print(f"one-row predict_proba, median: model on a DataFrame {t_model * 1e3:.3f} ms; "
          f"compiled scorer {t_comp * 1e3:.3f} ms ({t_model / t_comp:.0f}x)")

    results: dict[str, dict] = {}
    # ---- opml endpoint ----------------------------------------------------------------------------
    name = f"bench-{os.getpid()}"
    settings = deploy_config(REPO / "configs")
    args.workers = args.workers or settings.workers
    ep = deploy(ws, reg.ref, settings.model_copy(update={"name": name, "port": free_port(), "workers": args.workers}),
                name)
    key = endpoint_keys(ws, name)["primary"]
    try:
        wait_http(ep.scoring_uri, one, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        ab(ep.scoring_uri, one, 500, key)  # warm-up
        results["opml (1 row)"] = ab(ep.scoring_uri, one, args.n, key)
        results["opml (100 rows)"] = ab(ep.scoring_uri, hundred, max(2000, args.n // 10), key)
    finally:
        delete_endpoint(ws, name)

    # ---- mlflow models serve on the same model -----------------------------------------------------
    port = free_port()
    mlflow_proc = start([sys.executable, "-m", "mlflow", "models", "serve", "-m", reg.path, "--env-manager",
                         "local", "--host", "127.0.0.1", "-p", str(port), "-w", str(args.workers)])
    mlflow_body = json.dumps({"dataframe_records": json.loads(row.to_json(orient="records"))}).encode()
    try:
        url = f"http://127.0.0.1:{port}/invocations"
        wait_http(url, mlflow_body, {"Content-Type": "application/json"})
        ab(url, mlflow_body, 100)
        results["mlflow models serve"] = ab(url, mlflow_body, args.mlflow_n)
    finally:
        stop(mlflow_proc)

    # ---- do-nothing Starlette + orjson under uvicorn (uvloop, httptools) ------------------------
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        Path(d, "noop_app.py").write_text(NOOP_APP)
        noop = start([sys.executable, "-m", "uvicorn", "noop_app:app", "--host", "127.0.0.1", "--port", str(port),
                      "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
                      "--workers", str(args.workers)],
                     env={"PYTHONPATH": d})
        try:
            url = f"http://127.0.0.1:{port}/score"
            wait_http(url, one, {"Content-Type": "application/json"})
            ab(url, one, 500)
            results["do-nothing starlette"] = ab(url, one, args.n)
        finally:
            stop(noop)

    ws.close()
    base = results["mlflow models serve"]["requests_per_second"]
    print(f"\nApache Bench, 127.0.0.1, -c 8, keep-alive off ({os.cpu_count()} cores; "
          f"{args.workers} worker process(es) for each server)")
    print(f"{'server':<24}{'requests':>9}{'req/s':>10}{'rows/s':>10}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'failed':>8}{'non-2xx':>8}{'x mlflow':>10}")
    for label, r in results.items():
        rows = 100 if "100 rows" in label else 1
        print(f"{label:<24}{r['complete_requests']:>9}{r['requests_per_second']:>10.0f}"
              f"{r['requests_per_second'] * rows:>10.0f}{r['latency_ms'].get('50', 0):>8.0f}"
              f"{r['latency_ms'].get('99', 0):>8.0f}{r['failed_requests']:>8}{r['non_2xx_responses']:>8}"
              f"{r['requests_per_second'] / base:>10.1f}")
    o = results["opml (1 row)"]
    h = results["opml (100 rows)"]
    print("\ntargets: opml >= 20x mlflow req/s: "
          f"{o['requests_per_second'] / base:.1f}x; p99 < 10 ms: {o['latency_ms'].get('99')} ms; "
          f"0 failed of {o['complete_requests']}: {o['failed_requests'] + o['non_2xx_responses']}; "
          f"100-row payload >= 100,000 rows/s: {h['requests_per_second'] * 100:,.0f}")
    print("note: ab reports whole milliseconds; p99 '0'/'1' means under 1/2 ms.")
    tmp.cleanup()


def _time(fn, n: int) -> float:
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
