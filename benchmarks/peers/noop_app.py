"""The do-nothing endpoint: a bare ASGI app that reads the request body and answers a fixed small JSON.

No framework and no work beyond the protocol, so a server running it measures the stack itself (HTTP parsing,
the event loop, the ASGI layer). Served by opml's own supervisor (noop_supervised.py), granian and socketify.
"""

from __future__ import annotations

from typing import Any

from opml.asgi import lifespan

BODY = b'{"result":["no"]}'
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]}
REPLY = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        more = True
        while more:  # the whole body, as the endpoint reads it (a disconnect has no more_body either)
            more = (await receive()).get("more_body", False)
        await send(START)
        await send(REPLY)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
