"""Batch prediction with a registered model: CSV in, CSV out with predictions and class probabilities."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from opml.data.profile import read_csv
from opml.data.source import local_file
from opml.training.models import get_model, load_model
from opml.workspace.workspace import Workspace


def predict_csv(ws: Workspace, model_ref: str, data: str, out: str) -> dict[str, Any]:
    """Score every row of `data`; write its columns plus `prediction` and `probability_<class>` to `out`.

    The model's label column, if present in the input, is ignored for scoring and kept in the output.
    """
    reg = get_model(ws, model_ref)
    df = read_csv(local_file(data))
    model = load_model(reg)
    proba = model.predict_proba(df)
    labels = model.predict(df)
    result = df.copy()
    result["prediction"] = labels
    for i, cls in enumerate(model.classes_):
        result[f"probability_{cls}"] = proba[:, i]
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        result.to_csv(tmp, index=False)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    counts = result["prediction"].astype(str).value_counts().to_dict()
    return {"model": reg.ref, "rows": len(result), "out": str(target), "predictions": counts,
            "threshold": reg.info.get("threshold")}
