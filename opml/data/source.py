"""Where a dataset's bytes come from: a local path or an http(s) URL downloaded once into the cache.

A download is written to a temporary name and renamed when complete (and its sha256 matches); whatever
fails, nothing half-written is left, and every failure is one DataError line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from opml.errors import DataError
from opml.naming import is_name

CHUNK = 1 << 16
TIMEOUT = (10.0, 60.0)  # seconds to connect, and at most between two bytes of the answer
FIX_URL = "check the URL, or pass --path / set OPML_DATA to a local copy"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def local_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    try:
        exists, is_file = p.exists(), p.is_file()
    except OSError as exc:  # e.g. a name too long
        raise DataError(f"cannot read {p}: {exc.strerror or exc}", "check --path or OPML_DATA") from None
    if not exists:
        raise DataError(f"data file {p} not found", "check --path or OPML_DATA")
    if not is_file:
        raise DataError(f"{p} is not a file", "pass the path of a CSV file")
    return p


def cache_path(url: str, cache_dir: Path) -> Path:
    """Where `url` is cached: downloads/<hash of the URL>/<its file name, or data.csv when that is no plain name>."""
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return cache_dir / "downloads" / key / (name if is_name(name) else "data.csv")


def download(url: str, cache_dir: Path, expected_sha256: str | None = None, *, progress: bool = True) -> Path:
    """Download `url` once into `cache_dir` (keyed by URL); verify sha256 when it is known.

    A cached copy is reused when its hash still matches; a mismatch is refused and nothing is kept.
    """
    return fetch(url, cache_dir, expected_sha256, progress=progress)[0]


@contextlib.contextmanager
def downloaded(url: str, cache_dir: Path, expected_sha256: str | None = None, *,
               progress: bool = True) -> Iterator[Path]:
    """download() for a block that uses the file: when the block fails, a file this call fetched is removed."""
    path, fresh = fetch(url, cache_dir, expected_sha256, progress=progress)
    try:
        yield path
    except BaseException:
        if fresh:
            discard(path)
        raise


def fetch(url: str, cache_dir: Path, expected_sha256: str | None = None, *,
          progress: bool = True) -> tuple[Path, bool]:
    """download(), also saying whether this call fetched the file (True) or found it cached (False)."""
    if not url.startswith(("http://", "https://")):
        raise DataError(f"unsupported URL {url!r}", "use an http:// or https:// URL, or --path for a local file")
    target = cache_path(url, cache_dir)
    try:
        if target.is_file() and (expected_sha256 is None or sha256_file(target) == expected_sha256):
            return target, False
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot use the download cache {target.parent}: {exc.strerror or exc}",
                        "make the workspace's cache folder writable") from None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        digest = _fetch(url, tmp, progress=progress)
        if expected_sha256 and digest != expected_sha256:
            raise DataError(
                f"sha256 mismatch for {url}: expected {expected_sha256[:12]}..., got {digest[:12]}...",
                "the source changed or the download is corrupt; fix dataset.sha256 or the URL",
            )
        os.replace(tmp, target)
    except OSError as exc:
        discard(target)
        raise DataError(f"cannot save the download of {url} in {target.parent}: {exc.strerror or exc}",
                        "free some disk space, or pass --path / set OPML_DATA to a local copy") from None
    except BaseException:
        discard(target)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return target, True


def discard(path: Path) -> None:
    """Remove a cached download and its (then empty) folder."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only when empty: another download may be under way in it


def _fetch(url: str, dest: Path, *, progress: bool) -> str:
    import click
    import requests

    h = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT) as resp:
            if resp.status_code != 200:
                raise DataError(f"cannot download {url}: HTTP {resp.status_code}", FIX_URL)
            total = int(resp.headers.get("Content-Length") or 0) or None
            show = progress and sys.stderr.isatty()
            with dest.open("wb") as out, click.progressbar(
                length=total, label=f"Downloading {Path(dest.name).stem.lstrip('.')}", file=sys.stderr,
                show_pos=total is None, hidden=not show,
            ) as bar:
                for block in resp.iter_content(CHUNK):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
    except requests.RequestException as exc:
        raise DataError(
            f"cannot download {url}: unreachable ({why(exc)})",
            "check the URL and network, or pass --path / set OPML_DATA to a local copy",
        ) from None
    except ValueError as exc:  # e.g. a bad Content-Length
        raise DataError(f"cannot download {url}: bad answer ({exc})", FIX_URL) from None
    return h.hexdigest()


def why(exc: BaseException) -> str:
    """A few words on why a request failed, from the exception and the ones it wraps."""
    import socket
    import ssl

    import requests

    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return "invalid URL"
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args[:1]]
    for e in seen:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, socket.gaierror):
            return "host not found"
        if isinstance(e, ssl.SSLError):
            return "TLS error"
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in seen):
        return "timed out"
    if any(isinstance(e, ConnectionResetError) for e in seen):
        return "connection reset"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken during the download"
    return type(exc).__name__
