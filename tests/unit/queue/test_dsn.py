"""dsn.build: what each action reports, RET=FULL and its size cap, ENVID/ORCPT, internationalized recipients."""

from __future__ import annotations

import email
from email.message import Message

import pytest

from relentad.queue import dsn

ORIGINAL = b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: hi\r\n\r\nthe body\r\n"


def build(action: dsn.Action, ret: str | None, original: bytes = ORIGINAL, **kwargs: object) -> Message:
    recipient = dsn.RecipientStatus("bob@b.test", "550 5.1.1 No bob", "mx.b.test", orcpt="rfc822;Bob@b.test")
    raw = dsn.build(
        action=action,
        hostname="mx.a.test",
        sender="alice@a.test",
        recipients=[kwargs.pop("recipient", recipient)],  # type: ignore[list-item]
        original=original,
        arrival=0,
        ret=ret,
        envid="e1",
    )
    return email.message_from_bytes(raw)


def parts(parsed: Message) -> list[Message]:
    found = parsed.get_payload()
    assert isinstance(found, list)
    return found


@pytest.mark.parametrize(
    ("action", "ret", "returned"),
    [
        ("failed", "FULL", "message/rfc822"),
        ("failed", "HDRS", "text/rfc822-headers"),
        ("failed", None, "text/rfc822-headers"),
        ("delayed", "FULL", "text/rfc822-headers"),  # RFC 3461 §4.3: only a failure returns the whole message
        ("relayed", "FULL", "text/rfc822-headers"),
    ],
)
def test_ret_decides_what_comes_back(action: dsn.Action, ret: str | None, returned: str) -> None:
    parsed = build(action, ret)
    assert parts(parsed)[2].get_content_type() == returned
    assert (b"the body" in parsed.as_bytes()) is (returned == "message/rfc822")


def test_ret_full_over_the_cap_returns_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dsn, "FULL_LIMIT", len(ORIGINAL) - 1)
    assert parts(build("failed", "FULL"))[2].get_content_type() == "text/rfc822-headers"


def test_envid_orcpt_and_status_per_action() -> None:
    [head, block] = list(parts(build("delivered", None))[1].get_payload())  # type: ignore[arg-type]
    assert head["Original-Envelope-Id"] == "e1"
    assert block["Original-Recipient"] == "rfc822; Bob@b.test"
    assert (block["Action"], block["Status"]) == ("delivered", "2.0.0"), "a success is never a 5.x.x"
    [_, failed] = list(parts(build("failed", None))[1].get_payload())  # type: ignore[arg-type]
    assert (failed["Action"], failed["Status"]) == ("failed", "5.1.1")


def test_a_local_delivery_is_listed_without_a_reply() -> None:
    recipient = dsn.RecipientStatus("bob@b.test", "")
    text = parts(build("delivered", None, recipient=recipient))[0].get_payload(decode=True)
    assert isinstance(text, bytes) and b"\r\n<bob@b.test>\r\n" in text


def test_internationalized_final_recipient_is_utf8_xtext() -> None:
    """RFC 6533 §3: in message/delivery-status (ASCII) a UTF-8 address is the utf-8 type with \\x{HEX}."""
    recipient = dsn.RecipientStatus("jürgen@b.test", "553 5.6.7 no SMTPUTF8")
    [_, block] = list(parts(build("failed", None, recipient=recipient))[1].get_payload())  # type: ignore[arg-type]
    assert block["Final-Recipient"] == "utf-8; j\\x{FC}rgen@b.test"


INTL = "From: jürgen@a.test\r\nTo: bob@b.test\r\nSubject: Grüße\r\n\r\nthe body\r\n".encode()


@pytest.mark.parametrize(
    ("action", "ret", "returned"),
    [("failed", "FULL", "message/global"), ("failed", "HDRS", "message/global-headers"), ("delayed", "FULL", None)],
)
def test_a_utf8_header_comes_back_as_message_global(action: dsn.Action, ret: str, returned: str | None) -> None:
    """RFC 6533 §6: message/rfc822 and text/rfc822-headers may not carry UTF-8 header fields (RFC 6532)."""
    [human, status, back] = parts(build(action, ret, INTL))
    assert back.get_content_type() == (returned or "message/global-headers")
    assert status.get_content_type() == "message/delivery-status", "the status itself is ASCII"
    assert human["Content-Transfer-Encoding"] == "8bit", "the original's subject is quoted in UTF-8"
    assert parts(build(action, ret))[0]["Content-Transfer-Encoding"] is None


def test_a_status_that_needs_utf8_is_message_global_delivery_status() -> None:
    recipient = dsn.RecipientStatus("bob@b.test", "550 5.1.1 Empfänger unbekannt", "mx.b.test", from_remote=True)
    [_, status, _] = parts(build("failed", None, recipient=recipient))
    assert status.get_content_type() == "message/global-delivery-status"
    assert "Diagnostic-Code: smtp; 550 5.1.1 Empfänger unbekannt" in status.as_bytes().decode()
