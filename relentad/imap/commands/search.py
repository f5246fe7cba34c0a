"""SEARCH and UID SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4; RFC 4731/9051 ESEARCH; RFC 5182 SEARCHRES;
RFC 7162 MODSEQ; RFC 5032 OLDER/YOUNGER).

The whole program becomes ONE SQL query over ``messages``: flags, keywords, dates, sizes, UID and sequence
sets and MODSEQ are plain SQL; keys that need the message text (FROM, TO, CC, BCC, SUBJECT, HEADER, BODY, TEXT,
SENT*) call a Python function registered on the worker thread's connection, which parses the message at most
once per row (stored structure when there is one). The query runs in a worker thread on its own read
connection (a big SEARCH never blocks the loop).

Invariants: matching is case-insensitive substring on decoded text (RFC 2047 words, charsets, HTML stripped)
and on the raw header value, so both the encoded and decoded forms match; results are limited to the
messages the session knows (its view); a malformed message never matches by error and never breaks the query.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ...bodytext import text_for_search
from ...headers import decode_header, header_fields
from ...message import JSON_VERSION, ParsedMessage, normalize_crlf, parse
from ...store import flags as flagmod
from ...store import imapview
from ..parser import (
    Search,
    SearchAge,
    SearchDate,
    SearchHeader,
    SearchKey,
    SearchKeyword,
    SearchModseq,
    SearchNot,
    SearchOr,
    SearchSequence,
    SearchSimple,
    SearchSize,
    SearchText,
    SearchUid,
)
from ..responses import Atom, ImapValue
from ..sequence import SequenceSet
from ..sequence import render as render_set
from ..session import Handler, Result, Session
from ..view import Selected

log = logging.getLogger(__name__)

_SIMPLE: dict[str, str] = {
    "ALL": "1",
    "ANSWERED": "(m.flags & 2) != 0",
    "DELETED": "(m.flags & 8) != 0",
    "DRAFT": "(m.flags & 16) != 0",
    "FLAGGED": "(m.flags & 4) != 0",
    "SEEN": "(m.flags & 1) != 0",
    "UNANSWERED": "(m.flags & 2) = 0",
    "UNDELETED": "(m.flags & 8) = 0",
    "UNDRAFT": "(m.flags & 16) = 0",
    "UNFLAGGED": "(m.flags & 4) = 0",
    "UNSEEN": "(m.flags & 1) = 0",
    "SAVEDATESUPPORTED": "0",
}
_MAX_RUNS = 64
INLINE_MESSAGES = 5000
"""Pure-SQL searches of mailboxes up to this size run on the loop thread; text searches always in a worker."""


class _Doc:
    """The parts of one message that text keys look at, computed on first use.

    ``blob`` is None when only the stored structure was read (SUBJECT, FROM, TO, CC, BCC and SENT* need nothing
    else); HEADER, BODY and TEXT get the blob.
    """

    def __init__(
        self, prefix: bytes, blob: bytes | None, structure: str | None, load: Callable[[], bytes] | None = None
    ) -> None:
        self.prefix = prefix
        self.raw_blob = blob
        self.load = load
        self.structure = structure
        self._summary: dict[str, Any] | None = None
        self._parsed: ParsedMessage | None = None
        self._fields: list[tuple[str, str, str]] | None = None
        self._body: str | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """The stored structure as a dict (what SUBJECT/FROM/... read, without building the part tree)."""
        if self._summary is None:
            if self.structure:
                try:
                    self._summary = json.loads(self.structure)
                except ValueError:
                    self._summary = None
            if not isinstance(self._summary, dict) or self._summary.get("v") != JSON_VERSION:
                self._summary = self.parsed.to_dict()
        return self._summary

    @property
    def parsed(self) -> ParsedMessage:
        if self._parsed is None:
            if self.structure:
                try:
                    self._parsed = ParsedMessage.from_json(self.structure)
                except (ValueError, KeyError, TypeError, IndexError):
                    self._parsed = None
            if self._parsed is None:  # no structure stored, or an unreadable one: parse the bytes
                if self.raw_blob is None and self.load is not None:
                    self.raw_blob = self.load()
                self._parsed = parse(self.raw_blob or b"")
        return self._parsed

    @property
    def blob(self) -> bytes:
        blob = self.raw_blob or b""
        return normalize_crlf(blob) if self.parsed.needs_crlf else blob

    @property
    def fields(self) -> list[tuple[str, str, str]]:
        """(name, raw value folded to lower case, decoded value folded) of the header, trace fields included."""
        if self._fields is None:
            data = self.prefix + self.blob
            end = len(self.prefix) + self.parsed.tree.body_start
            self._fields = [
                (name, value.casefold(), decode_header(value).casefold()) for name, value in header_fields(data, 0, end)
            ]
        return self._fields

    @property
    def body(self) -> str:
        if self._body is None:
            self._body = text_for_search(self.blob, self.parsed.tree).casefold()
        return self._body

    def field_contains(self, name: str, needle: str, *, exists_only: bool = False) -> bool:
        for field_name, raw, decoded in self.fields:
            if field_name == name and (exists_only or needle in decoded or needle in raw):
                return True
        return False

    def summary_contains(self, name: str, needle: str) -> bool:
        """SUBJECT / FROM / TO / CC / BCC from the stored summary: decoded and raw (envelope) forms."""
        summary = self.summary
        envelope = summary["e"]
        if name == "subject":
            return needle in (summary["su"] or "").casefold() or needle in str(envelope[1] or "").casefold()
        decoded = summary["a"][_ADDRESS_GROUPS[name]]
        if any(needle in f"{item[0]} <{item[1]}>".casefold() for item in decoded):
            return True
        raw = envelope[_ENVELOPE_FIELDS[name]] or []
        return any(needle in " ".join(str(part) for part in item if part).casefold() for item in raw)

    @property
    def sent(self) -> date | None:
        text = self.summary.get("d")
        try:
            return datetime.fromisoformat(text).date() if text else None
        except ValueError:
            return None


_ADDRESS_GROUPS = {"from": 0, "to": 3, "cc": 4, "bcc": 5}
"""Index of each address list in ParsedMessage.to_dict()["a"] (from, sender, reply-to, to, cc, bcc)."""
_ENVELOPE_FIELDS = {"from": 2, "to": 5, "cc": 6, "bcc": 7}


Matcher = Callable[[_Doc], bool]


def _text_matcher(key: SearchText | SearchHeader) -> tuple[Matcher, bool]:
    """The matcher and whether it needs the message bytes (False: the stored structure suffices)."""
    if isinstance(key, SearchHeader):
        name, needle = key.field.lower(), key.value.casefold()
        return (lambda doc: doc.field_contains(name, needle, exists_only=not needle)), True
    needle = key.value.casefold()
    kind = key.key
    if kind in ("FROM", "TO", "CC", "BCC", "SUBJECT"):
        field = kind.lower()
        return (lambda doc: doc.summary_contains(field, needle)), False
    if kind == "BODY":
        return (lambda doc: needle in doc.body), True
    return (
        lambda doc: any(needle in raw or needle in decoded for _, raw, decoded in doc.fields) or needle in doc.body
    ), True


def _sent_matcher(key: SearchDate) -> Matcher:
    def match(doc: _Doc) -> bool:
        day = doc.sent
        if day is None:
            return False
        if key.key == "SENTBEFORE":
            return day < key.date
        if key.key == "SENTON":
            return day == key.date
        return day >= key.date

    return match


def _timestamp(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


class Compiler:
    """A search program → (SQL expression, parameters), collecting the Python matchers it needs."""

    def __init__(self, view: Selected, saved: SequenceSet | None, now: float) -> None:
        self.view = view
        self.saved = saved
        self.now = now
        self.matchers: list[Matcher] = []
        self.uses_modseq = False

    def _python(self, matcher: Matcher, *, needs_data: bool) -> tuple[str, list[Any]]:
        """A call of the Python matcher; the blob is read only when needed or when there is no structure."""
        self.matchers.append(matcher)
        data = "b.data" if needs_data else "CASE WHEN b.structure IS NULL THEN b.data END"
        return f"imap_match(?, m.blob_id, m.prefix, {data}, b.structure)", [len(self.matchers) - 1]

    def _uid_set(self, uids: Sequence[int]) -> tuple[str, list[Any]]:
        if not uids:
            return "0", []
        runs: list[list[int]] = []
        for uid in uids:
            if runs and uid == runs[-1][1] + 1:
                runs[-1][1] = uid
            else:
                runs.append([uid, uid])
        if len(runs) > _MAX_RUNS:
            return "m.uid IN (SELECT value FROM json_each(?))", [json.dumps(list(uids))]
        return "(" + " OR ".join("m.uid BETWEEN ? AND ?" for _ in runs) + ")", [v for run in runs for v in run]

    def _sequence(self, sequence_set: SequenceSet, *, uid: bool) -> list[int]:
        if sequence_set.saved:
            return self.saved.select(self.view.uids) if self.saved is not None else []
        if uid:
            return sequence_set.select(self.view.uids)
        return sequence_set.select_positions(self.view.uids)

    def compile(self, key: SearchKey) -> tuple[str, list[Any]]:
        if isinstance(key, SearchSimple):
            if key.key in ("RECENT", "NEW", "OLD"):
                recent, params = self._uid_set(sorted(self.view.recent))
                if key.key == "NEW":
                    return f"({recent} AND (m.flags & 1) = 0)", params
                return (recent if key.key == "RECENT" else f"NOT {recent}"), params
            return _SIMPLE.get(key.key, "0"), []
        if isinstance(key, SearchKeyword):
            negate = key.key == "UNKEYWORD"
            bit = flagmod.SYSTEM_BITS.get(key.flag)
            if bit is not None:
                return f"(m.flags & {bit}) {'=' if negate else '!='} 0", []
            clause = "instr(' ' || lower(m.keywords) || ' ', ?) > 0"
            return (f"NOT ({clause})" if negate else clause), [f" {key.flag.lower()} "]
        if isinstance(key, SearchText | SearchHeader):
            matcher, needs_data = _text_matcher(key)
            return self._python(matcher, needs_data=needs_data)
        if isinstance(key, SearchDate):
            if key.key.startswith("SENT"):
                return self._python(_sent_matcher(key), needs_data=False)
            start = _timestamp(key.date)
            end = _timestamp(key.date + timedelta(days=1))
            if key.key.endswith("BEFORE"):
                return "m.internaldate < ?", [start]
            if key.key.endswith("ON"):
                return "(m.internaldate >= ? AND m.internaldate < ?)", [start, end]
            return "m.internaldate >= ?", [start]
        if isinstance(key, SearchSize):
            return ("m.size > ?" if key.key == "LARGER" else "m.size < ?"), [key.size]
        if isinstance(key, SearchAge):
            return ("m.internaldate <= ?" if key.key == "OLDER" else "m.internaldate >= ?"), [self.now - key.seconds]
        if isinstance(key, SearchSequence):
            return self._uid_set(self._sequence(key.sequence_set, uid=False))
        if isinstance(key, SearchUid):
            return self._uid_set(self._sequence(key.sequence_set, uid=True))
        if isinstance(key, SearchModseq):
            self.uses_modseq = True
            return "m.modseq >= ?", [key.modseq]
        if isinstance(key, SearchNot):
            sql, params = self.compile(key.key)
            return f"NOT ({sql})", params
        if isinstance(key, SearchOr):
            left, left_params = self.compile(key.left)
            right, right_params = self.compile(key.right)
            return f"(({left}) OR ({right}))", left_params + right_params
        parts = [self.compile(sub) for sub in key.keys]
        return "(" + " AND ".join(f"({sql})" for sql, _ in parts) + ")", [p for _, params in parts for p in params]


def run_search(
    conn: sqlite3.Connection, mailbox_id: int, sql: str, params: list[Any], matchers: list[Matcher]
) -> list[tuple[int, int]]:
    """Worker thread: (uid, modseq) of matching messages, ascending."""
    cache: dict[tuple[int, int], _Doc] = {}

    def imap_match(index: int, blob_id: int, prefix: bytes, data: bytes | None, structure: str | None) -> int:
        try:
            key = (blob_id, hash(prefix))
            doc = cache.get(key)
            if doc is None or (doc.raw_blob is None and data is not None):
                cache.clear()
                doc = _Doc(
                    bytes(prefix),
                    None if data is None else bytes(data),
                    structure,
                    functools.partial(imapview.blob_data, conn, blob_id),
                )
                cache[key] = doc
            return int(matchers[index](doc))
        except Exception:
            log.exception("SEARCH could not examine blob %d", blob_id)
            return 0

    join = "JOIN blobs b ON b.id = m.blob_id" if matchers else ""
    if matchers:
        conn.create_function("imap_match", 5, imap_match)
    rows = conn.execute(
        f"SELECT m.uid, m.modseq FROM messages m {join} WHERE m.mailbox_id = ? AND ({sql}) ORDER BY m.uid",
        [mailbox_id, *params],
    ).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows]


async def search(session: Session, command: Search) -> Result:
    """SEARCH / UID SEARCH, classic or ESEARCH replies, SAVE to `$`."""
    view = session.selected
    assert view is not None
    compiler = Compiler(view, session.saved, time.time())
    sql, params = compiler.compile(command.key)
    if compiler.uses_modseq:
        session.enabled.add("CONDSTORE")
    job = functools.partial(run_search, mailbox_id=view.mailbox_id, sql=sql, params=params, matchers=compiler.matchers)
    if not compiler.matchers and len(view.uids) <= INLINE_MESSAGES:
        rows = session.read(job)  # indexed SQL over a small mailbox: cheaper than a thread round trip
    else:
        rows = await session.services.readers.run(job)
    found = [(uid, modseq) for uid, modseq in rows if view.seq(uid) is not None and uid not in view.pending_gone]
    uids = [uid for uid, _ in found]
    numbers = uids if command.uid else [view.seq(uid) or 0 for uid in uids]
    highest = max((modseq for _, modseq in found), default=0)
    returns = command.returns
    if returns is None and session.rev2:
        returns = ("ALL",)  # RFC 9051 §7.3.4: IMAP4rev2 has no SEARCH response, only ESEARCH
    if returns is None:
        values: list[ImapValue] = [Atom("SEARCH"), *numbers]
        if compiler.uses_modseq and numbers:
            values.append([Atom("MODSEQ"), highest])
        session.untagged(*values)
        return None
    if "SAVE" in returns:
        chosen = uids
        if ("MIN" in returns or "MAX" in returns) and not ({"ALL", "COUNT"} & set(returns)):
            chosen = sorted({uids[0], uids[-1]} if uids else set())
            if "MIN" not in returns:
                chosen = uids[-1:]
            elif "MAX" not in returns:
                chosen = uids[:1]
        session.saved = SequenceSet.of(chosen)
        if set(returns) == {"SAVE"}:
            return None
    out: list[ImapValue] = [Atom("ESEARCH"), [Atom("TAG"), command.tag]]
    if command.uid:
        out.append(Atom("UID"))
    if "MIN" in returns and numbers:
        out += [Atom("MIN"), numbers[0]]
    if "MAX" in returns and numbers:
        out += [Atom("MAX"), numbers[-1]]
    if "COUNT" in returns:
        out += [Atom("COUNT"), len(numbers)]
    if "ALL" in returns and numbers:
        out += [Atom("ALL"), Atom(render_set(numbers))]
    if compiler.uses_modseq and numbers:
        out += [Atom("MODSEQ"), highest]
    session.untagged(*out)
    return None


HANDLERS: dict[str, Handler] = {"SEARCH": search}
