"""The vacation action (RFC 5230, RFC 6131): argument checks, when no reply goes out, the reply, the tracking."""

from __future__ import annotations

import email
import email.policy
import sqlite3

import pytest

from relentad.crm import rules, vacation
from relentad.crm.sieve import DAY, Vacation, compile_script
from relentad.errors import InvalidInput
from relentad.message import parse

REQ = 'require ["vacation", "vacation-seconds"];\n'
OWN = frozenset({"alice@example.test", "sales@example.test"})
HEAD = (
    b"From: Bob <bob@remote.example>\r\nTo: Alice <alice@example.test>\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <m1@remote.example>\r\n"
    b"References: <m0@remote.example>\r\n"
)


def action(script: str) -> Vacation:
    [command] = compile_script(REQ + script).commands
    assert isinstance(command, rules.Action) and command.vacation is not None
    return command.vacation


def view(head: bytes = HEAD, sender: str = "bob@remote.example") -> rules.MessageView:
    raw = head + b"\r\nHello\r\n"
    return rules.MessageView(parse(raw), raw, sender, "alice@example.test")


def test_arguments_and_period_clamping() -> None:
    given = action(
        'vacation :days 3 :subject "Away" :from "Alice <Sales@Example.test>" :addresses ["a@x.test"] :handle "h" "Off";'
    )
    assert (given.period, given.subject, given.from_, given.addresses, given.handle) == (
        3 * DAY,
        "Away",
        "Alice <Sales@Example.test>",
        ("a@x.test",),
        "h",
    )
    assert action('vacation "Off";').period == 7 * DAY
    assert action('vacation :days 0 "Off";').period == DAY, "at least a day"
    assert action('vacation :days 5000 "Off";').period == 90 * DAY
    assert action('vacation :seconds 10 "Off";').period == 3600, "at least an hour"
    assert action('vacation :seconds 7200 "Off";').period == 7200


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ('vacation :days 1 :seconds 60 "x";', ":days and :seconds"),
        ('vacation :from "nobody" "x";', "not an email address"),
        ('vacation :addresses ["ok@x.test", "bad"] "x";', "not an email address"),
        ('vacation "";', "empty"),
        ('vacation :mime "just text";', "MIME entity"),
        ('vacation :days "x" "y";', "bad value"),
        ('vacation "a" "b";', "sieve"),
    ],
)
def test_bad_arguments_are_refused(script: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        compile_script(REQ + script)


def test_require_is_needed_and_seconds_needs_its_own() -> None:
    with pytest.raises(InvalidInput, match="vacation"):
        compile_script('vacation "x";')
    with pytest.raises(InvalidInput, match="vacation-seconds"):
        compile_script('require "vacation"; vacation :seconds 3600 "x";')


def test_from_must_be_the_accounts_own_when_added(conn: sqlite3.Connection, account_id: int) -> None:
    with pytest.raises(InvalidInput, match="not one of the account's addresses"):
        rules.add(conn, account_id, "v", REQ + 'vacation :from "boss@example.test" "x";')
    rules.add(conn, account_id, "v", REQ + 'vacation :from "Alice <alice+away@example.test>" "x";')


@pytest.mark.parametrize(
    ("extra", "sender", "reason"),
    [
        (b"", "", "empty"),
        (b"", "MAILER-DAEMON@remote.example", "system or list address"),
        (b"", "owner-dev@lists.example", "system or list address"),
        (b"", "dev-request@lists.example", "system or list address"),
        (b"", "alice+x@example.test", "the account itself"),
        (b"Auto-Submitted: auto-generated\r\n", "bob@remote.example", "Auto-Submitted"),
        (b"Precedence: bulk\r\n", "bob@remote.example", "Precedence: bulk"),
        (b"Precedence: list\r\n", "bob@remote.example", "Precedence: list"),
        (b"List-Unsubscribe: <mailto:u@lists.example>\r\n", "bob@remote.example", "List-*"),
        (b"List-Id: <dev.lists.example>\r\n", "bob@remote.example", "List-*"),
        (b"X-Auto-Response-Suppress: DR, OOF\r\n", "bob@remote.example", "Suppress"),
    ],
)
def test_no_reply(extra: bytes, sender: str, reason: str) -> None:
    assert reason in vacation.why_not(
        view(HEAD + extra, sender), OWN, action('vacation "x";'), personal=OWN, junk=False, forged=""
    )


def test_no_reply_to_junk_dmarc_failures_or_mail_not_addressed_to_the_account() -> None:
    given = action('vacation "x";')
    assert "Junk" in vacation.why_not(view(), OWN, given, personal=OWN, junk=True, forged="")
    assert "DMARC" in vacation.why_not(view(), OWN, given, personal=OWN, junk=False, forged="the message failed DMARC")
    bcc = HEAD.replace(b"To: Alice <alice@example.test>", b"To: dev@lists.example")
    assert "none of the account's addresses" in vacation.why_not(
        view(bcc), OWN, given, personal=OWN, junk=False, forged=""
    )
    listed = action('vacation :addresses "dev@lists.example" "x";')
    assert vacation.why_not(view(bcc), OWN, listed, personal=OWN, junk=False, forged="") == ""
    elsewhere = action('vacation :addresses "alice@home.example" "x";')  # the user's own, as Pigeonhole has it
    assert "the account itself" in vacation.why_not(
        view(HEAD, "Alice@home.example"), OWN, elsewhere, personal=OWN, junk=False, forged=""
    )
    subaddress = HEAD.replace(b"alice@example.test", b"alice+shop@example.test")
    assert vacation.why_not(view(subaddress), OWN, given, personal=OWN, junk=False, forged="") == ""
    assert (
        vacation.why_not(view(HEAD + b"Auto-Submitted: no\r\n"), OWN, given, personal=OWN, junk=False, forged="") == ""
    )


def test_the_reply() -> None:
    given = action('vacation :from "Älice <sales@example.test>" "Bin weg, zurück am Montag.";')
    reply = vacation.decide(view(), OWN, 1, given, personal=OWN, junk=False, forged="", now=0.0)
    assert isinstance(reply, vacation.Reply)
    assert (reply.to, reply.from_address, reply.period) == ("bob@remote.example", "sales@example.test", 7 * DAY)
    assert reply.raw.isascii() and b"\n" not in reply.raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(reply.raw, policy=email.policy.default)
    assert parsed["From"].addresses[0].display_name == "Älice"
    assert parsed["To"].addresses[0].addr_spec == "bob@remote.example"
    assert parsed["Subject"] == "Auto: Grüße"
    assert parsed["In-Reply-To"] == "<m1@remote.example>"
    assert parsed["References"].split() == ["<m0@remote.example>", "<m1@remote.example>"]
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["Message-ID"].endswith("@example.test>") and parsed["Date"]
    assert parsed.get_content_type() == "text/plain" and parsed.get_content_charset() == "utf-8"
    assert parsed.get_content().strip() == "Bin weg, zurück am Montag."


def test_a_from_not_the_accounts_is_ignored_and_mime_reasons_are_entities() -> None:
    given = action(
        'vacation :from "boss@example.test" :mime text:\nContent-Type: text/html\nX-Other: no\n\n<p>Off</p>\n.\n;'
    )
    reply = vacation.decide(view(), OWN, 1, given, personal=OWN, junk=False, forged="", now=0.0)
    assert isinstance(reply, vacation.Reply) and reply.from_address == "alice@example.test"
    parsed = email.message_from_bytes(reply.raw, policy=email.policy.default)
    assert parsed.get_content_type() == "text/html" and "X-Other" not in parsed
    assert parsed.get_content().strip() == "<p>Off</p>"


def test_tracking_one_reply_per_period_cap_and_prune(conn: sqlite3.Connection, account_id: int) -> None:
    given = action('vacation :days 2 "x";')
    reply = vacation.decide(view(), OWN, account_id, given, personal=OWN, junk=False, forged="", now=0.0)
    assert isinstance(reply, vacation.Reply)
    assert vacation.claim(conn, reply, 1000.0) == ""
    assert "already replied" in vacation.claim(conn, reply, 1000.0 + DAY)
    other = vacation.decide(
        view(), OWN, account_id, action('vacation "other text";'), personal=OWN, junk=False, forged="", now=0
    )
    assert isinstance(other, vacation.Reply) and other.handle != reply.handle
    assert vacation.claim(conn, other, 1000.0 + DAY) == "", "another reply text answers again"
    assert vacation.claim(conn, reply, 1000.0 + 2 * DAY + 1) == "", "the period is over"
    assert vacation.prune(conn, 1000.0 + 30 * DAY) == 2
    for n in range(vacation.MAX_PER_HOUR):
        sender = vacation.Reply(account_id, f"s{n}@remote.example", "alice@example.test", "h", DAY, b"")
        assert vacation.claim(conn, sender, 5000.0) == ""
    last = vacation.Reply(account_id, "late@remote.example", "alice@example.test", "h", DAY, b"")
    assert "last hour" in vacation.claim(conn, last, 5000.0)


def test_personal_addresses_leave_out_shared_aliases_and_catch_alls(conn: sqlite3.Connection, account_id: int) -> None:
    from relentad.store import accounts, db

    with db.transaction(conn):
        accounts.add_account(conn, "bob@example.test", "x", quota_bytes=0, daily_send=0)
        accounts.add_alias(conn, "me@example.test", "alice@example.test")
        accounts.add_alias(conn, "sales@example.test", "alice@example.test")
        accounts.add_alias(conn, "sales@example.test", "bob@example.test")
        accounts.add_alias(conn, "@example.test", "alice@example.test")
    personal = vacation.personal_addresses(conn, account_id)
    assert personal == {"alice@example.test", "me@example.test"}
    given = action('vacation "x";')
    shared = HEAD.replace(b"To: Alice <alice@example.test>", b"To: sales@example.test, made-up@example.test")
    own = personal | {"sales@example.test", "made-up@example.test"}  # what reaches alice: her aliases, the envelope
    why = vacation.why_not(view(shared), own, given, personal=personal, junk=False, forged="")
    assert "a shared alias or a catch-all is none" in why
    listed = action('vacation :addresses "sales@example.test" "x";')  # the user answers for it: then it does
    assert vacation.why_not(view(shared), own, listed, personal=personal, junk=False, forged="") == ""


def test_only_the_first_vacation_runs_and_the_implicit_keep_stays() -> None:
    script = compile_script(REQ + 'vacation "one"; vacation "two";')
    outcome = rules.evaluate([("r", script)], view())
    assert outcome.vacation is not None and outcome.vacation.reason == "one"
    assert outcome.targets("INBOX") == [("INBOX", [])]
    assert "vacation (ignored" in outcome.trace[-1]


def test_the_daily_purge_forgets_replies_past_their_period(conn: sqlite3.Connection, account_id: int) -> None:
    from relentad.lifecycle import retention
    from relentad.store import db

    reply = vacation.Reply(account_id, "bob@remote.example", "alice@example.test", "h", DAY, b"")
    with db.transaction(conn):
        assert vacation.claim(conn, reply, 1000.0) == ""
        retention.purge(conn, deleted_days=30, now=1000.0 + DAY / 2)
    assert vacation.replied(conn, account_id, "Bob@Remote.example", "h", 1000.0 + DAY / 2), "still in its period"
    with db.transaction(conn):
        retention.purge(conn, deleted_days=30, now=1000.0 + 2 * DAY)
    assert conn.execute("SELECT count(*) FROM sieve_vacation").fetchone()[0] == 0
