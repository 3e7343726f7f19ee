"""The `consume` stage: send rows to an endpoint the way a client would, and pair replies with inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from opml.errors import DataError, OpmlError
from opml.serving.endpoints import Endpoint, endpoint_keys
from opml.workspace.workspace import Workspace


def records_from_dataset(ws: Workspace, dataset_ref: str, label: str, rows: int) -> list[dict[str, Any]]:
    from opml.data.registry import get_dataset

    if rows < 1:
        raise OpmlError(f"--rows must be at least 1 (got {rows})", "pass --rows N")
    df = get_dataset(ws, dataset_ref).load().head(rows).drop(columns=[label], errors="ignore")
    return [{k: _clean(v) for k, v in rec.items()} for rec in df.to_dict("records")]


def records_from_file(path: str) -> list[dict[str, Any]]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"{p} not found", "pass an existing JSON file with --data") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{p} is not valid JSON ({exc})", "fix the file") from None
    if isinstance(doc, dict):
        doc = (doc.get("Inputs") or {}).get("data") if "Inputs" in doc else doc.get("data")
    if not isinstance(doc, list) or not doc or not all(isinstance(r, dict) for r in doc):
        raise DataError(f"{p} holds no records", 'write {"data": [{...}, ...]} or a list of objects')
    return doc


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def send(ws: Workspace, ep: Endpoint, records: list[dict[str, Any]], *, proba: bool = False,
         timeout: float = 30.0) -> dict[str, Any]:
    """POST records to the endpoint; returns {"status", "predictions" or "error"}."""
    import requests

    headers = {"Content-Type": "application/json"}
    if ep.auth_enabled:
        headers["Authorization"] = f"Bearer {endpoint_keys(ws, ep.name)['primary']}"
    body: dict[str, Any] = ({"Inputs": {"data": records}, "GlobalParameters": {"method": "predict_proba"}}
                            if proba else {"data": records})
    try:
        resp = requests.post(ep.scoring_uri, json=body, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise OpmlError(f"endpoint {ep.name!r} did not answer at {ep.scoring_uri} ({type(exc).__name__})",
                        f"check `opml endpoint show {ep.name}` or `opml endpoint restart {ep.name}`") from None
    try:
        reply = resp.json()
    except ValueError:
        reply = {"error": resp.text[:200]}
    if resp.status_code != 200:
        raise OpmlError(f"endpoint answered {resp.status_code}: {reply.get('error', reply)}")
    return {"status": resp.status_code, "predictions": reply.get("Results" if proba else "result")}
