"""The submission header fixes (relentad.stamping): pure bytes in, bytes out."""

from __future__ import annotations

import email
import email.utils

import pytest

from relentad import stamping
from relentad.errors import SMTPReply

RECEIVED = b"Received: from laptop by mx.a.test (relentad) with ESMTPSA id x; Wed, 25 Nov 2026 08:00:00 +0000\r\n"
OWNED = {"alice@a.test", "sales@a.test"}


def prepare(raw: bytes, mail_from: str = "alice@a.test") -> stamping.Prepared:
    return stamping.prepare(
        raw,
        mail_from=mail_from,
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
    assert parsed["Sender"] is None
    assert prepared.raw.endswith(b"\r\n\r\nBody\r\n")
    assert prepared.from_address == "alice@a.test"


def test_keeps_fields_byte_for_byte() -> None:
    raw = (
        b"From: alice@a.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\tfolded\r\nMessage-ID: <m@x>\r\nDate: today\r\n\r\nB"
    )
    prepared = prepare(raw)
    assert prepared.raw == RECEIVED + raw


def test_sender_added_when_envelope_differs() -> None:
    prepared = prepare(b"From: Sales <sales@a.test>\r\nMessage-ID: <m@x>\r\nDate: d\r\n\r\nB")
    assert b"\r\nSender: <alice@a.test>\r\n" in prepared.raw


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"From: carol@a.test\r\n\r\nB", 553),
        (b"From: alice@a.test, carol@a.test\r\n\r\nB", 553),
        (b"From: alice@a.test\r\nSender: carol@a.test\r\n\r\nB", 553),
        (b"To: b@b.test\r\n\r\nB", 550),
        (b"From: alice@a.test\r\nFrom: alice@a.test\r\n\r\nB", 550),
        (b"From: undisclosed:;\r\n\r\nB", 550),
    ],
)
def test_refusals(raw: bytes, code: int) -> None:
    with pytest.raises(SMTPReply) as refused:
        prepare(raw)
    assert refused.value.code == code
    if code == 553:
        assert refused.value.enhanced == "5.7.1"


def test_bare_lf_and_missing_body() -> None:
    prepared = prepare(b"From: alice@a.test\nBcc: x@y\nSubject: s\n")
    assert b"Bcc" not in prepared.raw
    assert prepared.raw.endswith(b"\r\n\r\n")
    fields, rest = stamping.split(b"From: alice@a.test\nSubject: s\n\nbody\n")
    assert [f.name for f in fields] == ["from", "subject"] and rest == b"\nbody\n"
