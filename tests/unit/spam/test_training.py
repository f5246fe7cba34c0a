"""Learning from replies (spam/training.py): which received messages a sent reply teaches as ham.

In-process over a real store: the messages are filed by the real pipeline (so the CRM's thread index is the one
the daemon writes) and the lesson runs as the daemon's background task does.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

from relentad import config as config_mod
from relentad.events import Bus
from relentad.pipeline import Delivery, Pipeline, Placement, Stored
from relentad.spam import storage, training
from relentad.spam.tokenize import tokenize
from relentad.store import accounts
from relentad.store.db import Store
from relentad.trace import Source
from tests.support.store import database_with

ALICE = "alice@example.test"
CONFIG = config_mod.from_dict(
    {"server": {"hostname": "mx.example.test"}, "spam": {"enabled": False}, "mailauth": {"verify": False}}
)
SOURCE = Source("192.0.2.1", "h", "ESMTP")


def raw(msgid: str, sender: str = "Bob <bob@acme.example>", subject: str = "quote") -> bytes:
    return (
        f"From: {sender}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\n\r\n"
        f"Could you send the quote for {msgid}?\r\n"
    ).encode()


Filed = list[tuple[bytes, str, list[str]]]
Then = Callable[[Store, int, list[Stored]], Awaitable[int]]


async def file_then(path: Path, filed: Filed, then: Then | None = None) -> int:
    """File each (message, mailbox, keywords) for alice through the real pipeline, then run ``then`` on the store,
    her account id and the stored copies (what a later IMAP command or reply would find)."""
    store = Store(path)
    store.start(asyncio.get_running_loop())
    try:
        account_id = store.read(lambda conn: accounts.get_account(conn, ALICE).id)
        pipeline = Pipeline(store, Bus(), CONFIG)
        stored: list[Stored] = []
        for message, mailbox, keywords in filed:
            # a copy filed into Sent is the account's own (submission's Sent copy: the CRM files it "out")
            placement = Placement(
                account_id, ALICE, mailbox=mailbox, keywords=list(keywords), outgoing=mailbox == "Sent"
            )
            stored += await pipeline.deliver(Delivery(message, "bob@acme.example", [placement], SOURCE, "T1"))
        return await then(store, account_id, stored) if then is not None else 0
    finally:
        store.close()


def file_and_reply(path: Path, filed: Filed, replied: list[str]) -> int:
    """File the messages, then learn from a reply naming ``replied``; returns learn calls."""

    async def reply(store: Store, account_id: int, _: list[Stored]) -> int:
        return await training.learn_replied(store, CONFIG, account_id, replied)

    return asyncio.run(file_then(path, filed, reply))


def recorded(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    """Message-ID → (class, source) of alice's training records."""
    rows = conn.execute(
        "SELECT json_extract(b.structure, '$.m'), t.class, t.source FROM spam_trained t "
        "JOIN blobs b ON b.sha256 = t.sha256"
    ).fetchall()
    return {msgid: (klass, source) for msgid, klass, source in rows}


def test_a_reply_teaches_the_message_it_answers_as_ham(tmp_path: Path) -> None:
    conn = database_with(tmp_path / "r.db", ALICE)
    filed = [(raw("m1@acme.example"), "INBOX", []), (raw("m2@acme.example"), "INBOX", [])]
    learned = file_and_reply(tmp_path / "r.db", filed, ["m1@acme.example"])
    assert learned >= 1
    assert recorded(conn) == {"m1@acme.example": ("ham", "reply")}
    assert storage.recorded(conn, conn.execute("SELECT id FROM accounts").fetchone()[0]) == (0, 1)


def test_a_reply_to_junk_a_judged_message_or_own_mail_teaches_nothing(tmp_path: Path) -> None:
    """Replying to spam ("unsubscribe me") is no verdict; an explicit verdict stays; the account's own mail and
    unknown Message-IDs are not received mail."""
    conn = database_with(tmp_path / "r.db", ALICE)
    judged = raw("judged@acme.example")
    account_id = conn.execute("SELECT id FROM accounts").fetchone()[0]
    with conn:
        storage.train_message(conn, account_id, storage.digest(judged), tokenize(judged), True, "imap-move")
    filed = [
        (raw("junk@acme.example"), "Junk", []),
        (raw("flagged@acme.example"), "INBOX", ["$Junk"]),
        (raw("trash@acme.example"), "Trash", []),
        (judged, "INBOX", []),
        (raw("own@example.test", sender=f"Alice <{ALICE}>"), "Sent", []),
    ]
    names = ["junk@acme.example", "flagged@acme.example", "trash@acme.example", "judged@acme.example"]
    learned = file_and_reply(tmp_path / "r.db", filed, [*names, "own@example.test", "nowhere@x"])
    assert learned == 0
    assert recorded(conn) == {"judged@acme.example": ("spam", "imap-move")}


def flag_lessons(path: Path, lessons: list[training.Lesson]) -> None:
    """File one message for alice, then apply ``lessons`` to it as STOREs of $Junk / $NotJunk do."""

    async def apply(store: Store, account_id: int, stored: list[Stored]) -> int:
        [copy] = stored
        for lesson in lessons:
            await training.learn(store, CONFIG, account_id, copy.mailbox_id, [copy.uid], lesson, "imap-flag")
        return 0

    asyncio.run(file_then(path, [(raw("m1@acme.example"), "INBOX", [])], apply))


def test_clearing_not_junk_retracts_a_ham_lesson_but_never_a_spam_one(tmp_path: Path) -> None:
    """A client marking junk in two commands (+FLAGS ($Junk), then -FLAGS ($NotJunk)) keeps its spam lesson."""
    conn = database_with(tmp_path / "r.db", ALICE)
    flag_lessons(tmp_path / "r.db", [training.lesson_of_store("add", ["$Junk"]) or "ham", "forget"])
    assert recorded(conn) == {"m1@acme.example": ("spam", "imap-flag")}
    conn2 = database_with(tmp_path / "s.db", ALICE)
    flag_lessons(tmp_path / "s.db", ["ham", training.lesson_of_store("remove", ["$NotJunk"]) or "ham"])
    assert recorded(conn2) == {}


def test_the_mailboxes_classify_stored_mail_for_bulk_training(tmp_path: Path) -> None:
    conn = database_with(tmp_path / "r.db", ALICE)
    both = raw("both@acme.example")
    filed = [
        (raw("inbox@acme.example"), "INBOX", []),
        (raw("archive@acme.example"), "Archive/2025", []),
        (raw("junk@acme.example"), "Junk", []),
        (raw("flagged@acme.example"), "INBOX", ["$Junk"]),
        (raw("rescued@acme.example"), "Junk", ["$NotJunk"]),
        (raw("trash@acme.example"), "Trash", []),
        (raw("sent@acme.example"), "Sent", []),
        (raw("oldsent@acme.example"), "Old/Sent Items", []),  # another provider's Sent, as import sees it
        (both, "INBOX", []),
        (both, "Junk", []),  # its copies disagree: left out
    ]
    asyncio.run(file_then(tmp_path / "r.db", filed))
    account_id = conn.execute("SELECT id FROM accounts").fetchone()[0]
    chosen = training.mailbox_corpus(conn, account_id)
    msgid = {row: conn.execute("SELECT json_extract(b.structure, '$.m') FROM messages m JOIN blobs b ON b.id = "
                               "m.blob_id WHERE m.id = ?", (row,)).fetchone()[0] for _, row, _ in chosen}  # fmt: skip
    classes = {msgid[row]: spam for _, row, spam in chosen}
    assert classes == {
        "inbox@acme.example": False,
        "archive@acme.example": False,
        "rescued@acme.example": False,
        "junk@acme.example": True,
        "flagged@acme.example": True,
    }
    key, row, _ = chosen[0]
    copy = training.stored_copy(conn, row)
    blob = conn.execute("SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.id = ?", (row,))
    data = bytes(blob.fetchone()[0])
    assert copy.startswith(b"Return-Path:") and copy.endswith(data) and storage.digest(data) == key
    assert len(training.mailbox_corpus(conn, account_id, limit=1)) == 2  # the newest of each class
