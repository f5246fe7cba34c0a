"""DANE's certificate checks (RFC 7672 §3.1, RFC 6698 §2.1) on certificate chains made here."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from relentad.queue import dane
from relentad.queue.dane import Dane, Tlsa

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def make_cert(
    name: str,
    key: Key,
    issuer: tuple[x509.Name, Key] | None = None,
    *,
    ca: bool = False,
    sans: tuple[str, ...] = (),
    valid: tuple[datetime.datetime, datetime.datetime] = (NOW - DAY, NOW + DAY),
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


CA_KEY, LEAF_KEY, OTHER_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
CA = make_cert("Test CA", CA_KEY, ca=True)
OTHER_CA = make_cert("Other CA", OTHER_KEY, ca=True)
LEAF = make_cert("mx.example.org", LEAF_KEY, (CA.subject, CA_KEY), sans=("mx.example.org",))
EXPIRED = make_cert("mx.example.org", LEAF_KEY, (CA.subject, CA_KEY), sans=("x",), valid=(NOW - 3 * DAY, NOW - DAY))
WILDCARD = make_cert("w", LEAF_KEY, (CA.subject, CA_KEY), sans=("*.example.org",))
CN_ONLY = make_cert("mx.example.org", LEAF_KEY, (CA.subject, CA_KEY))


def records(*found: Tlsa) -> Dane:
    return Dane("mx.example.org", "mx.example.org", found)


@pytest.mark.parametrize(
    "record",
    [
        Tlsa(3, 1, 1, hashlib.sha256(spki(LEAF)).digest()),
        Tlsa(3, 1, 2, hashlib.sha512(spki(LEAF)).digest()),
        Tlsa(3, 1, 0, spki(LEAF)),
        Tlsa(3, 0, 1, hashlib.sha256(der(LEAF)).digest()),
        Tlsa(3, 0, 0, der(LEAF)),
    ],
)
def test_dane_ee_matches_the_server_certificate_or_key(record: Tlsa) -> None:
    assert record.usable
    assert dane.check(records(record), [der(LEAF)]) is None


def test_dane_ee_ignores_names_and_dates() -> None:
    assert dane.check(records(dane.record_for(der(EXPIRED))), [der(EXPIRED)]) is None
    assert dane.record_for(der(EXPIRED)) == dane.record_for(der(LEAF)), "the same key: the same 3 1 1 record"


def test_a_mismatch_is_tlsa_invalid() -> None:
    failure = dane.check(records(Tlsa(3, 1, 1, bytes(32))), [der(LEAF), der(CA)])
    assert failure == dane.Failure("tlsa-invalid", "the certificate matches none of the TLSA records")
    assert dane.check(records(Tlsa(3, 1, 1, bytes(32))), []) == dane.Failure(
        "validation-failure", "the server sent no certificate"
    )


def test_dane_ta_verifies_the_chain_up_to_the_anchor_and_the_name() -> None:
    by_cert = records(Tlsa(2, 0, 1, hashlib.sha256(der(CA)).digest()))
    by_key = records(Tlsa(2, 1, 1, hashlib.sha256(spki(CA)).digest()))
    assert dane.check(by_cert, [der(LEAF), der(CA)]) is None
    assert dane.check(by_key, [der(LEAF), der(OTHER_CA), der(CA)]) is None, "the path is found among what was sent"
    assert dane.check(by_cert, [der(WILDCARD), der(CA)]) is None
    assert dane.check(by_cert, [der(CN_ONLY), der(CA)]) is None, "the CN counts without any subjectAltName"
    assert dane.check(by_cert, [der(LEAF)]) == dane.Failure(
        "tlsa-invalid", "no certificate of the chain matches a TLSA record"
    ), "the anchor must come along"
    other = records(Tlsa(2, 0, 1, hashlib.sha256(der(OTHER_CA)).digest()))
    assert dane.check(other, [der(LEAF), der(OTHER_CA)]) is not None, "sent, but not the issuer"
    self_anchor = records(Tlsa(2, 0, 1, hashlib.sha256(der(LEAF)).digest()))
    assert dane.check(self_anchor, [der(LEAF)]) is not None, "the server certificate is no trust anchor"
    bare_key = records(Tlsa(2, 1, 0, spki(CA)))
    assert dane.check(bare_key, [der(LEAF)]) is None, "a bare key need not come along (RFC 7671 §5.2.3)"
    assert dane.check(records(Tlsa(2, 1, 0, spki(OTHER_CA))), [der(LEAF)]) is not None
    failure = dane.check(bare_key, [der(EXPIRED)])
    assert failure is not None and failure.result == "certificate-expired"
    elsewhere = Dane("mx.example.net", "mx.example.net", by_cert.records)
    failure = dane.check(elsewhere, [der(LEAF), der(CA)])
    assert failure is not None and failure.result == "certificate-host-mismatch"
    failure = dane.check(by_cert, [der(EXPIRED), der(CA)])
    assert failure is not None and failure.result == "certificate-expired"


def test_a_bare_rsa_key_as_trust_anchor() -> None:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = make_cert("RSA CA", ca_key, ca=True)
    leaf = make_cert("mx", LEAF_KEY, (ca.subject, ca_key), sans=("mx.example.org",))
    assert dane.check(records(Tlsa(2, 1, 0, spki(ca))), [der(leaf)]) is None
    assert dane.check(records(Tlsa(2, 1, 0, spki(CA))), [der(leaf)]) is not None


def test_dane_ta_checks_names_dane_ee_passes_first() -> None:
    ee = dane.record_for(der(LEAF))
    ta = Tlsa(2, 0, 1, hashlib.sha256(der(OTHER_CA)).digest())
    assert dane.check(Dane("elsewhere.example", "elsewhere.example", (ta, ee)), [der(LEAF)]) is None


@pytest.mark.parametrize(
    ("record", "usable"),
    [
        (Tlsa(0, 0, 1, bytes(32)), False),  # PKIX-TA: unusable for SMTP (RFC 7672 §3.1.3)
        (Tlsa(1, 1, 1, bytes(32)), False),  # PKIX-EE
        (Tlsa(3, 1, 1, bytes(31)), False),  # a digest of the wrong length
        (Tlsa(3, 1, 2, bytes(32)), False),
        (Tlsa(3, 2, 1, bytes(32)), False),  # unknown selector
        (Tlsa(3, 1, 3, bytes(32)), False),  # unknown matching type
        (Tlsa(3, 1, 0, b""), False),
        (Tlsa(2, 1, 2, bytes(64)), True),
        (Tlsa(3, 0, 1, bytes(32)), True),
    ],
)
def test_usable_records(record: Tlsa, usable: bool) -> None:
    assert record.usable is usable


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("mx.example.org", "MX.Example.org.", True),
        ("*.example.org", "mx.example.org", True),
        ("*.example.org", "example.org", False),
        ("*.example.org", "a.mx.example.org", False),
        ("*.org", "example.org", False),
        ("mx*.example.org", "mx1.example.org", False),
    ],
)
def test_name_matches(pattern: str, name: str, matches: bool) -> None:
    assert dane.name_matches(pattern, name) is matches


def test_garbage_from_the_server_is_a_failure_not_an_exception() -> None:
    garbage = b"0\x82\x01\x00not a certificate"
    for record in (Tlsa(3, 1, 1, bytes(32)), Tlsa(2, 0, 1, bytes(32))):
        failure = dane.check(records(record), [garbage, garbage])
        assert failure is not None and failure.result == "validation-failure"
    ta = records(Tlsa(2, 0, 1, hashlib.sha256(der(CA)).digest()))
    failure = dane.check(ta, [der(LEAF), garbage])
    assert failure is not None and failure.result == "validation-failure"


def test_peer_chain_without_a_session() -> None:
    assert dane.peer_chain(None) == []


def test_only_unusable_records_require_tls_but_no_certificate() -> None:
    """RFC 7672 §2.2: a secure RRset of unusable records promises TLS; any certificate will do, and the report
    names the records published."""
    pkix = Tlsa(1, 1, 1, bytes(32))
    unusable = Dane("mx.example.org", "mx.example.org", (), (pkix,))
    assert dane.check(unusable, [der(OTHER_CA)]) is None
    assert unusable.text() == pkix.text()


def test_a_whole_trust_anchor_certificate_need_not_be_sent() -> None:
    """RFC 7671 §5.2.3: with the anchor in full in the record (2 0 0, like 2 1 0) the server may leave it out."""
    assert dane.check(records(Tlsa(2, 0, 0, der(CA))), [der(LEAF)]) is None
    assert dane.check(records(Tlsa(2, 0, 0, der(OTHER_CA))), [der(LEAF)]) is not None
    garbage = Tlsa(2, 0, 0, b"not a certificate")
    assert dane.check(records(garbage, Tlsa(2, 0, 0, der(CA))), [der(LEAF)]) is None, "a bad record is skipped"
