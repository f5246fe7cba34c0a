"""FETCH over real sockets: flags, dates, sizes, ENVELOPE, BODYSTRUCTURE, sections, partials, BINARY, \\Seen,
messages delivered by SMTP (trace prefix) and malformed mail that must never break a FETCH."""

from __future__ import annotations

import imaplib
import re
import smtplib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import imapclient
import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, Raw, imap_daemon, message

MULTIPART = (
    b"From: =?utf-8?q?J=C3=B6rg?= <jorg@elsewhere.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: report\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello there\r\n"
    b"--b1\r\n"
    b'Content-Type: application/octet-stream; name="data.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQ=\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: inner@elsewhere.test\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--b1--\r\n"
)

MALFORMED = (
    b"From: <<<broken@@\r\n"
    b"Sender: \x00\xff\xfe\r\n"
    b"Subject: =?x-unknown?B?!!!?= \xe9t\xe9\r\n"
    b"Content-Type: multipart/mixed; boundary=\r\n"
    b"Date: yesterday-ish\r\n"
    b"\r\n"
    b"--\r\nno real parts here\r\n"
)


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-fetch"), dns_server.nameserver)
    conn = imaplib.IMAP4(daemon.host, daemon.imap_port)
    conn.login(ALICE, PASSWORD)
    conn.append("INBOX", "(\\Flagged $Work)", '"01-Feb-2025 10:00:00 +0100"', message("plain", "Line one\r\n"))
    conn.append("INBOX", None, None, MULTIPART)
    conn.append("INBOX", None, None, MALFORMED)
    conn.append("INBOX", None, None, b"Subject: bare\nFrom: lf@elsewhere.test\n\nbare LF body\n")
    conn.logout()
    yield daemon
    daemon.stop()


def fetch(daemon: Daemon, query: str) -> dict[int, dict[bytes, object]]:
    with imapclient.IMAPClient(daemon.host, port=daemon.imap_port, ssl=False) as conn:
        conn.login(ALICE, PASSWORD)
        conn.normalise_times = False
        conn.select_folder("INBOX", readonly=True)
        return conn.fetch(conn.search("ALL"), query.strip("()").split())  # type: ignore[no-any-return]


def test_flags_dates_sizes_and_body_match(relentad: Daemon) -> None:
    result = fetch(relentad, "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert sorted(result) == [1, 2, 3, 4]
    first = result[1]
    assert set(first[b"FLAGS"]) == {b"\\Flagged", b"$Work", b"\\Recent"}  # type: ignore[arg-type]
    moment = datetime(2025, 2, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    assert first[b"INTERNALDATE"] == moment
    for data in result.values():
        assert data[b"RFC822.SIZE"] == len(data[b"BODY[]"])  # type: ignore[arg-type]
    assert result[4][b"BODY[]"] == b"Subject: bare\r\nFrom: lf@elsewhere.test\r\n\r\nbare LF body\r\n"


def test_envelope_and_bodystructure(relentad: Daemon) -> None:
    result = fetch(relentad, "(ENVELOPE BODYSTRUCTURE)")
    envelope = result[2][b"ENVELOPE"]
    assert envelope.subject == b"report"  # type: ignore[attr-defined]
    assert envelope.from_[0].mailbox == b"jorg"  # type: ignore[attr-defined]
    structure = result[2][b"BODYSTRUCTURE"]
    assert structure.is_multipart  # type: ignore[attr-defined]
    parts, subtype = structure[0], structure[1]  # type: ignore[index]
    assert subtype.lower() == b"mixed" and len(parts) == 3


def test_sections_partials_and_binary(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("s", "EXAMINE INBOX")
    text = b"".join(raw.command("a", "FETCH 2 (BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2])"))
    assert b'BODY[1] "Hello there"' in text
    assert b"BINARY[2] ~{5}\r\n\x00\x01\x02\x03\x04" in text
    assert b"BINARY.SIZE[2] 5" in text
    assert b"BODY[2.MIME] {" in text and b"Content-Transfer-Encoding: base64" in text
    text = b"".join(raw.command("b", "FETCH 2 (BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[3.1])"))
    assert b"Subject: inner" in text and b'BODY[3.TEXT] "inner body"' in text
    text = b"".join(raw.command("c", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT DATE)] BODY.PEEK[TEXT]<5.3>)"))
    assert b"Subject: plain\r\nDate: Wed, 25 Nov 2026 08:00:00 +0000\r\n\r\n" in text
    assert b'BODY[TEXT]<5> "one"' in text
    text = b"".join(raw.command("d", "FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT DATE MESSAGE-ID TO)])"))
    assert b"From: Friend <friend@elsewhere.test>\r\n\r\n" in text
    assert raw.command("e", "FETCH 9 FLAGS")[-1].startswith(b"e BAD")
    assert raw.command("f", "UID FETCH 99 FLAGS")[-1].startswith(b"f OK")


def test_malformed_mail_never_breaks_fetch(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("s", "EXAMINE INBOX")
    reply = raw.command("a", "FETCH 3 (ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE BODY.PEEK[1] BINARY.PEEK[1])")
    assert reply[-1].startswith(b"a OK"), reply
    assert raw.command("b", "FETCH 1:* FULL")[-1].startswith(b"b OK")
    assert raw.command("c", "NOOP")[-1].startswith(b"c OK")
    assert "Traceback" not in relentad.log()


def test_body_fetch_sets_seen_unless_peek(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("s", "SELECT INBOX")
    reply = b"".join(raw.command("a", "FETCH 2 BODY.PEEK[TEXT]"))
    assert b"\\Seen" not in reply
    reply = b"".join(raw.command("b", "FETCH 2 BODY[1]"))
    assert re.search(rb"FLAGS \(\\Seen \\Recent\)", reply), reply
    reply = b"".join(raw.command("c", "FETCH 2 FLAGS"))
    assert b"\\Seen" in reply
    raw.command("d", "STORE 2 -FLAGS.SILENT (\\Seen)")


def test_smtp_delivered_message_includes_trace_fields(relentad: Daemon) -> None:
    with smtplib.SMTP(relentad.host, relentad.smtp_port, timeout=15) as smtp:
        smtp.sendmail("friend@elsewhere.test", ["bob@example.test"], message("via smtp"))
    with imapclient.IMAPClient(relentad.host, port=relentad.imap_port, ssl=False) as conn:
        conn.login("bob@example.test", PASSWORD)
        conn.select_folder("INBOX")
        uid = conn.search(["SUBJECT", "via smtp"])[0]
        data = conn.fetch([uid], ["BODY.PEEK[]", "RFC822.SIZE", "BODY.PEEK[HEADER.FIELDS (DELIVERED-TO)]", "ENVELOPE"])[
            uid
        ]
    stored = relentad.messages("bob@example.test")[-1]
    assert data[b"BODY[]"] == stored
    assert data[b"RFC822.SIZE"] == len(stored)
    assert data[b"BODY[HEADER.FIELDS (DELIVERED-TO)]"] == b"Delivered-To: bob@example.test\r\n\r\n"
    assert data[b"ENVELOPE"].subject == b"via smtp"
