"""DMARC and TLS reports mailed to postmaster@ over SMTP on the real daemon: recorded, summed up by `relentad
reports`, and the messages delivered to postmaster's INBOX as any other mail (read over IMAP)."""

from __future__ import annotations

import email
import email.policy
import gzip
import imaplib
import json
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad.authreports import dmarc
from tests.e2e.conftest import MakeDaemon
from tests.support import reports as samples
from tests.support.daemon import Daemon, free_port
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq, DnsRecords
from tests.support.imap import client

POSTMASTER = "postmaster@example.test"


@pytest.fixture
def world_dns(tmp_path: Path) -> Iterator[Dnsmasq]:
    """reporter.test sends from 127.0.0.1 (SPF) with DMARC p=reject; forger.test's SPF allows nobody (p=none)."""
    records = DnsRecords()
    records.add_txt("reporter.test", "v=spf1 ip4:127.0.0.1 -all")
    records.add_txt("_dmarc.reporter.test", "v=DMARC1; p=reject")
    records.add_txt("forger.test", "v=spf1 -all")
    records.add_txt("_dmarc.forger.test", "v=DMARC1; p=none")
    server = start_or_skip(tmp_path / "world-dns", records)
    yield server
    server.close()


@pytest.fixture
def mx(make_daemon: MakeDaemon, world_dns: Dnsmasq) -> Daemon:
    settings = {
        "dns": {"nameservers": [world_dns.nameserver]},
        "auth": {"plaintext_loopback": True},
        "reports": {"max_size": 1_000_000},
    }
    daemon = make_daemon(settings=settings, imap=True)
    daemon.add_domain("example.test")
    daemon.add_user(POSTMASTER)
    daemon.add_user("alice@example.test")
    return daemon.start()


def send(daemon: Daemon, sender: str, raw: bytes, rcpt: str = POSTMASTER) -> int:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as smtp:
        smtp.ehlo("mail.reporter.test")
        smtp.mail(sender)
        smtp.rcpt(rcpt)
        return smtp.data(raw)[0]


def inbox(daemon: Daemon, user: str = POSTMASTER) -> list[bytes]:
    """The Subject fields of ``user``'s INBOX, read over IMAP."""
    imap = client(daemon, user)
    try:
        imap.select("INBOX", readonly=True)
        _, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [part[1].strip() for part in data if isinstance(part, tuple)]
    except imaplib.IMAP4.error:
        return []
    finally:
        imap.logout()


def report_json(daemon: Daemon, kind: str, *args: str) -> list[dict[str, object]]:
    return json.loads(daemon.cli("reports", kind, "--json", *args).stdout)  # type: ignore[no-any-return]


def test_reports_mailed_to_postmaster_are_recorded_and_delivered(mx: Daemon) -> None:
    sender = "noreply-dmarc@reporter.test"
    google = samples.gz(samples.google_xml("example.test"))
    assert send(mx, sender, samples.dmarc_mail(google, domain="example.test", sender=sender)) == 250
    microsoft = samples.zipped(samples.microsoft_xml("example.test"))
    raw = samples.dmarc_mail(microsoft, domain="example.test", sender=sender, ctype="application/zip")
    assert send(mx, sender, raw) == 250
    assert send(mx, sender, samples.dmarc_mail(google, domain="example.test", sender=sender)) == 250  # again
    assert send(mx, "tlsrpt@reporter.test", samples.tls_mail(samples.tls_report("example.test"), sender=sender)) == 250

    [dmarc] = report_json(mx, "dmarc")
    assert (dmarc["domain"], dmarc["reports"], dmarc["messages"], dmarc["passed"], dmarc["failed"]) == (
        "example.test",
        2,
        17,
        14,
        3,
    )
    spoofer = dmarc["sources"][0]  # type: ignore[index]
    assert (spoofer["source_ip"], spoofer["failed"], spoofer["dispositions"]) == ("198.51.100.7", 3, {"reject": 3})
    [tls] = report_json(mx, "tls")
    assert (tls["domain"], tls["successes"], tls["failures"]) == ("example.test", 5326, 303)
    text = mx.cli("reports", "dmarc", "--domain", "example.test").stdout
    assert "example.test: 17 message(s) in 2 report(s)" in text and "198.51.100.7" in text

    doctor = mx.cli("doctor", check=False).stdout
    assert "WARN TLS reports example.test: 303 of 5629 TLS session(s) to the MX failed" in doctor
    assert "OK   DMARC reports example.test: 14 of 17 message(s) passed DMARC" in doctor

    subjects = inbox(mx)
    assert len(subjects) == 4, "every report mail is delivered as usual, duplicates too"
    assert all(b"Report" in s for s in subjects)


def test_reports_not_recorded_for_other_domains_forgers_or_other_recipients(mx: Daemon) -> None:
    sender = "noreply-dmarc@reporter.test"
    other = samples.gz(samples.google_xml("not-hosted.test"))
    assert send(mx, sender, samples.dmarc_mail(other, domain="not-hosted.test", sender=sender)) == 250
    forged = samples.gz(samples.google_xml("example.test", "forged-1"))
    assert (
        send(mx, "dmarc@forger.test", samples.dmarc_mail(forged, domain="example.test", sender="x@forger.test")) == 250
    )
    to_alice = samples.dmarc_mail(samples.gz(samples.google_xml("example.test")), domain="example.test", sender=sender)
    assert send(mx, sender, to_alice, rcpt="alice@example.test") == 250
    bomb = gzip.compress(b"<" + b" " * 3_000_000)
    assert send(mx, sender, samples.dmarc_mail(bomb, domain="example.test", sender=sender)) == 250

    [dmarc] = report_json(mx, "dmarc")
    assert (dmarc["domain"], dmarc["reports"]) == ("example.test", 0)  # only the bomb, recorded as unread
    [unread] = dmarc["unread"]  # type: ignore[misc]
    assert "larger than 1000000 bytes uncompressed" in unread["error"]
    assert "not read: DMARC fail for forger.test" in mx.log()
    assert "not-hosted.test is not hosted here" in mx.log()
    assert len(inbox(mx)) == 3 and len(inbox(mx, "alice@example.test")) == 1
    assert "Traceback" not in mx.log()


def test_reports_cli_errors_are_one_line(mx: Daemon) -> None:
    assert report_json(mx, "tls") == []
    assert mx.cli("reports", "dmarc").stdout.strip() == "no DMARC reports in the last 7 day(s)"
    bad = mx.cli("reports", "dmarc", "--domain", "not a domain", check=False)
    assert (bad.returncode, bad.stderr.strip()) == (1, "Error: not a domain name: 'not a domain'")
    days = mx.cli("reports", "tls", "--days", "0", check=False)
    assert days.returncode == 2 and len(days.stderr.strip().splitlines()) == 1


@pytest.fixture
def sender_dns(tmp_path: Path) -> Iterator[Dnsmasq]:
    """good.test asks for reports at rua.test (which agrees by DNS) and at nowhere.test (which does not); strict.test
    (SPF allows nobody, p=reject) at its own postmaster."""
    records = DnsRecords()
    records.add_txt("good.test", "v=spf1 ip4:127.0.0.1 -all")
    records.add_txt("_dmarc.good.test", "v=DMARC1; p=reject; rua=mailto:agg@rua.test,mailto:agg@nowhere.test")
    records.add_txt("good.test._report._dmarc.rua.test", "v=DMARC1")
    records.add_txt("strict.test", "v=spf1 -all")
    records.add_txt("_dmarc.strict.test", "v=DMARC1; p=reject; rua=mailto:dmarc@strict.test")
    records.add_txt("quiet.test", "v=spf1 ip4:127.0.0.1 -all")
    records.add_txt("_dmarc.quiet.test", "v=DMARC1; p=none")  # asks for no reports
    server = start_or_skip(tmp_path / "sender-dns", records)
    yield server
    server.close()


def test_dmarc_reports_are_sent_when_asked_for(make_daemon: MakeDaemon, sender_dns: Dnsmasq) -> None:
    settings = {
        "dns": {"nameservers": [sender_dns.nameserver]},
        "dmarc": {"send_reports": True, "reporter": "dmarc-reports@example.test"},
        "queue": {"smarthost": f"127.0.0.1:{free_port()}"},  # nobody listens: the reports stay queued
    }
    daemon = make_daemon(settings=settings)
    daemon.add_domain("example.test")
    daemon.add_user("alice@example.test")
    daemon.cli("dkim", "generate", "example.test", "--activate")
    daemon.start()
    for sender in ("ann@good.test", "bob@good.test", "x@quiet.test"):
        assert send(daemon, sender, letter(sender), rcpt="alice@example.test") == 250
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as smtp:
        smtp.ehlo("mail.sender.test")
        smtp.mail("boss@strict.test")
        smtp.rcpt("alice@example.test")
        assert smtp.data(letter("boss@strict.test"))[0] == 550
    assert len(daemon.query("SELECT * FROM dmarc_evaluations")) == 3

    out = daemon.cli("reports", "send").stdout.splitlines()
    assert sorted(out) == [
        "DMARC report for good.test queued to agg@rua.test",
        "DMARC report for strict.test queued to dmarc@strict.test",
    ]
    assert daemon.query("SELECT * FROM dmarc_evaluations") == []
    queued = {
        row["transaction_id"]: bytes(row["data"])
        for row in daemon.query("SELECT transaction_id, data FROM queue_messages")
    }
    reports = {}
    for raw in queued.values():
        assert raw.startswith(b"DKIM-Signature:") and b"d=example.test" in raw.split(b"\r\n\r\n")[0]
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        [attachment] = list(msg.iter_attachments())
        report = dmarc.parse(gzip.decompress(attachment.get_content()))
        reports[report.domain] = report
    good, strict = reports["good.test"], reports["strict.test"]
    assert [(r.source_ip, r.count, r.disposition, r.spf) for r in good.records] == [("127.0.0.1", 2, "none", "pass")]
    assert [(r.source_ip, r.count, r.disposition, r.spf) for r in strict.records] == [
        ("127.0.0.1", 1, "reject", "fail")
    ]
    assert "Traceback" not in daemon.log()
    assert daemon.cli("reports", "send").stdout.strip() == "no DMARC report to send"


def test_reports_send_is_refused_while_off(mx: Daemon) -> None:
    result = mx.cli("reports", "send", check=False)
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "Error: [dmarc] and [tlsrpt] send_reports are off: nothing is recorded, none to report",
    )
    assert mx.query("SELECT * FROM dmarc_evaluations") == []


def letter(sender: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.test\r\nSubject: hello\r\nMessage-ID: <{sender}.1@x.test>\r\n"
        "Date: Wed, 25 Nov 2026 08:00:00 +0000\r\n\r\nHello.\r\n"
    ).encode()
