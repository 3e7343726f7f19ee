#!/usr/bin/env python3
"""Trigger a published pipeline over REST and follow its run, as the reference notebook did.

Only needs `requests`. The bearer token comes from --token or OPML_TOKEN, or else from running
`opml auth token --json` with OPML_CLIENT_ID / OPML_CLIENT_SECRET set (there is no token endpoint).

    python scripts/pipeline_rest.py --endpoint http://127.0.0.1:PORT/pipelines/ID/runs \
        --experiment pipeline-rest-endpoint --param time_budget=30
    OPML_PIPELINE_ENDPOINT=... OPML_TOKEN=... python scripts/pipeline_rest.py

Exit code: 0 when the run Completed, 1 when it Failed or was Canceled, 2 on a usage or HTTP error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import requests

FINAL = ("Completed", "Failed", "Canceled")


def get_token(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get("OPML_TOKEN")
    if token:
        return token
    if not (os.environ.get("OPML_CLIENT_ID") and os.environ.get("OPML_CLIENT_SECRET")):
        sys.exit("error: no token; pass --token, set OPML_TOKEN, or set OPML_CLIENT_ID and OPML_CLIENT_SECRET")
    cmd = [*args.opml.split(), "auth", "token", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: `{' '.join(cmd)}` failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)["access_token"]


def parse_value(text: str):
    """--param values are JSON when they parse as JSON (30, 0.5, true, "x"), else plain strings."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", default=os.environ.get("OPML_PIPELINE_ENDPOINT"),
                    help="the REST endpoint `opml pipeline publish` printed (env OPML_PIPELINE_ENDPOINT)")
    ap.add_argument("--experiment", default="pipeline-rest-endpoint", help="ExperimentName")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a ParameterAssignment")
    ap.add_argument("--token", help="bearer token (default: OPML_TOKEN, else `opml auth token --json`)")
    ap.add_argument("--opml", default="opml", help="how to run the opml CLI when a token must be fetched")
    ap.add_argument("--timeout", type=float, default=3600, help="give up following after this many seconds")
    ap.add_argument("--no-wait", action="store_true", help="print the run id and return at once")
    args = ap.parse_args(argv)
    if not args.endpoint:
        ap.error("pass --endpoint URL or set OPML_PIPELINE_ENDPOINT")
    params = {}
    for pair in args.param:
        name, eq, value = pair.partition("=")
        if not eq:
            ap.error(f"--param {pair!r}: write NAME=VALUE")
        params[name] = parse_value(value)

    headers = {"Authorization": f"Bearer {get_token(args)}", "Content-Type": "application/json"}
    body = {"ExperimentName": args.experiment, "ParameterAssignments": params}
    t0 = time.perf_counter()
    try:
        resp = requests.post(args.endpoint, headers=headers, json=body, timeout=30)
    except requests.RequestException as exc:
        print(f"error: cannot reach {args.endpoint}: {exc}", file=sys.stderr)
        return 2
    latency_ms = (time.perf_counter() - t0) * 1000
    if resp.status_code != 200:
        print(f"error: HTTP {resp.status_code}: {_error(resp)}", file=sys.stderr)
        return 2
    run = resp.json()
    print(f"Submitted run {run['Id']} ({run['Status']}) in {latency_ms:.1f} ms", flush=True)
    if args.no_wait:
        print(json.dumps(run))
        return 0
    run_url = run.get("RunUrl") or args.endpoint.split("/pipelines/")[0] + f"/runs/{run['Id']}"
    deadline = time.monotonic() + args.timeout
    shown: dict[str, str] = {}
    status = run["Status"]
    while time.monotonic() < deadline:
        r = requests.get(run_url, headers=headers, timeout=30)
        if r.status_code != 200:
            print(f"error: HTTP {r.status_code} on {run_url}: {_error(r)}", file=sys.stderr)
            return 2
        doc = r.json()
        for step in doc.get("Steps", []):
            if shown.get(step["Name"]) != step["Status"]:
                shown[step["Name"]] = step["Status"]
                extra = " (reused)" if step.get("Reused") else ""
                print(f"  {step['Name']:<20} {step['Status']}{extra}", flush=True)
        status = doc["Status"]
        if status in FINAL:
            print(f"Run {doc['Id']}: {status}" + (f": {doc['Error']}" if doc.get("Error") else ""))
            return 0 if status == "Completed" else 1
        time.sleep(1)
    print(f"error: run {run['Id']} still {status} after {args.timeout:.0f} s", file=sys.stderr)
    return 2


def _error(resp: requests.Response) -> str:
    try:
        return resp.json().get("error", resp.text)
    except ValueError:
        return resp.text[:200]


if __name__ == "__main__":
    sys.exit(main())
