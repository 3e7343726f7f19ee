"""AutoML quality and cost: opml's engine vs FLAML (and AutoGluon), same data, same budget, same folds.

Each system runs in its own process (so peak memory is its own): load the CSV, run AutoML with
the time budget, refit the final model; the wall time and peak RSS of that part are recorded.
Afterwards (untimed) the final model of each is cross-validated again on the same 5 folds
(StratifiedKFold(5, shuffle=True, random_state=0)): pooled out-of-fold AUC_weighted, accuracy and the
minority class's F1 at argmax and at the F1-maximising threshold are computed the same way for both.
opml's engine also reports its own scores (ensembles cross-fitted, so not leaked). Both systems keep
their top-scoring model (opml: model_selection "best"; its default, "tolerance", and "one_se" trade a score
within 0.0005 or one standard error for a cheaper model to serve).

    .venv/bin/pip install flaml          # benchmark only; opml does not depend on it
    .venv/bin/python benchmarks/automl_quality.py [--budget 120] [--data PATH] [--only opml|flaml]

Targets checked at the end: AUC_weighted >= 0.951, wall <= budget * 1.1, peak RSS < 2 GB.

AutoGluon joins as a peer (never an opml dependency; it caps pandas below 2.4, and matplotlib, pyarrow and psutil,
so it lives in a venv of its own, reached with --peers-python):

    python -m venv V && V/bin/pip install 'autogluon.tabular[catboost,xgboost]'
    .venv/bin/python benchmarks/automl_quality.py --peers autogluon --peers-python V/bin/python [--budget 120]

AutoGluon runs presets="best_quality", time_limit=budget, eval_metric="roc_auc". Cross-validating its final
model would refit a whole bagged, stacked predictor five times, so with --peers the comparison is a paired
holdout instead (--protocol holdout, the default with --peers): every system runs once, within the budget, on
the other folds' rows of fold 0 of the same StratifiedKFold, and all are scored on the same held-out fifth
(AUC, accuracy, minority F1 at argmax and at the F1-maximising threshold of those rows; each AUC minus the first
system's, with a 95% paired bootstrap interval). AutoGluon fits its neural networks only if torch is installed
(the command above leaves it out). Without AutoGluon it says so, with the install command, and runs the rest.

Two more modes run the whole `opml train` command (fresh workspace each time):

    .venv/bin/python benchmarks/automl_quality.py --budgets 30,60,120   # short budgets: what gets registered
    .venv/bin/python benchmarks/automl_quality.py --leakage [--budget 120]   # all columns vs --drop-columns duration

--budgets checks, per budget, that the registered model is a tree model or an ensemble within one standard
error of that run's top score (the model the selection rule chose, refit or delivered as a bag of its fold
models) and that the wall time stays within budget + 10%. --leakage puts side by side the AUC with all
columns (the reference's model) and without `duration`, which is known only after the call ends.

An outer evaluation chooses the default selection rule from evidence (benchmarks/outer_eval.py):

    .venv/bin/python benchmarks/automl_quality.py --outer 5x2 [--budget 120] [--sample ROWS] [--outer-json PATH]

RepeatedStratifiedKFold outer splits of the CSV; in each, one AutoML search on the inner part, every selection
rule applied to that same leaderboard, each rule's model scored on the outer part (AUC, minority F1 and accuracy
at the tuned threshold, tree leaves, one-row µs through the compiled scorer); per rule the mean, spread and the
paired AUC difference vs `best`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.dataset import dataset
from peers.names import names

STARTED = time.monotonic()
REPO = Path(__file__).resolve().parents[1]
LABEL = "response"
SEED = 0
FOLDS = 5


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _scores(y_pos, p_pos) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from opml.automl.threshold import best_f1_threshold, binary_report

    y_pos = np.asarray(y_pos).astype(bool)
    argmax = binary_report(y_pos, p_pos, 0.5)
    cut = best_f1_threshold(y_pos, p_pos)
    tuned = binary_report(y_pos, p_pos, cut)
    return {
        "auc": float(roc_auc_score(y_pos, p_pos)),
        "accuracy": argmax["accuracy"],
        "f1_argmax": argmax["f1"],
        "f1_tuned": tuned["f1"],
        "threshold": cut,
    }


def _folds(y):
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(FOLDS, shuffle=True, random_state=SEED).split(np.zeros(len(y)), y))


# Peers: what each imports, and how to install it (a venv of its own; then --peers-python V/bin/python).
PEERS = {"autogluon": ("autogluon.tabular",
                       "it caps pandas below 2.4: python -m venv V && V/bin/pip install "
                       "'autogluon.tabular[catboost,xgboost]'; then --peers-python V/bin/python")}


def holdout_rows(y) -> list[int]:
    """The paired holdout: fold 0's validation rows of the benchmark's StratifiedKFold."""
    return [int(i) for i in _folds(y)[0][1]]


def _split(df, holdout: Path | None):
    """(rows to fit on, held-out rows or None) of `df` for the protocol."""
    if holdout is None:
        return df, None
    mask = df.index.isin(json.loads(holdout.read_text()))
    return df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True)


def worker_opml(data: Path, budget: float, holdout: Path | None = None) -> dict:
    import numpy as np
    import pandas as pd
    from sklearn.base import clone

    from opml.automl.experiment import run_experiment
    from opml.config import AutoMLSettings

    df, test = _split(pd.read_csv(data), holdout)
    settings = AutoMLSettings(
        dataset={"name": "bankmarketing", "label_column": LABEL}, experiment_timeout_seconds=budget,
        n_cross_validations=FOLDS, random_seed=SEED, model_selection="best",  # the top score, as FLAML picks
    )
    result = run_experiment(df, settings)
    wall, rss = time.monotonic() - STARTED, _peak_rss_mb()

    model = result.model
    positive = model.classes_[model.positive_index_]
    X, y = df.drop(columns=[LABEL]), df[LABEL].to_numpy()
    extra: dict = {}
    if test is not None:
        extra["holdout_p"] = model.predict_proba(test.drop(columns=[LABEL]))[:, model.positive_index_].tolist()
    else:
        oof = np.zeros(len(df))
        for train, valid in _folds(y):
            fold_model = clone(model).fit(X.iloc[train], y[train])
            oof[valid] = fold_model.predict_proba(X.iloc[valid])[:, model.positive_index_]
        extra["recv"] = _scores(y == positive, oof)
    singles = [t for t in result.trials if t.algorithm not in ("VotingEnsemble", "StackEnsemble")]
    best = result.best
    return {
        "system": "opml",
        "best": best.pipeline_name,
        "members": ", ".join(f"{m['pipeline']}" for m in best.members) or "-",
        "trials": f"{len(singles)} ({sum(t.status != 'succeeded' for t in singles)} failed) + "
                  f"{len(result.trials) - len(singles)} ensembles",
        "stop": result.stop_reason,
        "engine": {
            "auc": best.metrics["AUC_weighted"],
            "accuracy": best.metrics["accuracy"],
            "f1_argmax": result.threshold["argmax"]["f1"],
            "f1_tuned": result.threshold["tuned"]["f1"],
            "threshold": result.threshold["applied"],
        },
        **extra,
        "wall_s": wall,
        "rss_mb": rss,
        "timings": result.timings,
    }


def worker_flaml(data: Path, budget: float, holdout: Path | None = None) -> dict:
    import flaml
    import numpy as np
    import pandas as pd
    from flaml import AutoML
    from sklearn.model_selection import StratifiedKFold

    df, test = _split(pd.read_csv(data), holdout)
    X, y = df.drop(columns=[LABEL]), df[LABEL]
    automl = AutoML()
    automl.fit(
        X, y, task="classification", metric="roc_auc", time_budget=budget, eval_method="cv",
        split_type=StratifiedKFold(FOLDS, shuffle=True, random_state=SEED), n_splits=FOLDS, seed=SEED,
        n_jobs=os.cpu_count() or 1, verbose=0,
    )
    wall, rss = time.monotonic() - STARTED, _peak_rss_mb()

    positive = list(automl.classes_).index(y.value_counts().idxmin())
    extra: dict = {}
    if test is not None:
        extra["holdout_p"] = automl.predict_proba(test.drop(columns=[LABEL]))[:, positive].tolist()
    else:
        Xt = automl._state.task.preprocess(X, automl._transformer)
        yt = np.asarray(automl._label_transformer.transform(y) if automl._label_transformer else y)
        oof = np.zeros(len(df))
        for train, valid in _folds(yt):
            est = automl.model.__class__(task=automl._state.task, n_jobs=os.cpu_count() or 1, **automl.best_config)
            est.fit(Xt.iloc[train], yt[train])
            oof[valid] = est.predict_proba(Xt.iloc[valid])[:, positive]
        extra["recv"] = _scores(yt == positive, oof)
    return {
        "system": f"FLAML {flaml.__version__}",
        "best": automl.best_estimator,
        "members": "-",
        "trials": str(len(getattr(automl, "config_history", {}) or {})),
        "stop": "time budget",
        "engine": {"auc": 1.0 - automl.best_loss, "accuracy": None, "f1_argmax": None, "f1_tuned": None,
                   "threshold": None},
        **extra,
        "wall_s": wall,
        "rss_mb": rss,
        "timings": {},
    }


def worker_autogluon(data: Path, budget: float, holdout: Path | None = None) -> dict:
    """AutoGluon's best_quality preset within the budget. Runs in AutoGluon's own venv: no opml imports here."""
    import resource
    import tempfile

    import pandas as pd
    from autogluon.tabular import TabularPredictor
    from autogluon.tabular import __version__ as version
    from sklearn.metrics import roc_auc_score

    if holdout is None:
        raise SystemExit("AutoGluon runs on the paired holdout only (--protocol holdout)")
    df, test = _split(pd.read_csv(data), holdout)
    positive = df[LABEL].value_counts().idxmin()
    with tempfile.TemporaryDirectory(prefix="opml-bench-ag-") as tmp:
        predictor = TabularPredictor(label=LABEL, eval_metric="roc_auc", path=tmp, verbosity=0)
        predictor.fit(df, presets="best_quality", time_limit=budget, num_cpus=os.cpu_count() or 1, num_gpus=0)
        wall = time.monotonic() - STARTED
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # any fold-fitting processes
        rss = max(_peak_rss_mb(), children)
        p = predictor.predict_proba(test.drop(columns=[LABEL]))[positive]
        try:  # out-of-fold predictions of the bagged best model on its training rows: AutoGluon's own estimate
            engine_auc = float(roc_auc_score(df[LABEL] == positive, predictor.predict_proba_oof()[positive]))
        except Exception:  # not every predictor keeps them; the row then shows "-"
            engine_auc = None
        names = predictor.model_names()
    return {
        "system": f"AutoGluon {version}",
        "best": predictor.model_best,
        "members": ", ".join(names),  # the models it fitted (its neural networks only when torch is installed)
        "trials": f"{len(names)} models",
        "stop": "time_limit (best_quality)",
        "engine": {"auc": engine_auc, "accuracy": None, "f1_argmax": None, "f1_tuned": None, "threshold": None},
        "holdout_p": [float(v) for v in p],
        "wall_s": wall,
        "rss_mb": rss,
        "timings": {},
    }


WORKERS = {"opml": worker_opml, "flaml": worker_flaml, "autogluon": worker_autogluon}


def peer_python(peer: str, peers_python: str | None) -> str | None:
    """The interpreter that imports the peer's module: this one, else --peers-python; None when neither does."""
    import importlib.util

    module = PEERS[peer][0]
    try:
        if importlib.util.find_spec(module) is not None:
            return sys.executable
    except ModuleNotFoundError:
        pass
    if not peers_python:
        return None
    try:
        probe = subprocess.run([peers_python, "-c", f"import {module}"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return peers_python if probe.returncode == 0 else None


def not_installed(peer: str, peers_python: str | None) -> str:
    where = f"this Python or {peers_python}" if peers_python else "this Python (and no --peers-python given)"
    return f"{peer} not installed in {where}; skipped ({PEERS[peer][1]})"


def run(system: str, data: Path, budget: float, python: str | None = None, holdout: Path | None = None) -> dict:
    cmd = [python or sys.executable, str(Path(__file__).resolve()), "--worker", system, "--data", str(data),
           "--budget", str(budget), *(["--holdout-rows", str(holdout)] if holdout else [])]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{system} worker failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = time.monotonic() - started
    return out


def compare(systems: list[str], data: Path, budget: float, protocol: str, peers: dict[str, str]) -> list[dict]:
    """Each system in its own process; under the holdout protocol all are scored here on the same held-out rows."""
    import tempfile

    if protocol == "cv":
        return [run(s, data, budget) for s in systems]
    import pandas as pd

    y = pd.read_csv(data, usecols=[LABEL])[LABEL]
    rows = holdout_rows(y.to_numpy())
    y_pos = (y.iloc[rows] == y.value_counts().idxmin()).to_numpy()
    results = []
    with tempfile.TemporaryDirectory(prefix="opml-bench-") as tmp:
        path = Path(tmp) / "holdout_rows.json"
        path.write_text(json.dumps(rows))
        for system in [*systems, *peers]:
            print(f"running {system} ({budget:g} s budget, paired holdout)...", file=sys.stderr, flush=True)
            results.append(run(system, data, budget, peers.get(system), path))
    return score_holdout(y_pos, results)


def score_holdout(y_pos, results: list[dict]) -> list[dict]:
    """Each result's held-out probabilities -> its scores ("recv") and its AUC minus the first's ("vs_first")."""
    import numpy as np

    probs = [np.asarray(out.pop("holdout_p"), dtype=float) for out in results]
    for out, p in zip(results, probs, strict=True):
        out["recv"] = _scores(y_pos, p)
        out["vs_first"] = paired_difference(y_pos, probs[0], p)
    return results


def paired_difference(y_pos, p_ref, p, resamples: int = 1000) -> tuple[float, float, float]:
    """AUC(p) - AUC(p_ref) on the same rows, with a 95% paired bootstrap interval (rows resampled together)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    y_pos = np.asarray(y_pos).astype(bool)
    diff = float(roc_auc_score(y_pos, p) - roc_auc_score(y_pos, p_ref))
    rng = np.random.default_rng(SEED)
    draws = []
    for _ in range(resamples):
        i = rng.integers(0, len(y_pos), len(y_pos))
        if y_pos[i].all() or not y_pos[i].any():
            continue
        draws.append(roc_auc_score(y_pos[i], p[i]) - roc_auc_score(y_pos[i], p_ref[i]))
    lo, hi = np.percentile(draws, [2.5, 97.5]) if draws else (diff, diff)
    return diff, float(lo), float(hi)


def run_cli(data: Path, budget: float, *extra: str) -> dict:
    """The whole `opml train` command (dataset registration, AutoML, MLflow logging, model registration)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="opml-bench-") as tmp:
        env = dict(os.environ, OPML_WORKSPACE=str(Path(tmp) / "ws"))
        opml = [sys.executable, "-m", "opml", "--configs", str(REPO / "configs")]
        subprocess.run([*opml, "auth"], env=env, check=True, capture_output=True)
        started = time.monotonic()
        proc = subprocess.Popen([*opml, "train", "--data", str(data), "--time-budget", str(budget), *extra, "--json"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        out, _ = proc.communicate()
        wall = time.monotonic() - started
        if proc.returncode:
            raise SystemExit(f"opml train failed with exit code {proc.returncode}")
        summary = json.loads(out)
    import resource

    # Largest child waited for: the train process (auth is far smaller). Linux reports KiB.
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    best = summary["best"]
    thr = summary.get("threshold") or {}
    board = {r["pipeline"]: r for r in summary["leaderboard"]}
    return {"wall_s": wall, "rss_mb": rss, "best": best["pipeline"], "auc": best["metrics"]["AUC_weighted"],
            "accuracy": best["metrics"]["accuracy"], "f1_tuned": (thr.get("tuned") or {}).get("f1"),
            "trials": len(summary["leaderboard"]) + len(summary["failed_trials"]), "selection": summary["selection"],
            "calibration": summary.get("calibration") or {},
            "algorithm": board.get(best["pipeline"], {}).get("algorithm"),
            "leakage": next((g for g in summary["guardrails"] if g["name"] == "Feature leakage detection"), {})}


def short_budgets(data: Path, budgets: list[float]) -> bool:
    """`opml train --time-budget N` for each N: the registered model, its delivery and the one-SE check."""
    print(f"Short budgets: `opml train --time-budget N` on {data.name}, {os.cpu_count()} cores, default rule")
    head = (f"{'budget':>6} {'wall':>6} {'trials':>6}  {'registered model':<40} {'AUC':>6} {'top':>6} {'SE':>6} "
            f"{'delivery':<9} {'model':<5} {'wall<=+10%':<10}")
    print(head)
    ok = True
    for budget in budgets:
        r = run_cli(data, budget)
        sel = r["selection"]
        floor = sel.get("floor", sel["top"]["score"])
        tree = r["algorithm"] != "LogisticRegression"
        passed = tree and r["auc"] >= floor - 1e-12 and not sel.get("below_floor") and "refit_instead" not in sel
        ok = ok and passed
        print(f"{budget:>6g} {r['wall_s']:>6.1f} {r['trials']:>6}  {r['best'][:40]:<40} {r['auc']:>6.4f} "
              f"{sel['top']['score']:>6.4f} {sel.get('standard_error', 0):>6.4f} {sel.get('delivery', '-'):<9} "
              f"{'PASS' if passed else 'FAIL':<5} {'yes' if r['wall_s'] <= budget * 1.1 else 'no'}")
        if sel.get("undelivered"):
            print(f"        not delivered: {sel['undelivered']}")
    print("model: a tree model or ensemble, within one standard error of the run's top score, the selection rule's "
          "own choice; wall: the whole command (start-up, data registration, MLflow logging) against budget + 10%")
    return ok


def leakage(data: Path, budget: float) -> None:
    """The default `opml train` with all columns (as the reference) and with --drop-columns duration, side by side."""
    runs = [("all columns (default)", run_cli(data, budget)),
            ("--drop-columns duration", run_cli(data, budget, "--drop-columns", "duration"))]
    print(f"Leakage: `opml train --time-budget {budget:g}` on {data.name} with and without `duration` (known only "
          "after the call ends); 5-fold CV of the registered model's candidate")
    width = 30
    print(f"{'':<34}" + "".join(f"{name:<{width}}" for name, _ in runs))
    rows = [("registered model", lambda r: r["best"][:width - 2]),
            ("AUC_weighted (CV)", lambda r: f"{r['auc']:.4f}"),
            ("accuracy (argmax, CV)", lambda r: f"{r['accuracy']:.4f}"),
            ("minority F1 at tuned threshold", lambda r: _fmt(r["f1_tuned"])),
            ("Brier score (out-of-fold)", lambda r: _fmt(r["calibration"].get("brier"))),
            ("calibration applied", lambda r: r["calibration"].get("applied") or "no"),
            ("leakage guardrail", lambda r: r["leakage"].get("status", "-")),
            ("wall (s)", lambda r: f"{r['wall_s']:.1f}")]
    for label, get in rows:
        print(f"{label:<34}" + "".join(f"{get(r):<{width}}" for _, r in runs))
    print(f"AUC given up without duration: {runs[0][1]['auc'] - runs[1][1]['auc']:.4f}")


def _fmt(v, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def report(results: list[dict], budget: float, data: Path, protocol: str = "cv", holdout: int = 0) -> None:
    print(f"AutoML quality benchmark: {data.name}, budget {budget:g} s, {os.cpu_count()} cores, "
          f"{FOLDS}-fold StratifiedKFold(shuffle=True, random_state={SEED})")
    if protocol == "holdout":
        print(f"Protocol: paired holdout. Each system ran once on the rows outside fold 0 and was scored on fold 0's "
              f"{holdout:,} rows, the same for all (threshold tuned on those rows, the same way for all; the AUC "
              "difference's interval from 1,000 paired bootstrap resamples of those rows); engine-reported: each "
              "system's own CV estimate on its training rows")
        scored = "paired holdout AUC (fold 0)"
    else:
        print("Protocol: each final model refit on the 5 folds, pooled out-of-fold scores")
        scored = "final model 5-fold CV AUC_weighted"
    width = 36
    names = [r["system"] for r in results]
    print(f"{'':<{width}}" + "".join(f"{n:<30}" for n in names))
    rows = [
        ("best pipeline", lambda r: r["best"]),
        ("trials (FLAML: config_history size)", lambda r: r["trials"]),
        ("stopped by", lambda r: r["stop"][:28]),
        ("engine-reported AUC_weighted", lambda r: _fmt(r["engine"]["auc"])),
        (scored, lambda r: _fmt(r["recv"]["auc"])),
        *([(f"  minus {results[0]['system']}'s, 95% CI", lambda r: "{:+.4f} [{:+.4f}, {:+.4f}]".format(*r["vs_first"]))]
          if protocol == "holdout" else []),
        ("  accuracy (argmax)", lambda r: _fmt(r["recv"]["accuracy"])),
        ("  minority F1 at argmax", lambda r: _fmt(r["recv"]["f1_argmax"])),
        ("  minority F1 at tuned threshold",
         lambda r: f"{_fmt(r['recv']['f1_tuned'])} (t={r['recv']['threshold']:.3f})"),
        ("engine-reported F1 argmax / tuned",
         lambda r: f"{_fmt(r['engine']['f1_argmax'])} / {_fmt(r['engine']['f1_tuned'])}"),
        ("wall: start..final model (s)", lambda r: f"{r['wall_s']:.1f}"),
        ("peak RSS (MB)", lambda r: f"{r['rss_mb']:.0f}"),
    ]
    for label, get in rows:
        print(f"{label:<{width}}" + "".join(f"{get(r):<30}" for r in results))
    for r in results:
        if r["members"] != "-":
            print(f"{r['system']} {'models' if r['system'].startswith('AutoGluon') else 'ensemble members'}: "
                  f"{r['members']}")
        if r["timings"]:
            print(f"{r['system']} timings (s): " + ", ".join(f"{k}={v:.1f}" for k, v in r["timings"].items()))
    mine = next((r for r in results if r["system"] == "opml"), None)
    if mine:
        checks = [
            (f"{'holdout' if protocol == 'holdout' else '5-fold CV'} AUC_weighted >= 0.951",
             min(mine["recv"]["auc"], mine["engine"]["auc"]) >= 0.951),
            (f"wall <= {budget * 1.1:g} s", mine["wall_s"] <= budget * 1.1),
            ("peak RSS < 2048 MB", mine["rss_mb"] < 2048),
        ]
        print("opml targets: " + "; ".join(f"{name}: {'PASS' if ok else 'FAIL'}" for name, ok in checks))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--data", type=Path, help="default: $OPML_TEST_DATA, ../shared/data/, else downloaded once")
    parser.add_argument("--only", choices=["opml", "flaml", "cli"])
    parser.add_argument("--budgets", help="comma-separated budgets (e.g. 30,60,120): `opml train` at each, checked")
    parser.add_argument("--leakage", action="store_true", help="AUC with all columns vs --drop-columns duration")
    parser.add_argument("--outer", metavar="FOLDSxREPEATS",
                        help="outer evaluation of the selection rules, e.g. 5x2 (benchmarks/outer_eval.py)")
    parser.add_argument("--sample", type=int, help="--outer: a stratified sample of this many rows (smoke runs)")
    parser.add_argument("--outer-json", type=Path, help="--outer: also write the per-split results here")
    parser.add_argument("--peers", type=lambda v: names(v, PEERS, "peer"), default=[],
                        help="also run these peers (comma-separated): " + ",".join(PEERS))
    parser.add_argument("--peers-python", help="a Python (another venv) for the peers this one lacks (autogluon)")
    parser.add_argument("--protocol", choices=["cv", "holdout"],
                        help="cv: refit each final model on the 5 folds (default without --peers); holdout: one run "
                             "each on 4/5 of the rows, all scored on the same fifth (default with --peers)")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--holdout-rows", type=Path, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    args.data = dataset(args.data, REPO)
    if args.worker:
        sys.path.insert(0, str(REPO))
        out = WORKERS[args.worker](args.data, args.budget, args.holdout_rows)
        print(json.dumps(out, default=float))
        return
    if args.outer:
        from outer_eval import evaluate  # a sibling script: benchmarks/ is sys.path[0]

        evaluate(args.data, args.budget, args.outer, args.sample, args.outer_json)
        return
    if args.budgets:
        ok = short_budgets(args.data, [float(b) for b in args.budgets.split(",")])
        if not args.leakage:
            raise SystemExit(0 if ok else 1)
    if args.leakage:
        leakage(args.data, args.budget)
        return
    protocol = args.protocol or ("holdout" if args.peers else "cv")
    systems = [args.only] if args.only else ["opml", "flaml"] + (["cli"] if protocol == "cv" else [])
    peers: dict[str, str] = {}
    for peer in args.peers:
        python = peer_python(peer, args.peers_python)
        if python is None:
            print(not_installed(peer, args.peers_python), flush=True)
        elif protocol == "cv":
            print(f"{peer} skipped: it runs on the paired holdout only (--protocol holdout)", flush=True)
        else:
            peers[peer] = python
    results = []
    if protocol == "cv":
        for system in (s for s in systems if s != "cli"):
            print(f"running {system} ({args.budget:g} s budget)...", file=sys.stderr, flush=True)
            results.extend(compare([system], args.data, args.budget, protocol, {}))
    else:
        results = compare([s for s in systems if s != "cli"], args.data, args.budget, protocol, peers)
    if results:
        import pandas as pd

        n_holdout = len(holdout_rows(pd.read_csv(args.data, usecols=[LABEL])[LABEL].to_numpy()))
        report(results, args.budget, args.data, protocol, n_holdout if protocol == "holdout" else 0)
    if "cli" in systems:
        print(f"running `opml train` ({args.budget:g} s budget)...", file=sys.stderr, flush=True)
        cli = run_cli(args.data, args.budget)
        print(f"\nopml train (whole command: register data, AutoML, MLflow tracking, model registration): "
              f"wall {cli['wall_s']:.1f} s, peak RSS {cli['rss_mb']:.0f} MB, {cli['trials']} models, "
              f"best {cli['best']} AUC_weighted {cli['auc']:.4f}; "
              f"wall <= {args.budget * 1.1:g} s: {'PASS' if cli['wall_s'] <= args.budget * 1.1 else 'FAIL'}")
        sel = cli["selection"]
        top = sel["top"]
        print(f"model_selection {sel['rule']}: top score {top['pipeline']} {top['score']:.4f} "
              f"({top['scoring_cost']:,} leaves)"
              + (f", one standard error {sel['standard_error']:.4f}" if "standard_error" in sel else ""))


if __name__ == "__main__":
    main()
