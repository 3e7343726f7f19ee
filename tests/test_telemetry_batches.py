"""Telemetry lines written in batches (opml.serving.telemetry): the same lines as one write per request, each on
disk within the flush interval or at a graceful stop, rotation as before. Real files, real event loops, and a
real endpoint process stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime

import pandas as pd
import pytest
import requests
import uvloop

from opml.serving.telemetry import AT_ONCE, MAX_SAMPLED_ROWS, JsonLines, Telemetry, telemetry_log, write_control
from tests.conftest import Cli, sampled_project

pytestmark = pytest.mark.timeout(600)


def lines(path) -> list[dict]:
    """The file's lines (split at newlines only: a path may hold U+2028, which orjson leaves as it is)."""
    return [json.loads(ln) for ln in path.read_bytes().split(b"\n") if ln] if path.exists() else []


def test_lines_hold_the_same_fields_and_values_as_before(tmp_path):
    """Each line is the JSON of the record as a dict (the former format), field for field, in the same order."""
    write_control(tmp_path, "ep", True, 1.0)
    tel = Telemetry(tmp_path, "ep", 'bank "m":2')
    rng = random.Random(7)
    expected = []
    for i in range(2000):
        started = rng.choice([time.time() + rng.random(), rng.uniform(0, 4e9),
                              round(time.time(), 3) + rng.choice([0.0005, 0.9999995, 0.9999996, -5e-7])])
        latency = rng.random() * rng.choice([1e-5, 1e-3, 1, 100])
        client = rng.choice([None, ("127.0.0.1", rng.randrange(65536)), ("::1", 80)])
        path = rng.choice(["/score", "/", "/swagger.json", '/odd "path"\\é\u2028', f"/scan/{i}"])
        records = rng.choice([None, [{"age": i, "job": "admin."}] * 25])
        tel.record(request_id=f"id-{i}", method=rng.choice(["POST", "GET"]), path=path, status=200, latency_s=latency,
                   rows=i, client=client, started=started, records=records)
        entry = {"timestamp": datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds"),
                 "request_id": f"id-{i}", "method": None, "path": path, "status": 200,
                 "latency_ms": round(latency * 1000, 3), "rows": i, "model": 'bank "m":2',
                 "client": f"{client[0]}:{client[1]}" if client else None}
        if records is not None:
            entry["payload"] = records[:MAX_SAMPLED_ROWS]
        expected.append(entry)
    tel.close()
    got = lines(telemetry_log(tmp_path, "ep"))
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        e["method"] = g["method"]  # drawn at random above; checked below
        assert list(g) == list(e) and g == e
    assert {g["method"] for g in got} == {"POST", "GET"}


def test_a_line_is_on_disk_within_the_flush_interval(tmp_path):
    """A writer writes its first AT_ONCE lines of a flush_s at once; past them it holds the lines for one write,
    made by a timer on the event loop within flush_s."""
    path = tmp_path / "ep.telemetry.jsonl"
    log = JsonLines(path, flush_s=0.3)
    seen: dict[str, float] = {}

    async def main() -> None:
        t0 = time.monotonic()
        for n in range(AT_ONCE):
            log.append(b'{"n":%d}\n' % n)
            assert len(lines(path)) == n + 1  # at once
        for n in range(AT_ONCE, 200):
            log.append(b'{"n":%d}\n' % n)
        assert len(lines(path)) == AT_ONCE  # the rest wait for their batch
        while len(lines(path)) < 200 and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.01)
        seen["batch"] = time.monotonic() - t0

    uvloop.run(main())
    assert [e["n"] for e in lines(path)] == list(range(200))
    assert seen["batch"] <= 0.3 + 0.25, seen  # within the interval (plus a loaded machine's timer lag)
    log.close()


def test_close_writes_the_batch_after_the_loop_ended(tmp_path):
    path = tmp_path / "ep.telemetry.jsonl"
    log = JsonLines(path, flush_s=60)

    async def main() -> None:
        for n in range(AT_ONCE + 2):  # the last two wait for a timer 60 s away: the loop ends first
            log.append(b'{"n":%d}\n' % n)

    uvloop.run(main())
    assert [e["n"] for e in lines(path)] == list(range(AT_ONCE))
    log.close()
    assert [e["n"] for e in lines(path)] == list(range(AT_ONCE + 2))


def test_batches_rotate_by_size_and_lose_no_line(tmp_path):
    """Two writers (two workers) sharing one log, in bursts: every line once, the log rotated, no file far over."""
    path = tmp_path / "ep.telemetry.jsonl"
    writers = [JsonLines(path, max_bytes=20_000, backups=1000, flush_s=0.02) for _ in range(2)]
    line = b'{"request_id":"r%05d","pad":"' + b"x" * 40 + b'"}\n'

    async def main() -> None:
        for i in range(6000):
            writers[i % 2].append(line % i)
            if i % 300 == 299:
                await asyncio.sleep(0.03)  # a burst's end: the timers write the batches

    uvloop.run(main())
    for w in writers:
        w.close()
    files = list(tmp_path.iterdir())
    ids = [json.loads(ln)["request_id"] for f in files for ln in f.read_text().splitlines()]
    assert sorted(ids) == [f"r{i:05d}" for i in range(6000)]
    assert len(files) > 10
    assert all(f.stat().st_size <= 20_000 + 2 * 300 * len(line % 0) for f in files)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory, bank_csv):
    """An endpoint (2 workers) whose telemetry batches wait up to 60 s: only a stop writes them sooner."""
    proj, sample = sampled_project(tmp_path_factory.mktemp("batches"), bank_csv, 3000, seed=1)
    try:
        proj.ok("train", "--data", str(sample), "--max-trials", "1", "--time-budget", "30")
        res = proj.cli("--configs", str(proj.configs), "deploy", "--best", "--json",
                       env=proj.env() | {"OPML_TELEMETRY_FLUSH_S": "60"})
        assert res.exit_code == 0, res.output
        ep = json.loads(res.stdout)
        proj.ok("enable-logs")
        key = json.loads(proj.ok("endpoint", "keys", ep["name"], "--json").stdout)["primaryKey"]
        rows = json.loads(pd.read_csv(sample).drop(columns=["response"]).head(2).to_json(orient="records"))
        yield proj, ep, key, rows
    finally:
        proj.delete_endpoints()


def burst(ep: dict, key: str, rows: list, prefix: str) -> list[str]:
    """AT_ONCE + 2 requests on one keep-alive connection (so one worker): the last two wait for a batch."""
    ids = [f"{prefix}-{i}" for i in range(AT_ONCE + 2)]
    with requests.Session() as s:
        for rid in ids:
            r = s.post(ep["scoring_uri"], json={"data": rows}, timeout=30,
                       headers={"Authorization": f"Bearer {key}", "x-request-id": rid})
            assert r.status_code == 200
    return ids


def test_a_graceful_stop_writes_the_waiting_lines(endpoint):
    proj, ep, key, rows = endpoint
    log = telemetry_log(proj.ws, ep["name"])
    ids = burst(ep, key, rows, "stop")
    time.sleep(0.5)
    before = [e["request_id"] for e in lines(log) if e["request_id"].startswith("stop-")]
    assert before == ids[:AT_ONCE]  # at once; the last two wait for their batch (60 s here)
    proj.ok("endpoint", "restart", ep["name"])  # SIGTERM: the workers stop gracefully, then it starts again
    after = [e for e in lines(log) if e["request_id"].startswith("stop-")]
    assert [e["request_id"] for e in after] == ids
    assert all(e["status"] == 200 and e["rows"] == 2 for e in after)

    # restarted without OPML_TELEMETRY_FLUSH_S: the default interval (0.1 s) holds a line only briefly
    ids = burst(ep, key, rows, "quick")
    sent = time.monotonic()
    while ids[-1] not in {e["request_id"] for e in lines(log)} and time.monotonic() - sent < 10:
        time.sleep(0.01)
    assert [e["request_id"] for e in lines(log) if e["request_id"].startswith("quick-")] == ids
    assert time.monotonic() - sent < 2.0


@pytest.mark.parametrize("value", ["soon", "-1", "inf"])
def test_a_bad_flush_interval_is_refused_by_deploy_in_one_line(workspace, cli: Cli, value):
    """Checked before the model is looked up or any process starts: the model named here does not exist."""
    line = cli.fails("deploy", "--model", "ghost:1", env={"OPML_TELEMETRY_FLUSH_S": value})
    assert "OPML_TELEMETRY_FLUSH_S must be a number of seconds >= 0" in line and repr(value) in line
