"""The registered model as the peers serve it: its sklearn pipeline unpickled, labels for JSON records.

The pickle is the one opml's endpoint loads (the MLflow sklearn flavour's model.pkl); it needs opml importable
(its classes live in opml.automl). Labels come from the model's own predict on a DataFrame, which applies the
decision threshold as `opml predict` does; one thread per worker, as the endpoint runs it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


def load(path: str | Path) -> Any:
    with Path(path).open("rb") as fh:
        model = pickle.load(fh)
    if hasattr(model, "set_n_jobs"):
        model.set_n_jobs(1)
    return model


def labels(model: Any, records: list[dict[str, Any]]) -> list[str]:
    import pandas as pd

    return [str(label) for label in model.predict(pd.DataFrame.from_records(records))]
