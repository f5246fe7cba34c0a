"""The daemon on either event loop ([server] event_loop): uvloop, the default, and the standard library's.

The rest of the suite runs on uvloop; these tests run what touches transports directly (STARTTLS on SMTP and
IMAP, the 421 of a refused or shut-down connection) on both, so the fallback keeps working too.
"""

from __future__ import annotations

import contextlib
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


def tls_greeting(host: str, port: int, sock: socket.socket | None = None) -> bytes:
    """The first line a TLS client gets on an implicit-TLS port (over ``sock`` if given); b"" when the server
    closes before or in the handshake."""
    try:
        with insecure().wrap_socket(sock or socket.create_connection((host, port), timeout=10)) as tls:
            return tls.makefile("rb").readline()
    except (ssl.SSLError, ConnectionError):
        return b""


@pytest.mark.parametrize("event_loop", LOOPS)
def test_implicit_tls_handshakes_count_against_the_per_ip_limit(make_daemon: MakeDaemon, event_loop: str) -> None:
    """A client connecting to 465 or 993 holds a counted slot from accept, TLS handshake included: connections that
    never send a ClientHello cannot pile up past the per-IP limit; a failed or abandoned handshake frees its slot."""
    settings = {
        "server": {"event_loop": event_loop},
        "limits": {"connections_per_ip": 2},
        "imap": {"connections_per_ip": 2},
    }
    daemon = provision(make_daemon(settings=settings, imap=True, submission=True)).start()
    for port, greeting in ((daemon.submissions_port, b"220 "), (daemon.imaps_port, b"* OK ")):
        deadline = time.monotonic() + 5  # earlier connections' slots are given back once the daemon sees them go
        while True:
            silent = [socket.create_connection((daemon.host, port), timeout=10) for _ in range(2)]
            refused = tls_greeting(daemon.host, port) == b""  # the third connection from this IP
            if refused and tls_greeting(daemon.host, port, silent[0]).startswith(greeting):
                break  # ... while the first, silent until now, was held and may go on
            for sock in silent:
                sock.close()
            assert time.monotonic() < deadline, "connections that never start TLS do not count"
            time.sleep(0.1)
        silent[1].sendall(b"EHLO not.a.client.hello\r\n")  # this handshake fails: the server closes
        with contextlib.suppress(ConnectionError):
            while silent[1].recv(4096):  # a TLS alert perhaps, then the close
                pass
        silent[1].close()
        deadline = time.monotonic() + 5
        while not tls_greeting(daemon.host, port).startswith(greeting):
            assert time.monotonic() < deadline, "the slots were not given back within 5 s"
            time.sleep(0.1)
