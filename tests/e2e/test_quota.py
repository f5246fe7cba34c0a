"""Quotas (issue 7) over real sockets: disk quota at SMTP RCPT (452 4.2.2) and DATA (552 5.2.2), aliases with
some full targets, IMAP APPEND NO [OVERQUOTA], GETQUOTAROOT against the stored bytes, the 90 % warning delivered
once, and the submission's hourly/daily send limits hit at exactly the configured counts, across a restart."""

from __future__ import annotations

import json
import re
import smtplib
from typing import Any

from click.testing import CliRunner

from relentad.cli import main
from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import PASSWORD, Daemon
from tests.support.imap import client, message

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
    assert used_kib == (stored_bytes(daemon, CAROL) + 1023) // 1024 and limit_kib == 10000 // 1024
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
    bob, carol = "bob@example.test", CAROL

    replies = submission_rcpts(daemon, [bob, carol, bob, carol])  # the 4th recipient this hour is one too many
    assert [code for code, _ in replies] == [250, 250, 250, 450]
    assert replies[3][1].startswith(b"4.7.1") and b"3" in replies[3][1]

    cli(daemon, "quota", "set", "alice@example.test", "--hourly-send", "0")
    replies = submission_rcpts(daemon, [bob, carol, bob])
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
