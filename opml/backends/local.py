"""The local backend: the embedded workspace's stage functions (opml.workspace, opml.data, opml.training)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opml.backends import DryRun, Site, Trained
from opml.errors import OpmlError

if TYPE_CHECKING:
    from opml.config import AutoMLSettings


def azure_only(what: str) -> OpmlError:
    return OpmlError(f"{what} is for the azureml backend", "set backend: azureml in workspace.yaml or pass "
                     "--backend azureml (with an azureml: section)")

@dataclass
class LocalAuth:
    site: Site

    def summary(self, *, create_compute: bool = False) -> dict[str, Any]:
        if create_compute:
            raise azure_only("--create-compute")
        from opml.workspace.identity import check_secret

        ws = self.site.workspace(create=True)
        summary = ws.summary()
        client_id, secret = os.environ.get("OPML_CLIENT_ID"), os.environ.get("OPML_CLIENT_SECRET")
        if client_id and secret:
            summary["authenticated_as"] = check_secret(ws, client_id, secret).name
        return summary

    def token(self, client_id: str | None, expires_in: int, prompt: Callable[[], str]) -> dict[str, Any]:
        if client_id is None:
            raise OpmlError("missing --client-id", "pass --client-id or set OPML_CLIENT_ID")
        from opml.workspace.identity import issue_token, read_client_secret

        secret = read_client_secret(prompt)
        return issue_token(self.site.workspace(), client_id, secret, expires_in)

    def create_principal(self, name: str) -> Any:
        from opml.workspace.identity import create_principal

        return create_principal(self.site.workspace(create=True), name)

    def list_principals(self) -> list[Any]:
        from opml.workspace.identity import list_principals

        return list_principals(self.site.workspace())

    def delete_principal(self, name: str) -> Any:
        from opml.workspace.identity import delete_principal

        return delete_principal(self.site.workspace(), name)


@dataclass
class LocalData:
    site: Site

    def register(self, *, name: str | None, path: str | None, url: str | None, label: str | None,
                 sha256: str | None, progress: bool) -> tuple[Any, bool]:
        from opml.data.stage import register_dataset

        ws = self.site.workspace()
        return register_dataset(ws, self.site.dataset_spec(), name=name, path=path, url=url, label=label,
                                sha256=sha256, progress=progress)

    def dry_run(self, **_: Any) -> DryRun:
        raise azure_only("--dry-run (Azure ML data YAML)")

    def list(self) -> list[Any]:
        from opml.data.registry import list_datasets

        return list_datasets(self.site.workspace())

    def get(self, ref: str) -> Any:
        from opml.data.registry import get_dataset

        return get_dataset(self.site.workspace(), ref)


@dataclass
class LocalTrain:
    site: Site

    def train(self, settings: AutoMLSettings, *, data: str | None, progress: bool, no_wait: bool) -> Trained:
        if no_wait:
            raise OpmlError("--no-wait is for the azureml backend: local training runs in this process",
                            "drop --no-wait, or pass --backend azureml")
        from opml.training.progress import TrialProgress
        from opml.training.stage import train

        ws = self.site.workspace()
        bar = TrialProgress(settings.primary_metric, settings.experiment_timeout_seconds, settings.max_trials)
        try:
            result = train(ws, settings, data=data, on_trial=bar.update, progress=progress)
        finally:
            bar.close()
        return Trained(run_id=result.run_id, status="Completed", dataset=result.dataset.ref, model=result.model.ref,
                       summary=result.summary)

    def dry_run(self, settings: AutoMLSettings, **_: Any) -> DryRun:
        raise azure_only("--dry-run (an Azure ML job YAML)")

    def list_runs(self, experiment: str | None) -> list[Any]:
        from opml.training.runs import list_runs

        return list_runs(self.site.workspace(), experiment)

    def get_run(self, run_id: str) -> Any:
        from opml.training.runs import get_run

        return get_run(self.site.workspace(), run_id)

    def list_models(self) -> list[Any]:
        from opml.training.models import list_models

        return list_models(self.site.workspace())

    def get_model(self, ref: str) -> Any:
        from opml.training.models import get_model

        return get_model(self.site.workspace(), ref)

    def predict(self, ref: str, data: str, out: str) -> dict[str, Any]:
        from opml.training.predict import predict_csv

        return predict_csv(self.site.workspace(), ref, data, out)
