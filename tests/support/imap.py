"""Helpers for the IMAP end-to-end tests: a running daemon with IMAP listeners and logged-in clients.

`imap_daemon` starts a provisioned relentad with 143-style and 993-style ports on loopback (plaintext logins
allowed from loopback unless the test says otherwise). Clients are the real ones: imaplib, imapclient, aioimaplib.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from pathlib import Path
from typing import Any

from tests.support.daemon import PASSWORD, Daemon

ALICE = "alice@example.test"
BOB = "bob@example.test"


def message(
    subject: str = "hello", body: str = "Hi there.\r\n", sender: str = "Friend <friend@elsewhere.test>", **extra: str
) -> bytes:
    headers = [
        f"From: {sender}",
        "To: Alice <alice@example.test>",
        f"Subject: {subject}",
        f"Message-ID: <{subject.replace(' ', '.')}@elsewhere.test>",
        "Date: Wed, 25 Nov 2026 08:00:00 +0000",
        *(f"{name.replace('_', '-')}: {value}" for name, value in extra.items()),
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def imap_daemon(
    root: Path,
    nameserver: str,
    *,
    plaintext: bool = True,
    settings: dict[str, dict[str, Any]] | None = None,
    submission: bool = False,
) -> Daemon:
    """A provisioned, started daemon with IMAP (and ``submission``) on loopback (domain example.test, users alice,
    bob, carol)."""
    merged: dict[str, dict[str, Any]] = {
        "auth": {"plaintext_loopback": plaintext},
        "dns": {"nameservers": [nameserver]},
        "mailauth": {"verify": False},
    }
    for section, values in (settings or {}).items():
        merged.setdefault(section, {}).update(values)
    daemon = Daemon(root, imap=True, submission=submission, settings=merged)
    daemon.add_domain("example.test")
    for user in ("alice", "bob", "carol"):
        daemon.add_user(f"{user}@example.test")
    return daemon.start()


def client(daemon: Daemon, user: str = ALICE) -> imaplib.IMAP4:
    conn = imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=15)
    conn.login(user, PASSWORD)
    return conn


def tls_client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Raw:
    """A line-level IMAP client for what libraries hide: exact replies, literals, pipelining, garbage."""

    def __init__(self, daemon: Daemon, port: int | None = None) -> None:
        self.sock = socket.create_connection((daemon.host, port or daemon.imap_port), timeout=15)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def command(self, tag: str, text: bytes | str) -> list[bytes]:
        """Send `tag text` and return every line up to and including the tagged reply."""
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            if not line:
                raise ConnectionError("server closed the connection")
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines

    def login(self, user: str = ALICE) -> None:
        reply = self.command("L1", f'LOGIN {user} "{PASSWORD}"')
        assert reply[-1].startswith(b"L1 OK"), reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()
