"""The submission header fixes (relentad.stamping): pure bytes in, bytes out."""

from __future__ import annotations

import email
import email.utils
import functools

import dkim as dkimpy
import pytest
from aiosmtplib.protocol import LINE_ENDINGS_REGEX

from relentad import stamping
from relentad.errors import SMTPReply
from relentad.queue import dkim

RECEIVED = b"Received: from laptop by mx.a.test (relentad) with ESMTPSA id x; Wed, 25 Nov 2026 08:00:00 +0000\r\n"
OWNED = {"alice@a.test", "sales@a.test"}


def prepare(raw: bytes, mail_from: str = "alice@a.test") -> stamping.Prepared:
    return stamping.prepare(
        raw,
        mail_from=mail_from,
        login="alice@a.test",
        owns=lambda address: address.lower() in OWNED,
        received=RECEIVED,
        hostname="mx.a.test",
        now=1_790_000_000.0,
    )


def test_adds_message_id_date_and_received_and_strips_bcc() -> None:
    raw = b"From: Alice <alice@a.test>\r\nTo: b@b.test\r\nBcc: hidden@b.test,\r\n  other@b.test\r\n"
    raw += b"Subject: x\r\n\r\nBody\r\n"
    prepared = prepare(raw)
    assert prepared.raw.startswith(RECEIVED)
    parsed = email.message_from_bytes(prepared.raw)
    assert parsed["Bcc"] is None
    assert parsed["Message-ID"].startswith("<") and parsed["Message-ID"].endswith("@mx.a.test>")
    assert email.utils.parsedate_to_datetime(parsed["Date"]).timestamp() == 1_790_000_000.0
    assert parsed["Date"] == "Mon, 21 Sep 2026 14:13:20 +0000", "UTC is +0000 (RFC 5322 §3.3), not -0000"
    assert parsed["Sender"] is None
    assert prepared.raw.endswith(b"\r\n\r\nBody\r\n")
    assert prepared.from_address == "alice@a.test"


def test_keeps_fields_byte_for_byte() -> None:
    raw = b"From: alice@a.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\tfolded\r\nMessage-ID: <m@x>\r\n"
    raw += b"Date: 1 Jan 26 9:00 EST\r\n\r\nB"
    prepared = prepare(raw)
    assert prepared.raw == RECEIVED + raw + b"\r\n", "kept as written, only a final CRLF added"


def test_sender_added_when_envelope_differs() -> None:
    prepared = prepare(
        b"From: Sales <sales@a.test>\r\nMessage-ID: <m@x>\r\nDate: Thu, 1 Jan 2026 09:00:00 +0100\r\n\r\nB"
    )
    assert b"\r\nSender: <alice@a.test>\r\n" in prepared.raw


@pytest.mark.parametrize(
    ("mail_from", "author", "sender"),
    [
        ("alice@a.test", "alice@a.test", None),
        ("alice@a.test", "Sales <sales@a.test>", b"<alice@a.test>"),
        ("alice@a.test", "alice@a.test, sales@a.test", b"<alice@a.test>"),
        ("sales@a.test", "alice@a.test, sales@a.test", b"<sales@a.test>"),
        ("", "sales@a.test", None),
        ("", "alice@a.test, sales@a.test", b"<alice@a.test>"),
    ],
)
def test_sender_whenever_rfc5322_requires_it(mail_from: str, author: str, sender: bytes | None) -> None:
    """RFC 5322 §3.6.2: more than one author needs a Sender, also with the null envelope sender (the login's)."""
    raw = f"From: {author}\r\nMessage-ID: <m@x>\r\n\r\nB\r\n".encode()
    added = email.message_from_bytes(prepare(raw, mail_from=mail_from).raw)["Sender"]
    assert (added.encode() if added else None) == sender


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"From: carol@a.test\r\n\r\nB", 553),
        (b"From: alice@a.test, carol@a.test\r\n\r\nB", 553),
        (b"From: alice@a.test\r\nSender: carol@a.test\r\n\r\nB", 553),
        (b"To: b@b.test\r\n\r\nB", 550),
        (b"From: alice@a.test\r\nFrom: alice@a.test\r\n\r\nB", 550),
        (b"From: undisclosed:;\r\n\r\nB", 550),
        (b"From: alice@a.test\r\nDate: 1 Jan 2026 09:00 +0000\r\nDate: 1 Jan 2026 09:00 +0000\r\n\r\nB", 550),
        (b"From: alice@a.test\r\nDate: garbage\r\n\r\nB", 550),
        (b"From: alice@a.test\r\nDate: Thu, 32 Jan 2026 09:00:00 +0000\r\n\r\nB", 550),
        (b"From: alice@a.test\r\nMessage-ID: <a@x>\r\nMessage-ID: <b@x>\r\n\r\nB", 550),
        (b"From: alice@a.test\r\nSender: alice@a.test\r\nSender: sales@a.test\r\n\r\nB", 550),
        (b"From: alice@a.test\r\nSender: alice@a.test, sales@a.test\r\n\r\nB", 550),
        (b"From: alice@a.test\r\nSender: group:;\r\n\r\nB", 550),
    ],
)
def test_refusals(raw: bytes, code: int) -> None:
    with pytest.raises(SMTPReply) as refused:
        prepare(raw)
    assert refused.value.code == code
    assert refused.value.enhanced == ("5.7.1" if code == 553 else "5.6.0")
    assert refused.value.reply.isascii()


def test_bare_lf_and_missing_body() -> None:
    prepared = prepare(b"From: alice@a.test\nBcc: x@y\nSubject: s\n")
    assert b"Bcc" not in prepared.raw
    assert prepared.raw.endswith(b"\r\n\r\n")
    fields, rest = stamping.split(b"From: alice@a.test\nSubject: s\n\nbody\n")
    assert [f.name for f in fields] == ["from", "subject"] and rest == b"\nbody\n"


@functools.cache
def rsa_key() -> tuple[bytes, str]:
    return dkim.generate_key("rsa")


def on_the_wire(raw: bytes) -> bytes:
    """What aiosmtplib (the queue's client) sends for ``raw``: every CR, LF and CRLF as CRLF, a final CRLF."""
    sent = LINE_ENDINGS_REGEX.sub(b"\r\n", raw)
    return sent if sent.endswith(b"\r\n") else sent + b"\r\n"


def test_a_bare_cr_cannot_hide_a_from_field() -> None:
    """A bare CR is a line break on the wire: the From check must see the Victim's From the receiver sees."""
    raw = b"Subject: x\rFrom: Victim <victim@b.test>\r\r\nFrom: alice@a.test\r\nTo: b@b.test\r\n\r\nBody\r\n"
    with pytest.raises(SMTPReply) as refused:
        prepare(raw)
    assert (refused.value.code, refused.value.enhanced) == (553, "5.7.1")
    assert "victim@b.test" in refused.value.text


@pytest.mark.parametrize(
    "raw",
    [
        b"From: alice@a.test\r\nTo: b@b.test\r\nSubject: hi\r\n\r\nbo\rdy\r\n",
        b"From: alice@a.test\r\nTo: b@b.test\r\nSubject: h\r i\r\n\r\nbody\r\n",
        b"From: alice@a.test\nTo: b@b.test\nSubject: hi\n\nab\r\r\ncd\n\n",
        b"From: alice@a.test\r\nTo: b@b.test\r\nSubject: hi\r\n\r\nno final line ending",
        b"From : alice@a.test\r\nTo\t: b@b.test\r\nSubject : hi\r\n\r\nbody\r\n",
    ],
)
def test_what_is_signed_is_what_is_sent(raw: bytes) -> None:
    prepared = prepare(raw)
    assert prepared.raw == on_the_wire(prepared.raw), "no bare CR or LF left, ends in CRLF"
    pem, record = rsa_key()
    signed = dkim.sign(prepared.raw, "a.test", "s1", pem) + prepared.raw

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return record.encode() if name.rstrip(b".") == b"s1._domainkey.a.test" else b""

    assert dkimpy.verify(on_the_wire(signed), dnsfunc=dnsfunc)


def test_normalize_line_endings() -> None:
    assert stamping.normalize_line_endings(b"a\rb\nc\r\nd\r\r\ne\n\rf") == b"a\r\nb\r\nc\r\nd\r\n\r\ne\r\n\r\nf\r\n"
    same = b"a\r\nb\r\n"
    assert stamping.normalize_line_endings(same) is same
    assert stamping.normalize_line_endings(b"") == b""


def test_space_before_the_colon_is_dropped() -> None:
    """RFC 5322 §4.5.8 allows ``Subject : hi``; dkimpy cannot parse it, ``Subject: hi`` is the same field."""
    prepared = prepare(b"From : alice@a.test\r\nBcc \t: x@b.test\r\nSubject \t: hi : there\r\n\r\nB\r\n")
    assert prepared.raw.startswith(RECEIVED + b"From: alice@a.test\r\nSubject: hi : there\r\n")
    assert b"Bcc" not in prepared.raw


@pytest.mark.parametrize(
    "raw",
    [
        b"From: alice@a.test\r\nGarbage line\r\n\r\nB\r\n",
        b"From alice@a.test Mon Jan  1 00:00:00 2024\r\nFrom: alice@a.test\r\n\r\nB\r\n",
        b" folded: nothing to fold into\r\nFrom: alice@a.test\r\n\r\nB\r\n",
        b"From: alice@a.test\r\nSubject: h\ri\r\n\r\nB\r\n",
        b"From: alice@a.test\r\nX-\xc3\xa9t\xc3\xa9: 8-bit name\r\n\r\nB\r\n",
    ],
)
def test_header_line_without_name_and_colon_is_refused(raw: bytes) -> None:
    with pytest.raises(SMTPReply) as refused:
        prepare(raw)
    assert (refused.value.code, refused.value.enhanced) == (550, "5.6.0")
    assert "\r" not in refused.value.text and "\n" not in refused.value.text
