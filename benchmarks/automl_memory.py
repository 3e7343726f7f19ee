"""How the AutoML engine's memory moves as a search goes on: RSS every --every candidates, in process.

    python benchmarks/automl_memory.py [--budget 420] [--every 25] [--data CSV] [--selection best]

Runs `opml.automl.experiment.run_experiment` (no MLflow, no CLI) with early stopping off, so the whole budget is
search, and prints the process's RSS every --every candidates and at each ensemble, then the growth per
candidate (the slope over the search's samples after the first, which includes the imports and the featurized
folds' cache filling), and the peak (ru_maxrss). Before the out-of-fold store (ce1a58d) a 420 s search
on the bank data grew ~0.5 MB a candidate; a long budget should show a growth near 0.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.dataset import dataset

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def measure(data: Path, budget: float, every: int, selection: str) -> list[tuple[int, str, float, float]]:
    """(candidates so far, stage, seconds, RSS MB) every `every` searched candidates and at each ensemble."""
    import pandas as pd

    from opml.automl.experiment import run_experiment
    from opml.config import automl_settings

    settings = automl_settings(REPO / "configs").model_copy(update={
        "experiment_timeout_seconds": budget, "enable_early_stopping": False, "model_selection": selection})
    df = pd.read_csv(data)
    samples: list[tuple[int, str, float, float]] = []
    t0 = time.monotonic()

    def on_trial(trial) -> None:
        n = trial.progress.trials_done
        if n % every == 0 or trial.progress.stage != "search":
            samples.append((n, trial.progress.stage, time.monotonic() - t0, rss_mb()))
            print(f"{samples[-1][2]:7.1f} s  candidate {n:4d}  {trial.progress.stage:8s}  RSS {samples[-1][3]:6.0f} MB",
                  flush=True)

    run_experiment(df, settings, on_trial=on_trial)
    return samples


def growth_per_candidate(samples: list[tuple[int, str, float, float]]) -> float | None:
    """MB per candidate: the least-squares slope of RSS over the searched samples from the second on (None with
    fewer than three); a slope, not two end points, so one step (a cache filling) weighs as little as it lasts."""
    search = [(n, rss) for n, stage, _, rss in samples if stage == "search"][1:]
    if len(search) < 2 or search[-1][0] == search[0][0]:
        return None
    mx = sum(n for n, _ in search) / len(search)
    my = sum(r for _, r in search) / len(search)
    return sum((n - mx) * (r - my) for n, r in search) / sum((n - mx) ** 2 for n, _ in search)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=420.0, help="seconds (experiment_timeout_seconds)")
    ap.add_argument("--every", type=int, default=10, help="sample RSS every this many candidates")
    ap.add_argument("--selection", default="best", choices=["best", "tolerance", "one_se"])
    ap.add_argument("--data", type=Path, help="default: $OPML_TEST_DATA, ../shared/data/, else downloaded once")
    args = ap.parse_args()
    if args.every < 1 or args.budget <= 0:
        raise SystemExit("--every must be >= 1 and --budget > 0")
    sys.path.insert(0, str(REPO))
    args.data = dataset(args.data, REPO)
    samples = measure(args.data, args.budget, args.every, args.selection)
    growth = growth_per_candidate(samples)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    print(f"candidates: {max(s[0] for s in samples) if samples else 0}; growth per candidate: "
          + ("n/a (too few samples)" if growth is None else f"{growth:+.2f} MB") + f"; peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
