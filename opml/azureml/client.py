"""Credentials and the MLClient for the configured workspace; Azure errors as one-line OpmlErrors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opml.config import AzureMLWorkspace
from opml.errors import AuthError, NotFoundError, OpmlError

ML_SCOPE = "https://ml.azure.com/.default"
ARM_SCOPE = "https://management.azure.com/.default"


def credential(cfg: AzureMLWorkspace, env: Mapping[str, str] | None = None) -> Any:
    """OPML_CLIENT_ID/_SECRET + azureml.tenant_id -> ClientSecretCredential; else DefaultAzureCredential."""
    env = os.environ if env is None else env
    client_id, secret = env.get("OPML_CLIENT_ID"), env.get("OPML_CLIENT_SECRET")
    if client_id and secret:
        if not cfg.tenant_id:
            raise AuthError("OPML_CLIENT_ID and OPML_CLIENT_SECRET are set but workspace.yaml has no azureml.tenant_id",
                            "add the service principal's tenant_id to the azureml: section")
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(cfg.tenant_id, client_id, secret)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@dataclass
class AzureML:
    """One workspace's client. `transport` is for tests (an in-process fake workspace); None in real use."""

    cfg: AzureMLWorkspace
    ml: Any  # azure.ai.ml.MLClient
    credential: Any
    transport: Any = None
    poll_seconds: float = 10.0
    _workspace: Any = field(default=None, repr=False)

    def workspace(self) -> Any:
        if self._workspace is None:
            with azure_errors("workspace", self.cfg.workspace_name):
                self._workspace = self.ml.workspaces.get(self.cfg.workspace_name)
        return self._workspace


def connect(cfg: AzureMLWorkspace, *, cred: Any = None, transport: Any = None, poll_seconds: float | None = None,
            polling_interval: float | None = None, show_progress: bool = True) -> AzureML:
    """An MLClient for the workspace in `cfg` (no request is sent until a stage asks for something).

    `poll_seconds` (default: azureml.poll_seconds) is how often a followed job is asked for its status.
    """
    import logging

    from azure.ai.ml import MLClient

    # The SDK logs INFO lines to stderr (e.g. "skipping validation" offline); opml prints its own progress.
    logging.getLogger("azure.ai.ml").setLevel(logging.WARNING)
    cred = cred if cred is not None else credential(cfg)
    kwargs: dict[str, Any] = {}
    if transport is not None:
        kwargs["transport"] = transport
    if polling_interval is not None:
        kwargs["polling_interval"] = polling_interval
    ml = MLClient(cred, cfg.subscription_id, cfg.resource_group, cfg.workspace_name, show_progress=show_progress,
                  **kwargs)
    return AzureML(cfg=cfg, ml=ml, credential=cred, transport=transport,
                   poll_seconds=cfg.poll_seconds if poll_seconds is None else poll_seconds)


@contextlib.contextmanager
def azure_errors(kind: str, name: str = "") -> Iterator[None]:
    """Turn the SDK's exceptions into one line naming what was asked for (secrets never appear in them)."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

    what = f"{kind} {name!r}" if name else kind
    try:
        yield
    except ResourceNotFoundError:
        raise NotFoundError(f"no {what} in the Azure ML workspace", "check the name, or list what exists") from None
    except ClientAuthenticationError as exc:
        raise AuthError(f"Azure authentication failed: {_first_line(exc)}",
                        "run `az login`, or set OPML_CLIENT_ID / OPML_CLIENT_SECRET and azureml.tenant_id") from None
    except HttpResponseError as exc:
        raise OpmlError(f"Azure ML refused the request for {what}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
