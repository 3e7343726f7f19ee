"""The `swagger` stage: download an endpoint's swagger.json, and browse it in Swagger UI, offline.

`download` fetches GET /swagger.json (sending the endpoint's key when it has auth on) and writes it
atomically. `serve_ui` runs a small ASGI server on 127.0.0.1 that serves Swagger UI from the assets of
the `flask-swagger-ui` wheel (no CDN: the page's Content-Security-Policy allows only its own origin),
the downloaded spec with `servers` rewritten to the UI's own origin, and a pass-through proxy of the
endpoint's routes, so "Try it out" is a same-origin call (no CORS). The proxy forwards the browser's
Authorization header as it is: it never reads, adds, stores or logs a key.

Routes of the UI server:
    GET /docs, /docs/<asset>      the Swagger UI page and its assets
    GET /swagger.json             the downloaded spec, servers -> this server
    POST /score, GET /, GET /metrics
                                  proxied to the endpoint (a browser *navigating* to / is sent to /docs)
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from opml.asgi import Receive, Scope, Send, bind, error, read_body, respond, uvicorn_server
from opml.errors import OpmlError
from opml.files import atomic_write
from opml.serving.endpoints import Endpoint, endpoint_keys
from opml.workspace.workspace import Workspace

ASSETS_PACKAGE = "flask_swagger_ui"  # PyPI flask-swagger-ui: swagger-ui's dist/ files, versioned like swagger-ui
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "index.css")
PROXIED = ("/", "/score", "/metrics")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# Host: host[:port], host a name, an IPv4 address or a bracketed IPv6 address (RFC 9110 7.2); nothing else
_HOST = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


# --------------------------------------------------------------------------------------------- download


def download(ws: Workspace, ep: Endpoint, out: Path, timeout: float = 10.0) -> dict[str, Any]:
    """GET the endpoint's swagger.json (with its key when auth is on) and write it to `out` atomically."""
    import requests

    from opml.serving import process

    if out.expanduser().is_dir():
        raise OpmlError(f"{out} is a folder", "pass a file path with --out, e.g. swagger/swagger.json")
    headers = {"Accept": "application/json"}
    if ep.auth_enabled:
        headers["Authorization"] = f"Bearer {endpoint_keys(ws, ep.name)['primary']}"
    fix = f"check `opml endpoint show {ep.name}`, or `opml endpoint restart {ep.name}`"
    try:
        resp = requests.get(ep.swagger_uri, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        if not process.alive(ep.pid, ep.name):
            raise OpmlError(f"endpoint {ep.name!r} is not running (nothing answers at {ep.swagger_uri})",
                            f"start it again with `opml endpoint restart {ep.name}`") from None
        raise OpmlError(f"endpoint {ep.name!r} did not answer at {ep.swagger_uri} ({type(exc).__name__})",
                        fix) from None
    if resp.status_code != 200:
        raise OpmlError(f"GET {ep.swagger_uri} answered {resp.status_code}: {_reason(resp)}", fix)
    raw = resp.content
    doc = _parse_spec(raw, ep.swagger_uri)
    path = _write_atomically(out, raw)
    return {
        "endpoint": ep.name,
        "swagger_uri": ep.swagger_uri,
        "path": str(path),
        "bytes": len(raw),
        "openapi": doc.get("openapi") or doc.get("swagger"),
        "title": (doc.get("info") or {}).get("title"),
        "paths": len(doc["paths"]),
        "operations": [f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m in ops
                       if m in ("get", "put", "post", "delete", "patch", "head", "options")],
        "auth_enabled": ep.auth_enabled,
        "auth_sent": "Authorization" in headers,
    }


def _reason(resp: Any) -> str:
    try:
        body = resp.json()
        text = body.get("error", body) if isinstance(body, dict) else body
    except ValueError:
        text = resp.text
    return " ".join(str(text).split())[:200] or resp.reason or "no body"


def _parse_spec(raw: bytes, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or not ("openapi" in doc or "swagger" in doc) or not isinstance(
            doc.get("paths"), dict):
        raise OpmlError(f"{source} is not an OpenAPI document (expected JSON with 'openapi' and 'paths')",
                        "is that URL an opml endpoint? check `opml endpoint show`")
    return doc


def _write_atomically(out: Path, data: bytes) -> Path:
    out = out.expanduser()
    try:
        return atomic_write(out, data)
    except OSError as exc:
        raise OpmlError(f"cannot write {out}: {exc.strerror or exc}", "pass a writable path with --out") from None


# --------------------------------------------------------------------------------------------- Swagger UI


def assets_dir() -> Path:
    """Swagger UI's dist/ folder from the installed flask-swagger-ui wheel (found without importing Flask)."""
    import importlib.util

    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        dist = Path(loc) / "dist"
        if all((dist / name).is_file() for name in ASSETS):
            return dist
    raise OpmlError("Swagger UI's files are not installed (pip package flask-swagger-ui)",
                    "run `make install` or `pip install flask-swagger-ui`")


def swagger_ui_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flask-swagger-ui")
    except PackageNotFoundError:
        return "unknown"


INIT_JS = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/swagger.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    queryConfigEnabled: false,
    persistAuthorization: false,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0
  });
});
"""


def _index_html(title: str) -> bytes:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{html.escape(title)} - Swagger UI</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/docs/index.css">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
""".encode()


class SwaggerUIApp:
    """ASGI app: Swagger UI + the spec pointed at this origin + a pass-through proxy to the endpoint."""

    def __init__(self, ep: Endpoint, spec: dict[str, Any], port: int, *, log: bool = True) -> None:
        self.ep = ep
        self.spec = spec
        self.port = port
        self.log = log
        self.target = ep.base_uri
        self.max_body = int(ep.settings.get("max_request_bytes") or 1_048_576) + 65_536
        dist = assets_dir()
        title = str((spec.get("info") or {}).get("title") or ep.name)
        ctype = {".js": b"application/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8"}
        self.files: dict[str, tuple[bytes, bytes]] = {
            f"/docs/{name}": ((dist / name).read_bytes(), ctype[Path(name).suffix]) for name in ASSETS}
        self.files["/docs/init.js"] = (INIT_JS, ctype[".js"])
        self.files["/docs"] = (_index_html(title), b"text/html; charset=utf-8")

    def spec_for(self, origin: str) -> bytes:
        doc = dict(self.spec)
        doc["servers"] = [{"url": origin, "description": f"opml swagger proxy to {self.ep.name} ({self.target})"}]
        if self.ep.auth_enabled:
            info = dict(doc.get("info") or {})
            info["description"] = (f"{info.get('description', '')}\n\nTry it out: click **Authorize** and paste a "
                                   f"key from `opml endpoint keys {self.ep.name}`.").strip()
            doc["info"] = info
        return json.dumps(doc).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        t0 = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        origin = self._origin(scope["headers"])
        if origin == 400:
            status = await _send(send, 400, error("bad Host header; send one host[:port]: 127.0.0.1 or localhost"))
        elif origin == 403:
            status = await _send(send, 403, error("this server answers only on 127.0.0.1 / localhost"))
        elif path == "/" and method == "GET" and _navigating(headers):
            status = await _send(send, 307, b"", extra=[(b"location", b"/docs")])
        elif path in PROXIED:
            status = await self._proxy(scope, receive, send, headers)
        elif method not in ("GET", "HEAD"):
            status = await _send(send, 405, error(f"use GET {path}"))
        elif path == "/swagger.json":
            status = await _send(send, 200, self.spec_for(origin), ctype=b"application/json")
        elif path in self.files:
            body, ctype = self.files[path]
            extra = [(b"content-security-policy", CSP.encode())] if path == "/docs" else []
            status = await _send(send, 200, body, ctype=ctype, extra=extra, head=method == "HEAD")
        elif path == "/docs/":
            status = await _send(send, 307, b"", extra=[(b"location", b"/docs")])
        else:
            status = await _send(send, 404, error(f"no route {path}; Swagger UI is at /docs"))
        if self.log and path in PROXIED:  # method, path, status, time: never headers or bodies
            ms = (time.perf_counter() - t0) * 1000
            print(f"{method} {path} -> {status} ({ms:.0f} ms)", file=sys.stderr, flush=True)

    def _origin(self, raw_headers: list[tuple[bytes, bytes]]) -> str | int:
        """This server's origin as the client named it, rebuilt from a strictly parsed Host header (never the
        header's text); 400 for a malformed or repeated Host, 403 for a host that is not this machine's loopback.
        """
        hosts = [v for k, v in raw_headers if k.lower() == b"host"]
        if not hosts:
            return f"http://127.0.0.1:{self.port}"
        match = _HOST.fullmatch(hosts[0].decode("latin-1")) if len(hosts) == 1 else None
        port = int(match["port"]) if match and match["port"] else None
        if match is None or (port is not None and not 0 < port < 65536):
            return 400
        name = match["host"].lower()
        if name not in LOCAL_HOSTS:
            return 403
        return f"http://{name}" + (f":{port}" if port is not None else "")

    async def _proxy(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> int:
        import requests

        body = await read_body(receive, self.max_body)
        if body is None:
            return await _send(send, 413, error(f"request body over {self.max_body} bytes"))
        forward = {k: headers[k] for k in ("authorization", "content-type", "accept") if k in headers}
        url = self.target + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        try:
            resp = await asyncio.to_thread(requests.request, scope["method"], url, headers=forward,
                                           data=body or None, timeout=60, allow_redirects=False)
        except requests.RequestException as exc:
            return await _send(send, 502, error(
                f"endpoint {self.ep.name!r} did not answer at {self.target} ({type(exc).__name__}); "
                f"check `opml endpoint show {self.ep.name}`"))
        ctype = resp.headers.get("content-type", "application/octet-stream").encode("latin-1")
        return await _send(send, resp.status_code, resp.content, ctype=ctype, head=scope["method"] == "HEAD")


def _navigating(headers: dict[str, str]) -> bool:
    """A browser opening the page (not Swagger UI's fetch of GET /, nor curl)."""
    mode = headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate"
    return "text/html" in headers.get("accept", "")


async def _send(send: Send, status: int, body: bytes, *, ctype: bytes = b"application/json",
                extra: list[tuple[bytes, bytes]] | None = None, head: bool = False) -> int:
    headers = [(b"content-type", ctype), (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
               *(extra or [])]
    await respond(send, status, body, headers, head=head)
    return status


def load_spec(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OpmlError(f"cannot read {path}: {exc.strerror or exc}", "run `opml swagger` first") from None
    return _parse_spec(raw, str(path))


def serve_ui(ws: Workspace, ep: Endpoint, spec_path: Path, port: int) -> None:
    """Serve Swagger UI for `ep` on 127.0.0.1:`port` until Ctrl-C or SIGTERM (then return normally).

    The server has the limits of every opml server process (opml.asgi.LIMITS: header size and count, read
    timeouts, keep-alive, concurrency)."""
    app = SwaggerUIApp(ep, load_spec(spec_path), port)
    if not 1 <= port <= 65535:
        raise OpmlError(f"--port must be between 1 and 65535 (got {port})", "pass --port 9000")
    # no SO_REUSEPORT: a port in use (an endpoint's, another Swagger UI's) is a one-line error
    sock = bind("127.0.0.1", port, reuse_port=False, backlog=128, fix="pick another port with --port")
    server = uvicorn_server(app, log_level="warning", timeout_graceful_shutdown=3)

    def stop(signum: int, frame: Any) -> None:  # uvicorn re-raises the signal once it has shut down
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main else None
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
