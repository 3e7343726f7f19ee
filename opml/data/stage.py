"""The `data` stage: pick the source (flag, OPML_DATA, config), fetch it, register it."""

from __future__ import annotations

import os
from pathlib import Path

from opml.config import DatasetSpec
from opml.data.registry import Dataset, register
from opml.data.source import download, local_file
from opml.errors import OpmlError
from opml.workspace.workspace import Workspace


def register_dataset(
    ws: Workspace,
    spec: DatasetSpec | None,
    *,
    name: str | None = None,
    path: str | None = None,
    url: str | None = None,
    label: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> tuple[Dataset, bool]:
    """Register a dataset; explicit arguments win over $OPML_DATA, which wins over automl.yaml."""
    if path and url:
        raise OpmlError("--path and --url are mutually exclusive", "pass one of them")
    name = name or (spec.name if spec else None)
    label = label or (spec.label_column if spec else None)
    if not name or not label:
        raise OpmlError(
            "no dataset name or label column given",
            "pass --name and --label, or add a dataset: section to configs/automl.yaml",
        )
    env_path = os.environ.get("OPML_DATA")
    if path or (not url and env_path):
        file = local_file(path or env_path)  # type: ignore[arg-type]
        return register(ws, name, file, label=label, source=str(file.absolute()))
    if not url and spec and spec.path:
        file = local_file(spec.path)
        return register(ws, name, file, label=label, source=str(file.absolute()))
    url = url or (spec.url if spec else None)
    if not url:
        raise OpmlError("no data source given", "pass --path or --url, set OPML_DATA, or set dataset.url")
    if sha256 is None and spec and url == spec.url:
        sha256 = spec.sha256
    file = download(url, ws.cache_dir, sha256, progress=progress)
    return register(ws, name, Path(file), label=label, source=url)
