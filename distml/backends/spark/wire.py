"""The partition service's wire: authenticate first, then HMAC every frame (TLS optional).

Order matters. A connection to the driver's listener is untrusted until it has sent
the service's 32-byte token as raw bytes (compared with :func:`hmac.compare_digest`);
nothing is unpickled before that. Every later frame, both ways, is
``length (8 bytes) | HMAC-SHA256(key, direction | sequence | payload) (32) | payload``
and its tag is checked before ``pickle.loads`` sees the payload, so a frame that was
altered, replayed or reordered on the network is refused. When Spark's own traffic is
encrypted (``spark.network.crypto.enabled``, ``spark.ssl.enabled``) the socket is TLS,
with an ephemeral self-signed certificate whose SHA-256 fingerprint the tasks receive in
the (Spark-encrypted) closure and pin.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import socket
import ssl
import struct
import tempfile
from dataclasses import dataclass
from typing import Any

from distml.errors import BackendError

TOKEN_BYTES = 32
_HELLO = struct.Struct(">32sI")  # token, rank
_HEADER = struct.Struct(">Q")
_TAG = 32
_TO_TASK, _TO_DRIVER = b"D", b"T"  # direction labels in the MAC: a frame cannot be reflected
_ONE_WRITE = 1 << 20  # frames up to this size go out in one write (header and payload copied)


class WireError(Exception):
    """A peer that is not one of ours, or a frame that failed its check."""


class Channel:
    """A connected, authenticated socket: HMAC-tagged pickle frames with sequence numbers."""

    def __init__(self, sock: socket.socket, key: bytes, driver_side: bool) -> None:
        self.sock = sock
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # A pass is one small request and one small answer: with Nagle's algorithm on, a
            # frame's second segment waits for the peer's delayed ACK (40 ms on Linux), which
            # made every pass of an iterative fit take ~90 ms whatever its arithmetic.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._key = key
        self._out, self._in = (_TO_TASK, _TO_DRIVER) if driver_side else (_TO_DRIVER, _TO_TASK)
        self._sent = 0
        self._received = 0

    def _tag(self, direction: bytes, sequence: int, data: bytes) -> bytes:
        mac = hmac.new(self._key, direction + sequence.to_bytes(8, "big"), hashlib.sha256)
        mac.update(data)
        return mac.digest()

    def send(self, message: Any) -> None:
        from pyspark import cloudpickle

        data = cloudpickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        tag = self._tag(self._out, self._sent, data)
        self._sent += 1
        head = _HEADER.pack(len(data)) + tag
        if len(data) <= _ONE_WRITE:
            self.sock.sendall(head + data)
        else:
            self.sock.sendall(head)
            self.sock.sendall(data)

    def recv(self) -> Any:
        (size,) = _HEADER.unpack(_recv_exact(self.sock, _HEADER.size))
        tag = _recv_exact(self.sock, _TAG)
        data = _recv_exact(self.sock, size)
        if not hmac.compare_digest(tag, self._tag(self._in, self._received, data)):
            raise WireError("a frame failed its authentication check")
        self._received += 1
        return pickle.loads(data)

    def pending(self) -> bool:
        """Bytes already read and decrypted by TLS, which ``select`` does not see."""
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        read = sock.recv_into(view[got:], n - got)
        if read == 0:
            raise EOFError("connection closed")
        got += read
    return bytes(buffer)


def accept_task(
    conn: socket.socket, token: bytes, tls: TlsIdentity | None, timeout: float
) -> tuple[Channel, int]:
    """The driver's side of a new connection: TLS if asked, then the raw token, then a channel."""
    conn.settimeout(timeout)
    sock: socket.socket = conn
    if tls is not None:
        try:
            sock = tls.server_context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            raise WireError(f"TLS handshake failed ({exc})") from None
    try:
        presented, rank = _HELLO.unpack(_recv_exact(sock, _HELLO.size))
    except (EOFError, TimeoutError) as exc:
        raise WireError(f"no token ({exc or 'timed out'})") from None
    if not hmac.compare_digest(presented, token):
        raise WireError("wrong token")
    sock.settimeout(None)
    return Channel(sock, token, driver_side=True), rank


def connect_task(
    address: tuple[str, int], token: bytes, rank: int, fingerprint: bytes | None, timeout: float
) -> Channel:
    """A task's side: connect, check the driver's certificate if TLS, present the token."""
    sock = socket.create_connection(address, timeout=timeout)
    if fingerprint is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # pinned below instead: the cert is self-signed
        sock = context.wrap_socket(sock)
        seen = hashlib.sha256(sock.getpeercert(binary_form=True) or b"").digest()
        if not hmac.compare_digest(seen, fingerprint):
            sock.close()
            raise BackendError(f"spark: the driver at {address[0]}:{address[1]} is not distml's")
    sock.sendall(_HELLO.pack(token, rank))
    sock.settimeout(None)
    return Channel(sock, token, driver_side=False)


@dataclass
class TlsIdentity:
    """An ephemeral key and self-signed certificate for one service start."""

    server_context: ssl.SSLContext
    fingerprint: bytes
    folder: str

    @classmethod
    def create(cls, host: str) -> TlsIdentity:
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError:
            raise BackendError(
                "spark: network encryption is on (spark.network.crypto.enabled or spark.ssl.enabled), "
                "so distml's partition service needs TLS: pip install cryptography"
            ) from None
        import datetime

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"distml-service {host}")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .sign(key, hashes.SHA256())
        )
        folder = tempfile.mkdtemp(prefix="distml-tls-")
        cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_path, key_path)
        fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
        return cls(context, fingerprint, folder)

    def close(self) -> None:
        """Delete the key files (the context keeps what it loaded)."""
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
