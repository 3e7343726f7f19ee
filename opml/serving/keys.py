"""Endpoint keys: a primary and a secondary key per endpoint, in a 0600 file under <workspace>/secrets.

Every change to the file is a read-modify-write under the file's lock, so concurrent rotations
never undo each other. The server re-reads the file when it changes, so a regenerated key takes
effect on the next request without a restart; comparison is constant-time.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from opml.errors import OpmlError, WorkspaceError
from opml.workspace.secrets import locked, read_secret, write_secret

if TYPE_CHECKING:
    from opml.serving.watch import Watched

SLOTS = ("primary", "secondary")
log = logging.getLogger(__name__)


def key_file(secrets_dir: Path, endpoint: str) -> Path:
    return secrets_dir / "endpoints" / f"{endpoint}.keys.json"


def new_key() -> str:
    return secrets.token_urlsafe(32)


def ensure_keys(secrets_dir: Path, endpoint: str) -> dict[str, str]:
    """Keys of `endpoint`, creating both the first time (a redeploy keeps them)."""
    path = key_file(secrets_dir, endpoint)
    if path.is_file():
        return read_keys(path)
    with locked(path):
        return _ensure(path)


def _ensure(path: Path) -> dict[str, str]:
    """The keys at `path`, created if missing; the caller holds the file's lock."""
    if path.is_file():
        return read_keys(path)
    keys = {slot: new_key() for slot in SLOTS}
    write_secret(path, json.dumps(keys).encode())
    return keys


def read_keys(path: Path) -> dict[str, str]:
    """Both keys from `path`; a file that is not a JSON object of two non-empty strings is a WorkspaceError."""
    try:
        keys = json.loads(read_secret(path))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _corrupt(path, f"not JSON: {exc}") from None
    if not isinstance(keys, dict) or not all(isinstance(keys.get(s), str) and keys[s] for s in SLOTS):
        raise _corrupt(path, f"expected {{{', '.join(repr(s) + ': KEY' for s in SLOTS)}}}")
    return {s: keys[s] for s in SLOTS}


def _corrupt(path: Path, why: str) -> WorkspaceError:
    return WorkspaceError(f"endpoint keys file {path} is corrupt ({why})",
                          "restore it from a backup, or delete it and redeploy the endpoint to get new keys")


def regenerate(secrets_dir: Path, endpoint: str, slot: str) -> dict[str, str]:
    """Replace the key in `slot` (the other one is kept); returns both keys as now stored."""
    if slot not in SLOTS:
        raise OpmlError(f"unknown key slot {slot!r}", "use primary or secondary")
    path = key_file(secrets_dir, endpoint)
    with locked(path):
        keys = _ensure(path)
        keys[slot] = new_key()
        write_secret(path, json.dumps(keys).encode())
    return keys


def delete_keys(secrets_dir: Path, endpoint: str) -> None:
    path = key_file(secrets_dir, endpoint)
    with locked(path):
        path.unlink(missing_ok=True)


class KeyChecker:
    """Checks `Authorization: Bearer <key>` against the current keys file.

    A keys file that turns unreadable (half-edited, truncated) does not take the endpoint down: the
    last good keys stay in force, the problem is logged once and kept in `error` until the file is
    readable again. A missing file means no key is valid. With `watched` (opml.serving.watch), the file is
    looked at only when it may have changed; without it, on every check.
    """

    def __init__(self, path: Path, watched: Watched | None = None) -> None:
        self.path = path
        self.error: str | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._keys: list[bytes] = []
        self._watched = watched
        self.refresh()

    def refresh(self) -> None:
        """Re-read the keys file if it changed (its mtime, inode or size): sets or clears `error`."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._keys, self._stamp, self.error = [], None, None
            return
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            keys = read_keys(self.path)
        except (WorkspaceError, OSError) as exc:
            error = exc.line() if isinstance(exc, WorkspaceError) else f"cannot read {self.path}: {exc}"
            if error != self.error:
                log.error("%s; still accepting the last good keys", error)
            self.error = error
            return
        if self.error is not None:
            log.warning("endpoint keys file %s is readable again", self.path)
        self._keys = [keys[s].encode() for s in SLOTS]
        self.error = None

    def check(self, authorization: bytes | None) -> bool:
        if self._watched is None or self._watched.stale():
            self.refresh()
        if not authorization or authorization[:7].lower() != b"bearer ":
            return False
        given = authorization[7:].strip()
        ok = False
        for key in self._keys:  # compare with every key so timing does not reveal which matched
            ok |= hmac.compare_digest(given, key)
        return ok
