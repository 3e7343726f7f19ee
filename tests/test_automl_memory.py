"""benchmarks/automl_memory.py: RSS sampled through a real (short) search, and the growth it reports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import benchmark_module

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "automl_memory.py"


def _memory():
    return benchmark_module("automl_memory")


def test_growth_is_per_candidate_from_the_second_search_sample():
    growth = _memory().growth_per_candidate
    samples = [(10, "search", 1.0, 500.0), (20, "search", 2.0, 600.0), (30, "search", 2.5, 605.0),
               (40, "search", 3.0, 610.0), (41, "ensemble", 4.0, 900.0)]
    assert growth(samples) == 0.5  # 10 MB over 20 candidates: the first sample and the ensembles left out
    assert growth(samples[:2]) is None
    step = [(10, "search", 1.0, 500.0), (20, "search", 2.0, 600.0), (30, "search", 2.5, 600.0),
            (40, "search", 3.0, 630.0), (50, "search", 3.5, 630.0), (60, "search", 4.0, 630.0)]
    assert growth(step) == pytest.approx(0.9)  # one step: least squares over the five samples, not the ends (0.75)


def test_the_script_samples_a_real_search(bank_csv, tmp_path):
    data = tmp_path / "sample.csv"
    pd.read_csv(bank_csv).sample(2000, random_state=0).to_csv(data, index=False)
    out = subprocess.run([sys.executable, str(SCRIPT), "--budget", "15", "--every", "2", "--data", str(data)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = re.findall(r"candidate +(\d+) +(\w+) +RSS +(\d+) MB", out.stdout)
    assert len(lines) >= 3 and {stage for _, stage, _ in lines} >= {"search"}
    assert all(int(rss) > 100 for _, _, rss in lines)
    assert re.search(r"growth per candidate: [+-]\d+\.\d\d MB; peak RSS \d+ MB", out.stdout), out.stdout


def test_bad_options_are_one_line(tmp_path):
    for args, says in ((["--every", "0"], "--every must be >= 1"),
                       (["--data", str(tmp_path / "none.csv")], "dataset not found")):
        out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "Traceback" not in out.stderr and says in out.stderr, out.stderr
