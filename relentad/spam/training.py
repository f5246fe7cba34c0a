"""Learning from what users do in IMAP: Junk moves and the ``$Junk`` / ``$NotJunk`` keywords.

The IMAP command modules call :func:`after_copy` (COPY/MOVE, once the copy committed) and :func:`after_store`
(STORE, once the flags committed). Both only decide whether there is anything to learn and start a background
task; the IMAP reply never waits for it. The task reads the messages, tokenizes them off the event loop
(``asyncio.to_thread``) and trains them in ONE store write job (:func:`storage.train_message` each, then
pruning if the account's table outgrew ``[spam] max_tokens``).

What teaches what (the account's own model; the global model is only trained by ``relentad spam train``):
- COPY or MOVE into the Junk folder (name ``Junk`` or special-use ``\\Junk``) → spam.
- MOVE or COPY out of Junk into any folder but Trash (name ``Trash`` or ``\\Trash``) → ham.
- STORE setting ``$Junk`` → spam; setting ``$NotJunk`` or clearing ``$Junk`` → ham; clearing ``$NotJunk``
  alone → forget what was learned from the message.

Invariants: training is keyed by the SHA-256 of the stored message (``blobs.sha256``, the same key bulk
training uses for a file), so doing the same thing twice learns once and reversing a decision unlearns exactly
(see storage.py). A failure is logged and never reaches the client. Tasks are kept referenced until done, and
:func:`drain` waits for them (tests, shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..config import Config
from ..store.db import Store
from . import storage
from .tokenize import tokenize
from .verdicts import JUNK_KEYWORD, NOT_JUNK_KEYWORD

log = logging.getLogger(__name__)

Lesson = Literal["spam", "ham", "forget"]

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
    """What a STORE ``action`` ("add", "remove", "replace") of ``flags`` teaches."""
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


def after_copy(
    store: Store, config: Config, account_id: int, source_id: int, target_id: int, target_uids: Sequence[int]
) -> None:
    """COPY/MOVE committed: learn from it in the background when it crossed the Junk folder's border."""
    if not config.spam.learn or not target_uids:
        return
    try:
        folders = store.read(lambda conn: (_folder(conn, source_id), _folder(conn, target_id)))
    except sqlite3.Error:
        log.exception("spam: cannot tell whether a copy crossed Junk; not learned")
        return
    lesson = lesson_of_copy(*folders)
    if lesson is not None:
        _start(store, config, account_id, target_id, list(target_uids), lesson, "imap-move")


def after_store(
    store: Store,
    config: Config,
    account_id: int,
    mailbox_id: int,
    action: str,
    flags: Sequence[str],
    uids: Sequence[int],
) -> None:
    """STORE committed on ``uids`` (the messages whose flags changed): learn from $Junk / $NotJunk."""
    if not config.spam.learn or not uids:
        return
    lesson = lesson_of_store(action, flags)
    if lesson is not None:
        _start(store, config, account_id, mailbox_id, list(uids), lesson, "imap-flag")


def _start(
    store: Store, config: Config, account_id: int, mailbox_id: int, uids: list[int], lesson: Lesson, source: str
) -> None:
    task = asyncio.get_running_loop().create_task(learn(store, config, account_id, mailbox_id, uids, lesson, source))
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


async def learn(
    store: Store, config: Config, account_id: int, mailbox_id: int, uids: Sequence[int], lesson: Lesson, source: str
) -> int:
    """Train the account's model with ``lesson`` for the messages ``uids`` of a mailbox; returns learn calls."""
    try:
        found = store.read(lambda conn: _messages(conn, mailbox_id, uids))
        hosts = (config.server.hostname,)

        def tokenize_all() -> list[tuple[bytes, frozenset[str]]]:
            return [(key, tokenize(raw, own_hosts=hosts)) for key, raw in found]

        tokenized = await asyncio.to_thread(tokenize_all)

        def job(conn: sqlite3.Connection) -> int:
            learned = 0
            for key, tokens in tokenized:
                if lesson == "forget":
                    storage.forget(conn, account_id, key)
                else:
                    learned += storage.train_message(conn, account_id, key, tokens, lesson == "spam", source)
            storage.prune(conn, account_id, config.spam.max_tokens, config.spam.max_age_days)
            return learned

        learned = await store.write(job)
        log.info(
            "spam: account=%d learned %s from %d message(s) (%s): %d", account_id, lesson, len(found), source, learned
        )
        return learned
    except Exception:
        log.exception("spam: training from %s failed (account %d)", source, account_id)
        return 0
