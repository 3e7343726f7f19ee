"""The small ASGI toolkit the opml servers share (scoring endpoint, Swagger UI proxy, control plane).

Types, one HTTP error, `respond`, a size-limited body reader, lifespan handling, the listening socket
and the servers' log and uvicorn settings. Bad input answers 4xx with a JSON body {"error": "..."}.
Everything on the request path is a plain function: no allocation or await beyond what the reply needs.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from opml.errors import OpmlError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON: Headers = [(b"content-type", b"application/json")]

# the server processes' log lines: time (+00:00: the endpoint sets logging.Formatter.converter = time.gmtime),
# level, logger, message; uvicorn's and opml's loggers to stderr
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s.%(msecs)03d+00:00 %(levelname)s %(name)s: %(message)s",
                             "datefmt": "%Y-%m-%dT%H:%M:%S"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "opml": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


class HTTPError(Exception):
    """A request the server refuses: the HTTP status and a message naming the problem (and the fix)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(message: str) -> bytes:
    """The JSON body of an error reply: {"error": message}."""
    return orjson.dumps({"error": message})


async def respond(send: Send, status: int, body: bytes, headers: Headers, *, head: bool = False) -> None:
    """Send a whole reply: `headers` plus its content-length, then the body (none for a HEAD request)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it exceeds `limit` bytes (a client that disconnects ends it early)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def drain(receive: Receive) -> None:
    """Read and drop the request body (a refused request's), so the connection can be kept alive."""
    while (await receive()).get("more_body"):
        pass


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer the lifespan protocol: nothing to set up or tear down."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def bind(host: str, port: int, *, reuse_port: bool = True, backlog: int = 2048,
         fix: str | None = None) -> socket.socket:
    """A listening TCP socket for uvicorn, inheritable so forked workers share it.

    With `reuse_port` (SO_REUSEPORT) a new server process can start beside the old one on the same port
    (a redeploy); without it a port in use is refused. A refusal is an OpmlError naming the address.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OpmlError(f"cannot listen on {host}:{port} ({exc.strerror or exc})", fix) from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app: Any, **options: Any) -> Any:
    """A uvicorn.Server for `app` with the settings of the opml server processes (uvloop, httptools, no access
    log, no lifespan, 5 s keep-alive, LOG_CONFIG lines); `options` add to or override them."""
    import uvicorn

    settings = {"loop": "uvloop", "http": "httptools", "lifespan": "off", "access_log": False, "log_level": "info",
                "timeout_keep_alive": 5, "log_config": LOG_CONFIG} | options
    return uvicorn.Server(uvicorn.Config(app, **settings))
