"""Answering the CA's challenges on the daemon's own listeners, while an ACME attempt (on a worker thread) waits.

- http-01 (RFC 8555 §8.3): ``[listen] http`` answers ``GET /.well-known/acme-challenge/TOKEN`` with the key
  authorization, for any Host, while the token is pending (:meth:`Responder.http_answer`); 404 otherwise.
- tls-alpn-01 (RFC 8737): ``[listen] https`` presents, to a ClientHello that offers only the ALPN protocol
  ``acme-tls/1`` and names a pending name by SNI, a self-signed certificate for that name carrying the
  critical id-pe-acmeIdentifier extension (the SHA-256 of the key authorization), and negotiates acme-tls/1.
  Python's ssl shows neither the offered ALPN list nor the ClientHello to a server, so while a tls-alpn-01
  challenge is pending (seconds) the HTTPS listener handshakes with a *dispatch* context: its message callback
  (``SSLContext._msg_callback``, CPython's debugging hook, present since 3.8) reads the ALPN extension of the
  ClientHello, then its SNI callback, which OpenSSL runs before ALPN selection, switches the connection to the
  challenge context. Every other client gets the normal certificate from the dispatch context. Outside a
  challenge the listener uses the normal context and none of this runs.

Invariants: the worker thread only adds and removes entries (whole-dict replacement, so the loop never sees a
half-made state); the listeners only read; no file is left behind (the challenge key lives in a private
temporary folder just long enough for ``load_cert_chain``).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import ssl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

log = logging.getLogger(__name__)

HTTP_PREFIX = "/.well-known/acme-challenge/"
ACME_TLS_ALPN = "acme-tls/1"
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # id-pe-acmeIdentifier, RFC 8737 §6.1
_ALPN_EXTENSION = 16
_CLIENT_HELLO = 1
_OFFERS_ACME = "_relentad_acme_alpn"  # attribute set on an SSLObject whose ClientHello offered acme-tls/1


def offers_acme_alpn(hello: bytes) -> bool:
    """Whether a ClientHello handshake message (with its 4-octet header) offers acme-tls/1 as its only ALPN
    protocol, as the CA's must (RFC 8737 §3); a browser's list is never taken for one. Malformed input is False,
    never an exception (it comes from anyone)."""
    try:
        if hello[0] != _CLIENT_HELLO:
            return False
        pos = 4 + 2 + 32  # header, legacy_version, random
        pos += 1 + hello[pos]  # legacy_session_id
        pos += 2 + int.from_bytes(hello[pos : pos + 2], "big")  # cipher_suites
        pos += 1 + hello[pos]  # legacy_compression_methods
        end = pos + 2 + int.from_bytes(hello[pos : pos + 2], "big")
        pos += 2
        while pos + 4 <= min(end, len(hello)):
            kind = int.from_bytes(hello[pos : pos + 2], "big")
            length = int.from_bytes(hello[pos + 2 : pos + 4], "big")
            body = hello[pos + 4 : pos + 4 + length]
            pos += 4 + length
            if kind != _ALPN_EXTENSION:
                continue
            protocols, i = [], 2
            while i < len(body):
                size = body[i]
                protocols.append(body[i + 1 : i + 1 + size])
                i += 1 + size
            return protocols == [ACME_TLS_ALPN.encode()]
    except IndexError:
        return False
    return False


def alpn_certificate(name: str, key_authorization: str) -> tuple[bytes, bytes]:
    """The tls-alpn-01 certificate for ``name`` (RFC 8737 §3) and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relentad ACME challenge")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        # extnValue is the DER OCTET STRING holding the 32-octet digest
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server context for a certificate held in memory (ssl loads files only: a private folder, removed)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="relentad-acme-") as folder:  # mode 0700
        cert_path, key_path = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_path.write_bytes(cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


def _quiet_non_ascii_server_names() -> None:
    """With an SNI callback set, CPython decodes the client's server name as ASCII before calling it; a name that
    is not (anyone may send one while the dispatch context serves) fails the handshake, as it should, but also
    prints a traceback as an "unraisable" exception. This hook makes that one line; anything else goes on to the
    hook before it. Installed once."""
    previous = sys.unraisablehook
    if getattr(previous, "relentad_sni", False):
        return

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, UnicodeDecodeError) and isinstance(unraisable.object, bytes):
            log.info("TLS handshake refused: the client's server name is not ASCII: %r", unraisable.object[:80])
            return
        previous(unraisable)

    hook.relentad_sni = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


class Responder:
    """The pending challenges of the current attempt, as the listeners see them."""

    def __init__(self, cert_files: Callable[[], tuple[Path, Path] | None]) -> None:
        self.cert_files = cert_files  # the normal certificate, when there is one, for the dispatch context
        self.http_tokens: dict[str, str] = {}
        self.alpn_contexts: dict[str, ssl.SSLContext] = {}
        self.dispatch: ssl.SSLContext | None = None

    # -- the ACME attempt's side (worker thread) ---------------------------------------------------------------

    def present(self, kind: str, name: str, token: str, key_authorization: str) -> None:
        if kind == "http-01":
            self.http_tokens = {**self.http_tokens, token: key_authorization}
            return
        context = _context(*alpn_certificate(name, key_authorization))
        context.set_alpn_protocols([ACME_TLS_ALPN])
        if self.dispatch is None:
            self.dispatch = self._dispatch_context()
        self.alpn_contexts = {**self.alpn_contexts, name.lower(): context}

    def cleanup(self, kind: str, name: str, token: str) -> None:
        if kind == "http-01":
            self.http_tokens = {t: v for t, v in self.http_tokens.items() if t != token}
            return
        self.alpn_contexts = {n: c for n, c in self.alpn_contexts.items() if n != name.lower()}
        if not self.alpn_contexts:
            self.dispatch = None

    def _dispatch_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        files = self.cert_files()
        if files is not None:
            context.load_cert_chain(*files)
        context._msg_callback = self._sniff  # type: ignore[attr-defined]  # CPython's hook, no stub
        _quiet_non_ascii_server_names()
        context.sni_callback = self._select
        return context

    # -- the listeners' side (event loop) ----------------------------------------------------------------------

    def http_answer(self, path: str) -> str | None:
        """The key authorization for a pending http-01 token at ``path``, else None."""
        if not path.startswith(HTTP_PREFIX):
            return None
        return self.http_tokens.get(path.removeprefix(HTTP_PREFIX))

    def https_context(self, normal: ssl.SSLContext | None) -> ssl.SSLContext | None:
        """The context for the next HTTPS handshake: the dispatch one while a tls-alpn-01 challenge is pending."""
        return self.dispatch or normal

    def _sniff(self, conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes) -> None:
        if direction == "read" and msg_type == _CLIENT_HELLO and offers_acme_alpn(data):
            setattr(conn, _OFFERS_ACME, True)

    def _select(self, conn: Any, server_name: str | None, _context: ssl.SSLContext) -> None:
        if server_name and getattr(conn, _OFFERS_ACME, False):
            context = self.alpn_contexts.get(server_name.lower())
            if context is not None:
                conn.context = context
                log.info("tls-alpn-01 challenge certificate presented for %s", server_name)
