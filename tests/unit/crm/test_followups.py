"""Follow-ups (relentad.crm.followups): which messages make a thread await a reply, and which end the wait."""

from __future__ import annotations

import sqlite3

from relentad.crm import followups
from relentad.crm.participants import BULK, IN, LIST, OUT, PERSON, Participant
from relentad.crm.sorter import AccountPlan, file_message
from relentad.message import parse

BOB = Participant("bob@partner.test", "Bob", "to", PERSON)


def file(
    conn: sqlite3.Connection,
    account_id: int,
    blob: int,
    direction: str,
    people: list[Participant],
    *,
    reply_to: int | None = None,
    when: float | None = None,
) -> int:
    raw = f"Subject: offer\r\nMessage-ID: <{blob}@x>\r\n"
    if reply_to is not None:
        raw += f"In-Reply-To: <{reply_to}@x>\r\n"
    plan = AccountPlan(account_id, direction, people, "offer", "")
    return file_message(conn, plan, parse((raw + "\r\nbody\r\n").encode()), blob, when or 1000.0 + blob)


def waiting(conn: sqlite3.Connection, account_id: int) -> list[tuple[int, float]]:
    rows = conn.execute(
        "SELECT awaiting_message, awaiting FROM crm_threads WHERE account_id = ? AND awaiting IS NOT NULL ORDER BY id",
        (account_id,),
    )
    return [(int(r[0]), float(r[1])) for r in rows]


def author(address: str, kind: str = PERSON) -> Participant:
    return Participant(address, "", "from", kind)


def test_sent_to_a_person_waits_until_a_reply_and_a_later_send_restarts_the_clock(
    conn: sqlite3.Connection, account_id: int
) -> None:
    first = file(conn, account_id, 1, OUT, [BOB])
    assert waiting(conn, account_id) == [(first, 1001.0)]
    file(conn, account_id, 2, IN, [author("bob@partner.test")], reply_to=1)
    assert waiting(conn, account_id) == []
    third = file(conn, account_id, 3, OUT, [BOB], reply_to=2)
    assert waiting(conn, account_id) == [(third, 1003.0)]
    fourth = file(conn, account_id, 4, OUT, [BOB], reply_to=3)  # a reminder: the clock starts again
    assert waiting(conn, account_id) == [(fourth, 1004.0)]


def test_mail_to_lists_automatic_senders_or_nobody_else_waits_for_nothing(
    conn: sqlite3.Connection, account_id: int
) -> None:
    file(conn, account_id, 1, OUT, [Participant("dev@lists.test", "", "to", LIST)])
    file(conn, account_id, 2, OUT, [Participant("noreply@shop.test", "", "to", BULK)])
    file(conn, account_id, 3, OUT, [])  # only to the account's own addresses: no participant at all
    file(conn, account_id, 4, OUT, [Participant("bob@partner.test", "", "from", PERSON)])  # not a recipient
    assert waiting(conn, account_id) == []


def test_what_does_not_count_leaves_the_wait_alone(conn: sqlite3.Connection, account_id: int) -> None:
    sent = file(conn, account_id, 1, OUT, [BOB])
    file(conn, account_id, 2, IN, [author("bob@partner.test", BULK)], reply_to=1)  # out of office
    file(conn, account_id, 3, IN, [], reply_to=1)  # filed into Junk: no participants
    file(conn, account_id, 4, IN, [Participant("carol@partner.test", "", "to", PERSON)], reply_to=1)  # forged own From
    file(conn, account_id, 5, OUT, [], reply_to=1)  # a note to oneself
    assert waiting(conn, account_id) == [(sent, 1001.0)]
    file(conn, account_id, 6, IN, [Participant("dev@lists.test", "", "list", LIST)], reply_to=1)  # answered on a list
    assert waiting(conn, account_id) == []


def test_a_sent_message_older_than_the_threads_newest_does_not_wait(conn: sqlite3.Connection, account_id: int) -> None:
    file(conn, account_id, 1, IN, [author("bob@partner.test")], when=5000.0)
    file(conn, account_id, 2, OUT, [BOB], reply_to=1, when=4000.0)  # imported old mail
    assert waiting(conn, account_id) == []


def test_a_reply_older_than_the_sent_message_does_not_end_the_wait(conn: sqlite3.Connection, account_id: int) -> None:
    sent = file(conn, account_id, 1, OUT, [BOB], when=5000.0)
    file(conn, account_id, 2, IN, [author("bob@partner.test")], reply_to=1, when=4000.0)
    assert waiting(conn, account_id) == [(sent, 5000.0)]


def test_threads_merged_wait_as_their_newest_part_did(conn: sqlite3.Connection, account_id: int) -> None:
    """3 answers 2, which answers 1; delivered 3, 1, 2: 2 links two threads into one."""
    file(conn, account_id, 3, IN, [author("bob@partner.test")], reply_to=2, when=3000.0)
    sent = file(conn, account_id, 1, OUT, [BOB], when=1000.0)
    assert waiting(conn, account_id) == [(sent, 1000.0)]  # alone in its thread so far
    file(conn, account_id, 2, IN, [author("noreply@partner.test", BULK)], reply_to=1, when=2000.0)
    assert waiting(conn, account_id) == []  # Bob's answer (3) is the merged thread's newest part

    file(conn, account_id, 13, OUT, [BOB], reply_to=12, when=3000.0)
    file(conn, account_id, 11, IN, [author("bob@partner.test")], when=1000.0)
    file(conn, account_id, 12, IN, [author("noreply@partner.test", BULK)], reply_to=11, when=2000.0)
    threads = conn.execute("SELECT count(*) FROM crm_threads WHERE account_id = ?", (account_id,)).fetchone()[0]
    assert threads == 2 and [m for m, _ in waiting(conn, account_id)] == [
        conn.execute("SELECT id FROM crm_messages WHERE blob_id = 13").fetchone()[0]
    ]


def test_is_reply() -> None:
    assert followups.is_reply(IN, [author("bob@partner.test")])
    assert followups.is_reply(IN, [Participant("dev@lists.test", "", "list", LIST)])
    assert not followups.is_reply(IN, [author("noreply@shop.test", BULK)])
    assert not followups.is_reply(IN, [Participant("bob@partner.test", "", "to", PERSON)])
    assert not followups.is_reply(OUT, [author("bob@partner.test")])
    assert not followups.is_reply(IN, [])


def test_delay_per_account_and_uidvalidity(conn: sqlite3.Connection, account_id: int) -> None:
    assert followups.days(conn, account_id, 3) == 3
    before = followups.uidvalidity(conn, account_id, 3)
    followups.set_days(conn, account_id, 0)
    assert followups.days(conn, account_id, 3) == 0
    assert followups.uidvalidity(conn, account_id, 0) > before
    followups.set_days(conn, account_id, None)
    assert followups.days(conn, account_id, 5) == 5
    assert followups.uidvalidity(conn, account_id, 3) > before
    followups.set_subscribed(conn, account_id, False)
    assert not followups.subscribed(conn, account_id) and followups.days(conn, account_id, 5) == 5
