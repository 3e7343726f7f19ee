"""Schemathesis, all checks, in process against the control plane's ASGI app (issue 11: make it stay fixed).

A real workspace with two published pipelines (a quick script pipeline with an int and a string parameter,
and the shipped configs/pipeline.yaml) and a real service principal's token. Every phase schemathesis has
(examples, coverage, fuzzing, stateful) with every check; a bounded number of examples and a fixed seed
keep it well under 30 s. Any 5xx or conformance failure fails the test, with schemathesis' reproduction.
Triggered runs are recorded but their executors are not spawned (tests/test_pipelines.py runs real ones),
so the shipped pipeline's runs stay active and its cap of 4 is reached: 429 is exercised too.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import REPO

schemathesis = pytest.importorskip("schemathesis", minversion="4.0")

pytestmark = pytest.mark.timeout(120)
MAX_EXAMPLES = 30
BASE = "http://127.0.0.1:8765"


class InLoopThread:
    """The ControlPlane, built on first use in the thread schemathesis runs ASGI apps in: the workspace's
    SQLite connection may only be used by the thread that opened it (in `opml server` that is uvicorn's)."""

    def __init__(self, root: Path, started: list) -> None:
        self.root, self.started, self.app = root, started, None

    async def __call__(self, scope, receive, send) -> None:
        if self.app is None:
            from opml.pipelines.app import ControlPlane
            from opml.workspace.workspace import Workspace

            self.app = ControlPlane(Workspace.open(self.root), BASE, self.started.append)
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    from opml.pipelines import registry
    from opml.pipelines.spec import PipelineSpec, load_spec
    from opml.workspace import identity
    from opml.workspace.workspace import Workspace

    tmp = tmp_path_factory.mktemp("schemathesis")
    ws = Workspace.create_or_open(tmp / ".opml")
    creds = identity.create_principal(ws, "fuzzer")
    token = identity.issue_token(ws, creds.principal.client_id, creds.client_secret, 3600)["access_token"]
    (tmp / "quick.py").write_text("print('done')\n")
    quick = PipelineSpec.model_validate({
        "name": "quick", "max_concurrent_runs": 1000,
        "parameters": [{"name": "n", "type": "int", "default": 1}, {"name": "note", "type": "string", "default": ""}],
        "steps": [{"name": "s", "type": "script", "settings": {"script": str(tmp / "quick.py"),
                                                                "args": ["${n}", "${note}"]}}]})
    shipped = REPO / "configs" / "pipeline.yaml"
    for spec, source in ((quick, tmp / "quick.yaml"), (load_spec(shipped), shipped)):
        pipeline, _ = registry.create_pipeline(ws, spec, source, source.parent)
        registry.publish(ws, pipeline.ref)
    ws.close()
    started: list = []
    return InLoopThread(tmp / ".opml", started), token, started


def test_schemathesis_finds_no_5xx_and_no_conformance_failure(control_plane):
    from schemathesis.engine import Status, events, from_schema

    app, token, started = control_plane
    config = schemathesis.Config.from_dict({
        "seed": 20261,
        "checks": {"enabled": True},
        "generation": {"max-examples": MAX_EXAMPLES},
        "auth": {"openapi": {"bearer": {"bearer": token}}},
    })
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    t0 = time.monotonic()
    failures: dict[tuple[str, str], str] = {}
    errors: list[str] = []
    checks: set[str] = set()
    statuses: dict[str, set[int]] = {}
    phases: set[str] = set()
    n = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            phases.add(event.phase.value)
            for node in (c for found in event.recorder.checks.values() for c in found):
                n += 1
                checks.add(node.name)
                if node.status == Status.FAILURE and node.failure_info is not None:
                    info = node.failure_info
                    failures.setdefault((event.label or "?", node.name),
                                        f"{info.failure.title}: {info.failure.message}\n{info.code_sample}")
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    statuses.setdefault(event.label or "?", set()).add(interaction.response.status_code)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(str(getattr(event, "info", event))[:500])
    elapsed = time.monotonic() - t0
    report = "\n\n".join(f"{label} [{check}]\n{text}" for (label, check), text in failures.items())
    assert not failures, f"{len(failures)} schemathesis failure(s):\n\n{report}"
    assert not errors, errors
    assert elapsed < 60, f"took {elapsed:.0f} s"
    print(f"\nschemathesis: {n} checks in {elapsed:.1f} s; phases {sorted(phases)}; statuses {statuses}")
    # it did test what matters: every check kind, accepted and refused triggers, the cap, 405s
    assert n > 1000 and {"not_a_server_error", "status_code_conformance", "response_schema_conformance",
                         "negative_data_rejection", "positive_data_acceptance", "ignored_auth",
                         "unsupported_method"} <= checks, checks
    assert {"examples", "coverage", "fuzzing", "stateful"} <= phases, phases  # stateful: trigger -> GET its run
    seen = set().union(*statuses.values())
    assert {200, 400, 401, 404, 405, 422, 429} <= seen, seen
    assert not [s for s in seen if s >= 500]
    assert started  # some triggers were accepted (and would have started executors)
