"""The servers' limits (issue 11 item 8), probed with raw sockets against real uvicorn on 127.0.0.1.

The scoring app (with the fake scorer of test_http_contracts) runs in a thread behind `opml.asgi.uvicorn_server`,
the function every opml server process uses (endpoint workers and the control plane), with its default limits
unless a test says otherwise. Every socket has a timeout, so a server that holds a connection fails the test
instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from opml.processes import free_port
from tests.test_http_contracts import ROW, scoring_app

pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def serving(app, **options) -> Iterator[int]:
    """Serve `app` with uvicorn_server(app, **options) in a thread on a free port; yield the port."""
    from opml.asgi import bind, uvicorn_server

    port = free_port()
    sock = bind("127.0.0.1", port)
    server = uvicorn_server(app, log_level="warning", **options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    from opml.serving.keys import ensure_keys, key_file

    secrets_dir = tmp_path_factory.mktemp("secrets")
    return ensure_keys(secrets_dir, "ep")["primary"], key_file(secrets_dir, "ep")


@pytest.fixture(scope="module")
def port(keyed) -> Iterator[int]:
    with serving(scoring_app(keyed[1])) as p:
        yield p


def connect(port: int, timeout: float = 15.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_reply(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP reply (content-length framed); raise if the server closes or stalls first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a reply: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_after(s: socket.socket) -> float:
    """Seconds until the server closes `s` (reading and dropping whatever it sends first)."""
    t0 = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        while s.recv(65536):
            pass
    return time.monotonic() - t0


def score_request(key: str, extra: str = "") -> bytes:
    body = json.dumps({"data": [ROW]}).encode()
    return (f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def test_the_limits_every_server_gets():
    """The settings uvicorn_server gives the endpoint workers and the control plane (the README lists them)."""
    from opml.asgi import LIMITS, uvicorn_server

    assert (LIMITS.max_head_bytes, LIMITS.max_headers) == (16_384, 100)
    assert (LIMITS.head_timeout, LIMITS.body_timeout, LIMITS.keep_alive) == (5.0, 5.0, 5)
    assert (LIMITS.concurrency, LIMITS.backlog, LIMITS.drain_bytes) == (512, 2048, 65_536)
    config = uvicorn_server(lambda *a: None).config
    assert config.http.limits == LIMITS and config.backlog == LIMITS.backlog
    assert config.timeout_keep_alive == LIMITS.keep_alive and config.ws == "none"


def test_slow_clients_are_cut_off_at_the_read_timeouts(port, keyed):
    """Idle, slow-header, slow-body and idle keep-alive connections are all closed within 5 s (+1 s slack),
    while a valid request on another connection is served at once."""
    key = keyed[0]
    idle = connect(port)
    slow_head = connect(port)
    slow_head.sendall(b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    slow_body = connect(port)
    slow_body.sendall(f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                      "Content-Length: 1000\r\n\r\n{\"data\": [".encode())
    kept = connect(port)
    kept.sendall(score_request(key))
    assert read_reply(kept)[0] == 200
    results: dict[str, tuple[float, bytes]] = {}

    def trickle(s: socket.socket) -> None:  # a byte a second, never finishing
        with contextlib.suppress(OSError):
            for _ in range(20):
                time.sleep(1)
                s.sendall(b"x")

    def watch(name: str, s: socket.socket) -> None:
        t0 = time.monotonic()
        data = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := s.recv(65536):
                data += chunk
        results[name] = (time.monotonic() - t0, data)

    threads = [threading.Thread(target=trickle, args=(slow_head,)), threading.Thread(target=trickle, args=(slow_body,))]
    threads += [threading.Thread(target=watch, args=(n, s)) for n, s in
                (("idle", idle), ("slow_head", slow_head), ("slow_body", slow_body), ("kept", kept))]
    for t in threads:
        t.start()
    time.sleep(0.5)
    fresh = connect(port)
    fresh.sendall(score_request(key))
    assert read_reply(fresh)[0] == 200  # served meanwhile
    for t in threads:
        t.join(20)
    for name in ("idle", "slow_head", "slow_body", "kept"):
        held, _ = results[name]
        assert held < 6.5, (name, held)
    assert results["idle"][1] == b"" and results["kept"][1] == b""  # nothing was asked: closed quietly
    for name, what in (("slow_head", "request headers"), ("slow_body", "request body")):
        status, headers, body = parse(results[name][1])
        assert status == 408 and headers["connection"] == "close", (name, results[name][1])
        assert json.loads(body) == {"error": f"{what} not received within 5 s"}
    for s in (idle, slow_head, slow_body, kept, fresh):
        s.close()


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}, body


def test_oversized_or_too_many_headers_are_431(port, keyed):
    key = keyed[0]
    big = connect(port)  # 1 MB of unfinished headers: refused after 16 KiB, the rest never read
    big.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    sent = 0
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for _ in range(16):
            big.sendall(b"a" * 65536)
            sent += 65536
    status, headers, body = parse(_drain(big))
    assert status == 431 and headers["connection"] == "close"
    assert json.loads(body) == {"error": "request headers over 16384 bytes"}
    cases = [score_request(key, f"X-Long: {'a' * 20_000}\r\n"),  # complete, in one piece
             score_request(key, "".join(f"X-H{i}: v\r\n" for i in range(101)))]
    for raw in cases:
        s = connect(port)
        s.sendall(raw)
        status, headers, body = read_reply(s)
        assert status == 431 and headers["connection"] == "close"
        assert json.loads(body)["error"] in ("request headers over 16384 bytes", "over 100 request header fields")
        assert closed_after(s) < 2
        s.close()
    ok = connect(port)  # just under both limits
    ok.sendall(score_request(key, "".join(f"X-H{i}: {'v' * 100}\r\n" for i in range(90))))
    assert read_reply(ok)[0] == 200
    ok.close()


def _drain(s: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            data += chunk
    s.close()
    return data


def test_unauthenticated_10mb_body_is_answered_401_without_reading_it(port):
    """The key is checked on the headers: the reply comes before the body is sent, and the server closes
    the connection instead of reading the other 10 MB."""
    s = connect(port, timeout=5)
    s.sendall(b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: 10485760\r\n\r\n" + b" " * 65536)
    status, headers, body = read_reply(s)
    assert status == 401 and headers["connection"] == "close"
    assert json.loads(body) == {"error": "missing or invalid key: send 'Authorization: Bearer <key>'"}
    sent = 65536
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        while sent < 10485760:
            s.sendall(b" " * 65536)
            sent += 65536
    assert sent < 10485760
    s.close()


def test_over_the_concurrency_limit_is_503_json(keyed):
    from opml.asgi import LIMITS

    limits = LIMITS.replace(concurrency=4)
    with serving(scoring_app(keyed[1]), limits=limits) as port:
        held = [connect(port) for _ in range(4)]
        time.sleep(0.2)
        s = connect(port)
        s.sendall(score_request(keyed[0]))
        status, headers, body = read_reply(s)
        assert status == 503 and headers["retry-after"] == "1"
        assert json.loads(body) == {"error": "server busy: at the limit of 4 open connections; retry shortly"}
        for c in (*held, s):
            c.close()
        time.sleep(0.2)
        s = connect(port)
        s.sendall(score_request(keyed[0]))
        assert read_reply(s)[0] == 200
        s.close()


def test_large_bodies_and_split_heads_within_the_limits_are_served(keyed):
    """The head-size check counts only head bytes: a 500 KB body, then a head that arrives in pieces, on one
    keep-alive connection, are both answered."""
    from opml.serving.app import ScoringApp
    from opml.serving.keys import KeyChecker
    from tests.test_http_contracts import FakeScorer

    app = ScoringApp(FakeScorer(), keys=KeyChecker(keyed[1]), max_request_bytes=1 << 20, openapi=b"{}")
    with serving(app) as port:
        s = connect(port)
        body = json.dumps({"data": [ROW]}).encode() + b" " * 500_000
        s.sendall(f"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keyed[0]}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status, _, reply = read_reply(s)
        assert status == 200 and json.loads(reply) == {"result": ["no"]}
        headers = "".join(f"X-H{i}: {'v' * 100}\r\n" for i in range(90))  # 10 KB
        padded = json.dumps({"data": [ROW]}).encode() + b" " * 10_000
        raw = (f"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keyed[0]}\r\n{headers}"
               f"Content-Length: {len(padded)}\r\n\r\n").encode() + padded
        head_end = raw.index(b"\r\n\r\n")
        for piece in (raw[:5000], raw[5000:head_end + 2], raw[head_end + 2:]):  # the blank line split in two
            s.sendall(piece)
            time.sleep(0.05)
        assert read_reply(s)[0] == 200
        s.close()
