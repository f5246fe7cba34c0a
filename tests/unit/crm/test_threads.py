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


def test_a_reply_naming_only_unknown_messages_falls_back_to_the_subject(
    conn: sqlite3.Connection, account_id: int
) -> None:
    """A client that keeps In-Reply-To of a message the account never saw (sent from a phone, say) but "Re:"."""
    start = assign(conn, account_id, parse(msg("Quote for widgets", "a@x")), 1000.0)
    reply = assign(conn, account_id, parse(msg("Re: Quote for widgets", "b@x", "<phone@y>", "<phone@y>")), 1001.0)
    assert reply == start
    assert assign(conn, account_id, parse(msg("Other", "c@x", in_reply_to="<phone@y>")), 1002.0) == start


def test_threads_that_arrived_apart_merge_when_a_message_links_them(conn: sqlite3.Connection, account_id: int) -> None:
    """C answers B, B answers A; delivered C, A, B: A started a thread of its own until B linked the two."""
    grandchild = assign(conn, account_id, parse(msg("Re: Re: Plan", "c@x", in_reply_to="<b@x>")), 1000.0)
    root = assign(conn, account_id, parse(msg("Plan", "a@x")), 1001.0)
    assert root != grandchild
    reply = assign(conn, account_id, parse(msg("Re: Plan", "b@x", "<a@x>", "<a@x>")), 1002.0)
    assert reply == min(root, grandchild)
    rows = conn.execute("SELECT id, subject, messages, first_message, last_message FROM crm_threads").fetchall()
    assert [tuple(r) for r in rows] == [(reply, "Plan", 3, 1000.0, 1002.0)]
    ids = conn.execute("SELECT msgid, thread_id FROM crm_thread_ids ORDER BY msgid").fetchall()
    assert [tuple(r) for r in ids] == [("a@x", reply), ("b@x", reply), ("c@x", reply)]
    assert assign(conn, account_id, parse(msg("Re: Plan", "d@x", in_reply_to="<c@x>")), 1003.0) == reply


def test_a_merged_threads_id_is_never_handed_out_again(conn: sqlite3.Connection, account_id: int) -> None:
    """The merge deletes the newest thread; SQLite alone would give its id (a client's cached THREADID) to the
    next new thread, a different conversation. Deleting an account's threads must not free ids either."""
    root = assign(conn, account_id, parse(msg("Plan", "a@x")), 1000.0)
    orphan = assign(conn, account_id, parse(msg("Notes", "c@x", references="<b@x>")), 1001.0)
    assert orphan > root
    assert assign(conn, account_id, parse(msg("Re: Plan", "b@x", "<a@x>")), 1002.0) == root
    fresh = assign(conn, account_id, parse(msg("Lunch", "d@x")), 1003.0)
    assert fresh not in (root, orphan)
    conn.execute("DELETE FROM crm_threads WHERE id = ?", (fresh,))
    assert assign(conn, account_id, parse(msg("Dinner", "e@x")), 1004.0) > fresh
