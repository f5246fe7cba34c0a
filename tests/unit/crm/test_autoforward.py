"""The account page's forwarding (relentad.crm.autoforward): its checks, the Sieve it writes, its place in the
account's program, and doctor's list of domains that forward."""

from __future__ import annotations

import sqlite3

import pytest

from relentad.cli import forwarding_domains
from relentad.crm import autoforward, autoreply, rules
from relentad.crm.autoforward import AutoForward
from relentad.errors import InvalidInput
from relentad.message import parse
from relentad.store import accounts, db

RAW = b"From: Bob <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Order\r\n\r\nHi.\r\n"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("", "write the address to forward to"),
        ("not an address", "is not an email address"),
        ("alice@example.test", "is at a domain of this server"),
        ("Someone@EXAMPLE.TEST", "is at a domain of this server"),
    ],
)
def test_checks(conn: sqlite3.Connection, address: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        autoforward.checked(conn, AutoForward(enabled=True, address=address))


def test_the_script_redirects_with_or_without_a_copy(conn: sqlite3.Connection) -> None:
    view = rules.MessageView(parse(RAW), RAW, "bob@elsewhere.test", "alice@example.test")
    kept = autoforward.checked(conn, AutoForward(True, "Me@Elsewhere.Test", keep=True))
    outcome = rules.evaluate([("forwarding", rules.compiled(autoforward.script(kept)))], view)
    assert outcome.redirects == ["me@elsewhere.test"] and outcome.targets("INBOX") == [("INBOX", [])]
    gone = rules.evaluate(
        [("forwarding", rules.compiled(autoforward.script(AutoForward(True, kept.address, False))))], view
    )
    assert gone.redirects == ["me@elsewhere.test"] and gone.targets("INBOX") == []


def test_stored_run_after_the_automatic_reply_and_named_to_doctor(conn: sqlite3.Connection) -> None:
    account_id = accounts.get_account(conn, "alice@example.test").id
    assert forwarding_domains(conn) == []
    with db.transaction(conn):
        rules.add(conn, account_id, "stop-all", "stop;")
        autoforward.save(conn, account_id, AutoForward(True, "me@elsewhere.test"), now=3.0)
        autoreply.save(conn, account_id, autoreply.AutoReply(enabled=True, message="Away"))
    assert autoforward.get(conn, account_id) == AutoForward(True, "me@elsewhere.test", True, 3.0)
    assert [name for name, _ in rules.load(conn, account_id)] == [autoreply.NAME, autoforward.NAME, "stop-all"]
    assert forwarding_domains(conn) == ["example.test"], (
        "doctor checks that example.test's SPF passes this host (SRS senders)"
    )
    with db.transaction(conn):
        autoforward.save(conn, account_id, AutoForward(False, "me@elsewhere.test"))
    assert autoforward.NAME not in [name for name, _ in rules.load(conn, account_id)]
    assert autoforward.describe(autoforward.get(conn, account_id)) == "off"
