"""Follow-ups end to end: mail sent over submission to a contact waits for a reply; after the delay it is listed
by ``relentad crm followups`` and shown in the read-only IMAP folder ``Follow-up`` (live under IDLE, also when
time alone makes it due); a reply over SMTP clears it; mail to a list, to oneself or with a forged From never
waits. Stored times are moved back instead of waiting days."""

from __future__ import annotations

import json
import re
import smtplib
import sqlite3
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, Raw, imap_daemon

DAY = 86400.0
# Remote recipients stay queued: no DNS answers (the port is closed), nothing leaves the machine.
SETTINGS = {"dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5}}


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(
        tmp_path_factory.mktemp("crm-followups"), dns_server.nameserver, settings=SETTINGS, submission=True
    )
    yield daemon
    daemon.stop()


def message(from_: str, to: str, subject: str, msgid: str, *extra: str) -> bytes:
    headers = [f"From: {from_}", f"To: {to}", f"Subject: {subject}", f"Message-ID: <{msgid}>", *extra]
    return ("\r\n".join(headers) + "\r\n\r\nHello.\r\n").encode()


def send(daemon: Daemon, raw: bytes, rcpts: list[str]) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as client:
        client.starttls(context=context)
        client.login(ALICE, PASSWORD)
        assert client.sendmail(ALICE, rcpts, raw) == {}


def receive(daemon: Daemon, raw: bytes, sender: str) -> None:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        assert client.sendmail(sender, [ALICE], raw) == {}


def followups(daemon: Daemon, *args: str) -> list[dict[str, object]]:
    return json.loads(daemon.cli("crm", "followups", ALICE, "--json", *args).stdout)  # type: ignore[no-any-return]


def age(daemon: Daemon, subject: str, seconds: float) -> None:
    """Make the waiting thread ``subject`` ``seconds`` older, as if that much time had passed."""
    conn = sqlite3.connect(daemon.db_path, timeout=10)
    with conn:
        conn.execute("UPDATE crm_threads SET awaiting = awaiting - ? WHERE subject = ?", (seconds, subject))
    conn.close()


def waiting(daemon: Daemon, subject: str) -> float:
    rows = daemon.query("SELECT awaiting FROM crm_threads WHERE subject = ? AND awaiting IS NOT NULL", subject)
    return float(rows[0]["awaiting"]) if rows else 0.0


def test_sent_mail_waits_shows_in_follow_up_and_a_reply_clears_it(relentad: Daemon) -> None:
    send(relentad, message(f"Alice <{ALICE}>", "Jo Miller <jo@acme.example>", "Offer", "o1@example.test"),
         ["jo@acme.example"])  # fmt: skip
    assert followups(relentad) == []  # the default delay is 3 days
    [now] = followups(relentad, "--days", "0")
    assert now["subject"] == "Offer" and now["days_waiting"] == 0
    assert now["contacts"] == [{"id": now["contacts"][0]["id"], "name": "Jo Miller", "address": "jo@acme.example"}]  # type: ignore[index]
    age(relentad, "Offer", 4 * DAY)
    [due] = followups(relentad)
    assert due["days_waiting"] == 4 and due["subject"] == "Offer"
    text = relentad.cli("crm", "followups", ALICE).stdout
    assert "\t4d\tJo Miller\tOffer" in text

    raw = Raw(relentad)
    raw.login()
    assert b'* LIST (\\HasNoChildren \\NoInferiors) "/" Follow-up\r\n' in raw.command("l", 'LIST "" "%"')
    assert raw.command("u", "UNSUBSCRIBE Follow-up")[-1].startswith(b"u OK")
    assert not any(b"Follow-up" in line for line in raw.command("l", 'LSUB "" "*"'))
    assert raw.command("u", "SUBSCRIBE Follow-up")[-1].startswith(b"u OK")
    assert any(b"Follow-up" in line for line in raw.command("l", 'LSUB "" "*"'))
    status = b"".join(raw.command("t", "STATUS Follow-up (MESSAGES UIDNEXT UIDVALIDITY)"))
    assert b"MESSAGES 1 UIDNEXT %d " % (int(due["folder_uid"]) + 1) in status, status  # type: ignore[call-overload]
    lines = raw.command("s", "EXAMINE Follow-up")
    assert lines[-1].startswith(b"s OK [READ-ONLY]") and b"* 1 EXISTS\r\n" in lines, lines
    assert b"* OK [NOMODSEQ] a CRM view has no mod-sequences\r\n" in lines
    fetched = b"".join(raw.command("f", "FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT TO)])"))
    assert b"Subject: Offer" in fetched and b"jo@acme.example" in fetched
    assert int(re.findall(rb"UID (\d+)", fetched)[0]) == due["folder_uid"]
    assert raw.command("x", "APPEND Follow-up {3+}\r\nabc")[-1].startswith(b"x NO [CANNOT]")
    assert raw.command("c", "CREATE Follow-up")[-1].startswith(b"c NO [CANNOT]")

    raw.send(b"i IDLE\r\n")
    assert raw.line().startswith(b"+ ")
    reply = message("Jo Miller <jo@acme.example>", f"Alice <{ALICE}>", "Re: Offer", "r1@acme.example",
                    "In-Reply-To: <o1@example.test>", "References: <o1@example.test>")  # fmt: skip
    receive(relentad, reply, "jo@acme.example")
    assert raw.line() == b"* 1 EXPUNGE\r\n"  # the reply ended the wait, told at once under IDLE
    raw.send(b"DONE\r\n")
    assert raw.until("i")[-1].startswith(b"i OK")
    raw.close()
    assert followups(relentad, "--days", "0") == []


def test_lists_oneself_automatic_replies_and_forged_from_never_wait(relentad: Daemon) -> None:
    list_mail = message("Dev <someone@lists.example>", "dev@lists.example", "Release", "l1@lists.example",
                        "List-Id: Dev <dev.lists.example>")  # fmt: skip
    receive(relentad, list_mail, "bounces@lists.example")  # dev@lists.example is now a contact of kind list
    send(relentad, message(f"Alice <{ALICE}>", "dev@lists.example", "Re: Release", "l2@example.test",
                           "In-Reply-To: <l1@lists.example>"), ["dev@lists.example"])  # fmt: skip
    send(relentad, message(f"Alice <{ALICE}>", ALICE, "Note to self", "n1@example.test"), [ALICE])
    forged = message(f"Alice <{ALICE}>", "Ben <ben@acme.example>", "Forged", "f1@attacker.example")
    receive(relentad, forged, ALICE)  # on the MX: received mail, whatever its From says
    assert {row["subject"] for row in followups(relentad, "--days", "0")} == set()

    send(relentad, message(f"Alice <{ALICE}>", "Ben <ben@acme.example>", "Quote", "q1@example.test"),
         ["ben@acme.example"])  # fmt: skip
    auto = message("Ben <ben@acme.example>", ALICE, "Auto: Quote", "a1@acme.example",
                   "In-Reply-To: <q1@example.test>", "Auto-Submitted: auto-replied")  # fmt: skip
    receive(relentad, auto, "ben@acme.example")  # an out-of-office is no answer
    assert [row["subject"] for row in followups(relentad, "--days", "0")] == ["Quote"]


def test_a_thread_becoming_due_reaches_idle_and_no_follow_up_dismisses_it(relentad: Daemon) -> None:
    send(relentad, message(f"Alice <{ALICE}>", "Kim <kim@acme.example>", "Contract", "c1@example.test"),
         ["kim@acme.example"])  # fmt: skip
    raw = Raw(relentad)
    raw.login()
    age(relentad, "Contract", waiting(relentad, "Contract") + 3 * DAY - (time.time() + 2.0))  # due in 2 s
    lines = raw.command("s", "SELECT Follow-up")
    before = next(int(n) for n in re.findall(rb"\* (\d+) EXISTS", b"".join(lines)))
    assert lines[-1].startswith(b"s OK [READ-ONLY]"), lines
    raw.send(b"i IDLE\r\n")
    assert raw.line().startswith(b"+ ")
    assert raw.line() == b"* %d EXISTS\r\n" % (before + 1)  # no mail arrived: time passed
    raw.send(b"DONE\r\n")
    raw.until("i")
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b"".join(raw.command("f", "FETCH 1:* (UID)")))]
    assert raw.command("t", f"STORE {before + 1} +FLAGS.SILENT ($NoFollowUp)")[-1].startswith(b"t OK")
    lines = raw.command("n", "NOOP")
    assert b"* %d EXPUNGE\r\n" % (before + 1) in lines, lines
    raw.close()
    assert uids[-1] not in [row["folder_uid"] for row in followups(relentad)]
    keywords = relentad.query("SELECT keywords FROM messages WHERE keywords LIKE '%NoFollowUp%'")
    assert len(keywords) == 1  # on the real message in Sent


def test_followup_days_per_account(relentad: Daemon) -> None:
    assert "follow-up after 0 days" in relentad.cli("crm", "followup-days", ALICE, "0").stdout
    assert {row["subject"] for row in followups(relentad)} >= {"Quote"}
    assert "the default (3 days)" in relentad.cli("crm", "followup-days", ALICE, "default").stdout
    assert "Quote" not in {row["subject"] for row in followups(relentad)}
    relentad.cli("crm", "followup-days", ALICE, "0")
    age(relentad, "Quote", 91 * DAY)  # [crm] followup_window: 90 days after it became due, it is dropped as stale
    assert "Quote" not in {row["subject"] for row in followups(relentad)}
    assert "Quote" in {row["subject"] for row in followups(relentad, "--days", "2")}
    bad = relentad.cli("crm", "followup-days", ALICE, "-2", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    bad = relentad.cli("crm", "followups", "nobody@example.test", check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
