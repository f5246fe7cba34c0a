"""CONDSTORE and QRESYNC (RFC 7162) over a raw socket: HIGHESTMODSEQ, CHANGEDSINCE, VANISHED (EARLIER) on
SELECT and UID FETCH, and VANISHED instead of EXPUNGE once QRESYNC is enabled."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.daemon import Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import Raw, client, imap_daemon, message


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-condstore"), dns_server.nameserver)
    conn = client(daemon)
    for n in range(5):
        conn.append("INBOX", None, None, message(f"m{n}"))
    conn.logout()
    yield daemon
    daemon.stop()


def number(pattern: bytes, lines: list[bytes]) -> int:
    match = re.search(pattern, b"".join(lines))
    assert match, lines
    return int(match.group(1))


def test_qresync_resynchronisation(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("e", "ENABLE QRESYNC")
    reply = raw.command("a", "SELECT INBOX (CONDSTORE)")
    uidvalidity = number(rb"UIDVALIDITY (\d+)", reply)
    modseq = number(rb"HIGHESTMODSEQ (\d+)", reply)
    other = client(relentad)
    other.select("INBOX")
    other.store("2", "+FLAGS", "(\\Seen)")
    other.store("4", "+FLAGS", "(\\Deleted)")
    other.expunge()
    other.logout()
    # This session hears of it as VANISHED, not EXPUNGE.
    text = b"".join(raw.command("n", "NOOP"))
    assert b"* VANISHED 4\r\n" in text and b"EXPUNGE" not in text
    raw.command("u", "UNSELECT")
    reply = raw.command("b", f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:5))")
    text = b"".join(reply)
    assert b"* VANISHED (EARLIER) 4\r\n" in text
    assert re.search(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)", text), text
    assert reply[-1].startswith(b"b OK [READ-WRITE]")
    reply = raw.command("c", f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    text = b"".join(reply)
    assert b"* VANISHED (EARLIER) 4\r\n" in text and b"UID 2 " in text and b"UID 1 " not in text


def test_status_highestmodseq_grows(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    before = number(rb"HIGHESTMODSEQ (\d+)", raw.command("a", "STATUS INBOX (HIGHESTMODSEQ)"))
    raw.command("s", "SELECT INBOX")
    raw.command("b", "STORE 1 +FLAGS (\\Answered)")
    after = number(rb"HIGHESTMODSEQ (\d+)", raw.command("c", "STATUS INBOX (HIGHESTMODSEQ)"))
    assert after > before
    assert raw.command("d", "SELECT INBOX (QRESYNC (1 1))")[-1].startswith(b"d BAD")


def test_vanished_earlier_of_the_saved_search_result(relentad: Daemon) -> None:
    """UID FETCH $ ... (CHANGEDSINCE m VANISHED): `$` (RFC 5182) reports the saved UIDs expunged since m. It used to
    answer NO [SERVERBUG]: the unresolved `$` reached the VANISHED filter."""
    raw = Raw(relentad)
    raw.login()
    raw.command("c", "CREATE Saved")
    for n in range(3):
        data = message(f"s{n}")
        raw.send(b"a%d APPEND Saved {%d+}\r\n" % (n, len(data)) + data + b"\r\n")
        assert raw.until(f"a{n}")[-1].startswith(f"a{n} OK".encode())
    raw.command("e", "ENABLE QRESYNC")
    modseq = number(rb"HIGHESTMODSEQ (\d+)", raw.command("s", "SELECT Saved"))
    assert raw.command("f", "SEARCH RETURN (SAVE) 1:2")[-1].startswith(b"f OK")
    raw.command("d", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    raw.command("x", "EXPUNGE")
    reply = raw.command("g", f"UID FETCH $ (FLAGS) (CHANGEDSINCE {modseq - 1} VANISHED)")
    assert reply[-1].startswith(b"g OK"), reply
    assert reply[0] == b"* VANISHED (EARLIER) 2\r\n"
    assert not any(b"UID 3 " in line for line in reply)  # changed since m, but not in $
    raw.close()
