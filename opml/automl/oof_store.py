"""Candidates' out-of-fold predictions kept on disk while an experiment runs.

Every candidate's out-of-fold probabilities (rows x classes, float64) stay available until the end:
the ensembles read the best ones, and the final choice (which may fall down the leaderboard when a
refit does not fit) needs its own for the threshold and the calibration. Held in memory they grow a
search by rows x classes x 8 bytes a candidate (0.5 MB on the bank data; 16 MB at 1M rows), without
bound as the budget grows. Here each is written once and read back memory-mapped, so only the pages
actually read are resident, and the page cache gives them back under memory pressure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np

from opml.processes import alive

PREFIX = "opml-oof-"


class OofStore:
    """A scratch folder of `.npy` files, one per candidate; deleted on `close()`.

    The folder's name holds the owning process's pid, so a store opened later in the same parent removes
    what a killed run left behind (a folder whose process is gone).
    """

    def __init__(self, parent: Path | None = None) -> None:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
            _sweep(parent)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-", dir=parent,
                                                ignore_cleanup_errors=True)
        self.folder = Path(self._tmp.name)

    def keep(self, key: int, oof: np.ndarray) -> np.ndarray:
        """`oof` as a read-only memory map of its copy on disk (`oof` itself if it cannot be written)."""
        path = self.folder / f"{int(key)}.npy"
        try:
            np.save(path, np.asarray(oof))
            return np.load(path, mmap_mode="r")
        except OSError:  # disk full or scratch gone: memory is the fallback, the run goes on
            path.unlink(missing_ok=True)
            return oof

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> OofStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _sweep(parent: Path) -> None:
    """Remove the stores of processes that no longer run (a run killed before it could clean up)."""
    for folder in parent.glob(f"{PREFIX}*-*"):
        pid = folder.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)

