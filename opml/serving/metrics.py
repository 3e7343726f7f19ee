"""Prometheus counters for the scoring endpoint: requests by path and status, a latency histogram, rows scored.

Counters live in a fixed layout of float64 slots. With a `shared` folder (one per endpoint process
generation, made before the workers fork) each worker maps its own file there (MAP_SHARED), and
/metrics, whichever worker answers it, sums every worker's file: the endpoint reports one set of
counters however many processes serve it, like prometheus_client's multiprocess mode.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

import numpy as np

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PATHS = ("/score", "/", "/swagger.json", "/metrics")  # any other path counts as "other"
STATUSES = (200, 400, 401, 404, 405, 413, 422, 500)  # any other status counts as "other"
_N_REQ = (len(PATHS) + 1) * (len(STATUSES) + 1)
_HIST = _N_REQ  # then len(BUCKETS) + 1 bucket counts, latency sum, latency count, rows
_SUM, _COUNT, _ROWS = _HIST + len(BUCKETS) + 1, _HIST + len(BUCKETS) + 2, _HIST + len(BUCKETS) + 3
SLOTS = _ROWS + 1


class Metrics:
    def __init__(self, model: str, shared: Path | None = None) -> None:
        self.model = model
        self.shared = shared
        self._path_index = {p: i for i, p in enumerate(PATHS)}
        self._status_index = {s: i for i, s in enumerate(STATUSES)}
        if shared is None:
            self.slots = np.zeros(SLOTS)
        else:
            shared.mkdir(parents=True, exist_ok=True)
            self.file = shared / f"{os.getpid()}.bin"
            np.zeros(SLOTS).tofile(self.file)
            # a plain ndarray over the shared mapping: np.memmap's Python-level __getitem__ costs per request
            self.slots = np.memmap(self.file, dtype=np.float64, mode="r+", shape=(SLOTS,)).view(np.ndarray)
        self._cells = memoryview(self.slots)  # the same memory: a float per item, without numpy's per-item cost

    def observe(self, path: str, status: int, seconds: float, rows: int) -> None:
        s = self._cells
        p = self._path_index.get(path, len(PATHS))
        s[p * (len(STATUSES) + 1) + self._status_index.get(status, len(STATUSES))] += 1
        s[_HIST + bisect.bisect_left(BUCKETS, seconds)] += 1
        s[_SUM] += seconds
        s[_COUNT] += 1
        s[_ROWS] += rows

    def totals(self) -> np.ndarray:
        """This worker's counters, plus every sibling worker's when shared."""
        if self.shared is None:
            return self.slots.copy()
        total = np.zeros(SLOTS)
        for f in self.shared.glob("*.bin"):
            try:
                other = np.fromfile(f, dtype=np.float64)
            except OSError:  # a worker that just stopped
                continue
            if other.shape == (SLOTS,):
                total += other
        return total

    def render(self) -> bytes:
        t = self.totals()
        label = f'model="{self.model}"'
        lines = [
            "# HELP opml_requests_total HTTP requests by path and status.",
            "# TYPE opml_requests_total counter",
        ]
        for pi, path in enumerate((*PATHS, "other")):
            for si, status in enumerate((*STATUSES, "other")):
                n = int(t[pi * (len(STATUSES) + 1) + si])
                if n:
                    lines.append(f'opml_requests_total{{{label},path="{path}",status="{status}"}} {n}')
        lines += [
            "# HELP opml_request_duration_seconds Request latency.",
            "# TYPE opml_request_duration_seconds histogram",
        ]
        cumulative = 0
        for i, bound in enumerate((*BUCKETS, float("inf"))):
            cumulative += int(t[_HIST + i])
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'opml_request_duration_seconds_bucket{{{label},le="{le}"}} {cumulative}')
        lines.append(f"opml_request_duration_seconds_sum{{{label}}} {t[_SUM]:.6f}")
        lines.append(f"opml_request_duration_seconds_count{{{label}}} {int(t[_COUNT])}")
        lines += [
            "# HELP opml_rows_scored_total Rows scored.",
            "# TYPE opml_rows_scored_total counter",
            f"opml_rows_scored_total{{{label}}} {int(t[_ROWS])}",
        ]
        return ("\n".join(lines) + "\n").encode()

    def close(self) -> None:
        """Drop this worker's file (its counts leave the endpoint's totals, as when a process restarts)."""
        if self.shared is not None:
            self.file.unlink(missing_ok=True)
