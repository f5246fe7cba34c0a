"""IDLE and the change bus: an idling client hears of SMTP deliveries, and several sessions on one mailbox see
each other's appends, flag changes and expunges (aioimaplib and raw sockets)."""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import aioimaplib
import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import Raw, client, imap_daemon, message


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-idle"), dns_server.nameserver)
    yield daemon
    daemon.stop()


def test_idle_is_woken_by_smtp_delivery(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login("alice@example.test")
    raw.command("s", "SELECT INBOX")
    raw.send(b"i IDLE\r\n")
    assert raw.line().startswith(b"+ ")
    with smtplib.SMTP(relentad.host, relentad.smtp_port, timeout=15) as smtp:
        smtp.sendmail("friend@elsewhere.test", ["alice@example.test"], message("wake up"))
    line = raw.line()
    while line.startswith((b"* FLAGS", b"* OK [PERMANENTFLAGS")):  # delivery may set keywords ($Junk, ...)
        line = raw.line()
    assert line == b"* 1 EXISTS\r\n"
    assert raw.line() == b"* 1 RECENT\r\n"  # this session is the first to see it
    raw.send(b"DONE\r\n")
    assert raw.line().startswith(b"i OK")
    assert b"wake up" in b"".join(raw.command("f", "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]"))


def test_idle_sees_other_sessions_flags_and_expunges(relentad: Daemon) -> None:
    conn = client(relentad, "bob@example.test")
    conn.append("INBOX", None, None, message("one"))
    conn.append("INBOX", None, None, message("two"))
    conn.select("INBOX")
    idler = Raw(relentad)
    idler.login("bob@example.test")
    idler.command("s", "SELECT INBOX")
    idler.send(b"i IDLE\r\n")
    assert idler.line().startswith(b"+ ")
    conn.store("1", "+FLAGS", "(\\Flagged)")
    assert idler.line() == b"* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n"
    conn.append("INBOX", None, None, message("three"))
    assert idler.line() == b"* 3 EXISTS\r\n"
    assert idler.line() in (b"* 0 RECENT\r\n", b"* 1 RECENT\r\n")  # \Recent goes to whichever session looked first
    conn.store("2", "+FLAGS.SILENT", "(\\Deleted)")
    assert idler.line() == b"* 2 FETCH (UID 2 FLAGS (\\Deleted))\r\n"
    conn.expunge()
    assert idler.line() == b"* 2 EXPUNGE\r\n"
    idler.send(b"DONE\r\n")
    assert idler.line().startswith(b"i OK")
    conn.logout()


def test_aioimaplib_idle(relentad: Daemon) -> None:
    async def scenario() -> list[bytes]:
        idler = aioimaplib.IMAP4(host=relentad.host, port=relentad.imap_port, timeout=15)
        await idler.wait_hello_from_server()
        await idler.login("carol@example.test", PASSWORD)
        await idler.select("INBOX")
        idle = await idler.idle_start(timeout=15)
        writer = aioimaplib.IMAP4(host=relentad.host, port=relentad.imap_port, timeout=15)
        await writer.wait_hello_from_server()
        await writer.login("carol@example.test", PASSWORD)
        await writer.append(message("async"), mailbox="INBOX")
        pushed = await idler.wait_server_push(timeout=15)
        idler.idle_done()
        await asyncio.wait_for(idle, 15)
        await writer.logout()
        await idler.logout()
        return [line if isinstance(line, bytes) else line.encode() for line in pushed]

    pushed = asyncio.run(scenario())
    assert b"1 EXISTS" in pushed


def test_idle_done_and_garbage(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login("carol@example.test")
    raw.send(b"i IDLE\r\n")
    assert raw.line().startswith(b"+ ")
    raw.send(b"NOT DONE\r\n")
    assert raw.line().startswith(b"i BAD")
    assert raw.command("n", "NOOP")[-1].startswith(b"n OK")


def _idle(daemon: Daemon, user: str) -> Raw:
    raw = Raw(daemon)
    raw.login(user)
    raw.command("s", "SELECT INBOX")
    raw.send(b"i IDLE\r\n")
    assert raw.line().startswith(b"+ ")
    return raw


def _next_exists(raw: Raw) -> bytes:
    line = raw.line()
    while line.startswith((b"* FLAGS", b"* OK [PERMANENTFLAGS")):
        line = raw.line()
    return line


def test_idle_is_woken_by_other_processes(tmp_path: Path, dns_server: Dnsmasq) -> None:
    """`relentad import` and `relentad announce` write the database from another process: idling sessions hear
    of it (the daemon polls while someone IDLEs), flags and all, and a session that is not idling sees it at its
    next command."""
    daemon = imap_daemon(tmp_path / "mx", dns_server.nameserver)
    try:
        importer, bystander = _idle(daemon, "alice@example.test"), Raw(daemon)
        bystander.login("bob@example.test")
        bystander.command("s", "SELECT INBOX")
        mbox = tmp_path / "old.mbox"
        mbox.write_bytes(b"From friend@elsewhere.test Wed Nov 25 08:00:00 2026\n" + message("imported"))
        started = time.monotonic()
        daemon.cli("import", "alice@example.test", str(mbox))
        assert _next_exists(importer) == b"* 1 EXISTS\r\n"
        assert importer.line() == b"* 1 RECENT\r\n"
        assert time.monotonic() - started < 10
        importer.send(b"DONE\r\n")
        assert importer.line().startswith(b"i OK")
        fetched = b"".join(importer.command("f", "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]"))
        assert b"Subject: imported" in fetched

        announced = _idle(daemon, "carol@example.test")
        body = tmp_path / "notice.txt"
        body.write_text("The server moves on Sunday.\n")
        daemon.cli("announce", "--subject", "Maintenance", "--body-file", str(body))
        assert _next_exists(announced) == b"* 1 EXISTS\r\n"
        announced.send(b"DONE\r\n")
        assert announced.until("i")[-1].startswith(b"i OK")
        assert b"* 1 EXISTS\r\n" in bystander.command("n", "NOOP")  # not idling: told at its next command
        assert b"Maintenance" in b"".join(announced.command("f", "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]"))
        for raw in (importer, announced, bystander):
            raw.close()
    finally:
        daemon.stop()
