"""SEARCH's full-text index on a real daemon: the same TEXT/BODY/HEADER results with the index on and off, mail
delivered just now found, the watermark kept across a restart, and expunge + purge taking a message out of it."""

from __future__ import annotations

import imaplib
import smtplib
import sqlite3
import time
from pathlib import Path

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, Raw, imap_daemon, message

MAILS = [
    message("Rechnung März", "Bitte zahlen Sie die Straße.\r\n"),
    message("meeting", "Let us meet on Thursday.\r\n", sender="Bob <bob@example.test>", X_Tag="blue-ticket"),
    (
        b"From: Shop <news@shop.test>\r\nTo: alice@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"<p>Sch=C3=B6ne <b>Ange</b>bote &amp; KELVIN =E2=84=AA</p>\r\n"
    ),
    (
        b"From: a@elsewhere.test\r\nSubject: attached\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nc2VjcmV0IHBsYW4gaW5zaWRl\r\n"
        b"--b\r\nContent-Type: application/pdf; name=quarterly-report.pdf\r\n\r\n%PDF\r\n--b--\r\n"
    ),
]
SEARCHES = [
    "TEXT|rechnung",
    "TEXT|STRASSE",
    "BODY|straße",
    "BODY|angebote",
    "TEXT|grüße",
    "BODY|kelvin k",
    "BODY|secret plan",
    "TEXT|quarterly-report",
    "TEXT|bob@example",
    "TEXT|delivered-by-smtp",
    "TEXT|sender@elsewhere",
    "HEADER X-Tag|blue-t",
    "BODY|thursday",
    "NOT BODY|thursday",
    "OR BODY plan TEXT|märz",
    "TEXT|zz",
    "TEXT|nothing-like-this",
]


def _deliver(daemon: Daemon, subject: str, body: str) -> None:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as smtp:
        smtp.sendmail("sender@elsewhere.test", ["alice@example.test"], message(subject, body))


def _results(daemon: Daemon) -> dict[str, list[bytes]]:
    """UID SEARCH of each of SEARCHES, what follows "|" sent as a literal (LITERAL+: UTF-8 needles)."""
    client = Raw(daemon)
    client.login()
    client.command("s", "SELECT INBOX")
    found = {}
    for criteria in SEARCHES:
        head, _, needle = criteria.partition("|")
        value = needle.encode()
        reply = client.command("q", b"UID SEARCH CHARSET UTF-8 %s {%d+}\r\n%s" % (head.encode(), len(value), value))
        assert reply[-1].startswith(b"q OK"), (criteria, reply)
        found[criteria] = next(line for line in reply if line.startswith(b"* SEARCH")).split()[2:]
    client.close()
    return found


def _state(path: Path) -> tuple[int, str, int]:
    """(watermark, version, highest blob id)."""
    conn = sqlite3.connect(path)
    try:
        mark, version = conn.execute("SELECT watermark, version FROM search_index_state").fetchone()
        return mark, version, conn.execute("SELECT coalesce(max(id), 0) FROM blobs").fetchone()[0]
    finally:
        conn.close()


def _wait_indexed(daemon: Daemon) -> tuple[int, str, int]:
    deadline = time.monotonic() + 10
    while (state := _state(daemon.db_path))[0] < state[2]:
        assert time.monotonic() < deadline, f"not indexed within 10 s: {state}"
        time.sleep(0.05)
    return state


def _hits(path: Path, table: str, trigram: str) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ?", (f'"{trigram}"',))]
    finally:
        conn.close()


def test_search_with_the_index_answers_as_the_scan(tmp_path: Path, dns_server: Dnsmasq) -> None:
    daemon = imap_daemon(tmp_path / "mx", dns_server.nameserver, settings={"imap": {"search_index": True}})
    try:
        imap = imaplib.IMAP4(daemon.host, daemon.imap_port)
        imap.login(ALICE, PASSWORD)
        for raw in MAILS:
            imap.append("INBOX", None, None, raw)
        imap.logout()
        _deliver(daemon, "via smtp", "delivered-by-smtp\r\n")
        mark, version, _ = _wait_indexed(daemon)
        assert mark > 0 and version
        assert "indexed 5 of 5 message(s)" in daemon.cli("search-index", "status").stdout
        _deliver(daemon, "just now", "Straße, just delivered\r\n")  # above the watermark for a moment, or not
        indexed = _results(daemon)
        assert indexed["BODY|straße"] == [b"1", b"6"] and indexed["TEXT|delivered-by-smtp"] == [b"5"]
        assert indexed["TEXT|sender@elsewhere"] == [b"5", b"6"], "Return-Path: the trace prefix"
        assert indexed["TEXT|quarterly-report"] == [b"4"] and indexed["HEADER X-Tag|blue-t"] == [b"2"]
        assert indexed["TEXT|zz"] == [] and indexed["NOT BODY|thursday"] == [b"1", b"3", b"4", b"5", b"6"]

        daemon.stop()
        before = _state(daemon.db_path)
        daemon.write_config(**{**daemon._extra, "imap": {"search_index": False}})
        daemon.start()
        assert _results(daemon) == indexed, "the index changes no result"
        assert "search index off" in daemon.cli("search-index", "status").stdout
        daemon.stop()

        daemon.write_config(**{**daemon._extra, "imap": {"search_index": True}})
        daemon.start()
        after = _wait_indexed(daemon)
        assert after[1] == before[1] and after[0] >= before[0] > 0, "the restart went on from the watermark"

        imap = imaplib.IMAP4(daemon.host, daemon.imap_port)
        imap.login(ALICE, PASSWORD)
        imap.select("INBOX")
        blob = _hits(daemon.db_path, "search_body", "cre")  # "secret plan": message 4 only
        assert len(blob) == 1
        imap.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
        imap.expunge()
        imap.logout()
        assert _hits(daemon.db_path, "search_body", "cre") == blob, "expunged mail stays for retention"
        daemon.cli("purge", "--at", str(time.time() + 400 * 86400))
        assert _hits(daemon.db_path, "search_body", "cre") == [] and _hits(daemon.db_path, "search_head", "rly") == []
        assert _results(daemon)["BODY|secret plan"] == []
    finally:
        daemon.stop()


def test_a_damaged_index_is_not_trusted_and_is_rebuilt(tmp_path: Path, dns_server: Dnsmasq) -> None:
    """An index whose pages are damaged (SQLite: "database disk image is malformed") must not make SEARCH fail:
    the search is answered by the scan, and the index is emptied and rebuilt in the background."""
    daemon = imap_daemon(tmp_path / "mx", dns_server.nameserver, settings={"imap": {"search_index": True}})
    try:
        imap = imaplib.IMAP4(daemon.host, daemon.imap_port)
        imap.login(ALICE, PASSWORD)
        for n in range(30):
            imap.append("INBOX", None, None, message(f"note {n}", f"hello world number {n}\r\n"))
        imap.select("INBOX")
        _wait_indexed(daemon)
        conn = sqlite3.connect(daemon.db_path)
        with conn:
            for table in ("search_head", "search_body"):
                conn.execute(f"UPDATE {table}_data SET block = randomblob(length(block)) WHERE id > 10")
        conn.close()
        typ, data = imap.uid("SEARCH", "BODY", "world")
        assert typ == "OK" and len(data[0].split()) == 30, data
        typ, data = imap.uid("SEARCH", "TEXT", '"number 7"')
        assert typ == "OK" and data == [b"8"], data
        deadline = time.monotonic() + 10
        while True:  # rebuilt: every message indexed again, and the index answers
            conn = sqlite3.connect(daemon.db_path)
            try:
                mark, _, top = _state(daemon.db_path)
                healthy = mark == top
                if healthy:
                    for table in ("search_head", "search_body"):
                        conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 0)")
            except sqlite3.DatabaseError:
                healthy = False
            finally:
                conn.close()
            if healthy:
                break
            assert time.monotonic() < deadline, "the index was not rebuilt"
            time.sleep(0.1)
        assert imap.uid("SEARCH", "BODY", '"number 12"')[1] == [b"13"]
        imap.logout()
    finally:
        daemon.stop()
