"""Trigger latency of a published pipeline's REST endpoint: POST -> reply, median over N triggers.

Sets up a throwaway workspace (service principal, a one-step script pipeline, publish -> control plane),
then POSTs N triggers with a Bearer token over one keep-alive connection. Each trigger's run is
followed to its end before the next POST, so the figure is the control plane's own reply time, not
the machine's load from N executors. Target: median under 50 ms.

Usage: python benchmarks/pipeline_trigger.py [N]     (default 30)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 50.0


def opml(*args: str, env: dict[str, str], cwd: Path) -> dict:
    res = subprocess.run([sys.executable, "-m", "opml", *args, "--json"], env=env, cwd=cwd, capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"opml {' '.join(args)} failed: {res.stderr.strip()}")
    return json.loads(res.stdout)


def main(n: int = 30) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="opml-trigger-bench-"))
    shutil.copytree(REPO / "configs", tmp / "configs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPML_")} | {
        "OPML_WORKSPACE": str(tmp / ".opml"), "OPML_CONFIGS": str(tmp / "configs"), "PYTHONPATH": str(REPO)}
    (tmp / "hello.py").write_text("import json, os\njson.dump({'n': 1}, open(os.environ['OPML_OUTPUTS'], 'w'))\n")
    (tmp / "bench.yaml").write_text(
        "name: trigger-bench\nparameters:\n  - {name: k, type: int, default: 1}\n"
        "steps:\n  - name: hello\n    type: script\n    allow_reuse: false\n"
        "    settings: {script: hello.py, args: ['${k}']}\n")
    try:
        opml("auth", env=env, cwd=tmp)
        sp = opml("auth", "sp", "create", "bench", env=env, cwd=tmp)
        opml("pipeline", "create", "--file", str(tmp / "bench.yaml"), env=env, cwd=tmp)
        pub = opml("pipeline", "publish", "trigger-bench", env=env, cwd=tmp)
        tok = opml("auth", "token", env=env | {"OPML_CLIENT_ID": sp["client_id"],
                                               "OPML_CLIENT_SECRET": sp["client_secret"]}, cwd=tmp)["access_token"]
        session = requests.Session()
        headers = {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}
        base = pub["endpoint"].split("/pipelines/")[0]
        lat, run_s = [], []
        for i in range(n):
            body = json.dumps({"ExperimentName": "bench", "ParameterAssignments": {"k": i}})
            t0 = time.perf_counter()
            r = session.post(pub["endpoint"], data=body, headers=headers, timeout=10)
            lat.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                sys.exit(f"trigger {i} answered {r.status_code}: {r.text}")
            run_id = r.json()["Id"]
            while True:
                doc = session.get(f"{base}/runs/{run_id}", headers=headers, timeout=10).json()
                if doc["Status"] in ("Completed", "Failed", "Canceled"):
                    break
                time.sleep(0.05)
            if doc["Status"] != "Completed":
                sys.exit(f"run {run_id} {doc['Status']}: {doc.get('Error')}")
            run_s.append(time.perf_counter() - t0)
        lat.sort()
        med = statistics.median(lat)
        print(f"triggers: {n}  POST -> reply latency  median {med:.1f} ms  p95 {lat[int(0.95 * (n - 1))]:.1f} ms  "
              f"min {lat[0]:.1f} ms  max {lat[-1]:.1f} ms")
        print(f"trigger -> one-step run Completed: median {statistics.median(run_s):.2f} s")
        print(f"target: median < {TARGET_MS:.0f} ms -> {'OK' if med < TARGET_MS else 'TOO SLOW'}")
    finally:
        subprocess.run([sys.executable, "-m", "opml", "server", "stop"], env=env, cwd=tmp, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
