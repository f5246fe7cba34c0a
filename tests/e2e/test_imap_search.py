"""SEARCH / UID SEARCH over real sockets: flags, keywords, dates, sizes, sets, text keys (decoded headers and
bodies, UTF-8 charset), NOT/OR nesting, MODSEQ, ESEARCH and SEARCHRES."""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, Raw, imap_daemon, message

HTML = (
    b"From: Shop <news@shop.test>\r\nTo: alice@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Date: Mon, 03 Mar 2025 12:00:00 +0000\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>Sch=C3=B6ne <b>Angebote</b></p>\r\n"
)


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-search"), dns_server.nameserver)
    conn = imaplib.IMAP4(daemon.host, daemon.imap_port)
    conn.login(ALICE, PASSWORD)
    conn.append("INBOX", "(\\Seen)", '"01-Jan-2025 10:00:00 +0000"', message("invoice 42", "Please pay.\r\n"))
    conn.append("INBOX", "(\\Flagged $Work)", '"15-Feb-2025 10:00:00 +0000"', message("meeting", "x" * 5000))
    conn.append("INBOX", None, '"03-Mar-2025 12:00:00 +0000"', HTML)
    conn.append("INBOX", "(\\Deleted)", None, message("old stuff", sender="Bob <bob@example.test>", X_Tag="blue"))
    conn.logout()
    yield daemon
    daemon.stop()


@pytest.fixture
def raw(relentad: Daemon) -> Iterator[Raw]:
    client = Raw(relentad)
    client.login()
    client.command("s", "SELECT INBOX")
    yield client
    client.close()


def search(raw: Raw, criteria: str | bytes) -> list[int]:
    reply = raw.command("q", criteria)
    assert reply[-1].startswith(b"q OK"), reply
    line = next(line for line in reply if line.startswith(b"* SEARCH"))
    return [int(n) for n in line.split()[2:] if n.isdigit()]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("SEARCH ALL", [1, 2, 3, 4]),
        ("SEARCH SEEN", [1]),
        ("SEARCH UNSEEN", [2, 3, 4]),
        ("SEARCH FLAGGED KEYWORD $Work", [2]),
        ("SEARCH UNKEYWORD $work", [1, 3, 4]),
        ("SEARCH DELETED", [4]),
        ("SEARCH NOT DELETED", [1, 2, 3]),
        ("SEARCH OR SEEN FLAGGED", [1, 2]),
        ("SEARCH NOT (OR SEEN (FLAGGED UNDELETED))", [3, 4]),
        ("SEARCH BEFORE 15-Feb-2025", [1]),
        ("SEARCH ON 15-Feb-2025", [2]),
        ("SEARCH SINCE 15-Feb-2025 BEFORE 1-Jan-2026", [2, 3]),
        ("SEARCH SENTON 3-Mar-2025", [3]),
        ("SEARCH SENTSINCE 1-Jan-2026", [1, 2, 4]),
        ("SEARCH LARGER 3000", [2]),
        ("SEARCH SMALLER 3000", [1, 3, 4]),
        ("SEARCH 2:3", [2, 3]),
        ("SEARCH UID 3:*", [3, 4]),
        ("SEARCH SUBJECT invoice", [1]),
        ("SEARCH SUBJECT MEET", [2]),
        ("SEARCH FROM bob@example.test", [4]),
        ("SEARCH FROM friend", [1, 2]),
        ("SEARCH TO alice", [1, 2, 3, 4]),
        ('SEARCH HEADER X-Tag "blue"', [4]),
        ('SEARCH HEADER X-Tag ""', [4]),
        ("SEARCH BODY pay", [1]),
        ("SEARCH TEXT meeting", [2]),
        ("SEARCH BODY Angebote", [3]),
        ("SEARCH YOUNGER 3600", [4]),
    ],
)
def test_search_keys(raw: Raw, criteria: str, expected: list[int]) -> None:
    assert search(raw, criteria) == expected


def test_utf8_charset_and_decoded_words(raw: Raw) -> None:
    raw.send(b"q SEARCH CHARSET UTF-8 SUBJECT {6}\r\n")
    assert raw.line().startswith(b"+")
    raw.send("Grüß".encode() + b"\r\n")
    assert b"* SEARCH 3" in b"".join(raw.until("q"))
    raw.send(b"r SEARCH CHARSET UTF-8 BODY {6}\r\n")
    raw.line()
    raw.send("Schöne".encode()[:6] + b"\r\n")
    reply = raw.until("r")
    assert reply[-1].startswith(b"r OK")
    assert raw.command("t", "SEARCH CHARSET KOI9 ALL")[-1].startswith(b"t NO [BADCHARSET")


def test_uid_search_and_esearch(raw: Raw) -> None:
    assert b"* SEARCH 1 2 3 4" in b"".join(raw.command("a", "UID SEARCH ALL"))
    reply = raw.command("b", "SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
    assert reply[0] == b'* ESEARCH (TAG "b") MIN 2 MAX 4 COUNT 3 ALL 2:4\r\n'
    reply = raw.command("c", "UID SEARCH RETURN () FLAGGED")
    assert reply[0] == b'* ESEARCH (TAG "c") UID ALL 2\r\n'
    reply = raw.command("d", "SEARCH RETURN (COUNT) SUBJECT nothing-like-this")
    assert reply[0] == b'* ESEARCH (TAG "d") COUNT 0\r\n'


def test_searchres_saves_for_dollar(raw: Raw) -> None:
    reply = raw.command("a", "SEARCH RETURN (SAVE) OR SEEN FLAGGED")
    assert reply[0].startswith(b"a OK")
    text = b"".join(raw.command("b", "FETCH $ (UID)"))
    assert b"* 1 FETCH (UID 1)" in text and b"* 2 FETCH (UID 2)" in text and b"* 3 FETCH" not in text
    assert search(raw, "SEARCH $ SEEN") == [1]


@pytest.mark.parametrize(
    ("failing", "status"),
    [("SEARCH RETURN (SAVE) CHARSET X-NOSUCH TEXT x", b"NO [BADCHARSET"), ("SEARCH RETURN (SAVE) NOSUCHKEY", b"BAD")],
)
def test_a_failed_save_empties_dollar(raw: Raw, failing: str, status: bytes) -> None:
    """RFC 5182 §2.1: a SEARCH RETURN (SAVE) answered NO or BAD leaves `$` empty, so a FETCH $ pipelined behind it
    acts on nothing rather than on the result of the search before (it kept that one)."""
    assert raw.command("a", "SEARCH RETURN (SAVE) ALL")[0].startswith(b"a OK")
    assert raw.command("b", failing)[-1].startswith(b"b " + status)
    fetched = raw.command("c", "FETCH $ (UID)")
    assert fetched[-1].startswith(b"c OK") and not any(line.startswith(b"* ") for line in fetched), fetched


FORWARD = (
    b"From: carol@example.test\r\nSubject: fyi\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
    b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=quarterly-report.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: =?utf-8?q?J=C3=B6rg?= <jorg@elsewhere.test>\r\nSubject: budget numbers\r\n\r\nthe forwarded text\r\n"
    b"--b--\r\n"
)


def test_text_reads_the_headers_of_parts_and_embedded_messages(raw: Raw) -> None:
    """TEXT is the header and body of the message: a forwarded mail's Subject and From and an attachment's file
    name are in its text (Dovecot matches them); BODY skips headers. TEXT used to read only the top-level header."""
    raw.command("c", "CREATE Forwarded")
    raw.send(b"a APPEND Forwarded {%d+}\r\n" % len(FORWARD) + FORWARD + b"\r\n")
    assert raw.until("a")[-1].startswith(b"a OK")
    raw.command("s", "SELECT Forwarded")
    assert search(raw, 'SEARCH TEXT "budget numbers"') == [1]
    assert search(raw, b"SEARCH CHARSET UTF-8 TEXT {5+}\r\nJ\xc3\xb6rg") == [1]
    assert search(raw, "SEARCH TEXT quarterly-report.pdf") == [1]
    assert search(raw, 'SEARCH TEXT "forwarded text"') == [1]
    assert search(raw, 'SEARCH BODY "budget numbers"') == []
    assert search(raw, "SEARCH SUBJECT budget") == []


def test_modseq_search(raw: Raw) -> None:
    status = raw.command("z", "STATUS INBOX (HIGHESTMODSEQ)")[0]
    highest = int(status.split()[-1].rstrip(b")"))
    raw.command("a", "STORE 3 +FLAGS (\\Answered)")
    reply = raw.command("b", f"SEARCH MODSEQ {highest + 1}")
    line = next(line for line in reply if line.startswith(b"* SEARCH"))
    assert line == b"* SEARCH 3 (MODSEQ %d)\r\n" % (highest + 1)
    raw.command("c", "STORE 3 -FLAGS (\\Answered)")


def test_savedate(relentad: Daemon) -> None:
    """RFC 8514: the save date is when the message entered this mailbox (APPEND, COPY), whatever its internal
    date; FETCH SAVEDATE and SEARCH SAVEDBEFORE/SAVEDON/SAVEDSINCE/SAVEDATESUPPORTED use it."""
    raw = Raw(relentad)
    raw.login("bob@example.test")
    assert b" SAVEDATE" in b"".join(raw.command("c", "CAPABILITY"))
    before = time.time()
    data = message("kept")
    raw.send(b'a APPEND INBOX "01-Jan-2020 10:00:00 +0000" {%d+}\r\n' % len(data) + data + b"\r\n")
    assert raw.until("a")[-1].startswith(b"a OK")
    raw.command("s", "SELECT INBOX")
    fetched = b"".join(raw.command("f", "FETCH 1 (INTERNALDATE SAVEDATE)"))
    assert b'INTERNALDATE "01-Jan-2020 10:00:00 +0000"' in fetched
    saved = re.search(rb'SAVEDATE "([^"]+)"', fetched)
    assert saved is not None
    moment = datetime.strptime(saved.group(1).decode(), "%d-%b-%Y %H:%M:%S %z").timestamp()
    assert before - 1 <= moment <= time.time() + 1
    today = datetime.fromtimestamp(moment, UTC).strftime("%d-%b-%Y")
    assert search(raw, f"SEARCH SAVEDON {today}") == [1]
    assert search(raw, f"SEARCH SAVEDSINCE {today}") == [1]
    assert search(raw, f"SEARCH SAVEDBEFORE {today}") == []
    assert search(raw, f"SEARCH SINCE {today}") == []  # the internal date is 2020
    assert search(raw, "SEARCH BEFORE 02-Jan-2020") == [1]
    assert search(raw, "SEARCH SAVEDATESUPPORTED") == [1]
    assert search(raw, "SEARCH SAVEDBEFORE 02-Jan-2020") == []
    assert raw.command("c", "COPY 1 Archive")[-1].startswith(b"c OK")
    raw.command("s", "SELECT Archive")
    copied = b"".join(raw.command("f", "FETCH 1 (INTERNALDATE SAVEDATE)"))
    assert b'INTERNALDATE "01-Jan-2020 10:00:00 +0000"' in copied  # COPY keeps the internal date
    copy_saved = re.search(rb'SAVEDATE "([^"]+)"', copied)
    assert copy_saved is not None
    assert datetime.strptime(copy_saved.group(1).decode(), "%d-%b-%Y %H:%M:%S %z").timestamp() >= moment
    raw.close()


def test_internal_date_keeps_the_clients_zone(relentad: Daemon) -> None:
    """RFC 3501 §2.3.3/§6.4.4: APPEND's date-time has a zone; FETCH INTERNALDATE gives it back and BEFORE/ON/SINCE
    compare on the date in that zone, through COPY, MOVE and EXPUNGE (the retained copy). It used to be kept as
    UTC only: `+0000`, and the day of the UTC moment. SAVEDATE stays the server's (UTC)."""
    raw = Raw(relentad)
    raw.login("carol@example.test")
    dates = ("01-Jan-2025 23:30:00 -0500", "02-Jan-2025 00:30:00 +0900")  # UTC: 2 Jan 04:30, 1 Jan 15:30
    for date in dates:
        data = message(date)
        raw.send(b'a APPEND INBOX "%s" {%d+}\r\n' % (date.encode(), len(data)) + data + b"\r\n")
        assert raw.until("a")[-1].startswith(b"a OK")
    raw.command("s", "SELECT INBOX")
    assert raw.command("c", "COPY 1:2 Archive")[-1].startswith(b"c OK")
    raw.command("s", "SELECT Archive")
    assert raw.command("m", "MOVE 1:2 Trash")[-1].startswith(b"m OK")
    for folder in ("INBOX", "Trash"):
        raw.command("s", f"SELECT {folder}")
        fetched = b"".join(raw.command("f", "FETCH 1:2 (INTERNALDATE SAVEDATE)"))
        assert [f'INTERNALDATE "{date}"'.encode() in fetched for date in dates] == [True, True], fetched
        assert len(re.findall(rb'SAVEDATE "[^"]+ \+0000"', fetched)) == 2
        assert search(raw, "SEARCH ON 01-Jan-2025") == [1]
        assert search(raw, "SEARCH ON 02-Jan-2025") == [2]
        assert search(raw, "SEARCH BEFORE 02-Jan-2025") == [1]
        assert search(raw, "SEARCH SINCE 02-Jan-2025") == [2]
        assert search(raw, "SEARCH SINCE 03-Jan-2025") == []
        assert search(raw, "SEARCH SAVEDBEFORE 02-Jan-2025") == []
    raw.command("d", "STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    assert raw.command("e", "EXPUNGE")[-1].startswith(b"e OK")
    raw.close()
    kept = relentad.query("SELECT zone FROM expunged WHERE mailbox_name = 'Trash' ORDER BY uid")
    assert [row["zone"] for row in kept] == [-300, 540]
