"""The `data` stage: pick the source (flag, OPML_DATA, config), fetch it, register it."""

from __future__ import annotations

from pathlib import Path

from opml.config import DatasetSpec
from opml.data.registry import Dataset, latest, register
from opml.data.resolve import resolve_source
from opml.data.source import downloaded, local_file
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
    """Register a dataset from the source opml.data.resolve picks (explicit argument, $OPML_DATA, automl.yaml)."""
    source = resolve_source(spec, path=path, url=url, sha256=sha256)
    name = name or (spec.name if spec else None)
    label = label or (spec.label_column if spec else None)
    if not name or not label:
        raise OpmlError(
            "no dataset name or label column given",
            "pass --name and --label, or add a dataset: section to configs/automl.yaml",
        )
    if source.path:
        file = local_file(source.path)
        return register(ws, name, file, label=label, source=str(file.absolute()))
    if not source.url:
        raise OpmlError("no data source given", "pass --path or --url, set OPML_DATA, or set dataset.url")
    # a registration that fails leaves no download behind (one an earlier registration verified stays cached)
    with downloaded(source.url, ws.cache_dir, source.sha256, progress=progress) as file:
        return register(ws, name, Path(file), label=label, source=source.url, shown=source.url)


def training_dataset(ws: Workspace, spec: DatasetSpec | None, *, path: str | None = None, label: str | None = None,
                     progress: bool = True) -> Dataset:
    """The dataset a training run reads: `path` (or $OPML_DATA, or automl.yaml's dataset.path) registered first;
    else the latest registered version of the configured dataset, as Azure ML's jobs take a registered data asset
    (so `opml data register --path F` then `opml train` works offline); else registered from dataset.url."""
    source = resolve_source(spec, path=path)
    current = None if source.path or spec is None else latest(ws, spec.name)
    if current is not None and current.label == (label or spec.label_column):
        return current
    return register_dataset(ws, spec, path=path, label=label, progress=progress)[0]
