"""Apache Bench (`ab`): build the command line, run it, parse its report into numbers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from opml.errors import OpmlError

PERCENTILES = (50, 66, 75, 80, 90, 95, 98, 99, 100)


def ab_path() -> str:
    path = shutil.which("ab")
    if path is None:
        raise OpmlError("Apache Bench (ab) is not installed", "install it with `apt-get install apache2-utils`")
    return path


def command(url: str, payload: Path, *, requests: int, concurrency: int, key: str | None = None,
            keepalive: bool = False, timeout_s: int = 30) -> list[str]:
    cmd = [ab_path(), "-n", str(requests), "-c", str(concurrency), "-s", str(timeout_s), "-p", str(payload),
           "-T", "application/json"]
    if keepalive:
        cmd.append("-k")
    if key:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    return [*cmd, url]


def run(cmd: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run ab and parse its report; a run that produced no report raises with ab's own message."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if "Requests per second" not in proc.stdout:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise OpmlError(f"ab failed: {why}", "check that the endpoint is up (`opml endpoint show`)")
    return parse(proc.stdout)


def unanswered(text: str, failed: int) -> int:
    """The requests ab got no reply for, from its failure counters, each counted once.

    ab (2.4) counts one request whose connection the server resets three times: Receive (the recv error),
    Length (its reply is 0 bytes long) and Exceptions (poll's POLLERR, seen in the same poll round). A request
    whose connection is closed without a reply is one Length error. So every unanswered request is one Length
    (or Connect) error, and an Exception without its Receive is another; checked against the connections a
    killed endpoint worker held (frozen with SIGSTOP and read from /proc first), this matched in every round.
    """
    m = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", text)
    if not m:
        return failed
    connect, receive, length, exceptions = map(int, m.groups())
    return connect + length + max(0, exceptions - receive)


def parse(text: str) -> dict[str, Any]:
    """Numbers from ab's report: throughput, latency percentiles (ms), failures."""
    def num(pattern: str, default: float | None = None) -> float | None:
        m = re.search(pattern, text, re.MULTILINE)
        return float(m.group(1)) if m else default

    percentiles = {}
    for p in PERCENTILES:
        v = num(rf"^\s*{p}%\s+(\d+)")
        if v is not None:
            percentiles[str(p)] = v
    failed = int(num(r"^Failed requests:\s+(\d+)", 0))
    return {
        "unanswered_requests": unanswered(text, failed),
        "complete_requests": int(num(r"^Complete requests:\s+(\d+)", 0)),
        "failed_requests": failed,
        "non_2xx_responses": int(num(r"^Non-2xx responses:\s+(\d+)", 0)),
        "concurrency": int(num(r"^Concurrency Level:\s+(\d+)", 0)),
        "time_taken_s": num(r"^Time taken for tests:\s+([\d.]+)"),
        "requests_per_second": num(r"^Requests per second:\s+([\d.]+)"),
        "time_per_request_ms": num(r"^Time per request:\s+([\d.]+) \[ms\] \(mean\)$"),
        "time_per_request_all_ms": num(r"^Time per request:\s+([\d.]+) \[ms\] \(mean, across all"),
        "transfer_rate_kbps": num(r"^Transfer rate:\s+([\d.]+)"),
        "latency_ms": percentiles,
    }
