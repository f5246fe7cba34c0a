"""relentad.queue.dkim: keys, signatures, DNS records; verified by dkimpy against keys served by dnsmasq."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim as dkimpy
import dkim.crypto
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from relentad.dns import make_sync_resolver
from relentad.queue import dkim
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq, DnsRecords

RAW = (
    b"Received: from client by mx; Wed, 25 Nov 2026 08:00:00 +0000\r\n"
    b"From: Alice <alice@a.test>\r\n"
    b"To: Bob <bob@b.test>\r\n"
    b"Cc: carol@c.test\r\n"
    b"Subject: Renewal offer\r\n"
    b"Date: Wed, 25 Nov 2026 08:00:00 +0000\r\n"
    b"Message-ID: <offer-1@a.test>\r\n"
    b"List-Unsubscribe: <mailto:unsub@a.test>\r\n"
    b"X-Mailer: relentad\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Dear Bob,\r\n\r\nyour contract ends soon.\r\n"
)

KEYS: dict[str, tuple[bytes, str]] = {}


def key(kind: dkim.KeyKind) -> tuple[bytes, str]:
    """One key per kind for the whole module: RSA generation is the slow part of these tests."""
    if kind not in KEYS:
        KEYS[kind] = dkim.generate_key(kind)
    return KEYS[kind]


@pytest.fixture
def dns_server(tmp_path: Path) -> Iterator[Dnsmasq]:
    zone = (
        DnsRecords()
        .add_txt(dkim.record_name("rsa", "a.test"), key("rsa")[1])
        .add_txt(dkim.record_name("ed", "a.test"), key("ed25519")[1])
        .add_txt(dkim.record_name("rsa-ed25519", "a.test"), key("ed25519")[1])
    )
    server = start_or_skip(tmp_path, zone)
    try:
        yield server
    finally:
        server.close()


def dnsfunc(server: Dnsmasq) -> Callable[..., bytes | None]:
    """dkimpy's TXT lookup, asking only our dnsmasq."""
    resolver = make_sync_resolver([server.nameserver], timeout=2.0)

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode(), "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    return txt


def verify_all(raw: bytes, server: Dnsmasq) -> list[bool]:
    count = len(re.findall(rb"^DKIM-Signature:", raw, re.MULTILINE | re.IGNORECASE))
    verifier = dkimpy.DKIM(raw)
    return [bool(verifier.verify(idx=i, dnsfunc=dnsfunc(server))) for i in range(count)]


def tags(header: bytes) -> dict[str, str]:
    value = re.sub(rb"\s+", b"", header.split(b":", 1)[1]).decode()
    return dict(part.split("=", 1) for part in value.split(";") if part)


def test_rsa_key_is_2048_bit_pkcs1_with_matching_record() -> None:
    pem, record = key("rsa")
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    assert record.startswith("v=DKIM1; k=rsa; p=MII")
    assert len(record) > 255  # so dnsmasq must serve it as several character-strings
    assert dkim.txt_value(pem) == record
    assert dkim.key_kind(pem) == "rsa"


def test_ed25519_key_record() -> None:
    pem, record = key("ed25519")
    assert isinstance(serialization.load_pem_private_key(pem, password=None), ed25519.Ed25519PrivateKey)
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", record)
    assert dkim.key_kind(pem) == "ed25519"


@pytest.mark.parametrize(("kind", "selector"), [("rsa", "rsa"), ("ed25519", "ed")])
def test_round_trip(dns_server: Dnsmasq, kind: dkim.KeyKind, selector: str) -> None:
    header = dkim.sign(RAW, "a.test", selector, key(kind)[0])
    assert header.startswith(b"DKIM-Signature: ") and header.endswith(b"\r\n")
    assert verify_all(header + RAW, dns_server) == [True]
    fields = tags(header)
    assert fields["a"] == ("rsa-sha256" if kind == "rsa" else "ed25519-sha256")
    assert (fields["d"], fields["s"], fields["c"]) == ("a.test", selector, "relaxed/relaxed")


def test_dual_signing_gives_two_valid_signatures(dns_server: Dnsmasq) -> None:
    headers = dkim.sign(RAW, "a.test", "rsa", key("rsa")[0], ed25519_key=key("ed25519")[0])
    assert headers.count(b"DKIM-Signature:") == 2
    assert verify_all(headers + RAW, dns_server) == [True, True]
    first = tags(headers.split(b"\r\nDKIM-Signature:")[0])
    assert (first["a"], first["s"]) == ("ed25519-sha256", "rsa-ed25519")


def test_signed_header_set_oversigns_from() -> None:
    names = tags(dkim.sign(RAW, "a.test", "rsa", key("rsa")[0]))["h"].split(":")
    assert names == [
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "mime-version",
        "content-type",
        "from",
    ]


def test_resent_fields_are_signed_when_present() -> None:
    """RFC 6376 §5.4.1: Resent-Date, -From, -To and -Cc SHOULD be signed (as often as they occur)."""
    resent = b"Resent-Date: Thu, 26 Nov 2026 08:00:00 +0000\r\nResent-From: alice@a.test\r\n"
    resent += b"Resent-To: dave@d.test\r\nResent-Cc: eve@e.test\r\nResent-Sender: alice@a.test\r\n"
    names = tags(dkim.sign(resent + RAW, "a.test", "rsa", key("rsa")[0]))["h"].split(":")
    assert names[:4] == ["resent-date", "resent-from", "resent-to", "resent-cc"]
    assert not any(name.startswith(b"resent-") for name in dkim.header_list(RAW))


def test_added_from_or_changed_subject_break_the_signature(dns_server: Dnsmasq) -> None:
    signed = dkim.sign(RAW, "a.test", "rsa", key("rsa")[0]) + RAW
    assert verify_all(signed.replace(b"Subject: Renewal", b"Subject: Urgent"), dns_server) == [False]
    second_from = signed.replace(b"X-Mailer:", b"From: ceo@a.test\r\nX-Mailer:")
    assert verify_all(second_from, dns_server) == [False]


def test_relaxed_canonicalization_survives_rewrapping(dns_server: Dnsmasq) -> None:
    signed = dkim.sign(RAW, "a.test", "rsa", key("rsa")[0]) + RAW
    rewrapped = signed.replace(b"Subject: Renewal offer", b"Subject:  Renewal\r\n\toffer").replace(
        b"ends soon.\r\n", b"ends soon.   \r\n\r\n"
    )
    assert verify_all(rewrapped, dns_server) == [True]


def test_pkcs8_rsa_keys_are_accepted(dns_server: Dnsmasq) -> None:
    private = serialization.load_pem_private_key(key("rsa")[0], password=None)
    pkcs8 = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert verify_all(dkim.sign(RAW, "a.test", "rsa", pkcs8) + RAW, dns_server) == [True]


def test_message_without_from_is_refused() -> None:
    with pytest.raises(dkim.DkimKeyError):
        dkim.sign(RAW.replace(b"From:", b"Sender:"), "a.test", "rsa", key("rsa")[0])


@pytest.mark.parametrize("line", [b"Subject : obsolete syntax", b"No colon here"])
def test_unparsable_header_is_the_messages_fault(line: bytes) -> None:
    """dkimpy's MessageFormatError becomes DkimMessageError: submission answers it 550 5.6.0, not 451 forever."""
    with pytest.raises(dkim.DkimMessageError):
        dkim.sign(RAW.replace(b"X-Mailer: relentad", line), "a.test", "rsa", key("rsa")[0])


def test_bad_keys_are_refused() -> None:
    with pytest.raises(dkim.DkimKeyError):
        dkim.sign(RAW, "a.test", "rsa", b"not a key")
    with pytest.raises(dkim.DkimKeyError):
        dkim.generate_key("dsa")  # type: ignore[arg-type]


def test_zone_line_splits_long_values() -> None:
    line = dkim.zone_line("rsa", "a.test", key("rsa")[0])
    assert line.startswith("rsa._domainkey.a.test. IN TXT ( ")
    chunks = re.findall(r'"([^"]*)"', line)
    assert len(chunks) >= 2
    assert all(len(chunk) <= 255 for chunk in chunks)
    assert "".join(chunks) == key("rsa")[1]


def test_openssl_rsa_primitive_matches_dkimpys_own() -> None:
    """RSASSA-PKCS1-v1_5 is deterministic: the fast primitive must give dkimpy's own bytes exactly."""
    parsed = dkimpy.crypto.parse_pem_private_key(key("rsa")[0])
    for data in (b"", b"x", b"a longer message body\r\n" * 50):
        ours, theirs = dkimpy.HashThrough(hashlib.sha256()), dkimpy.HashThrough(hashlib.sha256())
        ours.update(data)
        theirs.update(data)
        assert dkim.openssl_rsassa_sign(ours, parsed) == dkimpy.crypto.RSASSA_PKCS1_v1_5_sign(theirs, parsed)
