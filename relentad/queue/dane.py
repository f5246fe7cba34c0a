"""DANE for outbound SMTP (RFC 7672; TLSA records, RFC 6698 and RFC 7671): which MX hosts must present which
certificate, and whether the one presented matches.

Trust comes from the configured resolver's AD bit (``[dns] nameservers`` must be a local DNSSEC-validating
resolver, as Postfix's ``smtp_dns_support_level = dnssec`` assumes). For a recipient domain whose MX answer is
secure, and an MX host whose address answer is secure, the ``_25._tcp.HOST`` TLSA records are looked up (at the
CNAME-expanded name first, then at the host name, §2.2.3; only at the host name when just the first CNAME of the
chain is secure, §2.2.2). Usable records (§3.1.3: DANE-TA(2) and DANE-EE(3), a
known selector and matching type, a digest of the right length) make TLS mandatory and the certificate must
match one of them:

- DANE-EE(3): the server's own certificate (selector 0) or public key (selector 1) matches; its names and dates
  do not matter (§3.1.1);
- DANE-TA(2): a certificate of the chain the server sent matches; the chain below it is verified (each signed by
  the next, issuers are CAs, in date) and the server certificate names the MX host or the TLSA base domain (§3.2.2,
  subjectAltName DNS names, the CN only without any). A trust anchor published in full (2 1 0, 2 0 0) need not
  be sent: the top of the chain must then be signed by it (RFC 7671 §5.2.3).

A TLSA lookup that fails (SERVFAIL: the records are bogus, or DNS does not answer) for a secure host means the host
is not used (§2.2: never downgraded). A secure TLSA RRset whose records are all unusable (PKIX-TA/PKIX-EE, unknown
parameters) still promises TLS: STARTTLS is required, the certificate is not checked (§2.2). An insecure answer
anywhere: no DANE.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from .. import dns as relentad_dns

SMTP_PORT = 25
DANE_TA, DANE_EE = 2, 3
USAGES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
_DIGEST_SIZES = {1: 32, 2: 64}  # matching type -> digest length (SHA-256, SHA-512)
MAX_CHAIN = 10  # certificates of a chain looked at; real ones have 2-4


@dataclass(frozen=True)
class Tlsa:
    """One TLSA record (RFC 6698 §2.1)."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def usable(self) -> bool:
        """Usable for SMTP (RFC 7672 §3.1.3): DANE-TA or DANE-EE, a known selector and matching type, and a digest
        of that digest's length (a truncated one could never match)."""
        if self.usage not in (DANE_TA, DANE_EE) or self.selector not in (0, 1) or self.mtype not in (0, 1, 2):
            return False
        size = _DIGEST_SIZES.get(self.mtype)
        return len(self.data) == size if size is not None else bool(self.data)

    def text(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"

    def matches(self, der: bytes) -> bool:
        """Whether this record's selector and matching type applied to certificate ``der`` give its data."""
        return association(der, self.selector, self.mtype) == self.data


def association(der: bytes, selector: int, mtype: int) -> bytes:
    """The certificate association data of DER certificate ``der`` (RFC 6698 §2.1.2-2.1.3)."""
    if selector == 1:
        cert = x509.load_der_x509_certificate(der)
        content = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        content = der
    if mtype == 1:
        return hashlib.sha256(content).digest()
    if mtype == 2:
        return hashlib.sha512(content).digest()
    return content


def record_for(der: bytes) -> Tlsa:
    """The ``3 1 1`` record (DANE-EE, SHA-256 of the public key) a server with certificate ``der`` publishes: it
    survives renewals that keep the key (RFC 7671 §8.1)."""
    return Tlsa(DANE_EE, 1, 1, association(der, 1, 1))


@dataclass(frozen=True)
class Dane:
    """The TLSA records of one MX host: DANE applies to it. ``records`` are the usable ones; with none (all are
    unusable) TLS is still required but the certificate is not checked (RFC 7672 §2.2)."""

    host: str  # the MX host name
    base: str  # the TLSA base domain (the CNAME-expanded host name where the records were found)
    records: tuple[Tlsa, ...]
    published: tuple[Tlsa, ...] = ()  # every record of the RRset, usable or not

    def text(self) -> str:
        """The records one a line, for TLS reports (RFC 8460 §4.3: the policy-string of a tlsa policy): the usable
        ones, else all."""
        return "\n".join(r.text() for r in (self.records or self.published))


@dataclass(frozen=True)
class Lookup:
    """What DNS says about one MX host: ``dane`` when DANE applies; ``error`` when the host must not be used."""

    secure: bool  # the domain's MX, the host's address and its TLSA answers were DNSSEC-validated
    records: tuple[Tlsa, ...] = ()  # every TLSA record found, usable or not
    dane: Dane | None = None
    error: str = ""
    name: str = ""  # where the records were found (the TLSA base domain)

    @property
    def state(self) -> str:
        """What it comes to, as counted: insecure, failed (the host is skipped), none, usable or unusable."""
        if not self.secure:
            return "insecure"
        if self.error:
            return "failed"
        if self.dane is None:
            return "none"
        return "usable" if self.dane.records else "unusable"


def _records(found: list[Any]) -> tuple[Tlsa, ...]:
    """The TLSA records of an answer in a fixed order: an RRset comes in any order, and TLS reports group sessions
    by its text."""
    records = [Tlsa(int(r.usage), int(r.selector), int(r.mtype), bytes(r.cert)) for r in found if hasattr(r, "cert")]
    return tuple(sorted(records, key=lambda r: (r.usage, r.selector, r.mtype, r.data)))


async def lookup(resolver: dns.asyncresolver.Resolver, host: str, canonical: str = "") -> Lookup:
    """The TLSA records of MX ``host`` (its address lookup was secure; ``canonical`` is its CNAME-expanded name)."""
    names = [canonical, host] if canonical and canonical != host else [host]
    for name in names:
        qname = f"_{SMTP_PORT}._tcp.{name}"
        try:
            answer = await relentad_dns.lookup_secure(resolver, qname, "TLSA")
        except relentad_dns.DnsLookupError as exc:
            return Lookup(True, error=f"TLSA lookup of {qname} failed: {exc}", name=name)
        if not answer.records:
            continue  # none here (a secure or insecure denial): try the host name itself
        if not answer.secure:
            return Lookup(False, _records(answer.records), name=name)  # insecure TLSA records are ignored
        records = _records(answer.records)
        usable = tuple(r for r in records if r.usable)
        return Lookup(True, records, Dane(host, name, usable, records), name=name)
    return Lookup(True)


@dataclass(frozen=True)
class Host:
    """One MX host: its addresses and what DANE says about it (``tlsa.dane``: applies; ``tlsa.error``: skip it)."""

    name: str
    addresses: list[str]
    tlsa: Lookup


async def resolve_host(resolver: dns.asyncresolver.Resolver, host: str, secure_mx: bool) -> Host:
    """The addresses of MX ``host`` and, when the MX answer (``secure_mx``) and its address answers are
    DNSSEC-validated, its TLSA records (RFC 7672 §2.2); when only the first link of a CNAME chain is, those at the
    host name itself. Raises DnsTemporaryError when the addresses cannot be had."""
    a = await relentad_dns.lookup_secure(resolver, host, "A")
    aaaa = await relentad_dns.lookup_secure(resolver, host, "AAAA")
    found = [r.to_text() for r in a.records + aaaa.records]
    answers = [x for x in (a, aaaa) if x.records]
    if not (secure_mx and answers):  # without an address there is nothing to connect to
        return Host(host, found, Lookup(False))
    if all(x.secure for x in answers):  # validated end to end, through any CNAMEs (§2.2.2)
        return Host(host, found, await lookup(resolver, host, answers[0].canonical))
    canonical = answers[0].canonical
    if canonical and canonical != host and (await relentad_dns.lookup_secure(resolver, host, "CNAME")).secure:
        # an alias in a signed zone pointing into an unsigned one: the TLSA records at the MX host name (§2.2.2)
        return Host(host, found, await lookup(resolver, host))
    return Host(host, found, Lookup(False))


@dataclass(frozen=True)
class Failure:
    """Why a certificate chain does not satisfy the TLSA records: ``result`` is the RFC 8460 result type."""

    result: str
    detail: str


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if names:
        return names
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)]


def name_matches(pattern: str, name: str) -> bool:
    """RFC 7672 §3.2.3 / RFC 6125: an exact name, or ``*.rest`` for exactly one label in front of ``rest``."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:] and "." in rest
    return pattern == name


def _in_date(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return cert.version == x509.Version.v1  # an old v1 CA certificate has no extensions at all


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _signed_by_key(cert: x509.Certificate, spki: bytes) -> bool:
    """Whether ``cert`` carries a signature by the public key ``spki`` (DER SubjectPublicKeyInfo)."""
    try:
        key = serialization.load_der_public_key(spki)
        params = cert.signature_algorithm_parameters
        data, signature, digest = cert.tbs_certificate_bytes, cert.signature, cert.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and isinstance(params, padding.PKCS1v15 | padding.PSS) and digest:
            key.verify(signature, data, params, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            key.verify(signature, data, params)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _full_keys(anchors: list[Tlsa]) -> list[bytes]:
    """The public keys (DER SubjectPublicKeyInfo) that DANE-TA records give in full: a bare key (2 1 0) as it is,
    a whole certificate (2 0 0) parsed; one that cannot be parsed gives none."""
    keys = [r.data for r in anchors if r.selector == 1 and r.mtype == 0]
    for record in anchors:
        if record.selector == 0 and record.mtype == 0:
            try:
                keys.append(association(record.data, 1, 0))
            except (ValueError, TypeError, UnsupportedAlgorithm):
                continue
    return keys


def check(dane: Dane, chain: list[bytes], now: datetime.datetime | None = None) -> Failure | None:
    """None when ``chain`` (DER, the server's certificate first) satisfies one of ``dane``'s records (RFC 7672
    §3.1); else what failed. The records are tried DANE-EE first: it needs no parsing beyond the hash. The chain
    comes from the server: anything in it that cannot be parsed is a failure, never an exception."""
    if not dane.records:
        return None  # all records unusable: TLS was required, not authentication (RFC 7672 §2.2)
    if not chain:
        return Failure("validation-failure", "the server sent no certificate")
    try:
        return _check(dane, chain[:MAX_CHAIN], now or datetime.datetime.now(datetime.UTC))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return Failure("validation-failure", f"unreadable certificate: {exc}"[:200])


def _check(dane: Dane, chain: list[bytes], now: datetime.datetime) -> Failure | None:
    if any(r.usage == DANE_EE and r.matches(chain[0]) for r in dane.records):
        return None
    anchors = [r for r in dane.records if r.usage == DANE_TA]
    if not anchors:
        return Failure("tlsa-invalid", "the certificate matches none of the TLSA records")
    certs = [x509.load_der_x509_certificate(der) for der in chain]
    # the path from the server's certificate up to a certificate a DANE-TA record matches, through the chain sent
    path, current, rest = [certs[0]], certs[0], certs[1:]
    trusted = False
    while not trusted:
        if any(r.matches(current.public_bytes(serialization.Encoding.DER)) for r in anchors) and len(path) > 1:
            trusted = True
            break
        issuer = next((c for c in rest if _issued_by(current, c) and _is_ca(c)), None)
        if issuer is None:
            break
        rest.remove(issuer)
        path.append(issuer)
        current = issuer
    below = path[:-1]  # the trust anchor itself is a key and a name (RFC 5280 §6.1.1): its dates do not count
    if not trusted:  # a key (2 1 0) or certificate (2 0 0) in full, which the server need not send (RFC 7671 §5.2.3)
        if not any(_signed_by_key(current, key) for key in _full_keys(anchors)):
            return Failure("tlsa-invalid", "no certificate of the chain matches a TLSA record")
        below = path
    for cert in below:
        if not _in_date(cert, now):
            return Failure("certificate-expired", f"certificate {cert.subject.rfc4514_string()} is not in date")
    references = {dane.host, dane.base}
    names = _names(certs[0])
    if not any(name_matches(pattern, ref) for pattern in names for ref in references):
        shown = ", ".join(names[:5]) or "none"
        return Failure("certificate-host-mismatch", f"certificate names ({shown}) do not include {dane.host}")
    return None


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> list[bytes]:
    """The certificates the server sent (DER, its own first), as they came, unverified. Python 3.13 has
    ``get_unverified_chain``; 3.10-3.12 have the same call on the private ``_sslobj``. Without either, only the
    server's certificate (enough for DANE-EE; DANE-TA then fails, never passes)."""
    if ssl_object is None:
        return []
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    certs: list[Any] = list(getter() or []) if getter is not None else []
    chain = [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in certs]  # type: ignore[attr-defined]
    if not chain:
        leaf = ssl_object.getpeercert(binary_form=True)
        chain = [leaf] if leaf else []
    return chain
