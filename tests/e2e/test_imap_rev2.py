"""IMAP4rev2 (RFC 9051) and UTF8=ACCEPT behaviour once enabled: UTF-8 mailbox names, ESEARCH for SEARCH, no
RECENT, a LIST reply in SELECT; modified UTF-7 names for rev1 clients; BINARY and UNKNOWN-CTE."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.daemon import Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import Raw, client, imap_daemon, message

ODD_ENCODING = (
    b"Subject: odd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
    b"--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 f\r\n"
    b"--x--\r\n"
)


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-rev2"), dns_server.nameserver)
    conn = client(daemon)
    conn.append("INBOX", None, None, message("first"))
    conn.append("INBOX", "(\\Seen)", None, message("second"))
    conn.append("INBOX", None, None, ODD_ENCODING)
    conn.logout()
    yield daemon
    daemon.stop()


def test_rev2_session(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    assert raw.command("e", "ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2\r\n"
    reply = b"".join(raw.command("a", "SELECT INBOX"))
    assert b"RECENT" not in reply and b'* LIST () "/" INBOX\r\n' in reply and b"[UNSEEN" not in reply
    assert raw.command("b", "SEARCH UNSEEN")[0] == b'* ESEARCH (TAG "b") ALL 1,3\r\n'
    assert raw.command("c", 'CREATE "Größe"')[-1].startswith(b"c OK")
    assert '"/" "Größe"\r\n'.encode() in b"".join(raw.command("d", 'LIST "" G*'))
    assert raw.command("f", 'STATUS "Größe" (MESSAGES SIZE)')[0] == '* STATUS "Größe" (MESSAGES 0 SIZE 0)\r\n'.encode()


def test_rev1_client_sees_modified_utf7(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("a", "CREATE Caf&AOk-")
    assert b'"/" Caf&AOk-\r\n' in b"".join(raw.command("b", 'LIST "" Caf*'))
    reply = raw.command("c", 'LIST "" "*" RETURN (CHILDREN SUBSCRIBED SPECIAL-USE)')
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" Caf&AOk-\r\n' in reply


def test_binary_of_an_unknown_encoding(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("s", "EXAMINE INBOX")
    assert raw.command("a", "FETCH 3 BINARY.PEEK[1]")[-1].startswith(b"a NO [UNKNOWN-CTE]")
    reply = b"".join(raw.command("b", "FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])"))
    assert b"BINARY[1] {11}\r\nHi there.\r\n" in reply and b"BINARY.SIZE[1] 11" in reply
