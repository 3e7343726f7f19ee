"""`opml deploy`, `opml endpoint ...`, `opml consume` and scripts/endpoint.py against real endpoint processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from opml.bench.ab import parse as ab_parse
from opml.processes import group_members
from tests.conftest import REPO, Project

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, bank_csv):
    proj = Project(tmp_path_factory.mktemp("serve"))
    proj.ok("auth")
    try:
        proj.ok("train", "--data", str(bank_csv), "--max-trials", "4", "--time-budget", "60")
        ep = json.loads(proj.ok("deploy", "--best", "--json").stdout)
        yield proj, ep
    finally:  # stop every endpoint process this module started, even when set-up failed half-way
        for item in json.loads(proj.ok("endpoint", "list", "--json").stdout):
            proj.ok("endpoint", "delete", item["name"])


def keys(proj: Project, name: str = "bankmarketing-endpoint") -> dict[str, str]:
    return json.loads(proj.ok("endpoint", "keys", name, "--json").stdout)


def post(ep: dict, body, key: str | None, raw: bytes | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else json.dumps(body)
    return requests.post(ep["scoring_uri"], data=data, headers=headers, timeout=30)


def records(bank_csv: Path, n: int, start: int = 0) -> list[dict]:
    df = pd.read_csv(bank_csv).iloc[start:start + n].drop(columns=["response"])
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in df.to_dict("records")]


def load_model(proj: Project):
    from opml.training.models import get_model, load_model
    from opml.workspace.workspace import Workspace

    ws = Workspace.open(proj.ws)
    try:
        return load_model(get_model(ws, "bankmarketing-automl"))
    finally:
        ws.close()


def test_deploy_prints_uris_and_endpoint_is_healthy(deployed):
    proj, ep = deployed
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/score", ep["scoring_uri"])
    shown = json.loads(proj.ok("endpoint", "show", ep["name"], "--json").stdout)
    assert shown["state"] == "Healthy" and shown["model"] == "bankmarketing-automl:1"
    assert shown["inference"].startswith("compiled"), shown["inference"]
    health = requests.get(ep["scoring_uri"].rsplit("/", 1)[0] + "/", timeout=5).json()
    assert health["status"] == "Healthy" and health["model"] == "bankmarketing-automl:1"
    listed = proj.ok("endpoint", "list").stdout
    assert "Healthy" in listed and ep["name"] in listed


def test_both_body_forms_and_probabilities_match_the_model(deployed, bank_csv):
    proj, ep = deployed
    key = keys(proj)["primaryKey"]
    rows = records(bank_csv, 50)
    v1 = post(ep, {"data": rows}, key)
    assert v1.status_code == 200 and len(v1.json()["result"]) == 50
    v2 = post(ep, {"Inputs": {"data": rows}, "GlobalParameters": {"method": "predict_proba"}}, key)
    proba = np.asarray(v2.json()["Results"])
    model = load_model(proj)
    frame = pd.DataFrame(rows)
    assert np.abs(proba - model.predict_proba(frame)).max() < 1e-6
    assert v1.json()["result"] == list(model.predict(frame))
    v2_labels = post(ep, {"Inputs": {"data": rows}, "GlobalParameters": {"method": "predict"}}, key)
    assert v2_labels.json()["Results"] == v1.json()["result"]


def test_endpoint_equals_batch_predict_on_the_whole_dataset(deployed, bank_csv, tmp_path):
    proj, ep = deployed
    key = keys(proj)["primaryKey"]
    out = tmp_path / "pred.csv"
    proj.ok("predict", "--data", str(bank_csv), "--out", str(out))
    expected = pd.read_csv(out)
    df = pd.read_csv(bank_csv).drop(columns=["response"])
    got_p, got_labels = [], []
    for start in range(0, len(df), 2000):
        rows = records(bank_csv, 2000, start)
        got_p.append(np.asarray(post(ep, {"Inputs": {"data": rows},
                                          "GlobalParameters": {"method": "predict_proba"}}, key).json()["Results"]))
        got_labels += post(ep, {"data": rows}, key).json()["result"]
    proba = np.vstack(got_p)
    assert proba.shape == (32950, 2)
    assert np.abs(proba[:, 1] - expected["probability_yes"].to_numpy()).max() < 1e-6
    assert got_labels == expected["prediction"].tolist()


def test_auth_required_and_keys_regenerate_live(deployed, bank_csv):
    proj, ep = deployed
    body = {"data": records(bank_csv, 1)}
    for bad in (None, "wrong-key"):
        r = post(ep, body, bad)
        assert r.status_code == 401 and "key" in r.json()["error"]
    old = keys(proj)
    assert post(ep, body, old["secondaryKey"]).status_code == 200
    new = json.loads(proj.ok("endpoint", "keys", ep["name"], "--regenerate", "primary", "--json").stdout)
    assert new["primaryKey"] != old["primaryKey"] and new["secondaryKey"] == old["secondaryKey"]
    assert post(ep, body, old["primaryKey"]).status_code == 401
    assert post(ep, body, new["primaryKey"]).status_code == 200
    assert post(ep, body, new["secondaryKey"]).status_code == 200
    log = (proj.ws / "logs" / "endpoints" / f"{ep['name']}.log").read_text()
    assert new["primaryKey"] not in log and old["primaryKey"] not in log


@pytest.mark.parametrize(  # the full 4xx table runs in process: tests/test_http_contracts.py
    ("mutate", "status", "message"),
    [
        (lambda r: b'{"data": [', 400, "malformed JSON"),
        (lambda r: {"data": [r | {"age": "forty"}]}, 422, "'age' must be a number"),  # the compiled model's reader
        (lambda r: {"data": [r] * 4000}, 413, "over"),
    ],
)
def test_bad_requests_get_4xx_json_and_server_keeps_serving(deployed, bank_csv, mutate, status, message):
    proj, ep = deployed
    key = keys(proj)["primaryKey"]
    row = records(bank_csv, 1)[0]
    body = mutate(row)
    r = post(ep, None, key, raw=body) if isinstance(body, bytes) else post(ep, body, key)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert post(ep, {"data": [row]}, key).status_code == 200


def test_unseen_category_and_nulls_are_scored(deployed, bank_csv):
    proj, ep = deployed
    key = keys(proj)["primaryKey"]
    row = records(bank_csv, 1)[0] | {"job": "astronaut", "euribor3m": None, "month": None}
    r = post(ep, {"Inputs": {"data": [row]}, "GlobalParameters": {"method": "predict_proba"}}, key)
    assert r.status_code == 200
    expected = load_model(proj).predict_proba(pd.DataFrame([row]))
    assert np.abs(np.asarray(r.json()["Results"]) - expected).max() < 1e-6


def test_swagger_and_metrics(deployed, bank_csv):
    proj, ep = deployed
    assert post(ep, {"data": records(bank_csv, 3)}, keys(proj)["primaryKey"]).status_code == 200
    spec = requests.get(ep["swagger_uri"], timeout=5).json()
    assert spec["openapi"].startswith("3.") and "/score" in spec["paths"]
    assert spec["components"]["securitySchemes"]["Bearer"]["scheme"] == "bearer"
    example = spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert set(example["data"][0]) == set(pd.read_csv(bank_csv, nrows=1).drop(columns=["response"]).columns)
    text = requests.get(ep["scoring_uri"].rsplit("/", 1)[0] + "/metrics", timeout=5).text
    assert re.search(r'opml_requests_total\{[^}]*path="/score",status="200"\} \d+', text)
    assert "opml_request_duration_seconds_bucket" in text and "opml_rows_scored_total" in text


def test_consume_command_and_script(deployed, tmp_path, bank_csv):
    proj, ep = deployed
    out = json.loads(proj.ok("consume", "--rows", "7", "--json").stdout)
    assert out["rows"] == 7 and set(out["predictions"]) <= {"yes", "no"}
    table = proj.ok("consume", "--rows", "3", "--proba").stdout
    assert "P(yes)" in table and len(table.strip().splitlines()) == 5
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"data": records(bank_csv, 2)}))
    assert len(json.loads(proj.ok("consume", "--data", str(body), "--json").stdout)["predictions"]) == 2
    script = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "endpoint.py")], capture_output=True, text=True, timeout=60,
        env=os.environ | {"OPML_SCORING_URI": ep["scoring_uri"], "OPML_KEY": keys(proj)["primaryKey"]})
    assert script.returncode == 0, script.stderr
    assert len(json.loads(script.stdout)["result"]) == 2
    denied = subprocess.run([sys.executable, str(REPO / "scripts" / "endpoint.py"), "--uri", ep["scoring_uri"]],
                            capture_output=True, text=True, timeout=60)
    assert denied.returncode == 1 and "error" in json.loads(denied.stdout)


def test_endpoint_script_decodes_json_encoded_replies():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import endpoint
    finally:
        sys.path.pop(0)
    assert endpoint.decode(json.dumps({"result": ["no", "yes"]})) == {"result": ["no", "yes"]}
    assert endpoint.decode({"result": ["no"]}) == {"result": ["no"]}


def test_2000_concurrent_requests_none_fail(deployed, bank_csv, tmp_path):
    proj, ep = deployed
    if not shutil.which("ab"):
        pytest.fail("Apache Bench (ab) is missing: apt-get install apache2-utils (.ci/run installs it)")
    payload = tmp_path / "one.json"
    payload.write_text(json.dumps({"data": records(bank_csv, 1)}))
    res = subprocess.run(["ab", "-n", "2000", "-c", "16", "-p", str(payload), "-T", "application/json",
                          "-H", f"Authorization: Bearer {keys(proj)['primaryKey']}", ep["scoring_uri"]],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.search(r"Complete requests:\s+2000", res.stdout)
    assert re.search(r"Failed requests:\s+0", res.stdout)
    assert "Non-2xx" not in res.stdout


def test_failed_redeploy_leaves_old_endpoint_serving(deployed, bank_csv):
    proj, ep = deployed
    before = json.loads(proj.ok("endpoint", "show", ep["name"], "--json").stdout)
    from opml.training.models import get_model
    from opml.workspace import store
    from opml.workspace.workspace import Workspace

    ws = Workspace.open(proj.ws)
    good = get_model(ws, "bankmarketing-automl:1")
    broken = proj.root / "broken-model"
    shutil.copytree(good.path, broken)
    (broken / "model.pkl").write_bytes(b"not a pickle")
    with store.transaction(ws.db) as db:
        db.execute("INSERT INTO models SELECT 'broken', 1, run_id, child_run, ?, pipeline, metrics, info, created_at"
                   " FROM models WHERE name = 'bankmarketing-automl' AND version = 1", (str(broken),))
    ws.close()
    line = proj.fails("deploy", "--model", "broken:1")
    assert "failed to start" in line and "keeps serving" in line
    after = json.loads(proj.ok("endpoint", "show", ep["name"], "--json").stdout)
    assert after["state"] == "Healthy" and after["pid"] == before["pid"] and after["model"] == before["model"]
    assert post(ep, {"data": records(bank_csv, 1)}, keys(proj)["primaryKey"]).status_code == 200


def test_redeploy_replaces_process_on_same_port(deployed, bank_csv):
    proj, ep = deployed
    before = json.loads(proj.ok("endpoint", "show", ep["name"], "--json").stdout)
    again = json.loads(proj.ok("deploy", "--model", "bankmarketing-automl:1", "--json").stdout)
    assert again["port"] == before["port"] and again["pid"] != before["pid"]
    assert post(ep, {"data": records(bank_csv, 1)}, keys(proj)["primaryKey"]).status_code == 200
    from opml.serving.process import alive

    deadline = time.monotonic() + 15
    while alive(before["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(before["pid"])


def test_killed_endpoint_is_stopped_then_restarts(deployed, bank_csv):
    proj, ep = deployed
    pid = json.loads(proj.ok("endpoint", "show", ep["name"], "--json").stdout)["pid"]
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = json.loads(proj.ok("endpoint", "show", ep["name"], "--json").stdout)["state"]
        if state == "Stopped":
            break
        time.sleep(0.1)
    assert state == "Stopped"
    restarted = json.loads(proj.ok("endpoint", "restart", ep["name"], "--json").stdout)
    assert restarted["pid"] != pid and restarted["port"] == ep["port"]
    assert json.loads(proj.ok("endpoint", "show", ep["name"], "--json").stdout)["state"] == "Healthy"
    assert post(ep, {"data": records(bank_csv, 1)}, keys(proj)["primaryKey"]).status_code == 200


def test_auth_off_endpoint_and_delete_frees_port(deployed, bank_csv):
    proj, _ = deployed
    proj.set_config("deploy.yaml", auth_enabled=False)
    try:
        open_ep = json.loads(proj.ok("deploy", "--best", "--name", "open", "--json").stdout)
    finally:
        proj.set_config("deploy.yaml", auth_enabled=True)
    assert post(open_ep, {"data": records(bank_csv, 2)}, None).status_code == 200
    assert "authentication off" in proj.fails("endpoint", "keys", "open")
    spec = requests.get(open_ep["swagger_uri"], timeout=5).json()
    assert "securitySchemes" not in spec["components"]
    proj.ok("endpoint", "delete", "open")
    with socket.socket() as s:
        s.bind(("127.0.0.1", open_ep["port"]))  # the port is free again
    assert "no endpoint named 'open'" in proj.fails("endpoint", "show", "open")


def test_deploy_argument_errors(deployed):
    proj, _ = deployed
    assert "exactly one of --best and --model" in proj.fails("deploy")
    assert "no registered model 'ghost'" in proj.fails("deploy", "--model", "ghost")
    assert "--experiment goes with --best" in proj.fails("deploy", "--model", "x", "--experiment", "e")




def _deploy_two_workers(proj: Project, name: str) -> dict:
    ep = json.loads(proj.ok("deploy", "--best", "--name", name, "--json").stdout)  # workers: 2 (deploy.yaml)
    assert ep["settings"]["workers"] == 2
    # the supervisor deploy started (it serves nothing), its two workers, both serving when deploy returns, and the
    # standby it forked then (loading in the background)
    assert len(group_members(ep["pid"])) == 4
    assert _show(proj, name)["workers"]["alive"] == 2
    _loaded_standby(proj, name, ep["pid"])
    return ep


def _loaded_standby(proj: Project, name: str, supervisor: int, not_pid: int | None = None) -> int:
    """The endpoint's standby worker once it has loaded the model (not `not_pid`), from the state file."""
    from opml.serving.process import state_info

    deadline = time.monotonic() + 60
    while True:
        standby = ((state_info(proj.ws, name, supervisor) or {}).get("workers") or {}).get("standby") or {}
        if standby.get("loaded") and standby["pid"] != not_pid:
            return standby["pid"]
        assert time.monotonic() < deadline, f"no loaded standby 60 s on: {standby}"
        time.sleep(0.02)


def test_workers_share_the_port_and_stop_together(deployed, bank_csv):
    proj, _ = deployed
    ep = _deploy_two_workers(proj, "multi")
    key = keys(proj, "multi")["primaryKey"]
    assert all(post(ep, {"data": records(bank_csv, 1)}, key).status_code == 200 for _ in range(20))
    # /metrics sums both workers' counters, whichever worker answers; each worker took connections
    shared = proj.ws / "run" / "endpoints" / f"multi.{ep['pid']}.metrics"
    per_worker = [np.fromfile(f)[0] for f in shared.glob("*.bin")]  # slot 0: POST /score -> 200
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker) and sum(per_worker) == 20
    for _ in range(4):
        text = requests.get(ep["scoring_uri"].rsplit("/", 1)[0] + "/metrics", timeout=5).text
        assert re.search(r'opml_requests_total\{[^}]*path="/score",status="200"\} 20\n', text), text
        assert re.search(r"opml_rows_scored_total\{[^}]*\} 20\n", text)
    proj.ok("endpoint", "delete", "multi")
    deadline = time.monotonic() + 15
    while group_members(ep["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(ep["pid"]) == [] and not shared.exists()
    assert not list((proj.ws / "run" / "endpoints").glob("multi.*.*"))  # ready files and counters cleaned up


def test_workers_stop_when_the_endpoint_process_is_killed(deployed):
    proj, _ = deployed
    ep = _deploy_two_workers(proj, "orphans")
    os.kill(ep["pid"], signal.SIGKILL)  # a crash of the process deploy started: no worker may keep the port
    deadline = time.monotonic() + 15
    while group_members(ep["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(ep["pid"]) == []
    assert json.loads(proj.ok("endpoint", "show", "orphans", "--json").stdout)["state"] == "Stopped"
    stale = proj.ws / "run" / "endpoints" / f"orphans.{ep['pid']}.metrics"
    assert stale.is_dir()  # the killed process never cleaned up: the next endpoint process does
    proj.ok("endpoint", "restart", "orphans")
    again = json.loads(proj.ok("endpoint", "show", "orphans", "--json").stdout)
    assert again["state"] == "Healthy" and again["pid"] != ep["pid"] and not stale.exists()
    proj.ok("endpoint", "delete", "orphans")


def _show(proj: Project, name: str) -> dict:
    return json.loads(proj.ok("endpoint", "show", name, "--json").stdout)


def _replaced(proj: Project, name: str, supervisor: int, before: set[int]) -> tuple[int, float, float]:
    """After kill -9 of one of the workers `before`: (its replacement, seconds until it was forked, seconds until
    it served), from the supervisor's state file read every 5 ms. Fails if nothing is forked within 1 s."""
    from opml.serving.process import state_info

    t0 = time.monotonic()
    forked = None
    while True:
        workers = (state_info(proj.ws, name, supervisor) or {}).get("workers") or {}
        elapsed = time.monotonic() - t0
        if forked is None and set(workers.get("ready", []) + workers.get("starting", [])) - before:
            forked = elapsed
        if served := set(workers.get("ready", [])) - before:
            return served.pop(), forked or elapsed, elapsed
        assert forked is not None or elapsed < 1.0, "no replacement worker within 1 s"
        assert elapsed < 30, f"no replacement worker serving 30 s after the kill: {workers}"
        time.sleep(0.005)


def _scores_like_the_model(proj: Project, ep: dict, name: str, bank_csv: Path, worker: int) -> None:
    """200 requests (10 rows each, new connections): every reply has the model's probabilities (nothing hangs:
    each request has a timeout), and `worker` answered some of them (its own counters, slot 0: /score -> 200)."""
    key = keys(proj, name)["primaryKey"]
    rows = records(bank_csv, 2000)
    expected = load_model(proj).predict_proba(pd.DataFrame(rows))
    for i in range(200):
        r = post(ep, {"Inputs": {"data": rows[10 * i:10 * i + 10]}, "GlobalParameters": {"method": "predict_proba"}},
                 key)
        assert r.status_code == 200, r.text
        assert np.abs(np.asarray(r.json()["Results"]) - expected[10 * i:10 * i + 10]).max() < 1e-6
    counters = proj.ws / "run" / "endpoints" / f"{name}.{ep['pid']}.metrics" / f"{worker}.bin"
    assert np.fromfile(counters)[0] > 0, "the restarted worker answered none of 200 requests"


def test_a_killed_worker_is_restarted_within_a_second_logged_and_reported(deployed, bank_csv, tmp_path):
    """Issue 11 item 5: kill -9 of one worker under load: the supervisor (which serves nothing itself) forks a
    replacement at once, which serves within 1 s (the supervisor preloaded its imports); the restart is logged,
    show says Degraded while a worker is missing, then 2/2 alive and the restarts; the replacement scores right."""
    proj, _ = deployed
    name = "supervised"
    ep = _deploy_two_workers(proj, name)
    shown = _show(proj, name)
    assert shown["state"] == "Healthy" and shown["workers"] == {
        "expected": 2, "alive": 2, "restarts": 0, "pids": shown["workers"]["pids"]}
    assert "workers      2/2 alive, 0 restarts" in proj.ok("endpoint", "show", name).stdout
    victim, survivor = shown["workers"]["pids"]
    assert ep["pid"] not in (victim, survivor)  # the process deploy started serves no request
    standby = _loaded_standby(proj, name, ep["pid"])
    payload = tmp_path / "one.json"
    payload.write_text(json.dumps({"data": records(bank_csv, 1)}))
    load = subprocess.Popen(["ab", "-r", "-n", "6000", "-c", "4", "-p", str(payload), "-T", "application/json",
                             "-H", f"Authorization: Bearer {keys(proj, name)['primaryKey']}",
                             ep["scoring_uri"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        new, forked, serving = _replaced(proj, name, ep["pid"], {victim, survivor})
        out, err = load.communicate(timeout=240)
    finally:
        load.kill()
    assert forked < 1.0 and serving < 1.0, (forked, serving)  # under ab -c 4 on the same cores
    assert re.search(r"Complete requests:\s+6000", out), out + err
    # at most the killed worker's in-flight requests (4), each counted once (ab counts a reset request three times)
    failed = ab_parse(out)
    assert failed["unanswered_requests"] <= 4, re.search(r"Failed requests:.*?\n(?=\S)", out, re.S)[0]
    after = _show(proj, name)
    assert after["state"] == "Healthy" and after["workers"]["restarts"] == 1
    assert sorted(after["workers"]["pids"]) == sorted([survivor, new])
    assert "workers      2/2 alive, 1 restart\n" in proj.ok("endpoint", "show", name).stdout
    log = (proj.ws / "logs" / "endpoints" / f"{name}.log").read_text()
    restarts = [ln for ln in log.splitlines() if f"worker {victim} " in ln and "restart" in ln]
    assert len(restarts) == 1 and "SIGKILL" in restarts[0] and "restart 1" in restarts[0], restarts
    assert new == standby and f"standby {new} took its place" in restarts[0]  # the loaded standby was promoted
    standby = _loaded_standby(proj, name, ep["pid"], not_pid=new)  # and the next one forked and loaded
    assert standby not in (survivor, new)

    # while a worker is missing, show says so: the supervisor is paused (SIGSTOP) to hold that moment open
    os.kill(ep["pid"], signal.SIGSTOP)
    try:
        os.kill(new, signal.SIGKILL)
        from opml.serving.process import alive

        deadline = time.monotonic() + 5
        while alive(new, name) and time.monotonic() < deadline:
            time.sleep(0.01)
        during = _show(proj, name)
        assert during["state"] == "Degraded" and during["workers"]["alive"] == 1, during
        assert "workers      1/2 alive, 1 restart" in proj.ok("endpoint", "show", name).stdout
        assert "Degraded" in proj.ok("endpoint", "list").stdout
    finally:
        os.kill(ep["pid"], signal.SIGCONT)
    newest, forked, serving = _replaced(proj, name, ep["pid"], {survivor, new})
    assert serving < 1.0, serving
    assert newest == standby
    after = _show(proj, name)
    assert after["state"] == "Healthy" and after["workers"]["restarts"] == 2
    assert "workers      2/2 alive, 2 restarts\n" in proj.ok("endpoint", "show", name).stdout
    _scores_like_the_model(proj, ep, name, bank_csv, newest)
    proj.ok("endpoint", "delete", name)


def test_the_standby_serves_nothing_until_promoted_and_is_replaced_when_it_dies(deployed, bank_csv):
    """Issue 11 item 5 with a model that takes seconds to load: the loaded standby takes no request (it has no
    counters file, it is in no worker list); kill -9 of it is no restart of a serving worker: the endpoint stays
    Healthy and answers, the death is logged, and a new standby loads."""
    proj, _ = deployed
    name = "standby"
    ep = _deploy_two_workers(proj, name)
    standby = _loaded_standby(proj, name, ep["pid"])
    shown = _show(proj, name)
    assert standby not in shown["workers"]["pids"] and standby in group_members(ep["pid"])
    key = keys(proj, name)["primaryKey"]
    assert all(post(ep, {"data": records(bank_csv, 1)}, key).status_code == 200 for _ in range(20))
    shared = proj.ws / "run" / "endpoints" / f"{name}.{ep['pid']}.metrics"
    assert sorted(int(f.stem) for f in shared.glob("*.bin")) == sorted(shown["workers"]["pids"])
    os.kill(standby, signal.SIGKILL)
    assert all(post(ep, {"data": records(bank_csv, 1)}, key).status_code == 200 for _ in range(20))
    again = _loaded_standby(proj, name, ep["pid"], not_pid=standby)
    after = _show(proj, name)
    assert after["state"] == "Healthy" and after["workers"]["restarts"] == 0
    assert after["workers"]["pids"] == shown["workers"]["pids"] and again not in after["workers"]["pids"]
    log = (proj.ws / "logs" / "endpoints" / f"{name}.log").read_text()
    assert f"standby worker {standby} was killed by SIGKILL; starting another standby" in log, log
    proj.ok("endpoint", "delete", name)
    deadline = time.monotonic() + 15
    while group_members(ep["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_members(ep["pid"]) == [] and not shared.exists()  # the standby stopped too


def test_a_restarted_worker_on_the_library_path_scores_like_the_model(deployed, bank_csv, monkeypatch):
    """Without a C compiler the workers score through the model's own predict_proba (LightGBM/XGBoost OpenMP
    code): a worker forked by the supervisor that preloaded those libraries, after a kill -9, neither hangs nor
    differs from the model, and serves within 1 s."""
    proj, _ = deployed
    name = "plain"
    monkeypatch.setenv("OPML_NO_CC", "1")  # inherited by the endpoint process
    ep = _deploy_two_workers(proj, name)
    shown = _show(proj, name)
    assert "models: kernel" not in shown["inference"] and "no C compiler" in shown["inference"], shown["inference"]
    assert "features: numpy (" in shown["inference"], shown["inference"]  # the C featurizer is off too, and says so
    victim, survivor = shown["workers"]["pids"]
    os.kill(victim, signal.SIGKILL)
    new, _, serving = _replaced(proj, name, ep["pid"], {victim, survivor})
    assert serving < 1.0, serving
    _scores_like_the_model(proj, ep, name, bank_csv, new)
    proj.ok("endpoint", "delete", name)


def test_the_supervisor_preloads_what_the_model_pickle_imports(deployed, bank_csv):
    """opml.serving.scorer: the modules read from the pickle's opcodes are exactly those unpickling imports, and
    the pickle read without MLflow is the model `opml predict` loads through MLflow (same probabilities)."""
    import pickle

    from opml.serving.scorer import pickle_modules, pickled_model, read_model
    from opml.training.models import get_model
    from opml.workspace.workspace import Workspace

    proj, _ = deployed
    ws = Workspace.open(proj.ws)
    try:
        reg = get_model(ws, "bankmarketing-automl:1")
    finally:
        ws.close()
    pkl = pickled_model(reg.path)
    assert pkl is not None and pkl.name == "model.pkl"
    imported: set[str] = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            imported.add(module)
            return super().find_class(module, name)

    with pkl.open("rb") as fh:
        Recording(fh).load()
    assert pickle_modules(pkl) == imported and "opml.automl.model" in imported
    frame = pd.DataFrame(records(bank_csv, 500))
    assert np.array_equal(read_model(reg).predict_proba(frame), load_model(proj).predict_proba(frame))


def test_show_reports_a_corrupt_keys_file(deployed, bank_csv):
    """Issue 11 item 11c: the endpoint keeps the last good keys and `endpoint show` says what is wrong."""
    proj, ep = deployed
    good = keys(proj)["primaryKey"]
    path = proj.ws / "secrets" / "endpoints" / f"{ep['name']}.keys.json"
    saved = path.read_bytes()
    try:
        path.write_text("{not json")
        assert post(ep, {"data": records(bank_csv, 1)}, good).status_code == 200  # the last good keys still work
        shown = _show(proj, ep["name"])
        assert shown["state"] == "Degraded" and "is corrupt" in shown["keys_error"], shown
        text = proj.ok("endpoint", "show", ep["name"]).stdout
        assert re.search(r"keys error\s+endpoint keys file .* is corrupt", text), text
    finally:
        path.write_bytes(saved)
    assert post(ep, {"data": records(bank_csv, 1)}, good).status_code == 200
    shown = _show(proj, ep["name"])
    assert shown["state"] == "Healthy" and shown["keys_error"] is None


@pytest.mark.parametrize("name", ["../../escape1", "", "a b/..", ".hidden", "x" * 65])
def test_deploy_refuses_a_bad_endpoint_name_and_writes_nothing(deployed, name):
    """Issue 11 item 2: an endpoint name is one path component; a bad one is a one-line error, nothing written."""
    proj, _ = deployed

    def files() -> set[Path]:
        # this project's whole tree, plus what sits beside it (where a `..` escape would land); not the trees
        # of the session's other projects, whose live servers may touch their own files meanwhile
        mine = {p for p in proj.root.rglob("*") if "__pycache__" not in p.parts}
        return mine | set(proj.root.parent.iterdir())

    before = files()
    assert "invalid endpoint name" in proj.fails("deploy", "--best", "--name", name)
    for command in (("endpoint", "show"), ("endpoint", "keys"), ("endpoint", "delete"), ("endpoint", "restart")):
        assert "invalid endpoint name" in proj.fails(*command, name)
    assert files() == before
