"""CatBoost end to end: `opml train` with CatBoostClassifier allowed, `opml predict`, `opml deploy` on the
compiled scorer (endpoint probabilities equal `opml predict`'s within 1e-6), the plain path when a CatBoost
model cannot be compiled (`opml endpoint show` says why), and the search starting from the portfolio."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import requests

from tests.conftest import Project

pytestmark = pytest.mark.timeout(900)

ENDPOINT = "catboost-endpoint"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bank_csv):
    """A workspace with a CatBoost model trained by `opml train` (the family's portfolio start only)."""
    proj = Project(tmp_path_factory.mktemp("catboost"))
    proj.ok("auth")
    proj.set_config(allowed_models=["CatBoostClassifier"])
    run = json.loads(proj.ok("train", "--data", str(bank_csv), "--max-trials", "1", "--time-budget", "120",
                             "--model-selection", "best", "--json").stdout)
    try:
        yield proj, run
    finally:
        for item in json.loads(proj.ok("endpoint", "list", "--json").stdout):
            proj.ok("endpoint", "delete", item["name"])


def _post(ep: dict, key: str, rows: list[dict]) -> np.ndarray:
    body = {"Inputs": {"data": rows}, "GlobalParameters": {"method": "predict_proba"}}
    reply = requests.post(ep["scoring_uri"], json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert reply.status_code == 200, reply.text
    return np.asarray(reply.json()["Results"], dtype=np.float64)


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in frame.to_dict("records")]


def _check_endpoint(proj: Project, ep: dict, bank_csv, tmp_path, model_ref: str, rows: int) -> None:
    """The endpoint's probabilities equal `opml predict`'s within 1e-6 on `rows` rows (batches and one row)."""
    out = tmp_path / f"pred-{model_ref.replace(':', '-')}.csv"
    proj.ok("predict", "--model", model_ref, "--data", str(bank_csv), "--out", str(out))
    expected = pd.read_csv(out)["probability_yes"].to_numpy()[:rows]
    df = pd.read_csv(bank_csv).drop(columns=["response"]).head(rows)
    key = json.loads(proj.ok("endpoint", "keys", ep["name"], "--json").stdout)["primaryKey"]
    got = np.concatenate([_post(ep, key, _records(df.iloc[i: i + 2000]))[:, 1] for i in range(0, rows, 2000)])
    assert got.shape == (rows,)
    assert np.abs(got - expected).max() < 1e-6
    for i in (0, 1, 7):
        one = _post(ep, key, _records(df.iloc[i: i + 1]))
        assert abs(one[0, 1] - expected[i]) < 1e-6


def test_catboost_trains_predicts_and_serves_compiled(trained, bank_csv, tmp_path):
    proj, run = trained
    assert run["best"]["pipeline"].endswith("CatBoostClassifier"), run["best"]
    ref = run["model"]
    ep = json.loads(proj.ok("deploy", "--model", ref, "--name", ENDPOINT, "--json").stdout)
    show = json.loads(proj.ok("endpoint", "show", ENDPOINT, "--json").stdout)
    assert show["inference"].startswith("compiled (") and "CatBoostClassifier; models: kernel" in show["inference"]
    _check_endpoint(proj, ep, bank_csv, tmp_path, ref, 32950)


def test_catboost_is_imported_only_when_used():
    """`opml --help`, the engine's and the scorer's modules load without catboost (a 270 MB library)."""
    code = ("import sys; from opml.cli import main\n"
            "try: main(['--help'], standalone_mode=False)\nexcept SystemExit: pass\n"
            "import opml.automl.algorithms, opml.automl.experiment, opml.automl.catboost_model\n"
            "import opml.serving.compiled, opml.serving.treecompile\n"
            "print('CATBOOST=' + str('catboost' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "CATBOOST=False"


def test_catboost_that_cannot_compile_serves_plain_and_says_why(trained, bank_csv, tmp_path, monkeypatch):
    """A CatBoost model with target statistics over feature combinations: the endpoint takes the plain path and
    `opml endpoint show` says so, with the reason; its probabilities still equal `opml predict`'s."""
    from opml.automl import algorithms

    proj, _ = trained
    spec = algorithms.CATALOGUE["CatBoostClassifier"]
    start = {"scaler": "MaxAbsScaler", "frequency": True, "n_estimators": 100, "learning_rate": 0.1, "depth": 4,
             "l2_leaf_reg": 3.0, "random_strength": 1.0, "bagging_temperature": 1.0}

    def combos(params, featurizer, n_jobs, seed):  # target statistics, over pairs of columns too
        return spec.build({**params, "one_hot_max_size": 2, "max_ctr_complexity": 2}, featurizer, n_jobs, seed)

    monkeypatch.setitem(algorithms.CATALOGUE, "CatBoostClassifier",
                        dataclasses.replace(spec, warm_starts=(start,), build=combos))
    run = json.loads(proj.ok("train", "--data", str(bank_csv), "--max-trials", "1", "--time-budget", "120",
                             "--model-selection", "best", "--json").stdout)
    ref = run["model"]
    ep = json.loads(proj.ok("deploy", "--model", ref, "--name", "catboost-plain", "--json").stdout)
    show = proj.ok("endpoint", "show", "catboost-plain").stdout
    inference = json.loads(proj.ok("endpoint", "show", "catboost-plain", "--json").stdout)["inference"]
    assert inference.startswith("fallback: CatBoost model not compiled: CatBoost target statistics over feature "
                                "combinations are not compiled"), inference
    assert "fallback: CatBoost model not compiled" in show
    _check_endpoint(proj, ep, bank_csv, tmp_path, ref, 4000)
    proj.ok("endpoint", "delete", "catboost-plain")


def test_search_starts_from_the_portfolio(bank_csv):
    """The first trials are the portfolio's configurations, in WARM_START_ORDER, before Optuna proposes any."""
    from opml.automl.algorithms import CATALOGUE, WARM_START_ORDER
    from opml.automl.experiment import run_experiment
    from opml.config import AutoMLSettings

    df = pd.read_csv(bank_csv)
    parts = [g.sample(frac=3000 / len(df), random_state=1) for _, g in df.groupby("response")]
    small = pd.concat(parts).reset_index(drop=True)
    allowed = ["LightGBM", "CatBoostClassifier", "LogisticRegression"]
    portfolio = [(a, i) for a, i in WARM_START_ORDER if a in allowed]
    assert {a for a, _ in portfolio} == set(allowed)  # every family starts from known-good configurations
    settings = AutoMLSettings(dataset={"name": "bankmarketing", "label_column": "response"}, allowed_models=allowed,
                              max_trials=len(portfolio) + 1, enable_voting_ensemble=False,
                              enable_stack_ensemble=False, experiment_timeout_seconds=300)
    result = run_experiment(small, settings)
    trials = [t for t in result.trials if t.algorithm in allowed]
    assert len(trials) == len(portfolio) + 1
    for trial, (algo, i) in zip(trials, portfolio, strict=False):
        start = dict(CATALOGUE[algo].warm_starts[i])
        assert trial.algorithm == algo and trial.scaler == start.pop("scaler")
        assert trial.featurization["frequency"] == start.pop("frequency", True)
        assert trial.params == start
    assert all(t.status == "succeeded" for t in trials)


def test_azureml_backend_refuses_catboost_in_one_line():
    """Azure AutoML has no CatBoost: allowed_models naming it is a one-line ConfigError; blocking it is a no-op."""
    pytest.importorskip("azure.ai.ml")
    from opml.azureml.automl import build_job
    from opml.config import AutoMLSettings
    from opml.errors import ConfigError

    base = {"dataset": {"name": "bankmarketing", "label_column": "response"}}
    with pytest.raises(ConfigError, match="CatBoostClassifier is opml's addition, not an Azure AutoML algorithm"):
        build_job(AutoMLSettings(**base, allowed_models=["LightGBM", "CatBoostClassifier"]), compute="c",
                  training_data="azureml:bankmarketing:1")
    job = build_job(AutoMLSettings(**base, blocked_models=["CatBoostClassifier", "RandomForest"]), compute="c",
                    training_data="azureml:bankmarketing:1")
    assert [str(getattr(m, "value", m)) for m in job.training.blocked_training_algorithms] == ["RandomForest"]
