"""TLS: server SSLContexts from the configured certificate, and self-signed pairs for development.

Invariants: TLS 1.2 is the minimum; contexts are built fresh on every (re)load (SIGHUP, or :class:`PairWatcher`
seeing the files change on disk) so a renewed certificate serves new connections while existing ones keep theirs;
a context that is in use is never modified (a failed ``load_cert_chain`` into a live context can leave it with a
certificate and no key).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import logging
import ssl
from asyncio import sslproto
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .config import Config

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 60
"""Seconds a client has to complete a TLS handshake (implicit TLS on 465/993, STARTTLS); then it is dropped."""


def accept_tls(
    transport: asyncio.BaseTransport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    on_failure: Callable[[BaseException | None], object],
) -> None:
    """Put a server-side TLS layer between ``transport`` and ``protocol``, as ``create_server(ssl=...)`` does, but
    when the caller says: implicit-TLS listeners first count the connection against their limits. Call it from the
    plain ``connection_made``, before any byte is read. ``protocol.connection_made`` is called again with the TLS
    transport once the handshake is done; ``on_failure`` (with the error, None when cancelled) when it failed or
    took over :data:`HANDSHAKE_TIMEOUT` instead: no ``connection_lost`` follows, so it releases what the caller
    holds."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    waiter.add_done_callback(functools.partial(_check_handshake, on_failure))
    layer = _tls_protocol(loop)(
        loop, protocol, context, waiter, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
    )
    transport.set_protocol(layer)
    layer.connection_made(transport)


def peer_ip(transport: asyncio.BaseTransport) -> str:
    """The client's IP address, "" when the transport does not know it."""
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


class ImplicitTLS(asyncio.StreamReaderProtocol):
    """A stream listener whose clients speak TLS from the first octet (993, 443): the connection is counted at
    accept (``admit``: False closes it without a word, the client expects a handshake, not plain text), TLS goes
    under the stream before any byte is read (as ``create_server(ssl=...)`` does, but after the limits), and
    ``serve`` runs once the handshake is done. A handshake that fails, or a client silent for
    :data:`HANDSHAKE_TIMEOUT`, gives the slot back (``release``)."""

    def __init__(
        self,
        name: str,
        get_context: Callable[[], ssl.SSLContext | None],
        admit: Callable[[str], bool],
        release: Callable[[str], None],
        serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]],
        limit: int,
    ) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(asyncio.StreamReader(limit=limit, loop=loop), self._serve, loop=loop)
        self.name = name
        self.get_context = get_context
        self.admit = admit
        self.release = release
        self.serve = serve
        self.ip = ""
        self.handshaking = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.handshaking:  # TLS is up: the session starts over it
            self.handshaking = False
            super().connection_made(transport)
            return
        self.ip = peer_ip(transport)
        context = self.get_context()
        if context is None or not self.admit(self.ip):  # no certificate since a reload, or a limit
            transport.close()
            return
        self.handshaking = True
        accept_tls(transport, self, context, self._handshake_failed)

    def _handshake_failed(self, error: BaseException | None) -> None:
        log.info("%s TLS handshake with %s failed: %r", self.name, self.ip, error)
        self.release(self.ip)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.serve(reader, writer, self.ip)


def _check_handshake(on_failure: Callable[[BaseException | None], object], waiter: asyncio.Future[None]) -> None:
    if waiter.cancelled():
        on_failure(None)
    elif (error := waiter.exception()) is not None:
        on_failure(error)


def _tls_protocol(loop: asyncio.AbstractEventLoop) -> type[sslproto.SSLProtocol]:
    """The loop's own TLS layer, the one its ``create_server(ssl=...)`` uses: uvloop's is compiled, asyncio's is
    Python (same constructor)."""
    if type(loop).__module__.startswith("uvloop"):
        import uvloop.loop  # only where uvloop runs the loop

        return cast(type[sslproto.SSLProtocol], uvloop.loop.SSLProtocol)  # type: ignore[attr-defined]  # no stub
    return sslproto.SSLProtocol


def server_context(config: Config) -> ssl.SSLContext | None:
    """The context for STARTTLS and implicit TLS, or None when no certificate is configured, or ACME has none
    yet (a pair ACME left half-written is logged and treated as none: the next ACME check gets a new one)."""
    if not config.tls_enabled:
        return None
    cert, key = config.cert_files()
    if config.acme.enabled and not cert.exists():
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ValueError) as exc:
        if not config.acme.enabled:
            raise
        log.error("the ACME certificate %s does not load (%s): none until ACME gets a new one", cert, exc)
        return None
    return context


def not_after(config: Config) -> float | None:
    """When the configured certificate expires (a POSIX time), None when there is none that parses."""
    if not config.tls_enabled:
        return None
    try:
        cert = x509.load_pem_x509_certificate(config.cert_files()[0].read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc.timestamp()


# What one stat says about a file: (device, inode, size, mtime in ns); None when it cannot be stat'ed.
FileStat = tuple[int, int, int, int] | None


def pair_signature(config: Config) -> tuple[FileStat, FileStat]:
    """The stat of the configured certificate and key, following symlinks. An ACME renewal changes it: certbot
    re-points ``live/`` symlinks at new files (new inode), other clients rewrite in place (new mtime or size)."""
    signature: list[FileStat] = []
    for path in config.cert_files():
        try:
            st = path.stat()
        except OSError:
            signature.append(None)
        else:
            signature.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return signature[0], signature[1]


class PairWatcher:
    """Tells whether the certificate or key changed on disk since the last look: stat only, nothing read.

    The daemon asks every ``[tls] reload_interval`` and loads the pair when it changed; a pair that does not load
    is not retried until the files change again (so a broken renewal logs once, not every interval).
    """

    def __init__(self) -> None:
        self.seen: tuple[FileStat, FileStat] | None = None

    def mark(self, config: Config) -> None:
        """Remember the files as they are now (just before loading them)."""
        self.seen = pair_signature(config)

    def changed(self, config: Config) -> bool:
        """True (once) when the files differ from the last look."""
        now = pair_signature(config)
        if now == self.seen:
            return False
        self.seen = now
        return True


def make_self_signed(cert_path: Path, key_path: Path, hostnames: list[str], days: int = 3650) -> None:
    """Write a self-signed ECDSA P-256 certificate for ``hostnames`` (and 127.0.0.1) and its key (mode 600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
