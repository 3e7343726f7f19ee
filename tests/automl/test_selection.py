"""Model selection: the scoring-cost proxy on fitted models, and the one-standard-error rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from opml.automl.pipeline import CandidatePipeline
from opml.automl.results import TrialResult
from opml.automl.selection import select
from opml.training.report import render


@pytest.fixture(scope="module")
def xy(small_df):
    X = small_df.drop(columns=["response"])
    y = (small_df["response"] == "yes").astype(int).to_numpy()
    return X, y


@pytest.mark.parametrize(("algorithm", "params"), [
    ("LightGBM", {"n_estimators": 20, "num_leaves": 15, "learning_rate": 0.1, "min_child_samples": 300}),
    ("XGBoostClassifier", {"n_estimators": 20, "max_depth": 4, "learning_rate": 0.1}),
    ("RandomForest", {"n_estimators": 10, "min_samples_leaf": 5}),
    ("LogisticRegression", {"C": 1.0}),
])
def test_scoring_cost_counts_the_fitted_models_leaves(xy, algorithm, params):
    X, y = xy
    p = CandidatePipeline(algorithm, params, n_jobs=1).fit(X, y)
    model = p.model_
    if algorithm == "LightGBM":
        expected = sum(t["num_leaves"] for t in model.booster_.dump_model()["tree_info"])
        assert expected < 20 * 15  # trees stop short of num_leaves: the count is of the fitted trees
    elif algorithm == "XGBoostClassifier":
        frame = model.get_booster().trees_to_dataframe()
        expected = int((frame["Feature"] == "Leaf").sum())
    elif algorithm == "RandomForest":
        expected = sum(e.get_n_leaves() for e in model.estimators_)
    else:
        expected = model.coef_.size
    assert p.scoring_cost() == expected > 0


def _trial(i: int, y: np.ndarray, noise: float, cost: int, rng: np.random.Generator) -> TrialResult:
    score = y + rng.normal(0, noise, len(y))
    p1 = 1 / (1 + np.exp(-score))
    oof = np.column_stack([1 - p1, p1])
    return TrialResult(iteration=i, pipeline_name=f"m{i}", algorithm="LightGBM", scaler=None, params={},
                       score=float(roc_auc_score(y, p1)), scoring_cost=cost, oof=oof)


def test_one_se_takes_the_cheapest_within_one_standard_error():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.2).astype(int)
    folds = np.arange(2000) % 5
    trials = [_trial(0, y, 1.00, 5000, rng), _trial(1, y, 1.02, 400, rng), _trial(2, y, 1.03, 400, rng),
              _trial(3, y, 3.0, 10, rng), _trial(4, y, 1.01, 900, rng)]
    board = sorted(trials, key=lambda t: -t.score)
    top = board[0]
    per_fold = [roc_auc_score(y[folds == k], top.oof[folds == k, 1]) for k in range(5)]
    se = np.std(per_fold, ddof=1) / np.sqrt(5)
    eligible = [t for t in board if t.score >= top.score - se]
    assert trials[3] not in eligible and len(eligible) >= 2  # the cheap, weak model is outside the band

    chosen, record = select(board, "one_se", "AUC_weighted", y, folds)
    cheapest = min(t.scoring_cost for t in eligible)
    assert chosen.scoring_cost == cheapest and chosen is not trials[3]
    same_cost = [t for t in eligible if t.scoring_cost == cheapest]
    assert chosen.score == max(t.score for t in same_cost)  # a cost tie goes to the higher score
    assert record["standard_error"] == pytest.approx(se) and record["eligible"] == len(eligible)
    assert record["top"]["iteration"] == top.iteration and record["chosen"]["iteration"] == chosen.iteration

    best, record = select(board, "best", "AUC_weighted", y, folds)
    assert best is top and record["chosen"] == record["top"]
    with pytest.raises(ValueError, match="unknown model_selection 'fastest'"):
        select(board[:1], "fastest", "AUC_weighted", y, folds)


def test_tolerance_takes_the_cheapest_within_a_fixed_margin_of_the_top_score():
    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.2).astype(int)
    folds = np.arange(2000) % 5
    trials = [_trial(i, y, noise, cost, rng) for i, (noise, cost) in
              enumerate([(1.00, 50_000), (1.01, 4_000), (1.05, 300), (1.3, 10)])]
    board = sorted(trials, key=lambda t: -t.score)
    top = board[0]
    for tol in (0.0, 0.0005, 0.01, 0.05):
        chosen, record = select(board, "tolerance", "AUC_weighted", y, folds, tol)
        within = [t for t in board if t.score >= top.score - tol]
        assert chosen.scoring_cost == min(t.scoring_cost for t in within) and chosen.score >= top.score - tol
        assert record["tolerance"] == tol and record["eligible"] == len(within) and "floor" in record
    assert select(board, "tolerance", "AUC_weighted", y, folds, 0.0)[0] is top  # no margin: the top score
    # delivery falls back within the same margin when the choice can be neither refit nor bagged
    from opml.automl.selection import deliver

    chosen, _ = select(board, "tolerance", "AUC_weighted", y, folds, 1.0)
    final, how, rec = deliver(board, "tolerance", "AUC_weighted", y, folds, refit_fits=lambda t: t is not chosen,
                              has_bag=lambda t: False, refit_seconds=lambda t: 1.0, tolerance=1.0)
    assert final is not chosen and how == "refit" and rec["refit_instead"]["iteration"] == final.iteration
    assert final.scoring_cost == min(t.scoring_cost for t in board if t is not chosen)


def test_the_default_rule_is_the_cheapest_within_the_tolerance():
    """`tolerance` 0.0005 by default (chosen by benchmarks/automl_quality.py --outer), in the settings and the
    shipped config; `--model-selection` accepts every rule."""
    from pathlib import Path

    from opml.config import AutoMLSettings, automl_settings

    default = AutoMLSettings(dataset={"name": "d", "label_column": "y"})
    assert (default.model_selection, default.selection_tolerance) == ("tolerance", 0.0005)
    shipped = automl_settings(Path(__file__).resolve().parents[2] / "configs")
    assert (shipped.model_selection, shipped.selection_tolerance) == ("tolerance", 0.0005)
    with pytest.raises(ValueError):
        AutoMLSettings(dataset={"name": "d", "label_column": "y"}, selection_tolerance=-0.1)


def test_the_report_says_why_the_top_score_was_passed_over():
    selection = {"rule": "one_se", "standard_error": 0.0017, "eligible": 6,
                 "top": {"iteration": 15, "pipeline": "StackEnsemble", "score": 0.9513, "scoring_cost": 48700},
                 "chosen": {"iteration": 0, "pipeline": "MaxAbsScaler, LightGBM", "score": 0.9505,
                            "scoring_cost": 3100}}
    summary = {"settings": {"primary_metric": "AUC_weighted"}, "selection": selection,
               "best": {"pipeline": "MaxAbsScaler, LightGBM", "metrics": {"AUC_weighted": 0.9505, "accuracy": 0.91}}}
    text = render(summary, run_id="AutoML_x")
    assert "Best run: MaxAbsScaler, LightGBM" in text
    assert "one standard error (0.0017)" in text and "StackEnsemble (0.9513)" in text
    assert "15.7x less scoring cost (3,100 vs 48,700 leaves)" in text
    selection.update(rule="tolerance", tolerance=0.0005)
    assert "within the selection tolerance (0.0005) of the top AUC_weighted" in render(summary, run_id="AutoML_x")
    selection["rule"] = "one_se"
    selection["chosen"] = selection["top"]
    assert "one_se" not in render(summary, run_id="AutoML_x")


def test_experiment_records_costs_and_its_choice(small_run):
    result, _ = small_run
    sel = result.selection
    assert sel["rule"] == "one_se" and sel["standard_error"] > 0
    assert result.best.iteration == sel["chosen"]["iteration"] or "refit_instead" in sel
    top = result.leaderboard[0]
    assert sel["top"]["iteration"] == top.iteration
    assert result.best.score >= top.score - sel["standard_error"]
    costs = {t.iteration: t.scoring_cost for t in result.trials}
    assert all(t.scoring_cost > 0 for t in result.leaderboard)
    for ens in (t for t in result.leaderboard if t.members):
        assert ens.scoring_cost == sum(costs[m["iteration"]] for m in ens.members)
    assert all(t.scoring_cost >= result.best.scoring_cost for t in result.leaderboard
               if t.score >= sel["floor"])
