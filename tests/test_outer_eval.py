"""benchmarks/automl_quality.py --outer: the outer evaluation of the selection rules, smoke-run small and real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import benchmark_module

REPO = Path(__file__).resolve().parents[1]


def _outer_eval():
    return benchmark_module("outer_eval")


def _rule(auc: float, f1: float, leaves: int, us: float, cv: float, pipeline: str) -> dict:
    return {"pipeline": pipeline, "auc": auc, "f1": f1, "accuracy": 0.9, "leaves": leaves, "us_row": us,
            "cv_score": cv}


def test_the_table_pairs_each_rule_with_best_split_by_split(capsys):
    oe = _outer_eval()
    splits = [
        {"top": {"cv_score": 0.952}, "rules": {"best": _rule(0.950, 0.66, 20000, 100, 0.952, "VotingEnsemble"),
                                               "one_se": _rule(0.948, 0.65, 3000, 30, 0.951, "LightGBM")}},
        {"top": {"cv_score": 0.953}, "rules": {"best": _rule(0.951, 0.67, 22000, 110, 0.953, "StackEnsemble"),
                                               "one_se": _rule(0.952, 0.66, 2000, 20, 0.950, "LightGBM")}},
    ]
    oe.report(splits)
    out = capsys.readouterr().out
    best = next(line for line in out.splitlines() if line.startswith("best "))
    one_se = next(line for line in out.splitlines() if line.startswith("one_se "))
    assert "+0.0000 ±0.0000 (0/2)" in best
    diff = np.array([-0.002, 0.001])
    assert f"{diff.mean():+.4f} ±{diff.std(ddof=1):.4f} (1/2)" in one_se  # paired per split, lower in one of two
    assert "0.9500 ±0.0028 [0.9480..0.9520]" in one_se and "2,500 [2,000..3,000]" in one_se
    assert one_se.rstrip().endswith("0.0020")  # CV given up: mean of 0.001 and 0.003
    assert "one_se         LightGBM x2" in out and "VotingEnsemble x1; StackEnsemble x1" in out
    with pytest.raises(SystemExit, match="FOLDSxREPEATS"):
        oe.parse_spec("five")
    assert oe.parse_spec("5x2") == (5, 2)


def test_candidate_rules_pick_the_cheapest_inside_their_band():
    """The rules the outer evaluation compares, on candidates with real out-of-fold predictions."""
    from sklearn.metrics import roc_auc_score

    from opml.automl.results import TrialResult

    oe = _outer_eval()
    rng = np.random.default_rng(0)
    y = (rng.random(3000) < 0.15).astype(int)
    folds = np.arange(3000) % 5
    base = y + rng.normal(0, 1.0, len(y))

    def trial(i: int, noise: float, cost: int) -> TrialResult:
        p1 = 1 / (1 + np.exp(-(base + rng.normal(0, noise, len(y)))))
        return TrialResult(iteration=i, pipeline_name=f"m{i}", algorithm="LightGBM", scaler=None, params={},
                           score=float(roc_auc_score(y, p1)), scoring_cost=cost, oof=np.column_stack([1 - p1, p1]))

    board = sorted([trial(0, 0.0, 9000), trial(1, 0.02, 7000), trial(2, 0.05, 5000), trial(3, 0.15, 3000),
                    trial(4, 0.5, 1000), trial(5, 2.0, 100)], key=lambda t: -t.score)
    top = board[0]
    choices = oe.rule_choices(board, "AUC_weighted", y, folds)
    assert choices["best"] is top
    top_folds = np.array([roc_auc_score(y[folds == k], top.oof[folds == k, 1]) for k in range(5)])
    se = top_folds.std(ddof=1) / np.sqrt(5)
    for name, width in [("one_se", se), ("half_se", se / 2), *((f"within {t:g}", t) for t in oe.TOLERANCES)]:
        band = [t for t in board if t.score >= top.score - width]
        assert choices[name] is min(band, key=lambda t: t.scoring_cost), name
    paired = []
    for t in board:
        d = top_folds - np.array([roc_auc_score(y[folds == k], t.oof[folds == k, 1]) for k in range(5)])
        if d.mean() <= d.std(ddof=1) / np.sqrt(5) or t is top:
            paired.append(t)
    assert choices["paired_se"] is min(paired, key=lambda t: t.scoring_cost)
    assert len({c.iteration for c in choices.values()}) >= 4  # the bands differ here: the test tells the rules apart


def test_outer_mode_scores_every_rule_on_the_outer_part(bank_csv, tmp_path):
    """2 outer folds x 1 repeat of a 4,000-row sample, 15 s searches: one subprocess per split."""
    saved = tmp_path / "outer.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/automl_quality.py", "--data", str(bank_csv), "--outer", "2x1", "--budget", "15",
         "--sample", "4000", "--outer-json", str(saved)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    splits = json.loads(saved.read_text())
    assert [(s["repeat"], s["fold"]) for s in splits] == [(1, 1), (1, 2)]
    assert all(s["inner_rows"] == s["outer_rows"] == 2000 for s in splits)
    for s in splits:
        rules = s["rules"]
        assert {"best", "one_se", "paired_se"} <= set(rules)
        assert rules["best"]["cv_score"] == s["top"]["cv_score"]  # `best` takes the top of the leaderboard
        assert all(r["cv_score"] <= s["top"]["cv_score"] for r in rules.values())
        for r in rules.values():
            assert 0.8 < r["auc"] <= 1.0 and 0.0 < r["f1"] <= 1.0 and 0.8 < r["accuracy"] <= 1.0
            assert r["leaves"] > 0 and r["us_row"] > 0 and r["engine"] == "compiled"
            assert 0.0 < r["threshold"] < 1.0  # tuned for the minority F1 on the inner out-of-fold predictions
        assert rules[s["product_rule"]]["delivery"].startswith("product")  # the product's own model, as delivered
        assert s["search_s"] <= 15 * 1.1
    out = proc.stdout
    assert "split 1/2 done" in out and "split 2/2 done" in out  # progress per split: a partial log is useful
    assert "Outer evaluation over 2 splits" in out
    one_se = next(line for line in out.splitlines() if line.startswith("one_se "))
    diff = np.array([s["rules"]["one_se"]["auc"] - s["rules"]["best"]["auc"] for s in splits])
    assert f"{diff.mean():+.4f}" in one_se
