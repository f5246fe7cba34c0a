"""Vacation replies end to end: a rule added with the CLI answers mail from the world once, through the queue.

The world: dnsmasq serves a.test's MX (relentad on 127.0.22.2:25, with a DKIM key) and the MX of c.test and d.test
(an aiosmtpd sink the test runs on 127.0.22.4:25, which records what it is sent); d.test publishes SPF -all and
DMARC p=quarantine, so its mail is filed into Junk; e.test publishes SPF -all alone (its mail is stored, a forged
envelope sender). Needs root (port 25) and dnsmasq; skipped otherwise.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import os
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dkim as dkimpy
import pytest
from aiosmtpd.controller import Controller

from relentad.dns import make_sync_resolver
from relentad.queue import dkim
from tests.e2e.conftest import MakeDaemon
from tests.support.daemon import PASSWORD, Daemon, wait_for
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq, DnsRecords
from tests.support.smtp_peer import Sink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binds port 25 on 127.0.22.2 and .4: needs root")

A_HOST, SINK_HOST = "127.0.22.2", "127.0.22.4"  # addresses of their own: other tests bind :25 too
RULE = 'require ["vacation"];\nvacation :days 3 :subject "Out of office" text:\nI am away until Monday.\nAlice\n.\n;\n'


def records(dkim_txt: str | None = None) -> DnsRecords:
    found = DnsRecords()
    found.add_mx("a.test", "mx.a.test").add_a("mx.a.test", A_HOST)
    for domain in ("c.test", "d.test"):
        found.add_mx(domain, f"mx.{domain}").add_a(f"mx.{domain}", SINK_HOST)
    found.add_txt("d.test", "v=spf1 -all")
    found.add_txt("_dmarc.d.test", "v=DMARC1; p=quarantine")
    found.add_txt("e.test", "v=spf1 -all")
    if dkim_txt:
        found.add_txt("relentad._domainkey.a.test", dkim_txt)
    return found


@dataclass
class World:
    dns: Dnsmasq
    a: Daemon
    sink: Sink


@pytest.fixture
def world(tmp_path: Path, make_daemon: MakeDaemon) -> Iterator[World]:
    workdir = tmp_path / "dns"
    workdir.mkdir()
    dns_server = start_or_skip(workdir, records())
    controller: Controller | None = None
    a: Daemon | None = None
    try:
        settings = {
            "dns": {"nameservers": [dns_server.nameserver], "timeout": 2.0},
            "queue": {"retry_schedule": ["1s"], "scan_interval": "1s", "timeout": "60s"},
            "server": {"hostname": "mx.a.test"},
            "auth": {"plaintext_loopback": True},
        }
        a = make_daemon("a", host=A_HOST, smtp_port=25, imap=True, settings=settings)
        a.add_domain("a.test")
        a.add_user("alice@a.test", display_name="Alice Ärger")
        a.cli("dkim", "generate", "a.test")
        pem = (a.root / "data" / "dkim" / "a.test" / "relentad.pem").read_bytes()
        dns_server.replace(records(dkim.txt_value(pem)))
        sink = Sink()
        controller = Controller(sink, hostname=SINK_HOST, port=25)
        controller.start()
        yield World(dns_server, a, sink)
    finally:
        if controller is not None:
            controller.stop()
        if a is not None:
            print(f"--- a.test daemon log\n{a.log()}")
        dns_server.close()


def send(daemon: Daemon, mail_from: str, subject: str, *extra: str) -> None:
    """Mail from the world to alice@a.test over SMTP, as another server would deliver it."""
    head = [
        f"From: <{mail_from}>",
        "To: Alice <alice@a.test>",
        f"Subject: {subject}",
        f"Message-ID: <{subject.encode().hex()}@{mail_from.rpartition('@')[2]}>",
        "Date: Wed, 25 Nov 2026 08:00:00 +0000",
        *extra,
    ]
    raw = ("\r\n".join(head) + "\r\n\r\nHello Alice.\r\n").encode()
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        client.ehlo("mx.sender.test")
        assert client.sendmail(mail_from, ["alice@a.test"], raw) == {}


def inbox_subjects(daemon: Daemon, mailbox: str = "INBOX") -> list[str]:
    """The Subject of each message in ``mailbox``, over IMAP."""
    with imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=15) as client:
        client.login("alice@a.test", PASSWORD)
        client.select(mailbox, readonly=True)
        _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        client.logout()
    return [bytes(item[1]).decode().partition(":")[2].strip() for item in data if isinstance(item, tuple)]


def queued(daemon: Daemon) -> int:
    return int(daemon.query("SELECT count(*) AS n FROM queue_messages")[0]["n"])


def test_vacation_replies_once_with_a_null_sender_and_never_to_lists_robots_or_junk(world: World) -> None:
    a = world.a
    a.cli("rules", "add", "alice@a.test", "away", input=RULE)
    a.start()

    send(a, "carol@c.test", "Lunch on Friday?")
    [(mail_from, rcpts, data)] = wait_for("the vacation reply", lambda: world.sink.accepted)
    assert (mail_from, rcpts) == ("<>", ["carol@c.test"]), "MAIL FROM:<> (RFC 5230 §5.7), as aiosmtpd records it"
    reply = email.message_from_bytes(data, policy=email.policy.default)
    assert reply["From"].addresses[0].addr_spec == "alice@a.test"
    assert reply["From"].addresses[0].display_name == "Alice Ärger", "the account's name, as her own mail has"
    assert reply["To"].addresses[0].addr_spec == "carol@c.test"
    assert reply["Subject"] == "Out of office"
    assert reply["In-Reply-To"] == f"<{b'Lunch on Friday?'.hex()}@c.test>"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Message-ID"].endswith("@a.test>") and reply["Date"]
    assert reply.get_content().replace("\r\n", "\n") == "I am away until Monday.\nAlice\n"
    resolver = make_sync_resolver([world.dns.nameserver], 5.0)

    def dnsfunc(name: bytes, timeout: float = 5.0) -> bytes:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(record.strings) for record in answer)

    assert dkimpy.verify(data, dnsfunc=dnsfunc), "signed for a.test"
    wait_for("an empty queue", lambda: queued(a) == 0)

    # the same sender within :days, a list, a robot, spam (DMARC quarantine → Junk) and a sender SPF says is forged
    # (no DMARC: filed into INBOX; a reply would be backscatter to e.test): stored, never answered
    send(a, "carol@c.test", "Again")
    send(a, "dave@c.test", "Weekly digest", "List-Id: <digest.c.test>", "List-Unsubscribe: <mailto:u@c.test>")
    send(a, "erin@c.test", "Ticket opened", "Auto-Submitted: auto-generated")
    send(a, "mallory@d.test", "Cheap pills")
    send(a, "victim@e.test", "Forged")
    log = wait_for("five decisions in the log", lambda: a.log().count("vacation: no reply to") == 5 and a.log())
    assert "no reply to <carol@c.test>: already replied to within the period" in log
    assert "no reply to <dave@c.test>" in log and "mailing list mail" in log
    assert "no reply to <erin@c.test>" in log and "Auto-Submitted: auto-generated" in log
    assert "no reply to <mallory@d.test>" in log and "went to Junk" in log
    assert "no reply to <victim@e.test>" in log and "the envelope sender failed SPF (e.test did not send it)" in log
    assert queued(a) == 0 and len(world.sink.accepted) == 1, "one reply in all"
    assert inbox_subjects(a) == ["Lunch on Friday?", "Again", "Weekly digest", "Ticket opened", "Forged"]
    assert inbox_subjects(a, "Junk") == ["Cheap pills"]

    preview = a.root / "preview.eml"
    preview.write_bytes(b"From: <frank@c.test>\r\nTo: alice@a.test\r\nSubject: hi\r\n\r\nhi\r\n")
    shown = a.cli("rules", "test", "alice@a.test", str(preview), "--mail-from", "frank@c.test").stdout
    assert "vacation reply to <frank@c.test> from <alice@a.test>" in shown
    shown = a.cli("rules", "test", "alice@a.test", str(preview), "--mail-from", "carol@c.test").stdout
    assert "no vacation reply: <carol@c.test> already had this reply within its period" in shown


def test_bad_vacation_rules_are_refused_by_the_cli(world: World) -> None:
    for script, message in (
        ('vacation "x";', "extension 'vacation' not loaded"),
        ('require "vacation"; vacation :days 2 :seconds 10 "x";', "vacation-seconds"),
        ('require "vacation"; vacation :from "boss@c.test" "x";', "not one of the account's addresses"),
        ('require "vacation"; vacation :mime "plain";', "MIME entity"),
    ):
        result = world.a.cli("rules", "add", "alice@a.test", "bad", input=script, check=False)
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


def test_a_local_sender_gets_the_reply_in_its_inbox(world: World) -> None:
    a = world.a
    a.add_user("bob@a.test")
    a.cli("rules", "add", "alice@a.test", "away", input=RULE)
    a.start()
    send(a, "bob@a.test", "Status?")
    [reply] = wait_for("the reply in bob's INBOX", lambda: a.messages("bob@a.test"))
    parsed = email.message_from_bytes(reply, policy=email.policy.default)
    assert parsed["Return-Path"] == "<>" and parsed["Subject"] == "Out of office"
    assert parsed["From"].addresses[0].addr_spec == "alice@a.test"
    assert queued(a) == 0 and world.sink.accepted == [], "filed here, never queued to ourselves"
    assert inbox_subjects(a) == ["Status?"]


def test_no_reply_as_a_shared_alias_or_a_catch_all(world: World) -> None:
    """Mail to an alias that reaches several accounts, or to a catch-all, is answered by nobody (each member would
    answer as the shared address, the catch-all as whatever address the sender made up); a personal alias is."""
    a = world.a
    a.add_user("bob@a.test")
    a.add_alias("sales@a.test", "alice@a.test")
    a.add_alias("sales@a.test", "bob@a.test")
    a.add_alias("@a.test", "alice@a.test")
    a.add_alias("me@a.test", "alice@a.test")
    for user in ("alice@a.test", "bob@a.test"):
        a.cli("rules", "add", user, "away", input=RULE)
    a.start()
    raw = b"From: <carol@c.test>\r\nTo: sales@a.test, made-up@a.test\r\nSubject: Quote\r\n\r\nHello.\r\n"
    with smtplib.SMTP(a.host, a.smtp_port, timeout=10) as client:
        assert client.sendmail("carol@c.test", ["sales@a.test", "made-up@a.test"], raw) == {}
    wait_for("two decisions", lambda: a.log().count("a shared alias or a catch-all is none") == 2)
    raw = b"From: <dave@c.test>\r\nTo: me@a.test\r\nSubject: Hi\r\n\r\nHello.\r\n"
    with smtplib.SMTP(a.host, a.smtp_port, timeout=10) as client:
        assert client.sendmail("dave@c.test", ["me@a.test"], raw) == {}
    [(_, rcpts, data)] = wait_for("the reply to dave", lambda: world.sink.accepted)
    reply = email.message_from_bytes(data, policy=email.policy.default)
    assert rcpts == ["dave@c.test"] and reply["From"].addresses[0].addr_spec == "me@a.test"
    # the sink has the reply before the queue has recorded its delivery: wait for that, not assume it
    wait_for("the reply's queue entry done", lambda: queued(a) == 0)
    assert len(world.sink.accepted) == 1
