"""The SMTP DSN extension (RFC 3461) on the MX and on submission, against the real daemon with smtplib.

Parameters are checked and kept; a local recipient that asked for NOTIFY=SUCCESS makes the sender get a
"delivered" report (RFC 3464): filed into the submitting user's INBOX, queued to a remote sender from the MX.
What the queue then does with the parameters (passing them on, "relayed", RET=FULL) is in test_outbound.py.
"""

from __future__ import annotations

import json
import smtplib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import dkim as dkimpy
import pytest

from relentad.queue import dkim
from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_submission import message, submit
from tests.support.daemon import Daemon, wait_for
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import DnsRecords
from tests.support.dsn import status_blocks

# elsewhere.test's and example.test's SPF let the test client (127.0.0.1) send for them; forged.test's lets
# nobody. elsewhere.test's MX has an address nobody listens on: what is queued for it stays queued, deferred, to
# be looked at.
SPF = (
    DnsRecords()
    .add_txt("elsewhere.test", "v=spf1 ip4:127.0.0.1 -all")
    .add_txt("example.test", "v=spf1 ip4:127.0.0.1 -all")
    .add_txt("forged.test", "v=spf1 -all")
    .add_mx("elsewhere.test", "mx.elsewhere.test")
    .add_a("mx.elsewhere.test", "127.0.0.9")
)


@pytest.fixture
def relentad(make_daemon: MakeDaemon, tmp_path: Path) -> Iterator[Daemon]:
    dns = start_or_skip(tmp_path / "dns", SPF)
    try:
        yield provision(make_daemon(submission=True, settings={"dns": {"nameservers": [dns.nameserver]}})).start()
    finally:
        dns.close()


def mx(daemon: Daemon) -> smtplib.SMTP:
    client = smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10)
    client.ehlo("client.elsewhere.test")
    return client


def test_ehlo_offers_dsn_on_the_mx_and_submission(relentad: Daemon) -> None:
    with mx(relentad) as client:
        assert client.has_extn("dsn")
    with submit(relentad) as client:
        assert client.has_extn("dsn")


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("MAIL FROM:<carol@elsewhere.test> RET=SOME", b"5.5.4 RET must be FULL or HDRS"),
        ("MAIL FROM:<carol@elsewhere.test> RET=FULL ret=HDRS", b"5.5.4 Duplicate RET parameter"),
        ("MAIL FROM:<carol@elsewhere.test> ENVID=a+ZZ", b"5.5.4 Malformed xtext"),
        ("MAIL FROM:<carol@elsewhere.test> ENVID=" + "x" * 101, b"5.5.4 ENVID longer than 100 characters"),
    ],
)
def test_malformed_mail_parameters_get_501_5_5_4(relentad: Daemon, command: str, reply: bytes) -> None:
    with mx(relentad) as client:
        code, text = client.docmd(command)
        assert (code, text[: len(reply)]) == (501, reply)
        assert client.docmd("MAIL FROM:<carol@elsewhere.test> RET=hdrs ENVID=ok SIZE=10")[0] == 250


@pytest.mark.parametrize(
    ("params", "reply"),
    [
        ("NOTIFY=NEVER,SUCCESS", b"5.5.4 NOTIFY must be NEVER, or one or more of SUCCESS, FAILURE, DELAY"),
        ("NOTIFY=SUCCESS NOTIFY=DELAY", b"5.5.4 Duplicate NOTIFY parameter"),
        ("ORCPT=bob@example.test", b"5.5.4 ORCPT must be addr-type;address"),
        ("ORCPT=rfc822;bob+0D+0A@example.test", b"5.5.4 ORCPT address must be printable ASCII"),
        ("NOTIFY=SUCCESS FOO=BAR", b"5.5.4 RCPT TO parameters not recognized or not implemented"),
    ],
)
def test_malformed_rcpt_parameters_are_refused_and_the_session_goes_on(
    relentad: Daemon, params: str, reply: bytes
) -> None:
    with mx(relentad) as client:
        assert client.docmd("MAIL FROM:<carol@elsewhere.test>")[0] == 250
        code, text = client.docmd(f"RCPT TO:<bob@example.test> {params}")
        assert code in (501, 555) and text == reply
        assert client.docmd("RCPT TO:<bob@example.test> NOTIFY=never ORCPT=rfc822;Bob@example.test")[0] == 250


def test_mx_queues_a_delivered_report_to_the_remote_sender(relentad: Daemon) -> None:
    with mx(relentad) as client:
        refused = client.sendmail(
            "carol@elsewhere.test",
            ["bob@example.test", "alice@example.test"],
            message(from_="carol@elsewhere.test", subject="tell me"),
            mail_options=["RET=FULL", "ENVID=QQ+2Bz"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Bob+2Btag@example.test"],
        )
        assert refused == {}
        # the null sender never gets a report
        client.sendmail("<>", ["bob@example.test"], message(from_="x@elsewhere.test"), rcpt_options=["NOTIFY=SUCCESS"])
        # nor a recipient that did not ask for one
        client.sendmail("dave@elsewhere.test", ["carol@example.test"], message(from_="dave@elsewhere.test"))
        # nor an address the client may not send for (SPF fails): it would go to whoever was forged
        forged = message(from_="eve@forged.test")
        client.sendmail("eve@forged.test", ["bob@example.test"], forged, rcpt_options=["NOTIFY=SUCCESS"])
    assert len(relentad.messages("bob@example.test")) == 3
    assert "no delivered report: SPF fail for <eve@forged.test>" in relentad.log()
    [queued] = relentad.query("SELECT id, account_id, mail_from, data FROM queue_messages")
    assert (queued["account_id"], queued["mail_from"]) == (None, "")
    [recipient] = relentad.query("SELECT address, dsn_notify FROM queue_recipients")
    assert (recipient["address"], recipient["dsn_notify"]) == ("carol@elsewhere.test", None)
    parsed, blocks = status_blocks(bytes(queued["data"]))
    assert parsed["To"] == "<carol@elsewhere.test>"
    assert parsed["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.test>"
    assert blocks[0]["Reporting-MTA"] == "dns; mx.example.test"
    assert blocks[0]["Original-Envelope-Id"] == "QQ+z"
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in blocks[1:]] == [
        ("rfc822; bob@example.test", "delivered", "2.0.0"),
        ("rfc822; alice@example.test", "delivered", "2.0.0"),
    ]
    assert blocks[1]["Original-Recipient"] == "rfc822; Bob+tag@example.test"
    parts = parsed.get_payload()
    assert isinstance(parts, list)
    assert parts[2].get_content_type() == "text/rfc822-headers", "a success report returns the header only"


def test_aliases_that_forward_elsewhere_report_expanded_or_relayed(relentad: Daemon) -> None:
    """RFC 3464 §2.3.3: an alias with a mailbox here and a target elsewhere is "expanded" (its forward may still
    fail), one whose only target is elsewhere "relayed" (the forward asks the next server for no success report),
    one whose targets are all here "delivered"."""
    relentad.add_alias("mixed@example.test", "alice@example.test")
    relentad.add_alias("mixed@example.test", "dave@elsewhere.test")
    relentad.add_alias("away@example.test", "dave@elsewhere.test")
    with mx(relentad) as client:
        refused = client.sendmail(
            "carol@elsewhere.test",
            ["mixed@example.test", "away@example.test", "sales@example.test"],
            message(from_="carol@elsewhere.test", subject="who gets it"),
            rcpt_options=["NOTIFY=SUCCESS"],
        )
        assert refused == {}
    [queued] = relentad.query(
        "SELECT m.data FROM queue_messages m JOIN queue_recipients r ON r.message_id = m.id"
        " WHERE r.address = 'carol@elsewhere.test'"
    )
    parsed, blocks = status_blocks(bytes(queued["data"]))
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in blocks[1:]] == [
        ("rfc822; mixed@example.test", "expanded", "2.0.0"),
        ("rfc822; away@example.test", "relayed", "2.0.0"),
        ("rfc822; sales@example.test", "delivered", "2.0.0"),
    ]
    text = parsed.get_payload()[0].get_payload(decode=True).decode()  # type: ignore[index,union-attr]
    assert "<away@example.test> (forwarded to a server elsewhere, which will not report delivery)" in text
    # two aliases naming the same address elsewhere: one copy goes there
    assert len(relentad.query("SELECT 1 FROM queue_recipients WHERE address = 'dave@elsewhere.test'")) == 1
    assert "alias <away@example.test> → dave@elsewhere.test: already forwarded" in relentad.log()


def test_mx_files_the_report_to_a_sender_of_ours_into_its_inbox(relentad: Daemon) -> None:
    """A sender at a hosted domain (here SPF lets the client send for it) gets its report filed, with the copies;
    queued, it would have gone out to our own MX. An unknown user of a hosted domain gets nothing."""
    with mx(relentad) as client:
        raw = message(from_="alice@example.test", subject="did bob get it")
        client.sendmail("Alice@Example.test", ["bob@example.test"], raw, rcpt_options=["NOTIFY=SUCCESS"])
        client.sendmail("nobody@example.test", ["bob@example.test"], raw, rcpt_options=["NOTIFY=SUCCESS"])
    [report] = relentad.messages("alice@example.test")
    parsed, blocks = status_blocks(report)
    assert parsed["To"] == "<Alice@Example.test>"
    assert [(b["Final-Recipient"], b["Action"]) for b in blocks[1:]] == [("rfc822; bob@example.test", "delivered")]
    assert b"Return-Path: <>" in report and b"Delivered-To: alice@example.test" in report
    assert relentad.query("SELECT id FROM queue_messages") == []
    assert "no delivered report: <nobody@example.test> is nobody here" in relentad.log()


def test_mx_report_to_a_remote_sender_is_dkim_signed_for_our_domain(relentad: Daemon) -> None:
    """MAILER-DAEMON@mx.example.test's report is signed with example.test's key (relaxed DMARC alignment)."""
    relentad.cli("dkim", "generate", "example.test", "--selector", "s1")
    record = dkim.txt_value((relentad.root / "data" / "dkim" / "example.test" / "s1.pem").read_bytes())
    with mx(relentad) as client:
        raw = message(from_="carol@elsewhere.test")
        client.sendmail("carol@elsewhere.test", ["bob@example.test"], raw, rcpt_options=["NOTIFY=SUCCESS"])
    [queued] = relentad.query("SELECT data FROM queue_messages")
    data = bytes(queued["data"])
    assert data.startswith(b"DKIM-Signature:") and b"d=example.test" in data.split(b"\r\n\r\n")[0]

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return record.encode() if name.rstrip(b".") == b"s1._domainkey.example.test" else b""

    assert dkimpy.verify(data, dnsfunc=dnsfunc)


def test_submission_files_a_delivered_report_for_local_recipients(relentad: Daemon) -> None:
    with submit(relentad) as client:
        client.sendmail(
            "alice@example.test",
            ["bob@example.test", "carol@example.test", "dave@elsewhere.test"],
            message(to="bob@example.test", subject="receipt please"),
            mail_options=["RET=HDRS", "ENVID=id1"],
            rcpt_options=["NOTIFY=SUCCESS", "ORCPT=utf-8;b\\x{F6}b@example.test"],
        )
        # NOTIFY=NEVER and the null sender: no report
        client.sendmail("<>", ["carol@example.test"], message(to="carol@example.test"), rcpt_options=["NOTIFY=SUCCESS"])
    [report] = wait_for("the delivered report", lambda: relentad.messages("alice@example.test"))
    parsed, blocks = status_blocks(report)
    assert parsed["Subject"] == "Successful Mail Delivery Report"
    assert blocks[0]["Original-Envelope-Id"] == "id1"
    assert [(b["Final-Recipient"], b["Action"]) for b in blocks[1:]] == [
        ("rfc822; bob@example.test", "delivered"),
        ("rfc822; carol@example.test", "delivered"),
    ]
    assert blocks[1]["Original-Recipient"] == "utf-8; b\\x{F6}b@example.test"
    # the remote recipient is queued with its parameters, for the next hop
    [queued] = relentad.query("SELECT dsn_ret, dsn_envid FROM queue_messages")
    assert tuple(queued) == ("HDRS", "id1")
    [row] = relentad.query("SELECT address, dsn_notify, dsn_orcpt FROM queue_recipients")
    assert tuple(row) == ("dave@elsewhere.test", "SUCCESS", "utf-8;böb@example.test")
    # and `queue list` shows them
    [listed] = json.loads(relentad.cli("queue", "list", "--json").stdout)
    assert (listed["ret"], listed["envid"]) == ("HDRS", "id1")
    [shown] = listed["recipients"]
    assert (shown["notify"], shown["orcpt"]) == ("SUCCESS", "utf-8;böb@example.test")
    text = relentad.cli("queue", "list").stdout.splitlines()
    assert text[0].endswith(" RET=HDRS ENVID=id1")
    assert text[1].startswith("\t<dave@elsewhere.test> NOTIFY=SUCCESS ORCPT=utf-8;böb@example.test queued after")


def test_submission_files_its_report_in_the_transaction_of_the_copies(relentad: Daemon) -> None:
    """A report that cannot be filed fails the whole submission (4xx: the client sends again), never a 250 with
    the copies stored and the report lost; the retry then files both, once."""
    with sqlite3.connect(relentad.db_path) as conn:  # the disk refuses the report, and only it
        conn.execute(
            """CREATE TRIGGER no_report BEFORE INSERT ON messages
               WHEN instr(NEW.prefix, CAST('Return-Path: <>' AS BLOB)) BEGIN SELECT RAISE(ABORT, 'disk error'); END"""
        )
    raw = message(to="bob@example.test", subject="receipt please")
    with submit(relentad) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("alice@example.test", ["bob@example.test"], raw, rcpt_options=["NOTIFY=SUCCESS"])
        assert refused.value.smtp_code // 100 == 4
        assert relentad.messages("bob@example.test") == []
        with sqlite3.connect(relentad.db_path) as conn:
            conn.execute("DROP TRIGGER no_report")
        client.rset()
        client.sendmail("alice@example.test", ["bob@example.test"], raw, rcpt_options=["NOTIFY=SUCCESS"])
    assert len(relentad.messages("bob@example.test")) == 1
    [report] = relentad.messages("alice@example.test")
    assert status_blocks(report)[0]["Subject"] == "Successful Mail Delivery Report"


def test_long_parameters_fit_and_other_paths_take_them_too(relentad: Daemon) -> None:
    """RFC 3461 §5: MAIL and RCPT lines grow by 110 and 500 characters with DSN. A quoted local part and the null
    sender (aiosmtpd's own address parser) take the parameters as the common path does; after HELO, no extension."""
    with mx(relentad) as client:
        envid = "e" * 100
        assert client.docmd(f'MAIL FROM:<"carol smith"@elsewhere.test> RET=HDRS ENVID={envid} SIZE=100')[0] == 250
        orcpt = "rfc822;" + "b" * 470 + "@example.test"  # 490 characters
        assert client.docmd(f"RCPT TO:<bob@example.test> NOTIFY=SUCCESS,DELAY,FAILURE ORCPT={orcpt}")[0] == 250
        assert client.docmd("RSET")[0] == 250
        assert client.docmd("MAIL FROM:<> RET=FULL")[0] == 250
    with smtplib.SMTP(relentad.host, relentad.smtp_port, timeout=10) as client:
        client.helo("old.elsewhere.test")
        code, text = client.docmd("MAIL FROM:<carol@elsewhere.test> RET=FULL")
        assert (code, text) == (501, b"5.5.4 Syntax: MAIL FROM: <address>")
