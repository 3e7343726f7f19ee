"""The azureml backend: the same stages on an Azure ML workspace through opml.azureml (SDK v2, imported lazily)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opml.backends import LOCAL_TOKEN_TTL, Backend, DryRun, Site, Trained
from opml.errors import OpmlError

if TYPE_CHECKING:
    from opml.azureml.client import AzureML
    from opml.config import AutoMLSettings, AzureMLWorkspace

DRY_RUN_DIR = "azureml"  # `--dry-run` writes its YAML here, next to configs/


def open_azure(site: Site) -> Backend:
    from opml.config import workspace_config

    az = _Azure(site, workspace_config(site.configs).azureml)  # select_backend checked the section is there
    return Backend("azureml", AzureAuth(az), AzureData(az), AzureTrain(az))

@dataclass
class _Azure:
    """The configured workspace; connects (credential + MLClient, no request) on first use."""

    site: Site
    cfg: AzureMLWorkspace
    _az: AzureML | None = None

    def client(self, *, progress: bool = False) -> AzureML:
        if self._az is None:
            from opml.azureml import client

            self._az = client.connect(self.cfg, show_progress=progress)
        return self._az

    def dry_run_dir(self) -> Path:
        return self.site.configs.absolute().parent / DRY_RUN_DIR


@dataclass
class AzureAuth:
    az: _Azure

    def summary(self, *, create_compute: bool = False) -> dict[str, Any]:
        from opml.azureml import auth

        return auth.summary(self.az.client(), create_compute=create_compute)

    def token(self, client_id: str | None, expires_in: int, prompt: Callable[[], str]) -> dict[str, Any]:
        if client_id and client_id != os.environ.get("OPML_CLIENT_ID"):
            raise OpmlError("on the azureml backend the service principal comes from the environment",
                            "set OPML_CLIENT_ID and OPML_CLIENT_SECRET (and azureml.tenant_id) instead of --client-id")
        if expires_in != LOCAL_TOKEN_TTL:
            raise OpmlError("--expires-in is for the local backend: Entra ID sets an Azure token's lifetime")
        from opml.azureml import auth

        return auth.token(self.az.client())

    def _principals(self) -> OpmlError:
        from opml.azureml import auth

        return auth.principals_unsupported()

    def create_principal(self, name: str) -> Any:
        raise self._principals()

    def list_principals(self) -> list[Any]:
        raise self._principals()

    def delete_principal(self, name: str) -> Any:
        raise self._principals()


@dataclass
class AzureData:
    az: _Azure

    def register(self, *, name: str | None, path: str | None, url: str | None, label: str | None,
                 sha256: str | None, progress: bool) -> tuple[Any, bool]:
        from opml.azureml import data

        spec = self.az.site.dataset_spec()
        return data.register_dataset(self.az.client(progress=progress), spec, name=name, path=path, url=url,
                                     label=label, sha256=sha256, progress=progress)

    def dry_run(self, *, name: str | None, path: str | None, url: str | None, label: str | None,
                sha256: str | None) -> DryRun:
        from opml.azureml import dryrun

        files = dryrun.data_files(self.az.site.dataset_spec(), self.az.dry_run_dir(), name=name, path=path, url=url,
                                  label=label, sha256=sha256)
        return DryRun(files, dryrun.commands(files, self.az.cfg))

    def list(self) -> list[Any]:
        from opml.azureml import data

        return data.list_datasets(self.az.client())

    def get(self, ref: str) -> Any:
        from opml.azureml import data

        return data.get_dataset(self.az.client(), ref)


@dataclass
class AzureTrain:
    az: _Azure

    def train(self, settings: AutoMLSettings, *, data: str | None, progress: bool, no_wait: bool) -> Trained:
        from opml.azureml import automl, train
        from opml.azureml.progress import JobProgress

        automl.azure_metric(settings.primary_metric)  # a one-line error before any request
        print(f"note: {automl.unmapped_note(settings)}", file=sys.stderr)
        bar = JobProgress(settings.primary_metric)
        result = train.train(self.az.client(progress=progress), settings, data=data, on_trial=bar.child,
                             on_status=bar.status, on_submit=bar.submitted, progress=progress, no_wait=no_wait)
        return Trained(run_id=result.run_id, status=result.status, dataset=result.dataset.ref,
                       model=result.model.ref if result.model else None, summary=result.summary,
                       extra={"studio_url": result.studio_url})

    def dry_run(self, settings: AutoMLSettings, *, data: str | None) -> DryRun:
        from opml.azureml import automl, dryrun

        automl.azure_metric(settings.primary_metric)
        files = dryrun.train_files(settings, self.az.cfg, self.az.dry_run_dir(), data=data)
        return DryRun(files, dryrun.commands(files, self.az.cfg))

    def list_runs(self, experiment: str | None) -> list[Any]:
        from opml.azureml import train

        return train.list_runs(self.az.client(), experiment)

    def get_run(self, run_id: str) -> Any:
        from opml.azureml import train

        return train.get_run(self.az.client(), run_id)

    def list_models(self) -> list[Any]:
        from opml.azureml import models

        return models.list_models(self.az.client())

    def get_model(self, ref: str) -> Any:
        from opml.azureml import models

        return models.get_model(self.az.client(), ref)

    def predict(self, ref: str, data: str, out: str) -> dict[str, Any]:
        from opml.azureml import models

        m = models.get_model(self.az.client(), ref)
        raise models.not_loadable(m)
