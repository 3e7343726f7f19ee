"""Scorers turn checked request columns into class probabilities and labels.

`load_scorer` prefers the compiled path (no pandas or sklearn per request) and falls back to the
plain model when the pipeline cannot be compiled (CannotCompile), saying why; both give the same
probabilities and the same labels (opml.automl.threshold.decide). It reads a model saved in MLflow's
sklearn flavour as (cloud)pickle straight from its file, as mlflow.sklearn.load_model would, without
importing MLflow; any other flavour goes through MLflow.

`preload` imports, without loading the model, every module a worker needs to load and serve it: the
endpoint's supervisor calls it once, so the workers it forks (and the ones it restarts) inherit them.
"""

from __future__ import annotations

import importlib
import os
import pickle
import pickletools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from opml.automl.threshold import decide, decision_of
from opml.serving.cbuild import CannotCompile
from opml.serving.requests import Column, columnar
from opml.workspace.workspace import Workspace

if TYPE_CHECKING:
    from opml.training.models import RegisteredModel


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
    from opml.training.models import get_model

    reg = get_model(ws, model_ref)
    model = read_model(reg)
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


# ------------------------------------------------------------------------------------------ loading, preloading

PICKLED = ("pickle", "cloudpickle")  # mlflow.sklearn serialization formats that are a plain pickle file
WORKER_MODULES = ("numpy", "pandas", "sklearn.base", "opml.automl.model", "opml.serving.compiled",
                  "opml.serving.reader", "opml.serving.treecompile", "opml.serving.app", "opml.serving.openapi",
                  "opml.serving.telemetry", "opml.training.models")


def pickled_model(path: str | Path) -> Path | None:
    """The pickle file of the MLflow sklearn-flavour model at `path`, when it loads with plain pickle.load
    (format pickle or cloudpickle, no code folder, MLflow's deserialization switch not turned off); else None."""
    import yaml

    try:
        meta = yaml.safe_load((Path(path) / "MLmodel").read_text(encoding="utf-8"))
        flavor = meta["flavors"]["sklearn"]
        fmt = flavor.get("serialization_format", "pickle")
        pkl = Path(path) / flavor["pickled_model"]
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return None
    allowed = os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true").strip().lower() in ("true", "1")
    return pkl if fmt in PICKLED and not flavor.get("code") and allowed and pkl.is_file() else None


def read_model(reg: RegisteredModel) -> Any:
    """The fitted classifier of `reg`: its pickle file read directly, else through MLflow (load_model)."""
    pkl = pickled_model(reg.path)
    if pkl is None:
        from opml.training.models import load_model

        return load_model(reg)
    with pkl.open("rb") as fh:
        return pickle.load(fh)  # what cloudpickle.load is


def pickle_modules(path: Path) -> set[str]:
    """The modules a pickle imports when loaded, read from its opcodes (nothing in it is run)."""
    strings = ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING")
    modules: set[str] = set()
    memo: dict[int, Any] = {}
    stack: list[Any] = []  # the values the last opcodes pushed: strings, or None for anything else
    with path.open("rb") as fh:
        for op, arg, _ in pickletools.genops(fh):
            name = op.name
            if name in ("FRAME", "PROTO", "STOP"):
                continue
            if name == "MEMOIZE":
                memo[len(memo)] = stack[-1] if stack else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1] if stack else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(arg))
            elif name in strings:
                stack.append(arg)
            elif name in ("GLOBAL", "INST"):
                modules.add(str(arg).split(" ", 1)[0])
                stack.append(None)
            elif name == "STACK_GLOBAL":
                if len(stack) >= 2 and isinstance(stack[-2], str):
                    modules.add(stack[-2])
                stack.append(None)
            else:
                stack.append(None)
            del stack[:-2]
    return modules


def preload(ws: Workspace, model_ref: str) -> list[str]:
    """Import what a worker imports to load and serve `model_ref`: opml's scoring modules and the modules its
    pickle names. The model is neither loaded nor run, so no OpenMP parallel region starts libgomp's thread
    pool, and a process that calls this can still fork (the threads imports do start, OpenBLAS's and pyarrow's
    jemalloc's, stop or reset themselves at a fork). Returns the modules that failed to import."""
    from opml.training.models import get_model

    names = list(WORKER_MODULES)
    try:
        pkl = pickled_model(get_model(ws, model_ref).path)
        if pkl is not None:
            names += sorted(pickle_modules(pkl))
    except Exception:  # a missing or broken model: the workers load it themselves and say what is wrong
        pass
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            failed.append(name)
    return failed
