"""benchmarks/serving.py's servers: the do-nothing app on opml's own stack, peer detection, a peer serving a model."""

from __future__ import annotations

import json
import pickle
import shutil
import socket
import sys
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from peers import launch  # noqa: E402

HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def started():
    servers: list[launch.Server] = []
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.parametrize("stack", ["uvicorn", "direct"])  # through ASGI; POST /score as a direct route
def test_do_nothing_app_runs_under_opmls_supervisor_and_http_protocol(tmp_path: Path, started, stack) -> None:
    server = launch.stack(stack, 2, tmp_path)
    started.append(server)
    one = json.dumps({"data": [{"age": 41}]}).encode()
    launch.wait_ready(server, one, HEADERS, timeout=60)
    hundred = json.dumps({"data": [{"age": i, "job": "admin."} for i in range(100)]}).encode()
    cpu0 = launch.cpu_seconds(launch.children(server.proc.pid))
    for body in (one, hundred) * 200:
        reply = requests.post(server.url, data=body, headers=HEADERS, timeout=5)
        assert reply.status_code == 200 and reply.json() == {"result": ["no"]}
        assert reply.headers["content-type"] == "application/json"
    assert launch.cpu_seconds(launch.children(server.proc.pid)) > cpu0  # the workers' CPU, read from /proc
    # opml's httptools protocol (opml.asgi.LIMITS) answers, not uvicorn's: over 100 header fields is a JSON 431
    port = int(server.url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n" + b"".join(b"x-h%d: 1\r\n" % i for i in range(101))
                     + b"Content-Length: 2\r\n\r\n{}")
        head = conn.recv(65536)
    assert head.startswith(b"HTTP/1.1 431") and b'"error"' in head
    # opml's supervisor forked the two workers and the standby; their memory is readable
    workers = launch.children(server.proc.pid)
    assert len(workers) == 3
    assert all(launch.memory(pid)["rss"] > 1 for pid in workers)
    procs = server.processes()
    server.stop()
    assert not [p for p in procs if Path(f"/proc/{p}").exists() and _state(p) != "Z"]


def test_a_peer_missing_from_a_python_is_reported_not_started(tmp_path: Path) -> None:
    other = shutil.which("python3", path="/usr/bin:/bin")
    if other is None or other == sys.executable:
        pytest.skip("no second Python to probe")
    assert not launch.installed("mlserver", other)  # no opml there either: it could not load the model
    assert not launch.installed("no_such_module_for_opml_bench")
    assert launch.installed("uvicorn")
    assert "--peers-python" in launch.PEERS["mlserver"][1] and "opml[bench]" in launch.PEERS["bentoml"][1]
    with pytest.raises(ValueError, match="unknown peer"):
        launch.peer("torchserve", sys.executable, tmp_path / "model.pkl", 1, tmp_path)


@pytest.mark.skipif(not launch.installed("bentoml"), reason="bentoml not installed (pip install 'opml[bench]')")
def test_bentoml_peer_serves_a_pickled_model_on_the_endpoints_body(tmp_path: Path, started) -> None:
    import pandas as pd
    from sklearn.dummy import DummyClassifier

    frame = pd.DataFrame({"age": [30, 40, 50], "job": ["a", "b", "c"]})
    model = DummyClassifier(strategy="constant", constant="yes").fit(frame, ["no", "yes", "yes"])
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps(model))
    server = launch.peer("bentoml", sys.executable, pkl, 1, tmp_path)
    started.append(server)
    body = json.dumps({"data": [{"age": 41, "job": "x"}, {"age": 20, "job": "y"}]}).encode()
    launch.wait_ready(server, body, HEADERS, timeout=120)
    reply = requests.post(server.url, data=body, headers=HEADERS, timeout=10)
    assert reply.status_code == 200 and reply.json() == {"result": ["yes", "yes"]}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_telemetry_pairs_alternate_the_order_and_leave_telemetry_off(tmp_path: Path, started) -> None:
    """serving.py --telemetry-pairs: off/on runs back to back, on first in every other pair, telemetry switched on
    only for the on runs and off after each; each run's req/s and its workers' CPU per request."""
    import serving

    server = launch.stack("direct", 2, tmp_path)
    started.append(server)
    one = json.dumps({"data": [{"age": 41}]}).encode()
    launch.wait_ready(server, one, HEADERS, timeout=60)
    switched: list[bool] = []
    pairs = serving.telemetry_pairs(server.url, one, 300, None, server.proc.pid, switched.append, 2)
    assert switched == [True, False, True, False]
    assert len(pairs) == 2 and all(set(p) == {"off", "on"} for p in pairs)
    sides = [side for p in pairs for side in p.values()]
    assert all(side["rps"] > 0 and side["cpu_us"] >= 0 for side in sides)
    assert sum(side["cpu_us"] for side in sides) > 0  # the workers' CPU, read from /proc
