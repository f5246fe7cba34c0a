"""APPEND over real sockets: flags and date, MULTIAPPEND all-or-nothing, TRYCREATE, APPENDLIMIT, quota, UTF-8
literal8, and the stored copy (byte-identical, structure parsed once)."""

from __future__ import annotations

from collections.abc import Iterator

import imapclient
import pytest

from relentad.store import db
from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import Raw, client, imap_daemon, message


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(
        tmp_path_factory.mktemp("imap-append"), dns_server.nameserver, settings={"limits": {"message_size": 100_000}}
    )
    yield daemon
    daemon.stop()


def test_append_stores_bytes_flags_and_date(relentad: Daemon) -> None:
    body = message("appended")
    with imapclient.IMAPClient(relentad.host, port=relentad.imap_port, ssl=False) as conn:
        conn.login("alice@example.test", PASSWORD)
        reply = conn.append("Drafts", body, flags=[b"\\Draft", b"$Todo"])
        assert b"APPENDUID" in reply
        conn.select_folder("Drafts")
        data = conn.fetch([1], ["FLAGS", "BODY.PEEK[]"])[1]
    assert set(data[b"FLAGS"]) == {b"\\Draft", b"$Todo", b"\\Recent"}  # this session saw it first
    assert data[b"BODY[]"] == body
    assert relentad.messages("alice@example.test", "Drafts") == [body]
    rows = relentad.query("SELECT structure FROM blobs WHERE data = ?", body)
    assert rows[0]["structure"] is not None


def test_multiappend_and_errors(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login("bob@example.test")
    one, two = message("m1"), message("m2")
    raw.send(b"a APPEND INBOX (\\Seen) {%d+}\r\n" % len(one) + one + b" {%d+}\r\n" % len(two) + two + b"\r\n")
    reply = raw.until("a")
    assert reply[-1].startswith(b"a OK [APPENDUID ") and b" 1:2]" in reply[-1]
    assert raw.command("b", "APPEND Nowhere {3+}\r\nabc")[-1].startswith(b"b NO [TRYCREATE]")
    raw.send(b"c APPEND INBOX {200000}\r\n")
    assert raw.line().startswith(b"c NO [TOOBIG]")
    assert b"APPENDLIMIT=100000" in b"".join(raw.command("d", "CAPABILITY"))
    reply = raw.command("e", "STATUS INBOX (MESSAGES APPENDLIMIT)")
    assert reply[0] == b"* STATUS INBOX (MESSAGES 2 APPENDLIMIT 100000)\r\n"


def test_append_over_quota_is_refused(relentad: Daemon) -> None:
    conn = db.connect(relentad.db_path)
    with db.transaction(conn):
        conn.execute("UPDATE accounts SET quota_bytes = 2000 WHERE email = 'carol@example.test'")
    conn.close()
    imap = client(relentad, "carol@example.test")
    assert imap.append("INBOX", None, None, message("small"))[0] == "OK"
    typ, data = imap.append("INBOX", None, None, message("big", "y" * 3000))
    assert typ == "NO" and b"OVERQUOTA" in data[0]
    imap.select("INBOX")
    replies = [imap.copy("1:*", "INBOX") for _ in range(6)]  # doubles each time
    assert replies[0][0] == "OK" and replies[-1][0] == "NO" and b"OVERQUOTA" in replies[-1][1][0]
    imap.logout()


def test_append_to_selected_mailbox_announces_exists(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login("alice@example.test")
    raw.command("s", "SELECT INBOX")
    body = message("self")
    reply = raw.command("a", b"APPEND INBOX {%d+}\r\n" % len(body) + body)
    assert b"* 1 EXISTS\r\n" in reply and reply[-1].startswith(b"a OK")
    utf8 = "Subject: Grüße\r\n\r\nHallo\r\n".encode()
    raw.command("e", "ENABLE UTF8=ACCEPT")
    reply = raw.command("b", b"APPEND INBOX UTF8 (~{%d+}\r\n" % len(utf8) + utf8 + b")")
    assert reply[-1].startswith(b"b OK")


def test_a_message_with_nul_octets_is_kept_and_sent_back_without_them_except_as_binary(relentad: Daemon) -> None:
    """Stored as appended (a literal8, RFC 3516), but BODY[] is a ``{n}`` literal, CHAR8 without NUL (RFC 9051
    §4.3): the NULs come back as 0x80, the size unchanged; BINARY[] has them. They used to go out in BODY[]."""
    raw = Raw(relentad)
    raw.login("carol@example.test")
    data = b"Subject: nul\r\nContent-Transfer-Encoding: binary\r\n\r\nab\0cd\r\n"
    raw.command("c", "CREATE Nul")
    assert raw.command("a", b"APPEND Nul ~{%d+}\r\n" % len(data) + data)[-1].startswith(b"a OK")
    raw.command("s", "SELECT Nul")
    reply = b"".join(raw.command("f", "FETCH 1 (RFC822.SIZE BODY.PEEK[] BINARY.PEEK[1])"))
    assert b"RFC822.SIZE %d " % len(data) in reply
    assert b"BODY[] {%d}\r\n" % len(data) + data.replace(b"\0", b"\x80") in reply
    assert b"BINARY[1] ~{7}\r\nab\0cd\r\n" in reply
    assert relentad.messages("carol@example.test", "Nul") == [data]


def test_oversized_non_synchronizing_literals_are_read_and_refused(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login("bob@example.test")
    big = b"x" * 150_000
    reply = raw.command("a", b"APPEND INBOX {%d+}\r\n" % len(big) + big)
    assert reply[-1].startswith(b"a NO [TOOBIG]")
    part = b"Subject: part\r\n\r\n" + b"y" * 90_000
    multi = b" ".join(b"{%d+}\r\n" % len(part) + part for _ in range(5))
    assert raw.command("b", b"APPEND INBOX " + multi)[-1].startswith(b"b NO [TOOBIG]")
    assert raw.command("c", "NOOP")[-1].startswith(b"c OK")
