"""Human-readable report of an AutoML run: leaderboard, best run and how it was delivered, threshold, calibration,
guardrails, importance."""

from __future__ import annotations

from typing import Any

from opml.output import kv, table

SHOWN = ("AUC_weighted", "accuracy", "average_precision_score_weighted", "f1_score_macro")


def render(summary: dict[str, Any], *, run_id: str, status: str = "Completed", top: int = 15) -> str:
    primary = summary.get("settings", {}).get("primary_metric", "AUC_weighted")
    cols = [primary, *[m for m in SHOWN if m != primary][:3]]
    out = []
    board = summary.get("leaderboard", [])
    if board:
        rows = [[r["rank"], r["pipeline"], *[_f(r["metrics"].get(c)) for c in cols], _cost(r.get("scoring_cost")),
                 _secs(r.get("duration_s"))] for r in board[:top]]
        out.append(f"Leaderboard ({len(board)} models, ranked by {primary}; COST: tree leaves scored per row):")
        out.append(table(rows, ["RANK", "PIPELINE", *cols, "COST", "DURATION"]))
        if len(board) > top:
            out.append(f"... {len(board) - top} more in `opml runs show {run_id} --json`")
    failed = summary.get("failed_trials") or []
    if failed:
        out.append(f"\n{len(failed)} candidate(s) failed, e.g. {failed[0]['pipeline']}: {failed[0]['error'][:120]}")
    best = summary.get("best")
    if best:
        m = best["metrics"]
        scores = f"{primary} {_f(m.get(primary))}, accuracy {_f(m.get('accuracy'))}"
        out.append(f"\nBest run: {best['pipeline']}  ({scores})")
        why = _selection(summary.get("selection") or {}, primary)
        if why:
            out.append(why)
        out.extend(_delivery(summary.get("selection") or {}, primary))
    dropped = (summary.get("settings") or {}).get("drop_columns") or []
    if dropped:
        out.append(f"  trained without column(s): {', '.join(dropped)} (drop_columns)")
    thr = summary.get("threshold")
    if thr:
        out.append("\nClass imbalance: metrics on out-of-fold predictions")
        out.append(_threshold_table(thr))
    cal = summary.get("calibration")
    if cal:
        out.append("\n" + _calibration(cal))
    guard = summary.get("guardrails") or []
    if guard:
        out.append("\nData guardrails:")
        out.append(table([(g.get("name"), g.get("status"), _short(g.get("details"))) for g in guard],
                         ["GUARDRAIL", "STATUS", "DETAILS"]))
        for g in guard:
            if g.get("name") == "Feature leakage detection" and g.get("status") == "alerted":
                out.append(f"Leakage: {g.get('details')}")
    imp = summary.get("feature_importance") or []
    if imp:
        out.append("\nTop features (raw input columns):")
        out.append(table([(i + 1, _name(e), _f(_value(e))) for i, e in enumerate(imp[:10])],
                         ["#", "FEATURE", "IMPORTANCE"]))
    info = [("run", f"{run_id} ({status})"), ("mlflow run", summary.get("mlflow_run_id", "")),
            ("model", summary.get("model", "")), ("artifacts", summary.get("artifacts_dir", "")),
            ("duration", _secs(summary.get("duration_s", 0)))]
    out.append("\n" + kv([(k, "-" if v is None else v) for k, v in info]))
    return "\n".join(out)


def _selection(sel: dict[str, Any], primary: str) -> str:
    """One line on how the best run was chosen, when a cost-aware rule passed over the top score."""
    top, chosen = sel.get("top") or {}, sel.get("chosen") or {}
    rule = sel.get("rule")
    if rule not in ("one_se", "tolerance") or not top or top.get("iteration") == chosen.get("iteration"):
        return ""
    ratio = (top.get("scoring_cost") or 0) / max(1, chosen.get("scoring_cost") or 1)
    margin = (f"one standard error ({sel.get('standard_error', 0):.4f})" if rule == "one_se"
              else f"the selection tolerance ({sel.get('tolerance', 0):g})")
    return (f"  chosen by model_selection: {rule}: the cheapest to score of {sel.get('eligible')} candidates "
            f"within {margin} of the top {primary}, "
            f"{top.get('pipeline')} ({_f(top.get('score'))}), at {ratio:.1f}x less scoring cost "
            f"({_cost(chosen.get('scoring_cost'))} vs {_cost(top.get('scoring_cost'))} leaves); "
            f"model_selection: best picks the top score")


def _delivery(sel: dict[str, Any], primary: str) -> list[str]:
    """Lines on how the chosen model was delivered, when it was not simply refit on all rows."""
    chosen, delivered = sel.get("chosen") or {}, sel.get("delivered") or {}
    lines = []
    if sel.get("refit_instead"):
        line = (f"  WARNING: model_selection {sel.get('rule')} chose {chosen.get('pipeline')} "
                f"({_f(chosen.get('score'))}), but {sel.get('undelivered') or 'it could not be delivered'}; "
                f"registered {delivered.get('pipeline')} ({primary} {_f(delivered.get('score'))}) instead")
        if sel.get("below_floor"):
            line += (f", BELOW the selection floor {_f(sel.get('floor'))} (one standard error under the top score "
                     f"{_f((sel.get('top') or {}).get('score'))})")
        lines.append(line + "; raise --time-budget to get the chosen model")
    if sel.get("delivery") == "fold_bag":
        n = sel.get("bag_models") or "its"
        lines.append(f"  delivered as a bag of {n} cross-validation fold models of {delivered.get('pipeline')} (their "
                     "probabilities averaged; same out-of-fold score): no time was left to refit it on all rows, "
                     "and it costs more to score; a larger --time-budget refits it")
    return lines


def _calibration(cal: dict[str, Any]) -> str:
    """The calibration lines: Brier score of the out-of-fold probabilities, the maps tried, the decision."""
    line = f"Calibration: out-of-fold Brier score {_f(cal.get('brier'))}"
    tried = [f"{m} {_f(v.get('brier'))}" for m, v in (cal.get("methods") or {}).items() if "brier" in v]
    if tried:
        line += f"; cross-fitted: {', '.join(tried)}"
    applied = cal.get("applied")
    return line + (f"\n  applied by predict: {applied} ({cal.get('reason')})" if applied else
                   f"\n  {cal.get('reason')}")


def _secs(v: Any) -> str:
    """Seconds as `12.3s`; `-` when a backend does not report them (Azure ML)."""
    return f"{v:.1f}s" if isinstance(v, int | float) else "-"


def _cost(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, int | float) else "-"


def _threshold_table(thr: dict[str, Any]) -> str:
    rows = []
    for key in ("argmax", "tuned"):
        block = thr.get(key)
        if not isinstance(block, dict):
            continue
        rows.append([key, _f(block.get("threshold")), _f(block.get("accuracy")), _f(block.get("precision")),
                     _f(block.get("recall")), _f(block.get("f1"))])
    minority = thr.get("minority_class", "minority")
    heads = ["DECISION", "THRESHOLD", "ACCURACY", f"PRECISION({minority})", f"RECALL({minority})", f"F1({minority})"]
    text = table(rows, heads) if rows else str(thr)
    if thr.get("applied") is not None:
        text += f"\napplied by predict: {thr.get('applied')}"
    return text


def _name(entry: Any) -> str:
    return str(entry[0] if isinstance(entry, list | tuple) else entry.get("feature", entry.get("column")))


def _value(entry: Any) -> Any:
    return entry[1] if isinstance(entry, list | tuple) else entry.get("importance")


def _short(details: Any) -> str:
    text = details if isinstance(details, str) else ", ".join(f"{k}={v}" for k, v in (details or {}).items())
    return text if len(text) <= 90 else text[:87] + "..."


def _f(v: Any) -> str:
    if v is None:
        return "-"
    try:
        return f"{float(v):.4f}"
    except (TypeError, ValueError):
        return str(v)
