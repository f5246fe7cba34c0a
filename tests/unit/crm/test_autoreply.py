"""The automatic reply (relentad.crm.autoreply): its checks, the Sieve it writes, and running it as delivery does."""

from __future__ import annotations

import sqlite3
import time

import pytest

from relentad.crm import autoreply, rules
from relentad.crm.autoreply import AutoReply
from relentad.errors import InvalidInput
from relentad.message import parse
from relentad.store import accounts, db

RAW = b"From: Bob <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Order\r\n\r\nHi.\r\n"


def vacation_of(reply: AutoReply, today: float) -> object:
    """What the reply's script does on a message received at ``today`` (a timestamp)."""
    view = rules.MessageView(parse(RAW), RAW, "bob@elsewhere.test", "alice@example.test", now=today)
    return rules.evaluate([(autoreply.NAME, rules.compiled(autoreply.script(autoreply.checked(reply))))], view).vacation


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (AutoReply(enabled=True, message="  \n"), "write the message the reply says"),
        (AutoReply(enabled=True, message="x", first_day="24.12.2026"), "the first day must be a date like"),
        (AutoReply(enabled=True, message="x", first_day="2026-12-24", last_day="2026-12-01"), "before the first"),
        (AutoReply(enabled=True, message="x", days=91), "must be 1 to 90"),
        (AutoReply(enabled=True, message="x" * (65 << 10)), "longer than 64 KiB"),
        (AutoReply(enabled=True, message="x", subject="s" * 201), "subject is longer than 200"),
    ],
)
def test_checks(reply: AutoReply, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        autoreply.checked(reply)


def test_an_empty_message_is_fine_while_it_is_off() -> None:
    assert autoreply.checked(AutoReply(enabled=False)).message == ""


def test_quotes_backslashes_and_lines_survive_the_script() -> None:
    message = 'Away.\n"Quoted" and a \\ backslash\n\nBye'
    found = vacation_of(AutoReply(enabled=True, message=message, subject='Out "now"', days=2), 1_800_000_000.0)
    assert found is not None
    assert found.reason == message.replace("\n", "\r\n") and found.subject == 'Out "now"'  # type: ignore[attr-defined]
    assert found.period == 2 * 86_400  # type: ignore[attr-defined]


def test_it_answers_on_its_days_only() -> None:
    reply = AutoReply(enabled=True, message="Away", first_day="2027-01-10", last_day="2027-01-12")
    noon = {day: time.mktime((2027, 1, day, 12, 0, 0, 0, 0, -1)) for day in (9, 10, 12, 13)}
    assert vacation_of(reply, noon[9]) is None and vacation_of(reply, noon[13]) is None
    assert vacation_of(reply, noon[10]) is not None and vacation_of(reply, noon[12]) is not None, "both included"


def test_saved_and_run_first_in_the_program(conn: sqlite3.Connection) -> None:
    account_id = accounts.get_account(conn, "alice@example.test").id
    with db.transaction(conn):
        rules.add(conn, account_id, "stop-all", "stop;")
        autoreply.save(conn, account_id, AutoReply(enabled=True, message="Away", first_day=" 2026-12-01 "), now=5.0)
    stored = autoreply.get(conn, account_id)
    assert stored == AutoReply(True, "Away", "", "2026-12-01", "", 7, 5.0)
    assert autoreply.describe(stored) == "on from 2026-12-01"
    assert [name for name, _ in rules.load(conn, account_id)] == [autoreply.NAME, "stop-all"], "before any stop"
    with db.transaction(conn):
        autoreply.save(conn, account_id, AutoReply(enabled=False, message="Away"))
    assert [name for name, _ in rules.load(conn, account_id)] == ["stop-all"]
    assert autoreply.get(conn, account_id).message == "Away", "kept for next time"
