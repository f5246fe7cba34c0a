"""FETCH and UID FETCH (RFC 9051 §6.4.5, RFC 3501 §6.4.5; RFC 3516 BINARY; RFC 7162 MODSEQ, CHANGEDSINCE,
VANISHED; RFC 8474 EMAILID, THREADID; RFC 8970 PREVIEW).

How a message is served: the client sees ``prefix || blob`` (this copy's trace fields, then the stored bytes).
ENVELOPE and BODYSTRUCTURE come from the blob's parsed structure (``blobs.structure``, written at delivery;
parsed on the fly and not cached when NULL); body sections are byte slices of ``prefix || CRLF-normalised blob``
with the part tree shifted by the prefix length, so BODY[HEADER] includes the trace fields as RFC822 would.

Invariants: rows are loaded and responses rendered in a worker thread on its own read connection, in batches,
so a big FETCH neither blocks the loop nor holds a transaction while writing to the network; a message that
fails to render (it never should: message.parse never raises) costs only its own items and a final
``NO [SERVERBUG]``, never the connection. Non-PEEK body fetches set \\Seen first (read-write only) and report
the new FLAGS.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

from ...message import ParsedMessage, binary_section, normalize_crlf, parse, section_bytes
from ...mimetree import Part
from ...store import flags as flagmod
from ...store import imapview, imapwrite
from ...store.imapview import MessageRow
from .. import access, objectid, virtual
from ..cache import ContentCache
from ..errors import bad, no
from ..parser import Fetch, FetchAttribute, FetchBody, FetchItem
from ..preview import preview as make_preview
from ..preview import slicer
from ..responses import Atom, ImapValue, Literal8, Rendered, flag_list, format_date_time, render
from ..sequence import SequenceSet
from ..sequence import render as render_set
from ..session import Handler, Ok, Result, Session
from ..virtual import VirtualView

log = logging.getLogger(__name__)

BATCH = 200
"""Messages rendered per worker-thread round trip."""
INLINE = 20
INLINE_BYTES = 1_000_000
"""Up to INLINE messages totalling at most INLINE_BYTES are rendered on the loop thread: a thread round trip
(and the GIL hand-over it costs) is dearer than that work. Bigger FETCHes go to a worker thread."""
INLINE_FAST = 5000
"""FETCHes of only UID, FLAGS and MODSEQ (every client's sync) run on the loop thread up to this many messages
(about 1 µs of SQL and 1 µs of formatting each), in one batch."""

_DATA_ITEMS = frozenset(("RFC822", "RFC822.HEADER", "RFC822.TEXT"))
_STRUCTURE_ITEMS = frozenset(("ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822.SIZE", "PREVIEW"))
_PREVIEWS: ContentCache[int, str] = ContentCache(20_000)
"""PREVIEW text by blob id (a blob's content never changes and its id is never reused, so never stale): a
client showing a message list fetches the same previews again and again."""


class UnknownEncoding(Exception):
    """BINARY of a part whose Content-Transfer-Encoding we cannot undo (RFC 3516 UNKNOWN-CTE)."""


def shift(part: Part, delta: int) -> Part:
    """A copy of the tree with every offset moved by ``delta`` (the trace prefix in front of the blob)."""
    return dataclasses.replace(
        part,
        header_start=part.header_start + delta,
        body_start=part.body_start + delta,
        body_end=part.body_end + delta,
        children=[shift(child, delta) for child in part.children],
    )


class Message:
    """One message being fetched; parses lazily and at most once."""

    def __init__(self, conn: sqlite3.Connection, row: MessageRow) -> None:
        self.conn = conn
        self.row = row
        self._parsed: ParsedMessage | None = None
        self._data: bytes | None = None
        self._tree: Part | None = None
        self.thread: int | None = None
        """The CRM thread (THREADID), set by the batch when asked for."""
        self.sha256 = b""
        """The blob's SHA-256 (EMAILID), set by the batch when asked for."""

    def _blob(self) -> bytes:
        if self.row.data is None:
            self.row.data = imapview.blob_data(self.conn, self.row.blob_id)
        return self.row.data

    @property
    def parsed(self) -> ParsedMessage:
        if self._parsed is None:
            if self.row.structure:
                try:
                    self._parsed = ParsedMessage.from_json(self.row.structure)
                except (ValueError, KeyError, TypeError, IndexError):
                    log.warning("unreadable stored structure of blob %d; parsing again", self.row.blob_id)
            if self._parsed is None:
                self._parsed = parse(self._blob())
        return self._parsed

    @property
    def size(self) -> int:
        """RFC822.SIZE: octets of the CRLF-normalised message, prefix included."""
        if self._parsed is None and self.row.structure:
            try:
                return len(self.row.prefix) + int(json.loads(self.row.structure)["s"])
            except (ValueError, KeyError, TypeError):
                pass
        return len(self.row.prefix) + self.parsed.size

    @property
    def data(self) -> bytes:
        if self._data is None:
            blob = self._blob()
            self._data = self.row.prefix + (normalize_crlf(blob) if self.parsed.needs_crlf else blob)
        return self._data

    @property
    def tree(self) -> Part:
        if self._tree is None:
            tree = shift(self.parsed.tree, len(self.row.prefix))
            tree.header_start = 0
            self._tree = tree
        return self._tree

    def section(self, attribute: FetchBody) -> bytes:
        spec = attribute.section
        return section_bytes(self.data, self.tree, spec.part, spec.text, list(spec.fields))

    def preview(self) -> str:
        """RFC 8970 PREVIEW, cached per blob. Unless the blob is loaded already or needs CRLF normalising (its
        offsets then differ from the stored ones), only the text parts' first octets are read from the store."""
        text = _PREVIEWS.get(self.row.blob_id)
        if text is None:
            parsed = self.parsed
            if self.row.data is not None or parsed.needs_crlf:
                blob = self._blob()
                text = make_preview(parsed.tree, slicer(normalize_crlf(blob) if parsed.needs_crlf else blob))
            else:
                conn, blob_id = self.conn, self.row.blob_id
                text = make_preview(
                    parsed.tree,
                    lambda part, n: imapview.blob_slice(
                        conn, blob_id, part.body_start, min(n, part.body_end - part.body_start)
                    ),
                )
            _PREVIEWS.put(self.row.blob_id, text)
        return text

    def binary(self, part: tuple[int, ...]) -> bytes:
        content = binary_section(self.data, self.tree, part)
        if content is None:
            raise UnknownEncoding
        return content


_UID, _FLAGS, _MODSEQ = Atom("UID"), Atom("FLAGS"), Atom("MODSEQ")
_FLAG_ATOMS: dict[tuple[int, str], list[ImapValue]] = {}


def _flag_atoms(bits: int, keywords: str) -> list[ImapValue]:
    """The FLAGS value; the few distinct flag sets of a mailbox are built once (FETCH 1:* FLAGS is common)."""
    key = (bits, keywords)
    atoms = _FLAG_ATOMS.get(key)
    if atoms is None:
        if len(_FLAG_ATOMS) > 4096:
            _FLAG_ATOMS.clear()
        atoms = _FLAG_ATOMS[key] = list(flag_list(flagmod.names(bits, keywords)))
    return atoms


def _partial(content: bytes, attribute: FetchBody) -> bytes:
    if attribute.partial is None:
        return content
    start = attribute.partial.offset
    return content[start : start + attribute.partial.length]


def _internaldate(timestamp: float, zone: int = 0) -> str:
    """The date-time in its zone (minutes east of UTC): an APPENDed message's own, UTC for the rest."""
    return format_date_time(datetime.fromtimestamp(timestamp, timezone(timedelta(minutes=zone)) if zone else UTC))


_RENDERED: dict[tuple[int, int, str, bool], Rendered] = {}
"""ENVELOPE / BODYSTRUCTURE / BODY of a stored structure, rendered once: keyed by (hash and length of the
structure text, item, UTF-8), since the same few messages are fetched again and again by every client."""
_RENDERED_MAX = 4096


def _structure_value(msg: Message, item: str, utf8: bool) -> ImapValue:
    structure = msg.row.structure
    key = (hash(structure), len(structure), item, utf8) if structure else None
    cached = _RENDERED.get(key) if key is not None else None
    if cached is not None:
        return cached
    parsed = msg.parsed
    value = parsed.envelope if item == "ENVELOPE" else parsed.bodystructure if item == "BODYSTRUCTURE" else parsed.body
    if key is None:
        return value
    if len(_RENDERED) >= _RENDERED_MAX:
        _RENDERED.clear()
    rendered = _RENDERED[key] = Rendered(render(value, utf8=utf8))
    return rendered


def _items(msg: Message, attributes: Sequence[FetchAttribute], condstore: bool, utf8: bool = False) -> list[ImapValue]:
    row = msg.row
    out: list[ImapValue] = []
    for attribute in attributes:
        if isinstance(attribute, FetchBody):
            name = Atom(attribute.reply_name())
            if attribute.kind == "BODY":
                out += [name, _partial(msg.section(attribute), attribute)]
            elif attribute.kind == "BINARY":
                content = _partial(msg.binary(attribute.section.part), attribute)
                out += [name, Literal8(content) if b"\0" in content else content]
            else:
                out += [name, len(msg.binary(attribute.section.part))]
            continue
        item = attribute.name
        if item == "UID":
            out += [_UID, row.uid]
        elif item == "FLAGS":
            out += [_FLAGS, _flag_atoms(row.flags, row.keywords)]
            if condstore and FetchItem("MODSEQ") not in attributes:
                out += [_MODSEQ, [row.modseq]]
        elif item == "MODSEQ":
            out += [Atom("MODSEQ"), [row.modseq]]
        elif item == "INTERNALDATE":
            out += [Atom("INTERNALDATE"), _internaldate(row.internaldate, row.zone)]
        elif item == "RFC822.SIZE":
            out += [Atom("RFC822.SIZE"), msg.size]
        elif item in ("ENVELOPE", "BODYSTRUCTURE", "BODY"):
            out += [Atom(item), _structure_value(msg, item, utf8)]
        elif item == "RFC822":
            out += [Atom("RFC822"), msg.data]
        elif item == "RFC822.HEADER":
            out += [Atom("RFC822.HEADER"), msg.data[: msg.tree.body_start]]
        elif item == "RFC822.TEXT":
            out += [Atom("RFC822.TEXT"), msg.data[msg.tree.body_start : msg.tree.body_end]]
        elif item == "SAVEDATE":  # RFC 8514 §4.1: NIL where there are no save dates (a CRM view)
            out += [Atom("SAVEDATE"), None if row.saved is None else _internaldate(row.saved)]
        elif item == "EMAILID":  # RFC 8474 §5.1
            out += [Atom("EMAILID"), [Atom(objectid.email_id(msg.sha256, row.prefix))]]
        elif item == "THREADID":  # RFC 8474 §5.2: NIL when the CRM never filed the message
            thread = objectid.thread_id(msg.thread)
            out += [Atom("THREADID"), None if thread is None else [Atom(thread)]]
        elif item == "PREVIEW":
            out += [Atom("PREVIEW"), msg.preview()]
    return out


class RowLoader(Protocol):
    """Loads FETCH rows by UID from somewhere else than one real mailbox (a CRM view)."""

    def __call__(
        self, conn: sqlite3.Connection, wanted: Sequence[int], *, with_data: bool, with_structure: bool
    ) -> list[MessageRow]: ...


@dataclasses.dataclass
class Batch:
    lines: list[bytes]
    failed: int = 0
    unknown_cte: bool = False


def render_batch(
    conn: sqlite3.Connection,
    mailbox_id: int,
    uids: Sequence[int],
    seqs: dict[int, int],
    attributes: Sequence[FetchAttribute],
    *,
    recent: set[int] | frozenset[int] = frozenset(),
    load_rows: RowLoader | None = None,
    account_id: int = 0,
    with_data: bool,
    changed_since: int | None,
    condstore: bool,
    utf8: bool,
) -> Batch:
    """Worker thread: load the rows and render `* n FETCH (...)` lines."""
    batch = Batch([])
    fast = all(isinstance(a, FetchItem) and a.name in _FAST_ITEMS for a in attributes)
    if fast and load_rows is None:
        batch.lines = _fast_lines(conn, mailbox_id, uids, seqs, attributes, recent, changed_since, condstore)
        return batch
    structure = with_data or any(_needs_structure(a) for a in attributes)
    if load_rows is not None:
        rows = load_rows(conn, uids, with_data=with_data, with_structure=structure)
        for row in rows:
            row.saved = None  # a CRM view has no save dates of its own (SAVEDATESUPPORTED matches nothing there)
    else:
        rows = imapview.message_rows(conn, mailbox_id, uids, with_data=with_data, with_structure=structure)
    threads: dict[int, int] = {}
    if FetchItem("THREADID") in attributes:
        threads = imapview.thread_ids(conn, account_id, sorted({row.blob_id for row in rows}))
    digests: dict[int, bytes] = {}
    if FetchItem("EMAILID") in attributes:
        digests = imapview.blob_digests(conn, sorted({row.blob_id for row in rows}))
    for row in rows:
        if changed_since is not None and row.modseq <= changed_since:
            continue
        if row.uid in recent:
            row.flags |= flagmod.RECENT
        if fast:
            batch.lines.append(_fast_line(seqs[row.uid], row, attributes, condstore))
            continue
        msg = Message(conn, row)
        msg.thread = threads.get(row.blob_id)
        msg.sha256 = digests.get(row.blob_id, b"")
        try:
            items = _items(msg, attributes, condstore, utf8)
        except UnknownEncoding:
            batch.unknown_cte = True
            continue
        except Exception:
            log.exception("FETCH of uid %d in mailbox %d failed", row.uid, mailbox_id)
            batch.failed += 1
            items = [Atom("UID"), row.uid, Atom("FLAGS"), flag_list(flagmod.names(row.flags, row.keywords))]
        batch.lines.append(b"* %d FETCH " % seqs[row.uid] + render(items, utf8=utf8) + b"\r\n")
    return batch


_FAST_ITEMS = frozenset(("UID", "FLAGS", "MODSEQ"))
_FLAG_BYTES: dict[tuple[int, str], bytes] = {}


def _flag_bytes(bits: int, keywords: str) -> bytes:
    key = (bits, keywords)
    flags = _FLAG_BYTES.get(key)
    if flags is None:
        if len(_FLAG_BYTES) > 4096:
            _FLAG_BYTES.clear()
        flags = _FLAG_BYTES[key] = render(_flag_atoms(bits, keywords))
    return flags


def _fast_lines(
    conn: sqlite3.Connection,
    mailbox_id: int,
    uids: Sequence[int],
    seqs: dict[int, int],
    attributes: Sequence[FetchAttribute],
    recent: set[int] | frozenset[int],
    changed_since: int | None,
    condstore: bool,
) -> list[bytes]:
    """`* n FETCH (UID u FLAGS (...) MODSEQ (m))` lines straight from (uid, modseq, flags, keywords) tuples, with
    a format made once per command: what clients send most (UID FETCH 1:* (FLAGS) on every sync). A dense UID
    set is read as one range. Same output as render()."""
    formats: list[bytes] = []
    columns: list[int] = []  # of (uid, modseq, flags)
    for attribute in attributes:
        name = attribute.name if isinstance(attribute, FetchItem) else ""
        if name == "UID":
            formats.append(b"UID %d")
            columns.append(0)
        elif name == "FLAGS":
            formats.append(b"FLAGS %s")
            columns.append(2)
            if condstore and FetchItem("MODSEQ") not in attributes:
                formats.append(b"MODSEQ (%d)")
                columns.append(1)
        else:
            formats.append(b"MODSEQ (%d)")
            columns.append(1)
    line = b"* %d FETCH (" + b" ".join(formats) + b")\r\n"
    lines: list[bytes] = []
    if not uids:
        return lines
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples
    query = "SELECT uid, modseq, flags, keywords FROM messages WHERE mailbox_id = ? AND "
    if 2 * len(uids) >= uids[-1] - uids[0] + 1:
        parts = [cursor.execute(query + "uid BETWEEN ? AND ? ORDER BY uid", (mailbox_id, uids[0], uids[-1])).fetchall()]
    else:
        parts = [
            cursor.execute(
                query + f"uid IN ({imapview.placeholders(len(chunk))}) ORDER BY uid", (mailbox_id, *chunk)
            ).fetchall()
            for chunk in imapview.chunks(uids)
        ]
    for rows in parts:
        for uid, modseq, bits, keywords in rows:
            seq = seqs.get(uid)
            if seq is None or (changed_since is not None and modseq <= changed_since):
                continue
            values = (uid, modseq, _flag_bytes(bits | flagmod.RECENT if uid in recent else bits, keywords))
            lines.append(line % (seq, *[values[column] for column in columns]))
    return lines


def _fast_line(seq: int, row: MessageRow, attributes: Sequence[FetchAttribute], condstore: bool) -> bytes:
    """`* n FETCH (UID u FLAGS (...) MODSEQ (m))` without the generic renderer (rows from a CRM view)."""
    flags = _flag_bytes(row.flags, row.keywords)
    parts: list[bytes] = []
    for attribute in attributes:
        name = attribute.name if isinstance(attribute, FetchItem) else ""
        if name == "UID":
            parts.append(b"UID %d" % row.uid)
        elif name == "FLAGS":
            parts.append(b"FLAGS " + flags)
            if condstore and FetchItem("MODSEQ") not in attributes:
                parts.append(b"MODSEQ (%d)" % row.modseq)
        elif name == "MODSEQ":
            parts.append(b"MODSEQ (%d)" % row.modseq)
    return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"


def _sets_seen(attribute: FetchAttribute) -> bool:
    if isinstance(attribute, FetchBody):
        return attribute.sets_seen
    return attribute.name in ("RFC822", "RFC822.TEXT")


def _needs_structure(attribute: FetchAttribute) -> bool:
    return isinstance(attribute, FetchItem) and attribute.name in _STRUCTURE_ITEMS


def _needs_data(attribute: FetchAttribute) -> bool:
    return isinstance(attribute, FetchBody) or attribute.name in _DATA_ITEMS


async def fetch(session: Session, command: Fetch) -> Result:
    """FETCH / UID FETCH (RFC 9051 §6.4.5, §6.4.9)."""
    view = session.selected
    assert view is not None
    attributes = list(command.attributes)
    if command.changed_since is not None:
        session.enabled.add("CONDSTORE")
        if FetchItem("MODSEQ") not in attributes:
            attributes.append(FetchItem("MODSEQ"))
    if any(a == FetchItem("MODSEQ") for a in attributes):
        session.enabled.add("CONDSTORE")
    if command.uid and FetchItem("UID") not in attributes:
        attributes.insert(0, FetchItem("UID"))
    if command.vanished and not session.qresync:
        raise bad("VANISHED needs ENABLE QRESYNC")
    load_rows: RowLoader | None = None
    condstore = session.condstore
    if isinstance(view, VirtualView):
        if command.changed_since is not None or FetchItem("MODSEQ") in attributes:
            raise bad("a CRM view has no mod-sequences (NOMODSEQ)")
        load_rows, condstore = functools.partial(virtual.message_rows, view), False
    uids = view.resolve(command.sequence_set, uid=command.uid, saved=session.saved)
    if command.vanished and command.changed_since is not None:
        _vanished_earlier(session, command.sequence_set, command.changed_since)
    if not view.readonly and "s" in view.rights and any(_sets_seen(a) for a in attributes) and uids:

        def seen(conn: sqlite3.Connection) -> imapwrite.StoreResult | None:
            if not access.holds(conn, session.account_id, view.mailbox_id, view.owner_id, "s"):
                return None  # the s right was withdrawn meanwhile: the messages stay unseen
            return imapwrite.store_flags(conn, view.mailbox_id, uids, "add", ["\\Seen"])

        result = await session.write(seen)
        if result is not None and result.changed:
            for uid, modseq, _, _ in result.changed:
                view.own[uid] = modseq
            session.publish(view.mailbox_id, result.modseq, view.owner_id)
            if FetchItem("FLAGS") not in attributes:
                attributes.append(FetchItem("FLAGS"))
    with_data = any(_needs_data(a) for a in attributes)
    seqs = view.seqs(uids)
    failed, unknown_cte = 0, False
    fast = all(isinstance(a, FetchItem) and a.name in _FAST_ITEMS for a in attributes)
    if fast:  # UID/FLAGS/MODSEQ: a cheap indexed query and a format per row, not worth a thread round trip
        inline, size = len(uids) <= INLINE_FAST, INLINE_FAST
    else:
        size = BATCH
        inline = len(uids) <= INLINE and (
            not with_data or session.read(lambda c: imapwrite.size_of(c, view.mailbox_id, uids)) <= INLINE_BYTES
        )
    for start in range(0, len(uids), size):
        job = functools.partial(
            render_batch,
            mailbox_id=view.mailbox_id,
            uids=uids[start : start + size],
            seqs=seqs,
            attributes=attributes,
            recent=view.recent,
            load_rows=load_rows,
            account_id=view.owner_id or session.account_id,  # THREADIDs: the owner's conversations
            with_data=with_data,
            changed_since=command.changed_since,
            condstore=condstore,
            utf8=session.utf8,
        )
        batch = session.read(job) if inline else await session.services.readers.run(job)
        session.send(b"".join(batch.lines))
        failed += batch.failed
        unknown_cte = unknown_cte or batch.unknown_cte
        if start + size < len(uids):  # the last batch goes out with the tagged reply, in one send
            await session.flush()
    if unknown_cte:
        raise no("a part has a Content-Transfer-Encoding that cannot be decoded", "UNKNOWN-CTE")
    if failed:
        raise no(f"{failed} message(s) could not be fetched completely", "SERVERBUG")
    return Ok("FETCH completed")


def _vanished_earlier(session: Session, sequence_set: SequenceSet, modseq: int) -> None:
    """UID FETCH ... (CHANGEDSINCE m VANISHED) (RFC 7162 §3.2.6): expunged UIDs in the set since m; `$` is the
    saved SEARCH result (RFC 5182), whose expunged UIDs are reported like any others."""
    view = session.selected
    assert view is not None
    sequence_set = sequence_set.resolve(session.saved or SequenceSet())
    gone = session.read(lambda c: imapview.vanished_since(c, view.mailbox_id, modseq))
    star = max([view.info.uidnext, *view.uids, *gone])
    gone = [uid for uid in gone if sequence_set.contains(uid, star)]
    if gone:
        session.untagged(Atom("VANISHED"), [Atom("EARLIER")], Atom(render_set(gone)))


HANDLERS: dict[str, Handler] = {"FETCH": fetch}
