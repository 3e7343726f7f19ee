"""Pipelines: definitions, runs in their own processes, reuse, failures, the control plane's REST API,
schedules across a restart, crash recovery and cancel — all with real processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import REPO, Project

pytestmark = pytest.mark.timeout(300)

SCRIPTS = {
    "ok.py": "import json, os\n"
             "n = int(os.environ.get('OPML_INPUT_N', '1'))\n"
             "print('adding one to', n)\n"
             "json.dump({'n': n + 1}, open(os.environ['OPML_OUTPUTS'], 'w'))\n",
    "fail.py": "print('about to fail')\nraise ValueError('bad things in the user script')\n",
    "sleep.py": "import json, os, sys, time\ntime.sleep(float(sys.argv[1]))\n"
                "json.dump({'n': 1}, open(os.environ['OPML_OUTPUTS'], 'w'))\n",
}


class PipeProject(Project):
    """A project whose OPML_DATA is the real dataset (the runs and control plane inherit it)."""

    def __init__(self, root: Path, data: Path) -> None:
        super().__init__(root)
        self.data = data

    def env(self) -> dict[str, str]:
        return super().env() | {"OPML_DATA": str(self.data)}

    def json(self, *args: str):
        return json.loads(self.ok(*args, "--json").stdout)

    def write(self, name: str, doc: dict) -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def wait(self, run_id: str, timeout: float = 120, until=("Completed", "Failed", "Canceled")) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.json("pipeline", "show", run_id)
            if run["status"] in until:
                return run
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} still {run['status']} after {timeout} s")


@pytest.fixture(scope="module")
def proj(tmp_path_factory, bank_csv):
    root = tmp_path_factory.mktemp("pipelines")
    p = PipeProject(root, bank_csv)
    for name, text in SCRIPTS.items():
        (root / name).write_text(text)
    p.ok("auth")
    sp = p.json("auth", "sp", "create", "bot")
    p.client = sp
    yield p
    for s in p.json("pipeline", "schedule", "list"):
        p.ok("pipeline", "schedule", "disable", s["id"])
    for r in p.json("pipeline", "runs", "--limit", "1000"):
        if r["status"] not in ("Completed", "Failed", "Canceled"):
            p.cli("--configs", str(p.configs), "pipeline", "cancel", r["id"], env=p.env())
    p.ok("server", "stop")


def script_pipeline(p: PipeProject, name: str, steps: list[dict], params: list[dict] | None = None) -> str:
    path = p.write(f"{name}.yaml", {"name": name, "parameters": params or [], "steps": steps})
    return p.json("pipeline", "create", "--file", str(path))["ref"]


def token(p: PipeProject, ttl: int = 600) -> str:
    env = {"OPML_CLIENT_ID": p.client["client_id"], "OPML_CLIENT_SECRET": p.client["client_secret"]}
    res = p.cli.ok("--configs", str(p.configs), "auth", "token", "--json", "--expires-in", str(ttl),
                   env=p.env() | env)
    return json.loads(res.stdout)["access_token"]


# ---- definitions ---------------------------------------------------------------------------


BAD = [
    ({"steps": [{"name": "a", "type": "script", "settings": {"script": "ok.py"}, "inputs": {"n": "b.n"},
                 "outputs": ["n"]},
                {"name": "b", "type": "script", "settings": {"script": "ok.py"}, "inputs": {"n": "a.n"},
                 "outputs": ["n"]}]}, "cycle among steps 'a', 'b'"),
    ({"steps": [{"name": "a", "type": "script", "settings": {"script": "ok.py"}, "inputs": {"n": "ghost.n"}}]},
     "input 'n' refers to 'ghost.n', which is no step's output"),
    ({"steps": [{"name": "a", "type": "script", "settings": {"script": "ok.py"}, "outputs": ["n"]},
                {"name": "b", "type": "script", "settings": {"script": "ok.py"}, "inputs": {"n": "a.m"}}]},
     "refers to 'a.m', but step 'a' has n"),
    ({"steps": [{"name": "a", "type": "notebook"}]}, "step 'a' has unknown type 'notebook'"),
    ({"steps": [{"name": "a", "type": "automl", "settings": {"time_budget": "${budget}"}}]},
     "step 'a' uses undeclared parameter ${budget}"),
    ({"parameters": [{"name": "budget", "type": "int", "default": "soon"}],
      "steps": [{"name": "a", "type": "automl", "settings": {"time_budget": "${budget}"}}]},
     "parameter 'budget' must be an integer"),
    ({"parameters": [{"name": "metric", "type": "string", "default": "x"}],
      "steps": [{"name": "a", "type": "automl", "settings": {"time_budget": "${metric}"}}]},
     "setting 'time_budget' (from parameter 'metric')"),
    ({"steps": [{"name": "a", "type": "automl", "settings": {"time_budgte": 5}}]},
     "unknown setting 'time_budgte' for a automl step"),
    ({"steps": [{"name": "a", "type": "register"}]}, "a register step needs input 'model'"),
    ({"steps": [{"name": "a", "type": "script", "settings": {"script": "missing.py"}}]}, "script missing.py not found"),
    ({"steps": [{"name": "a", "type": "script", "settings": {"script": "ok.py"}, "retries": 3}]},
     "step 'a': unknown key 'retries'"),
    ({"steps": [{"name": "a", "type": "script", "settings": {"script": "ok.py"}}], "parameters": [{"type": "int"}]},
     "parameter '#1': missing required key 'name'"),
]


@pytest.mark.parametrize(("doc", "message"), BAD, ids=[m[:30] for _, m in BAD])
def test_definition_errors_are_one_line_naming_the_culprit(proj, doc, message):
    path = proj.write("bad.yaml", {"name": "bad"} | doc)
    line = proj.fails("pipeline", "create", "--file", str(path))
    assert message in line, line
    assert str(path) in line


def test_create_versions_only_on_change_and_param_errors(proj):
    steps = [{"name": "a", "type": "script", "settings": {"script": "ok.py"}, "outputs": ["n"]}]
    params = [{"name": "k", "type": "int", "default": 1}]
    ref = script_pipeline(proj, "versions", steps, params)
    assert ref == "versions:1"
    assert script_pipeline(proj, "versions", steps, params) == "versions:1"
    assert script_pipeline(proj, "versions", steps, [{"name": "k", "type": "int", "default": 2}]) == "versions:2"
    assert "unknown parameter 'nope'" in proj.fails("pipeline", "run", "versions", "--param", "nope=1")
    assert "parameter 'k' must be an integer (got 'x')" in proj.fails("pipeline", "run", "versions", "--param", "k=x")
    assert "invalid --param 'k'" in proj.fails("pipeline", "run", "versions", "--param", "k")
    assert "no pipeline 'ghost'" in proj.fails("pipeline", "run", "ghost")


# ---- a full run on the real data, then reuse -----------------------------------------------------


@pytest.fixture(scope="module")
def full_run(proj):
    created = proj.json("pipeline", "create")  # configs/pipeline.yaml, as shipped
    assert created["ref"] == "bankmarketing-train:1"
    t0 = time.monotonic()
    res = proj.ok("pipeline", "run", "bankmarketing-train", "--param", "time_budget=20", "--param", "max_trials=2",
                  "--wait", "--json")
    return json.loads(res.stdout), time.monotonic() - t0


def test_full_run_registers_a_model_with_step_logs(proj, full_run):
    run, wall = full_run
    assert run["status"] == "Completed", run
    steps = {s["step"]: s for s in run["steps"]}
    assert list(steps) == ["prepare_data", "automl", "register_model"]
    assert all(s["status"] == "Completed" and not s["reused"] for s in steps.values())
    assert steps["prepare_data"]["outputs"]["dataset"] == "bankmarketing:1"
    model = steps["automl"]["outputs"]["model"]
    assert run["model"] == model == steps["register_model"]["outputs"]["model"]
    assert model in [m["ref"] for m in proj.json("models", "list")]
    assert steps["automl"]["settings"] == {"time_budget": 20.0, "max_trials": 2, "primary_metric": "AUC_weighted"}
    assert all(s["duration_s"] > 0 for s in steps.values())
    print(f"\nfull run {wall:.1f} s: " + ", ".join(f"{n} {s['duration_s']:.1f} s" for n, s in steps.items()))
    logs = proj.json("pipeline", "logs", run["id"])
    assert "trial 0:" in logs["automl"]["text"] and "registered model" in logs["automl"]["text"]
    assert Path(logs["prepare_data"]["path"]).is_file()
    shown = proj.ok("pipeline", "show", run["id"]).stdout
    assert "Completed" in shown and model in shown
    assert run["id"] in proj.ok("pipeline", "runs", "bankmarketing-train").stdout


def test_second_run_reuses_unchanged_steps(proj, full_run):
    first, _ = full_run
    run = json.loads(proj.ok("pipeline", "run", "bankmarketing-train", "--param", "time_budget=20", "--param",
                             "max_trials=2", "--wait", "--json").stdout)
    assert run["status"] == "Completed"
    assert all(s["reused"] and s["reused_from"] == first["id"] for s in run["steps"])
    assert run["model"] == first["model"]
    assert "reused the output" in proj.json("pipeline", "logs", run["id"], "--step", "automl")["automl"]["text"]


def test_deploy_step_serves_the_model_and_is_reused_only_while_serving(proj, full_run):
    first, _ = full_run
    doc = yaml.safe_load((proj.configs / "pipeline.yaml").read_text())
    doc["name"] = "train-and-deploy"
    doc["steps"].append({"name": "deploy", "type": "deploy", "inputs": {"model": "register_model.model"},
                         "settings": {"name": "pipe-endpoint"}})
    ref = proj.json("pipeline", "create", "--file", str(proj.write("deploy.yaml", doc)))["ref"]
    args = ("pipeline", "run", ref, "--param", "time_budget=20", "--param", "max_trials=2", "--wait", "--json")
    try:
        run = json.loads(proj.ok(*args).stdout)
        st = {s["step"]: s for s in run["steps"]}
        assert st["automl"]["reused"] and st["automl"]["reused_from"] == first["id"]  # same step, other pipeline
        assert not st["deploy"]["reused"] and st["deploy"]["status"] == "Completed"
        uri = st["deploy"]["outputs"]["scoring_uri"]
        assert requests.get(uri.rsplit("/", 1)[0] + "/", timeout=5).json()["model"] == first["model"]
        again = json.loads(proj.ok(*args).stdout)
        assert next(s for s in again["steps"] if s["step"] == "deploy")["reused"]
        proj.ok("endpoint", "delete", "pipe-endpoint")
        third = json.loads(proj.ok(*args).stdout)
        assert not next(s for s in third["steps"] if s["step"] == "deploy")["reused"]  # endpoint was gone
        assert proj.json("endpoint", "show", "pipe-endpoint")["state"] == "Healthy"
    finally:
        proj.cli("--configs", str(proj.configs), "endpoint", "delete", "pipe-endpoint", env=proj.env())


# ---- failures, cancel, crash recovery ------------------------------------------------------------


def test_failing_script_step_fails_the_run_and_stops_dependents(proj):
    ref = script_pipeline(proj, "failing", [
        {"name": "first", "type": "script", "settings": {"script": "ok.py"}, "outputs": ["n"]},
        {"name": "boom", "type": "script", "settings": {"script": "fail.py"}, "inputs": {"n": "first.n"},
         "outputs": ["n"]},
        {"name": "after", "type": "script", "settings": {"script": "ok.py"}, "inputs": {"n": "boom.n"}},
        {"name": "side", "type": "script", "settings": {"script": "ok.py"}, "inputs": {"n": "first.n"},
         "outputs": ["n"]},
    ])
    res = proj.cli("--configs", str(proj.configs), "pipeline", "run", ref, "--wait", "--json", env=proj.env())
    assert res.exit_code == 1
    run = json.loads(res.stdout)
    assert run["status"] == "Failed"
    assert "step 'boom' failed" in run["error"] and "ValueError: bad things in the user script" in run["error"]
    st = {s["step"]: s for s in run["steps"]}
    assert st["first"]["status"] == "Completed" and st["first"]["outputs"] == {"n": 2}
    assert st["side"]["status"] == "Completed" and st["side"]["outputs"] == {"n": 3}  # independent: still ran
    assert st["boom"]["status"] == "Failed"
    assert st["after"]["status"] == "Canceled" and "upstream step 'boom'" in st["after"]["error"]
    log = proj.json("pipeline", "logs", run["id"], "--step", "boom")["boom"]["text"]
    assert "about to fail" in log and "Traceback" in log


def _sleep_pipeline(proj, seconds: float = 60) -> str:
    return script_pipeline(proj, "sleepy", [
        {"name": "nap", "type": "script", "settings": {"script": "sleep.py", "args": ["${seconds}"]},
         "outputs": ["n"], "allow_reuse": False},
        {"name": "then", "type": "script", "settings": {"script": "ok.py"}, "inputs": {"n": "nap.n"}}],
        [{"name": "seconds", "type": "float", "default": seconds}])


def _running(proj, run_id: str, step: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = proj.json("pipeline", "show", run_id)
        st = next(s for s in run["steps"] if s["step"] == step)
        if st["status"] == "Running" and st["pid"]:
            return run
        time.sleep(0.2)
    raise AssertionError(f"step {step} never ran: {run}")


def test_cancel_stops_running_steps(proj):
    ref = _sleep_pipeline(proj)
    run = proj.json("pipeline", "run", ref)
    running = _running(proj, run["id"], "nap")
    pid = next(s["pid"] for s in running["steps"] if s["step"] == "nap")
    t0 = time.monotonic()
    out = proj.json("pipeline", "cancel", run["id"])
    assert out["status"] == "Canceled" and time.monotonic() - t0 < 10
    st = {s["step"]: s["status"] for s in proj.json("pipeline", "show", run["id"])["steps"]}
    assert st["nap"] == "Canceled"
    assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    assert "already Canceled" in proj.fails("pipeline", "cancel", run["id"])


def _killed(proj, ref: str) -> tuple[dict, int, int]:
    """Start a run of `ref`, wait for its `nap` step, kill -9 the executor; (run, executor pid, step pid)."""
    run = proj.json("pipeline", "run", ref)
    running = _running(proj, run["id"], "nap")
    runner = running["runner_pid"]
    step_pid = next(s["pid"] for s in running["steps"] if s["step"] == "nap")
    os.kill(runner, signal.SIGKILL)  # the executor dies; its step process is orphaned
    # no wait: from the moment kill() returns, a read sees the executor gone (the SIGKILL is pending, then the
    # process is exiting; opml.processes.start_ticks), though it stays in /proc while the kernel tears it down
    return run, runner, step_pid


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()


def test_killed_executor_is_failed_by_the_next_read_and_by_the_control_plane(proj):
    """Issue 11 item 6: kill -9 of an executor no longer leaves its run Running."""
    from opml.pipelines import registry
    from opml.workspace.workspace import Workspace

    ref = _sleep_pipeline(proj)
    proj.ok("server", "stop")  # first without a control plane: the read itself must notice
    run, runner, step_pid = _killed(proj, ref)
    t0 = time.monotonic()
    after = proj.json("pipeline", "show", run["id"])  # the first read after the kill
    assert time.monotonic() - t0 < 1.5
    assert after["status"] == "Failed" and after["error"] == f"executor process {runner} died (killed?)", after
    st = {s["step"]: s for s in after["steps"]}
    assert st["nap"]["status"] == "Failed" and "died" in st["nap"]["error"]
    assert st["then"]["status"] == "Canceled"
    shown = proj.cli("--configs", str(proj.configs), "pipeline", "show", run["id"], env=proj.env())
    assert shown.exit_code == 0 and "server start" not in shown.output and "Failed" in shown.stdout
    _until(lambda: _gone(step_pid), 5, "the orphaned step process to stop")
    listed = {r["id"]: r for r in proj.json("pipeline", "runs", "--limit", "1000")}
    assert listed[run["id"]]["status"] == "Failed"

    # `opml pipeline runs` notices as well
    run, runner, _ = _killed(proj, ref)
    assert {r["id"]: r for r in proj.json("pipeline", "runs", "--limit", "1000")}[run["id"]]["status"] == "Failed"

    # the control plane's periodic check marks it with nobody reading the run
    proj.ok("server", "start")
    run, runner, step_pid = _killed(proj, ref)
    ws = Workspace.open(proj.ws)
    try:
        _until(lambda: registry.get_run(ws, run["id"]).status == "Failed", 3, "the control plane's check")
        assert registry.get_run(ws, run["id"]).error == f"executor process {runner} died (killed?)"
    finally:
        ws.close()
    _until(lambda: _gone(step_pid), 5, "the orphaned step process to stop")
    assert f"run {run['id']}: Failed" in (proj.ws / "logs" / "control-plane.log").read_text()


def test_rest_get_reports_a_killed_executor_failed(proj):
    ref = _sleep_pipeline(proj)
    url = proj.json("server", "start")["url"]
    headers = {"Authorization": f"Bearer {token(proj)}"}
    run, runner, _ = _killed(proj, ref)
    t0 = time.monotonic()
    doc = requests.get(f"{url}/runs/{run['id']}", headers=headers, timeout=10).json()  # the first read after the kill
    assert time.monotonic() - t0 < 1.5
    assert doc["Status"] == "Failed" and doc["Error"] == f"executor process {runner} died (killed?)"


def _db_rows(path: Path, sql: str, *args) -> list:
    import sqlite3

    if not path.is_file():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def test_crashed_automl_step_fails_its_automl_and_mlflow_runs(proj, full_run):
    """Executor and AutoML step both killed -9: the read that fails the pipeline run ends the MLflow run too."""
    proj.ok("server", "stop")  # so that the read below is what notices (the control plane's sweep would too)
    run = proj.json("pipeline", "run", "bankmarketing-train", "--param", "time_budget=25", "--param", "max_trials=3")
    running = _running(proj, run["id"], "automl")
    step_pid = next(s["pid"] for s in running["steps"] if s["step"] == "automl")
    automl = _until(lambda: _db_rows(proj.ws / "opml.db", "SELECT id FROM automl_runs WHERE status = 'Running'"
                                     " AND owner_pid = ?", step_pid), 120, "the AutoML run to start")[0][0]
    parent = _until(lambda: _db_rows(proj.ws / "mlflow.db", "SELECT run_uuid FROM tags WHERE key = 'opml.run_id'"
                                     " AND value = ?", automl), 120, "its MLflow run")[0][0]
    os.kill(running["runner_pid"], signal.SIGKILL)
    os.killpg(step_pid, signal.SIGKILL)
    # One read, at once: both processes are dying (SIGKILL pending or exiting), so neither owns its run any more.
    # Two CI runs under load once saw this read say Running: a killed process stays in /proc, state R, while the
    # kernel frees its memory (its command line already empty), and reads took it for alive until it was a zombie.
    t0 = time.monotonic()
    after = proj.json("pipeline", "show", run["id"])
    assert after["status"] == "Failed" and "died (killed?)" in after["error"], after
    assert time.monotonic() - t0 < 5
    assert next(s for s in after["steps"] if s["step"] == "automl")["status"] == "Failed"
    status, error = _db_rows(proj.ws / "opml.db", "SELECT status, error FROM automl_runs WHERE id = ?", automl)[0]
    assert status == "Failed" and f"process {step_pid}" in error, (status, error)
    mlflow_status, end_time = _db_rows(proj.ws / "mlflow.db", "SELECT status, end_time FROM runs WHERE run_uuid = ?",
                                       parent)[0]
    assert mlflow_status == "FAILED" and end_time


def test_script_step_timeout_is_enforced(proj):
    """Issue 11 item 7: the deadline holds even while the script keeps stdout open."""
    (proj.root / "chatty.py").write_text("import time\nprint('working', flush=True)\ntime.sleep(20)\n")
    ref = script_pipeline(proj, "deadline", [
        {"name": "slow", "type": "script", "settings": {"script": "chatty.py", "timeout_seconds": 1},
         "allow_reuse": False}])
    t0 = time.monotonic()
    res = proj.cli("--configs", str(proj.configs), "pipeline", "run", ref, "--wait", "--json", env=proj.env())
    wall = time.monotonic() - t0
    assert res.exit_code == 1, res.output
    run = json.loads(res.stdout)
    step = run["steps"][0]
    assert run["status"] == step["status"] == "Failed"
    assert "timed out after 1 s" in step["error"] and "timed out after 1 s" in run["error"]
    assert step["duration_s"] < 5 and wall < 10, (step["duration_s"], wall)
    assert "working" in proj.json("pipeline", "logs", run["id"], "--step", "slow")["slow"]["text"]


FS_PARAMS = [
    ("script", {"script": "${p}"}, "ok.py"),
    ("dataset", {"path": "${p}", "label": "y"}, "data.csv"),
    ("automl", {"config": "${p}"}, "configs/automl.yaml"),
]


@pytest.mark.parametrize(("kind", "settings", "default"), FS_PARAMS, ids=[k for k, _, _ in FS_PARAMS])
def test_filesystem_settings_cannot_take_parameters(proj, kind, settings, default):
    """Issue 11 item 10: a script or file path named by a parameter is refused at `pipeline create`."""
    field = next(iter(settings))
    path = proj.write("fs.yaml", {"name": "fs", "parameters": [{"name": "p", "type": "string", "default": default}],
                                  "steps": [{"name": "s", "type": kind, "settings": settings}]})
    line = proj.fails("pipeline", "create", "--file", str(path))
    assert f"step 's': setting '{field}' cannot take a parameter" in line, line


def test_url_parameters_need_allowed_hosts(proj):
    steps = [{"name": "data", "type": "dataset", "settings": {"url": "${u}", "label": "y"}}]
    params = [{"name": "u", "type": "string", "default": "http://127.0.0.1:9/data.csv"}]
    path = proj.write("urls.yaml", {"name": "urls", "parameters": params, "steps": steps})
    line = proj.fails("pipeline", "create", "--file", str(path))
    assert "step 'data': setting 'url' takes a parameter only when allowed_url_hosts lists the hosts" in line, line
    path = proj.write("urls.yaml", {"name": "urls", "allowed_url_hosts": ["127.0.0.1"], "parameters": params,
                                    "steps": steps})
    assert proj.json("pipeline", "create", "--file", str(path))["ref"] == "urls:1"
    line = proj.fails("pipeline", "run", "urls", "--param", "u=http://evil.example/data.csv")
    assert "host 'evil.example' is not in allowed_url_hosts (127.0.0.1)" in line, line
    line = proj.fails("pipeline", "run", "urls", "--param", "u=file:///etc/passwd")
    assert "allowed_url_hosts" in line, line
    assert not [r for r in proj.json("pipeline", "runs", "urls")]


def test_rest_trigger_cannot_choose_the_script(proj):
    """Issue 11 item 10, the probe: a trigger naming another file as `script` is refused; the file never runs."""
    from opml.pipelines import registry
    from opml.pipelines.spec import PipelineSpec
    from opml.workspace.workspace import Workspace

    marker = proj.root / "pwned.txt"
    (proj.root / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    doc = {"name": "probe", "parameters": [{"name": "script", "type": "string", "default": str(proj.root / "ok.py")}],
           "steps": [{"name": "run", "type": "script", "settings": {"script": "${script}"}}]}
    path = proj.write("probe.yaml", doc)
    assert "setting 'script' cannot take a parameter" in proj.fails("pipeline", "create", "--file", str(path))
    # as registered by an opml that let it through
    ws = Workspace.open(proj.ws)
    try:
        registry.create_pipeline(ws, PipelineSpec.model_validate(doc), path, proj.configs)
    finally:
        ws.close()
    pub = proj.json("pipeline", "publish", "probe")
    r = post(pub["endpoint"], token(proj), {"ParameterAssignments": {"script": str(proj.root / "evil.py")}})
    assert r.status_code == 422 and "setting 'script' cannot take a parameter" in r.json()["error"], r.text
    assert "cannot take a parameter" in proj.fails("pipeline", "run", "probe", "--param",
                                                   f"script={proj.root / 'evil.py'}")
    time.sleep(2)
    assert not marker.exists()
    assert proj.json("pipeline", "runs", "probe") == []


def test_experiment_names_follow_the_name_rule(proj):
    """Issue 11 items 2 and 11a on the CLI and in step settings."""
    ref = script_pipeline(proj, "named", [{"name": "a", "type": "script", "settings": {"script": "ok.py"}}])
    for bad in ("a b", "../../escape", "", "x" * 65, "tab\tname"):
        line = proj.fails("pipeline", "run", ref, "--experiment", bad)
        assert "invalid experiment name" in line, (bad, line)
        line = proj.fails("pipeline", "schedule", "create", ref, "--every", "1h", "--experiment", bad)
        assert "invalid experiment name" in line, (bad, line)
    path = proj.write("named.yaml", {"name": "named2", "steps": [
        {"name": "a", "type": "automl", "settings": {"experiment": "../../escape"}}]})
    line = proj.fails("pipeline", "create", "--file", str(path))
    assert "step 'a': setting 'experiment'" in line and "invalid experiment name" in line, line
    path = proj.write("named.yaml", {"name": "../escape", "steps": [
        {"name": "a", "type": "script", "settings": {"script": "ok.py"}}]})
    assert "name: invalid pipeline name '../escape'" in proj.fails("pipeline", "create", "--file", str(path))
    assert "invalid pipeline name '../x'" in proj.fails("pipeline", "run", "../x")
    assert "invalid schedule name 'a b'" in proj.fails("pipeline", "schedule", "disable", "a b")
    path = proj.write("named.yaml", {"name": "named3", "parameters": [{"name": "ep", "type": "string",
                                                                        "default": "ok-name"}],
                                     "steps": [{"name": "m", "type": "script", "settings": {"script": "ok.py"},
                                                "outputs": ["model"]},
                                               {"name": "d", "type": "deploy", "inputs": {"model": "m.model"},
                                                "settings": {"name": "${ep}"}}]})
    proj.ok("pipeline", "create", "--file", str(path))
    line = proj.fails("pipeline", "run", "named3", "--param", "ep=../../escape1")
    assert "setting 'name' (from parameter 'ep'): invalid endpoint name '../../escape1'" in line, line


# ---- published pipeline over REST ------------------------------------------------------------------


@pytest.fixture(scope="module")
def published(proj, full_run):
    pub = proj.json("pipeline", "publish", "bankmarketing-train")
    assert pub["status"] == "Active" and pub["endpoint"].endswith(f"/pipelines/{pub['id']}/runs")
    assert proj.json("server", "status")["state"] == "Running"
    return pub


def post(url: str, tok: str | None, body=None, raw: bytes | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {tok}"} if tok else {})
    return requests.post(url, data=raw if raw is not None else json.dumps(body), headers=headers, timeout=10)


def test_rest_trigger_good_token_runs_in_background(proj, published):
    tok = token(proj)
    body = {"ExperimentName": "rest-exp", "ParameterAssignments": {"time_budget": 20, "max_trials": 2}}
    t0 = time.perf_counter()
    r = post(published["endpoint"], tok, body)
    latency = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["Status"] == "NotStarted" and reply["ExperimentName"] == "rest-exp"
    assert latency < 0.5
    base = published["endpoint"].split("/pipelines/")[0]
    headers = {"Authorization": f"Bearer {tok}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = requests.get(f"{base}/runs/{reply['Id']}", headers=headers, timeout=10).json()
        if doc["Status"] in ("Completed", "Failed", "Canceled"):
            break
        time.sleep(0.3)
    assert doc["Status"] == "Completed", doc
    assert [s["Reused"] for s in doc["Steps"]] == [True, True, True]  # same settings as the CLI run
    run = proj.json("pipeline", "show", reply["Id"])
    assert run["published_id"] == published["id"] and run["submitted_by"] == "bot"
    assert requests.get(f"{base}/runs/{reply['Id']}", timeout=10).status_code == 401
    assert requests.get(f"{base}/runs/nope", headers=headers, timeout=10).status_code == 404
    spec = requests.get(f"{base}/openapi.json", timeout=10).json()
    assert "/pipelines/{id}/runs" in spec["paths"] and "bearer" in spec["components"]["securitySchemes"]


def test_rest_trigger_rejects_bad_tokens_parameters_and_json(proj, published):
    """A row of each kind over HTTP; the full 401/404/413/422 tables run in process (tests/test_http_contracts.py)."""
    url = published["endpoint"]
    tok = token(proj)
    for bad in (None, tok[:-4] + "AAAA"):
        r = post(url, bad, {"ParameterAssignments": {}})
        assert r.status_code == 401, (bad, r.text)
        assert "error" in r.json()
    r = post(url, tok, {"ParameterAssignments": {"time_budgt": 5}})
    assert r.status_code == 422 and "time_budgt" in r.json()["error"]
    assert post(url, tok, raw=b"{not json").status_code == 400
    r = post(url.replace(published["id"], "00000000-0000-0000-0000-000000000000"), tok, {})
    assert r.status_code == 404
    before = len(proj.json("pipeline", "runs", "--limit", "1000"))
    proj.ok("pipeline", "disable", published["id"])
    r = post(url, tok, {"ParameterAssignments": {}})
    assert r.status_code == 409 and "Disabled" in r.json()["error"] and "enable" in r.json()["error"]
    listed = proj.json("pipeline", "list", "--published")
    assert [p["status"] for p in listed if p["id"] == published["id"]] == ["Disabled"]
    proj.ok("pipeline", "enable", published["id"])
    assert len(proj.json("pipeline", "runs", "--limit", "1000")) == before  # no bad request started a run


def test_rest_client_script_triggers_and_follows(proj, published):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPML_")} | {
        "OPML_CLIENT_ID": proj.client["client_id"], "OPML_CLIENT_SECRET": proj.client["client_secret"],
        "OPML_WORKSPACE": str(proj.ws), "OPML_CONFIGS": str(proj.configs)}
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "pipeline_rest.py"), "--endpoint",
                          published["endpoint"], "--experiment", "from-script", "--param", "time_budget=20",
                          "--param", "max_trials=2", "--opml", f"{sys.executable} -m opml"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=proj.root)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Submitted run" in res.stdout and "Completed" in res.stdout
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "pipeline_rest.py"), "--endpoint",
                          published["endpoint"], "--token", "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "HTTP 401" in bad.stderr


# ---- schedules -------------------------------------------------------------------------------


def _schedule_runs(proj, sid: str) -> list[dict]:
    return [r for r in proj.json("pipeline", "runs", "--limit", "1000") if r["schedule_id"] == sid]


def _until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_schedule_fires_skips_overlaps_and_survives_restart(proj):
    ref = script_pipeline(proj, "ticker", [
        {"name": "tick", "type": "script", "settings": {"script": "ok.py"}, "allow_reuse": False}])
    sched = proj.json("pipeline", "schedule", "create", ref, "--every", "2s", "--experiment", "ticks")
    assert sched["recurrence"] == "every 2s" and sched["status"] == "Active"
    listed = proj.ok("pipeline", "schedule", "list").stdout
    assert sched["id"] in listed and "every 2s" in listed
    runs = _until(lambda: [r for r in _schedule_runs(proj, sched["id"]) if r["status"] == "Completed"], 20,
                  "a scheduled run")
    assert runs[0]["experiment"] == "ticks" and runs[0]["submitted_by"] == f"schedule {sched['id']}"

    proj.ok("server", "stop")
    count = len(_schedule_runs(proj, sched["id"]))
    time.sleep(5)  # two or three fires are missed while the control plane is down
    assert len(_schedule_runs(proj, sched["id"])) == count
    proj.ok("server", "start")
    _until(lambda: len(_schedule_runs(proj, sched["id"])) > count, 10, "a fire after the restart")
    notes = proj.json("pipeline", "schedule", "list")
    note = next(s for s in notes if s["id"] == sched["id"])["last_note"]
    assert "catch-up" in note or "fired" in note
    log = (proj.ws / "logs" / "control-plane.log").read_text()
    assert "catch-up:" in log and "missed fires coalesced" in log

    # overlapping fires: the previous run is still going -> skipped, and logged
    slow = _sleep_pipeline(proj, 6)
    s2 = proj.json("pipeline", "schedule", "create", slow, "--every", "1s")
    _until(lambda: "skipped" in (next(s for s in proj.json("pipeline", "schedule", "list")
                                      if s["id"] == s2["id"])["last_note"] or ""), 15, "a skipped fire")
    assert "is still going" in (proj.ws / "logs" / "control-plane.log").read_text()
    for sid in (sched["id"], s2["id"]):
        assert proj.json("pipeline", "schedule", "disable", sid)["status"] == "Disabled"
    n = len(_schedule_runs(proj, sched["id"]))
    time.sleep(2.5)
    assert len(_schedule_runs(proj, sched["id"])) == n


def test_schedule_and_server_errors(proj):
    assert "exactly one of --cron" in proj.fails("pipeline", "schedule", "create", "ticker")
    assert "invalid interval '5x'" in proj.fails("pipeline", "schedule", "create", "ticker", "--every", "5x")
    assert "bad hour field '25'" in proj.fails("pipeline", "schedule", "create", "ticker", "--cron", "0 25 * * *")
    assert "no schedule 'nope'" in proj.fails("pipeline", "schedule", "disable", "nope")
    assert "no published pipeline 'nope'" in proj.fails("pipeline", "disable", "nope")


def test_cron_matcher():
    from datetime import UTC, datetime

    from opml.pipelines.schedule import Cron

    t = datetime(2026, 1, 1, 10, 7, tzinfo=UTC).timestamp()  # a Thursday
    nxt = lambda expr: datetime.fromtimestamp(Cron(expr).next_after(t), UTC)  # noqa: E731
    assert nxt("*/15 * * * *") == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    assert nxt("0 6 * * 1-5") == datetime(2026, 1, 2, 6, 0, tzinfo=UTC)
    assert nxt("30 9 1 * *") == datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
    assert nxt("0 0 * * sun") == datetime(2026, 1, 4, 0, 0, tzinfo=UTC)
    assert nxt("@yearly") == datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
