"""SEARCH and UID SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4; RFC 4731/9051 ESEARCH; RFC 5182 SEARCHRES;
RFC 7162 MODSEQ; RFC 5032 OLDER/YOUNGER; RFC 8474 EMAILID/THREADID).

The whole program becomes ONE SQL query over ``messages``: flags, keywords, dates, sizes, UID and sequence
sets and MODSEQ are plain SQL; keys that need the message text call a Python function registered on the
connection. FROM, TO, CC, BCC, SUBJECT and SENT* read a case-folded summary of the stored structure, cached per
blob SHA-256 for every session (:data:`_FOLDED`: content-addressed, so never stale); HEADER, BODY and TEXT parse
the message at most once per row (stored structure when there is one). Text searches run in a worker thread on
its own read connection (a big SEARCH never blocks the loop), except summary-only ones over a small mailbox
whose summaries are already cached; pure-SQL ones over a small mailbox run on the loop thread.

Invariants: matching is case-insensitive substring on decoded text (RFC 2047 words, charsets, HTML stripped)
and on the raw header value, so both the encoded and decoded forms match; TEXT also reads the header of every MIME
part and embedded message (as Dovecot does: they are text of the message), BODY none of them; results are limited
to the messages the session knows (its view); a malformed message never matches by error and never breaks the query.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from ...bodytext import text_for_search
from ...headers import decode_header, header_fields
from ...message import JSON_VERSION, ParsedMessage, header_fields_of, normalize_crlf, parse
from ...store import flags as flagmod
from ...store import imapview
from .. import objectid, searchindex, virtual
from ..cache import ContentCache
from ..errors import bad
from ..parser import (
    Command,
    Search,
    SearchAge,
    SearchDate,
    SearchHeader,
    SearchKey,
    SearchKeyword,
    SearchModseq,
    SearchNot,
    SearchObjectId,
    SearchOr,
    SearchSequence,
    SearchSimple,
    SearchSize,
    SearchText,
    SearchUid,
)
from ..responses import Atom, ImapValue
from ..sequence import SequenceSet, render_in_order
from ..session import Handler, Result, Session
from ..view import Selected
from ..virtual import VirtualView

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    "SAVEDATESUPPORTED": "1",  # RFC 8514 §4.2: every real mailbox has save dates (CRM views: see Compiler)
}
_MAX_RUNS = 64
INLINE_MESSAGES = 5000
"""Pure-SQL searches of mailboxes up to this size run on the loop thread."""
INLINE_TEXT = 2000
"""SUBJECT/FROM/TO/CC/BCC/SENT* searches of mailboxes up to this size run on the loop thread once the mailbox's
folded summaries are cached (``_FOLDED.warm``); the first one, and every HEADER/BODY/TEXT search, in a worker."""


@dataclass(frozen=True)
class _Folded:
    """What SUBJECT, FROM, TO, CC, BCC and SENT* compare against, case-folded once per message content.

    Each field's forms (decoded and raw) are joined by NUL, which no IMAP search string contains, so one
    substring test covers them all."""

    subject: str
    addresses: dict[str, str]
    sent: date | None

    @classmethod
    def of(cls, summary: dict[str, Any]) -> _Folded:
        envelope = summary["e"]
        addresses = {}
        for name, group in _ADDRESS_GROUPS.items():
            decoded = tuple(f"{item[0]} <{item[1]}>".casefold() for item in summary["a"][group])
            raw = envelope[_ENVELOPE_FIELDS[name]] or []
            raw_forms = tuple(" ".join(str(part) for part in item if part).casefold() for item in raw)
            addresses[name] = "\0".join(decoded + raw_forms)
        text = summary.get("d")
        try:
            sent = datetime.fromisoformat(text).date() if text else None
        except ValueError:
            sent = None
        subject = (summary["su"] or "").casefold() + "\0" + str(envelope[1] or "").casefold()
        return cls(subject, addresses, sent)


_FOLDED: ContentCache[bytes, _Folded] = ContentCache(20_000)
"""Folded summaries by blob SHA-256, shared by all sessions; its ``warm`` mailboxes were searched by a worker."""


class _Doc:
    """The parts of one message that text keys look at, computed on first use.

    ``blob`` is None when only the stored structure was read (what a :class:`_Folded` summary is made of);
    HEADER, BODY and TEXT get the blob.
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
        self._part_fields: list[tuple[str, str]] | None = None
        self._body: str | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """The stored structure as a dict (what _Folded is made of, without building the part tree)."""
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
    def part_fields(self) -> list[tuple[str, str]]:
        """(raw value folded, decoded value folded) of the header fields of every part below the top level: MIME
        headers (an attachment's file name) and the headers of embedded messages (a forwarded mail's Subject)."""
        if self._part_fields is None:
            data, out = self.blob, []
            stack = list(self.parsed.tree.children)
            while stack:
                part = stack.pop()
                stack.extend(part.children)
                for _, value in header_fields_of(data, part):
                    out.append((value.casefold(), decode_header(value).casefold()))
            self._part_fields = out
        return self._part_fields

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


_ADDRESS_GROUPS = {"from": 0, "to": 3, "cc": 4, "bcc": 5}
"""Index of each address list in ParsedMessage.to_dict()["a"] (from, sender, reply-to, to, cc, bcc)."""
_ENVELOPE_FIELDS = {"from": 2, "to": 5, "cc": 6, "bcc": 7}


Matcher = Callable[[_Doc], bool]
FoldedMatcher = Callable[[_Folded], bool]


def _folded_matcher(key: SearchText | SearchDate) -> FoldedMatcher | None:
    """SUBJECT/FROM/TO/CC/BCC and SENT* test only the folded summary (cached per message content)."""
    if isinstance(key, SearchDate):
        when = key.date
        if key.key == "SENTBEFORE":
            return lambda f: f.sent is not None and f.sent < when
        if key.key == "SENTON":
            return lambda f: f.sent is not None and f.sent == when
        return lambda f: f.sent is not None and f.sent >= when
    needle = key.value.casefold()
    if key.key == "SUBJECT":
        return lambda f: needle in f.subject
    if key.key in ("FROM", "TO", "CC", "BCC"):
        field = key.key.lower()
        return lambda f: needle in f.addresses[field]
    return None


def _text_matcher(key: SearchText | SearchHeader) -> Matcher:
    """HEADER, BODY and TEXT: they read the message bytes."""
    if isinstance(key, SearchHeader):
        name, needle = key.field.lower(), key.value.casefold()
        return lambda doc: doc.field_contains(name, needle, exists_only=not needle)
    needle = key.value.casefold()
    if key.key == "BODY":
        return lambda doc: needle in doc.body
    return lambda doc: (
        any(needle in raw or needle in decoded for _, raw, decoded in doc.fields)
        or needle in doc.body
        or any(needle in raw or needle in decoded for raw, decoded in doc.part_fields)
    )


def index_texts(blob: bytes, structure: str | None) -> tuple[str, str]:
    """What the full-text index holds of a blob (:mod:`..searchindex`): every header field TEXT and HEADER test,
    raw and decoded, one a line, and the text BODY tests, all case-folded exactly as the matchers above fold them.
    A blob whose first header line is a continuation gets a field in front, as its messages' trace prefix gives it
    one (the line then belongs to that field's value), and the ``CONTINUED`` mark (:func:`..searchindex.prefilter`)."""
    prefix = b"X:\r\n" if blob[:1] in (b" ", b"\t") else b""
    doc = _Doc(prefix, blob, structure)
    head = [form for _, raw, decoded in doc.fields for form in (raw, decoded)]
    if prefix:  # delivered, that line belongs to the prefix's last field: a needle may span both
        head.append(searchindex.CONTINUED)
    head += [form for raw, decoded in doc.part_fields for form in (raw, decoded)]
    return searchindex.clean("\n".join(dict.fromkeys(head))), searchindex.clean(doc.body)


def _prefix_may_hold(needle: str, prefix: bytes) -> bool:
    """Whether a message's trace prefix (not part of its blob, so not indexed) may have a field holding ``needle``
    (a superset: true for every field that does). The usual ASCII prefix without encoded words is one test of its
    unfolded, lower-cased text, in which every field value is a substring (and is its own decoded form)."""
    if prefix.isascii() and b"=?" not in prefix and b"\0" not in prefix:
        return needle in prefix.decode("ascii").replace("\r\n", "").lower()
    return any(
        needle in value.casefold() or needle in decode_header(value).casefold()
        for _, value in header_fields(prefix, 0, len(prefix))
    )


def _timestamp(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


class Compiler:
    """A search program → (SQL expression, parameters), collecting the Python matchers it needs."""

    def __init__(
        self, view: Selected, saved: SequenceSet | None, now: float, account_id: int = 0, index: bool = False
    ) -> None:
        self.view = view
        self.index = index
        self.prefix_needles: list[str] = []
        self.account_id = account_id
        self.saved = saved
        self.now = now
        self.matchers: list[Matcher] = []
        self.folded: list[FoldedMatcher] = []
        self.uses_modseq = False
        self.uses_index = False

    def _summary(self, matcher: FoldedMatcher) -> tuple[str, list[Any]]:
        """A call of a folded-summary matcher: the blob's SHA-256 keys the shared cache, nothing else is read."""
        self.folded.append(matcher)
        return "imap_folded(?, b.sha256, m.blob_id)", [len(self.folded) - 1]

    def _python(self, matcher: Matcher) -> tuple[str, list[Any]]:
        """A call of a Python matcher that reads the message bytes (and structure, to parse them only once)."""
        self.matchers.append(matcher)
        return "imap_match(?, m.blob_id, m.prefix, b.data, b.structure)", [len(self.matchers) - 1]

    def _indexed(self, key: SearchText | SearchHeader, sql: str, params: list[Any]) -> tuple[str, list[Any]]:
        """The exact matcher behind the full-text prefilter when the index can answer the needle: SQL evaluates
        the prefilter first and the matcher only for its candidates. As the prefilter is a superset of the
        matcher's matches, ``prefilter AND matcher`` is the matcher, under NOT and OR too."""
        needle = key.value.casefold()
        fts = searchindex.query(needle) if self.index else None
        if fts is None:
            return sql, params
        kind = "HEADER" if isinstance(key, SearchHeader) else key.key
        tables = {"BODY": ("search_body",), "HEADER": ("search_head",)}.get(kind, searchindex.TABLES)
        prefix_call = None
        if kind != "BODY":
            self.prefix_needles.append(needle)
            prefix_call = f"imap_prefix({len(self.prefix_needles) - 1}, m.prefix)"
        pre, pre_params = searchindex.prefilter(fts, tables, prefix_call)
        self.uses_index = True
        return f"({pre} AND {sql})", [*pre_params, *params]

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
            if key.key == "SAVEDATESUPPORTED" and isinstance(self.view, VirtualView):
                return "0", []  # a CRM view has no save dates (FETCH SAVEDATE is NIL there)
            return _SIMPLE.get(key.key, "0"), []
        if isinstance(key, SearchKeyword):
            negate = key.key == "UNKEYWORD"
            bit = flagmod.SYSTEM_BITS.get(key.flag)
            if bit is not None:
                return f"(m.flags & {bit}) {'=' if negate else '!='} 0", []
            clause = "instr(' ' || lower(m.keywords) || ' ', ?) > 0"
            return (f"NOT ({clause})" if negate else clause), [f" {key.flag.lower()} "]
        if isinstance(key, SearchText) and (folded := _folded_matcher(key)) is not None:
            return self._summary(folded)
        if isinstance(key, SearchText | SearchHeader):
            return self._indexed(key, *self._python(_text_matcher(key)))
        if isinstance(key, SearchDate):
            if key.key.startswith("SENT") and (folded := _folded_matcher(key)) is not None:
                return self._summary(folded)
            start = _timestamp(key.date)
            end = _timestamp(key.date + timedelta(days=1))
            # the internal date's own day, in its zone ("disregarding time and timezone", RFC 3501 §6.4.4)
            column = "(m.internaldate + m.zone * 60)"
            if key.key.startswith("SAVED") and not isinstance(self.view, VirtualView):
                column = "coalesce(m.saved, m.internaldate)"  # RFC 8514 §4.2: the server's (UTC) day
            if key.key.endswith("BEFORE"):
                return f"{column} < ?", [start]
            if key.key.endswith("ON"):
                return f"({column} >= ? AND {column} < ?)", [start, end]
            return f"{column} >= ?", [start]
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
        if isinstance(key, SearchObjectId):
            return self._object_id(key)
        if isinstance(key, SearchNot):
            sql, params = self.compile(key.key)
            return f"NOT ({sql})", params
        if isinstance(key, SearchOr):
            left, left_params = self.compile(key.left)
            right, right_params = self.compile(key.right)
            return f"(({left}) OR ({right}))", left_params + right_params
        parts = [self.compile(sub) for sub in key.keys]
        return "(" + " AND ".join(f"({sql})" for sql, _ in parts) + ")", [p for _, params in parts for p in params]

    def _object_id(self, key: SearchObjectId) -> tuple[str, list[Any]]:
        """EMAILID: the blobs of that SHA-256 prefix (indexed) and the trace fields' tag; THREADID: the blobs the
        CRM filed into the thread. An id we never gave out matches nothing."""
        if key.key == "EMAILID":
            email = objectid.parse_email_id(key.value)
            if email is None:
                return "0", []
            digest, tag = email
            blobs = "m.blob_id IN (SELECT id FROM blobs WHERE sha256 BETWEEN ? AND ?)"  # the SHA-256 index
            bounds: list[Any] = [digest, digest + b"\xff" * (32 - len(digest))]
            if tag is None:
                return f"({blobs} AND length(m.prefix) = 0)", bounds
            return f"({blobs} AND length(m.prefix) > 0 AND imap_prefix_tag(m.prefix) = ?)", [*bounds, tag]
        thread = objectid.parse_thread_id(key.value)
        if thread is None:
            return "0", []
        return (
            "m.blob_id IN (SELECT blob_id FROM crm_messages WHERE account_id = ? AND thread_id = ?)",
            [self.account_id, thread],
        )


def _rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return rows


def _stored(conn: sqlite3.Connection, blob_id: int) -> tuple[str | None, bytes | None]:
    """(structure, the bytes when there is no structure) of a blob: what SUBJECT & co. need on a cache miss."""
    row = conn.execute(
        "SELECT structure, CASE WHEN structure IS NULL THEN data END FROM blobs WHERE id = ?", (blob_id,)
    ).fetchone()
    if row is None:
        return None, b""
    return row[0], None if row[1] is None else bytes(row[1])


def run_search(
    conn: sqlite3.Connection,
    mailbox_id: int,
    sql: str,
    params: list[Any],
    matchers: list[Matcher],
    source: tuple[str, list[Any]] | None = None,
    folded: Sequence[FoldedMatcher] = (),
    columns: str = "m.uid, m.modseq",
    blobs: bool = False,
    prefix_needles: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Worker thread: ``columns`` of matching messages, by ascending UID (by default (uid, modseq)). ``source`` is
    a subquery with the columns of ``messages`` to search instead of the mailbox (a CRM view); ``blobs`` joins the
    blob as ``b`` even when no key needs it (SORT reads ``b.sha256``)."""
    cache: dict[tuple[int, int], _Doc] = {}
    summaries = _FOLDED

    def imap_folded(index: int, sha: bytes, blob_id: int) -> int:
        try:
            summary = summaries.get(sha)
            if summary is None:
                summary = _Folded.of(stored_summary(conn, blob_id))
                summaries.put(bytes(sha), summary)
            return int(folded[index](summary))
        except Exception:
            log.exception("SEARCH could not examine blob %d", blob_id)
            return 0

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

    join = "JOIN blobs b ON b.id = m.blob_id" if matchers or folded or blobs else ""
    if matchers:
        conn.create_function("imap_match", 5, imap_match)
    if folded:
        conn.create_function("imap_folded", 3, imap_folded)
    if prefix_needles:
        conn.create_function(
            "imap_prefix",
            2,
            lambda index, prefix: int(bool(prefix) and _prefix_may_hold(prefix_needles[index], bytes(prefix))),
            deterministic=True,
        )
    if "imap_prefix_tag" in sql:
        conn.create_function(
            "imap_prefix_tag", 1, lambda prefix: objectid.prefix_tag(bytes(prefix)), deterministic=True
        )
    if source is not None:
        query = f"SELECT {columns} FROM ({source[0]}) m {join} WHERE ({sql}) ORDER BY m.uid"
        return conn.execute(query, [*source[1], *params]).fetchall()
    return conn.execute(
        f"SELECT {columns} FROM messages m {join} WHERE m.mailbox_id = ? AND ({sql}) ORDER BY m.uid",
        [mailbox_id, *params],
    ).fetchall()


def stored_summary(conn: sqlite3.Connection, blob_id: int) -> dict[str, Any]:
    """The stored structure of a blob as a dict (parsing the bytes when none is stored): what the SUBJECT & co.
    and SORT key caches are made of on a miss."""
    structure, data = _stored(conn, blob_id)
    return _Doc(b"", data, structure, functools.partial(imapview.blob_data, conn, blob_id)).summary


Finish = Callable[[sqlite3.Connection, list[tuple[Any, ...]]], T]


@dataclass(frozen=True)
class Matches(Generic[T]):
    """What :func:`matches` found: ``result`` is the finisher's; ``inline`` says it ran on the loop thread."""

    result: T
    uses_modseq: bool
    inline: bool


async def matches(
    session: Session,
    key: SearchKey,
    finish: Finish[T],
    *,
    columns: str = "m.uid, m.modseq",
    blobs: bool = False,
    cached: bool = True,
    index: bool = True,
) -> Matches[T]:
    """Evaluate a search program over the selected mailbox (SEARCH, SORT, THREAD): ``finish`` turns the rows of
    ``columns`` into the result, in the same job (a worker's read connection, or the loop's for small mailboxes
    whose work is cheap; ``cached`` False, the caller's own caches are cold, forces a worker)."""
    view = session.selected
    assert view is not None
    use_index = index and session.config.imap.search_index
    compiler = Compiler(view, session.saved, time.time(), view.owner_id or session.account_id, use_index)
    sql, params = compiler.compile(key)
    if compiler.uses_modseq:
        session.enabled.add("CONDSTORE")
    source = None
    if isinstance(view, VirtualView):
        if compiler.uses_modseq:
            raise bad("a CRM view has no mod-sequences (NOMODSEQ)")
        source = virtual.search_source(view)
    search = functools.partial(
        run_search,
        mailbox_id=view.mailbox_id,
        sql=sql,
        params=params,
        matchers=compiler.matchers,
        source=source,
        folded=compiler.folded,
        columns=columns,
        blobs=blobs,
        prefix_needles=compiler.prefix_needles,
    )

    def job(conn: sqlite3.Connection) -> T:
        return finish(conn, search(conn))

    pure_sql = not compiler.matchers and not compiler.folded
    warm = source is None and not compiler.matchers and view.mailbox_id in _FOLDED.warm
    inline = cached and ((pure_sql and len(view.uids) <= INLINE_MESSAGES) or (warm and len(view.uids) <= INLINE_TEXT))
    misses = _FOLDED.misses
    try:
        if inline:  # indexed SQL (and cached summaries) over a small mailbox: no thread round trip
            result = session.read(job)
        else:
            result = await session.services.readers.run(job)
    except sqlite3.DatabaseError as exc:
        if not (compiler.uses_index and searchindex.damaged(exc)):
            raise
        log.error("SEARCH: the full-text index is damaged (%s); scanning, and rebuilding it in the background", exc)
        with contextlib.suppress(sqlite3.Error):  # emptying it failed too: the indexer retries; the scan answers
            await session.store.write(searchindex.reset)
        return await matches(session, key, finish, columns=columns, blobs=blobs, cached=cached, index=False)
    if inline or (compiler.folded and not compiler.matchers and source is None):
        _FOLDED.settle(view.mailbox_id, misses, inline=inline)
    return Matches(result, compiler.uses_modseq, inline)


async def search(session: Session, command: Search) -> Result:
    """SEARCH / UID SEARCH, classic or ESEARCH replies, SAVE to `$`; a SAVE that fails (NO, BAD) empties `$`
    (RFC 5182 §2.1), so that a pipelined command using `$` does not act on the result of the search before."""
    try:
        return await _search(session, command)
    except Exception:
        if command.returns is not None and "SAVE" in command.returns:
            session.saved = SequenceSet.of([])
        raise


async def _search(session: Session, command: Search) -> Result:
    view = session.selected
    assert view is not None
    found_rows = await matches(session, command.key, _rows)
    rows = found_rows.result
    seqs = view.seqs([uid for uid, _ in rows])
    found = [(uid, modseq) for uid, modseq in rows if uid in seqs and uid not in view.pending_gone]
    uids = [uid for uid, _ in found]
    numbers = uids if command.uid else [seqs[uid] for uid in uids]
    highest = max((modseq for _, modseq in found), default=0)
    returns = command.returns
    if returns is None and session.rev2:
        returns = ("ALL",)  # RFC 9051 §7.3.4: IMAP4rev2 has no SEARCH response, only ESEARCH
    if returns is None:  # `* SEARCH 2 3 5 (MODSEQ 9)`, written directly: it can hold a number per message
        line = b"* SEARCH" + b"".join([b" %d" % number for number in numbers])
        if found_rows.uses_modseq and numbers:
            line += b" (MODSEQ %d)" % highest
        session.send(line + b"\r\n")
        return None
    extended_reply(session, command, returns, uids, numbers, highest if found_rows.uses_modseq else None)
    return None


def extended_reply(
    session: Session,
    command: Command,
    returns: tuple[str, ...],
    uids: list[int],
    numbers: list[int],
    modseq: int | None = None,
) -> None:
    """The ESEARCH reply of SEARCH RETURN and SORT RETURN (ESORT), and SAVE to `$`. ``uids`` and ``numbers`` (what
    the client sees: UIDs or sequence numbers) are in result order, ascending for SEARCH and the sort order for SORT,
    so MIN and MAX are the first and the last one (RFC 5267 §3.1) and ALL keeps the order."""
    if "SAVE" in returns:
        chosen = uids
        if ("MIN" in returns or "MAX" in returns) and not ({"ALL", "COUNT"} & set(returns)):
            chosen = [*uids[:1], *uids[-1:]]
            if "MIN" not in returns:
                chosen = uids[-1:]
            elif "MAX" not in returns:
                chosen = uids[:1]
        session.saved = SequenceSet.of(sorted(set(chosen)))
        if set(returns) == {"SAVE"}:
            return
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
        out += [Atom("ALL"), Atom(render_in_order(numbers))]
    if modseq is not None and numbers:
        out += [Atom("MODSEQ"), modseq]
    session.untagged(*out)


HANDLERS: dict[str, Handler] = {"SEARCH": search}
