"""Service principals (client id + secret, stored as a salted hash) and signed bearer tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass

from opml.errors import AuthError, NotFoundError, OpmlError
from opml.workspace import store
from opml.workspace.workspace import Workspace, now_iso

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_TOKEN_TTL = 3600
# scrypt cost: ~30 ms per check here; slows guessing without slowing the CLI.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True)
class ServicePrincipal:
    name: str
    client_id: str
    created_at: str


@dataclass(frozen=True)
class Credentials:
    """What `sp create` returns: the only time the secret exists outside the user's hands."""

    principal: ServicePrincipal
    client_secret: str


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


def create_principal(ws: Workspace, name: str) -> Credentials:
    if not NAME_RE.match(name):
        raise OpmlError(
            f"invalid service principal name {name!r}",
            "use letters, digits, '.', '_' or '-' (at most 64 characters)",
        )
    client_id = str(uuid.uuid4())
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    principal = ServicePrincipal(name=name, client_id=client_id, created_at=now_iso())
    try:
        with store.transaction(ws.db) as db:
            db.execute(
                "INSERT INTO identities (name, client_id, secret_salt, secret_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, client_id, salt, _hash(secret, salt), principal.created_at),
            )
    except sqlite3.IntegrityError:
        raise OpmlError(
            f"service principal {name!r} already exists",
            f"pick another name or run `opml auth sp delete {name}` first",
        ) from None
    return Credentials(principal=principal, client_secret=secret)


def list_principals(ws: Workspace) -> list[ServicePrincipal]:
    rows = ws.db.execute("SELECT name, client_id, created_at FROM identities ORDER BY name")
    return [ServicePrincipal(**dict(r)) for r in rows]


def delete_principal(ws: Workspace, name: str) -> ServicePrincipal:
    with store.transaction(ws.db) as db:
        row = db.execute(
            "SELECT name, client_id, created_at FROM identities WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no service principal named {name!r}", "see `opml auth sp list`")
        db.execute("DELETE FROM identities WHERE name = ?", (name,))
    return ServicePrincipal(**dict(row))


def check_secret(ws: Workspace, client_id: str, client_secret: str) -> ServicePrincipal:
    """Return the principal when the secret matches; AuthError otherwise (same message either way)."""
    row = ws.db.execute(
        "SELECT name, client_id, created_at, secret_salt, secret_hash FROM identities WHERE client_id = ?",
        (client_id,),
    ).fetchone()
    # Hash even for an unknown client id so timing does not reveal which ids exist.
    salt = row["secret_salt"] if row else b"\0" * 16
    expected = row["secret_hash"] if row else b"\1" * 32
    ok = hmac.compare_digest(_hash(client_secret, salt), expected)
    if row is None or not ok:
        raise AuthError(
            "invalid client id or secret",
            "check OPML_CLIENT_SECRET, or create new credentials with `opml auth sp create NAME`",
        )
    return ServicePrincipal(name=row["name"], client_id=row["client_id"], created_at=row["created_at"])


# ---- bearer tokens (JWT, HS256) ---------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(
    ws: Workspace, client_id: str, client_secret: str, ttl_seconds: int = DEFAULT_TOKEN_TTL
) -> dict[str, object]:
    """Exchange service-principal credentials for a signed bearer token (OAuth2-like reply)."""
    if ttl_seconds <= 0:
        raise OpmlError("token lifetime must be positive", "pass --expires-in SECONDS > 0")
    principal = check_secret(ws, client_id, client_secret)
    now = int(time.time())
    claims = {
        "iss": f"opml:{ws.id}",
        "sub": principal.client_id,
        "name": principal.name,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = _b64(hmac.new(ws.signing_key(), signing_input, hashlib.sha256).digest())
    return {
        "access_token": f"{header}.{payload}.{signature}",
        "token_type": "Bearer",
        "expires_in": ttl_seconds,
        "expires_on": claims["exp"],
    }


def verify_token(ws: Workspace, token: str, *, now: float | None = None) -> dict[str, object]:
    """Return the token's claims if it is signed by this workspace, unexpired, and its principal exists."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("malformed bearer token", "get a new one with `opml auth token`")
    header, payload, signature = parts
    expected = hmac.new(ws.signing_key(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
        claims = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        raise AuthError("malformed bearer token", "get a new one with `opml auth token`") from None
    if not hmac.compare_digest(expected, given):
        raise AuthError("invalid bearer token signature", "get a new one with `opml auth token`")
    if claims.get("iss") != f"opml:{ws.id}":
        raise AuthError("bearer token was issued by another workspace", "get one from this workspace")
    if (now if now is not None else time.time()) >= float(claims.get("exp", 0)):
        raise AuthError("bearer token has expired", "get a new one with `opml auth token`")
    exists = ws.db.execute("SELECT 1 FROM identities WHERE client_id = ?", (claims.get("sub"),)).fetchone()
    if exists is None:
        raise AuthError("bearer token's service principal no longer exists", "create one with `opml auth sp create`")
    return claims
