"""REPLACE and UID REPLACE (RFC 8508) against the real daemon: the draft replaced in place and into another
mailbox (APPENDUID, EXPUNGE or VANISHED, EXISTS), the old version kept in retention, and the refusals — a bad
message number, a UID not there, EXAMINE, a missing mailbox (NO [TRYCREATE]), APPENDLIMIT and the quota (counting
the message it frees), each leaving the old message where it was."""

from __future__ import annotations

import re
from collections.abc import Iterator

import imapclient
import pytest

from relentad.store import db
from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, BOB, Raw, imap_daemon


def draft(text: str, pad: int = 0) -> bytes:
    return f"From: {ALICE}\r\nSubject: draft\r\n\r\n{text}{'x' * pad}\r\n".encode()


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(
        tmp_path_factory.mktemp("imap-replace"), dns_server.nameserver, settings={"limits": {"message_size": 50_000}}
    )
    yield daemon
    daemon.stop()


def literal(tag: str, command: str, body: bytes) -> bytes:
    """A command ending in a LITERAL+ message."""
    return f"{tag} {command} {{{len(body)}+}}\r\n".encode() + body + b"\r\n"


def run(raw: Raw, tag: str, command: str, body: bytes) -> list[bytes]:
    raw.send(literal(tag, command, body))
    return raw.until(tag)


def test_replace_in_place_and_into_another_mailbox(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    for text in ("one", "two"):
        assert run(raw, "a", "APPEND Drafts (\\Draft)", draft(text))[-1].startswith(b"a OK")
    raw.command("s", "SELECT Drafts")
    raw.send(literal("r", "REPLACE 1 Drafts (\\Draft \\Seen)", draft("one, edited")))
    reply = raw.until("r")
    assert re.fullmatch(rb"\* OK \[APPENDUID \d+ 3\] replacement message ready\r\n", reply[0])
    assert b"* 1 EXPUNGE\r\n" in reply and reply[-1] == b"r OK REPLACE completed\r\n"
    assert reply.index(b"* 1 EXPUNGE\r\n") > 0
    assert b"* 2 EXISTS\r\n" in reply, "the new version is announced in the selected mailbox"
    fetched = b"".join(raw.command("f", "UID FETCH 1:* (UID FLAGS BODY.PEEK[TEXT])"))
    assert b"UID 2 " in fetched and b"UID 3 " in fetched and b"UID 1 " not in fetched
    assert b"one, edited" in fetched and b"\\Seen" in fetched
    raw.send(literal("u", "UID REPLACE 3 Sent", draft("sent version")))
    reply = raw.until("u")
    assert reply[0].startswith(b"* OK [APPENDUID ") and b" 1]" in reply[0]
    assert b"* 2 EXPUNGE\r\n" in reply and reply[-1].startswith(b"u OK")
    assert relentad.messages(ALICE, "Sent") == [draft("sent version")]
    assert relentad.messages(ALICE, "Drafts") == [draft("two")]
    kept = relentad.query("SELECT count(*) AS n FROM expunged WHERE mailbox_name = 'Drafts'")
    assert kept[0]["n"] == 2, "the replaced versions are in retention like any expunged message"
    raw.command("q", "ENABLE QRESYNC")
    raw.send(literal("v", "REPLACE * Drafts", draft("two, edited")))
    reply = raw.until("v")
    assert b"* VANISHED 2\r\n" in reply and reply[-1].startswith(b"v OK")
    raw.close()


def test_replace_errors_leave_the_message(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login(BOB)
    assert run(raw, "a", "APPEND Drafts", draft("keep"))[-1].startswith(b"a OK")
    assert run(raw, "n", "REPLACE 1 Drafts", draft("x"))[-1].startswith(b"n BAD"), "no mailbox selected"
    raw.command("s", "SELECT Drafts")
    raw.send(literal("b", "REPLACE 5 Drafts", draft("x")))
    assert raw.until("b")[-1].startswith(b"b BAD")
    raw.send(literal("c", "UID REPLACE 99 Drafts", draft("x")))
    assert raw.until("c")[-1].startswith(b"c NO")
    raw.send(literal("d", "REPLACE 1 Nowhere", draft("x")))
    assert raw.until("d")[-1].startswith(b"d NO [TRYCREATE]")
    raw.send(b"e REPLACE 1 Drafts {60000}\r\n")
    assert raw.line().startswith(b"e NO [TOOBIG]"), "refused before the literal is sent"
    raw.send(literal("f", "REPLACE 1 Drafts", b""))
    assert raw.until("f")[-1].startswith(b"f NO")
    assert raw.command("g", "REPLACE 0 Drafts {1+}\r\nx")[-1].startswith(b"g BAD")
    assert raw.command("h", "REPLACE 1 Drafts")[-1].startswith(b"h BAD")
    raw.command("x", "EXAMINE Drafts")
    raw.send(literal("i", "REPLACE 1 Drafts", draft("x")))
    assert raw.until("i")[-1].startswith(b"i NO [READ-ONLY]")
    raw.close()
    assert relentad.messages(BOB, "Drafts") == [draft("keep")]


def test_replace_counts_the_freed_message_against_the_quota(relentad: Daemon) -> None:
    carol = "carol@example.test"
    with imapclient.IMAPClient(relentad.host, port=relentad.imap_port, ssl=False, timeout=15) as conn:
        conn.login(carol, PASSWORD)
        conn.append("Drafts", draft("v1", pad=3000))
    conn_db = db.connect(relentad.db_path)
    used = conn_db.execute("SELECT used_bytes FROM accounts WHERE email = ?", (carol,)).fetchone()[0]
    with db.transaction(conn_db):
        conn_db.execute("UPDATE accounts SET quota_bytes = ? WHERE email = ?", (used + 500, carol))
    conn_db.close()
    raw = Raw(relentad)
    raw.login(carol)
    raw.command("s", "SELECT Drafts")
    bigger = draft("v2", pad=3300)  # fits only once the old version is gone
    raw.send(f"a REPLACE 1 Drafts {{{len(bigger)}}}\r\n".encode())
    assert raw.line().startswith(b"+"), "not refused early: the replaced message frees its octets"
    raw.send(bigger + b"\r\n")
    assert raw.until("a")[-1].startswith(b"a OK")
    too_big = draft("v3", pad=5000)
    raw.send(f"b REPLACE 1 Drafts {{{len(too_big)}}}\r\n".encode())
    assert raw.line().startswith(b"b NO [OVERQUOTA]"), "refused before the synchronizing literal"
    raw.send(literal("c", "REPLACE 1 Drafts", too_big))  # LITERAL+: read and dropped, then refused
    assert raw.until("c")[-1].startswith(b"c NO [OVERQUOTA]")
    raw.close()
    assert relentad.messages(carol, "Drafts") == [bigger]


def test_replace_of_a_message_another_session_expunged(relentad: Daemon) -> None:
    first, second = Raw(relentad), Raw(relentad)
    for raw in (first, second):
        raw.login(ALICE)
    assert run(first, "a", "APPEND Archive", draft("old"))[-1].startswith(b"a OK")
    first.command("s", "SELECT Archive")
    second.command("s", "SELECT Archive")
    assert second.command("x", "STORE 1 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"x OK")
    assert second.command("y", "EXPUNGE")[-1].startswith(b"y OK")
    reply = run(first, "r", "REPLACE 1 Archive", draft("new"))
    assert reply[-1].startswith(b"r NO [EXPUNGEISSUED]"), reply
    assert relentad.messages(ALICE, "Archive") == []
    transcript = run(second, "t", "APPEND Archive", draft("kept"))
    assert transcript[-1].startswith(b"t OK")
    reply = run(second, "u", "REPLACE 1 Archive", draft("kept, edited"))
    assert [line for line in reply if line.startswith(b"* ") and not line.startswith(b"* OK")] == [
        b"* 1 EXPUNGE\r\n",
        b"* 1 EXISTS\r\n",
        b"* 1 RECENT\r\n",
    ], "one EXPUNGE for the old version, one EXISTS for the new (recent for this IMAP4rev1 session)"
    for raw in (first, second):
        raw.close()
