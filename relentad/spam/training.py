"""Learning from what users do: Junk moves and the ``$Junk`` / ``$NotJunk`` keywords in IMAP, and replies.

The IMAP command modules call :func:`after_copy` (COPY/MOVE, once the copy committed) and :func:`after_store`
(STORE, once the flags committed); submission calls :func:`after_send` once a message it accepted committed.
Each only decides whether there is anything to learn and starts a background task; the reply never waits for it.
The task reads the messages, tokenizes them off the event loop (``asyncio.to_thread``) and trains them in ONE
store write job (:func:`storage.train_message` each, then pruning if the account's table outgrew
``[spam] max_tokens``).

What teaches what (the account's own model; the global model is only trained by ``relentad spam train``):
- COPY or MOVE into the Junk folder (name ``Junk`` or special-use ``\\Junk``) → spam.
- MOVE or COPY out of Junk into any folder but Trash (name ``Trash`` or ``\\Trash``) → ham.
- STORE setting ``$Junk`` → spam; setting ``$NotJunk`` or clearing ``$Junk`` → ham; clearing ``$NotJunk``
  alone → forget the message's ham lesson (it retracts a "not junk"; a spam lesson stays, since clients that
  mark junk in two commands, ``+FLAGS ($Junk)`` then ``-FLAGS ($NotJunk)``, would otherwise undo it at once).
  What counts is what the STORE changed on each message (its keywords before and after), so ``FLAGS (...)``
  (replace) teaches as ``+FLAGS`` of what it added and ``-FLAGS`` of what it removed.
- Sending a reply (``[spam] learn_replies``) → ham for the received message its In-Reply-To names, found through
  the CRM's thread index, unless a copy of it is in Junk or Trash or carries ``$Junk`` (a reply to spam, e.g.
  "unsubscribe me", teaches nothing), and never over a verdict already recorded for it: an explicit verdict wins
  over an implicit one. Someone the user answers is a correspondent, and learning their mail as ham is how an
  account without a global model reaches ``[spam] min_trained`` ham, since users seldom move mail out of Junk.

Invariants: training is keyed by the SHA-256 of the stored message (``blobs.sha256``, the same key bulk
training uses for a file), so doing the same thing twice learns once and reversing a decision unlearns exactly
(see storage.py). A failure is logged and never reaches the client. Tasks are kept referenced until done, and
:func:`drain` waits for them (tests, shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..config import Config
from ..store import mailboxes
from ..store.db import Store
from . import storage
from .tokenize import tokenize
from .verdicts import JUNK_KEYWORD, NOT_JUNK_KEYWORD

log = logging.getLogger(__name__)

Lesson = Literal["spam", "ham", "forget"]

MAX_REPLIED = 10  # In-Reply-To values looked up per sent message (RFC 5322 allows several; one is usual)

_tasks: set[asyncio.Task[int]] = set()


@dataclass(frozen=True, slots=True)
class _Folder:
    name: str
    special_use: str


def _folder(conn: sqlite3.Connection, mailbox_id: int) -> _Folder:
    row = conn.execute("SELECT name, coalesce(special_use, '') FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    return _Folder("", "") if row is None else _Folder(str(row[0]), str(row[1]))


def _is_junk(folder: _Folder) -> bool:
    return folder.special_use == "\\Junk" or folder.name.lower() in ("junk", "spam")


def _is_trash(folder: _Folder) -> bool:
    return folder.special_use == "\\Trash" or folder.name.lower() in ("trash", "deleted items")


def lesson_of_copy(source: _Folder, target: _Folder) -> Lesson | None:
    """What a COPY/MOVE from ``source`` to ``target`` teaches (None: nothing)."""
    if _is_junk(target) and not _is_junk(source):
        return "spam"
    if _is_junk(source) and not _is_junk(target) and not _is_trash(target):
        return "ham"
    return None


def lesson_of_store(action: str, flags: Sequence[str]) -> Lesson | None:
    """What adding (``action`` "add") or removing ("remove") ``flags`` teaches; :func:`lesson_of_change` applies
    it to what a STORE really changed on a message."""
    names = {flag.lower() for flag in flags}
    junk, not_junk = JUNK_KEYWORD.lower() in names, NOT_JUNK_KEYWORD.lower() in names
    if action in ("add", "replace"):
        if junk and not not_junk:
            return "spam"
        if not_junk and not junk:
            return "ham"
        return None
    if junk and not not_junk:
        return "ham"
    if not_junk and not junk:
        return "forget"
    return None


def lesson_of_change(before: str, after: str) -> Lesson | None:
    """What a STORE that changed a message's keywords from ``before`` to ``after`` (space-separated) teaches: the
    keywords it added teach as ``+FLAGS`` of them, else the ones it removed as ``-FLAGS`` of them, whatever the
    STORE's mode (``FLAGS (\\Seen)`` dropping ``$Junk`` is ``-FLAGS ($Junk)``)."""
    old, new = set(before.lower().split()), set(after.lower().split())
    return lesson_of_store("add", sorted(new - old)) or lesson_of_store("remove", sorted(old - new))


def copy_lesson(conn: sqlite3.Connection, source_id: int, target_id: int) -> Lesson | None:
    """What a COPY/MOVE between these mailboxes teaches (None: it does not cross Junk's border)."""
    return lesson_of_copy(_folder(conn, source_id), _folder(conn, target_id))


def relabel(lesson: Lesson | None) -> Callable[[str], str] | None:
    """How the keywords of a copy crossing Junk's border change, so that clients show what the user decided: into
    Junk gains ``$Junk`` and loses ``$NotJunk``, out of it the reverse (None: keywords stay as they are)."""
    if lesson not in ("spam", "ham"):
        return None
    add, drop = (JUNK_KEYWORD, NOT_JUNK_KEYWORD) if lesson == "spam" else (NOT_JUNK_KEYWORD, JUNK_KEYWORD)
    gone = {add.lower(), drop.lower()}

    def change(keywords: str) -> str:
        return " ".join([word for word in keywords.split() if word.lower() not in gone] + [add])

    return change


def after_copy(
    store: Store, config: Config, account_id: int, target_id: int, target_uids: Sequence[int], lesson: Lesson | None
) -> None:
    """COPY/MOVE committed: learn ``lesson`` (:func:`copy_lesson`) in the background."""
    if config.spam.learn and target_uids and lesson is not None:
        _start(store, config, account_id, target_id, list(target_uids), lesson, "imap-move")


def after_store(
    store: Store, config: Config, account_id: int, mailbox_id: int, changes: Sequence[tuple[int, str, str]]
) -> None:
    """STORE committed: learn from the $Junk / $NotJunk each message gained or lost (``changes``: uid, keywords
    before, keywords after, of the messages whose flags changed; :func:`lesson_of_change`)."""
    if not config.spam.learn or not changes:
        return
    by_lesson: dict[Lesson, list[int]] = {}
    for uid, before, after in changes:
        lesson = lesson_of_change(before, after)
        if lesson is not None:
            by_lesson.setdefault(lesson, []).append(uid)
    for lesson, uids in by_lesson.items():
        _start(store, config, account_id, mailbox_id, uids, lesson, "imap-flag")


def after_send(store: Store, config: Config, account_id: int, in_reply_to: Sequence[str]) -> None:
    """A message the account sent committed: learn the received messages it answers as ham, in the background."""
    if not (config.spam.learn and config.spam.learn_replies) or not in_reply_to:
        return
    msgids = list(dict.fromkeys(in_reply_to))[:MAX_REPLIED]
    _keep(asyncio.get_running_loop().create_task(learn_replied(store, config, account_id, msgids)))


def _start(
    store: Store, config: Config, account_id: int, mailbox_id: int, uids: list[int], lesson: Lesson, source: str
) -> None:
    _keep(asyncio.get_running_loop().create_task(learn(store, config, account_id, mailbox_id, uids, lesson, source)))


def _keep(task: asyncio.Task[int]) -> None:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def drain() -> None:
    """Wait until every training task started so far has finished."""
    while _tasks:
        await asyncio.gather(*list(_tasks), return_exceptions=True)


def _messages(conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int]) -> list[tuple[bytes, bytes]]:
    rows = []
    for start in range(0, len(uids), 500):
        chunk = uids[start : start + 500]
        rows.extend(
            conn.execute(
                f"""SELECT b.sha256, m.prefix, b.data FROM messages m JOIN blobs b ON b.id = m.blob_id
                    WHERE m.mailbox_id = ? AND m.uid IN ({",".join("?" * len(chunk))})""",
                (mailbox_id, *chunk),
            ).fetchall()
        )
    return [(bytes(key), bytes(prefix) + bytes(data)) for key, prefix, data in rows]


_REPLIED = """
    SELECT b.sha256, m.prefix, b.data, mb.name, coalesce(mb.special_use, ''), m.keywords
    FROM crm_thread_ids t
    JOIN crm_messages c ON c.account_id = t.account_id AND c.thread_id = t.thread_id AND c.direction = 'in'
    JOIN blobs b ON b.id = c.blob_id
    JOIN messages m ON m.blob_id = b.id
    JOIN mailboxes mb ON mb.id = m.mailbox_id AND mb.account_id = t.account_id
    WHERE t.account_id = ? AND t.msgid = ? AND b.structure IS NOT NULL AND json_extract(b.structure, '$.m') = ?
"""


def replied_messages(conn: sqlite3.Connection, account_id: int, msgids: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """(key, raw) of the account's received messages with these Message-IDs that a reply may teach as ham: none
    of whose copies is in Junk or Trash or carries ``$Junk``."""
    copies: dict[bytes, list[tuple[bytes, _Folder, str]]] = {}
    for msgid in msgids:
        for key, prefix, data, name, special_use, keywords in conn.execute(_REPLIED, (account_id, msgid, msgid)):
            copy = (bytes(prefix) + bytes(data), _Folder(name, special_use), keywords)
            copies.setdefault(bytes(key), []).append(copy)
    return [
        (key, found[0][0])
        for key, found in copies.items()
        if not any(_marked_junk(folder, keywords) or _is_trash(folder) for _, folder, keywords in found)
    ]


MAILBOX_TRAINING_LIMIT = 5000  # newest messages per class that ``spam train EMAIL --mailboxes`` learns from


def _marked_junk(folder: _Folder, keywords: str) -> bool:
    """A copy in the Junk folder or with the ``$Junk`` keyword: the user's (or the filter's) spam verdict."""
    return _is_junk(folder) or JUNK_KEYWORD.lower() in keywords.lower().split()


def _class_of_copy(folder: _Folder, keywords: str, sent_folder: str) -> bool | None:
    """What a stored copy says about its message: True spam, False ham, None nothing (Trash, Sent, Drafts)."""
    if NOT_JUNK_KEYWORD.lower() in keywords.lower().split():
        return False
    if _marked_junk(folder, keywords):
        return True
    if _is_trash(folder) or mailboxes.own_mail_role(folder.name, folder.special_use, sent_folder):
        return None
    return False


def mailbox_corpus(
    conn: sqlite3.Connection, account_id: int, limit: int = MAILBOX_TRAINING_LIMIT, sent_folder: str = "Sent"
) -> list[tuple[bytes, int, bool]]:
    """(key, messages.id of one copy, is_spam) of the account's stored mail as its folders and keywords classify
    it, for bulk training (``relentad spam train EMAIL --mailboxes``, e.g. after ``relentad import``): Junk or
    ``$Junk`` is spam, ``$NotJunk`` or any other folder but Trash, Sent and Drafts (``mailboxes.own_mail_role``,
    as import sees them) is ham; a message whose copies disagree is left out; the newest ``limit`` of each class.
    Keys are the blobs' SHA-256, as IMAP training records them; :func:`stored_copy` reads a copy as IMAP training
    tokenizes it (trace fields included)."""
    found: dict[bytes, tuple[bool, float, int]] = {}
    conflicting: set[bytes] = set()
    rows = conn.execute(
        """SELECT b.sha256, mb.name, coalesce(mb.special_use, ''), m.keywords, m.internaldate, m.id
           FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox_id JOIN blobs b ON b.id = m.blob_id
           WHERE mb.account_id = ?""",
        (account_id,),
    )
    for sha, name, special_use, keywords, internaldate, message_id in rows:
        said = _class_of_copy(_Folder(str(name), str(special_use)), str(keywords), sent_folder)
        if said is None:
            continue
        key = bytes(sha)
        seen = found.get(key)
        if seen is not None and seen[0] != said:
            conflicting.add(key)
        found[key] = (said, max(float(internaldate), seen[1] if seen else 0.0), int(message_id))
    chosen: list[tuple[bytes, int, bool]] = []
    for spam in (False, True):
        newest = sorted(
            ((when, key, row) for key, (said, when, row) in found.items() if said is spam and key not in conflicting),
            reverse=True,
        )
        chosen += [(key, row, spam) for _, key, row in newest[:limit]]
    return chosen


def stored_copy(conn: sqlite3.Connection, message_id: int) -> bytes:
    """A stored copy as its owner's client sees it: the per-copy trace fields, then the message."""
    prefix, data = conn.execute(
        "SELECT m.prefix, b.data FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.id = ?", (message_id,)
    ).fetchone()
    return bytes(prefix) + bytes(data)


async def learn(
    store: Store, config: Config, account_id: int, mailbox_id: int, uids: Sequence[int], lesson: Lesson, source: str
) -> int:
    """Train the account's model with ``lesson`` for the messages ``uids`` of a mailbox; returns learn calls."""
    try:
        found = store.read(lambda conn: _messages(conn, mailbox_id, uids))
        return await _train(store, config, account_id, found, lesson, source)
    except Exception:
        log.exception("spam: training from %s failed (account %d)", source, account_id)
        return 0


async def learn_replied(store: Store, config: Config, account_id: int, msgids: Sequence[str]) -> int:
    """Train the received messages ``msgids`` name (see :func:`replied_messages`) as ham, where nothing is recorded
    for them yet; returns learn calls."""
    try:
        found = store.read(lambda conn: replied_messages(conn, account_id, msgids))
        return await _train(store, config, account_id, found, "ham", "reply", keep_recorded=True) if found else 0
    except Exception:
        log.exception("spam: training from a reply failed (account %d)", account_id)
        return 0


async def _train(
    store: Store,
    config: Config,
    account_id: int,
    found: Sequence[tuple[bytes, bytes]],
    lesson: Lesson,
    source: str,
    *,
    keep_recorded: bool = False,
) -> int:
    """Tokenize ``found`` (key, raw) off the event loop, then learn or forget it all in one write job and prune.
    ``keep_recorded``: leave messages that already have a recorded verdict alone."""
    hosts = (config.server.hostname,)

    def tokenize_all() -> list[tuple[bytes, frozenset[str]]]:
        return [(key, tokenize(raw, own_hosts=hosts)) for key, raw in found]

    tokenized = await asyncio.to_thread(tokenize_all)

    def job(conn: sqlite3.Connection) -> int:
        learned = 0
        for key, tokens in tokenized:
            if lesson == "forget":
                if (storage.trained_as(conn, account_id, key) or ("",))[0] == "ham":
                    storage.forget(conn, account_id, key)
            elif not (keep_recorded and storage.trained_as(conn, account_id, key) is not None):
                learned += storage.train_message(conn, account_id, key, tokens, lesson == "spam", source)
        storage.prune(conn, account_id, config.spam.max_tokens, config.spam.max_age_days)
        return learned

    learned = await store.write(job)
    log.info("spam: account=%d learned %s from %d message(s) (%s): %d", account_id, lesson, len(found), source, learned)
    return learned
