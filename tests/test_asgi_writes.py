"""Replies leave the opml servers in one write (opml.asgi's protocol holds the head for the body), while HEAD
replies, 100-continue and keep-alive behave as before. Real uvicorn on 127.0.0.1, raw sockets."""

from __future__ import annotations

import json

import pytest

from tests.test_http_contracts import ROW, scoring_app
from tests.test_http_limits import connect, read_reply, serving

pytestmark = pytest.mark.timeout(120)


def counting_protocol(writes: list[bytes]) -> type:
    """opml's protocol over a transport that records every write (the bytes of each, in order)."""
    from opml.asgi import LIMITS, protocol_class

    base = protocol_class(LIMITS)

    class Recorder:
        def __init__(self, transport) -> None:
            self._t = transport

        def write(self, data: bytes) -> None:
            writes.append(bytes(data))
            self._t.write(data)

        def __getattr__(self, name: str):
            return getattr(self._t, name)

    class Counting(base):
        def connection_made(self, transport) -> None:
            base.connection_made(self, Recorder(transport))

    return Counting


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from opml.serving.keys import ensure_keys, key_file

    secrets_dir = tmp_path_factory.mktemp("secrets")
    key = ensure_keys(secrets_dir, "ep")["primary"]
    writes: list[bytes] = []
    with serving(scoring_app(key_file(secrets_dir, "ep")), http=counting_protocol(writes)) as port:
        yield port, key, writes


def request(method: str, path: str, key: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n").encode() + body


def test_each_reply_is_one_write_and_keep_alive_holds(served):
    port, key, writes = served
    body = json.dumps({"data": [ROW, ROW]}).encode()
    with connect(port) as s:
        for _ in range(3):
            writes.clear()
            s.sendall(request("POST", "/score", key, body))
            status, _, reply = read_reply(s)
            assert status == 200 and json.loads(reply) == {"result": ["no", "no"]}
            assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200") and writes[0].endswith(reply)
        writes.clear()
        s.sendall(request("GET", "/nowhere", key))
        status, _, reply = read_reply(s)
        assert status == 404 and len(writes) == 1


def test_head_replies_are_not_held(served):
    port, key, _ = served
    with connect(port, timeout=5) as s:
        s.sendall(request("HEAD", "/", key))
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)  # times out (fails) if the head were held for a body that never comes
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n")
        s.sendall(request("GET", "/", key))  # the connection still serves
        assert read_reply(s)[0] == 200


def test_100_continue_is_sent_before_the_body(served):
    port, key, _ = served
    body = json.dumps({"data": [ROW]}).encode()
    with connect(port, timeout=5) as s:
        head = request("POST", "/score", key, body, extra="expect: 100-continue\r\n")[: -len(body)]
        s.sendall(head)
        interim = s.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        s.sendall(body)
        status, _, reply = read_reply(s)
        assert status == 200 and json.loads(reply) == {"result": ["no"]}
