"""`opml train`, `runs`, `models`, `predict` end to end on the real dataset (small trial counts)."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from tests.conftest import Project

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bank_csv):
    proj = Project(tmp_path_factory.mktemp("train"))
    proj.ok("auth")
    res = proj.ok("train", "--data", str(bank_csv), "--max-trials", "6", "--time-budget", "90", "--json")
    return proj, json.loads(res.stdout), res


def test_train_reports_leaderboard_guardrails_and_imbalance(trained):
    _, out, res = trained
    assert out["status"] == "Completed" and out["dataset"] == "bankmarketing:1"
    assert out["model"] == "bankmarketing-automl:1"
    board = out["leaderboard"]
    names = [r["pipeline"] for r in board]
    assert len(board) >= 3 and any("," in n for n in names)  # "Scaler, Algorithm" naming
    scores = [r["metrics"]["AUC_weighted"] for r in board]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.9
    guard = {g["name"]: g["status"] for g in out["guardrails"]}
    assert len(guard) >= 4 and set(guard.values()) <= {"passed", "done", "alerted"}
    assert any(g["status"] == "alerted" for g in out["guardrails"]), "11% minority must raise the balance alert"
    thr = out["threshold"]
    assert thr["tuned"]["f1"] >= thr["argmax"]["f1"]
    assert len(out["feature_importance"]) >= 10
    # the default model_selection (tolerance): the cheapest to score within 0.0005 of the top score
    sel = out["selection"]
    assert sel["rule"] == "tolerance" and sel["tolerance"] == 0.0005 and sel["top"]["pipeline"] == board[0]["pipeline"]
    assert out["best"]["pipeline"] == sel["chosen"]["pipeline"]
    assert sel["chosen"]["score"] >= sel["top"]["score"] - 0.0005 - 1e-12
    assert all(r["scoring_cost"] > 0 for r in board)
    within = [r for r, score in zip(board, scores, strict=True) if score >= sel["top"]["score"] - 0.0005 - 1e-12]
    assert sel["chosen"]["scoring_cost"] == min(r["scoring_cost"] for r in within) and sel["eligible"] == len(within)
    assert "Best run: " + out["best"]["pipeline"] in proj_report(trained)
    # progress went to stderr, one line per trial when not a terminal
    assert res.stderr.count("trial ") >= 6


def proj_report(trained) -> str:
    proj, out, _ = trained
    return proj.ok("runs", "show", out["run_id"]).stdout


def test_train_reports_leakage_calibration_and_delivery(trained):
    _, out, _ = trained
    leak = {g["name"]: g for g in out["guardrails"]}["Feature leakage detection"]
    assert leak["status"] == "alerted" and "duration (AUC 0.8" in leak["details"]
    assert "post_outcome_columns" in leak["details"]  # configs/automl.yaml lists duration as post-outcome
    cal = out["calibration"]
    assert 0.0 < cal["brier"] < 0.1 and set(cal["methods"]) == {"sigmoid", "isotonic"} and cal["reason"]
    text = proj_report(trained)
    assert "Leakage: possible target leakage: duration" in text and "--drop-columns duration" in text
    assert f"Calibration: out-of-fold Brier score {cal['brier']:.4f}" in text
    art = Path(out["artifacts_dir"])
    assert (art / "calibration_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((art / "calibration.json").read_text())["brier"] == pytest.approx(cal["brier"])
    sel = out["selection"]
    assert sel["delivery"] in ("refit", "fold_bag") and not sel["below_floor"] and "refit_instead" not in sel
    assert out["settings"]["drop_columns"] == []


def test_drop_columns(tmp_path, bank_csv):
    small = tmp_path / "small.csv"
    pd.read_csv(bank_csv).sample(3000, random_state=0).to_csv(small, index=False)
    proj = Project(tmp_path / "p")
    proj.ok("auth")
    line = proj.fails("train", "--data", str(small), "--drop-columns", "duration,durration", "--max-trials", "2")
    assert "column(s) to drop not in the data: 'durration'" in line and "columns are: age, job" in line
    assert "names the label column 'response'" in proj.fails("train", "--data", str(small), "--drop-columns",
                                                             "response")
    assert "empty column name" in proj.fails("train", "--data", str(small), "--drop-columns", "duration,")
    assert json.loads(proj.ok("runs", "list", "--json").stdout) == []
    out = json.loads(proj.ok("train", "--data", str(small), "--drop-columns", " duration ", "--max-trials", "2",
                             "--json").stdout)
    assert out["settings"]["drop_columns"] == ["duration"]
    leak = {g["name"]: g for g in out["guardrails"]}["Feature leakage detection"]
    assert leak["status"] == "passed" and "post-outcome column(s) dropped: duration" in leak["details"]
    assert "duration" not in [f[0] for f in out["feature_importance"]]
    model = json.loads(proj.ok("models", "show", out["model"], "--json").stdout)
    assert "duration" not in [c["name"] for c in model["info"]["schema"]["columns"]]
    sample = tmp_path / "in.csv"
    pd.read_csv(small).head(40).drop(columns=["duration"]).to_csv(sample, index=False)
    scored = json.loads(proj.ok("predict", "--data", str(sample), "--out", str(tmp_path / "o.csv"), "--json").stdout)
    assert scored["rows"] == 40
    assert "trained without column(s): duration (drop_columns)" in proj.ok("runs", "show", out["run_id"]).stdout
    db = sqlite3.connect(proj.ws / "mlflow.db")
    params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (out["mlflow_run_id"],)).fetchall())
    assert json.loads(params["drop_columns"]) == ["duration"]


def test_train_reads_the_registered_dataset_without_downloading(tmp_path, bank_csv):
    small = tmp_path / "small.csv"
    pd.read_csv(bank_csv).sample(2000, random_state=1).to_csv(small, index=False)
    proj = Project(tmp_path / "p")
    proj.ok("auth")
    cfg = yaml.safe_load((proj.configs / "automl.yaml").read_text())
    proj.set_config(dataset=cfg["dataset"] | {"url": "http://127.0.0.1:9/bankmarketing.csv", "sha256": None})
    assert "cannot download" in proj.fails("train", "--max-trials", "1")  # nothing registered: the URL is needed
    proj.ok("data", "register", "--path", str(small))
    out = json.loads(proj.ok("train", "--max-trials", "2", "--json").stdout)
    model = json.loads(proj.ok("models", "show", out["model"], "--json").stdout)
    assert model["info"]["dataset"] == "bankmarketing:1"  # the registered version: no download, no new version
    assert [d["ref"] for d in json.loads(proj.ok("data", "list", "--json").stdout)] == ["bankmarketing:1"]


def test_drop_columns_is_refused_on_the_azureml_backend(tmp_path, bank_csv):
    proj = Project(tmp_path / "p")
    proj.set_config("workspace.yaml", backend="azureml",
                    azureml={"subscription_id": "s", "resource_group": "r", "workspace_name": "w"})
    line = proj.fails("train", "--data", str(bank_csv), "--drop-columns", "duration")
    assert "drop_columns (duration) is not supported on the azureml backend" in line
    proj.set_config(drop_columns=["duration"])  # the same from automl.yaml
    assert "not supported on the azureml backend" in proj.fails("train", "--data", str(bank_csv), "--dry-run")


def test_mlflow_holds_parent_and_child_runs(trained):
    proj, out, _ = trained
    db = sqlite3.connect(proj.ws / "mlflow.db")
    parent = out["mlflow_run_id"]
    children = db.execute(
        "SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "WHERE t.key = 'mlflow.parentRunId' AND t.value = ?", (parent,)).fetchall()
    assert len(children) >= 6
    assert {s for _, s in children} <= {"FINISHED", "FAILED"}
    child = out["leaderboard"][0]["child_run"]
    metrics = {k for (k,) in db.execute("SELECT key FROM metrics WHERE run_uuid = ?", (child,))}
    for name in ("accuracy", "AUC_weighted", "AUC_macro", "average_precision_score_weighted", "balanced_accuracy",
                 "f1_score_weighted", "f1_score_macro", "precision_score_weighted", "recall_score_macro",
                 "norm_macro_recall", "log_loss", "matthews_correlation", "duration_s"):
        assert name in metrics, name
    assert db.execute("SELECT status FROM runs WHERE run_uuid = ?", (parent,)).fetchone()[0] == "FINISHED"
    tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (parent,)).fetchall())
    assert tags["opml.model_selection"] == "tolerance" and tags["opml.best_pipeline"] == out["best"]["pipeline"]
    versions = db.execute("SELECT name, version FROM model_versions").fetchall()
    assert versions == [("bankmarketing-automl", 1)]


def test_artifacts_plots_and_model_files(trained):
    _, out, _ = trained
    art = Path(out["artifacts_dir"])
    pngs = sorted(p.name for p in art.glob("*.png"))
    assert len(pngs) >= 4, pngs
    for p in art.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((art / "guardrails.json").read_text())


def test_runs_and_models_commands(trained):
    proj, out, _ = trained
    listed = json.loads(proj.ok("runs", "list", "--json").stdout)
    assert listed[0]["id"] == out["run_id"] and listed[0]["status"] == "Completed"
    assert [r["id"] for r in json.loads(proj.ok("runs", "list", "--experiment", "bankmarketing-automl",
                                                  "--json").stdout)] == [out["run_id"]]
    assert json.loads(proj.ok("runs", "list", "--experiment", "other", "--json").stdout) == []
    shown = proj.ok("runs", "show", out["run_id"]).stdout
    assert "Leaderboard" in shown and "Data guardrails" in shown and "Top features" in shown
    assert json.loads(proj.ok("runs", "show", out["mlflow_run_id"], "--json").stdout)["id"] == out["run_id"]
    models = json.loads(proj.ok("models", "list", "--json").stdout)
    assert [m["ref"] for m in models] == ["bankmarketing-automl:1"]
    model = json.loads(proj.ok("models", "show", "bankmarketing-automl:1", "--json").stdout)
    assert (Path(model["path"]) / "MLmodel").is_file()
    assert model["info"]["classes"] == ["no", "yes"]
    assert "no registered model" in proj.fails("models", "show", "ghost")
    assert "no AutoML run" in proj.fails("runs", "show", "AutoML_nope")


def test_predict_writes_labels_and_probabilities(trained, bank_csv, tmp_path):
    proj, _, _ = trained
    sample = tmp_path / "in.csv"
    pd.read_csv(bank_csv).head(300).to_csv(sample, index=False)  # label column kept: must be ignored
    out_csv = tmp_path / "out.csv"
    summary = json.loads(proj.ok("predict", "--data", str(sample), "--out", str(out_csv), "--json").stdout)
    assert summary["rows"] == 300 and summary["model"] == "bankmarketing-automl:1"
    scored = pd.read_csv(out_csv)
    assert list(scored.columns[:21]) == list(pd.read_csv(sample).columns)
    assert {"prediction", "probability_no", "probability_yes"} <= set(scored.columns)
    assert set(scored["prediction"]) <= {"yes", "no"}
    assert (scored["probability_no"] + scored["probability_yes"]).sub(1).abs().max() < 1e-6
    threshold = summary["threshold"]["applied"]
    expected = scored["probability_yes"].ge(threshold).map({True: "yes", False: "no"})
    assert (expected == scored["prediction"]).mean() > 0.99
    # labels agree with the truth on most rows (a real model, not a constant)
    assert (scored["prediction"] == scored["response"]).mean() > 0.85 and scored["prediction"].nunique() == 2


def test_predict_missing_column_is_named(trained, bank_csv, tmp_path):
    proj, _, _ = trained
    sample = tmp_path / "in.csv"
    pd.read_csv(bank_csv).head(20).drop(columns=["duration", "age"]).to_csv(sample, index=False)
    line = proj.fails("predict", "--data", str(sample), "--out", str(tmp_path / "o.csv"))
    assert "duration" in line and "age" in line
    assert not (tmp_path / "o.csv").exists()


def _bad_csv(bank_csv: Path, tmp_path: Path, change) -> Path:
    df = pd.read_csv(bank_csv).head(2000)
    df = change(df)
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.drop(columns=["response"]), "label column 'response' not found"),
        (lambda d: d.assign(response="no"), "one class"),
        (lambda d: d.assign(campaign=None), "campaign"),
        (lambda d: d.assign(age=d["age"].astype(str).where(d.index != 5, "forty")), "age"),
    ],
)
def test_bad_training_input_fails_before_work(tmp_path, bank_csv, change, expected):
    proj = Project(tmp_path / "p")
    proj.ok("auth")
    line = proj.fails("train", "--data", str(_bad_csv(bank_csv, tmp_path, change)), "--max-trials", "2")
    assert expected in line, line
    assert json.loads(proj.ok("runs", "list", "--json").stdout) == []


def test_bad_settings_fail_before_work(tmp_path, bank_csv):
    proj = Project(tmp_path / "p")
    proj.ok("auth")
    assert "time budget must be positive" in proj.fails("train", "--data", str(bank_csv), "--time-budget", "0")
    assert "max trials" in proj.fails("train", "--data", str(bank_csv), "--max-trials", "0")
    proj.set_config(allowed_models=["LightGBM", "DeepForest"])
    assert "unknown model 'DeepForest'" in proj.fails("train", "--data", str(bank_csv))
    assert json.loads(proj.ok("runs", "list", "--json").stdout) == []


def test_opml_ui_serves_the_tracking_store(trained):
    proj, _, _ = trained
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"OPML_WORKSPACE": str(proj.ws), "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.Popen([sys.executable, "-m", "opml", "--configs", str(proj.configs), "ui", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
                                 params={"max_results": 10}, timeout=10)
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("opml ui did not answer within 90 s")
        names = [e["name"] for e in r.json().get("experiments", [])]
        assert "bankmarketing-automl" in names
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_failed_candidate_is_a_failed_mlflow_child_run(tmp_path, bank_csv, monkeypatch):
    import dataclasses

    from opml.automl import algorithms

    def broken(params, featurizer, n_jobs, seed):
        raise RuntimeError("boom: injected failure")

    spec = dataclasses.replace(algorithms.CATALOGUE["LightGBM"], build=broken)
    monkeypatch.setitem(algorithms.CATALOGUE, "LightGBM", spec)
    small = tmp_path / "small.csv"
    pd.read_csv(bank_csv).sample(3000, random_state=0).to_csv(small, index=False)
    proj = Project(tmp_path / "p")
    proj.set_config(allowed_models=["LightGBM", "LogisticRegression"], enable_stack_ensemble=False)
    proj.ok("auth")
    out = json.loads(proj.ok("train", "--data", str(small), "--max-trials", "6", "--model-selection", "best",
                             "--json").stdout)
    assert out["selection"]["rule"] == "best" and out["best"]["pipeline"] == out["leaderboard"][0]["pipeline"]
    assert out["failed_trials"], [r["pipeline"] for r in out["leaderboard"]]
    assert "boom: injected failure" in out["failed_trials"][0]["error"]
    db = sqlite3.connect(proj.ws / "mlflow.db")
    failed = db.execute(
        "SELECT r.run_uuid FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE r.status = 'FAILED'"
        " AND t.key = 'opml.error' AND t.value LIKE '%boom: injected failure%'").fetchall()
    assert len(failed) == len(out["failed_trials"])
    assert json.loads(proj.ok("runs", "list", "--json").stdout)[0]["status"] == "Completed"
