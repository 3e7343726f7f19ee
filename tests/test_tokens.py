"""Bearer tokens: only a well-formed HS256 JWT signed by this workspace, with exp/iat/iss/sub, is accepted.

Every other token is the one AuthError (401 in the control plane), never another exception (a 500).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import pytest

from opml.errors import AuthError
from opml.workspace.identity import create_principal, issue_token, verify_token
from opml.workspace.workspace import Workspace

HS256 = {"alg": "HS256", "typ": "JWT"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _seg(doc: object) -> str:
    return _b64(json.dumps(doc, separators=(",", ":")).encode())


def _forge(key: bytes, header: object, claims: object, digest=hashlib.sha256) -> str:
    """A token with any header and claims, signed with `key` (the workspace's, so only the content is wrong)."""
    head = header if isinstance(header, str) else _seg(header)
    body = claims if isinstance(claims, str) else _seg(claims)
    sig = _b64(hmac.new(key, f"{head}.{body}".encode(), digest).digest())
    return f"{head}.{body}.{sig}"


@pytest.fixture
def ws(tmp_path):
    ws = Workspace.create_or_open(tmp_path / "ws")
    yield ws
    ws.close()


@pytest.fixture
def creds(ws):
    return create_principal(ws, "svc")


@pytest.fixture
def claims(ws, creds) -> dict:
    now = int(time.time())
    return {"iss": f"opml:{ws.id}", "sub": creds.principal.client_id, "name": "svc", "iat": now, "exp": now + 600,
            "jti": "x"}


def _token(ws, creds, ttl: int = 600) -> str:
    return issue_token(ws, creds.principal.client_id, creds.client_secret, ttl)["access_token"]


def _rejected(ws, token: str, match: str | None = None) -> AuthError:
    with pytest.raises(AuthError, match=match) as info:
        verify_token(ws, token)
    assert "Traceback" not in info.value.line() and "\n" not in info.value.line()
    return info.value


def test_valid_token_is_an_hs256_jwt_with_the_same_claims(ws, creds):
    token = _token(ws, creds)
    head = token.split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(head + "==")) == HS256
    claims = verify_token(ws, token)
    assert set(claims) == {"iss", "sub", "name", "iat", "exp", "jti"}
    assert claims["iss"] == f"opml:{ws.id}" and claims["sub"] == creds.principal.client_id
    assert claims["name"] == "svc" and claims["exp"] - claims["iat"] == 600


def test_token_built_by_the_previous_code_still_verifies(ws, claims):
    """Tokens handed out before the switch to PyJWT keep working until they expire."""
    assert verify_token(ws, _forge(ws.signing_key(), HS256, claims))["sub"] == claims["sub"]


def test_deeply_nested_payload_or_header_is_a_malformed_token(ws):
    nested = _b64(b"[" * 3000 + b"]" * 3000)
    _rejected(ws, f"{_seg(HS256)}.{nested}.AAAA")
    _rejected(ws, f"{nested}.{_seg({'sub': 'x'})}.AAAA")
    _rejected(ws, _forge(ws.signing_key(), nested, {"sub": "x"}))
    _rejected(ws, f"{_seg(HS256)}.{_b64(b'{' * 100_000)}.AAAA")


def test_signature_must_be_canonical_base64url(ws, creds):
    token = _token(ws, creds)
    head, body, sig = token.split(".")
    for variant in (sig + "==", sig + "=", f" {sig}", sig + "\n", sig[:-1], sig + "A"):
        _rejected(ws, f"{head}.{body}.{variant}")
    # The last character carries 2 unused bits: other values decode to the same bytes but are not the token.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bytes = [c for c in alphabet if c != sig[-1] and alphabet.index(c) >> 2 == alphabet.index(sig[-1]) >> 2]
    assert len(same_bytes) == 3
    for c in same_bytes:
        _rejected(ws, f"{head}.{body}.{sig[:-1]}{c}")


def test_standard_base64_alphabet_is_rejected(ws, creds):
    """'+' and '/' in place of '-' and '_' decode to the same bytes with a lenient decoder; not here."""
    for _ in range(200):
        token = _token(ws, creds)
        if "-" in token or "_" in token:
            break
    else:
        pytest.fail("no token with '-' or '_' in 200 tries")
    _rejected(ws, token.replace("-", "+").replace("_", "/"))
    head, body, sig = token.split(".")
    if "-" in sig or "_" in sig:
        _rejected(ws, f"{head}.{body}.{sig.replace('-', '+').replace('_', '/')}")


@pytest.mark.parametrize("header", [
    {"alg": "none", "typ": "JWT"},
    {"alg": "None"},
    {"alg": "HS512", "typ": "JWT"},
    {"alg": "RS256", "typ": "JWT"},
    {"typ": "JWT"},
    [],
    "hello",
])
def test_only_hs256_is_accepted(ws, claims, header):
    key = ws.signing_key()
    if isinstance(header, dict) and header.get("alg") == "HS512":
        _rejected(ws, _forge(key, header, claims, hashlib.sha512))  # correctly signed with HS512
    if isinstance(header, dict) and str(header.get("alg")).lower() == "none":
        _rejected(ws, f"{_seg(header)}.{_seg(claims)}.")  # unsigned
    _rejected(ws, _forge(key, header if not isinstance(header, str) else _b64(header.encode()), claims))


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "sub"])
def test_required_claims(ws, claims, claim):
    del claims[claim]
    _rejected(ws, _forge(ws.signing_key(), HS256, claims))


@pytest.mark.parametrize(("claim", "value"), [
    ("exp", "99999999999"), ("exp", None), ("iat", "now"), ("iat", [1]), ("sub", 7), ("sub", {"a": 1}),
    ("iss", ["opml:x"]), ("iss", "opml:another-workspace"),
])
def test_claims_of_the_wrong_type_or_value(ws, claims, claim, value):
    claims[claim] = value
    _rejected(ws, _forge(ws.signing_key(), HS256, claims))


@pytest.mark.parametrize("payload", [[], "text", 7, None])
def test_signed_payload_that_is_not_an_object(ws, payload):
    _rejected(ws, _forge(ws.signing_key(), HS256, payload))


def test_expired_and_future_tokens(ws, creds, claims):
    token = _token(ws, creds, ttl=30)
    _rejected(ws, _forge(ws.signing_key(), HS256, claims | {"exp": int(time.time()) - 1}), "expired")
    with pytest.raises(AuthError, match="expired"):
        verify_token(ws, token, now=time.time() + 31)
    assert verify_token(ws, token, now=time.time() + 25)["sub"] == creds.principal.client_id
    _rejected(ws, _forge(ws.signing_key(), HS256, claims | {"iat": int(time.time()) + 3600}))


def test_wrong_key_and_other_workspace(ws, creds, claims, tmp_path):
    _rejected(ws, _forge(b"k" * 32, HS256, claims), "signature")
    other = Workspace.create_or_open(tmp_path / "other")
    try:
        _rejected(other, _token(ws, creds))
    finally:
        other.close()


@pytest.mark.parametrize("token", ["", ".", "..", "a.b", "a.b.c.d", "not-a-token", "ü.ü.ü", "a" * 20_000,
                                   f"{_seg(HS256)}.{_seg({})}.{'A' * 43}"])
def test_malformed_tokens(ws, token):
    _rejected(ws, token)


def test_deleted_principal(ws, creds):
    token = _token(ws, creds)
    ws.db.execute("DELETE FROM identities")
    _rejected(ws, token, "no longer exists")


# ---- through the control plane's ASGI app (in process) ----------------------


def _get(app, path: str, token: str) -> tuple[int, dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"",
             "headers": [(b"authorization", f"Bearer {token}".encode("latin-1"))]}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def test_control_plane_answers_401_for_every_bad_token(ws, creds, claims):
    from opml.pipelines.app import ControlPlane

    app = ControlPlane(ws, "http://127.0.0.1:1", on_run=lambda run: None)
    assert _get(app, "/pipelines", _token(ws, creds)) == (200, {"value": []})
    token = _token(ws, creds)
    head, body, sig = token.split(".")
    bad = [
        f"{head}.{_b64(b'[' * 3000 + b']' * 3000)}.{sig}",
        f"{head}.{body}.{sig}==",
        token.replace("-", "+").replace("_", "/") if ("-" in token or "_" in token) else f"{token}+",
        f"{_seg({'alg': 'none'})}.{_seg(claims)}.",
        _forge(ws.signing_key(), {"alg": "HS512", "typ": "JWT"}, claims, hashlib.sha512),
        _forge(ws.signing_key(), HS256, {k: v for k, v in claims.items() if k != "iat"}),
        _forge(ws.signing_key(), HS256, []),
    ]
    for t in bad:
        status, doc = _get(app, "/pipelines", t)
        assert status == 401, (t[:80], status, doc)
        assert set(doc) == {"error"} and "opml auth token" in doc["error"], doc
