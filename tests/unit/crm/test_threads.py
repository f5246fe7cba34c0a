"""Thread building (relentad.crm.threads): Message-ID / In-Reply-To / References, and the subject fallback."""

from __future__ import annotations

import sqlite3

import pytest

from relentad.crm.threads import SUBJECT_WINDOW, assign, normalize_subject
from relentad.message import parse


def msg(subject: str, message_id: str | None = None, in_reply_to: str = "", references: str = "") -> bytes:
    headers = ["From: bob@partner.test", "To: alice@example.test", f"Subject: {subject}"]
    if message_id:
        headers.append(f"Message-ID: <{message_id}>")
    if in_reply_to:
        headers.append(f"In-Reply-To: {in_reply_to}")
    if references:
        headers.append(f"References: {references}")
    return ("\r\n".join(headers) + "\r\n\r\nbody\r\n").encode()


@pytest.mark.parametrize(
    ("subject", "key", "reply"),
    [
        ("Re: Offer", "offer", True),
        ("RE: re: Fwd: Offer", "offer", True),
        ("AW: [sales] Re[2]: The  Offer ", "the offer", True),
        ("[fork] Offer", "offer", False),
        ("Reply to all", "reply to all", False),
        ("Re:", "", True),
        ("[only a tag]", "[only a tag]", False),
        ("", "", False),
    ],
)
def test_normalize_subject(subject: str, key: str, reply: bool) -> None:
    assert normalize_subject(subject) == (key, reply)


def test_reply_joins_parent_by_in_reply_to(conn: sqlite3.Connection, account_id: int) -> None:
    first = assign(conn, account_id, parse(msg("Offer", "a@x")), 1000.0)
    second = assign(conn, account_id, parse(msg("Re: Offer", "b@x", in_reply_to="<a@x>")), 1001.0)
    third = assign(conn, account_id, parse(msg("Totally new title", "c@x", references="<a@x> <b@x>")), 1002.0)
    assert first == second == third
    row = conn.execute(
        "SELECT messages, first_message, last_message FROM crm_threads WHERE id = ?", (first,)
    ).fetchone()
    assert tuple(row) == (3, 1000.0, 1002.0)


def test_child_before_parent(conn: sqlite3.Connection, account_id: int) -> None:
    reply = assign(conn, account_id, parse(msg("Re: Offer", "b@x", in_reply_to="<a@x>")), 1000.0)
    parent = assign(conn, account_id, parse(msg("Offer", "a@x")), 1001.0)
    assert reply == parent


def test_subject_fallback_only_for_replies_without_references(conn: sqlite3.Connection, account_id: int) -> None:
    start = assign(conn, account_id, parse(msg("Quarterly numbers", "a@x")), 1000.0)
    broken_client = assign(conn, account_id, parse(msg("Re: Quarterly  numbers", "b@x")), 2000.0)
    assert broken_client == start
    same_title_new_topic = assign(conn, account_id, parse(msg("Quarterly numbers", "c@x")), 3000.0)
    assert same_title_new_topic != start
    much_later = assign(conn, account_id, parse(msg("Re: Lunch", "d@x")), 4000.0)
    lunch = assign(conn, account_id, parse(msg("Re: Lunch", "e@x")), 4000.0 + SUBJECT_WINDOW + 1)
    assert lunch != much_later


def test_unknown_references_start_a_thread_that_later_replies_share(conn: sqlite3.Connection, account_id: int) -> None:
    one = assign(conn, account_id, parse(msg("Re: x", "b@x", in_reply_to="<never-seen@x>")), 1000.0)
    two = assign(conn, account_id, parse(msg("Re: x", "c@x", references="<never-seen@x>")), 1001.0)
    assert one == two


def test_threads_are_per_account(conn: sqlite3.Connection, account_id: int) -> None:
    from relentad.store import accounts

    other = accounts.add_account(conn, "bob@example.test", "x", quota_bytes=0, daily_send=0).id
    assert assign(conn, account_id, parse(msg("Offer", "a@x")), 1.0) != assign(
        conn, other, parse(msg("Offer", "a@x")), 1.0
    )
