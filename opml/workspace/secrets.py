"""Secret files under <root>/secrets: mode 0600, written atomically."""

from __future__ import annotations

import os
import secrets as _secrets
from pathlib import Path

from opml.errors import WorkspaceError
from opml.files import atomic_write


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
