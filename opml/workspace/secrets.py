"""Secret files under <root>/secrets: mode 0600, written atomically, updated under a lock."""

from __future__ import annotations

import os
import secrets as _secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from opml.errors import WorkspaceError
from opml.files import atomic_write

LOCK_TIMEOUT_S = 30.0


@contextmanager
def locked(path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a 0600 `.NAME.lock` beside it) for a read-modify-write.

    Other processes and threads that lock the same path wait; an atomic write alone would let two
    concurrent updates both read the old content and the second write undo the first.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = FileLock(path.with_name(f".{path.name}.lock"), timeout=timeout, mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        raise WorkspaceError(
            f"{path} stayed locked by another opml process for {timeout:.0f} s", "try again when it has finished"
        ) from None
    try:
        yield
    finally:
        lock.release()


def write_secret(path: Path, value: bytes) -> None:
    """Write `value` to `path` with mode 0600 via a temp file and rename."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, value, 0o600)


def read_secret(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise WorkspaceError(f"secret file {path} is missing", "run `opml auth` to recreate it") from None


def ensure_secret(path: Path, nbytes: int = 32) -> bytes:
    """Return the secret at `path`, creating a random one the first time (race-safe)."""
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
        write_secret(tmp, _secrets.token_bytes(nbytes))
        try:
            os.link(tmp, path)  # atomic and fails if another process got there first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return read_secret(path)
