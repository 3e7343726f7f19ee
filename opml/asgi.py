"""The small ASGI toolkit the opml servers share (scoring endpoint, Swagger UI proxy, control plane).

Types, one HTTP error, `respond`, a size-limited body reader, lifespan handling, the listening socket
and the servers' log and uvicorn settings, including the limits every server process puts on its clients
(LIMITS). Bad input answers 4xx with a JSON body {"error": "..."}.
Everything on the request path is a plain function: no allocation or await beyond what the reply needs,
and a reply leaves in one write (head and body together).
"""

from __future__ import annotations

import dataclasses
import functools
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


async def drain(receive: Receive, limit: int) -> bool:
    """Read and drop up to `limit` bytes of a refused request's body, so the connection can be kept alive.

    False if the body is longer: the reply should then close the connection (CLOSE) rather than read the rest.
    """
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            return True
        if size > limit:
            return False


CLOSE: Headers = [(b"connection", b"close")]


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer the lifespan protocol: nothing to set up or tear down."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def bind(host: str, port: int, *, reuse_port: bool = True, backlog: int = 2048, listen: bool = True,
         fix: str | None = None) -> socket.socket:
    """A listening TCP socket for uvicorn, inheritable so forked workers share it.

    With `reuse_port` (SO_REUSEPORT) a new server process can start beside the old one on the same port
    (a redeploy); without it a port in use is refused. A refusal is an OpmlError naming the address.
    With `listen=False` the socket is only bound: it takes no connection until a server listens on it
    (uvicorn does when it starts serving), so nothing queues for a server that is still loading.
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
    if listen:
        sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one opml server process accepts from its clients (uvicorn settings plus opml's HTTP protocol checks)."""

    max_head_bytes: int = 16_384  # request line + headers; more: 431, connection closed (the rest never read)
    max_headers: int = 100  # header fields; more: 431
    head_timeout: float = 5.0  # connection open (or a request's first byte) -> end of its headers; then 408/close
    body_timeout: float = 5.0  # end of the headers -> end of the body; then 408, connection closed
    keep_alive: int = 5  # an idle keep-alive connection is closed after this many seconds
    concurrency: int = 512  # open connections (or requests in progress) per process; beyond: 503 + Retry-After
    backlog: int = 2048  # connections waiting to be accepted (the kernel caps it at net.core.somaxconn)
    drain_bytes: int = 65_536  # of a refused request's body, read to keep the connection; longer: closed

    def replace(self, **changes: Any) -> Limits:
        return dataclasses.replace(self, **changes)


LIMITS = Limits()
SWEEP_S = 0.25  # how often a server checks its connections' read deadlines


def uvicorn_server(app: Any, *, limits: Limits = LIMITS, on_started: Callable[[], None] | None = None,
                   **options: Any) -> Any:
    """A uvicorn.Server for `app` with the settings of the opml server processes: uvloop, opml's httptools
    protocol enforcing `limits`, no websockets, no access log, no lifespan, LOG_CONFIG lines. `options` add to
    or override them; `on_started` is called once the server listens."""
    import uvicorn

    # the protocol checks limits.concurrency itself (uvicorn's limit_concurrency answers plain text)
    # proxy_headers off: a client's X-Forwarded-For is not trusted, so the client logged is the TCP peer on
    # every path, direct routes included
    settings = {"loop": "uvloop", "http": protocol_class(limits), "ws": "none", "lifespan": "off",
                "proxy_headers": False, "access_log": False, "log_level": "info",
                "timeout_keep_alive": limits.keep_alive, "backlog": limits.backlog, "log_config": LOG_CONFIG} | options
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    if on_started is not None:
        startup = server.startup

        async def startup_then_notify(sockets: Any = None) -> None:
            await startup(sockets=sockets)
            if server.started:
                on_started()

        server.startup = startup_then_notify
    return server


@functools.cache
def protocol_class(limits: Limits = LIMITS) -> type:
    """uvicorn's httptools protocol with `limits` enforced: head size, header count, read timeouts, concurrency;
    and the app's direct routes.

    A refusal is a JSON reply with `connection: close` (408, 431, 503 with Retry-After), then the connection
    closes. The checks cost a few attribute operations per request: read deadlines are plain numbers, checked
    by one sweep per server process every SWEEP_S seconds, not a timer per request.

    Direct routes: an app may map exact request targets to plain functions in `app.direct_routes` (with
    `app.direct_max_bytes`). A POST to one of them, with a Content-Length of at most that and
    limits.drain_bytes, no Expect: 100-continue and no request ahead of it still being answered, is not turned
    into an ASGI cycle: its body is collected as it arrives and `route(headers, body, client)` returns
    (status, body, headers); the reply (uvicorn's date and server headers, content-length, connection: close
    when the request did not keep the connection) leaves in one write. The ASGI layer costs about as much as a
    do-nothing app's whole request (a task, a scope, messages, header checks: measured by benchmarks/serving.py's
    do-nothing rows), so the hot route skips it. Everything else, and any request outside those bounds, goes
    through the ASGI app as before. A route that raises answers 500 {"error": ...} and closes the connection.
    """
    import httptools
    from uvicorn.logging import TRACE_LOG_LEVEL
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl

    base = HttpToolsProtocol
    idle, head, body = 0, 1, 2  # what the connection waits for: a request, the rest of its head, its body
    max_head = limits.max_head_bytes
    drain_bytes = limits.drain_bytes
    busy = f"server busy: at the limit of {limits.concurrency} open connections; retry shortly"

    class Refused(Exception):
        def __init__(self, status: int, message: str, headers: bytes = b"") -> None:
            super().__init__(message)
            self.status, self.message, self.headers = status, message, headers

    def address(transport: Any, name: str, slow: Callable[[Any], Any]) -> Any:
        """(host, port) from the transport's own sockname/peername, as uvicorn's helpers give it (they make a
        socket object per connection to read it, ~8 µs); anything else (a unix socket) through those helpers."""
        info = transport.get_extra_info(name)
        if isinstance(info, tuple) and len(info) >= 2:
            return (str(info[0]), int(info[1]))
        return slow(transport)

    class OneWrite:
        """The transport a response cycle writes through: the response head waits for the first body bytes
        (or a close), so a whole reply leaves in one write -- one syscall and one TCP segment rather than two.
        uvicorn writes body bytes for every method but HEAD, whose cycles write straight through, as do 1xx
        interim responses; after the head, every write passes through."""

        __slots__ = ("held", "passing", "transport")

        def __init__(self, transport: Any, passing: bool) -> None:
            self.transport = transport
            self.held: bytes | None = None
            self.passing = passing

        def write(self, data: bytes) -> None:
            held = self.held
            if held is not None:
                self.held, self.passing = None, True
                self.transport.write(held + data)
            elif self.passing or data.startswith(b"HTTP/1.1 1"):
                self.transport.write(data)
            else:
                self.held = data

        def close(self) -> None:
            held = self.held
            if held is not None:
                self.held, self.passing = None, True
                self.transport.write(held)
            self.transport.close()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.transport, name)

    def sweep(loop: Any, connections: set[Any]) -> None:
        """Time out the connections of one server whose read deadline has passed; run again in SWEEP_S."""
        now = loop.time()
        for conn in [c for c in connections if 0.0 < getattr(c, "deadline", 0.0) < now]:
            conn.timed_out()
        loop.call_later(SWEEP_S, sweep, loop, connections)

    class LimitedHttpToolsProtocol(base):
        phase = idle
        deadline = 0.0  # when the current read (a head, a body) times out; 0: not reading
        head_bytes = 0
        tail = b""  # the last bytes of a head read so far (its end may straddle two reads)
        length: bytes | None = None  # the request's content-length header
        route: Callable[..., tuple[int, bytes, Headers]] | None = None  # the direct route taking this request
        chunks: list[bytes]  # its body so far
        keep = False  # whether its connection stays open after the reply

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            if self.logger.level <= TRACE_LOG_LEVEL:
                base.connection_made(self, transport)
            else:  # uvicorn's connection_made, with the addresses read as above
                self.connections.add(self)
                self.transport = transport
                self.flow = FlowControl(transport)
                self.server = address(transport, "sockname", get_local_addr)
                self.client = address(transport, "peername", get_remote_addr)
                self.scheme = "https" if is_ssl(transport) else "http"
            self.deadline = self.loop.time() + limits.head_timeout
            state = self.server_state
            if not getattr(state, "opml_sweeping", False):
                state.opml_sweeping = True
                self.loop.call_later(SWEEP_S, sweep, self.loop, self.connections)

        def data_received(self, data: bytes) -> None:
            if self.phase != body and self.head_bytes + len(data) > max_head and self._head_too_long(data):
                self._refuse(431, f"request headers over {max_head} bytes")
                return
            self._unset_keepalive_if_required()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                pass  # no websockets here: the request is answered as plain HTTP
            except httptools.HttpParserError as exc:
                refused = exc.__context__
                if isinstance(refused, Refused):
                    self._refuse(refused.status, refused.message, refused.headers)
                else:
                    self._refuse(400, "malformed HTTP request")
                return
            if self.phase == head:  # a head still arriving: count it
                self.head_bytes += len(data)
                self.tail = data[-3:]

        def _head_too_long(self, data: bytes) -> bool:
            """Whether the head's end (a blank line) is beyond the bytes the limit leaves."""
            room = max_head - self.head_bytes
            seen = self.tail + data if self.tail else data
            return seen.find(b"\r\n\r\n", 0, room + len(self.tail) + 4) < 0

        def on_message_begin(self) -> None:
            base.on_message_begin(self)
            self.phase = head
            self.length = None
            if not self.deadline:
                self.deadline = self.loop.time() + limits.head_timeout

        def on_header(self, name: bytes, value: bytes) -> None:  # uvicorn's, noting the content-length
            name = name.lower()
            if name == b"content-length":
                self.length = value
            elif name == b"expect" and value.lower() == b"100-continue":
                self.expect_100_continue = True
            self.headers.append((name, value))

        def on_headers_complete(self) -> None:
            if len(self.headers) > limits.max_headers:
                raise Refused(431, f"over {limits.max_headers} request header fields")
            if len(self.connections) > limits.concurrency or len(self.tasks) >= limits.concurrency:
                raise Refused(503, busy, b"retry-after: 1\r\n")
            self.phase = body
            self.deadline = self.loop.time() + limits.body_timeout
            if self._take_direct():
                return
            base.on_headers_complete(self)
            cycle = self.cycle
            if cycle is not None and cycle.transport is self.transport:
                cycle.transport = OneWrite(self.transport, cycle.scope["method"] == "HEAD")

        def _take_direct(self) -> bool:
            """Whether a direct route takes this request (see protocol_class); if so, get ready for its body."""
            app = self.config.app
            routes = getattr(app, "direct_routes", None)
            if not routes or (route := routes.get(self.url)) is None or self.parser.get_method() != b"POST":
                return False
            length, cycle = self.length, self.cycle
            if (length is None or not length.isdigit() or int(length) > min(app.direct_max_bytes, drain_bytes)
                    or self.expect_100_continue or self.pipeline or self.parser.should_upgrade()
                    or (cycle is not None and not cycle.response_complete)):
                return False
            self.route, self.chunks = route, []
            self.keep = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            return True

        def on_body(self, data: bytes) -> None:
            if self.route is not None:
                self.chunks.append(data)
            else:
                base.on_body(self, data)

        def on_message_complete(self) -> None:
            self.phase, self.deadline, self.head_bytes, self.tail = idle, 0.0, 0, b""
            route = self.route
            if route is None:
                base.on_message_complete(self)
                return
            self.route = None
            body = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
            self.chunks = []
            try:
                status, payload, headers = route(self.headers, body, self.client)
            except Exception as exc:  # a bug in the route: say so, keep serving
                self.logger.error("Exception in direct route %s", self.url.decode("latin-1"), exc_info=exc)
                status, payload, headers = 500, error(f"internal error: {type(exc).__name__}"), JSON
                self.keep = False
            self._reply(status, payload, headers)

        def _reply(self, status: int, payload: bytes, headers: Headers) -> None:
            """Write a direct route's reply in one write; then close the connection or wait for the next request."""
            transport = self.transport
            self.server_state.total_requests += 1
            if transport.is_closing():
                return
            content = [STATUS_LINE[status]]
            for name, value in (*self.server_state.default_headers, *headers):
                content += (name, b": ", value, b"\r\n")
                if name == b"connection" and b"close" in value.lower():
                    self.keep = False
            content.append(b"content-length: %d\r\n" % len(payload))
            if not self.keep:
                content.append(b"connection: close\r\n")
            content += (b"\r\n", payload)
            transport.write(b"".join(content))
            if not self.keep:
                transport.close()
            else:  # as uvicorn after a response: the keep-alive timer runs until the next request's data
                self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                    self.timeout_keep_alive_handler)

        def shutdown(self) -> None:
            if self.route is not None:  # a direct request mid-body: answer it, then close
                self.keep = False
            else:
                base.shutdown(self)

        def on_response_complete(self) -> None:
            if self.phase == body and not self.transport.is_closing():
                self.transport.close()  # answered before its body arrived: drop the rest unread
            base.on_response_complete(self)

        def timed_out(self) -> None:
            self.deadline = 0.0
            if self.transport.is_closing():
                return
            if self.phase == idle:
                self.transport.close()  # nothing asked: close quietly
            elif self.phase == head:
                self._refuse(408, f"request headers not received within {limits.head_timeout:g} s")
            else:
                self._refuse(408, f"request body not received within {limits.body_timeout:g} s")

        def _refuse(self, status: int, message: str, headers: bytes = b"") -> None:
            """Answer `status` {"error": message} (unless a reply is under way) and close the connection."""
            cycle = self.cycle
            if cycle is None or cycle.response_complete or not cycle.response_started:
                payload = error(message)
                self.transport.write(b"".join([
                    STATUS_LINE[status], b"content-type: application/json\r\nconnection: close\r\n", headers,
                    b"content-length: ", str(len(payload)).encode(), b"\r\n\r\n", payload]))
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's receive() now says http.disconnect; its reply is dropped
                cycle.message_event.set()
            self.deadline, self.route = 0.0, None
            self.transport.close()

    LimitedHttpToolsProtocol.limits = limits  # type: ignore[attr-defined]
    return LimitedHttpToolsProtocol
