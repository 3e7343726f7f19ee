"""The `benchmark` stage: Apache Bench against an endpoint, a parsed report, a JSON record, a latency chart."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opml.bench import ab
from opml.errors import OpmlError
from opml.files import atomic_write
from opml.serving.endpoints import Endpoint, endpoint_keys
from opml.workspace.workspace import Workspace


def payload_body(ws: Workspace, ep: Endpoint, rows: int, payload: str | None) -> bytes:
    """The request body: a JSON file as given, or `rows` rows of the model's dataset."""
    if payload:
        try:
            body = Path(payload).read_bytes()
            json.loads(body)
        except FileNotFoundError:
            raise OpmlError(f"payload file {payload} not found", "pass an existing JSON file with --payload") from None
        except ValueError:
            raise OpmlError(f"payload file {payload} is not valid JSON", "fix the file") from None
        return body
    from opml.serving.consume import records_from_dataset
    from opml.training.models import get_model

    model = get_model(ws, ep.model)
    records = records_from_dataset(ws, model.info["dataset"], model.info["label"], rows)
    return json.dumps({"data": records}).encode()


def run_benchmark(ws: Workspace, ep: Endpoint, *, requests: int = 1000, concurrency: int = 10, rows: int = 1,
                  payload: str | None = None, keepalive: bool = False, plot: str | None = None) -> dict[str, Any]:
    if requests < 1 or concurrency < 1:
        raise OpmlError("-n and -c must be at least 1", "e.g. -n 1000 -c 10")
    if concurrency > requests:
        raise OpmlError(f"concurrency ({concurrency}) exceeds the number of requests ({requests})",
                        "lower -c or raise -n")
    ab.ab_path()  # fail early, with the install hint, when ab is missing
    key = endpoint_keys(ws, ep.name)["primary"] if ep.auth_enabled else None
    body = payload_body(ws, ep, rows, payload)
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as fh:
        fh.write(body)
    try:
        cmd = ab.command(ep.scoring_uri, Path(fh.name), requests=requests, concurrency=concurrency, key=key,
                         keepalive=keepalive)
        result = ab.run(cmd)
    finally:
        os.unlink(fh.name)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    report = {
        "endpoint": ep.name, "model": ep.model, "url": ep.scoring_uri, "requests": requests,
        "concurrency": concurrency, "keepalive": keepalive, "payload_bytes": len(body),
        "payload_rows": _rows(body), "started_at": stamp, **result,
    }
    out = atomic_write(ws.root / "benchmarks" / f"{ep.name}-{stamp}.json", json.dumps(report, indent=2))
    report["report"] = str(out)
    if plot:
        report["plot"] = str(latency_chart(report, Path(plot)))
    return report


def _rows(body: bytes) -> int | None:
    doc = json.loads(body)
    if isinstance(doc, dict):
        data = doc.get("data") if "data" in doc else (doc.get("Inputs") or {}).get("data")
        return len(data) if isinstance(data, list) else None
    return None


def latency_chart(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pct = report["latency_ms"]
    xs = [int(k) for k in pct]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(xs, list(pct.values()), marker="o")
    ax.set_xlabel("percentile of requests")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{report['endpoint']}: {report['requests_per_second']:.0f} req/s, "
                 f"-c {report['concurrency']}, {report['payload_rows'] or '?'} row(s)")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def render(report: dict[str, Any]) -> str:
    from opml.output import kv, table

    lines = [kv([
        ("endpoint", f"{report['endpoint']} ({report['model']})"),
        ("requests", f"{report['complete_requests']} of {report['requests']}, concurrency {report['concurrency']}"),
        ("payload", f"{report['payload_rows']} row(s), {report['payload_bytes']} bytes"),
        ("requests/s", f"{report['requests_per_second']:.1f}"),
        ("time per request", f"{report['time_per_request_ms']:.3f} ms (mean), "
                             f"{report['time_per_request_all_ms']:.3f} ms (across concurrent requests)"),
        ("transfer rate", f"{report['transfer_rate_kbps']:.1f} KB/s"),
        ("failed / non-2xx", f"{report['failed_requests']} / {report['non_2xx_responses']}"),
    ])]
    pct = report["latency_ms"]
    lines.append("\nLatency percentiles (ms):")
    lines.append(table([list(pct.values())], [f"{k}%" for k in pct]))
    lines.append(f"\nreport: {report['report']}" + (f"\nplot:   {report['plot']}" if report.get("plot") else ""))
    return "\n".join(lines)
