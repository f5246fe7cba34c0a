"""What the spam filter learns beyond Junk moves, and the sender lists, on the real daemon with synthetic mail (no
corpus needed): replies sent through submission, ``spam train EMAIL --mailboxes``, ``spam allow`` / ``block``."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import client, imap_daemon, tls_client_context

MIN_TRAINED = 20  # [spam] min_trained for this daemon: the synthetic models below pass it


def synthetic(sender: str, display: str, subject: str, msgid: str, body: str) -> bytes:
    """One synthetic message as a client would send it (the ham and spam below differ only in these)."""
    return (
        f"From: {display} <{sender}>\r\nTo: someone@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{msgid}>\r\n\r\n{body}\r\n"
    ).encode()


def ham(n: int, sender: str = "colleague@partner.test") -> bytes:
    body = f"The meeting agenda for tuesday, item {n}: budget review and minutes of the project meeting."
    return synthetic(sender, "Colleague", f"meeting agenda {n}", f"ham{n}@partner.test", body)


def spam(n: int, sender: str = "deals@pills.test") -> bytes:
    body = f"Buy cheap viagra pills now, winner {n}! Limited offer, click to claim your free prize."
    return synthetic(sender, "Deals", f"cheap pills offer {n}", f"spam{n}@pills.test", body)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("learning")
    settings = {"spam": {"min_trained": MIN_TRAINED}}
    relentad = imap_daemon(root / "mx", dns_server.nameserver, submission=True, settings=settings)
    yield relentad
    relentad.stop()


def deliver(daemon: Daemon, rcpt: str, raw: bytes) -> None:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as smtp:
        smtp.sendmail("sender@elsewhere.test", [rcpt], raw)


def trained_rows(daemon: Daemon, email: str, expected: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    """(class, source) of the account's training records, polling until they are ``expected`` in any order (learning
    from users runs in the background after the reply)."""
    rows: list[tuple[Any, ...]] = []
    for _ in range(200):
        found = daemon.query(
            "SELECT t.class, t.source FROM spam_trained t JOIN accounts a ON a.id = t.scope WHERE a.email = ?", email
        )
        rows = [tuple(row) for row in found]
        if sorted(rows) == sorted(expected):
            break
        time.sleep(0.05)
    return rows


def test_a_reply_sent_through_submission_teaches_the_answered_message_as_ham(daemon: Daemon) -> None:
    """carol has no model: a message reaches her, she answers it through submission, and the answered message is
    learned as ham into her model (source "reply"); her next mail is judged with that ham counted."""
    carol = "carol@example.test"
    deliver(daemon, carol, ham(1))
    reply = (
        f"From: Carol <{carol}>\r\nTo: colleague@partner.test\r\nSubject: Re: meeting agenda 1\r\n"
        "In-Reply-To: <ham1@partner.test>\r\n\r\nThanks, noted.\r\n"
    ).encode()
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=30) as smtp:
        smtp.starttls(context=tls_client_context())
        smtp.login(carol, PASSWORD)
        smtp.sendmail(carol, ["alice@example.test"], reply)
    assert trained_rows(daemon, carol, [("ham", "reply")]) == [("ham", "reply")]
    assert "1 messages recorded (0 spam, 1 ham; 1 by reply)" in daemon.cli("spam", "stats").stdout
    deliver(daemon, carol, ham(2))
    assert b"verdict=untrained, trained=0 spam/1 ham," in daemon.messages(carol, "INBOX")[-1]


def test_spam_train_from_an_accounts_own_mailboxes(daemon: Daemon) -> None:
    """After an import, the account's Junk and other folders train its model: ``spam train EMAIL --mailboxes``."""
    dave = "dave@example.test"
    daemon.add_user(dave)
    for n in range(3):
        deliver(daemon, dave, ham(10 + n))
    imap = client(daemon, dave)
    for n in range(2):  # as an import puts them: straight into Junk, which trains nothing by itself
        assert imap.append("Junk", None, None, spam(10 + n))[0] == "OK"
    imap.logout()
    taught = daemon.cli("spam", "train", dave, "--mailboxes")
    assert f"{dave}: 3 ham and 2 spam in the mailboxes" in taught.stderr
    assert taught.stdout.startswith(f"{dave}: 5 messages,") and "0 already trained" in taught.stdout
    assert "5 already trained" in daemon.cli("spam", "train", dave, "--mailboxes").stdout
    [row] = [row for row in json.loads(daemon.cli("spam", "stats", "--json").stdout) if row["scope"] == dave]
    assert row["sources"] == {"mailboxes": 5} and (row["recorded_spam"], row["recorded_ham"]) == (2, 3)
    for args in (["--global", "--mailboxes"], [dave, "--mailboxes", "--ham", "/tmp"], [dave]):
        refused = daemon.cli("spam", "train", *args, check=False)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr


def test_sender_lists_from_the_cli_decide_over_the_score(daemon: Daemon, tmp_path: Path) -> None:
    """``spam allow`` keeps a spam sender's mail out of Junk; ``spam block`` files a ham sender's mail there."""
    alice = "alice@example.test"
    for folder, make in (("ham", ham), ("spam", spam)):
        (tmp_path / folder).mkdir()
        for n in range(MIN_TRAINED):
            (tmp_path / folder / f"{n}.eml").write_bytes(make(100 + n))
    daemon.cli("spam", "train", alice, "--ham", str(tmp_path / "ham"), "--spam", str(tmp_path / "spam"))
    deliver(daemon, alice, spam(1, sender="offers@pills.test"))
    assert b"X-Spam-Status: Yes, verdict=spam," in daemon.messages(alice, "Junk")[-1]

    assert daemon.cli("spam", "senders", alice).stdout.startswith(f"{alice}: no senders listed")
    assert daemon.cli("spam", "allow", alice, "Offers@Pills.Test").stdout.strip() == f"{alice}: allow offers@pills.test"
    assert daemon.cli("spam", "block", alice, "@Partner.Test").stdout.strip() == f"{alice}: block @partner.test"
    listed = json.loads(daemon.cli("spam", "senders", alice, "--json").stdout)
    assert [(row["sender"], row["action"]) for row in listed] == [
        ("offers@pills.test", "allow"),
        ("@partner.test", "block"),
    ]
    deliver(daemon, alice, spam(2, sender="offers@pills.test"))
    allowed = daemon.messages(alice, "INBOX")[-1]
    assert b"X-Spam-Status: No, verdict=spam, allowlisted," in allowed
    deliver(daemon, alice, ham(3, sender="pat@news.partner.test"))  # a subdomain of the blocked one
    blocked = daemon.messages(alice, "Junk")[-1]
    assert b"X-Spam-Status: Yes, verdict=ham, blocked-sender," in blocked

    assert daemon.cli("spam", "unlist", alice, "offers@pills.test", "@partner.test").returncode == 0
    assert daemon.cli("spam", "senders", alice).stdout.startswith(f"{alice}: no senders listed")
    missing = daemon.cli("spam", "unlist", alice, "@nothing.test", check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == f"Error: {alice}: not listed: @nothing.test"
    bad = daemon.cli("spam", "block", alice, "@bad..test", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not a domain name" in bad.stderr


def test_moves_across_junks_border_set_the_keyword_of_the_decision(daemon: Daemon) -> None:
    bob = "bob@example.test"
    deliver(daemon, bob, ham(40))
    imap = client(daemon, bob)
    imap.select("INBOX")
    assert imap.uid("STORE", "1", "+FLAGS", "($NotJunk custom)")[0] == "OK"
    assert imap.uid("MOVE", "1", "Junk")[0] == "OK"
    imap.select("Junk")
    [flags] = imap.uid("FETCH", "1", "(FLAGS)")[1]
    assert b"$Junk" in flags and b"$NotJunk" not in flags and b"custom" in flags, flags
    assert imap.uid("MOVE", "1", "INBOX")[0] == "OK"
    imap.select("INBOX")
    [flags] = imap.uid("FETCH", "2", "(FLAGS)")[1]
    assert b"$NotJunk" in flags and b"$Junk" not in flags, flags
    imap.logout()
    assert trained_rows(daemon, bob, [("ham", "imap-move")]) == [("ham", "imap-move")]  # the spam lesson reversed


def test_a_store_replacing_the_flags_teaches_what_it_changed(daemon: Daemon) -> None:
    """``FLAGS (...)`` (replace) teaches as +FLAGS of the keywords it added and -FLAGS of those it removed."""
    gina = "gina@example.test"
    daemon.add_user(gina)
    deliver(daemon, gina, ham(70))
    deliver(daemon, gina, ham(71))
    imap = client(daemon, gina)
    imap.select("INBOX")
    assert imap.uid("STORE", "1", "+FLAGS", "($Junk)")[0] == "OK"
    assert trained_rows(daemon, gina, [("spam", "imap-flag")]) == [("spam", "imap-flag")]
    assert imap.uid("STORE", "1", "FLAGS", "(\\Seen)")[0] == "OK"  # drops $Junk: "not junk" after all
    assert trained_rows(daemon, gina, [("ham", "imap-flag")]) == [("ham", "imap-flag")]
    assert imap.uid("STORE", "2", "FLAGS", "(\\Seen $Junk)")[0] == "OK"
    both = [("ham", "imap-flag"), ("spam", "imap-flag")]
    assert sorted(trained_rows(daemon, gina, both)) == both
    imap.logout()


def test_a_copy_out_of_a_crm_view_teaches_as_a_copy_from_the_real_folder(daemon: Daemon) -> None:
    """``Contacts/<Name>`` shows the contact's mail wherever it is: copying a message that is really in Junk out of
    the view into INBOX is "not junk" (ham, and the copy gets $NotJunk instead of $Junk), as COPY from Junk is."""
    hana = "hana@example.test"
    daemon.add_user(hana)
    deliver(daemon, hana, ham(80))
    daemon.cli("contacts", "tag", hana, "colleague@partner.test", "work")  # confirmed: the view appears
    imap = client(daemon, hana)
    imap.select("INBOX")
    assert imap.uid("MOVE", "1", "Junk")[0] == "OK"
    assert trained_rows(daemon, hana, [("spam", "imap-move")]) == [("spam", "imap-move")]
    assert imap.select('"Contacts/Colleague"', readonly=True)[0] == "OK"  # imaplib refuses a [READ-ONLY] SELECT
    assert imap.copy("1", "INBOX")[0] == "OK"
    assert trained_rows(daemon, hana, [("ham", "imap-move")]) == [("ham", "imap-move")]
    imap.select("INBOX")
    [flags] = imap.fetch("1", "(FLAGS)")[1]
    assert b"$NotJunk" in flags and b"$Junk" not in flags, flags
    imap.logout()


def test_spam_rebuild_relearns_an_accounts_lessons_as_bulk_training_would(daemon: Daemon) -> None:
    """What users taught one move or flag at a time, ``relentad spam rebuild`` learns again together (the daemon
    does it daily): the lessons stay recorded, their learn counts change, and ``spam stats`` says when."""
    erin = "erin@example.test"
    daemon.add_user(erin)
    for n in range(3):
        deliver(daemon, erin, spam(60 + n))
        deliver(daemon, erin, ham(60 + n))
    imap = client(daemon, erin)
    imap.select("INBOX")
    assert imap.uid("MOVE", "1,3,5", "Junk")[0] == "OK"
    assert imap.uid("STORE", "2,4,6", "+FLAGS", "($NotJunk)")[0] == "OK"
    imap.logout()
    lessons = [("spam", "imap-move")] * 3 + [("ham", "imap-flag")] * 3
    assert sorted(trained_rows(daemon, erin, lessons), reverse=True) == lessons
    rebuilt = daemon.cli("spam", "rebuild", erin)
    assert rebuilt.stdout.startswith(f"{erin}: 6 lessons relearned, "), rebuilt.stdout
    [row] = [row for row in json.loads(daemon.cli("spam", "stats", "--json").stdout) if row["scope"] == erin]
    assert row["rebuilt"] is not None and row["recorded"] == 6 and row["sources"] == {"imap-flag": 3, "imap-move": 3}
    assert f"{erin}: 6 lessons relearned" in daemon.cli("spam", "rebuild", "--all").stdout
    for args in ([], [erin, "--all"], ["nobody@example.test"]):
        refused = daemon.cli("spam", "rebuild", *args, check=False)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
