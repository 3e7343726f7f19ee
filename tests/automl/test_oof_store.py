"""Out-of-fold predictions live on disk during a run: same results, no file left, memory-mapped reads."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from opml.automl import oof_store
from opml.automl.experiment import run_experiment
from opml.automl.oof_store import OofStore
from tests.automl.conftest import make_settings


def test_kept_predictions_are_read_only_maps_of_a_copy_removed_on_close(tmp_path):
    oof = np.random.default_rng(0).random((1000, 2))
    with OofStore(tmp_path / "cache") as store:
        kept = store.keep(7, oof)
        assert isinstance(kept, np.memmap) and np.array_equal(kept, oof) and kept.dtype == np.float64
        assert (store.folder / "7.npy").is_file() and store.folder.parent == tmp_path / "cache"
        with pytest.raises(ValueError):
            kept[0, 0] = 1.0  # read-only: nothing may change a scored candidate's predictions
        folder = store.folder
    assert not folder.exists()


def test_a_store_that_cannot_write_keeps_the_array_in_memory(tmp_path):
    oof = np.ones((10, 2))
    store = OofStore(tmp_path)
    store.close()  # the folder is gone: writing fails
    assert store.keep(1, oof) is oof


def test_a_new_store_removes_what_a_killed_run_left_and_keeps_a_live_runs(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f"opml-oof-{int(gone.stdout)}-x1"
    live = tmp_path / f"opml-oof-{os.getpid()}-x2"
    other = tmp_path / "downloads"
    for folder in (left, live, other):
        folder.mkdir()
        (folder / "1.npy").write_bytes(b"x")
    with OofStore(tmp_path) as store:
        assert not left.exists() and live.is_dir() and other.is_dir()
        assert store.folder.name.startswith(f"opml-oof-{os.getpid()}-")


def test_a_run_reads_every_candidate_from_disk_and_leaves_no_file(small_df, tmp_path, monkeypatch):
    settings = make_settings(max_trials=5, allowed_models=["LightGBM", "LogisticRegression"], random_seed=4)
    seen: list[tuple[int, bool, bool]] = []

    def on_trial(t):
        on_disk = isinstance(t.oof, np.memmap) and str(t.oof.filename).startswith(str(tmp_path))
        seen.append((t.iteration, t.oof is not None, on_disk))

    spilled = run_experiment(small_df, settings, on_trial=on_trial, scratch=tmp_path)
    assert len(seen) >= 7 and all(on_disk for _, has, on_disk in seen if has)  # searched and ensembles alike
    assert sum(has for _, has, _ in seen) >= 7
    assert list(tmp_path.iterdir()) == []
    best = spilled.best
    assert type(best.oof) is np.ndarray and best.oof.shape == (4000, 2)
    assert all(t.oof is None for t in spilled.trials if t is not best)

    monkeypatch.setattr(oof_store.OofStore, "keep", lambda self, key, oof: oof)
    in_memory = run_experiment(small_df, settings)
    key = [(t.iteration, t.pipeline_name, t.score) for t in spilled.leaderboard]
    assert key == [(t.iteration, t.pipeline_name, t.score) for t in in_memory.leaderboard]
    assert spilled.threshold == in_memory.threshold
    assert np.array_equal(spilled.oof["proba"], in_memory.oof["proba"])
