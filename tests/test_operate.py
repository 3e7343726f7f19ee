"""Operating an endpoint: `opml enable-logs`, `opml logs`, OTLP export, `opml benchmark`, scripts/benchmark.sh."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path

import pandas as pd
import pytest
import requests

from opml.bench.ab import parse
from tests.conftest import REPO, Project, sampled_project

pytestmark = pytest.mark.timeout(600)
TELEMETRY_FIELDS = {"timestamp", "request_id", "method", "path", "status", "latency_ms", "rows", "model", "client"}


@pytest.fixture(scope="module")
def live(tmp_path_factory, bank_csv):
    proj, sample = sampled_project(tmp_path_factory.mktemp("operate"), bank_csv, 6000, seed=0)
    try:
        proj.ok("train", "--data", str(sample), "--max-trials", "2", "--time-budget", "40")
        ep = json.loads(proj.ok("deploy", "--best", "--json").stdout)
        key = json.loads(proj.ok("endpoint", "keys", ep["name"], "--json").stdout)["primaryKey"]
        rows = json.loads(pd.read_csv(sample).drop(columns=["response"]).head(3).to_json(orient="records"))
        yield proj, ep, key, rows
    finally:  # stop every endpoint process this module started, even when set-up failed half-way
        proj.delete_endpoints()


def score(ep: dict, key: str | None, rows: list, **headers: str) -> requests.Response:
    h = {"Content-Type": "application/json"} | headers
    if key:
        h["Authorization"] = f"Bearer {key}"
    return requests.post(ep["scoring_uri"], data=json.dumps({"data": rows}), headers=h, timeout=30)


def telemetry_lines(proj: Project, name: str) -> list[dict]:
    path = proj.ws / "logs" / "endpoints" / f"{name}.telemetry.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def telemetry_until(proj: Project, name: str, done, timeout: float = 5.0) -> list[dict]:
    """Telemetry lines once `done(lines)` holds: a line is written just after its response is sent."""
    deadline = time.monotonic() + timeout
    lines = telemetry_lines(proj, name)
    while not done(lines) and time.monotonic() < deadline:
        time.sleep(0.05)
        lines = telemetry_lines(proj, name)
    return lines


def test_log_lines_have_the_fields_and_request_ids(live):
    proj, ep, key, rows = live
    proj.ok("enable-logs")
    r = score(ep, key, rows, **{"x-request-id": "trace-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
    generated = score(ep, key, rows[:1])
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    gid = generated.headers["x-request-id"]
    lines = telemetry_until(proj, ep["name"], lambda ls: any(e["request_id"] == gid for e in ls))
    mine = next(e for e in lines if e["request_id"] == "trace-42")
    assert set(mine) == TELEMETRY_FIELDS
    assert (mine["method"], mine["path"], mine["status"], mine["rows"]) == ("POST", "/score", 200, 3)
    assert mine["model"] == ep["model"] and mine["latency_ms"] > 0
    assert re.fullmatch(r"127\.0\.0\.1:\d+", mine["client"])
    assert any(e["request_id"] == generated.headers["x-request-id"] and e["rows"] == 1 for e in lines)


def test_toggle_on_a_live_endpoint_under_load_fails_no_request(live, tmp_path):
    proj, ep, key, rows = live
    proj.ok("enable-logs", "--off")
    before = len(telemetry_lines(proj, ep["name"]))
    body = tmp_path / "one.json"
    body.write_text(json.dumps({"data": rows[:1]}))
    pid_before = json.loads(proj.ok("endpoint", "show", ep["name"], "--json").stdout)["pid"]
    load = subprocess.Popen(["ab", "-n", "4000", "-c", "4", "-p", str(body), "-T", "application/json",
                             "-H", f"Authorization: Bearer {key}", ep["scoring_uri"]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for args in (["enable-logs"], ["enable-logs", "--off"], ["enable-logs"]):
            time.sleep(0.3)
            proj.ok(*args)
        out, _ = load.communicate(timeout=300)
    finally:
        if load.poll() is None:
            load.kill()
    report = parse(out)
    assert report["complete_requests"] == 4000
    assert report["failed_requests"] == 0 and report["non_2xx_responses"] == 0
    logged = len(telemetry_lines(proj, ep["name"])) - before
    assert 0 < logged < 4000, logged  # on for part of the run only
    show = json.loads(proj.ok("endpoint", "show", ep["name"], "--json").stdout)
    assert show["pid"] == pid_before and show["settings"]["telemetry"]["enabled"] is True  # no restart


def test_setting_survives_restart(live):
    proj, ep, key, rows = live
    proj.ok("enable-logs", "--off")
    proj.ok("endpoint", "restart", ep["name"])
    n = len(telemetry_lines(proj, ep["name"]))
    assert score(ep, key, rows).status_code == 200
    time.sleep(0.5)  # a line would have been written by now
    assert len(telemetry_lines(proj, ep["name"])) == n
    proj.ok("enable-logs")
    proj.ok("endpoint", "restart", ep["name"])
    assert score(ep, key, rows).status_code == 200
    assert len(telemetry_until(proj, ep["name"], lambda ls: len(ls) > n)) == n + 1


def test_payload_sampling_and_no_secret_anywhere(live):
    proj, ep, key, rows = live
    proj.ok("enable-logs", "--sample-payloads", "1")
    n = len(telemetry_lines(proj, ep["name"]))
    assert score(ep, key, rows).status_code == 200
    assert score(ep, "wrong-" + key[:10], rows).status_code == 401
    last = telemetry_until(proj, ep["name"], lambda ls: len(ls) >= n + 2)
    assert last[-2]["payload"] == rows and last[-1]["status"] == 401 and "payload" not in last[-1]
    proj.ok("enable-logs")
    assert score(ep, key, rows).status_code == 200
    assert "payload" not in telemetry_until(proj, ep["name"], lambda ls: len(ls) >= n + 3)[-1]
    keys = json.loads(proj.ok("endpoint", "keys", ep["name"], "--json").stdout)
    for folder in ("logs", "run"):
        for f in (proj.ws / folder).rglob("*"):
            if f.is_file():
                text = f.read_bytes()
                for secret in keys.values():
                    assert secret.encode() not in text, f"key found in {f}"
                assert b"Authorization" not in text and b"Bearer " not in text, f
    assert "--sample-payloads goes with" in proj.fails("enable-logs", "--off", "--sample-payloads", "0.5")
    assert "between 0 and 1" in proj.fails("enable-logs", "--sample-payloads", "2")


def test_logs_command_merges_server_log_and_telemetry(live):
    proj, ep, key, rows = live
    proj.ok("enable-logs")
    score(ep, key, rows, **{"x-request-id": "logs-cmd"})
    telemetry_until(proj, ep["name"], lambda ls: bool(ls) and ls[-1]["request_id"] == "logs-cmd")
    entries = json.loads(proj.ok("logs", "--tail", "40", "--json").stdout)
    assert {e["source"] for e in entries} == {"server", "telemetry"}
    stamps = [e["timestamp"] for e in entries]
    assert stamps == sorted(stamps)
    assert entries[-1]["source"] == "telemetry" and entries[-1]["request_id"] == "logs-cmd"
    text = proj.ok("logs", "--tail", "5").stdout
    assert re.search(r"telemetry\s+POST /score 200 .* id=logs-cmd", text)
    assert "serving" in proj.ok("logs", "--tail", "200").stdout  # the server's start-up line


def test_logs_follow_streams_new_entries(live):
    proj, ep, key, rows = live
    proj.ok("enable-logs")
    env = os.environ | {"OPML_WORKSPACE": str(proj.ws)}
    follower = subprocess.Popen([sys.executable, "-m", "opml", "--configs", str(proj.configs), "logs", "--follow",
                                 "--tail", "0", "--json"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # let it start and take the current file sizes
        score(ep, key, rows, **{"x-request-id": "followed"})
        deadline = time.monotonic() + 20
        seen = None
        while time.monotonic() < deadline:
            line = follower.stdout.readline()
            if line and json.loads(line).get("request_id") == "followed":
                seen = json.loads(line)
                break
        assert seen and seen["status"] == 200
    finally:
        follower.terminate()
        follower.wait(timeout=10)


class OtlpReceiver(http.server.BaseHTTPRequestHandler):
    received: typing.ClassVar[dict[str, list[bytes]]] = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        OtlpReceiver.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_otlp_export_to_a_real_receiver(live):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    proj, _, _, rows = live
    OtlpReceiver.received = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OtlpReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        res = proj.cli("--configs", str(proj.configs), "deploy", "--best", "--name", "otel", "--json",
                       env=proj.env() | {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp})
        assert res.exit_code == 0, res.output
        ep = json.loads(res.stdout)
        proj.ok("enable-logs", "--endpoint", "otel")
        key = json.loads(proj.ok("endpoint", "keys", "otel", "--json").stdout)["primaryKey"]
        for i in range(3):
            assert score(ep, key, rows, **{"x-request-id": f"otel-{i}"}).status_code == 200
        deadline = time.monotonic() + 20
        spans, metrics = [], set()
        while time.monotonic() < deadline and (len(spans) < 3 or "opml.requests" not in metrics):
            time.sleep(0.5)
            spans = []
            for body in OtlpReceiver.received.get("/v1/traces", []):
                req = ExportTraceServiceRequest.FromString(body)
                spans += [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
            for body in OtlpReceiver.received.get("/v1/metrics", []):
                req = ExportMetricsServiceRequest.FromString(body)
                metrics |= {m.name for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        assert len(spans) >= 3, OtlpReceiver.received.keys()
        attrs = {a.key: a.value for a in spans[0].attributes}
        assert spans[0].name == "POST /score"
        assert attrs["http.response.status_code"].int_value == 200
        assert {s_attr.value.string_value for s in spans for s_attr in s.attributes
                if s_attr.key == "opml.request_id"} >= {"otel-0", "otel-1", "otel-2"}
        assert {"opml.requests", "opml.request.duration", "opml.rows_scored"} <= metrics
        raw = b"".join(b for bodies in OtlpReceiver.received.values() for b in bodies)
        assert key.encode() not in raw
    finally:
        server.shutdown()
        server.server_close()
        proj.ok("endpoint", "delete", "otel")


def test_benchmark_parses_a_real_ab_run_and_plots(live, tmp_path):
    proj, _, _, _ = live
    plot = tmp_path / "latency.png"
    report = json.loads(proj.ok("benchmark", "-n", "300", "-c", "4", "--rows", "5", "--plot", str(plot),
                                "--json").stdout)
    assert report["complete_requests"] == 300 and report["failed_requests"] == 0
    assert report["non_2xx_responses"] == 0 and report["payload_rows"] == 5
    assert report["requests_per_second"] > 0 and report["time_per_request_ms"] > 0
    assert report["transfer_rate_kbps"] > 0
    assert list(report["latency_ms"]) == ["50", "66", "75", "80", "90", "95", "98", "99", "100"]
    values = list(report["latency_ms"].values())
    assert values == sorted(values)
    assert json.loads(Path(report["report"]).read_text())["complete_requests"] == 300
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = proj.ok("benchmark", "-n", "50", "-c", "2").stdout
    assert "requests/s" in text and "Latency percentiles" in text


def test_ab_parser_against_raw_ab_output(live, tmp_path):
    _, ep, key, rows = live
    body = tmp_path / "b.json"
    body.write_text(json.dumps({"data": rows}))
    raw = subprocess.run(["ab", "-n", "120", "-c", "3", "-p", str(body), "-T", "application/json",
                          "-H", f"Authorization: Bearer {key}", ep["scoring_uri"]],
                         capture_output=True, text=True, timeout=120).stdout
    got = parse(raw)
    assert got["complete_requests"] == 120 and got["concurrency"] == 3
    assert got["requests_per_second"] == float(re.search(r"Requests per second:\s+([\d.]+)", raw)[1])
    assert got["latency_ms"]["100"] == float(re.search(r"100%\s+(\d+)", raw)[1])
    bad = subprocess.run(["ab", "-n", "20", "-c", "2", "-p", str(body), "-T", "application/json",
                          ep["scoring_uri"]], capture_output=True, text=True, timeout=120).stdout
    assert parse(bad)["non_2xx_responses"] == 20  # no key: every answer is a 401


def test_ab_failures_count_each_unanswered_request_once():
    """ab counts a reset request under Receive, Length and Exceptions; a request closed unanswered under Length."""
    def report(failed: int, counters: str | None) -> str:
        line = f"Failed requests:        {failed}\n" + (f"   ({counters})\n" if counters else "")
        return "Complete requests:      6000\n" + line + "Requests per second:    100.0 [#/sec] (mean)\n"

    two_resets_one_closed = report(7, "Connect: 0, Receive: 2, Length: 3, Exceptions: 2")
    assert parse(two_resets_one_closed)["unanswered_requests"] == 3
    assert parse(report(2, "Connect: 1, Receive: 0, Length: 0, Exceptions: 1"))["unanswered_requests"] == 2
    assert parse(report(0, None))["unanswered_requests"] == 0
    assert parse(report(5, None))["unanswered_requests"] == 5  # no breakdown: ab's own count


def test_benchmark_with_non_2xx_answers_fails(live, tmp_path):
    proj, _, _, _ = live
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"data": []}))
    res = proj.cli("--configs", str(proj.configs), "benchmark", "-n", "20", "-c", "2", "--payload", str(empty),
                   env=proj.env())
    assert res.exit_code == 1
    assert "20 non-2xx responses out of 20 requests" in res.stderr


def test_missing_ab_is_a_one_line_error(live):
    proj, _, _, _ = live
    res = proj.cli("--configs", str(proj.configs), "benchmark", env=proj.env() | {"PATH": "/nonexistent"})
    assert res.exit_code == 2 and "apt-get install apache2-utils" in res.stderr
    assert "Traceback" not in res.output


def test_benchmark_sh_script(live):
    proj, ep, key, _ = live
    env = os.environ | {"OPML_WORKSPACE": str(proj.ws), "OPML_CONFIGS": str(proj.configs),
                        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run(["bash", str(REPO / "scripts" / "benchmark.sh"), ep["name"], "25"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert re.search(r"Complete requests:\s+25", res.stdout) and "Non-2xx" not in res.stdout
    assert key not in res.stdout + res.stderr


def test_workers_sharing_a_telemetry_log_lose_no_line(tmp_path):
    from opml.serving.telemetry import JsonLines

    path = tmp_path / "ep.telemetry.jsonl"
    workers = [JsonLines(path, max_bytes=3_000, backups=100) for _ in range(2)]  # two processes' writers
    for i in range(3000):
        workers[i % 2].write({"request_id": f"r{i}", "pad": "x" * 40})
    for w in workers:
        w.close()
    files = sorted(tmp_path.iterdir(), key=lambda p: -int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    ids = [json.loads(ln)["request_id"] for f in files for ln in f.read_text().splitlines()]
    assert sorted(ids) == sorted(f"r{i}" for i in range(3000))  # every line once, none lost or doubled
    line = len(files[0].read_text().splitlines()[0]) + 1
    assert len(files) > 10  # it did rotate, often, and no file outgrew what two workers write between checks
    assert all(f.stat().st_size <= 3_000 + 2 * 64 * line for f in files)


def test_telemetry_log_rotates_by_size(tmp_path):
    from opml.serving.telemetry import JsonLines

    log = JsonLines(tmp_path / "ep.telemetry.jsonl", max_bytes=2_000, backups=2)
    for i in range(1000):
        log.write({"request_id": f"r{i}", "pad": "x" * 40})
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["ep.telemetry.jsonl", "ep.telemetry.jsonl.1", "ep.telemetry.jsonl.2"]
    sizes = [(tmp_path / f).stat().st_size for f in files]
    assert all(s < 2_000 + 64 * 80 for s in sizes)  # checked every 64 writes
    newest = [json.loads(ln)["request_id"] for ln in (tmp_path / files[0]).read_text().splitlines()]
    assert newest[-1] == "r999"
    older = [json.loads(ln)["request_id"] for ln in (tmp_path / files[1]).read_text().splitlines()]
    assert int(older[-1][1:]) < int(newest[0][1:])  # .1 holds the lines just before the current file
