"""The `deploy` stage and endpoint management: records in opml.db, processes on 127.0.0.1, keys in secrets/."""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from opml.config import DeployConfig
from opml.errors import NotFoundError, OpmlError
from opml.naming import check_name
from opml.processes import free_port
from opml.serving import keys as keystore
from opml.serving import process, telemetry
from opml.workspace import store
from opml.workspace.workspace import Workspace, now_iso


@dataclass(frozen=True)
class Endpoint:
    name: str
    model: str
    host: str
    port: int
    pid: int | None
    auth_enabled: bool
    settings: dict[str, Any]
    inference: str | None
    started_at: str | None
    created_at: str
    updated_at: str

    @property
    def base_uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def scoring_uri(self) -> str:
        return f"{self.base_uri}/score"

    @property
    def swagger_uri(self) -> str:
        return f"{self.base_uri}/swagger.json"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"scoring_uri": self.scoring_uri, "swagger_uri": self.swagger_uri}


def _row(row: sqlite3.Row) -> Endpoint:
    d = dict(row)
    d["settings"] = json.loads(d["settings"])
    d["auth_enabled"] = bool(d["auth_enabled"])
    return Endpoint(**d)


@contextlib.contextmanager
def _locked(ws: Workspace, name: str) -> Iterator[None]:
    """One change at a time per endpoint, across processes."""
    path = ws.root / "run" / "endpoints" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def find(ws: Workspace, name: str) -> Endpoint | None:
    row = ws.db.execute("SELECT * FROM endpoints WHERE name = ?", (name,)).fetchone()
    return _row(row) if row else None


def get_endpoint(ws: Workspace, name: str) -> Endpoint:
    check_name(name, "endpoint")
    ep = find(ws, name)
    if ep is None:
        raise NotFoundError(f"no endpoint named {name!r}", "see `opml endpoint list` or run `opml deploy`")
    return ep


def list_endpoints(ws: Workspace) -> list[Endpoint]:
    return [_row(r) for r in ws.db.execute("SELECT * FROM endpoints ORDER BY name")]


def best_model(ws: Workspace, experiment: str | None = None) -> str:
    """The model registered by the latest completed AutoML run (of `experiment`, if given)."""
    from opml.training.runs import latest_completed

    run = latest_completed(ws, experiment)
    ref = run.summary.get("model")
    if not ref:
        raise NotFoundError(f"AutoML run {run.id} registered no model", "run `opml train` again")
    return ref


def deploy(ws: Workspace, model_ref: str, cfg: DeployConfig, name: str | None = None) -> Endpoint:
    """Deploy `model_ref` as endpoint `name`; an existing endpoint keeps serving until the new one is ready."""
    from opml.training.models import get_model

    name = check_name(cfg.name if name is None else name, "endpoint")
    telemetry.flush_interval()  # a bad OPML_TELEMETRY_FLUSH_S fails here, in one line, not in the workers
    model = get_model(ws, model_ref)  # fail fast on an unknown model
    with _locked(ws, name):
        old = find(ws, name)
        port = old.port if old else (cfg.port or free_port(cfg.host))
        host = old.host if old and old.pid and process.alive(old.pid, name) else cfg.host
        if cfg.auth_enabled:
            keystore.ensure_keys(ws.secrets_dir, name)
        kept = (old.settings if old else {}).get("telemetry", {})
        telemetry.write_control(ws.root, name, bool(kept.get("enabled")), float(kept.get("sample_payloads", 0.0)))
        info = process.start(ws.root, name, model.ref, host, port, auth=cfg.auth_enabled,
                             max_request_bytes=cfg.max_request_bytes, workers=cfg.workers,
                             timeout=cfg.startup_timeout_seconds)
        if old and old.pid and old.pid != info["pid"]:
            process.stop(old.pid, name)
        now = now_iso()
        settings = (old.settings if old else {}) | {
            "max_request_bytes": cfg.max_request_bytes, "workers": cfg.workers,
            "startup_timeout_seconds": cfg.startup_timeout_seconds}
        with store.transaction(ws.db) as db:
            db.execute(
                "INSERT INTO endpoints (name, model, host, port, pid, auth_enabled, settings, inference, started_at,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET model = excluded.model, host = excluded.host,"
                " port = excluded.port, pid = excluded.pid, auth_enabled = excluded.auth_enabled,"
                " settings = excluded.settings, inference = excluded.inference, started_at = excluded.started_at,"
                " updated_at = excluded.updated_at",
                (name, model.ref, host, port, info["pid"], int(cfg.auth_enabled), json.dumps(settings),
                 info.get("inference"), now, old.created_at if old else now, now),
            )
    return get_endpoint(ws, name)


def restart(ws: Workspace, name: str) -> Endpoint:
    ep = get_endpoint(ws, name)  # checks the name
    s = ep.settings
    cfg = DeployConfig(name=name, host=ep.host, port=ep.port, auth_enabled=ep.auth_enabled,
                       max_request_bytes=s.get("max_request_bytes", 1_048_576), workers=s.get("workers", 1),
                       startup_timeout_seconds=s.get("startup_timeout_seconds", 90))
    return deploy(ws, ep.model, cfg, name)


def delete(ws: Workspace, name: str) -> Endpoint:
    check_name(name, "endpoint")
    with _locked(ws, name):
        ep = get_endpoint(ws, name)
        process.stop(ep.pid, name)
        with store.transaction(ws.db) as db:
            db.execute("DELETE FROM endpoints WHERE name = ?", (name,))
        keystore.delete_keys(ws.secrets_dir, name)
        telemetry.control_file(ws.root, name).unlink(missing_ok=True)
    return ep


def set_telemetry(ws: Workspace, name: str, enabled: bool, sample_payloads: float = 0.0) -> Endpoint:
    """Turn request telemetry on or off on the live endpoint (no restart) and keep it for restarts."""
    if not 0.0 <= sample_payloads <= 1.0:
        raise OpmlError(f"payload sampling rate must be between 0 and 1 (got {sample_payloads:g})",
                        "pass --sample-payloads RATE, e.g. 0.1")
    check_name(name, "endpoint")
    with _locked(ws, name):
        ep = get_endpoint(ws, name)
        settings = ep.settings | {"telemetry": {"enabled": enabled, "sample_payloads": sample_payloads}}
        with store.transaction(ws.db) as db:
            db.execute("UPDATE endpoints SET settings = ?, updated_at = ? WHERE name = ?",
                       (json.dumps(settings), now_iso(), name))
        telemetry.write_control(ws.root, name, enabled, sample_payloads)
    return get_endpoint(ws, name)


def status(ws: Workspace, ep: Endpoint, timeout: float = 2.0) -> dict[str, Any]:
    """Probed live: {"state", "workers", "keys_error"}.

    state: Healthy (answers GET /, every worker serves), Degraded (answers, but fewer workers serve than
    expected, one being restarted, or the keys file is unreadable and the last good keys stay in force),
    Unhealthy (the process runs, no healthy answer), Stopped (no process). workers: {"expected", "alive"
    (serving), "restarts", "pids"} from the supervisor's state file, None when stopped or not known yet.
    """
    if not process.alive(ep.pid, ep.name):
        return {"state": "Stopped", "workers": None, "keys_error": None}
    import requests

    workers = _workers(ws.root, ep)
    try:
        reply = requests.get(f"{ep.base_uri}/", timeout=timeout)
        ok = reply.status_code == 200
        keys_error = reply.json().get("keys_error") if ok else None
    except (requests.RequestException, ValueError, AttributeError):
        ok, keys_error = False, None
    if not ok:
        st = "Unhealthy"
    elif keys_error or (workers is not None and workers["alive"] < workers["expected"]):
        st = "Degraded"
    else:
        st = "Healthy"
    return {"state": st, "workers": workers, "keys_error": keys_error}


def _workers(root: Path, ep: Endpoint) -> dict[str, Any] | None:
    """The endpoint's workers as its supervisor last recorded them, counting only those still running."""
    info = process.state_info(root, ep.name, ep.pid)
    recorded = info.get("workers") if info else None
    if not isinstance(recorded, dict):
        return None
    ready = [p for p in recorded.get("ready", []) if process.alive(p, ep.name)]
    starting = [p for p in recorded.get("starting", []) if process.alive(p, ep.name)]
    return {"expected": recorded.get("expected", len(ready)), "alive": len(ready),
            "restarts": recorded.get("restarts", 0), "pids": sorted(ready + starting)}


def workers_line(workers: dict[str, Any] | None) -> str:
    """`2/2 alive, 1 restart` (what `endpoint show` prints), or `-` when unknown."""
    if not workers:
        return "-"
    n = workers["restarts"]
    return f"{workers['alive']}/{workers['expected']} alive, {n} restart{'' if n == 1 else 's'}"


def endpoint_keys(ws: Workspace, name: str, regenerate: str | None = None) -> dict[str, str]:
    ep = get_endpoint(ws, name)  # checks the name
    if not ep.auth_enabled:
        raise OpmlError(f"endpoint {name!r} has authentication off", "set auth_enabled: true and redeploy")
    if regenerate:
        return keystore.regenerate(ws.secrets_dir, name, regenerate)
    return keystore.ensure_keys(ws.secrets_dir, name)


def log_file(ws: Workspace, name: str) -> Path:
    return process.log_path(ws.root, check_name(name, "endpoint"))
