"""The daemon on either event loop ([server] event_loop): uvloop, the default, and the standard library's.

The rest of the suite runs on uvloop; these tests run what touches transports directly (STARTTLS on SMTP and
IMAP, the 421 of a refused or shut-down connection) on both, so the fallback keeps working too.
"""

from __future__ import annotations

import imaplib
import signal
import smtplib
import socket
import ssl
import time

import pytest

from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import PASSWORD, Daemon, greeted

LOOPS = ["uvloop", "asyncio"]


def insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def on_loop(make_daemon: MakeDaemon, event_loop: str, **limits: int) -> Daemon:
    settings = {"server": {"event_loop": event_loop}, "limits": dict(limits)}
    daemon = provision(make_daemon(settings=settings, imap=True)).start()
    deadline = time.monotonic() + 10  # the ready line follows the listeners
    while f"event loop {event_loop})" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    return daemon


@pytest.mark.parametrize("event_loop", LOOPS)
def test_starttls_delivery_then_imap_starttls_reads_it(make_daemon: MakeDaemon, event_loop: str) -> None:
    daemon = on_loop(make_daemon, event_loop)
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        client.starttls(context=insecure())
        client.sendmail("friend@elsewhere.test", ["alice@example.test"], b"Subject: over TLS\r\n\r\nhello\r\n")
    imap = imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=10)
    imap.starttls(ssl_context=insecure())
    imap.login("alice@example.test", PASSWORD)
    imap.select("INBOX")
    _, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: over TLS" in data[0][1]  # type: ignore[index]
    imap.logout()


@pytest.mark.parametrize("event_loop", LOOPS)
def test_refused_and_shut_down_connections_are_told_421(make_daemon: MakeDaemon, event_loop: str) -> None:
    daemon = on_loop(make_daemon, event_loop, connections_per_ip=1)
    first = greeted(daemon)  # the start-up probe's slot is freed first (it connected and hung up)
    refused = socket.create_connection((daemon.host, daemon.smtp_port), timeout=10)
    assert refused.recv(100).startswith(b"421 4.7.0")
    daemon.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert first.recv(100).startswith(b"421 4.3.2"), "an idle connection is told before it is closed"
    assert daemon.proc is not None and daemon.proc.wait(10) == 0
