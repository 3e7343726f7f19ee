"""Service principals (client id + secret, stored as a salted hash) and signed bearer tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from opml.errors import AuthError, NotFoundError, OpmlError
from opml.naming import check_name
from opml.workspace import store
from opml.workspace.workspace import Workspace, now_iso

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
    check_name(name, "service principal")
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
    check_name(name, "service principal")
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


def read_client_secret(prompt: Callable[[], str], stream: TextIO | None = None) -> str:
    """OPML_CLIENT_SECRET if set; else `prompt()` (hidden) on a terminal, else one line of `stream` (stdin)."""
    secret = os.environ.get("OPML_CLIENT_SECRET")
    if secret:
        return secret
    stream = stream or sys.stdin
    try:
        secret = prompt() if stream.isatty() else stream.readline()
    except EOFError:
        secret = ""
    if not secret.strip():
        raise OpmlError("no client secret given", "set OPML_CLIENT_SECRET or type it at the prompt")
    return secret.strip()


# ---- bearer tokens (JWT, HS256, via PyJWT) ----------------------------------

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "iss", "sub")
MAX_TOKEN_CHARS = 4096
# Compact JWS: base64url header (ours is 36 characters) . payload . the 43-character HMAC-SHA256 signature.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}")
_FIX = "get a new one with `opml auth token`"


def issue_token(
    ws: Workspace, client_id: str, client_secret: str, ttl_seconds: int = DEFAULT_TOKEN_TTL
) -> dict[str, object]:
    """Exchange service-principal credentials for a signed bearer token (OAuth2-like reply)."""
    import jwt

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
    return {
        "access_token": jwt.encode(claims, ws.signing_key(), algorithm=ALGORITHM),
        "token_type": "Bearer",
        "expires_in": ttl_seconds,
        "expires_on": claims["exp"],
    }


def verify_token(ws: Workspace, token: str, *, now: float | None = None) -> dict[str, object]:
    """Return the token's claims if it is signed by this workspace, unexpired, and its principal exists.

    The signature is checked (HS256 only) before any claim is read; every bad token is an AuthError.
    `now` replaces the clock for the expiry checks.
    """
    import jwt

    if len(token) > MAX_TOKEN_CHARS or not _TOKEN_RE.fullmatch(token) or not _canonical(token.rpartition(".")[2]):
        raise AuthError("malformed bearer token", _FIX)
    options = {"require": list(REQUIRED_CLAIMS)}
    if now is not None:
        options |= {"verify_exp": False, "verify_iat": False}
    try:
        claims = jwt.decode(token, ws.signing_key(), algorithms=[ALGORITHM], issuer=f"opml:{ws.id}", options=options)
    except jwt.ExpiredSignatureError:
        raise AuthError("bearer token has expired", _FIX) from None
    except jwt.InvalidSignatureError:
        raise AuthError("invalid bearer token signature", _FIX) from None
    except jwt.InvalidAlgorithmError:
        raise AuthError(f"bearer token is not signed with {ALGORITHM}", _FIX) from None
    except jwt.InvalidIssuerError:
        raise AuthError("bearer token was issued by another workspace",
                        "get one from this workspace with `opml auth token`") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"bearer token lacks the {exc.claim!r} claim", _FIX) from None
    except jwt.ImmatureSignatureError:
        raise AuthError("bearer token is issued in the future", _FIX) from None
    except jwt.DecodeError:
        raise AuthError("malformed bearer token", _FIX) from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid bearer token ({exc})", _FIX) from None
    except (ValueError, TypeError, RecursionError):  # belt and braces: never a 500 for a bad token
        raise AuthError("malformed bearer token", _FIX) from None
    _check_claims(claims, now)
    exists = ws.db.execute("SELECT 1 FROM identities WHERE client_id = ?", (claims["sub"],)).fetchone()
    if exists is None:
        raise AuthError("bearer token's service principal no longer exists", "create one with `opml auth sp create`")
    return claims


def _canonical(segment: str) -> bool:
    """True when `segment` is the one base64url spelling of its bytes (no padding, unused bits zero)."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except ValueError:
        return False
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == segment


def _check_claims(claims: dict[str, object], now: float | None) -> None:
    """Types PyJWT lets through (numeric strings as times), and the expiry against an explicit `now`."""
    exp, iat = claims["exp"], claims["iat"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, iat)):
        raise AuthError("bearer token's exp and iat must be numbers", _FIX)
    if not isinstance(claims["sub"], str):
        raise AuthError("bearer token's sub must be a string", _FIX)
    if now is not None and now >= exp:
        raise AuthError("bearer token has expired", _FIX)
    if now is not None and iat > now:
        raise AuthError("bearer token is issued in the future", _FIX)
