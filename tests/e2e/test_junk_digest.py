"""The Junk digest end to end: mail filed into Junk over SMTP (a blocked sender), then ``relentad spam digest`` (what
the daemon's daily job with ``[spam] junk_digest`` runs) files the list into the INBOX, once."""

from __future__ import annotations

import json
import smtplib

from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import wait_for

ALICE = "alice@example.test"


def test_the_digest_lists_what_went_to_junk_once(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"mailauth": {"verify": False}, "spam": {"junk_digest": True}})).start()
    daemon.cli("spam", "block", ALICE, "@spam.test")
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        for number in (1, 2):
            raw = f"From: Deals <deals@spam.test>\r\nTo: {ALICE}\r\nSubject: Offer {number}\r\n\r\nBuy.\r\n".encode()
            assert client.sendmail("deals@spam.test", [ALICE], raw) == {}
    wait_for("two in Junk", lambda: len(daemon.messages(ALICE, "Junk")) == 2)
    assert json.loads(daemon.cli("spam", "digest", "--json").stdout) == {ALICE: 2}
    [digest] = daemon.messages(ALICE)
    assert b"Subject: Junk: 2 message(s) filed since the last digest" in digest
    assert b"Deals <deals@spam.test>: Offer 1" in digest and b"Deals <deals@spam.test>: Offer 2" in digest
    assert b"Auto-Submitted: auto-generated" in digest
    assert "no Junk mail since the last digests" in daemon.cli("spam", "digest").stdout, "never twice"
    assert len(daemon.messages(ALICE)) == 1 and len(daemon.messages(ALICE, "Junk")) == 2
