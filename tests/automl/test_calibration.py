"""Calibration: Brier score and maps on out-of-fold probabilities, applied alike by predict and the compiled scorer."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.special import expit, logit

from opml.automl.calibration import BINS, apply_map, assess, brier, fit_map
from opml.automl.model import OpmlClassifier, calibrated
from opml.automl.pipeline import CandidatePipeline
from opml.automl.plots import write_calibration_plot
from tests.automl.test_delivery import compiled_parity

PNG = b"\x89PNG\r\n\x1a\n"


def _synthetic(n: int, sharpen: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(outcomes, predicted probabilities, folds): true probabilities sharpened by `sharpen` on the logit scale."""
    rng = np.random.default_rng(seed)
    truth = rng.beta(0.6, 4.0, n)
    y = (rng.random(n) < truth).astype(int)
    return y, expit(sharpen * logit(np.clip(truth, 1e-6, 1 - 1e-6))), np.arange(n) % 5


def test_maps_fix_overconfident_probabilities():
    y, p, _ = _synthetic(20_000, 2.5)
    raw = brier(y, p)
    sig = fit_map("sigmoid", y, p)
    assert 0.3 < sig["coef"] < 0.5  # undoes the 2.5x sharpening
    iso = fit_map("isotonic", y, p)
    x, v = np.asarray(iso["x"]), np.asarray(iso["y"])
    assert 2 <= len(x) <= BINS and np.all(np.diff(x) > 0) and np.all(np.diff(v) > 0)  # increasing, no flat steps
    for cal in (sig, iso):
        out = apply_map(cal, p)
        assert brier(y, out) < raw - 0.002 and np.all((out >= 0) & (out <= 1))
        assert np.all(np.diff(out[np.argsort(p)]) >= 0)  # keeps the ranking
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_map("beta", y, p)


def test_applied_only_when_it_helps_beyond_fold_noise():
    y, p, folds = _synthetic(20_000, 2.5)
    report = assess(y, np.column_stack([1 - p, p]), folds, 1)
    assert report["applied"] in ("sigmoid", "isotonic") and report["map"]["method"] == report["applied"]
    m = report["methods"][report["applied"]]
    assert m["improvement"] > 2 * m["standard_error"] and m["brier"] < report["brier"] and m["keeps_auc"]
    assert len(report["brier_per_fold"]) == 5 and "lowers the cross-fitted" in report["reason"]
    y, p, folds = _synthetic(20_000, 1.0, seed=1)  # already calibrated: nothing to gain beyond noise
    report = assess(y, np.column_stack([1 - p, p]), folds, 1)
    assert report["applied"] is None and report["map"] is None and report["reason"].startswith("not applied")
    assert set(report["methods"]) == {"sigmoid", "isotonic"}
    three = np.full((30, 3), 1 / 3)
    multi = assess(np.arange(30) % 3, three, np.arange(30) % 5, 0)
    assert multi["applied"] is None and multi["brier"] == pytest.approx(2 / 3) and "multiclass" in multi["reason"]


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_predict_and_the_compiled_scorer_apply_the_same_map(small_df, bank_df, method):
    X = small_df.drop(columns=["response"])
    y = small_df["response"].to_numpy()
    lr = CandidatePipeline("LogisticRegression", {"C": 1.0, "class_weight": "balanced"}, scaler="MaxAbsScaler",
                           n_jobs=1)
    plain = OpmlClassifier(lr, threshold=0.4, positive_label="yes").fit(X, y)
    raw = plain.predict_proba(X)
    cal = fit_map(method, y == "yes", raw[:, 1])
    model = OpmlClassifier(lr, threshold=0.4, positive_label="yes", calibration=cal).fit(X, y)
    proba = model.predict_proba(X)
    assert np.array_equal(proba, calibrated(raw, cal, 1)) and np.allclose(proba.sum(axis=1), 1.0)
    assert brier(y == "yes", proba[:, 1]) < brier(y == "yes", raw[:, 1])  # balanced weights overstate "yes"
    assert (model.predict(X) == np.where(proba[:, 1] >= 0.4, "yes", "no")).all()  # the threshold sees calibrated p
    scorer = compiled_parity(model, bank_df.sample(3000, random_state=7).drop(columns=["response"]))
    assert f"calibration: {method}" in scorer.inference
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.predict_proba(X.head(50)), model.predict_proba(X.head(50)))
    # a model pickled before calibration existed has neither attribute: unchanged probabilities
    del plain.__dict__["calibration"], plain.__dict__["calibration_"]
    assert np.allclose(plain.predict_proba(X.head(50)), raw[:50], rtol=0, atol=1e-12)
    assert plain.get_params()["calibration"] is None


def test_the_experiment_reports_calibration(small_run, tmp_path):
    result, _ = small_run
    cal = result.calibration
    assert 0.0 < cal["brier"] < 0.25 and set(cal["methods"]) == {"sigmoid", "isotonic"}
    raw, proba = result.oof["raw_proba"], result.oof["proba"]
    assert raw is result.best.oof
    if cal["applied"]:
        assert result.model.calibration_ == cal["map"]
        assert np.array_equal(proba, calibrated(raw, cal["map"], 1))
    else:
        assert result.model.calibration_ is None and np.array_equal(proba, raw)
    # the tuned threshold is chosen on the probabilities predict returns
    from opml.automl.threshold import best_f1_threshold

    assert result.threshold["applied"] == best_f1_threshold(result.oof["y"] == 1, proba[:, 1])
    path = write_calibration_plot(result, tmp_path)
    assert path.name == "calibration_curve.png" and path.read_bytes()[:8] == PNG and path.stat().st_size > 5000
