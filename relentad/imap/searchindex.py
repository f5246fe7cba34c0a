"""The full-text prefilter of SEARCH TEXT, BODY and HEADER: SQLite FTS5 trigram indexes, one row per blob.

Two contentless ``detail='none'`` tables (migration 035): ``search_head`` holds every header field of the message
and of its MIME parts and embedded messages, raw and RFC 2047-decoded, ``search_body`` the text SEARCH BODY reads
(:func:`relentad.bodytext.text_for_search`). ``detail='none'`` keeps no positions (and allows no column filter, hence
two tables), so a query is an AND of trigrams: it finds a superset of the blobs that hold the string, which is all a
prefilter needs. Every candidate is then checked by SEARCH's exact matcher, so the index changes no result.

Invariants:
- Superset: the strings indexed are exactly the case-folded strings the exact matcher tests (Python ``casefold``),
  and the query's trigrams are those of the case-folded needle; FTS5 folds both sides once more with the same
  per-character mapping, so every trigram of a true match is in the index. A needle shorter than three characters
  after folding, or holding NUL or a lone surrogate (both are replaced when indexing), does not use the index.
- Complete: blobs above the watermark (not indexed yet, or indexed by other code: ``version`` differs) are always
  candidates; so is every message whose per-delivery trace prefix (Return-Path, Received…: not part of the blob)
  may hold the string for TEXT and HEADER, or whose blob begins with a continuation line that its prefix's last
  field takes in (``CONTINUED``).
- Deletable: a contentless table forgets a row only when told its exact texts again, so the texts are computed by
  the same code that indexed them (``version`` names that code: sources, Python, Unicode and SQLite versions); an
  index made by other code is emptied (``delete-all``) and rebuilt in the background instead. The old postings
  go from the pages when every segment is merged into one, in bounded steps after the purge (``merge_step``).
"""

from __future__ import annotations

import hashlib
import logging
import platform
import sqlite3
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

MIN_NEEDLE = 3
MAX_TRIGRAMS = 12
"""A query ANDs at most this many of the needle's trigrams (spread over it): fewer is still a superset, and past a
dozen the candidates hardly shrink while each trigram's postings must still be read."""
TABLES = ("search_head", "search_body")
MERGE_PAGES = 100
"""Index pages one merge step writes, in each table: a purge's merge goes in writer jobs of tens of milliseconds
(at 20,000 messages a whole merge rewrites 33 MB, about 0.7 s) between deliveries."""
UNINDEXED = "\x02\x02\x02"
"""The whole text of a blob whose texts are not indexed: it is a candidate of every query (scanned)."""
MAX_TEXT = 1024 * 1024
"""Characters of a blob's texts (header fields and body together; the body is at most 256 Ki) the index takes: one
message with a 22 MB header field held the writer 1.85 s in one insert. Longer ones are marked ``UNINDEXED``."""
PAGE_BYTES = 4000
"""About the size of an index page (FTS5's default ``pgsz`` is 4,050 bytes): how many steps a merge needs."""
CONTINUED = "\x01\x01\x01"
"""A line of the head text of a blob whose first line is a continuation: delivered, that line extends the trace
prefix's last field (Received), so a needle may span the two. Such blobs are candidates whenever the message has a
prefix (a control-character trigram: a needle holding it only adds candidates)."""


def _code_version() -> str:
    """What the indexed texts depend on: the extracting code, Python (its case folding, but also the charset codecs
    and HTML entities the text goes through) and SQLite's tokenizer."""
    from .. import bodytext, headers, message, mimetree
    from .commands import search

    digest = hashlib.sha256()
    for module in (bodytext, headers, message, mimetree, search):
        digest.update(Path(module.__file__ or "").read_bytes())
    digest.update(Path(__file__).read_bytes())
    digest.update(f"{unicodedata.unidata_version} {platform.python_version()} {sqlite3.sqlite_version}".encode())
    return digest.hexdigest()[:16]


_VERSION: list[str] = []


def version() -> str:
    """The current code's index version (computed once)."""
    if not _VERSION:
        _VERSION.append(_code_version())
    return _VERSION[0]


def clean(text: str) -> str:
    """What is stored: NUL and lone surrogates (which SQLite cannot take) replaced; no needle contains them."""
    if "\0" in text:
        text = text.replace("\0", "\n")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode()
    return text


def query(needle: str) -> str | None:
    """The FTS5 query (an AND of quoted trigrams) for a case-folded needle, None when the index cannot answer it."""
    if len(needle) < MIN_NEEDLE or clean(needle) != needle:
        return None
    grams = list(dict.fromkeys(needle[i : i + 3] for i in range(len(needle) - 2)))
    if len(grams) > MAX_TRIGRAMS:
        step = (len(grams) - 1) / (MAX_TRIGRAMS - 1)
        grams = [grams[round(i * step)] for i in range(MAX_TRIGRAMS)]
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


def watermark_sql() -> tuple[str, list[str]]:
    """The highest blob id indexed by the current code (0 when the index is another code's)."""
    return "coalesce((SELECT watermark FROM search_index_state WHERE version = ?), 0)", [version()]


def prefilter(fts_query: str, tables: tuple[str, ...], prefix_call: str | None) -> tuple[str, list[str]]:
    """SQL true for every message that may match: not yet indexed (above the watermark, or ``UNINDEXED``), in one
    of ``tables``, or (``prefix_call``) its trace prefix may hold the needle."""
    mark, params = watermark_sql()
    terms = [f"m.blob_id > {mark}", "m.blob_id IN (SELECT rowid FROM search_head WHERE search_head MATCH ?)"]
    params.append(f'"{UNINDEXED}"')
    for table in tables:
        terms.append(f"m.blob_id IN (SELECT rowid FROM {table} WHERE {table} MATCH ?)")
        params.append(fts_query)
    if prefix_call:
        terms.append(prefix_call)
        continued = "m.blob_id IN (SELECT rowid FROM search_head WHERE search_head MATCH ?)"
        terms.append(f"(length(m.prefix) > 0 AND {continued})")
        params.append(f'"{CONTINUED}"')
    return "(" + " OR ".join(terms) + ")", params


def damaged(exc: sqlite3.Error) -> bool:
    """Whether a query that read the index failed on damaged pages (SQLITE_CORRUPT: "database disk image is
    malformed"), not on a busy or full disk: such an index is emptied (:func:`reset`) and rebuilt, never trusted."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_CORRUPT


def guarded(conn: sqlite3.Connection, write: Callable[[], object]) -> bool:
    """Writer: run ``write`` on the index; when its pages turn out damaged, undo it and empty the index instead
    (the background job rebuilds it, and a purge's deletions need nothing more), so that a damaged index never
    fails the purge or stops indexing. False when the index was emptied."""
    conn.execute("SAVEPOINT search_index")
    try:
        write()
    except sqlite3.DatabaseError as exc:
        conn.execute("ROLLBACK TO search_index")
        conn.execute("RELEASE search_index")
        if not damaged(exc):
            raise
        log.error("search index: damaged (%s); emptied, to be rebuilt in the background", exc)
        reset(conn)
        return False
    conn.execute("RELEASE search_index")
    return True


def state(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT watermark, version FROM search_index_state").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, "")


def reset(conn: sqlite3.Connection) -> None:
    """Empty the index and mark it as the current code's, from blob 0 (the background job refills it)."""
    for table in TABLES:
        conn.execute(f"INSERT INTO {table}({table}) VALUES ('delete-all')")
    conn.execute("UPDATE search_index_state SET watermark = 0, version = ?", (version(),))


def add(conn: sqlite3.Connection, rows: list[tuple[int, str, str]], upto: int, since: int) -> bool:
    """Writer: index ``rows`` (blob id, head, body) and move the watermark from ``since`` to ``upto``; nothing when
    the watermark moved meanwhile (a rebuild) or the code changed. Blobs purged since they were read are skipped."""
    if state(conn) != (since, version()):
        return False

    def insert() -> None:
        for blob_id, head, body in rows:
            if conn.execute("SELECT 1 FROM blobs WHERE id = ?", (blob_id,)).fetchone() is None:
                continue
            conn.execute("INSERT INTO search_head (rowid, t) VALUES (?, ?)", (blob_id, head))
            conn.execute("INSERT INTO search_body (rowid, t) VALUES (?, ?)", (blob_id, body))
        conn.execute("UPDATE search_index_state SET watermark = ?", (upto,))

    return guarded(conn, insert)


def remove(conn: sqlite3.Connection, rows: Iterable[tuple[int, str, str]]) -> None:
    """Forget indexed blobs (their exact texts, recomputed). Their postings stay in the index's pages beside delete
    markers until :func:`merge_step` has merged every segment into one: the caller runs it to the end."""

    def delete() -> None:
        for blob_id, head, body in rows:
            conn.execute("INSERT INTO search_head (search_head, rowid, t) VALUES ('delete', ?, ?)", (blob_id, head))
            conn.execute("INSERT INTO search_body (search_body, rowid, t) VALUES ('delete', ?, ?)", (blob_id, body))

    guarded(conn, delete)


def merge_step(conn: sqlite3.Connection, pages: int = MERGE_PAGES) -> bool:
    """Writer: one bounded step of merging each index into a single segment (FTS5's incremental ``merge`` with a
    negative page count: an ``optimize`` in steps), which drops deleted blobs' postings with their markers. True
    while work remains (a step that changes fewer than two rows did nothing, as the FTS5 documentation says)."""
    more = False

    def merge() -> None:
        nonlocal more
        for table in TABLES:
            before = conn.total_changes
            conn.execute(f"INSERT INTO {table}({table}, rank) VALUES ('merge', ?)", (-pages,))
            more = more or conn.total_changes - before >= 2

    return guarded(conn, merge) and more


def merge_budget(conn: sqlite3.Connection) -> int:
    """Steps a merge may take in steps: about twice what the index's size needs. New segments written meanwhile
    (indexing by another process: the CLI's purge beside the daemon) restart FTS5's merge, which then may never
    end; past the budget the merge is finished by one ``optimize``."""
    return size(conn) // (MERGE_PAGES * PAGE_BYTES) + 10


def optimize(conn: sqlite3.Connection) -> None:
    """Writer: merge each index into one segment at once (a merge that went past its budget)."""
    guarded(conn, lambda: [conn.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')") for table in TABLES])


def size(conn: sqlite3.Connection) -> int:
    """Bytes the index's pages hold (its shadow tables' blocks)."""
    return sum(
        int(conn.execute(f"SELECT coalesce(sum(length(block)), 0) FROM {table}_data").fetchone()[0]) for table in TABLES
    )


def status(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(blobs indexed by the current code, blobs in all, index bytes)."""
    mark, params = watermark_sql()
    indexed, total = conn.execute(
        f"SELECT count(*) FILTER (WHERE id <= {mark}), count(*) FROM blobs", params
    ).fetchone()
    return int(indexed), int(total), size(conn)
