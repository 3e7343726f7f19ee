"""The stage functions under `opml pipeline run --wait/cancel/logs/show` and `opml pipeline schedule`:
following a run, waiting for a cancel, reading step logs, recurrences and schedules, and reading a client
secret. Real workspace and SQLite store; run states are driven by writing them as an executor would."""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from opml.errors import NotFoundError, OpmlError
from opml.pipelines import registry, service, watch
from opml.pipelines import schedule as schedules
from opml.pipelines.spec import ParameterError, load_spec
from opml.pipelines.step import run_dir
from opml.workspace.workspace import Workspace, now_iso


@pytest.fixture
def pipe(workspace, project: Path) -> registry.Pipeline:
    """A registered two-step pipeline (a -> b) with one int parameter."""
    (project / "ok.py").write_text("print('ok')\n")
    path = project / "two.yaml"
    path.write_text(yaml.safe_dump({
        "name": "two", "parameters": [{"name": "n", "type": "int", "default": 1}],
        "steps": [{"name": "a", "type": "script", "settings": {"script": "ok.py"}, "outputs": ["n"]},
                  {"name": "b", "type": "script", "settings": {"script": "ok.py"}, "inputs": {"n": "a.n"}}]}))
    p, _ = registry.create_pipeline(workspace, load_spec(path), path, project / "configs")
    return p


def _submit(ws, pipe) -> registry.Run:
    return registry.submit_run(ws, pipe, {})


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---- follow ---------------------------------------------------------------------------------------


def test_follow_reports_every_step_change_once_and_returns_the_final_run(workspace, pipe):
    ws = workspace
    run = _submit(ws, pipe)
    registry.update_run(ws, run.id, status="Running")
    registry.update_step(ws, run.id, "a", status="Running")
    # Each report moves the run on, as an executor would, so the sequence is deterministic.
    next_change = {
        ("a", "Running"): lambda: registry.update_step(ws, run.id, "a", status="Completed", duration_s=1.5),
        ("a", "Completed"): lambda: registry.update_step(ws, run.id, "b", status="Running"),
        ("b", "Running"): lambda: (registry.update_step(ws, run.id, "b", status="Failed", error="boom"),
                                   registry.update_run(ws, run.id, status="Failed", error="step b failed")),
    }
    seen: list[tuple[str, str, float | None, str | None]] = []
    elapsed: list[float] = []

    def on_step(s, t):
        seen.append((s.step, s.status, s.duration_s, s.error))
        elapsed.append(t)
        next_change.get((s.step, s.status), lambda: None)()

    final = watch.follow(ws, run.id, on_step, poll_s=0.01)
    assert final.status == "Failed" and final.error == "step b failed"
    assert seen == [("a", "Running", None, None), ("a", "Completed", 1.5, None), ("b", "Running", None, None),
                    ("b", "Failed", None, "boom")]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0


def test_follow_of_a_finished_run_returns_at_once_without_reporting_unstarted_steps(workspace, pipe):
    run = _submit(workspace, pipe)
    registry.update_step(workspace, run.id, "a", status="Completed")
    registry.update_run(workspace, run.id, status="Completed")
    seen = []
    t0 = time.monotonic()
    final = watch.follow(workspace, run.id, lambda s, t: seen.append((s.step, s.status)), poll_s=5)
    assert time.monotonic() - t0 < 2
    assert final.status == "Completed" and seen == [("a", "Completed")]  # b never started: not reported
    with pytest.raises(NotFoundError, match="no pipeline run 'nope'"):
        watch.follow(workspace, "nope")


# ---- cancel ----------------------------------------------------------------------------------------


def test_cancel_waits_for_the_executor_to_record_the_end(workspace, pipe):
    run = _submit(workspace, pipe)  # just submitted: its executor counts as starting, so it must honour the cancel

    def executor() -> None:  # its own connection, as the executor process has
        ws = Workspace.open(workspace.root)
        deadline = time.monotonic() + 10
        while not registry.get_run(ws, run.id).cancel_requested and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        registry.update_run(ws, run.id, status="Canceled", error="canceled by request")
        ws.close()

    t = threading.Thread(target=executor)
    t.start()
    t0 = time.monotonic()
    final = watch.cancel(workspace, run.id, timeout=10, poll_s=0.05)
    t.join()
    assert final.status == "Canceled" and final.cancel_requested
    assert 0.3 <= time.monotonic() - t0 < 8


def test_cancel_gives_up_waiting_after_the_timeout(workspace, pipe):
    run = _submit(workspace, pipe)
    t0 = time.monotonic()
    final = watch.cancel(workspace, run.id, timeout=0.4, poll_s=0.05)
    assert time.monotonic() - t0 >= 0.4
    assert final.status == "NotStarted" and final.cancel_requested  # requested; nobody has acted on it yet


def test_cancel_of_a_run_whose_executor_is_gone_closes_it_now(workspace, pipe):
    run = _submit(workspace, pipe)
    registry.update_run(workspace, run.id, status="Running", runner_pid=_dead_pid())
    final = watch.cancel(workspace, run.id, timeout=5)
    assert final.status == "Canceled" and "executor was not running" in final.error
    assert {s.status for s in registry.steps_of(workspace, run.id)} == {"Canceled"}
    with pytest.raises(OpmlError, match="already Canceled"):
        watch.cancel(workspace, run.id)


# ---- step logs and describe ----------------------------------------------------------------------------


def test_step_logs_in_run_order_empty_before_a_step_writes(workspace, pipe):
    run = _submit(workspace, pipe)
    folder = run_dir(workspace.root, run.id)
    folder.mkdir(parents=True)
    (folder / "a.log").write_bytes(b"step a says hi\n\xff\n")
    logs = watch.step_logs(workspace, run.id)
    assert list(logs) == ["a", "b"]
    assert logs["a"] == {"path": str(folder / "a.log"), "text": "step a says hi\n\ufffd\n"}
    assert logs["b"] == {"path": str(folder / "b.log"), "text": ""}
    assert list(watch.step_logs(workspace, run.id, "b")) == ["b"]
    with pytest.raises(NotFoundError, match=r"has no step 'c'; steps: a, b"):
        watch.step_logs(workspace, run.id, "c")
    with pytest.raises(NotFoundError, match="no pipeline run"):
        watch.step_logs(workspace, "nope")


def test_describe_finds_the_model_and_fails_a_run_whose_executor_vanished(workspace, pipe):
    run = _submit(workspace, pipe)
    registry.update_step(workspace, run.id, "a", outputs={"model": "m:1", "n": 2}, status="Running")
    registry.update_step(workspace, run.id, "b", outputs={"model": "m:2"})
    dead = _dead_pid()
    registry.update_run(workspace, run.id, status="Running", runner_pid=dead, started_at=now_iso())
    view = watch.describe(workspace, run.id)
    assert view.model == "m:2" and [s.step for s in view.steps] == ["a", "b"]
    assert view.run.status == "Failed" and view.run.error == f"executor process {dead} died (killed?)"
    assert [(s.status, s.error) for s in view.steps] == [("Failed", view.run.error), ("Canceled", view.run.error)]
    assert view.run.ended_at and view.run.duration_s is not None
    assert view.to_dict()["model"] == "m:2" and view.to_dict()["steps"][0]["outputs"] == {"model": "m:1", "n": 2}
    assert registry.get_run(workspace, run.id).status == "Failed"  # recorded, not just shown


def test_the_executor_is_known_by_pid_and_start_time(workspace, pipe):
    """A live process holding the recorded pid but started at another time is not the executor."""
    from opml.processes import start_ticks

    me, ticks = os.getpid(), start_ticks(os.getpid())
    run = _submit(workspace, pipe)
    registry.update_run(workspace, run.id, status="Running", runner_pid=me, runner_ticks=ticks)
    assert watch.describe(workspace, run.id).run.status == "Running"
    assert [r.status for r in service.read_runs(workspace)] == ["Running"]
    registry.update_run(workspace, run.id, runner_ticks=ticks - 1)  # the pid was recycled
    assert watch.describe(workspace, run.id).run.error == f"executor process {me} died (killed?)"


def test_a_run_that_ended_meanwhile_is_not_closed_again(workspace, pipe):
    run = _submit(workspace, pipe)
    registry.update_run(workspace, run.id, status="Completed")
    assert not registry.close_run(workspace, run.id, "Failed", "late")
    assert registry.get_run(workspace, run.id).status == "Completed"


def test_sweep_fails_only_runs_whose_executor_is_gone(workspace, pipe):
    from opml.processes import start_ticks

    gone, live, fresh = _submit(workspace, pipe), _submit(workspace, pipe), _submit(workspace, pipe)
    registry.update_run(workspace, gone.id, status="Running", runner_pid=_dead_pid())
    registry.update_run(workspace, live.id, status="Running", runner_pid=os.getpid(),
                        runner_ticks=start_ticks(os.getpid()))
    lines: list[str] = []
    assert service.sweep(workspace, log=lines.append) == [gone.id]  # `fresh` is still being spawned: left alone
    assert lines == [f"run {gone.id}: Failed ({registry.get_run(workspace, gone.id).error})"]
    assert [registry.get_run(workspace, r.id).status for r in (live, fresh)] == ["Running", "NotStarted"]


# ---- recurrences and schedules ------------------------------------------------------------------------


def test_recurrence_takes_exactly_one_valid_cron_or_interval():
    assert schedules.recurrence(None, "10m") == (None, 600.0)
    assert schedules.recurrence("0 6 * * 1-5", None) == ("0 6 * * 1-5", None)
    with pytest.raises(OpmlError, match="exactly one of --cron"):
        schedules.recurrence(None, None)
    with pytest.raises(OpmlError, match="exactly one of --cron"):
        schedules.recurrence("* * * * *", "1h")
    with pytest.raises(OpmlError, match="invalid interval '5x'"):
        schedules.recurrence(None, "5x")
    with pytest.raises(OpmlError, match="bad hour field '25'"):
        schedules.recurrence("0 25 * * *", None)
    with pytest.raises(OpmlError, match="expected 5 fields"):
        schedules.recurrence("0 6 * *", None)


def test_schedule_create_validates_parameters_and_disable_stops_it(workspace, pipe):
    t0 = time.time()
    s = schedules.create(workspace, "two", cron=None, interval_s=60.0, params={"n": "3"}, experiment=None)
    assert (s.pipeline, s.version, s.status, s.interval_s) == ("two", 1, "Active", 60.0)
    assert s.parameters == {"n": 3} and s.experiment == "two"
    assert t0 + 59 <= s.next_fire_at <= time.time() + 61
    c = schedules.create(workspace, "two:1", cron="0 6 * * *", interval_s=None, params={}, experiment="daily")
    assert c.recurrence == "cron 0 6 * * *" and c.experiment == "daily" and c.next_fire_at > t0
    with pytest.raises(ParameterError, match="unknown parameter 'm'"):
        schedules.create(workspace, "two", cron=None, interval_s=60.0, params={"m": "1"}, experiment=None)
    with pytest.raises(NotFoundError, match="no pipeline 'three'"):
        schedules.create(workspace, "three", cron=None, interval_s=60.0, params={}, experiment=None)
    assert len(registry.list_schedules(workspace)) == 2
    assert schedules.disable(workspace, s.id).status == "Disabled"
    assert registry.get_schedule(workspace, c.id).status == "Active"
    with pytest.raises(NotFoundError, match="no schedule 'nope'"):
        schedules.disable(workspace, "nope")


# ---- the client secret of `opml auth token` ------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_read_client_secret_from_env_pipe_or_prompt(monkeypatch):
    from opml.workspace.identity import read_client_secret

    def no_prompt() -> str:
        raise AssertionError("prompted although the secret was given")

    monkeypatch.setenv("OPML_CLIENT_SECRET", "from-env")
    assert read_client_secret(no_prompt, io.StringIO("from-pipe\n")) == "from-env"
    monkeypatch.delenv("OPML_CLIENT_SECRET")
    assert read_client_secret(no_prompt, io.StringIO("  from-pipe \nsecond line\n")) == "from-pipe"
    assert read_client_secret(lambda: " typed ", _Tty()) == "typed"
    for prompt, stream in ((no_prompt, io.StringIO("")), (no_prompt, io.StringIO("\n")), (lambda: "", _Tty())):
        with pytest.raises(OpmlError, match="no client secret given; set OPML_CLIENT_SECRET"):
            read_client_secret(prompt, stream)

    def eof() -> str:
        raise EOFError

    with pytest.raises(OpmlError, match="no client secret given"):
        read_client_secret(eof, _Tty())
