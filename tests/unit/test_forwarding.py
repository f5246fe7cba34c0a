"""Loop detection for forwards (relentad/forwarding.py): pure functions over the message."""

from __future__ import annotations

from relentad import forwarding

BODY = b"From: a@d.test\r\nSubject: hi\r\n\r\nDelivered-To: info@a.test\r\n" + b"Received: x\r\n" * 60


def test_our_delivered_to_in_the_header_is_a_loop_in_any_case() -> None:
    looped = b"Delivered-To: INFO@a.test\r\n" + BODY
    assert forwarding.loop_reason(looped, ["info@a.test"]) == "Mail forwarding loop for <INFO@a.test>"
    assert forwarding.loop_reason(looped, ["other@a.test"]) is None, "another address's trace is no loop"


def test_the_body_never_counts_and_hops_do_past_the_limit() -> None:
    assert forwarding.loop_reason(BODY, ["info@a.test"]) is None
    fifty = b"Received: from x by y; now\r\n" * forwarding.MAX_HOPS + BODY
    assert forwarding.loop_reason(fifty, ["info@a.test"]) is None
    reason = forwarding.loop_reason(b"Received: from x\r\n\tby y; now\r\n" + fifty, ["info@a.test"])
    assert reason == "Too many hops (51 Received fields): mail loop"


def test_a_message_without_a_body_is_all_header() -> None:
    assert forwarding.loop_reason(b"Delivered-To: info@a.test\r\nSubject: x\r\n", ["info@a.test"]) is not None
