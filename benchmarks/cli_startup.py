"""Median wall time of `opml --help` over N runs (target: under 0.3 s).

Usage: python benchmarks/cli_startup.py [N]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time


def main(runs: int = 10) -> None:
    exe = shutil.which("opml")
    cmd = [exe, "--help"] if exe else [sys.executable, "-m", "opml", "--help"]
    subprocess.run(cmd, capture_output=True, check=True)  # warm the filesystem cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    print(f"command: {' '.join(cmd)}")
    print(f"runs: {runs}  median: {statistics.median(times):.3f} s  min: {min(times):.3f} s  max: {max(times):.3f} s")
    print(f"target: < 0.300 s  -> {'OK' if statistics.median(times) < 0.3 else 'TOO SLOW'}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
