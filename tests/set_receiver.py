"""A push receiver (RFC 8935) the tests control: a threaded HTTP server on a free port that
records every SET it is sent and answers what the test scripts (202 by default); over TLS
when given a certificate, which `authority()` and `issue()` make in the test."""

from __future__ import annotations

import ipaddress
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Received:
    token: str
    headers: dict[str, str]

    @property
    def claims(self) -> dict[str, Any]:
        """Unverified: for bookkeeping; tests verify signatures against the JWKS apart."""
        return jwt.decode(self.token, options={"verify_signature": False})


@dataclass
class Receiver:
    url: str
    # (status, JSON body or None) for each request; None: 202 with no body.
    answer: Callable[[Received], tuple[int, dict[str, Any] | None]] = lambda _: (202, None)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def jtis(self) -> list[str]:
        with self.lock:
            return [r.claims["jti"] for r in self.received]

    def wait_for(self, done: Callable[[], bool], seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError("the receiver did not get what the test waited for")
            time.sleep(0.02)


@dataclass(frozen=True)
class Certificate:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """The certificate and key files (for SSL_CERT_FILE, or a server's load_cert_chain)."""
        cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
        cert_file.write_bytes(self.cert_pem)
        key_file.write_bytes(self.key_pem)
        return cert_file, key_file


def authority(name: str = "SCIM tests CA") -> Certificate:
    """A self-signed CA, as a private CA or a self-signed receiver's certificate is."""
    return _certificate(name, names=(), issuer=None, ca=True)


def issue(issuer: Certificate | None, *names: str) -> Certificate:
    """A server certificate for DNS names and IP addresses (subjectAltName), signed by `issuer`,
    or self-signed when None."""
    return _certificate(names[0], names=names, issuer=issuer, ca=False)


def _certificate(
    common_name: str, *, names: tuple[str, ...], issuer: Certificate | None, ca: bool
) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_key, signer_name = (
        (key, subject) if issuer is None else (issuer.key, issuer.cert.subject)
    )
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    return Certificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        key=key,
        cert=cert,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@contextmanager
def running(path: str = "/events", tls: Certificate | None = None) -> Iterator[Receiver]:
    """A receiver at http://127.0.0.1:PORT/path, or https:// presenting `tls`."""
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got = Received(body.decode(), {k: v for k, v in self.headers.items()})
            with receiver.lock:
                receiver.received.append(got)
            status, answer = receiver.answer(got)
            data = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as directory:
            context.load_cert_chain(*tls.write(Path(directory), "receiver"))
        # The handshake runs as a connection is accepted; one the client aborts (a certificate
        # it does not trust) is an OSError there, which the server ignores.
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "http" if tls is None else "https"
    receiver.url = f"{scheme}://127.0.0.1:{server.server_port}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
