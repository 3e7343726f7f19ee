"""Where a dataset's bytes come from: a local path or an http(s) URL downloaded once into the cache."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from opml.errors import DataError

CHUNK = 1 << 16


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def local_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data file {p} not found", "check --path or OPML_DATA")
    if not p.is_file():
        raise DataError(f"{p} is not a file", "pass the path of a CSV file")
    return p


def download(url: str, cache_dir: Path, expected_sha256: str | None = None, *, progress: bool = True) -> Path:
    """Download `url` once into `cache_dir` (keyed by URL); verify sha256 when it is known.

    A cached copy is reused when its hash still matches; a mismatch is refused and nothing is kept.
    """
    if not url.startswith(("http://", "https://")):
        raise DataError(f"unsupported URL {url!r}", "use an http:// or https:// URL, or --path for a local file")
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    name = Path(url.split("?", 1)[0]).name or "data.csv"
    target = cache_dir / "downloads" / key / name
    if target.is_file() and (expected_sha256 is None or sha256_file(target) == expected_sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.{os.getpid()}.part")
    try:
        digest = _fetch(url, tmp, progress=progress)
        if expected_sha256 and digest != expected_sha256:
            raise DataError(
                f"sha256 mismatch for {url}: expected {expected_sha256[:12]}..., got {digest[:12]}...",
                "the source changed or the download is corrupt; fix dataset.sha256 or the URL",
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _fetch(url: str, dest: Path, *, progress: bool) -> str:
    import click
    import requests

    h = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=(10, 60)) as resp:
            if resp.status_code != 200:
                raise DataError(
                    f"cannot download {url}: HTTP {resp.status_code}",
                    "check the URL, or pass --path / set OPML_DATA to a local copy",
                )
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
        reason = type(exc).__name__
        raise DataError(
            f"cannot download {url}: unreachable ({reason})",
            "check the URL and network, or pass --path / set OPML_DATA to a local copy",
        ) from None
    return h.hexdigest()
