"""Reading the delivery status notifications (RFC 3464) the daemon writes, for e2e tests."""

from __future__ import annotations

import email
from email.message import Message


def status_blocks(report: bytes) -> tuple[Message, list[Message]]:
    """The parsed report and its message/delivery-status blocks (per-message first, then per recipient)."""
    parsed = email.message_from_bytes(report)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    for part in parsed.walk():
        if part.get_content_type() == "message/delivery-status":
            return parsed, list(part.get_payload())
    raise AssertionError("no message/delivery-status part")
