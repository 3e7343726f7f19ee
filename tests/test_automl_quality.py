"""benchmarks/automl_quality.py: the peers' wiring (AutoGluon in a venv of its own) and the paired holdout."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import benchmark_module

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "automl_quality.py"


def _quality():
    return benchmark_module("automl_quality")


def _autogluon_python() -> str | None:
    """This interpreter if it imports AutoGluon, else $OPML_PEERS_PYTHON if that one does."""
    return _quality().peer_python("autogluon", os.environ.get("OPML_PEERS_PYTHON"))


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    df = pd.DataFrame({"age": rng.integers(18, 90, n), "x": x, "job": rng.choice(["a", "b", "c"], n),
                       "response": np.where(x + rng.normal(scale=0.7, size=n) > 1.0, "yes", "no")})
    path = tmp_path / "small.csv"
    df.to_csv(path, index=False)
    return path


def test_peer_options_parse_and_unknown_peers_are_refused(capsys):
    q = _quality()
    args = q.build_parser().parse_args(["--peers", "autogluon", "--peers-python", "/v/bin/python"])
    assert args.peers == ["autogluon"] and args.peers_python == "/v/bin/python" and args.protocol is None
    assert q.build_parser().parse_args([]).peers == []
    with pytest.raises(SystemExit):
        q.build_parser().parse_args(["--peers", "autogluon,h2o"])
    assert "unknown peer h2o (known: autogluon)" in capsys.readouterr().err


def test_a_peer_no_interpreter_imports_is_named_with_its_install_command(tmp_path):
    q = _quality()
    if importlib.util.find_spec("autogluon") is not None:
        pytest.skip("AutoGluon is installed in this interpreter")
    assert q.peer_python("autogluon", None) is None
    assert q.peer_python("autogluon", str(tmp_path / "no-such-python")) is None
    assert q.peer_python("autogluon", sys.executable) is None  # runs, but cannot import it
    line = q.not_installed("autogluon", "/v/bin/python")
    assert line.startswith("autogluon not installed in this Python or /v/bin/python; skipped")
    assert "pip install 'autogluon.tabular[catboost,xgboost]'" in line and "--peers-python" in line


def test_the_holdout_is_fold_0_and_every_system_fits_on_the_other_rows(small_csv, tmp_path):
    q = _quality()
    df = pd.read_csv(small_csv)
    rows = q.holdout_rows(df["response"].to_numpy())
    assert rows == [int(i) for i in q._folds(df["response"].to_numpy())[0][1]] and len(rows) == len(df) // 5
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    fit, test = q._split(df, path)
    assert len(fit) + len(test) == len(df) and test.equals(df.iloc[rows].reset_index(drop=True))
    assert q._split(df, None)[1] is None


def test_without_autogluon_the_rest_runs_on_the_paired_holdout(small_csv):
    """The whole script: the missing peer is named, the rest (FLAML where installed, else opml) still runs and
    is scored on the held-out fifth."""
    if _quality().peer_python("autogluon", None) is not None:
        pytest.skip("AutoGluon is installed in this interpreter: the message is not printed")
    system, budget = ("flaml", "2") if importlib.util.find_spec("flaml") else ("opml", "15")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(small_csv), "--budget", budget, "--only", system,
         "--peers", "autogluon"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "autogluon not installed in this Python (and no --peers-python given); skipped" in out
    assert "Protocol: paired holdout" in out and "fold 0's 80 rows" in out
    auc = next(line for line in out.splitlines() if line.startswith("paired holdout AUC (fold 0)"))
    assert 0.5 < float(auc.split()[-1]) <= 1.0
    assert "AutoGluon" not in out.split("Protocol:")[1]


def test_autogluon_worker_scores_the_holdout_rows(small_csv, tmp_path):
    """A tiny budget through AutoGluon's own interpreter; skipped only when no interpreter has AutoGluon."""
    python = _autogluon_python()
    if python is None:
        pytest.skip("AutoGluon not installed (set OPML_PEERS_PYTHON to a venv's python that has it)")
    q = _quality()
    y = pd.read_csv(small_csv)["response"].to_numpy()
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(q.holdout_rows(y)))
    out = q.run("autogluon", small_csv, 10, python, path)
    p = np.asarray(out["holdout_p"])
    assert out["system"].startswith("AutoGluon ") and len(p) == len(y) // 5 and ((p >= 0) & (p <= 1)).all()
    assert out["wall_s"] > 0 and out["rss_mb"] > 50
    assert q._scores(y[q.holdout_rows(y)] == "yes", p)["auc"] > 0.5


def test_the_paired_difference_is_centred_on_the_auc_gap():
    q = _quality()
    rng = np.random.default_rng(1)
    y = rng.random(3000) < 0.2
    weak = y + rng.normal(scale=1.5, size=len(y))
    strong = y + rng.normal(scale=0.5, size=len(y))
    assert q.paired_difference(y, weak, weak, 50) == (0.0, 0.0, 0.0)
    diff, lo, hi = q.paired_difference(y, weak, strong, 200)
    assert 0 < lo < diff < hi and diff > 0.1


def test_every_system_is_scored_on_the_holdout_against_the_first():
    q = _quality()
    rng = np.random.default_rng(2)
    y = rng.random(2000) < 0.2
    outs = [{"system": name, "holdout_p": (y + rng.normal(scale=noise, size=len(y))).tolist()}
            for name, noise in (("opml", 0.8), ("FLAML", 0.8), ("AutoGluon", 0.3))]
    scored = q.score_holdout(y, outs)
    assert [o["system"] for o in scored] == ["opml", "FLAML", "AutoGluon"]
    assert all("holdout_p" not in o and 0.5 < o["recv"]["auc"] <= 1 for o in scored)
    assert scored[0]["vs_first"] == (0.0, 0.0, 0.0)
    diff, lo, hi = scored[2]["vs_first"]
    assert diff == pytest.approx(scored[2]["recv"]["auc"] - scored[0]["recv"]["auc"]) and 0 < lo < diff < hi
