"""Endpoint keys: a primary and a secondary key per endpoint, in a 0600 file under <workspace>/secrets.

The server re-reads the file when its mtime changes, so a regenerated key takes effect on the next
request without a restart; comparison is constant-time.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path

from opml.errors import OpmlError
from opml.workspace.secrets import read_secret, write_secret

SLOTS = ("primary", "secondary")


def key_file(secrets_dir: Path, endpoint: str) -> Path:
    return secrets_dir / "endpoints" / f"{endpoint}.keys.json"


def new_key() -> str:
    return secrets.token_urlsafe(32)


def ensure_keys(secrets_dir: Path, endpoint: str) -> dict[str, str]:
    """Keys of `endpoint`, creating both the first time (a redeploy keeps them)."""
    path = key_file(secrets_dir, endpoint)
    if path.is_file():
        return read_keys(path)
    keys = {slot: new_key() for slot in SLOTS}
    write_secret(path, json.dumps(keys).encode())
    return keys


def read_keys(path: Path) -> dict[str, str]:
    return json.loads(read_secret(path))


def regenerate(secrets_dir: Path, endpoint: str, slot: str) -> dict[str, str]:
    if slot not in SLOTS:
        raise OpmlError(f"unknown key slot {slot!r}", "use primary or secondary")
    keys = ensure_keys(secrets_dir, endpoint)
    keys[slot] = new_key()
    write_secret(key_file(secrets_dir, endpoint), json.dumps(keys).encode())
    return keys


def delete_keys(secrets_dir: Path, endpoint: str) -> None:
    key_file(secrets_dir, endpoint).unlink(missing_ok=True)


class KeyChecker:
    """Checks `Authorization: Bearer <key>` against the current keys file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1
        self._keys: list[bytes] = []
        self._refresh()

    def _refresh(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            self._keys, self._mtime = [], -1
            return
        if mtime != self._mtime:
            keys = read_keys(self.path)
            self._keys = [keys[s].encode() for s in SLOTS if keys.get(s)]
            self._mtime = mtime

    def check(self, authorization: bytes | None) -> bool:
        self._refresh()
        if not authorization or authorization[:7].lower() != b"bearer ":
            return False
        given = authorization[7:].strip()
        ok = False
        for key in self._keys:  # compare with every key so timing does not reveal which matched
            ok |= hmac.compare_digest(given, key)
        return ok
