"""The do-nothing endpoint: a bare ASGI app that reads the request body and answers a fixed small JSON.

No framework and no work beyond the protocol, so a server running it measures the stack itself (HTTP parsing,
the event loop, the ASGI layer). Served by opml's own supervisor (noop_supervised.py), granian and socketify.
`direct_app` is the same app with POST /score as a direct route of opml's protocol (opml.asgi.protocol_class), as
the scoring endpoint has it: the floor of opml's stack without the ASGI layer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from opml.asgi import lifespan

BODY = b'{"result":["no"]}'
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]}
REPLY = {"type": "http.response.body", "body": BODY}
JSON = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        more = True
        while more:  # the whole body, as the endpoint reads it (a disconnect has no more_body either)
            more = (await receive()).get("more_body", False)
        await send(START)
        await send(REPLY)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)


def reply_now(headers: Any, body: bytes, client: Any) -> tuple[int, bytes, Any]:
    """POST /score as a direct route: the fixed reply."""
    return 200, BODY, JSON


class DirectApp:
    """The do-nothing app, with POST /score (bodies up to 1 MiB, as the endpoint's) answered as a direct route."""

    direct_routes: ClassVar[dict] = {b"/score": reply_now}
    direct_max_bytes = 1_048_576

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app(scope, receive, send)


direct_app = DirectApp()
