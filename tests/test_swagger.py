"""`opml swagger` and scripts/swagger.sh: download the endpoint's swagger.json, and Swagger UI in a real Chromium.

The browser is Debian's chromium (apt), driven by Playwright with executable_path: no browser is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, Project

pytestmark = pytest.mark.timeout(300)

CHROMIUM = Path(os.environ.get("OPML_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
OPEN = "open-endpoint"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, bank_csv):
    """One trained model behind two endpoints: the default one with auth on, and OPEN with auth off."""
    proj = Project(tmp_path_factory.mktemp("swagger"))
    try:
        proj.ok("auth")
        proj.ok("train", "--data", str(bank_csv), "--max-trials", "2", "--time-budget", "30")
        secured = json.loads(proj.ok("deploy", "--best", "--json").stdout)
        proj.set_config("deploy.yaml", auth_enabled=False)
        opened = json.loads(proj.ok("deploy", "--best", "--name", OPEN, "--json").stdout)
        proj.set_config("deploy.yaml", auth_enabled=True)
        yield proj, secured, opened
    finally:  # also when set-up failed half-way: no endpoint process outlives the tests
        for item in json.loads(proj.cli("--configs", str(proj.configs), "endpoint", "list", "--json",
                                        env=proj.env()).stdout or "[]"):
            proj.cli("--configs", str(proj.configs), "endpoint", "delete", item["name"], env=proj.env())


def primary_key(proj: Project, name: str = "bankmarketing-endpoint") -> str:
    return json.loads(proj.ok("endpoint", "keys", name, "--json").stdout)["primaryKey"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_env(proj: Project) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPML_")}
    return env | {"OPML_WORKSPACE": str(proj.ws), "OPML_CONFIGS": str(proj.configs),
                  "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}


class Served:
    """A `--serve` process started for a test and stopped by its PID."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                pytest.fail(f"`{' '.join(cmd)}` exited with {self.proc.returncode}: {out}{err}")
            try:
                if requests.get(f"{self.url}/swagger.json", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"Swagger UI did not come up on {self.url} within 60 s")

    def interrupt(self, sig: int = signal.SIGINT) -> tuple[int, str, str]:
        """Send `sig` (Ctrl-C by default) and collect the exit code and output."""
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, out, err

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


@pytest.fixture
def serve(deployed, tmp_path):
    started: list[Served] = []

    def start(*cmd: str, port: int) -> Served:
        proj = deployed[0]
        s = Served(list(cmd), proc_env(proj), proj.root, port)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: `apt-get install chromium` (see .ci/run)", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `pip install -e '.[dev]'`", pytrace=False)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1000})
        yield ctx
        ctx.close()


# ------------------------------------------------------------------------------------------ download


def test_download_with_auth_writes_exactly_the_endpoint_spec(deployed, tmp_path):
    proj, secured, _ = deployed
    out = tmp_path / "new" / "folder" / "swagger.json"
    res = proj.ok("swagger", "--out", str(out), "--json")
    info = json.loads(res.stdout)
    assert info["auth_sent"] is True and info["endpoint"] == "bankmarketing-endpoint"
    assert info["paths"] == 3 and info["path"] == str(out)
    assert info["operations"] == ["POST /score", "GET /", "GET /metrics"]
    served = requests.get(secured["swagger_uri"], timeout=10)
    assert served.status_code == 200 and out.read_bytes() == served.content
    doc = json.loads(out.read_text())
    assert doc["openapi"] == "3.0.3" and doc["servers"] == [{"url": secured["swagger_uri"][:-len("/swagger.json")]}]
    assert doc["paths"]["/score"]["post"]["security"] == [{"Bearer": []}]
    assert sorted(p.name for p in out.parent.iterdir()) == ["swagger.json"]  # no temp file left
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert primary_key(proj) not in res.output
    # again, as text: the file is replaced, not appended to
    text = proj.ok("swagger", "--out", str(out)).stdout
    assert text.strip() == f"Wrote {out} (3 paths) from {secured['swagger_uri']}"
    assert out.read_bytes() == served.content


def test_download_with_auth_off(deployed, tmp_path):
    proj, _, opened = deployed
    out = tmp_path / "open.json"
    info = json.loads(proj.ok("swagger", "--endpoint", OPEN, "--out", str(out), "--json").stdout)
    assert info["auth_sent"] is False and info["endpoint"] == OPEN and info["paths"] == 3
    assert out.read_bytes() == requests.get(opened["swagger_uri"], timeout=10).content
    doc = json.loads(out.read_text())
    assert "securitySchemes" not in doc["components"] and "security" not in doc["paths"]["/score"]["post"]


class Stub(BaseHTTPRequestHandler):
    """Stands in for an endpoint: records the Authorization header of GET /swagger.json, answers as told."""

    seen: list[str | None] = []  # noqa: RUF012
    reply: tuple[int, bytes] = (200, b"")

    def do_GET(self) -> None:
        Stub.seen.append(self.headers.get("Authorization"))
        status, body = Stub.reply
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Stub.seen = []
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_download_sends_the_key_only_when_auth_is_on_and_reports_bad_answers(deployed, stub, tmp_path):
    from opml.errors import OpmlError
    from opml.serving.endpoints import get_endpoint
    from opml.serving.swagger import download
    from opml.workspace.workspace import Workspace

    proj, secured, _ = deployed
    spec = requests.get(secured["swagger_uri"], timeout=10).content
    out = tmp_path / "swagger.json"
    ws = Workspace.open(proj.ws)
    try:
        secure_ep = dataclasses.replace(get_endpoint(ws, "bankmarketing-endpoint"), port=stub)
        open_ep = dataclasses.replace(get_endpoint(ws, OPEN), port=stub)
        Stub.reply = (200, spec)
        assert download(ws, secure_ep, out)["auth_sent"] is True
        assert download(ws, open_ep, out)["auth_sent"] is False
        assert Stub.seen == [f"Bearer {primary_key(proj)}", None]
        assert out.read_bytes() == spec

        Stub.reply = (500, b'{"error": "model exploded"}')
        with pytest.raises(OpmlError) as err:
            download(ws, secure_ep, out)
        assert f"GET {secure_ep.swagger_uri} answered 500: model exploded" in err.value.line()
        assert "opml endpoint show bankmarketing-endpoint" in err.value.line()
        Stub.reply = (200, b"<html>not a spec</html>")
        with pytest.raises(OpmlError, match="is not an OpenAPI document"):
            download(ws, secure_ep, out)
        assert out.read_bytes() == spec  # a failed download leaves the previous file as it was
        assert sorted(p.name for p in tmp_path.iterdir()) == ["swagger.json"]
        Stub.seen.clear()
        with pytest.raises(OpmlError, match="is a folder"):
            download(ws, open_ep, tmp_path)
        assert Stub.seen == []  # checked before any request
    finally:
        ws.close()


# ------------------------------------------------------------------------------------------ Swagger UI


def test_proxy_serves_the_spec_at_its_own_origin_and_passes_auth_through(deployed, serve, tmp_path):
    proj, secured, _ = deployed
    port = free_port()
    out = tmp_path / "ui" / "swagger.json"
    ui = serve(sys.executable, "-m", "opml", "swagger", "--serve", "--port", str(port), "--out", str(out), port=port)
    spec = requests.get(f"{ui.url}/swagger.json", timeout=5).json()
    original = json.loads(out.read_text())
    assert [s["url"] for s in spec["servers"]] == [ui.url]
    assert spec["paths"] == original["paths"] and spec["components"] == original["components"]
    # a browser reached as localhost gets servers on localhost: the calls stay same-origin
    assert requests.get(f"http://localhost:{port}/swagger.json", timeout=5).json()["servers"][0]["url"] == (
        f"http://localhost:{port}")

    body = {"data": [original["components"]["schemas"]["Record"]["example"]]}
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        r = requests.post(f"{ui.url}/score", json=body, headers=headers, timeout=10)
        assert r.status_code == 401 and "key" in r.json()["error"], r.text
    key = primary_key(proj)
    r = requests.post(f"{ui.url}/score", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 200 and r.json()["result"][0] in ("no", "yes"), r.text
    assert r.json() == requests.post(secured["scoring_uri"], json=body, timeout=10,
                                     headers={"Authorization": f"Bearer {key}"}).json()
    health = requests.get(f"{ui.url}/", timeout=5)  # not a browser navigation: the endpoint's health
    assert health.status_code == 200 and health.json()["status"] == "Healthy"
    assert "opml_requests_total" in requests.get(f"{ui.url}/metrics", timeout=5).text
    nav = requests.get(f"{ui.url}/", headers={"Sec-Fetch-Mode": "navigate"}, timeout=5, allow_redirects=False)
    assert nav.status_code == 307 and nav.headers["location"] == "/docs"
    page = requests.get(f"{ui.url}/docs", timeout=5)
    assert "default-src 'none'" in page.headers["content-security-policy"] and "https://" not in page.text
    assert requests.get(f"{ui.url}/", headers={"Host": "attacker.example"}, timeout=5).status_code == 403

    code, stdout, stderr = ui.interrupt(signal.SIGINT)
    assert code == 0, stderr
    assert "Traceback" not in stderr and key not in stdout + stderr
    assert "POST /score -> 401" in stderr and "POST /score -> 200" in stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{ui.url}/swagger.json", timeout=2)


def test_try_it_out_in_chromium(deployed, serve, chromium, tmp_path):
    proj, _, _ = deployed
    port = free_port()
    ui = serve(sys.executable, "-m", "opml", "swagger", "--serve", "--port", str(port),
               "--out", str(tmp_path / "swagger.json"), port=port)
    key = primary_key(proj)
    page = chromium.new_page()
    problems: list[str] = []
    requested: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requested.append(r.url))
    try:
        page.goto(ui.url + "/", wait_until="load")
        assert page.url == f"{ui.url}/docs"
        page.wait_for_selector(".opblock-post .opblock-summary-path", timeout=20_000)
        ops = [" ".join(el.inner_text().split()[:2]) for el in page.query_selector_all(".opblock-summary")]
        assert ops == ["POST /score", "GET /", "GET /metrics"], ops

        page.click("button.authorize")
        page.fill(".auth-container input#auth-bearer-value", key)
        page.click(".auth-btn-wrapper button.authorize")
        page.wait_for_selector(".auth-container h6:text-is('Authorized')")
        assert key not in page.inner_text(".auth-container")  # shown masked once applied
        page.click(".auth-btn-wrapper button.btn-done")

        page.click(".opblock-post .opblock-summary")
        page.click(".opblock-post button.try-out__btn")
        page.click(".opblock-post button.execute")
        status = page.wait_for_selector(".opblock-post .live-responses-table .response .response-col_status",
                                        timeout=20_000)
        reply = page.inner_text(".opblock-post .live-responses-table .response .response-col_description pre")
        page.screenshot(path=str(tmp_path / "swagger-ui.png"), full_page=True)
        print(f"screenshot: {tmp_path / 'swagger-ui.png'}")
        assert status.inner_text().strip() == "200", reply
        result = json.loads(reply)["result"]
        assert len(result) == 1 and result[0] in ("no", "yes"), reply
        request_url = page.inner_text(".opblock-post .request-url pre")
        assert request_url.strip() == f"{ui.url}/score"
    finally:
        page.close()
    assert not problems, problems  # no CSP violation, no script error
    assert requested and all(u.startswith(ui.url + "/") for u in requested), requested  # nothing off-machine
    code, _, stderr = ui.interrupt(signal.SIGTERM)
    assert code == 0 and "POST /score -> 200" in stderr and key not in stderr, stderr


def test_swagger_sh_serves_on_the_given_port(deployed, serve):
    proj, _, _ = deployed
    port = free_port()
    ui = serve("bash", str(REPO / "scripts" / "swagger.sh"), str(port), "--out", str(proj.root / "sh.json"),
               port=port)
    assert requests.get(f"{ui.url}/swagger.json", timeout=5).json()["servers"][0]["url"] == ui.url
    assert (proj.root / "sh.json").is_file()
    assert "<div id=\"swagger-ui\">" in requests.get(f"{ui.url}/docs", timeout=5).text
    code, _, stderr = ui.interrupt(signal.SIGINT)  # the script execs opml: the PID is opml's
    assert code == 0, stderr


def test_the_proxy_has_the_server_limits(deployed, serve, tmp_path):
    """Issue 11 item 8 on the Swagger UI proxy too (opml.asgi.uvicorn_server): slow headers are cut off at the
    5 s read timeout with a 408, oversized headers get 431, and other clients are served meanwhile."""
    port = free_port()
    ui = serve(sys.executable, "-m", "opml", "swagger", "--serve", "--port", str(port), "--out",
               str(tmp_path / "limits.json"), port=port)
    slow = socket.create_connection(("127.0.0.1", port), timeout=15)
    slow.sendall(b"GET /swagger.json HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    t0 = time.monotonic()

    def trickle() -> None:  # a header byte a second, never finishing
        try:
            for _ in range(20):
                time.sleep(1)
                slow.sendall(b"x")
        except OSError:
            pass

    threading.Thread(target=trickle, daemon=True).start()
    assert requests.get(f"{ui.url}/swagger.json", timeout=5).status_code == 200  # served meanwhile
    reply = b""
    while chunk := slow.recv(65536):
        reply += chunk
    held = time.monotonic() - t0
    slow.close()
    assert 4.5 < held < 6.5, held
    assert reply.startswith(b"HTTP/1.1 408 ") and b"connection: close" in reply.lower(), reply
    assert reply.endswith(b'{"error":"request headers not received within 5 s"}'), reply
    big = requests.get(f"{ui.url}/swagger.json", headers={"X-Big": "a" * 20_000}, timeout=5)
    assert big.status_code == 431 and big.json() == {"error": "request headers over 16384 bytes"}
    code, _, stderr = ui.interrupt(signal.SIGINT)
    assert code == 0 and "Traceback" not in stderr, stderr


# ------------------------------------------------------------------------------------------ errors


def test_busy_port_is_a_one_line_error(deployed, tmp_path):
    proj, secured, _ = deployed
    port = int(secured["scoring_uri"].split(":")[-1].split("/")[0])  # the endpoint's own port
    line = proj.fails("swagger", "--serve", "--port", str(port), "--out", str(tmp_path / "s.json"))
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line


def test_stopped_and_absent_endpoints_are_one_line_errors(deployed, tmp_path):
    from opml.serving import process
    from opml.serving.endpoints import get_endpoint
    from opml.workspace.workspace import Workspace

    proj, _, _ = deployed
    out = tmp_path / "swagger.json"
    ws = Workspace.open(proj.ws)
    try:
        assert process.stop(get_endpoint(ws, OPEN).pid, OPEN)
    finally:
        ws.close()
    line = proj.fails("swagger", "--endpoint", OPEN, "--out", str(out))
    assert f"endpoint '{OPEN}' is not running" in line and f"opml endpoint restart {OPEN}" in line
    assert not out.exists()
    proj.ok("endpoint", "delete", OPEN)
    line = proj.fails("swagger", "--endpoint", OPEN, "--out", str(out))
    assert f"no endpoint named '{OPEN}'" in line
    assert not out.exists()
