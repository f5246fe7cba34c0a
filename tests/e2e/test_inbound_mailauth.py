"""Inbound mail authentication on real deliveries: SPF/DKIM/DMARC from a real dnsmasq, one Authentication-Results."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad.queue import dkim
from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import Daemon
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq, DnsRecords

SELECTOR = "s1"


@pytest.fixture(scope="module")
def signing_key() -> tuple[bytes, str]:
    return dkim.generate_key("rsa")


@pytest.fixture
def world_dns(tmp_path: Path, signing_key: tuple[bytes, str]) -> Iterator[Dnsmasq]:
    """Senders' DNS: good.test (SPF allows 127.0.0.1, DKIM key, p=reject), strict.test (SPF -all, p=reject),
    quiet.test (SPF -all, p=quarantine) and plain.test (no records at all)."""
    records = DnsRecords()
    records.add_txt("good.test", "v=spf1 ip4:127.0.0.1 -all")
    records.add_txt(f"{SELECTOR}._domainkey.good.test", signing_key[1])
    records.add_txt("_dmarc.good.test", "v=DMARC1; p=reject")
    records.add_txt("strict.test", "v=spf1 -all")
    records.add_txt("_dmarc.strict.test", "v=DMARC1; p=reject")
    records.add_txt("quiet.test", "v=spf1 -all")
    records.add_txt("_dmarc.quiet.test", "v=DMARC1; p=quarantine")
    server = start_or_skip(tmp_path / "world-dns", records)
    yield server
    server.close()


@pytest.fixture
def mx(make_daemon: MakeDaemon, world_dns: Dnsmasq) -> Daemon:
    return provision(make_daemon(settings={"dns": {"nameservers": [world_dns.nameserver]}})).start()


def letter(sender: str, subject: str, extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@x.test>\r\nDate: Wed, 25 Nov 2026 08:00:00 +0000\r\n{extra}\r\nHello.\r\n"
    ).encode()


def send(daemon: Daemon, sender: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as client:
        client.ehlo("mail.sender.test")
        client.mail(sender)
        client.rcpt("alice@example.test")
        return client.data(raw)


def results_header(stored: bytes) -> str:
    head = stored.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").replace("\r\n\t", " ")
    fields = [line for line in head.split("\r\n") if line.lower().startswith("authentication-results:")]
    assert len(fields) == 1, fields
    return fields[0]


def test_signed_mail_passing_spf_dkim_and_dmarc(mx: Daemon, signing_key: tuple[bytes, str]) -> None:
    raw = letter("Ann <ann@good.test>", "signed")
    signed = dkim.sign(raw, "good.test", SELECTOR, signing_key[0]) + raw
    assert send(mx, "ann@good.test", signed)[0] == 250
    [stored] = mx.messages("alice@example.test")
    header = results_header(stored)
    assert header.startswith("Authentication-Results: mx.example.test;")
    assert "spf=pass smtp.mailfrom=ann@good.test" in header
    assert "dkim=pass" in header and "header.d=good.test" in header
    assert "dmarc=pass" in header and "header.from=good.test" in header
    assert stored.endswith(signed), "the message itself is kept as received"


def test_dmarc_reject_failure_is_refused_at_data(mx: Daemon) -> None:
    code, text = send(mx, "boss@strict.test", letter("Boss <boss@strict.test>", "forged"))
    assert (code, text[:5]) == (550, b"5.7.1")
    assert b"DMARC" in text
    assert mx.messages("alice@example.test") == []
    assert "result=550" in mx.log()


@pytest.mark.parametrize(
    ("from_value", "extra"),
    [
        ("Boss <boss@strict.test>, x@plain.test", ""),  # every author domain is checked (RFC 7489 §6.6.1)
        ("x@plain.test, news@quiet.test, boss@strict.test", ""),  # the strictest failure decides
        ("x@plain.test", "From: Boss <boss@strict.test>\r\n"),  # a second From field cannot pass
    ],
)
def test_dmarc_reject_applies_to_any_author_domain(mx: Daemon, from_value: str, extra: str) -> None:
    code, text = send(mx, "x@plain.test", letter(from_value, "several-authors", extra))
    assert (code, text[:5]) == (550, b"5.7.1")
    assert b"strict.test" in text
    assert mx.messages("alice@example.test") == []
    assert mx.messages("alice@example.test", "Junk") == []


def test_dmarc_quarantine_failure_goes_to_junk(mx: Daemon) -> None:
    assert send(mx, "news@quiet.test", letter("news@quiet.test", "quarantined"))[0] == 250
    assert mx.messages("alice@example.test") == []
    [junk] = mx.messages("alice@example.test", "Junk")
    assert "dmarc=fail" in results_header(junk)


def test_dmarc_reject_can_be_turned_into_junk(make_daemon: MakeDaemon, world_dns: Dnsmasq) -> None:
    settings = {"dns": {"nameservers": [world_dns.nameserver]}, "mailauth": {"dmarc_reject": False}}
    daemon = provision(make_daemon(settings=settings)).start()
    assert send(daemon, "boss@strict.test", letter("boss@strict.test", "to-junk"))[0] == 250
    assert len(daemon.messages("alice@example.test", "Junk")) == 1


def test_forged_results_for_our_host_are_removed(mx: Daemon) -> None:
    forged = "Authentication-Results: mx.example.test; spf=pass; dkim=pass; dmarc=pass\r\n"
    quoted = 'Authentication-Results: "MX.example\\.test"; dkim=pass header.d=bank.test\r\n'  # quoted-pair
    other = "Authentication-Results: other.test; spf=fail\r\n"
    assert send(mx, "x@plain.test", letter("x@plain.test", "forged-ar", forged + quoted + other))[0] == 250
    [stored] = mx.messages("alice@example.test")
    assert b"mx.example.test; spf=pass; dkim=pass" not in stored
    assert b"bank.test" not in stored
    assert b"Authentication-Results: other.test; spf=fail" in stored
    header = results_header(stored.replace(other.encode(), b""))
    assert "spf=none" in header and "dmarc=none" in header


def test_dns_failure_is_temperror_and_mail_is_still_delivered(make_daemon: MakeDaemon) -> None:
    # Nothing listens on this port: every lookup times out.
    settings = {"dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.3}}
    daemon = provision(make_daemon(settings=settings)).start()
    assert send(daemon, "someone@good.test", letter("someone@good.test", "dns-down"))[0] == 250
    [stored] = daemon.messages("alice@example.test")
    assert "spf=temperror" in results_header(stored)


def test_verification_can_be_turned_off(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"mailauth": {"verify": False}})).start()
    assert send(daemon, "x@plain.test", letter("x@plain.test", "unchecked"))[0] == 250
    [stored] = daemon.messages("alice@example.test")
    assert b"Authentication-Results" not in stored
