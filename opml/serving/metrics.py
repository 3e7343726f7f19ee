"""Prometheus counters for the scoring endpoint: requests by status, a latency histogram, rows scored."""

from __future__ import annotations

import bisect
from collections import Counter

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, model: str) -> None:
        self.model = model
        self.requests: Counter[tuple[str, int]] = Counter()
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.rows = 0

    def observe(self, path: str, status: int, seconds: float, rows: int) -> None:
        self.requests[(path, status)] += 1
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1
        self.rows += rows

    def render(self) -> bytes:
        label = f'model="{self.model}"'
        lines = [
            "# HELP opml_requests_total HTTP requests by path and status.",
            "# TYPE opml_requests_total counter",
        ]
        for (path, status), n in sorted(self.requests.items()):
            lines.append(f'opml_requests_total{{{label},path="{path}",status="{status}"}} {n}')
        lines += [
            "# HELP opml_request_duration_seconds Request latency.",
            "# TYPE opml_request_duration_seconds histogram",
        ]
        cumulative = 0
        for bound, n in zip((*BUCKETS, float("inf")), self.buckets, strict=True):
            cumulative += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'opml_request_duration_seconds_bucket{{{label},le="{le}"}} {cumulative}')
        lines.append(f"opml_request_duration_seconds_sum{{{label}}} {self.latency_sum:.6f}")
        lines.append(f"opml_request_duration_seconds_count{{{label}}} {self.latency_count}")
        lines += [
            "# HELP opml_rows_scored_total Rows scored.",
            "# TYPE opml_rows_scored_total counter",
            f"opml_rows_scored_total{{{label}}} {self.rows}",
        ]
        return ("\n".join(lines) + "\n").encode()
