"""Quotas (issue 7) over real sockets: disk quota at SMTP RCPT (452 4.2.2) and DATA (552 5.2.2), aliases with
some full targets, IMAP APPEND NO [OVERQUOTA], GETQUOTAROOT against the stored bytes, the 90 % warning delivered
once, the message limit (RFC 9208 MESSAGE) on SMTP and IMAP, local recipients of submitted mail checked like the
MX's, and the submission's hourly/daily send limits hit at exactly the configured counts, across a restart and
across parallel sessions."""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiosmtpd.controller import Controller
from click.testing import CliRunner

from relentad.cli import main
from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_outbound import FAST_QUEUE
from tests.support.daemon import PASSWORD, Daemon, free_port, wait_for
from tests.support.imap import Raw, client, message
from tests.support.smtp_peer import Sink

CAROL = "carol@example.test"
WARNING = b"Subject: Your mailbox is almost full"


def cli(daemon: Daemon, *args: str) -> str:
    """``relentad --config <daemon's> ARGS`` in this process (the same code as the installed command, faster)."""
    result = CliRunner().invoke(main, ["--config", str(daemon.config_path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def usage(daemon: Daemon, email: str) -> dict[str, Any]:
    """``quota show --recount --json``: the counters must never have drifted from the rows."""
    out = cli(daemon, "quota", "show", email, "--recount", "--json")
    result: dict[str, Any] = json.loads(out)
    assert result["drift"] == {"bytes": 0, "messages": 0}
    return result


def stored_bytes(daemon: Daemon, email: str) -> int:
    [row] = daemon.query(
        """SELECT coalesce(sum(m.size), 0) AS n FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
           JOIN accounts a ON a.id = b.account_id WHERE a.email = ?""",
        email,
    )
    return int(row["n"])


def send(daemon: Daemon, rcpt: str, raw: bytes) -> tuple[int, bytes]:
    """One MX transaction; the RCPT reply if it is refused, else the DATA reply."""
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as smtp:
        smtp.ehlo("sender.elsewhere.test")
        smtp.mail("friend@elsewhere.test")
        code, text = smtp.rcpt(rcpt)
        if code != 250:
            return code, text
        return smtp.data(raw)


def test_disk_quota_over_smtp_and_imap(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(imap=True, settings={"auth": {"plaintext_loopback": True}})).start()
    cli(daemon, "quota", "set", CAROL, "--disk", "10000")

    first = message("first", "x" * 1000 + "\r\n")
    assert send(daemon, CAROL, first)[0] == 250
    used = usage(daemon, CAROL)["bytes"]
    prefix = used - len(first)
    # a message that takes carol to ~91 %: accepted, and the warning comes once
    fill = message("fill", "y" * (9100 - used - prefix - len(message("fill", ""))) + "\r\n")
    assert send(daemon, CAROL, fill)[0] == 250
    inbox = daemon.messages(CAROL)
    assert [WARNING in m for m in inbox] == [False, False, True]
    assert b"From: Mail system <postmaster@mx.example.test>" in inbox[2]

    code, text = send(daemon, CAROL, message("too big", "z" * 2000 + "\r\n"))
    assert (code, text[:5]) == (552, b"5.2.2")
    assert len(daemon.messages(CAROL)) == 3, "a refused message is not stored"

    # GETQUOTAROOT reports what is stored (STORAGE in KiB, rounded up)
    imap = client(daemon, CAROL)
    typ, data = imap.getquotaroot("INBOX")
    quota_line = next(d for d in data[1] if d.startswith(b'"" (STORAGE'))
    used_kib, limit_kib = map(int, re.findall(rb"\d+", quota_line))
    assert used_kib == (stored_bytes(daemon, CAROL) + 1023) // 1024 and limit_kib == (10000 + 1023) // 1024
    assert used_kib <= limit_kib, "within its quota, never shown as over it (both rounded up)"
    assert usage(daemon, CAROL)["bytes"] == stored_bytes(daemon, CAROL)

    # full: RCPT 452 4.2.2, APPEND NO [OVERQUOTA]; no second warning
    cli(daemon, "quota", "set", CAROL, "--disk", str(stored_bytes(daemon, CAROL)))
    code, text = send(daemon, CAROL, message("later"))
    assert (code, text[:5]) == (452, b"4.2.2")
    typ, data = imap.append("INBOX", None, None, message("appended"))
    assert typ == "NO" and b"OVERQUOTA" in data[0]
    imap.logout()
    assert sum(WARNING in m for m in daemon.messages(CAROL)) == 1


def test_alias_delivers_to_targets_with_room(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon()).start()
    assert send(daemon, "alice@example.test", message("one"))[0] == 250
    cli(daemon, "quota", "set", "alice@example.test", "--disk", "100")  # alice is over: full
    assert send(daemon, "sales@example.test", message("to sales"))[0] == 250
    assert len(daemon.messages("alice@example.test")) == 1 and len(daemon.messages("bob@example.test")) == 1
    assert send(daemon, "bob@example.test", message("two"))[0] == 250
    cli(daemon, "quota", "set", "bob@example.test", "--disk", "100")
    code, text = send(daemon, "sales@example.test", message("to sales again"))
    assert (code, text[:5]) == (452, b"4.2.2")
    shown = cli(daemon, "quota", "show", "bob@example.test")
    assert "of 100B (" in shown and "in 2 message(s)" in shown


def test_mx_never_drops_a_copy_after_250(make_daemon: MakeDaemon) -> None:
    """A message that would take one of several recipients over its quota is refused whole at DATA with 452 4.2.2
    (RFC 5321 §6.1: no silent drop after 250, no bounce from the MX); with SIZE= declared, the retry gets that
    recipient refused at RCPT (RFC 1870 §6.2) and the others the message."""
    daemon = provision(make_daemon()).start()
    alice, bob = "alice@example.test", "bob@example.test"
    cli(daemon, "quota", "set", alice, "--disk", "3000")
    raw = message("big", ("x" * 70 + "\r\n") * 100)

    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as smtp:
        smtp.ehlo("sender.elsewhere.test")
        smtp.mail("friend@elsewhere.test")
        assert smtp.rcpt(alice)[0] == 250 and smtp.rcpt(bob)[0] == 250
        code, text = smtp.data(raw)
        assert (code, text[:5]) == (452, b"4.2.2")
    assert daemon.messages(alice) == [] and daemon.messages(bob) == [], "refused whole: nothing stored"

    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as smtp:  # the sender's retry
        smtp.ehlo("sender.elsewhere.test")
        smtp.mail("friend@elsewhere.test", [f"SIZE={len(raw)}"])
        code, text = smtp.rcpt(alice)
        assert (code, text[:5]) == (452, b"4.2.2")
        assert smtp.rcpt(bob)[0] == 250
        assert smtp.data(raw)[0] == 250
    assert daemon.messages(alice) == [] and len(daemon.messages(bob)) == 1
    assert send(daemon, alice, message("small"))[0] == 250, "a small message still fits"


def submission_rcpts(daemon: Daemon, rcpts: list[str]) -> list[tuple[int, bytes]]:
    """One submission transaction as alice: the RCPT replies, then DATA when any was accepted."""
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as smtp:
        smtp.ehlo("laptop.example.test")
        smtp.login("alice@example.test", PASSWORD)
        smtp.mail("alice@example.test")
        replies = [smtp.rcpt(r) for r in rcpts]
        if any(code == 250 for code, _ in replies):
            data = smtp.data(b"From: alice@example.test\r\nTo: team\r\nSubject: limits\r\n\r\nHi.\r\n")
            assert data[0] == 250, data
        return replies


def test_send_limits_at_exact_counts_survive_restart(make_daemon: MakeDaemon) -> None:
    settings = {"auth": {"plaintext_loopback": True}, "submission": {"sent_folder": ""}}
    daemon = provision(make_daemon(submission=True, settings=settings)).start()
    cli(daemon, "quota", "set", "alice@example.test", "--hourly-send", "3", "--daily-send", "5")
    bob, carol, sales, info = "bob@example.test", CAROL, "sales@example.test", "info@example.test"

    replies = submission_rcpts(daemon, [bob, carol, sales, info])  # the 4th recipient this hour is one too many
    assert [code for code, _ in replies] == [250, 250, 250, 450]
    assert replies[3][1].startswith(b"4.7.1") and b"3" in replies[3][1]

    cli(daemon, "quota", "set", "alice@example.test", "--hourly-send", "0")
    replies = submission_rcpts(daemon, [bob, carol, sales])
    assert [code for code, _ in replies] == [250, 250, 550]
    assert replies[2][1].startswith(b"5.7.1") and b"limit of 5" in replies[2][1]

    daemon.stop()
    daemon.start()
    [(code, text)] = submission_rcpts(daemon, [bob])
    assert (code, text[:5]) == (550, b"5.7.1"), "the daily counter survives a restart"
    cli(daemon, "quota", "set", "alice@example.test", "--hourly-send", "5", "--daily-send", "0")
    [(code, text)] = submission_rcpts(daemon, [bob])
    assert (code, text[:5]) == (450, b"4.7.1"), "so does the hourly one"
    shown = usage(daemon, "alice@example.test")
    assert shown["sent_this_hour"] == 5 and shown["sent_today"] == 5


def test_a_recipient_named_twice_is_sent_and_counted_once(make_daemon: MakeDaemon) -> None:
    """A repeated RCPT (the domain in another case too) gets 250 but one copy and one count against the send limit,
    as Postfix's duplicate filter does; the local part's case is the remote's to interpret (RFC 5321 §2.4)."""
    sink = Sink()
    relay = Controller(sink, hostname="127.0.0.1", port=free_port())
    relay.start()
    try:
        queue = {**FAST_QUEUE, "smarthost": f"127.0.0.1:{relay.port}", "smarthost_tls": "none"}
        settings = {"auth": {"plaintext_loopback": True}, "submission": {"sent_folder": ""}, "queue": queue}
        daemon = provision(make_daemon(submission=True, settings=settings)).start()
        cli(daemon, "quota", "set", "alice@example.test", "--hourly-send", "3")
        rcpts = ["pal@remote.test", "pal@remote.test", "pal@REMOTE.test", "Pal@remote.test", "bob@example.test"]
        replies = submission_rcpts(daemon, [*rcpts, "bob@example.test", "third@remote.test"])
        assert [code for code, _ in replies] == [250, 250, 250, 250, 250, 250, 450]
        [(_, relayed, _)] = wait_for("the relay to get it", lambda: sink.accepted)
        assert relayed == ["pal@remote.test", "Pal@remote.test"]
        assert len(daemon.messages("bob@example.test")) == 1
        assert usage(daemon, "alice@example.test")["sent_this_hour"] == 3
    finally:
        relay.stop()


def test_message_limit_over_smtp_and_imap(make_daemon: MakeDaemon) -> None:
    """RFC 9208 MESSAGE: a per-account message count limit, refused like the disk quota and reported by QUOTA."""
    settings = {"auth": {"plaintext_loopback": True}, "quota": {"messages": 50}}
    daemon = provision(make_daemon(imap=True, settings=settings)).start()
    runner = CliRunner()
    for args in (["dave@example.test"], ["erin@example.test", "--messages", "5"]):
        added = runner.invoke(
            main, ["--config", str(daemon.config_path), "user", "add", *args, "--password-stdin"], "long enough pw\n"
        )
        assert added.exit_code == 0, added.output
    assert usage(daemon, "dave@example.test")["message_limit"] == 50, "[quota] messages is the default"
    assert usage(daemon, "erin@example.test")["message_limit"] == 5
    assert "messages: 0 of 5" in cli(daemon, "quota", "show", "erin@example.test")
    cli(daemon, "quota", "set", CAROL, "--messages", "2")
    assert send(daemon, CAROL, message("one"))[0] == 250
    assert send(daemon, CAROL, message("two"))[0] == 250
    code, text = send(daemon, CAROL, message("three"))
    assert (code, text[:5]) == (452, b"4.2.2"), "at the message limit: mailbox full at RCPT"
    assert len(daemon.messages(CAROL)) == 2
    shown = usage(daemon, CAROL)
    assert (shown["messages"], shown["message_limit"]) == (2, 2)

    imap = client(daemon, CAROL)
    assert b"QUOTA=RES-MESSAGE" in imap.capability()[1][0]
    typ, data = imap.getquotaroot("INBOX")
    assert typ == "OK" and data == [[b'INBOX ""'], [b'"" (MESSAGE 2 2)']]
    typ, data = imap.getquota('""')
    assert typ == "OK" and data == [b'"" (MESSAGE 2 2)']
    typ, data = imap.append("INBOX", None, None, message("appended"))
    assert typ == "NO" and b"OVERQUOTA" in data[0]
    imap.select("INBOX")
    typ, data = imap.copy("1", "Archive")
    assert typ == "NO" and b"OVERQUOTA" in data[0]
    typ, data = imap._simple_command("MOVE", "1", "Archive")
    assert typ == "OK", "MOVE adds nothing: allowed at the limit"
    typ, data = imap.setquota('""', "(MESSAGE 100)")
    assert typ == "NO" and b"NOPERM" in data[0]

    # both resources once there is a disk quota too; DELETED and DELETED-STORAGE in STATUS (RFC 9208 §5)
    cli(daemon, "quota", "set", CAROL, "--disk", "1MB")
    typ, data = imap.getquota('""')
    stored_kib = (stored_bytes(daemon, CAROL) + 1023) // 1024
    assert data == [f'"" (STORAGE {stored_kib} 977 MESSAGE 2 2)'.encode()], "1MB is 976.6 KiB, rounded up"
    imap.store("1", "+FLAGS", "(\\Deleted)")
    [row] = daemon.query(
        """SELECT m.size FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id JOIN accounts a ON a.id = b.account_id
           WHERE a.email = ? AND b.name = 'INBOX'""",
        CAROL,
    )
    size = int(row["size"])
    typ, data = imap.status("INBOX", "(MESSAGES DELETED DELETED-STORAGE)")
    assert typ == "OK" and f"(MESSAGES 1 DELETED 1 DELETED-STORAGE {(size + 1023) // 1024})".encode() in data[0]
    imap.expunge()
    typ, data = imap.append("INBOX", None, None, message("appended"))
    assert typ == "OK", "room again after EXPUNGE"
    imap.logout()

    cli(daemon, "quota", "set", CAROL, "--messages", "0", "--disk", "0")
    assert send(daemon, CAROL, message("unlimited again"))[0] == 250


def submit(
    daemon: Daemon, rcpts: list[str], raw: bytes, before_data: Any = None, sender: str = "alice@example.test"
) -> tuple[list[int], tuple[int, bytes]]:
    """One submission transaction as alice: RCPT codes, then (``before_data`` run first) the DATA reply."""
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as smtp:
        smtp.login("alice@example.test", PASSWORD)
        smtp.mail(sender)
        codes = [smtp.rcpt(r)[0] for r in rcpts]
        if before_data is not None:
            before_data()
        return codes, smtp.data(raw)


def test_submission_checks_local_recipients_quota(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(submission=True, settings={"auth": {"plaintext_loopback": True}})).start()
    alice, bob = "alice@example.test", "bob@example.test"
    raw = b"From: alice@example.test\r\nTo: carol, bob\r\nSubject: to local friends\r\n\r\nHi.\r\n"
    cli(daemon, "quota", "set", CAROL, "--messages", "1")
    assert send(daemon, CAROL, message("fills carol"))[0] == 250

    # carol is full: 452 4.2.2 at RCPT as on the MX; bob still gets it
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as smtp:
        smtp.login(alice, PASSWORD)
        smtp.mail(alice)
        code, text = smtp.rcpt(CAROL)
        assert (code, text[:5]) == (452, b"4.2.2")
        assert smtp.rcpt(bob)[0] == 250
        assert smtp.data(raw)[0] == 250
    assert len(daemon.messages(CAROL)) == 1 and len(daemon.messages(bob)) == 1

    # room at RCPT, full by DATA, carol the only recipient: 552 5.2.2, nothing stored or counted (no Sent copy)
    cli(daemon, "quota", "set", CAROL, "--messages", "2")
    sent_before, counted_before = len(daemon.messages(alice, "Sent")), usage(daemon, alice)["sent_today"]
    codes, (code, text) = submit(daemon, [CAROL], raw, lambda: send(daemon, CAROL, message("fills carol again")))
    assert codes == [250] and (code, text[:5]) == (552, b"5.2.2")
    assert len(daemon.messages(CAROL)) == 2 and len(daemon.messages(alice, "Sent")) == sent_before
    assert usage(daemon, alice)["sent_today"] == counted_before

    # with another recipient that has room: 250, bob and Sent get it, alice gets a bounce naming carol
    cli(daemon, "quota", "set", CAROL, "--messages", "3")
    codes, (code, _) = submit(daemon, [CAROL, bob], raw, lambda: send(daemon, CAROL, message("third")))
    assert codes == [250, 250] and code == 250
    assert len(daemon.messages(CAROL)) == 3 and len(daemon.messages(bob)) == 2
    assert len(daemon.messages(alice, "Sent")) == sent_before + 1
    [bounce] = daemon.messages(alice)
    assert b"Content-Type: multipart/report; report-type=delivery-status" in bounce
    assert b"Final-Recipient: rfc822; carol@example.test" in bounce and b"Status: 5.2.2" in bounce
    assert b"bob@example.test" not in bounce.split(b"message/delivery-status")[1].split(b"rfc822-headers")[0]
    assert usage(daemon, alice)["sent_today"] == counted_before + 2, "both accepted recipients count"

    # the same from the null sender (a read receipt): no bounce, as for remote recipients (nobody to tell)
    cli(daemon, "quota", "set", CAROL, "--messages", "4")
    codes, (code, _) = submit(daemon, [CAROL, bob], raw, lambda: send(daemon, CAROL, message("4th")), sender="<>")
    assert codes == [250, 250] and code == 250
    assert len(daemon.messages(bob)) == 3 and len(daemon.messages(alice)) == 1


def test_send_limit_holds_across_parallel_sessions(make_daemon: MakeDaemon) -> None:
    """Many sessions of one account RCPT at once, then DATA: the hourly limit still lets exactly N through."""
    settings = {"auth": {"plaintext_loopback": True}, "submission": {"sent_folder": ""}}
    daemon = provision(make_daemon(submission=True, settings=settings)).start()
    cli(daemon, "quota", "set", "alice@example.test", "--hourly-send", "5")
    sessions = 12
    everyone_has_rcpt = threading.Barrier(sessions)

    def one(_: int) -> tuple[int, int]:
        with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=30) as smtp:
            smtp.login("alice@example.test", PASSWORD)
            smtp.mail("alice@example.test")
            code = smtp.rcpt("bob@example.test")[0]
            everyone_has_rcpt.wait(timeout=60)  # every session holds its RCPT answer before anyone sends DATA
            if code != 250:
                return code, 0
            return code, smtp.data(b"From: alice@example.test\r\nSubject: race\r\n\r\nHi.\r\n")[0]

    with ThreadPoolExecutor(sessions) as pool:
        results = list(pool.map(one, range(sessions)))
    assert sorted(results) == [(250, 250)] * 5 + [(450, 0)] * (sessions - 5)
    assert usage(daemon, "alice@example.test")["sent_this_hour"] == 5
    assert len(daemon.messages("bob@example.test")) == 5

    # an abandoned transaction gives its reservation back
    cli(daemon, "quota", "set", "alice@example.test", "--hourly-send", "6")
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as first:
        first.login("alice@example.test", PASSWORD)
        first.mail("alice@example.test")
        assert first.rcpt("bob@example.test")[0] == 250  # the 6th, reserved
        with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as second:
            second.login("alice@example.test", PASSWORD)
            second.mail("alice@example.test")
            assert second.rcpt("bob@example.test")[0] == 450
            first.rset()
            assert second.rcpt("bob@example.test")[0] == 250
            assert second.data(b"From: alice@example.test\r\nSubject: after rset\r\n\r\nHi.\r\n")[0] == 250
    assert usage(daemon, "alice@example.test")["sent_this_hour"] == 6


def test_starttls_mid_transaction_gives_the_reservation_back(make_daemon: MakeDaemon) -> None:
    """STARTTLS starts a new session (RFC 3207 §4.2): the transaction before it ends, logged, and its reserved
    recipients no longer count against the send limit."""
    settings = {"auth": {"plaintext_loopback": True}, "submission": {"sent_folder": ""}}
    daemon = provision(make_daemon(submission=True, settings=settings)).start()
    cli(daemon, "quota", "set", "alice@example.test", "--hourly-send", "2")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as smtp:
        smtp.login("alice@example.test", PASSWORD)
        smtp.mail("alice@example.test")
        assert smtp.rcpt("bob@example.test")[0] == 250 and smtp.rcpt(CAROL)[0] == 250
        assert smtp.starttls(context=context)[0] == 220
        smtp.ehlo("laptop.example.test")
        assert smtp.mail("alice@example.test")[0] == 530, "a new session: AUTH again"
    assert [code for code, _ in submission_rcpts(daemon, ["bob@example.test", CAROL])] == [250, 250]
    logged = r"smtp tx=\S+ .*rcpt=<bob@example.test>,<carol@example.test> .*size=- result=220"
    assert len(re.findall(logged, daemon.log())) == 1, "the abandoned transaction is logged once"


def test_append_over_quota_is_refused_before_the_literal_is_sent(make_daemon: MakeDaemon) -> None:
    """An APPEND whose message would not fit gets NO [OVERQUOTA] instead of the "+" that asks for the literal, as
    a literal over APPENDLIMIT gets NO [TOOBIG]; a LITERAL+ literal (already sent) is read and refused; the
    session goes on."""
    daemon = provision(make_daemon(imap=True, settings={"auth": {"plaintext_loopback": True}})).start()
    cli(daemon, "quota", "set", CAROL, "--disk", "5000")
    raw = Raw(daemon)
    raw.login(CAROL)
    raw.send(b"a APPEND INBOX {6000}\r\n")
    assert raw.line().startswith(b"a NO [OVERQUOTA]"), "refused before the client sends 6000 octets"
    raw.send(b"b APPEND INBOX {6000+}\r\n" + b"x" * 6000 + b"\r\n")
    assert raw.until("b")[-1].startswith(b"b NO [OVERQUOTA]")
    fits = message("fits")
    raw.send(b"c APPEND INBOX {%d}\r\n" % len(fits))
    assert raw.line().startswith(b"+ ")
    raw.send(fits + b"\r\n")
    assert raw.until("c")[-1].startswith(b"c OK [APPENDUID ")

    # the message limit too; a mailbox name sent as a literal is not a message
    cli(daemon, "quota", "set", CAROL, "--disk", "0", "--messages", "2")
    raw.send(b"d APPEND {5}\r\n")
    assert raw.line().startswith(b"+ ")
    raw.send(b"INBOX {%d}\r\n" % len(fits))
    assert raw.line().startswith(b"+ "), "one message fits: the mailbox name's literal does not count"
    raw.send(fits + b"\r\n")
    assert raw.until("d")[-1].startswith(b"d OK [APPENDUID ")
    raw.send(b"e APPEND INBOX {%d}\r\n" % len(fits))
    assert raw.line().startswith(b"e NO [OVERQUOTA]")
    assert raw.command("f", "NOOP")[-1].startswith(b"f OK")
    raw.close()
    assert usage(daemon, CAROL)["messages"] == 2


def test_warning_rearms_when_mail_is_deleted(make_daemon: MakeDaemon) -> None:
    """Falling back below 90 % re-arms the warning also when it is EXPUNGE or DELETE that frees the room, so one
    large message taking the mailbox from below 90 % to above it again warns again."""
    daemon = provision(make_daemon(imap=True, settings={"auth": {"plaintext_loopback": True}})).start()
    cli(daemon, "quota", "set", CAROL, "--disk", "20000")
    big = message("big", ("x" * 98 + "\r\n") * 180)  # ~93 % with its trace fields

    def warnings() -> int:
        return sum(WARNING in m for m in daemon.messages(CAROL))

    assert send(daemon, CAROL, big)[0] == 250
    assert warnings() == 1
    imap = client(daemon, CAROL)
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    assert usage(daemon, CAROL)["percent"] < 10
    assert send(daemon, CAROL, big)[0] == 250
    assert warnings() == 2, "below 90 % after EXPUNGE, over it again: warned again"

    imap.create("Old")
    imap.uid("MOVE", "1:*", "Old")
    assert imap.delete("Old")[0] == "OK"
    imap.logout()
    assert send(daemon, CAROL, big)[0] == 250
    assert warnings() == 1, "the warnings went with Old; the new crossing warns once"
    assert usage(daemon, CAROL)["percent"] > 90


def test_submitted_mail_warns_at_90_percent(make_daemon: MakeDaemon) -> None:
    """Mail submitted to a local account, and the sender's own Sent copy, deliver the 90 % warning like the MX."""
    settings = {"auth": {"plaintext_loopback": True}, "submission": {"sent_folder": "Sent"}}
    daemon = provision(make_daemon(submission=True, settings=settings)).start()
    for account in ("alice@example.test", "bob@example.test"):
        cli(daemon, "quota", "set", account, "--disk", "20000")
    body = ("x" * 98 + "\r\n") * 180  # ~93 % of 20000 with its header
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as smtp:
        smtp.login("alice@example.test", PASSWORD)
        raw = f"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: big\r\n\r\n{body}".encode()
        smtp.sendmail("alice@example.test", ["bob@example.test"], raw)
    assert [WARNING in m for m in daemon.messages("bob@example.test")] == [False, True]
    assert [WARNING in m for m in daemon.messages("alice@example.test")] == [True], "by its Sent copy"
    assert usage(daemon, "alice@example.test")["percent"] > 90
