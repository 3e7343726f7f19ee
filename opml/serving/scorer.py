"""Scorers turn checked request columns into class probabilities and labels.

`load_scorer` prefers the compiled path (no pandas or sklearn per request) and falls back to the
plain model when the pipeline cannot be compiled (CannotCompile), saying why; both give the same
probabilities and the same labels (opml.automl.threshold.decide).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opml.automl.threshold import decide, decision_of
from opml.serving.cbuild import CannotCompile
from opml.serving.requests import Column, columnar
from opml.workspace.workspace import Workspace


class ModelScorer:
    """The plain path: a one-batch DataFrame through the fitted model's predict_proba."""

    def __init__(self, model: Any, model_ref: str, columns: list[Column], example: dict[str, Any],
                 inference: str) -> None:
        import pandas as pd

        self._pd = pd
        self.model = model
        self.model_ref = model_ref
        self.columns = columns
        self.example = example
        self.classes = [str(c) for c in model.classes_]
        self.inference = inference
        self._labels = np.asarray(self.classes, dtype=object)
        self._threshold, self._pos = decision_of(model)

    def predict_proba(self, cols: dict[str, list[Any]]) -> np.ndarray:
        frame = self._pd.DataFrame({c.name: _column(cols[c.name], c.kind) for c in self.columns})
        return np.asarray(self.model.predict_proba(frame), dtype=np.float64)

    def read(self, records: list[Any]) -> dict[str, Any]:
        return columnar(records, self.columns)

    def predict_batch(self, batch: dict[str, Any]) -> np.ndarray:
        return self.predict_proba(batch)

    def labels(self, proba: np.ndarray) -> list[str]:
        return self._labels[decide(proba, self._threshold, self._pos)].tolist()


def _column(values: list[Any], kind: str) -> np.ndarray:
    if kind == "numeric":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=object)


def schema_columns(model: Any) -> tuple[list[Column], dict[str, Any]]:
    """Input columns (numeric or categorical) and an example record from the model's stored schema."""
    schema = model.schema_
    cols = [Column(name=c["name"], kind="numeric" if c["kind"] == "numeric" else "categorical")
            for c in schema["columns"]]
    return cols, dict(schema.get("example") or {})


def load_scorer(ws: Workspace, model_ref: str) -> Any:
    from opml.training.models import get_model, load_model

    reg = get_model(ws, model_ref)
    model = load_model(reg)
    columns, example = schema_columns(model)
    try:
        from opml.serving.compiled import compile_model

        scorer = compile_model(model, reg.ref, columns, example)
    except CannotCompile as why:
        scorer = ModelScorer(model, reg.ref, columns, example, f"fallback: {why}")
    record = {c.name: example.get(c.name) for c in columns}
    for n in (1, 32):  # warm up (and check) the one-row and the batch paths before taking traffic
        scorer.labels(scorer.predict_batch(scorer.read([dict(record) for _ in range(n)])))
    return scorer
