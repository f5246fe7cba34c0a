"""The account lifecycle (issue 7) against the real daemon: login history and activity (rolled up into months
with its totals kept), expunge then purge with a moved clock (``relentad purge --at``), termination (no mail:
550 5.1.1, no login; ``--now`` purges), and an announcement stored once and filed into every INBOX."""

from __future__ import annotations

import imaplib
import json
import smtplib
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_quota import cli, send, usage
from tests.support.daemon import PASSWORD, Daemon
from tests.support.imap import client, message

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"


@pytest.fixture
def relentad(make_daemon: MakeDaemon) -> Daemon:
    settings = {"auth": {"plaintext_loopback": True}}
    return provision(make_daemon(imap=True, submission=True, settings=settings)).start()


def test_login_history_and_activity(relentad: Daemon) -> None:
    client(relentad, ALICE).logout()
    with pytest.raises(imaplib.IMAP4.error):
        imaplib.IMAP4(relentad.host, relentad.imap_port, timeout=10).login(ALICE, "wrong password")
    with smtplib.SMTP(relentad.host, relentad.submission_port, timeout=10) as smtp:
        smtp.login(ALICE, PASSWORD)
        smtp.sendmail(ALICE, [BOB, CAROL], b"From: alice@example.test\r\nSubject: hi\r\n\r\nHi.\r\n")
    assert send(relentad, ALICE, message("incoming"))[0] == 250

    shown = json.loads(cli(relentad, "activity", ALICE, "--days", "2", "--json"))
    logins = {(entry["protocol"], entry["result"]) for entry in shown["logins"]}
    assert logins == {("imap", "success"), ("imap", "failure"), ("smtp", "success")}
    assert all(entry["ip"] == "127.0.0.1" and entry["time"] for entry in shown["logins"])
    today = shown["days"][0]
    assert today["received"] == 1 and today["sent"] == 2 and today["logins"] == 2 and today["failed_logins"] == 1
    assert today["bytes_stored"] > len(message("incoming"))
    assert ALICE in cli(relentad, "activity", ALICE)
    totals = shown["totals"]
    assert (totals["received"], totals["sent"], totals["logins"], totals["failed_logins"]) == (1, 2, 2, 1)
    assert shown["months"] == []

    # a year and a month later the purge rolls these days up into a month: the rows go, the totals stay
    result = json.loads(cli(relentad, "purge", "--at", str(time.time() + 400 * 86400), "--json"))
    assert result["activity_rows"] >= 3
    later = json.loads(cli(relentad, "activity", ALICE, "--json"))
    assert later["totals"] == totals and later["logins"] == []
    [month] = later["months"]
    assert (month["received"], month["sent"], month["logins"], month["failed_logins"]) == (1, 2, 2, 1)
    assert relentad.query("SELECT id FROM login_history WHERE login = ?", ALICE) == []
    assert "(rolled up)" in cli(relentad, "activity", ALICE)


def test_expunge_then_purge_with_a_moved_clock(relentad: Daemon) -> None:
    imap = client(relentad, CAROL)
    for subject in ("keep", "drop one", "drop two"):
        imap.append("INBOX", None, None, message(subject))
    imap.select("INBOX")
    imap.store("2:3", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    imap.logout()
    assert len(relentad.query("SELECT id FROM expunged")) == 2
    assert usage(relentad, CAROL)["messages"] == 1, "expunged mail no longer counts"
    blobs = len(relentad.query("SELECT id FROM blobs"))

    assert json.loads(cli(relentad, "purge", "--json"))["expunged"] == 0, "still within retention"
    later = str(time.time() + 91 * 86400)
    result = json.loads(cli(relentad, "purge", "--at", later, "--json"))
    assert result["expunged"] == 2 and result["blobs"] == 2
    assert relentad.query("SELECT id FROM expunged") == []
    assert len(relentad.query("SELECT id FROM blobs")) == blobs - 2
    assert [b"Subject: keep" in m for m in relentad.messages(CAROL)] == [True]


def test_junk_mail_expires_after_junk_days_and_an_open_session_sees_it_go(relentad: Daemon) -> None:
    imap = client(relentad, CAROL)
    imap.append("Junk", None, None, message("old junk"))
    imap.append("INBOX", None, None, message("inbox mail"))
    imap.select("Junk")
    assert json.loads(cli(relentad, "purge", "--at", str(time.time() + 29 * 86400), "--json"))["junk"] == 0
    result = json.loads(cli(relentad, "purge", "--at", str(time.time() + 31 * 86400), "--json"))
    assert (result["junk"], result["expunged"]) == (1, 0), "into retention first, purged after deleted_days"
    imap.noop()
    assert imap.untagged_responses.get("EXPUNGE") == [b"1"]
    assert imap.select("Junk") == ("OK", [b"0"])
    imap.logout()
    assert [row["mailbox_name"] for row in relentad.query("SELECT mailbox_name FROM expunged")] == ["Junk"]
    assert [b"Subject: inbox mail" in m for m in relentad.messages(CAROL)] == [True]
    assert "expired 0 Junk and 0 Trash message(s) into retention" in cli(relentad, "purge")


def test_trash_expires_by_when_mail_was_moved_there_and_a_qresync_session_sees_it_vanish(relentad: Daemon) -> None:
    """``[retention] trash_days`` counts from the MOVE into Trash (SAVEDATE), not from the message's date: an old
    message moved there today stays 29 days and goes after 31, into retention; a QRESYNC session gets VANISHED."""
    imap = client(relentad, CAROL)
    imap.append("INBOX", None, '"01-Jan-2020 10:00:00 +0000"', message("old, trashed today"))
    imap.append("INBOX", None, None, message("stays"))
    imap.select("INBOX")
    assert imap.uid("MOVE", "1", "Trash")[0] == "OK"
    imap.logout()
    watcher = client(relentad, CAROL)
    assert watcher._simple_command("ENABLE", "QRESYNC")[0] == "OK"
    watcher.select("Trash")
    assert json.loads(cli(relentad, "purge", "--at", str(time.time() + 29 * 86400), "--json"))["trash"] == 0
    result = json.loads(cli(relentad, "purge", "--at", str(time.time() + 31 * 86400), "--json"))
    assert (result["trash"], result["junk"], result["expunged"]) == (1, 0, 0), "into retention, not yet purged"
    watcher.noop()
    assert watcher.untagged_responses.get("VANISHED") == [b"1"]
    watcher.logout()
    assert [row["mailbox_name"] for row in relentad.query("SELECT mailbox_name FROM expunged")] == ["Trash"]
    assert [b"Subject: stays" in m for m in relentad.messages(CAROL)] == [True]


def test_terminate_refuses_mail_and_login_and_purges(relentad: Daemon) -> None:
    assert send(relentad, BOB, message("before"))[0] == 250
    out = cli(relentad, "user", "terminate", BOB, "--yes")
    assert "terminated" in out and "1 message(s) kept for 90 days" in out
    code, text = send(relentad, BOB, message("after"))
    assert (code, text[:5]) == (550, b"5.1.1")
    with pytest.raises(imaplib.IMAP4.error):
        imaplib.IMAP4(relentad.host, relentad.imap_port, timeout=10).login(BOB, PASSWORD)
    assert relentad.messages(BOB) == [] and len(relentad.query("SELECT id FROM expunged")) == 1
    # sales@ still reaches alice; bob is gone from it
    assert send(relentad, "sales@example.test", message("to sales"))[0] == 250

    # past retention, the purge removes the account itself
    result = json.loads(cli(relentad, "purge", "--at", str(time.time() + 91 * 86400), "--json"))
    assert result["accounts"] == 1
    assert relentad.query("SELECT id FROM accounts WHERE email = ?", BOB) == []

    assert "terminated and purged" in cli(relentad, "user", "terminate", CAROL, "--yes", "--now")
    assert relentad.query("SELECT id FROM accounts WHERE email = ?", CAROL) == []
    assert relentad.query("SELECT id FROM blobs WHERE refs <= 0") == []


def test_announce_is_stored_once_into_every_inbox(relentad: Daemon, tmp_path: Path) -> None:
    body = tmp_path / "body.txt"
    body.write_text("Maintenance on Sunday, 02:00 UTC.\n", encoding="utf-8")
    out = cli(relentad, "announce", "--subject", "Maintenance", "--body-file", str(body), "--domain", "example.test")
    assert "3 account(s)" in out
    copies = [relentad.messages(user)[-1] for user in (ALICE, BOB, CAROL)]
    assert copies[0] == copies[1] == copies[2]
    assert b"Subject: Maintenance" in copies[0] and b"From: <postmaster@mx.example.test>" in copies[0]
    [row] = relentad.query("SELECT refs FROM blobs WHERE data = ?", copies[0])
    assert row["refs"] == 3
    imap = client(relentad, BOB)
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and b"Maintenance" in data[0][1]
    imap.logout()


def test_activity_keeps_a_deleted_mailboxs_mail_with_its_account(relentad: Daemon) -> None:
    """A deleted mailbox's retained mail stays its account's history, also when SQLite hands the mailbox's id to a
    new mailbox of another account."""
    for subject in ("one", "two", "three"):
        assert send(relentad, ALICE, message(subject))[0] == 250
    before = json.loads(cli(relentad, "activity", ALICE, "--json"))["totals"]
    imap = client(relentad, ALICE)
    imap.create("Projects")
    imap.select("INBOX")
    imap.uid("MOVE", "1:*", "Projects")
    assert imap.delete("Projects")[0] == "OK"
    imap.logout()
    other = client(relentad, BOB)
    other.create("Bob's")  # takes the deleted mailbox's id (SQLite reuses the highest rowid)
    other.logout()
    [gone] = {row["mailbox_id"] for row in relentad.query("SELECT mailbox_id FROM expunged")}
    assert relentad.query("SELECT name FROM mailboxes WHERE id = ?", gone)[0]["name"] == "Bob's"

    after = json.loads(cli(relentad, "activity", ALICE, "--json"))
    assert after["totals"]["received"] == before["received"] == 3
    assert after["totals"]["bytes_stored"] == before["bytes_stored"]
    assert after["days"][0]["received"] == 3
    assert json.loads(cli(relentad, "activity", BOB, "--json"))["totals"]["received"] == 0

    # purged past retention: folded into alice's month, not bob's
    cli(relentad, "purge", "--at", str(time.time() + 91 * 86400))
    [month] = json.loads(cli(relentad, "activity", ALICE, "--json"))["months"]
    assert month["received"] == 3
    assert json.loads(cli(relentad, "activity", BOB, "--json"))["months"] == []


def test_sessions_open_at_termination_end(relentad: Daemon) -> None:
    """Termination happens in the CLI's process; a submission session logged in before it sends nothing more, and
    an IMAP session ends with BYE at its next command (the account is checked at most once a second)."""
    assert send(relentad, BOB, message("before"))[0] == 250
    imap = client(relentad, BOB)
    imap.select("INBOX")
    smtp = smtplib.SMTP(relentad.host, relentad.submission_port, timeout=10)
    smtp.login(BOB, PASSWORD)
    cli(relentad, "user", "terminate", BOB, "--yes")

    code, text = smtp.mail(BOB)
    assert (code, text[:5]) == (530, b"5.7.0"), "no more mail from a terminated account"
    with pytest.raises(smtplib.SMTPAuthenticationError):
        smtp.login(BOB, PASSWORD)
    smtp.close()

    time.sleep(1.1)  # past the session's account check interval
    with pytest.raises(imaplib.IMAP4.abort, match="terminated"):
        imap.append("INBOX", None, None, message("after"))
    rows = relentad.query(
        """SELECT m.id FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id JOIN accounts a ON a.id = b.account_id
           WHERE a.email = ?""",
        BOB,
    )
    assert rows == [] and relentad.messages(ALICE) == []
