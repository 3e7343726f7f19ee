"""Scoring request bodies: parse both wire forms and check records against the model's input schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

METHODS = ("predict", "predict_proba")


class RequestError(Exception):
    """A bad request: HTTP status plus a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Column:
    name: str
    kind: Literal["numeric", "categorical"]


@dataclass(frozen=True)
class ScoreRequest:
    records: list[dict[str, Any]]
    method: str  # predict | predict_proba
    v2: bool  # the {"Inputs": ..., "GlobalParameters": ...} form


def parse(body: Any) -> ScoreRequest:
    """Accept {"data": [...]} or {"Inputs": {"data": [...]}, "GlobalParameters": {"method": ...}}."""
    if not isinstance(body, dict):
        raise RequestError(422, 'body must be a JSON object: {"data": [{...}, ...]}')
    if "Inputs" in body:
        inputs = body["Inputs"]
        if not isinstance(inputs, dict) or "data" not in inputs:
            raise RequestError(422, 'Inputs must be an object with a "data" list')
        data = inputs["data"]
        params = body.get("GlobalParameters") or {}
        if not isinstance(params, dict):
            raise RequestError(422, "GlobalParameters must be an object")
        method = params.get("method", "predict")
        if method not in METHODS:
            raise RequestError(422, f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
        unknown = set(body) - {"Inputs", "GlobalParameters"}
        v2 = True
    elif "data" in body:
        data, method, v2 = body["data"], "predict", False
        unknown = set(body) - {"data"}
    else:
        raise RequestError(422, 'missing "data": send {"data": [{...}, ...]} or {"Inputs": {"data": [...]}}')
    if unknown:
        raise RequestError(422, f"unknown top-level field(s): {', '.join(sorted(map(str, unknown)))}")
    if not isinstance(data, list):
        raise RequestError(422, '"data" must be a list of records (objects)')
    if not data:
        raise RequestError(422, '"data" is empty: send at least one record')
    return ScoreRequest(records=data, method=method, v2=v2)


def columnar(records: list[Any], columns: list[Column]) -> dict[str, list[Any]]:
    """Check every record against the schema and return the values column by column.

    Numeric columns take numbers or null (imputed); categorical columns take strings or null.
    """
    names = [c.name for c in columns]
    expected = set(names)
    out: dict[str, list[Any]] = {n: [] for n in names}
    kinds = [(c.name, c.kind == "numeric", out[c.name]) for c in columns]
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise RequestError(422, f"record {i} is not an object of column: value pairs")
        if len(rec) != len(expected) or rec.keys() != expected:
            missing = [n for n in names if n not in rec]
            extra = sorted(str(k) for k in rec if k not in expected)
            parts = []
            if missing:
                parts.append(f"missing column(s): {', '.join(missing)}")
            if extra:
                parts.append(f"unknown column(s): {', '.join(extra)}")
            raise RequestError(422, f"record {i}: {'; '.join(parts)}")
        for name, numeric, values in kinds:
            v = rec[name]
            if v is None:
                values.append(None)
            elif numeric:
                if type(v) is bool or not isinstance(v, int | float):
                    raise RequestError(422, f"record {i}: column {name!r} must be a number, got {_type(v)}")
                values.append(v)
            else:
                if not isinstance(v, str):
                    raise RequestError(422, f"record {i}: column {name!r} must be a string, got {_type(v)}")
                values.append(v)
    return out


def _type(v: Any) -> str:
    return {str: "a string", bool: "a boolean", dict: "an object", list: "a list"}.get(type(v), type(v).__name__)
