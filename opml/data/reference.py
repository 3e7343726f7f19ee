"""The project's reference dataset (bank marketing) for the tests and benchmarks, found or fetched once.

Looked for in $OPML_TEST_DATA (or another variable), then in <repo>/../shared/data/, then downloaded
from configs/automl.yaml's dataset.url (sha256-checked, as `opml data register` does) into the user
cache, where later calls find it without the network.
"""

from __future__ import annotations

import os
from pathlib import Path

from opml.errors import DataError, OpmlError

FILE = "bankmarketing_train.csv"


def user_cache() -> Path:
    """opml's cache folder for the user: $XDG_CACHE_HOME/opml, else ~/.cache/opml."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opml"


def reference_csv(repo: Path, *, env_var: str = "OPML_TEST_DATA", cache_dir: Path | None = None,
                  url: str | None = None, sha256: str | None = None, progress: bool = True) -> Path:
    """The bank-marketing CSV: $env_var, else <repo>/../shared/data/, else downloaded once into the cache.

    `url` and `sha256` default to <repo>/configs/automl.yaml's dataset. When all three fail this raises
    one DataError naming each place tried.
    """
    from opml.data.source import download

    given = os.environ.get(env_var)
    if given and Path(given).is_file():
        return Path(given)
    shared = repo.resolve().parent / "shared" / "data" / FILE
    if shared.is_file():
        return shared
    try:
        if url is None:
            from opml.config import automl_settings

            spec = automl_settings(repo / "configs").dataset
            url, sha256 = spec.url, sha256 or spec.sha256
        if not url:
            raise DataError(f"{repo / 'configs' / 'automl.yaml'} names no dataset.url")
        if not sha256:
            raise DataError(f"no sha256 known for {url}", "set dataset.sha256 in configs/automl.yaml")
        return download(url, cache_dir or user_cache(), sha256, progress=progress)
    except OpmlError as exc:
        reason = " ".join(exc.message.split())
    where = f"${env_var} names {given}, which is not a file" if given else f"${env_var} is unset"
    raise DataError(
        f"the bank-marketing dataset was not found: {where}, {shared} does not exist, and fetching it failed"
        f" ({reason})",
        f"set {env_var}=/path/to/{FILE}, put the file at {shared}, or allow the download",
    )
