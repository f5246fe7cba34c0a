"""SORT, UID SORT, THREAD and UID THREAD (RFC 5256; RFC 5957 SORT=DISPLAY; RFC 5267 ESORT).

The search program is evaluated as SEARCH evaluates it (:func:`search.matches`: same keys, charsets, `$`, CRM
views); in the same read job each match gets its sort keys from the stored structure (decoded Subject, From/To/Cc,
Date, Message-ID, References, In-Reply-To), never from the message bytes, cached per blob SHA-256 for every session
(:data:`_KEYS`: content-addressed, so never stale). ARRIVAL and SIZE alone read only the ``messages`` row.

Invariants: ties are broken by sequence number, ascending even under REVERSE (RFC 5256 §3); the DATE of a message
without a usable Date header is its internal date (§2.2); a message whose structure cannot be read sorts as one
with empty headers, never failing the command; like SEARCH, SORT and THREAD (without UID) never see an EXPUNGE
announced while they run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from .. import threads
from ..basesubject import base_subject, casemap
from ..cache import ContentCache
from ..parser import Sort, SortKey, Thread
from ..sequence import SequenceSet
from ..session import Handler, Result, Session
from . import search as searchmod

log = logging.getLogger(__name__)

_ADDRESS_GROUPS = {"FROM": 0, "TO": 3, "CC": 4}
"""Index of each address list in the stored structure's "a" (from, sender, reply-to, to, cc, bcc)."""
_ROW_KEYS = frozenset(("ARRIVAL", "SIZE"))
"""Sort keys read from the ``messages`` row alone."""
_COLUMNS = "m.uid, m.modseq, m.internaldate, m.size, b.sha256, m.blob_id"
_ROW_COLUMNS = "m.uid, m.modseq, m.internaldate, m.size, NULL, m.blob_id"


@dataclass(frozen=True, slots=True)
class HeaderKeys:
    """What SORT and THREAD compare of one message's header, in comparator form (i;unicode-casemap)."""

    subject: str
    reply: bool
    sent: float | None
    from_: str
    to: str
    cc: str
    display_from: str
    display_to: str
    message_id: str | None
    references: tuple[str, ...]

    @classmethod
    def of(cls, summary: dict[str, Any]) -> HeaderKeys:
        subject, reply = base_subject(summary.get("su"))
        groups = summary.get("a") or []

        def first(index: int) -> tuple[str, str]:
            items = groups[index] if index < len(groups) else []
            for name, address, _ in items:
                if address:
                    return str(name or ""), str(address)
            return "", ""

        mailboxes, displays = {}, {}
        for key, index in _ADDRESS_GROUPS.items():
            name, address = first(index)
            mailboxes[key] = casemap(address.rpartition("@")[0] if "@" in address else address)
            displays[key] = casemap(name or address)  # RFC 5957: the display name, else the address
        # only the last MAX_REFERENCES are linked: a hostile header of 20,000 IDs must not sit whole in the cache
        references = tuple((summary.get("r") or ())[-threads.MAX_REFERENCES :])
        if not references:
            references = tuple((summary.get("i") or ())[:1])
        return cls(
            subject=casemap(subject),
            reply=reply,
            sent=_timestamp(summary.get("d")),
            from_=mailboxes["FROM"],
            to=mailboxes["TO"],
            cc=mailboxes["CC"],
            display_from=displays["FROM"],
            display_to=displays["TO"],
            message_id=summary.get("m") or None,
            references=references,
        )


_EMPTY = HeaderKeys("", False, None, "", "", "", "", "", None, ())


def _timestamp(text: str | None) -> float | None:
    """The Date header as a UTC timestamp (a date without a zone is taken as UTC), None when absent or unusable."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


_KEYS: ContentCache[bytes, HeaderKeys] = ContentCache(20_000)
"""Header keys by blob SHA-256, shared by all sessions; its ``warm`` mailboxes had their keys read by a worker."""
INLINE_ROWS = 5_000
"""Matches ordered or threaded on the event loop; more are ordered in a worker thread (THREAD over 50,000 messages
held the loop, and with it every other session, for 0.85 s)."""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Row:
    """One matching message with everything SORT and THREAD look at."""

    uid: int
    modseq: int
    internaldate: float
    size: int
    keys: HeaderKeys

    @property
    def sent(self) -> float:
        return self.keys.sent if self.keys.sent is not None else self.internaldate


def _keys_job(headers: bool) -> searchmod.Finish[list[Row]]:
    """The read job's second half: the matching rows with their header keys (from the cache, else the store)."""

    def finish(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[Row]:
        out = []
        for uid, modseq, internaldate, size, sha, blob_id in rows:
            keys = _EMPTY
            if headers:
                cached = _KEYS.get(sha)
                if cached is None:
                    try:
                        cached = HeaderKeys.of(searchmod.stored_summary(conn, blob_id))
                    except Exception:  # sorted as empty this once; not cached, as SEARCH caches no failure
                        log.exception("SORT could not read the header of blob %d", blob_id)
                        cached = _EMPTY
                    else:
                        _KEYS.put(bytes(sha), cached)
                keys = cached
            out.append(Row(int(uid), int(modseq), float(internaldate), int(size), keys))
        return out

    return finish


@dataclass(frozen=True, slots=True)
class Found:
    """The matching rows the session knows (ascending UID), their sequence numbers, and whether the search
    used MODSEQ (the reply then carries the highest mod-sequence, RFC 7162 §3.1.5)."""

    rows: list[Row]
    seqs: dict[int, int]
    uses_modseq: bool


async def _matching(session: Session, command: Sort | Thread, headers: bool) -> Found:
    """What the command's search matched. Header keys (``headers``) are read on the loop thread only for a small
    mailbox whose keys a worker already cached."""
    view = session.selected
    assert view is not None
    misses = _KEYS.misses
    found = await searchmod.matches(
        session,
        command.key,
        _keys_job(headers),
        columns=_COLUMNS if headers else _ROW_COLUMNS,
        blobs=headers,
        cached=not headers or (view.mailbox_id in _KEYS.warm and len(view.uids) <= searchmod.INLINE_TEXT),
    )
    if headers:
        _KEYS.settle(view.mailbox_id, misses, inline=found.inline)
    seqs = view.seqs([row.uid for row in found.result])
    rows = [row for row in found.result if row.uid in seqs and row.uid not in view.pending_gone]
    return Found(rows, seqs, found.uses_modseq)


_SORT_VALUES: dict[str, Callable[[Row], Any]] = {
    "ARRIVAL": lambda row: row.internaldate,
    "SIZE": lambda row: row.size,
    "DATE": lambda row: row.sent,
    "SUBJECT": lambda row: row.keys.subject,
    "FROM": lambda row: row.keys.from_,
    "TO": lambda row: row.keys.to,
    "CC": lambda row: row.keys.cc,
    "DISPLAYFROM": lambda row: row.keys.display_from,
    "DISPLAYTO": lambda row: row.keys.display_to,
}
"""What each sort key compares (the parser admits no other key)."""


def sort_rows(rows: Sequence[Row], criteria: Sequence[SortKey]) -> list[Row]:
    """``rows`` (ascending UID, so sequence order) in the order of ``criteria``: one stable sort per criterion,
    last first, so ties keep sequence order whatever REVERSE says."""
    ordered = list(rows)
    for criterion in reversed(criteria):
        ordered.sort(key=_SORT_VALUES[criterion.key], reverse=criterion.reverse)
    return ordered


async def _off_loop(work: Callable[[], T], rows: int) -> T:
    """``work()``: on the loop for up to :data:`INLINE_ROWS` rows, else in a worker thread (it is pure)."""
    return work() if rows <= INLINE_ROWS else await asyncio.to_thread(work)


async def sort(session: Session, command: Sort) -> Result:
    """SORT / UID SORT: `* SORT n...`, or an ESEARCH reply for SORT RETURN (ESORT); a SORT RETURN (SAVE) that fails
    empties `$` as SEARCH's does (RFC 5182 §2.1, RFC 5267 §3.1)."""
    try:
        return await _sort(session, command)
    except Exception:
        if command.returns is not None and "SAVE" in command.returns:
            session.saved = SequenceSet.of([])
        raise


async def _sort(session: Session, command: Sort) -> Result:
    headers = any(criterion.key not in _ROW_KEYS for criterion in command.criteria)
    found = await _matching(session, command, headers)
    ordered = await _off_loop(functools.partial(sort_rows, found.rows, command.criteria), len(found.rows))
    uids = [row.uid for row in ordered]
    numbers = uids if command.uid else [found.seqs[uid] for uid in uids]
    modseq = max((row.modseq for row in ordered), default=0) if found.uses_modseq and ordered else None
    if command.returns is None:
        line = b"* SORT" + b"".join([b" %d" % number for number in numbers])
        if modseq is not None:
            line += b" (MODSEQ %d)" % modseq
        session.send(line + b"\r\n")
        return None
    searchmod.extended_reply(session, command, command.returns, uids, numbers, modseq)
    return None


async def thread(session: Session, command: Thread) -> Result:
    """THREAD / UID THREAD: `* THREAD (..)(..)` over the matching messages."""
    found = await _matching(session, command, True)
    algorithm = threads.references if command.algorithm == "REFERENCES" else threads.ordered_subject
    rendered = await _off_loop(functools.partial(_threaded, found, command.uid, algorithm), len(found.rows))
    session.send(b"* THREAD" + (b" " + rendered if rendered else b"") + b"\r\n")
    return None


def _threaded(found: Found, uid: bool, algorithm: Callable[[list[threads.ThreadMessage]], list[threads.Node]]) -> bytes:
    """The threads of the matching messages, rendered (numbered by UID or sequence number)."""
    seqs = found.seqs
    messages = [
        threads.ThreadMessage(
            number=row.uid if uid else seqs[row.uid],
            seq=seqs[row.uid],
            sent=row.sent,
            subject=row.keys.subject,
            reply=row.keys.reply,
            message_id=row.keys.message_id,
            references=row.keys.references,
        )
        for row in found.rows
    ]
    return threads.render(algorithm(messages))


HANDLERS: dict[str, Handler] = {"SORT": sort, "THREAD": thread}
