"""Which source a dataset comes from: the one rule shared by registration and pipeline step reuse.

Order: an explicit path, else an explicit URL, else $OPML_DATA, else automl.yaml's dataset.path, else
its dataset.url (with its sha256 when the URL is that one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opml.errors import OpmlError

if TYPE_CHECKING:
    from opml.config import DatasetSpec


@dataclass(frozen=True)
class Source:
    """A local file (not checked yet), or a URL with the sha256 expected of it; neither when none is given."""

    path: str | None = None
    url: str | None = None
    sha256: str | None = None


def resolve_source(spec: DatasetSpec | None, *, path: str | None = None, url: str | None = None,
                   sha256: str | None = None) -> Source:
    """Pick the dataset's source; an empty Source when nothing names one."""
    if path and url:
        raise OpmlError("--path and --url are mutually exclusive", "pass one of them")
    env_path = os.environ.get("OPML_DATA")
    if path or (not url and env_path):
        return Source(path=path or env_path)
    if not url and spec and spec.path:
        return Source(path=spec.path)
    url = url or (spec.url if spec else None)
    if sha256 is None and spec and url and url == spec.url:
        sha256 = spec.sha256
    return Source(url=url, sha256=sha256)
