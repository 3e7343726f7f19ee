"""An azure-core HttpTransport that answers from a FakeWorkspace in process (no sockets)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from requests.structures import CaseInsensitiveDict

from tests.azure_fake.workspace import FakeWorkspace


class _Response(HttpResponseImpl):
    def __init__(self, request: Any, status: int, headers: dict[str, str], content: bytes) -> None:
        super().__init__(
            request=request,
            internal_response=None,
            status_code=status,
            headers=CaseInsensitiveDict(headers),
            reason="OK" if status < 400 else "Error",
            content_type=headers.get("Content-Type", "application/json"),
            stream_download_generator=None,
        )
        self._content = content
        self._is_closed = True
        self._is_stream_consumed = True

    def body(self) -> bytes:
        return self._content


class FakeTransport(HttpTransport):
    """Send every request to `workspace.handle`; a body that fails the schema fails the call loudly."""

    def __init__(self, workspace: FakeWorkspace) -> None:
        self.workspace = workspace

    def __enter__(self) -> FakeTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        return None

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send(self, request: Any, **kwargs: Any) -> Any:
        body = request.body if hasattr(request, "body") else request.content
        if isinstance(body, str):
            body = body.encode()
        elif body is not None and not isinstance(body, bytes):
            body = b"".join(body) if hasattr(body, "__iter__") else body.read()
        reply = self.workspace.handle(request.method, request.url, dict(request.headers), body)
        headers = {"Content-Type": "application/json; charset=utf-8"} | reply.headers
        content = reply.content()
        headers.setdefault("Content-Length", str(len(content)))
        return _Response(request, reply.status, headers, content)


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


class FakeCredential:
    """A TokenCredential with JWT-shaped tokens (the SDK decodes some: aud must match the scope)."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        aud = scopes[0].removesuffix(".default") if scopes else "https://management.azure.com/"
        exp = int(time.time()) + 3600
        claims = {
            "aud": aud,
            "exp": exp,
            "iss": "https://sts.windows.net/fake/",
            "oid": "00000000-0000-0000-0000-0000000000aa",
            "tid": "00000000-0000-0000-0000-0000000000bb",
            "upn": "opml@example.invalid",
        }
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.sig"
        return AccessToken(token, exp)
