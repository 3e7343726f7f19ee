"""Scoring request bodies: parse both wire forms and check records against the model's input schema."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

from opml.asgi import HTTPError

METHODS = ("predict", "predict_proba")


class RequestError(HTTPError):
    """A scoring request the model cannot take (its body or a record): status and a message naming the problem."""


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
        params = body.get("GlobalParameters")
        if params is None:
            params = {}
        elif not isinstance(params, dict):
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


_NUMERIC_TYPES = frozenset({int, float, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})


def columnar(records: list[Any], columns: list[Column]) -> dict[str, Sequence[Any]]:
    """Check every record against the schema and return the values column by column.

    Numeric columns take numbers or null (imputed); categorical columns take strings or null.
    Valid batches are checked and transposed with C-level operations (itemgetter, zip, a set of
    types per column); the first problem found sends the batch through the row-by-row check,
    which names the record and column.
    """
    names = [c.name for c in columns]
    width = len(names)
    try:
        if width == 1:
            cols: list[tuple[Any, ...]] = [tuple(rec[names[0]] for rec in records)]
        else:
            cols = list(zip(*map(itemgetter(*names), records), strict=True))
        same_keys = set(map(len, records)) == {width}  # every schema key present: equal length, equal key set
    except (KeyError, TypeError, IndexError, ValueError):
        same_keys = False
    if same_keys:
        for col, c in zip(cols, columns, strict=True):
            allowed = _NUMERIC_TYPES if c.kind == "numeric" else _TEXT_TYPES
            if not set(map(type, col)) <= allowed:
                break
        else:
            return dict(zip(names, cols, strict=True))
    explain(records, columns)
    raise RequestError(422, "a record does not match the input schema")  # explain() names it; a safety net


def explain(records: list[Any], columns: list[Column]) -> None:
    """Raise a RequestError naming the first bad record (row by row, only for refused batches)."""
    names = [c.name for c in columns]
    expected = set(names)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise RequestError(422, f"record {i} is not an object of column: value pairs")
        if rec.keys() != expected:
            missing = [n for n in names if n not in rec]
            extra = sorted(str(k) for k in rec if k not in expected)
            parts = []
            if missing:
                parts.append(f"missing column(s): {', '.join(missing)}")
            if extra:
                parts.append(f"unknown column(s): {', '.join(extra)}")
            raise RequestError(422, f"record {i}: {'; '.join(parts)}")
        for c in columns:
            v = rec[c.name]
            if v is None:
                continue
            if c.kind == "numeric":
                if type(v) not in (int, float):
                    raise RequestError(422, f"record {i}: column {c.name!r} must be a number, got {_type(v)}")
            elif type(v) is not str:
                raise RequestError(422, f"record {i}: column {c.name!r} must be a string, got {_type(v)}")


def _type(v: Any) -> str:
    return {str: "a string", bool: "a boolean", dict: "an object", list: "a list"}.get(type(v), type(v).__name__)
