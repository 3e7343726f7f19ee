"""Outer evaluation of the model-selection rules: which rule's model does best on rows the search never saw.

The training CSV is split by RepeatedStratifiedKFold(folds, repeats, random_state=0) (e.g. 5x2: ten splits).
In each split opml's AutoML runs ONCE on the inner part, with the settings of configs/automl.yaml and the
given budget (in its own process, so memory is its own and freed after). Every selection rule is then applied
to that same leaderboard, so the rules are compared paired, on the same search. Each rule's choice is
delivered as the product delivers it: the model `run_experiment` returned when the choice is the one it
made (refit, or its fold bag); otherwise refit on the inner part (untimed, outside the budget) with the
calibration and the decision threshold tuned on its inner out-of-fold predictions, as the product does.
Each model is scored on the outer part: AUC, F1 of the minority class ("yes") and accuracy at the applied
(tuned) threshold; its serving cost is its tree leaves and the measured time of one row through the compiled
scorer (opml.serving.compiled), the endpoint's path: read a record, predict, apply the threshold.

    .venv/bin/python benchmarks/automl_quality.py --outer 5x2 [--budget 120] [--sample ROWS] [--outer-json PATH]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = 0
TOLERANCES = (0.0001, 0.0002, 0.0005)  # fixed CV-score tolerances tried as "cheapest within" rules
ONE_ROW_CALLS = 200  # one-row scoring calls per timing round (a 100-row request: 1/100 as many) ...
ONE_ROW_ROUNDS = 7  # ... rounds; the median round's mean is reported
BATCH_ROWS = 100  # the batch request timed besides one row


def parse_spec(spec: str) -> tuple[int, int]:
    """'5x2' -> (5 outer folds, 2 repeats)."""
    try:
        folds, repeats = (int(p) for p in spec.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--outer takes FOLDSxREPEATS, e.g. 5x2 (got {spec!r})") from None
    if folds < 2 or repeats < 1:
        raise SystemExit("--outer needs at least 2 folds and 1 repeat")
    return folds, repeats


def rule_choices(board: list[Any], metric: str, y: Any, folds: Any) -> dict[str, Any]:
    """Each rule's choice from one leaderboard (sorted best first; candidates carry their `oof`).

    `best` and `one_se` (and any further rule of opml.automl.selection.RULES) are the product's own
    `select`; the others are candidate rules tried here: the cheapest within half a standard error, within
    a fixed tolerance of the top CV score, or within one standard error of its paired per-fold difference
    from the top candidate (same folds, so most of the fold-to-fold noise cancels).
    """
    import numpy as np

    from opml.automl.selection import RULES, cheapest, fold_scores, select

    out: dict[str, Any] = {}
    record: dict[str, Any] = {}
    for rule in RULES:
        out[rule], rec = select(board, rule, metric, y, folds)
        record = record or rec
    top = board[0]
    if top.oof is None or len(board) == 1:
        return out
    se = float(record.get("standard_error", 0.0))
    score = float(top.score)
    out.setdefault("half_se", cheapest([t for t in board if float(t.score) >= score - se / 2]))
    for tol in TOLERANCES:
        out.setdefault(f"within {tol:g}", cheapest([t for t in board if float(t.score) >= score - tol]))
    top_folds = fold_scores(metric, y, top.oof, folds)
    close = []
    for t in board:
        if t.oof is None:
            continue
        d = top_folds - fold_scores(metric, y, t.oof, folds)
        if t is top or d.mean() <= d.std(ddof=1) / np.sqrt(len(d)):
            close.append(t)
    out.setdefault("paired_se", cheapest(close))
    return out


def _serving_us(model: Any, records: list[dict[str, Any]]) -> tuple[float, float, str]:
    """(µs for one record, µs a row in a request of all `records`, engine) through the compiled scorer.

    The endpoint's path: read the records, predict, apply the threshold; the median of timing rounds.
    """
    import statistics

    from opml.serving.cbuild import CannotCompile
    from opml.serving.scorer import schema_columns

    columns, example = schema_columns(model)
    try:
        from opml.serving.compiled import compile_model

        scorer = compile_model(model, "outer:1", columns, example)
        engine = "compiled"
    except CannotCompile as why:
        from opml.serving.scorer import ModelScorer

        scorer = ModelScorer(model, "outer:1", columns, example, f"fallback: {why}")
        engine = f"plain ({why})"
    records = [{c.name: r.get(c.name) for c in columns} for r in records]

    def timed(batch: list[dict[str, Any]], calls: int) -> float:
        for _ in range(max(2, calls // 10)):
            scorer.labels(scorer.predict_batch(scorer.read(batch)))
        rounds = []
        for _ in range(ONE_ROW_ROUNDS):
            t0 = time.perf_counter()
            for _ in range(calls):
                scorer.labels(scorer.predict_batch(scorer.read(batch)))
            rounds.append((time.perf_counter() - t0) / calls / len(batch) * 1e6)
        return statistics.median(rounds)

    return timed(records[:1], ONE_ROW_CALLS), timed(records, max(5, ONE_ROW_CALLS // len(records))), engine


def _load(data: Path, sample: int | None, label: str) -> Any:
    import pandas as pd

    df = pd.read_csv(data)
    if sample and sample < len(df):
        from sklearn.model_selection import train_test_split

        df, _ = train_test_split(df, train_size=sample, stratify=df[label], random_state=SEED)
        df = df.reset_index(drop=True)
    return df


def worker(data: Path, budget: float, spec: tuple[int, int], index: int, sample: int | None) -> dict[str, Any]:
    """One outer split: one AutoML search on the inner part, every rule's model scored on the outer part."""
    import numpy as np
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import RepeatedStratifiedKFold

    from opml.automl.calibration import assess
    from opml.automl.experiment import _estimator, run_experiment
    from opml.automl.model import OpmlClassifier, calibrated
    from opml.automl.results import SUCCEEDED
    from opml.automl.threshold import binary_report, choose_threshold
    from opml.config import automl_settings

    settings = automl_settings(REPO / "configs").model_copy(update={"experiment_timeout_seconds": budget})
    label = settings.label
    df = _load(data, sample, label)
    folds, repeats = spec
    outer_splits = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=SEED)
    inner_rows, outer_rows = list(outer_splits.split(np.zeros(len(df)), df[label]))[index]
    inner, outer = df.iloc[inner_rows].reset_index(drop=True), df.iloc[outer_rows].reset_index(drop=True)

    oofs: dict[int, Any] = {}  # run_experiment drops the candidates' out-of-fold predictions at the end

    def keep(t: Any) -> None:
        if t.status == SUCCEEDED and t.oof is not None:
            oofs[t.iteration] = t.oof

    started = time.monotonic()
    result = run_experiment(inner, settings, on_trial=keep)
    search_wall = time.monotonic() - started
    board = result.leaderboard
    for t in board:
        t.oof = oofs.get(t.iteration, t.oof)
    by_iteration = {t.iteration: t for t in result.trials}
    y_raw = inner[label].to_numpy()
    classes = np.unique(y_raw)
    y = np.searchsorted(classes, y_raw)
    positive = int(np.argmin(np.bincount(y)))
    labels = [str(c) for c in classes]
    y_eval = result.oof["y"]
    from opml.automl.evaluate import make_splits

    ens_fold = make_splits(y, settings.cv_folds, settings.validation_size, settings.random_seed).ens_fold
    choices = rule_choices(board, settings.primary_metric, y_eval, ens_fold)

    features = inner.drop(columns=[label, *settings.drop_columns])
    kinds = result.model.kinds
    workers = max(1, os.cpu_count() or 1)
    X_outer = outer.drop(columns=[label])
    y_outer = outer[label].to_numpy() == classes[positive]
    records = json.loads(X_outer.head(BATCH_ROWS).to_json(orient="records"))
    scored: dict[int, dict[str, Any]] = {}

    def deliver(t: Any) -> tuple[Any, str]:
        if t.iteration == result.best.iteration:  # the product's own model, delivered as it delivered it
            return result.model, f"product ({result.selection.get('delivery', 'refit')})"
        calibration = assess(y_eval, t.oof, ens_fold, positive)
        proba = calibrated(t.oof, calibration["map"], positive)
        threshold = choose_threshold(settings.decision_threshold, y_eval, proba, labels, positive)
        estimator = _estimator(t, by_iteration, settings, kinds, 1, workers)
        model = OpmlClassifier(estimator, threshold=threshold["applied"], positive_label=classes[positive],
                               kinds=kinds, pipeline_name=t.pipeline_name, calibration=calibration["map"])
        return model.fit(features, y_raw), "refit (untimed)"

    def score(t: Any) -> dict[str, Any]:
        if t.iteration not in scored:
            model, delivery = deliver(t)
            p = model.predict_proba(X_outer)[:, model.positive_index_]
            cut = model.threshold_ if model.threshold_ is not None else 0.5
            at = binary_report(y_outer, p, cut)
            us, us_batch, engine = _serving_us(model, records)
            scored[t.iteration] = {
                "pipeline": t.pipeline_name, "algorithm": t.algorithm, "iteration": t.iteration,
                "cv_score": float(t.score), "delivery": delivery, "threshold": float(cut),
                "auc": float(roc_auc_score(y_outer, p)), "f1": at["f1"], "accuracy": at["accuracy"],
                "leaves": int(sum(m.scoring_cost() for m in model.pipelines_)), "us_row": us,
                "us_row_batch": us_batch, "engine": engine,
            }
        return scored[t.iteration]

    rules = {name: score(t) for name, t in choices.items()}
    import resource

    return {
        "index": index, "repeat": index // folds + 1, "fold": index % folds + 1, "inner_rows": len(inner),
        "outer_rows": len(outer), "search_s": search_wall, "trials": len(result.trials),
        "stop": result.stop_reason, "top": {"pipeline": board[0].pipeline_name, "cv_score": float(board[0].score)},
        "product_rule": settings.model_selection, "product_selection": {
            k: result.selection.get(k) for k in ("standard_error", "delivery", "refit_instead", "below_floor")},
        "rules": rules, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "total_s": time.monotonic() - started,
    }


def _run_split(data: Path, budget: float, spec: str, index: int, sample: int | None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--data", str(data), "--budget", str(budget),
           "--outer", spec, "--split", str(index)] + (["--sample", str(sample)] if sample else [])
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"outer split {index} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def evaluate(data: Path, budget: float, spec: str, sample: int | None = None,
             json_path: Path | None = None) -> list[dict[str, Any]]:
    """Run every outer split (one process each, one after the other), printing a line per split, then the table."""
    folds, repeats = parse_spec(spec)
    n = folds * repeats
    print(f"Outer evaluation: {data.name}{f' (stratified sample of {sample} rows)' if sample else ''}, "
          f"RepeatedStratifiedKFold({folds} folds x {repeats} repeats, random_state={SEED}); in each split one "
          f"AutoML search on the inner part (configs/automl.yaml, budget {budget:g} s, {os.cpu_count()} cores), "
          "every rule applied to that same leaderboard (a paired comparison), each rule's model scored on the "
          "outer part", flush=True)
    splits: list[dict[str, Any]] = []
    for i in range(n):
        print(f"split {i + 1}/{n} (repeat {i // folds + 1}, fold {i % folds + 1}): searching ...", flush=True)
        s = _run_split(data, budget, spec, i, sample)
        splits.append(s)
        picks = "; ".join(f"{name}: {r['pipeline']} AUC {r['auc']:.4f} F1 {r['f1']:.3f} {r['leaves']:,} leaves "
                          f"{r['us_row']:.0f} us" for name, r in s["rules"].items())
        print(f"split {i + 1}/{n} done: search {s['search_s']:.1f} s, {s['trials']} trials, top "
              f"{s['top']['pipeline']} CV {s['top']['cv_score']:.4f}, peak RSS {s['peak_rss_mb']:.0f} MB, "
              f"{s['total_s']:.0f} s in all | {picks}", flush=True)
        if json_path is not None:
            json_path.write_text(json.dumps(splits, indent=1, default=float))
    report(splits)
    return splits


def _stats(values: list[float], spec: str) -> str:
    import numpy as np

    a = np.asarray(values, dtype=float)
    std = a.std(ddof=1) if len(a) > 1 else 0.0
    return f"{a.mean():{spec}} ±{std:{spec}} [{a.min():{spec}}..{a.max():{spec}}]"


def report(splits: list[dict[str, Any]]) -> None:
    """The per-rule table: mean, std and range over the splits, and the paired AUC difference vs `best`."""
    import numpy as np

    rules = list(splits[0]["rules"])
    n = len(splits)
    print(f"\nOuter evaluation over {n} splits (mean ±std [min..max]); the same search per split for every rule")
    head = (f"{'rule':<14} {'outer AUC':<30} {'ΔAUC vs best (n lower)':<25} {'F1(yes), tuned thr.':<27} "
            f"{'accuracy, tuned thr.':<27} {'tree leaves':<26} {'µs, 1 row':<18} {'µs/row, 100 rows':<17} "
            "CV given up")
    print(head)
    best = np.array([s["rules"]["best"]["auc"] for s in splits])
    for rule in rules:
        rs = [s["rules"][rule] for s in splits]
        diff = np.array([r["auc"] for r in rs]) - best
        worse = int(np.sum(diff < -1e-12))
        dstd = diff.std(ddof=1) if n > 1 else 0.0
        given = [s["top"]["cv_score"] - r["cv_score"] for s, r in zip(splits, rs, strict=True)]
        leaves = np.array([r["leaves"] for r in rs])
        us = np.array([r["us_row"] for r in rs])
        batch = [r["us_row_batch"] for r in rs if r.get("us_row_batch") is not None]
        per_row = f"{np.mean(batch):.1f} [{min(batch):.1f}..{max(batch):.1f}]" if batch else "-"
        print(f"{rule:<14} {_stats([r['auc'] for r in rs], '.4f'):<30} "
              f"{f'{diff.mean():+.4f} ±{dstd:.4f} ({worse}/{n})':<25} "
              f"{_stats([r['f1'] for r in rs], '.3f'):<27} {_stats([r['accuracy'] for r in rs], '.4f'):<27} "
              f"{f'{leaves.mean():,.0f} [{leaves.min():,}..{leaves.max():,}]':<26} "
              f"{f'{us.mean():.0f} [{us.min():.0f}..{us.max():.0f}]':<18} {per_row:<17} {np.mean(given):.4f}")
    print("\nchoices per rule (pipelines over the splits):")
    for rule in rules:
        counts: dict[str, int] = {}
        for s in splits:
            name = s["rules"][rule]["pipeline"]
            counts[name] = counts.get(name, 0) + 1
        print(f"  {rule:<14} " + "; ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    print("ΔAUC: the rule's outer AUC minus `best`'s in the same split (paired), mean ±std, and in how many "
          "splits it was lower; CV given up: the top CV score minus the chosen candidate's; µs: one request through "
          "the compiled scorer (read the records, predict, threshold), median of rounds, for 1 row and per row of "
          "100; the splits of repeated CV overlap, so the spread understates the uncertainty of a mean")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="one outer split (a worker of automl_quality.py --outer)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--outer", default="5x2")
    parser.add_argument("--split", type=int, required=True)
    parser.add_argument("--sample", type=int)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    out = worker(args.data, args.budget, parse_spec(args.outer), args.split, args.sample)
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
