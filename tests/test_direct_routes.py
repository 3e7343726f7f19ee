"""Direct routes of opml's HTTP protocol (opml.asgi.protocol_class), probed with raw sockets against real uvicorn.

A POST to a direct route with a short, whole body is answered by a plain function, without the ASGI layer;
every other request goes through the ASGI app. The app here counts which path answered each request.
"""

from __future__ import annotations

import socket
import threading
import time

import orjson
import pytest

from opml.asgi import JSON, read_body, respond
from tests.test_http_limits import closed_after, connect, read_reply, serving

pytestmark = pytest.mark.timeout(120)


class SpyApp:
    """POST /score echoes the body's length, by the direct route or through ASGI; counts both."""

    direct_max_bytes = 1 << 20

    def __init__(self) -> None:
        self.direct = 0
        self.asgi = 0
        self.fail = False
        self.direct_routes = {b"/score": self.route}

    def route(self, headers, body: bytes, client) -> tuple[int, bytes, list]:
        self.direct += 1
        if self.fail:
            raise RuntimeError("a bug in the route")
        assert isinstance(client, tuple) and client[0] == "127.0.0.1"
        return 200, orjson.dumps({"bytes": len(body), "via": "direct", "headers": len(headers)}), JSON

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        self.asgi += 1
        body = await read_body(receive, 1 << 22)
        await respond(send, 200, orjson.dumps({"bytes": len(body), "via": "asgi"}), JSON)


@pytest.fixture(scope="module")
def spy():
    app = SpyApp()
    with serving(app) as port:
        yield app, port


def post(body: bytes, *, target: str = "/score", version: str = "1.1", extra: str = "") -> bytes:
    return (f"POST {target} HTTP/{version}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def replies(s: socket.socket, n: int) -> list[tuple[int, bytes]]:
    """Read `n` replies that may arrive in one segment: (status, body) each."""
    data, out = b"", []
    while len(out) < n:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1").split("\r\n")
            length = int(next(v for k, _, v in (h.partition(":") for h in head[1:]) if k.lower() == "content-length"))
            if len(data) >= head_end + 4 + length:
                out.append((int(head[0].split()[1]), data[head_end + 4:head_end + 4 + length]))
                data = data[head_end + 4 + length:]
                continue
        chunk = s.recv(65536)
        assert chunk, f"closed after {len(out)} replies"
        data += chunk
    return out


def test_a_short_post_takes_the_direct_route_and_keeps_the_connection(spy):
    app, port = spy
    before = (app.direct, app.asgi)
    s = connect(port)
    for n in (0, 10, 5000):
        s.sendall(post(b"x" * n))
        status, headers, body = read_reply(s)
        assert status == 200 and orjson.loads(body) == {"bytes": n, "via": "direct", "headers": 3}
        assert headers["content-type"] == "application/json" and headers["content-length"] == str(len(body))
        assert headers["server"] == "uvicorn" and "date" in headers and "connection" not in headers
    assert (app.direct, app.asgi) == (before[0] + 3, before[1])  # three requests on one kept connection
    s.close()


def test_http_1_0_and_connection_close_are_answered_then_closed(spy):
    _, port = spy
    for version, extra in (("1.0", ""), ("1.1", "Connection: close\r\n")):
        s = connect(port)
        s.sendall(post(b"{}", version=version, extra=extra))
        status, headers, body = read_reply(s)
        assert status == 200 and orjson.loads(body)["via"] == "direct" and headers["connection"] == "close"
        assert closed_after(s) < 5
        s.close()


def test_a_body_in_pieces_and_pipelined_requests(spy):
    _, port = spy
    s = connect(port)
    raw = post(b"y" * 3000)
    for piece in (raw[:40], raw[40:200], raw[200:1500], raw[1500:]):
        s.sendall(piece)
        time.sleep(0.05)
    status, _, body = read_reply(s)
    assert status == 200 and orjson.loads(body)["bytes"] == 3000
    s.sendall(post(b"a") + post(b"bb") + post(b"ccc"))  # pipelined: answered in order
    assert [(status, orjson.loads(body)["bytes"]) for status, body in replies(s, 3)] == [(200, 1), (200, 2), (200, 3)]
    s.close()


@pytest.mark.parametrize(("raw", "why"), [
    (post(b"z" * 70_000), "a body over limits.drain_bytes"),
    (post(b"{}", target="/score?x=1"), "another target (a query string)"),
    (post(b"{}", target="/other"), "no direct route there"),
    (b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "chunked"),
])
def test_other_requests_go_through_asgi(spy, raw, why):
    app, port = spy
    before = (app.direct, app.asgi)
    s = connect(port)
    s.sendall(raw)
    status, _, body = read_reply(s)
    assert status == 200 and orjson.loads(body)["via"] == "asgi", why
    assert (app.direct, app.asgi) == (before[0], before[1] + 1), why
    s.close()


def test_expect_100_continue_goes_through_asgi(spy):
    _, port = spy
    s = connect(port)
    s.sendall(b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 100 Continue")
    s.sendall(b"{}")
    status, _, body = read_reply(s)
    assert status == 200 and orjson.loads(body) == {"bytes": 2, "via": "asgi"}
    s.close()


def test_a_route_that_raises_is_a_500_and_the_server_keeps_serving(spy):
    app, port = spy
    app.fail = True
    try:
        s = connect(port)
        s.sendall(post(b"{}"))
        status, headers, body = read_reply(s)
        assert status == 500 and orjson.loads(body) == {"error": "internal error: RuntimeError"}
        assert headers["connection"] == "close" and closed_after(s) < 5
    finally:
        app.fail = False
    s = connect(port)
    s.sendall(post(b"{}"))
    assert read_reply(s)[0] == 200
    s.close()


def test_shutdown_answers_a_direct_request_still_arriving():
    """A graceful stop while a direct request's body is arriving: it is answered, then the connection closes."""
    from opml.asgi import bind, uvicorn_server
    from opml.processes import free_port

    port = free_port()
    sock = bind("127.0.0.1", port)
    server = uvicorn_server(SpyApp(), log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        s = connect(port)
        raw = post(b"w" * 100)
        s.sendall(raw[:-50])
        time.sleep(0.2)
        server.should_exit = True
        time.sleep(0.3)
        s.sendall(raw[-50:])
        status, headers, body = read_reply(s)
        assert status == 200 and orjson.loads(body)["bytes"] == 100 and headers["connection"] == "close"
        assert closed_after(s) < 5
        s.close()
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
    assert not thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
