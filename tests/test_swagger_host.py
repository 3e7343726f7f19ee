"""The Swagger UI proxy's Host check (issue 11f): only loopback names, parsed strictly, never reflected.

The app is driven in process as ASGI with the bytes a browser or an attacker would send.
"""

from __future__ import annotations

import json

import pytest

from tests.test_http_contracts import call


@pytest.fixture
def app():
    from opml.processes import free_port
    from opml.serving.endpoints import Endpoint
    from opml.serving.swagger import SwaggerUIApp

    ep = Endpoint(name="ep", model="bank:3", host="127.0.0.1", port=free_port(), pid=None, auth_enabled=True,
                  settings={"max_request_bytes": 1000}, inference=None, started_at=None, created_at="", updated_at="")
    spec = {"openapi": "3.0.3", "info": {"title": "bank"}, "paths": {"/score": {}}}
    return SwaggerUIApp(ep, spec, 9000, log=False)


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("localhost:9000", "http://localhost:9000"),
        ("LocalHost:8080", "http://localhost:8080"),  # ssh -L 8080:127.0.0.1:9000: the browser's own origin
        ("[::1]:9000", "http://[::1]:9000"),
        ("localhost", "http://localhost"),
        ("127.0.0.1", "http://127.0.0.1"),
    ],
)
def test_loopback_hosts_get_their_own_origin(app, host, origin):
    r = call(app, "GET", "/swagger.json", headers={"host": host})
    assert r.status == 200 and r.json()["servers"][0]["url"] == origin


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:1@evil.com", 400),  # the probe: passed the check and was written into servers
        ("localhost:9000@evil.com:80", 400),
        ("localhost:abc", 400),
        ("localhost:", 400),
        ("localhost:99999", 400),
        ("localhost:+80", 400),
        ("localhost:9000/x", 400),
        ("localhost:9000 evil", 400),
        ("localhost\\@evil.com", 400),
        ("user@localhost:9000", 400),
        ("[::1", 400),
        ("[::1]x", 400),
        ("", 400),
        ("evil.com", 403),
        ("evil.com:9000", 403),
        ("localhost.evil.com", 403),
        ("127.0.0.2:9000", 403),
        ("[::2]:9000", 403),
        ("0.0.0.0:9000", 403),
    ],
)
def test_other_hosts_are_refused_and_not_reflected(app, host, status):
    for path in ("/swagger.json", "/docs", "/score"):
        r = call(app, "GET", path, headers={"host": host})
        assert r.status == status, (host, path, r.status)
        assert "evil" not in r.body.decode("latin-1") and (not host or host not in r.body.decode("latin-1"))


def test_two_host_headers_are_refused(app):
    scope_headers = [("host", "localhost:9000"), ("Host", "evil.com")]
    r = call(app, "GET", "/swagger.json", headers=dict(scope_headers))  # two keys differing only in case
    assert r.status == 400 and "evil" not in r.body.decode()


def test_no_host_header_is_this_server(app):
    r = call(app, "GET", "/swagger.json")
    assert r.status == 200 and json.loads(r.body)["servers"][0]["url"] == "http://127.0.0.1:9000"
