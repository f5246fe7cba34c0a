"""SEARCH's full-text prefilter: never loses a match the exact matcher finds; indexing, watermark and purge."""

from __future__ import annotations

import asyncio
import platform
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relentad.headers import decode_header, header_fields
from relentad.imap import indexer, searchindex
from relentad.imap.commands.search import Compiler, _prefix_may_hold, index_texts, run_search
from relentad.imap.parser import SearchText
from relentad.lifecycle import retention
from relentad.store import db, messages
from relentad.store.mailboxes import find
from tests.support.store import database_with

# letters whose case folding differs between Python (full folding) and SQLite (simple, per character), or that
# change length when folded
_TRICKY = "ßẞİıſKÅΣσςﬁﬀŉǰΐẖΫᏸᏰꭰДжÆæ𐐀𐐨\u0307\u0130\u212a\0\ud800 aAbB\n\"'*-"
_TEXT = st.text(alphabet=st.sampled_from(_TRICKY) | st.characters(), max_size=40)


def _fts() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE x USING fts5(t, content='', detail='none', columnsize=0, tokenize='trigram')")
    return conn


@settings(max_examples=400, deadline=None)
@given(text=_TEXT, start=st.integers(0, 40), length=st.integers(0, 12), other=_TEXT)
def test_the_prefilter_never_drops_a_match_of_the_exact_matcher(text: str, start: int, length: int, other: str) -> None:
    """Whatever the letters, a needle the matcher finds (``needle.casefold() in text.casefold()``) is a candidate:
    a substring of the text, or of its folded form, and an unrelated string."""
    conn = _fts()
    folded = text.casefold()
    conn.execute("INSERT INTO x (rowid, t) VALUES (1, ?)", (searchindex.clean(folded),))
    for needle in (text[start : start + length], folded[start : start + length], other):
        wanted = needle.casefold()
        fts = searchindex.query(wanted)
        if fts is None or wanted not in folded:
            continue
        assert conn.execute("SELECT rowid FROM x WHERE x MATCH ?", (fts,)).fetchall() == [(1,)], (text, needle)


def test_short_needles_and_what_sqlite_cannot_hold_are_not_asked_of_the_index() -> None:
    assert searchindex.query("ab") is None
    assert searchindex.query("ss") is None  # "ß" folded is still two characters
    assert searchindex.query("a\0b") is None and searchindex.query("ab\ud800") is None
    assert searchindex.query('a"b') == '"a""b"'
    long = searchindex.query("abcdefghijklmnopqrstuvwxyz")
    assert long is not None and long.count(" AND ") == searchindex.MAX_TRIGRAMS - 1


def _deliver(conn: sqlite3.Connection, raw: bytes, prefix: bytes = b"") -> int:
    inbox = find(conn, 1, "INBOX")
    assert inbox is not None
    blob = messages.store_blob(conn, raw)
    messages.append(conn, inbox, blob, prefix=prefix, size=len(raw), internaldate=time.time())
    return blob


class _View:
    def __init__(self) -> None:
        self.uids: list[int] = []
        self.recent: set[int] = set()


def _search(conn: sqlite3.Connection, key: str, needle: str, *, index: bool) -> list[int]:
    compiler = Compiler(_View(), None, time.time(), 1, index)  # type: ignore[arg-type]
    sql, params = compiler.compile(SearchText(key, needle))
    assert ("MATCH" in sql) == (index and searchindex.query(needle.casefold()) is not None)
    inbox = find(conn, 1, "INBOX")
    assert inbox is not None
    rows = run_search(conn, inbox, sql, params, compiler.matchers, prefix_needles=compiler.prefix_needles)
    return [row[0] for row in rows]


MAILS = [
    (
        b"Subject: =?utf-8?q?Stra=C3=9Fe?=\r\nFrom: Anna <anna@example.test>\r\n\r\n"
        b"Die Rechnung f\xc3\xbcr M\xc3\xa4rz\r\n",
        b"",
    ),
    (
        b"Subject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Rech<b>nung</b> &amp; KELVIN \xe2\x84\xaa</p>\r\n",
        b"Delivered-To: tracked@example.test\r\n",
    ),
    (b"Subject: plain\r\n\r\nnothing to see\r\n", b"X-Spam-Flag: YES\r\n"),
]
NEEDLES = ["rechnung", "STRASSE", "straße", "märz", "anna@example", "tracked@", "yes", "kelvin k", "zzz", "a"]


def test_search_results_are_the_same_with_the_index_and_without(tmp_path: Path) -> None:
    """Over messages indexed and messages not yet indexed (above the watermark), with trace prefixes that are not
    part of the blob: TEXT and BODY find exactly what the scan finds."""
    conn = database_with(tmp_path / "t.db", "a@example.test")
    with db.transaction(conn):
        for raw, prefix in MAILS[:2]:
            _deliver(conn, raw, prefix)
    assert indexer.step(conn, conn) == 2
    with db.transaction(conn):
        _deliver(conn, *MAILS[2])  # not indexed
    assert searchindex.status(conn)[:2] == (2, 3)
    for key in ("TEXT", "BODY"):
        for needle in NEEDLES:
            scanned = _search(conn, key, needle, index=False)
            assert _search(conn, key, needle, index=True) == scanned, (key, needle)
    assert _search(conn, "TEXT", "tracked@", index=True) == [2], "the trace prefix is searched"
    assert _search(conn, "BODY", "rechnung", index=True) == [1, 2]
    assert indexer.step(conn, conn) == 1 and indexer.step(conn, conn) == 0
    assert searchindex.status(conn)[:2] == (3, 3)
    assert _search(conn, "TEXT", "yes", index=True) == _search(conn, "TEXT", "yes", index=False) == [3]


def test_a_blob_beginning_with_a_continuation_line_is_found_across_the_trace_prefix(tmp_path: Path) -> None:
    """Delivered, a blob's leading continuation line extends the trace prefix's last field: a needle spanning the
    two is found by the scan, so it must be with the index too (it was not: neither the prefix nor the blob alone
    holds it)."""
    conn = database_with(tmp_path / "t.db", "a@example.test")
    with db.transaction(conn):
        _deliver(conn, b" spanword rest\r\nSubject: cont\r\n\r\nbody\r\n", b"Received: by mx; 27 Nov 2026\r\n")
        _deliver(conn, b" spanword rest\r\nSubject: appended\r\n\r\nbody\r\n")  # no prefix: only the blob
    assert indexer.step(conn, conn) == 2
    for needle in ("2026 spanword", "nov 2026 spanword r", "spanword"):
        scanned = _search(conn, "TEXT", needle, index=False)
        assert scanned and _search(conn, "TEXT", needle, index=True) == scanned, needle
    assert _search(conn, "TEXT", "zzzz", index=True) == []


def test_the_index_of_another_code_version_is_not_used_and_is_rebuilt(tmp_path: Path) -> None:
    conn = database_with(tmp_path / "t.db", "a@example.test")
    with db.transaction(conn):
        _deliver(conn, *MAILS[0])
    indexer.step(conn, conn)
    conn.execute("UPDATE search_index_state SET version = 'old'")
    assert searchindex.status(conn)[0] == 0, "nothing counts as indexed: SEARCH scans everything"
    assert _search(conn, "BODY", "rechnung", index=True) == [1]
    assert indexer.step(conn, conn) == 1
    assert searchindex.state(conn) == (1, searchindex.version())


def test_another_python_is_another_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's codecs and HTML entities shape the indexed texts; a purge deletes rows by recomputing them, so an
    index made under another Python must be rebuilt, not trusted (its rows could not all be deleted)."""
    here = searchindex._code_version()
    monkeypatch.setattr(platform, "python_version", lambda: "3.99.0")
    assert searchindex._code_version() != here


def _hits(conn: sqlite3.Connection, table: str, fts: str) -> list[int]:
    return [row[0] for row in conn.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ?", (fts,))]


def _unlink(conn: sqlite3.Connection, blob: int) -> None:
    """The blob's messages expunged and their retention passed: the next purge removes it."""
    conn.execute("DELETE FROM messages WHERE blob_id = ?", (blob,))
    conn.execute("UPDATE blobs SET refs = 0 WHERE id = ?", (blob,))


def _small_pages(conn: sqlite3.Connection) -> None:
    """Small index pages: a small index spans many of them, so merges take several steps."""
    for table in searchindex.TABLES:
        conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('pgsz', 64)")


def test_purge_takes_the_blob_out_of_the_index(tmp_path: Path) -> None:
    """Privacy: once the blob is purged, none of its trigrams finds it, and the index's pages are merged."""
    conn = database_with(tmp_path / "t.db", "a@example.test")
    with db.transaction(conn):
        gone = _deliver(conn, b"Subject: qwertzuiop\r\n\r\nunique-purge-word\r\n")
        stays = _deliver(conn, b"Subject: stays\r\n\r\nother words\r\n")
    indexer.step(conn, conn)
    assert _hits(conn, "search_body", '"que"') == [gone] and _hits(conn, "search_head", '"wer"') == [gone]
    with db.transaction(conn):
        _unlink(conn, gone)
        assert retention.purge(conn, 90).blobs == 1
    assert indexer.merge_now(conn) >= 1
    assert _hits(conn, "search_body", '"que"') == [] and _hits(conn, "search_head", '"wer"') == []
    assert _hits(conn, "search_body", '"oth"') == [stays]
    for table in searchindex.TABLES:  # one merged segment: no delete markers beside the old postings
        conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 0)")
    head, body = index_texts(b"Subject: stays\r\n\r\nother words\r\n", None)
    assert "stays" in head and body.strip() == "other words"


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.text(alphabet=st.sampled_from("aZ09 :;<>@=?\t\r\n-ßK"), max_size=20), min_size=1, max_size=4),
    start=st.integers(0, 20),
    length=st.integers(1, 8),
)
def test_the_trace_prefix_check_never_drops_a_field_that_holds_the_needle(
    values: list[str], start: int, length: int
) -> None:
    """``_prefix_may_hold`` is true whenever the exact matcher finds the needle in a field of the prefix."""
    prefix = b"".join(
        b"X-F%d: %s\r\n" % (i, value.replace("\r", "").replace("\n", "\r\n ").encode())
        for i, value in enumerate(values)
    )
    for _, value in header_fields(prefix, 0, len(prefix)):
        for form in (value.casefold(), decode_header(value).casefold()):
            needle = form[start : start + length]
            if needle:
                assert _prefix_may_hold(needle, prefix), (prefix, needle)


def _blocks(conn: sqlite3.Connection, table: str) -> dict[int, bytes]:
    return {int(row[0]): bytes(row[1]) for row in conn.execute(f"SELECT id, block FROM {table}_data WHERE id > 10")}


def test_a_purge_leaves_the_merge_to_bounded_steps_that_remove_everything(tmp_path: Path) -> None:
    """The purge job (in the daemon's writer) only adds delete markers: it does not rewrite the whole index (0.7 s
    at 20,000 messages, in one writer job, before). The merge then goes in steps of at most MERGE_PAGES pages
    each, and when it is done no page holds the purged blob's postings beside the markers."""
    conn = database_with(tmp_path / "t.db", "a@example.test")
    _small_pages(conn)
    words = [f"w{n:04d}x{n * 7919 % 10007:05d}" for n in range(400)]
    with db.transaction(conn):
        gone = _deliver(conn, b"Subject: qwertzuiop\r\n\r\nunique-purge-word\r\n")
        for n in range(40):
            _deliver(conn, f"Subject: s{n}\r\n\r\n{' '.join(words[n::40])}\r\n".encode())
    while indexer.step(conn, conn):
        pass
    for table in searchindex.TABLES:
        conn.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
    before = _blocks(conn, "search_body")
    with db.transaction(conn):
        _unlink(conn, gone)
        assert retention.purge(conn, 90).blobs == 1
    after = _blocks(conn, "search_body")
    assert all(after.get(key) == block for key, block in before.items()), "the purge rewrote the index"
    assert _hits(conn, "search_body", '"que"') == []
    assert indexer.merge_now(conn) > 2, "the merge goes in several steps"
    merged = _blocks(conn, "search_body")
    assert len(merged) < len(after) and not set(merged.items()) >= set(before.items())
    for table in searchindex.TABLES:
        conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 0)")
    assert searchindex.merge_step(conn) is False, "merged into one segment: nothing left to do"
    assert _hits(conn, "search_body", '"que"') == [] and _hits(conn, "search_body", '"w00"') != []


def test_a_damaged_index_never_fails_the_purge_nor_indexing(tmp_path: Path) -> None:
    """Damaged pages ("database disk image is malformed") in the index: the purge (privacy: it must run) empties
    the index instead of failing, and the background job builds it again."""
    conn = database_with(tmp_path / "t.db", "a@example.test")
    with db.transaction(conn):
        gone = _deliver(conn, b"Subject: qwertzuiop\r\n\r\nunique-purge-word\r\n")
        for n in range(20):
            _deliver(conn, f"Subject: s{n}\r\n\r\nhello world number {n}\r\n".encode())
    indexer.step(conn, conn)
    with db.transaction(conn):
        for table in searchindex.TABLES:
            conn.execute(f"UPDATE {table}_data SET block = randomblob(length(block)) WHERE id > 10")
        _unlink(conn, gone)
        assert retention.purge(conn, 90).blobs == 1
    assert indexer.merge_now(conn) >= 1
    assert searchindex.state(conn) == (0, searchindex.version()) and searchindex.size(conn) < 100
    while indexer.step(conn, conn):
        pass
    assert searchindex.status(conn)[:2] == (20, 20)
    assert _search(conn, "BODY", "number 7", index=True) == [9]  # uid 1 was purged
    for table in searchindex.TABLES:
        conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 0)")


def test_a_large_purge_empties_the_index_rather_than_recomputing_every_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forgetting a blob means extracting its texts again in the writer's transaction (5,000 blobs: 3.9 s, all
    their texts in memory before); past FORGET_AT_MOST the index is emptied and rebuilt in the background."""
    monkeypatch.setattr(indexer, "FORGET_AT_MOST", 2, raising=False)
    conn = database_with(tmp_path / "t.db", "a@example.test")
    with db.transaction(conn):
        blobs = [_deliver(conn, f"Subject: s{n}\r\n\r\nword{n:02d} body\r\n".encode()) for n in range(12)]
    indexer.step(conn, conn)
    extracted: list[int] = []
    texts = indexer._texts
    monkeypatch.setattr(indexer, "_texts", lambda blob_id, *rest: extracted.append(blob_id) or texts(blob_id, *rest))

    def purge(gone: list[int]) -> None:
        with db.transaction(conn):
            for blob in gone:
                conn.execute("DELETE FROM messages WHERE blob_id = ?", (blob,))
                conn.execute("UPDATE blobs SET refs = 0 WHERE id = ?", (blob,))
            assert retention.purge(conn, 90).blobs == len(gone)
        indexer.merge_now(conn)

    purge(blobs[:1])  # a few: taken out one by one
    assert extracted == blobs[:1] and searchindex.state(conn)[0] == blobs[-1]
    purge(blobs[1:6])
    assert extracted == blobs[:1], "no text extracted again: the index was emptied"
    assert searchindex.state(conn)[0] == 0 and searchindex.size(conn) < 100
    while indexer.step(conn, conn):
        pass
    assert _hits(conn, "search_body", '"d03"') == [] and _hits(conn, "search_body", '"d07"') == [blobs[7]]
    assert _search(conn, "BODY", "word08", index=True) == [9]


def test_a_merge_that_new_segments_keep_restarting_still_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's purge merges while the daemon's indexer may add segments between its steps; each new segment
    restarts FTS5's merge of everything, so it could go on for ever: past its budget one 'optimize' ends it."""
    conn = database_with(tmp_path / "t.db", "a@example.test")
    _small_pages(conn)
    words = [f"w{n:04d}x{n * 7919 % 10007:05d}" for n in range(400)]
    with db.transaction(conn):
        gone = _deliver(conn, b"Subject: qwertzuiop\r\n\r\nunique-purge-word\r\n")
        for n in range(40):
            _deliver(conn, f"Subject: s{n}\r\n\r\n{' '.join(words[n::40])}\r\n".encode())
    while indexer.step(conn, conn):
        pass
    with db.transaction(conn):
        _unlink(conn, gone)
        assert retention.purge(conn, 90).blobs == 1
    step, steps = searchindex.merge_step, [0]

    def step_with_indexing_beside(writer: sqlite3.Connection, pages: int = 4) -> bool:
        steps[0] += 1
        assert steps[0] < 300, "the merge never ends"
        more = step(writer, pages)
        for batch in range(2):  # the daemon's indexer, meanwhile: two new batches
            _deliver(writer, f"Subject: n{steps[0]}\r\n\r\nnew {words[steps[0] % 400]}-{batch}\r\n".encode())
            since, upto, rows = indexer.pending(writer)
            searchindex.add(writer, rows, upto, since)
        return more

    monkeypatch.setattr(searchindex, "merge_step", step_with_indexing_beside)
    indexer.merge_now(conn)
    monkeypatch.setattr(searchindex, "merge_step", step)
    assert searchindex.merge_step(conn) is False, "merged into one segment"
    for table in searchindex.TABLES:
        conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 0)")
    assert _hits(conn, "search_body", '"que"') == [] and _hits(conn, "search_body", '"new"') != []


def test_the_daemons_purge_merges_in_writer_jobs_with_the_indexer_paused(tmp_path: Path) -> None:
    """The daily purge's path: the purge job, then ``indexer.merge`` on the daemon's Store, a writer job a step."""
    conn = database_with(tmp_path / "relentad.db", "a@example.test")
    _small_pages(conn)
    with db.transaction(conn):
        gone = _deliver(conn, b"Subject: qwertzuiop\r\n\r\nunique-purge-word\r\n")
        for n in range(30):
            _deliver(conn, f"Subject: s{n}\r\n\r\nword{n:02d} and more words\r\n".encode())
    while indexer.step(conn, conn):
        pass
    with db.transaction(conn):
        _unlink(conn, gone)
    store = db.Store(tmp_path / "relentad.db")
    paused: list[bool] = []

    async def purge_and_merge() -> int:
        store.start(asyncio.get_running_loop())
        assert (await store.write(lambda c: retention.purge(c, 90))).blobs == 1
        write = store.write

        async def watched(job: Any) -> Any:
            paused.append(indexer._merging)
            return await write(job)

        store.write = watched  # type: ignore[method-assign]
        return await indexer.merge(store)

    try:
        assert asyncio.run(purge_and_merge()) > 1
    finally:
        store.close()
    assert paused and all(paused) and not indexer._merging
    assert searchindex.merge_step(conn) is False and _hits(conn, "search_body", '"que"') == []


def test_a_blob_too_long_or_unreadable_to_index_is_always_a_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header field of megabytes made one insert (one writer job) of all its trigrams (22 MB: 1.85 s); and a
    blob whose texts could not be read was indexed empty, so the index dropped what the matcher still finds in
    the parts it can read. Both are now marked and scanned as without the index."""
    conn = database_with(tmp_path / "t.db", "a@example.test")
    long_field = " ".join(f"w{n:07d}" for n in range(150_000)).encode()  # 1.35 MB
    with db.transaction(conn):
        _deliver(conn, b"Subject: long\r\nX-Long: " + long_field + b"\r\n\r\nneedle-in-long\r\n")
        _deliver(conn, b"Subject: odd\r\n\r\nneedle-in-odd\r\n")
        _deliver(conn, b"Subject: fine\r\n\r\nneedle-in-fine\r\n")
    texts = indexer.index_texts

    def failing(data: bytes, structure: str | None) -> tuple[str, str]:
        if b"needle-in-odd" in data:
            raise ValueError("a parser bug")
        return texts(data, structure)

    monkeypatch.setattr(indexer, "index_texts", failing)
    while indexer.step(conn, conn):
        pass
    assert searchindex.status(conn)[:2] == (3, 3)
    assert _hits(conn, "search_head", '"w01"') == [], "the long field's trigrams were not inserted"
    for needle in ("needle-in-long", "w0149999", "needle-in-odd", "needle-in-fine"):
        scanned = _search(conn, "TEXT", needle, index=False)
        assert len(scanned) == 1 and _search(conn, "TEXT", needle, index=True) == scanned, needle
    assert _search(conn, "BODY", "zzzz", index=True) == []
