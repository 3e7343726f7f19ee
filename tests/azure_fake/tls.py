"""The fake workspace over HTTPS on 127.0.0.1, with a certificate made at start (for subprocess tests).

Point the SDK at it with AZUREML_DEV_URL_MFE=https://127.0.0.1:PORT and REQUESTS_CA_BUNDLE=<cert file>.
Blob storage: the SDK builds https://{account}.blob.core.windows.net URLs itself, so the server also runs an
HTTP CONNECT proxy (HTTPS_PROXY=http://127.0.0.1:PROXY_PORT, NO_PROXY=127.0.0.1) that opens a tunnel only to
*.blob.core.windows.net (and the CDN the SDK fetches the MLTable JSON schema from, answered 404 at once, as the
in-process transport does, instead of the SDK retrying an unreachable host) and answers inside it, with the
same certificate, from the same fake workspace.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.azure_fake.workspace import FakeWorkspace

BLOB_SUFFIX = ".blob.core.windows.net"
TUNNELLED = (BLOB_SUFFIX, ".azureedge.net")  # the only hosts the proxy tunnels to (to this fake)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opml fake Azure ML workspace")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *[x509.DNSName(f"*{suffix}") for suffix in TUNNELLED],
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class FakeServer:
    """`with FakeServer(tmp) as srv:` serves srv.workspace at srv.url (and blob storage through srv.proxy_url)
    until the block ends.
    """

    def __init__(self, folder: Path, port: int = 0, **workspace_options: object) -> None:
        self.cert, key = make_certificate(folder)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(self.cert, key)
        self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.workspace = FakeWorkspace(self.url, **workspace_options)  # type: ignore[arg-type]
        self.httpd.workspace = self.workspace  # type: ignore[attr-defined]
        self.errors: list[str] = []
        self.httpd.errors = self.errors  # type: ignore[attr-defined]
        self.proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Tunnel)
        self.proxy.target = self.httpd  # type: ignore[attr-defined]
        self.proxy.tls = self.tls  # type: ignore[attr-defined]
        self.proxy_url = f"http://127.0.0.1:{self.proxy.server_address[1]}"
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.httpd, self.proxy)]

    def env(self) -> dict[str, str]:
        """What a process needs to reach this fake: the management URL, the certificate, the blob tunnel."""
        return {
            "AZUREML_DEV_URL_MFE": self.url,
            "REQUESTS_CA_BUNDLE": str(self.cert),
            "HTTPS_PROXY": self.proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def __enter__(self) -> FakeServer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *args: object) -> None:
        for server in (self.httpd, self.proxy):
            server.shutdown()
            server.server_close()
        for t in self._threads:
            t.join(5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        url = f"https://{self.headers.get('Host', '127.0.0.1')}{self.path}"
        try:
            reply = self.server.workspace.handle(self.command, url, dict(self.headers), body)  # type: ignore[attr-defined]
        except AssertionError as exc:  # a body that fails its schema: 400 with the schema path, and remembered
            self.server.errors.append(str(exc))  # type: ignore[attr-defined]
            from tests.azure_fake.workspace import Reply

            reply = Reply(400, {"error": {"code": "SchemaValidation", "message": str(exc)}})
        content = reply.content()
        self.send_response(reply.status)
        headers = {"Content-Type": "application/json; charset=utf-8"} | reply.headers
        for k, v in headers.items():
            if k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = _serve


class _Tunnel(BaseHTTPRequestHandler):
    """CONNECT host:443 for TUNNELLED hosts only: TLS with the fake's certificate, then the fake answers inside."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_CONNECT(self) -> None:
        host = self.path.rsplit(":", 1)[0]
        if not host.endswith(TUNNELLED):
            self.send_response(403, "only blob storage is tunnelled to the fake workspace")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        try:
            tls = self.server.tls.wrap_socket(self.connection, server_side=True)  # type: ignore[attr-defined]
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        try:
            _Handler(tls, self.client_address, self.server.target)  # type: ignore[attr-defined]  # until closed
        except OSError:
            pass
        finally:
            tls.close()
        self.close_connection = True
