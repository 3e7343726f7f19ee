"""`opml data` on Azure ML: a uri_file asset for the CSV and the MLTable asset AutoML reads."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from opml.azureml.client import AzureML, azure_errors
from opml.config import DatasetSpec
from opml.errors import OpmlError

MLTABLE_SUFFIX = "-mltable"


@dataclass(frozen=True)
class AzureDataset:
    """The same fields as opml.data.registry.Dataset; what Azure cannot tell is None."""

    name: str
    version: int
    sha256: str | None  # of the uploaded file; None for a URL (Azure reads it, opml does not)
    source: str
    path: str  # the asset's azureml:// or https:// URI
    label: str | None
    profile: dict[str, Any] | None  # opml's profile when the source is a local file
    created_at: str | None
    mltable: str | None = None  # NAME:VERSION of the MLTable asset AutoML trains on

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ref": self.ref}


def mltable_text(csv: str) -> str:
    """An MLTable file reading one delimited file (local relative path or URL)."""
    key = "file"
    return (f"paths:\n  - {key}: {csv}\ntransformations:\n  - read_delimited_files:\n"
            "      delimiter: ','\n      header: all_files_same_headers\n      encoding: utf8\n")


def name_and_label(spec: DatasetSpec | None, name: str | None, label: str | None) -> tuple[str, str]:
    """--name / --label, else automl.yaml's dataset.name / dataset.label_column."""
    name = name or (spec.name if spec else None)
    label = label or (spec.label_column if spec else None)
    if not name or not label:
        raise OpmlError("no dataset name or label column given",
                        "pass --name and --label, or add a dataset: section to configs/automl.yaml")
    return name, label


def source(spec: DatasetSpec | None, path: str | None, url: str | None,
           sha256: str | None) -> tuple[Path | None, str | None, str | None]:
    """(local file, None, None) or (None, URL, expected sha256), by the local backend's rule (opml.data.resolve)."""
    from opml.data.resolve import resolve_source

    src = resolve_source(spec, path=path, url=url, sha256=sha256)
    if src.path:
        from opml.data.source import local_file

        return local_file(src.path), None, None
    if src.url:
        return None, src.url, src.sha256
    raise OpmlError("no data source given", "pass --path or --url, set OPML_DATA, or set dataset.url")


def register_dataset(az: AzureML, spec: DatasetSpec | None, *, name: str | None = None, path: str | None = None,
                     url: str | None = None, label: str | None = None, sha256: str | None = None,
                     progress: bool = True) -> tuple[AzureDataset, bool]:
    """Register NAME (uri_file) and NAME-mltable (mltable) from a local CSV (uploaded) or a URL.

    Returns (dataset, created); created is False when the latest version already holds the same local file (or
    the same URL with the same expected sha256).
    """
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Data

    name, label = name_and_label(spec, name, label)
    file, link, sha256 = source(spec, path, url, sha256)
    tags = {"opml.label": label}
    prof = None
    if file is not None:
        from opml.data.profile import check_label, profile, read_csv
        from opml.data.source import sha256_file

        sha256 = sha256_file(file)
        df = read_csv(file)
        check_label(df, label, file)
        prof = profile(df, label) | {"sha256": sha256, "bytes": file.stat().st_size}
        tags |= {"opml.source": str(file.absolute()), "opml.rows": str(prof["rows"]),
                 "opml.columns": str(prof["columns"])}
        same = _latest_with(az, name, {"opml.sha256": sha256})
        if same is not None:
            return _dataset(same, _latest_ref(az, name + MLTABLE_SUFFIX), prof), False
        tags["opml.sha256"] = sha256
    else:  # Azure reads the URL when a job runs: opml never sees the bytes, so the hash is only what was expected
        tags["opml.source"] = str(link)
        if sha256:  # pinned content: the same URL and hash as the latest version is that version
            tags["opml.expected_sha256"] = sha256
            same = _latest_with(az, name, {"opml.source": str(link), "opml.expected_sha256": sha256})
            if same is not None:
                return _dataset(same, _latest_ref(az, name + MLTABLE_SUFFIX), None), False
    with azure_errors("data asset", name):
        asset = az.ml.data.create_or_update(Data(name=name, type=AssetTypes.URI_FILE, path=str(file or link),
                                                 description=f"opml dataset, label {label}", tags=tags))
        with tempfile.TemporaryDirectory(prefix="opml-mltable-") as tmp:
            folder = Path(tmp)
            if file is not None:
                (folder / file.name).write_bytes(file.read_bytes())
                (folder / "MLTable").write_text(mltable_text(f"./{file.name}"))
            else:
                (folder / "MLTable").write_text(mltable_text(str(link)))
            table = az.ml.data.create_or_update(Data(name=name + MLTABLE_SUFFIX, type=AssetTypes.MLTABLE,
                                                     path=str(folder), tags=tags | {"opml.uri_file": asset.id or ""}))
    return _dataset(asset, f"{table.name}:{table.version}", prof), True


def _latest_with(az: AzureML, name: str, tags: dict[str, str]) -> Any:
    """The latest version of `name` when it carries all of `tags`, else None."""
    from azure.core.exceptions import ResourceNotFoundError

    with azure_errors("data asset", name):
        try:
            latest = next(iter(az.ml.data.list(name=name)), None)
        except ResourceNotFoundError:
            return None
    if latest is not None and all((latest.tags or {}).get(k) == v for k, v in tags.items()):
        return latest
    return None


def _latest_ref(az: AzureML, name: str) -> str | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        latest = next(iter(az.ml.data.list(name=name)), None)
    except ResourceNotFoundError:
        return None
    return f"{latest.name}:{latest.version}" if latest else None


def _dataset(asset: Any, mltable: str | None, prof: dict[str, Any] | None) -> AzureDataset:
    tags = asset.tags or {}
    created = (asset.creation_context.created_at if asset.creation_context else None)
    return AzureDataset(name=asset.name, version=int(asset.version), sha256=tags.get("opml.sha256"),
                        source=tags.get("opml.source", asset.path), path=asset.path, label=tags.get("opml.label"),
                        profile=prof, created_at=str(created) if created else None, mltable=mltable)


def list_datasets(az: AzureML) -> list[AzureDataset]:
    """Every version of every uri_file asset opml registered (MLTable companions are listed as `mltable`)."""
    out = []
    with azure_errors("data assets"):
        names = sorted(d.name for d in az.ml.data.list() if not d.name.endswith(MLTABLE_SUFFIX))
        for name in names:
            versions = sorted(az.ml.data.list(name=name), key=lambda d: -int(d.version))
            out.extend(_dataset(v, None, None) for v in versions)
    return out


def get_dataset(az: AzureML, ref: str) -> AzureDataset:
    """NAME or NAME:VERSION; the local profile is added when the asset came from a file that is still here."""
    from opml.data.registry import parse_ref

    name, version = parse_ref(ref)
    with azure_errors("data asset", ref):
        asset = az.ml.data.get(name, version=str(version)) if version else az.ml.data.get(name, label="latest")
    prof = None
    source = Path((asset.tags or {}).get("opml.source", ""))
    label = (asset.tags or {}).get("opml.label")
    if label and source.is_absolute() and source.is_file():
        from opml.data.profile import profile, read_csv

        prof = profile(read_csv(source), label)
    return _dataset(asset, None, prof)
