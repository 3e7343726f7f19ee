"""The backend seam: the stage functions the commands call, on the backend the user picked.

`open_backend(site, name)` returns a Backend with one object per stage (auth, data, train: runs and models
included); the CLI's `Ctx.backend()` calls it with itself as the site.
`local` is the embedded workspace (today's stage packages); `azureml` is opml.azureml (Azure ML SDK v2).
Both return objects with the local dataclasses' fields (a field a backend cannot fill is None), so a command
prints them one way. Stage packages and Azure are imported inside the methods, never at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opml.config import AutoMLSettings, DatasetSpec
    from opml.workspace.workspace import Workspace

__all__ = ["AuthStage", "Backend", "DataStage", "DryRun", "Site", "TrainStage", "Trained", "open_backend"]

LOCAL_TOKEN_TTL = 3600  # `opml auth token --expires-in` default (the local backend's tokens)


@dataclass(frozen=True)
class Trained:
    """What `opml train` prints, from either backend."""

    run_id: str
    status: str
    dataset: str
    model: str | None
    summary: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific keys after the common ones

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "dataset": self.dataset, "model": self.model} \
            | self.summary | self.extra


class Site(Protocol):
    """Where the stages run from: the configs folder, the embedded workspace and automl.yaml's dataset."""

    configs: Path

    def workspace(self, *, create: bool = False) -> Workspace: ...
    def dataset_spec(self) -> DatasetSpec | None: ...


class AuthStage(Protocol):
    def summary(self, *, create_compute: bool = False) -> dict[str, Any]: ...
    def token(self, client_id: str | None, expires_in: int, prompt: Callable[[], str]) -> dict[str, Any]: ...
    def create_principal(self, name: str) -> Any: ...
    def list_principals(self) -> list[Any]: ...
    def delete_principal(self, name: str) -> Any: ...


class DataStage(Protocol):
    """Sources and names default to automl.yaml's dataset: section."""

    def register(self, *, name: str | None, path: str | None, url: str | None, label: str | None,
                 sha256: str | None, progress: bool) -> tuple[Any, bool]: ...
    def dry_run(self, *, name: str | None, path: str | None, url: str | None, label: str | None,
                sha256: str | None) -> DryRun: ...
    def list(self) -> list[Any]: ...
    def get(self, ref: str) -> Any: ...


class TrainStage(Protocol):
    def train(self, settings: AutoMLSettings, *, data: str | None, progress: bool, no_wait: bool) -> Trained: ...
    def dry_run(self, settings: AutoMLSettings, *, data: str | None) -> DryRun: ...
    def list_runs(self, experiment: str | None) -> list[Any]: ...
    def get_run(self, run_id: str) -> Any: ...
    def list_models(self) -> list[Any]: ...
    def get_model(self, ref: str) -> Any: ...
    def predict(self, ref: str, data: str, out: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DryRun:
    """Files `--dry-run` wrote and the Azure CLI commands that would create them."""

    files: list[Path]
    commands: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": True, "files": [str(f) for f in self.files], "commands": self.commands}


@dataclass(frozen=True)
class Backend:
    name: str
    auth: AuthStage
    data: DataStage
    train: TrainStage


def open_backend(site: Site, name: str) -> Backend:
    """The stages of backend `name` ('local' or 'azureml') for the configs of `site`."""
    if name == "azureml":
        from opml.backends.azure import open_azure

        return open_azure(site)
    from opml.backends.local import LocalAuth, LocalData, LocalTrain

    return Backend(name, LocalAuth(site), LocalData(site), LocalTrain(site))
