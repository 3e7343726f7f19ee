"""`--dry-run`: the YAML files `az ml job create -f` / `az ml data create -f` take, written without contacting Azure."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from opml.azureml import automl
from opml.azureml import data as assets
from opml.azureml.data import MLTABLE_SUFFIX, mltable_text
from opml.config import AutoMLSettings, AzureMLWorkspace, DatasetSpec

DRY_RUN_DIR = "azureml"


def _write(path: Path, doc: dict[str, Any]) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def job_yaml(
    settings: AutoMLSettings,
    cfg: AzureMLWorkspace,
    out_dir: Path,
    *,
    data_name: str | None = None,
    data_version: str | None = None,
) -> Path:
    """<out_dir>/automl-job.yml: the AutoML job on azureml.compute over the MLTable asset (default: latest)."""
    name = (data_name or settings.dataset.name) + MLTABLE_SUFFIX
    ref = f"{name}:{data_version}" if data_version else f"{name}@latest"
    job = automl.build_job(settings, compute=cfg.compute, training_data=ref)
    doc = json.loads(json.dumps(job._to_dict()))  # the SDK's own YAML form (what job.dump() writes), plain dicts
    doc = {"$schema": "https://azuremlschemas.azureedge.net/latest/autoMLClassificationJob.schema.json"} | doc
    return _write(out_dir / "automl-job.yml", doc)


def data_files(spec: DatasetSpec | None, out_dir: Path, *, name: str | None = None, path: str | None = None,
               url: str | None = None, label: str | None = None, sha256: str | None = None) -> list[Path]:
    """`opml data register --dry-run`: the data YAML for the source `data register` would use."""
    name, label = assets.name_and_label(spec, name, label)
    file, link, _ = assets.source(spec, path, url, sha256)
    return data_yaml(name, str(file or link), out_dir, label=label)


def train_files(settings: AutoMLSettings, cfg: AzureMLWorkspace, out_dir: Path, *,
                data: str | None = None) -> list[Path]:
    """`opml train --dry-run`: the training data's YAML (as `train` registers it), then the AutoML job's."""
    files = data_files(settings.dataset, out_dir, path=data, label=settings.label)
    return [*files, job_yaml(settings, cfg, out_dir)]


def commands(files: list[Path], cfg: AzureMLWorkspace) -> list[str]:
    """The Azure CLI commands that create what `files` describe, in order."""
    where = f"-g {cfg.resource_group} -w {cfg.workspace_name}"
    return [f"az ml {'job' if f.name == 'automl-job.yml' else 'data'} create -f {f} {where}" for f in files]


def data_yaml(name: str, source: str, out_dir: Path, *, label: str, description: str | None = None) -> list[Path]:
    """<out_dir>/data-<name>.yml (uri_file) and <out_dir>/data-<name>-mltable.yml + its MLTable folder.

    A local CSV is copied into the MLTable folder (it is uploaded with it), as `data register` does.
    """
    local = not source.startswith(("http://", "https://", "azureml:"))
    src = str(Path(source).absolute()) if local else source
    files = [
        _write(
            out_dir / f"data-{name}.yml",
            {
                "$schema": "https://azuremlschemas.azureedge.net/latest/data.schema.json",
                "name": name,
                "type": "uri_file",
                "path": src,
                "description": description or f"opml dataset, label {label}",
                "tags": {"opml.label": label},
            },
        )
    ]
    folder = out_dir / f"{name}{MLTABLE_SUFFIX}"
    shutil.rmtree(folder, ignore_errors=True)  # the whole folder is uploaded: nothing left from an earlier run
    folder.mkdir(parents=True)
    if local:
        copy = folder / Path(src).name
        tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, copy)
    (folder / "MLTable").write_text(mltable_text(f"./{Path(src).name}" if local else src), encoding="utf-8")
    files.append(
        _write(
            out_dir / f"data-{name}{MLTABLE_SUFFIX}.yml",
            {
                "$schema": "https://azuremlschemas.azureedge.net/latest/data.schema.json",
                "name": name + MLTABLE_SUFFIX,
                "type": "mltable",
                "path": f"./{name}{MLTABLE_SUFFIX}",
                "tags": {"opml.label": label},
            },
        )
    )
    return files
