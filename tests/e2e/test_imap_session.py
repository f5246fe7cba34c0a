"""IMAP connection-level behaviour over real sockets: greeting, CAPABILITY, TLS, logins, limits, COMPRESS."""

from __future__ import annotations

import base64
import imaplib
import socket
import ssl
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, Raw, client, imap_daemon, tls_client_context


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-session"), dns_server.nameserver)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    """A daemon that refuses plaintext logins even from loopback, and allows 3 connections per IP."""
    daemon = imap_daemon(
        tmp_path_factory.mktemp("imap-strict"),
        dns_server.nameserver,
        plaintext=False,
        settings={"imap": {"connections_per_ip": 3}},
    )
    yield daemon
    daemon.stop()


def test_greeting_and_capabilities(relentad: Daemon) -> None:
    raw = Raw(relentad)
    assert raw.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    caps = raw.command("a", "CAPABILITY")[0].split()
    for cap in (b"IMAP4rev2", b"IDLE", b"UIDPLUS", b"MOVE", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"STARTTLS"):
        assert cap in caps
    assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps
    assert raw.command("b", "NOOP")[-1].startswith(b"b OK")
    reply = raw.command("c", "LOGOUT")
    assert reply[0].startswith(b"* BYE") and reply[-1].startswith(b"c OK")
    assert raw.line() == b""


def test_login_disabled_without_tls_then_starttls(strict: Daemon) -> None:
    raw = Raw(strict)
    caps = raw.command("a", "CAPABILITY")[0].split()
    assert b"LOGINDISABLED" in caps and b"AUTH=PLAIN" not in caps
    reply = raw.command("b", f'LOGIN {ALICE} "{PASSWORD}"')
    assert reply[-1].startswith(b"b NO [PRIVACYREQUIRED]")
    raw.close()
    conn = imaplib.IMAP4(strict.host, strict.imap_port, timeout=15)
    conn.starttls(tls_client_context())
    assert "AUTH=PLAIN" in conn.capabilities and "STARTTLS" not in conn.capabilities
    assert conn.login(ALICE, PASSWORD)[0] == "OK"
    conn.logout()


def test_plaintext_pipelined_after_starttls_is_never_run(strict: Daemon) -> None:
    """RFC 9051 §6.2.1 (CVE-2011-0411): commands sent in plaintext behind STARTTLS, here more than one read's
    worth, are dropped; none of them runs once TLS is up. The NOOPs before it outrun `[imap] commands_per_second`'s
    burst (2 x 1000), so the server reaches STARTTLS only after everything sent has arrived."""
    raw = Raw(strict)
    raw.send(b"p NOOP\r\n" * 2_200 + b"a STARTTLS\r\n" + b"x NOOP\r\n" * 10_000 + b"b CAPABILITY\r\n")
    assert raw.until("a")[-1] == b"a OK begin TLS negotiation now\r\n"
    secure = tls_client_context().wrap_socket(raw.sock, server_hostname="mx.example.test")
    secure.sendall(b"z NOOP\r\n")
    reply = secure.makefile("rb").readline()
    assert reply == b"z OK NOOP completed\r\n"
    secure.close()


def test_implicit_tls_port(strict: Daemon) -> None:
    conn = imaplib.IMAP4_SSL(strict.host, strict.imaps_port, ssl_context=tls_client_context(), timeout=15)
    assert "STARTTLS" not in conn.capabilities
    assert conn.login(ALICE, PASSWORD)[0] == "OK"
    assert conn.select("INBOX")[0] == "OK"
    conn.logout()


def test_wrong_password_is_refused_and_recorded(relentad: Daemon) -> None:
    conn = imaplib.IMAP4(relentad.host, relentad.imap_port, timeout=15)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        conn.login(ALICE, "not the password")
    assert conn.login(ALICE, PASSWORD)[0] == "OK"
    conn.logout()
    rows = relentad.query("SELECT protocol, result FROM login_history WHERE login = ? ORDER BY id", ALICE)
    results = [(r["protocol"], r["result"]) for r in rows]
    assert ("imap", "failure") in results and ("imap", "success") in results


def test_authenticate_plain_with_and_without_initial_response(relentad: Daemon) -> None:
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    raw = Raw(relentad)
    assert raw.command("a", f"AUTHENTICATE PLAIN {token}")[-1].startswith(b"a OK [CAPABILITY ")
    raw.close()
    raw = Raw(relentad)
    raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert raw.line().startswith(b"+")
    raw.send(token.encode() + b"\r\n")
    assert raw.until("a")[-1].startswith(b"a OK")
    raw.close()
    conn = imaplib.IMAP4(relentad.host, relentad.imap_port, timeout=15)
    assert conn.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{PASSWORD}".encode())[0] == "OK"
    conn.logout()


def test_commands_need_the_right_state(relentad: Daemon) -> None:
    raw = Raw(relentad)
    assert raw.command("a", "SELECT INBOX")[-1].startswith(b"a BAD")
    raw.login()
    assert raw.command("b", "FETCH 1 FLAGS")[-1].startswith(b"b BAD")
    assert raw.command("c", "SELECT nosuchbox")[-1].startswith(b"c NO [NONEXISTENT]")
    assert raw.command("d", "LOGIN x y")[-1].startswith(b"d BAD")


def test_id_enable_namespace(relentad: Daemon) -> None:
    raw = Raw(relentad)
    reply = raw.command("a", 'ID ("name" "pytest")')
    assert reply[0].startswith(b'* ID ("name" "relentad"')
    raw.login()
    assert raw.command("b", "ENABLE CONDSTORE QRESYNC FOO")[0] == b"* ENABLED CONDSTORE QRESYNC\r\n"
    assert raw.command("c", "NAMESPACE")[0] == b'* NAMESPACE (("" "/")) (("Shared/" "/")) NIL\r\n'


def test_syntax_errors_are_bad_and_too_many_end_in_bye(relentad: Daemon) -> None:
    raw = Raw(relentad)
    reply = raw.command("a", "FROB")
    assert reply[-1].startswith(b"a BAD") and b"unknown command" in reply[-1]
    assert raw.command("b", "NOOP")[-1].startswith(b"b OK")
    for n in range(9):
        raw.command(f"x{n}", "LOGIN")
    raw.send(b"last LOGIN\r\n")
    lines = []
    while line := raw.line():
        lines.append(line)
    assert lines[-1].startswith(b"* BYE")


def test_overlong_line_ends_the_connection(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.send(b"a NOOP " + b"x" * 70_000 + b"\r\n")
    line = raw.line()
    assert line.startswith(b"* BYE")


def test_overlong_line_inside_a_command_ends_the_connection_too(relentad: Daemon) -> None:
    """Lines a command reads itself (AUTHENTICATE's answer, IDLE's DONE) have the same limit and the same BYE, not
    an internal error (NO [SERVERBUG] and a traceback in the log)."""
    raw = Raw(relentad)
    raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert raw.line() == b"+ \r\n"
    raw.send(b"A" * 70_000)
    assert raw.line() == b"* BYE command line longer than 65536 octets\r\n"
    assert raw.line() == b""
    raw = Raw(relentad)
    raw.login()
    raw.send(b"i IDLE\r\n")
    assert raw.line().startswith(b"+ ")
    raw.send(b"D" * 70_000)
    assert raw.line() == b"* BYE command line longer than 65536 octets\r\n"
    assert raw.line() == b""
    assert "AUTHENTICATE failed" not in relentad.log() and "IDLE failed" not in relentad.log()


def test_line_length_bounds_a_whole_command_across_its_literals(relentad: Daemon) -> None:
    """A command that chains empty literals (or long lines between literals) is one command line, literals
    excluded: past `[imap] line_length` (65,536) it ends in BYE instead of growing in memory for ever."""
    raw = Raw(relentad)
    raw.send(b"a NOOP {0+}\r\n" + b"{0+}\r\n" * 11_000)  # 66,000 octets of command text
    assert raw.line() == b"* BYE command line longer than 65536 octets\r\n"
    raw = Raw(relentad)
    raw.send(b"b SEARCH TEXT {1+}\r\nx TEXT {1+}\r\ny\r\n")  # a legitimate command with literals still works
    assert raw.until("b")[-1].startswith(b"b BAD")  # not authenticated: SEARCH is not allowed, but it was read whole
    assert raw.command("c", "NOOP")[-1] == b"c OK NOOP completed\r\n"


def test_oversized_literal_is_refused_before_it_is_sent(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.send(b"a APPEND INBOX {60000000}\r\n")
    assert raw.line().startswith(b"a NO [TOOBIG]")
    assert raw.command("b", "NOOP")[-1].startswith(b"b OK")
    raw.send(b"c APPEND INBOX {70000000+}\r\n" + b"x" * 10)
    raw.sock.close()


def test_literal_plus_needs_no_continuation(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    body = b"Subject: lp\r\n\r\nx\r\n"
    raw.send(b"a APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
    assert raw.until("a")[-1].startswith(b"a OK [APPENDUID ")


def test_compress_deflate(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    assert raw.command("b", "COMPRESS DEFLATE")[-1].startswith(b"b OK")
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    inflate = zlib.decompressobj(-15)
    raw.send(deflate.compress(b'c LIST "" *\r\n') + deflate.flush(zlib.Z_SYNC_FLUSH))
    received = b""
    while b"c OK" not in received:
        chunk = raw.sock.recv(65536)
        assert chunk
        received += inflate.decompress(chunk)
    assert b'* LIST (\\HasNoChildren) "/" INBOX' in received
    raw.send(deflate.compress(b"d COMPRESS DEFLATE\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
    while b"d NO" not in received:
        received += inflate.decompress(raw.sock.recv(65536))
    assert b"d NO [COMPRESSIONACTIVE]" in received
    raw.close()


def test_imapclient_and_ssl_errors_do_not_kill_the_listener(relentad: Daemon) -> None:
    with socket.create_connection((relentad.host, relentad.imaps_port), timeout=15) as sock:
        sock.sendall(b"this is not TLS\r\n")
        sock.recv(100)
    import imapclient

    with imapclient.IMAPClient(relentad.host, port=relentad.imaps_port, ssl_context=tls_client_context()) as conn:
        conn.login(ALICE, PASSWORD)
        assert conn.select_folder("INBOX")[b"UIDVALIDITY"]
    assert client(relentad).logout()[0] == "BYE"


def test_session_survives_an_internal_error(relentad: Daemon, tmp_path: Path) -> None:
    raw = Raw(relentad)
    raw.login()
    assert raw.command("a", "SELECT INBOX")[-1].startswith(b"a OK")
    # A quota root nobody has: a clean NO, and the session goes on.
    assert raw.command("b", 'GETQUOTA "nope"')[-1].startswith(b"b NO")
    assert raw.command("c", "NOOP")[-1].startswith(b"c OK")
    ssl.create_default_context()


def test_connections_per_ip_limit(strict: Daemon) -> None:
    first = [Raw(strict) for _ in range(3)]
    assert all(raw.greeting.startswith(b"* OK") for raw in first)
    refused = Raw(strict)
    assert refused.greeting.startswith(b"* BYE")
    first[0].command("a", "LOGOUT")
    first[0].close()
    for raw in first[1:]:
        raw.close()


def test_max_connections_limits_all_addresses_together(tmp_path: Path, dns_server: Dnsmasq) -> None:
    """`[imap] max_connections` counts connections from every address: past it 143 says BYE and 993 closes (the
    client expects a handshake); a closed connection frees its place."""
    daemon = imap_daemon(tmp_path / "busy", dns_server.nameserver, settings={"imap": {"max_connections": 2}})

    def connect(source: str, port: int) -> socket.socket:
        return socket.create_connection((daemon.host, port), timeout=15, source_address=(source, 0))

    def greeting(sock: socket.socket) -> bytes:
        return sock.makefile("rb").readline()

    try:
        deadline = time.monotonic() + 5  # the start-up probes' places are given back once the daemon sees them go
        while True:
            held = [connect("127.0.0.2", daemon.imap_port), connect("127.0.0.3", daemon.imap_port)]
            if all(greeting(sock).startswith(b"* OK") for sock in held):
                break
            for sock in held:
                sock.close()
            assert time.monotonic() < deadline, "no place within 5 s"
            time.sleep(0.1)
        assert (
            greeting(connect("127.0.0.4", daemon.imap_port))
            == b"* BYE server busy: too many connections, try again later\r\n"
        )
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_client_context().wrap_socket(connect("127.0.0.5", daemon.imaps_port))
        held[0].close()
        deadline = time.monotonic() + 5
        while not greeting(connect("127.0.0.6", daemon.imap_port)).startswith(b"* OK"):
            assert time.monotonic() < deadline, "the closed connection's place was not given back"
            time.sleep(0.1)
        held[1].close()
    finally:
        daemon.stop()


def test_sigterm_says_bye_to_imap_clients(tmp_path: Path, dns_server: Dnsmasq) -> None:
    daemon = imap_daemon(tmp_path / "bye", dns_server.nameserver)
    try:
        raw = Raw(daemon)
        raw.login()
        raw.command("s", "SELECT INBOX")
        raw.send(b"i IDLE\r\n")
        assert raw.line().startswith(b"+ ")
        assert daemon.stop() == 0
        assert raw.line().startswith(b"* BYE")
    finally:
        daemon.stop()


def test_login_timeout_counts_from_connecting_whatever_the_client_sends(tmp_path: Path, dns_server: Dnsmasq) -> None:
    """`[imap] login_timeout` is the time to log in, not an idle timer: NOOPs do not extend it, and a client that
    never answers AUTHENTICATE's "+" is told BYE too (it waited for ever). Logged in, the autologout applies."""
    daemon = imap_daemon(tmp_path / "login", dns_server.nameserver, settings={"imap": {"login_timeout": 2}})
    try:
        chatty = Raw(daemon)
        deadline = time.monotonic() + 10
        reply = b""
        while not reply.startswith(b"* BYE"):
            assert time.monotonic() < deadline, "NOOPs kept a client that never logs in"
            time.sleep(0.25)
            chatty.send(b"n NOOP\r\n")
            reply = chatty.line()
        assert reply == b"* BYE login timeout: not logged in in time\r\n"
        silent = Raw(daemon)
        silent.send(b"a AUTHENTICATE PLAIN\r\n")
        assert silent.line() == b"+ \r\n"
        assert silent.line() == b"* BYE login timeout: not logged in in time\r\n"
        assert silent.line() == b""
        user = Raw(daemon)
        user.login()
        time.sleep(2.5)
        assert user.command("c", "NOOP")[-1] == b"c OK NOOP completed\r\n"
    finally:
        daemon.stop()


NASTY = [
    b"a" * 200 + b" NOOP",
    b"a FETCH 1:* (BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20]<0.99999999999999999999>)",
    b"a SEARCH " + b"(" * 500 + b"ALL" + b")" * 500,
    b"a SEARCH " + b"NOT " * 5000 + b"ALL",
    b"a LOGIN \x00\xff\xfe \x80",
    b"a STATUS INBOX (" + b"MESSAGES " * 1000 + b")",
    b'a LIST "" "' + b"%*" * 2000 + b'"',
    b"a UID FETCH 4294967296 FLAGS",
    b"a APPEND INBOX {99999999999999999999}",
    b"a ID (" + b'"k" "v" ' * 100 + b")",
    b"* NOOP",
    b"a NOOP extra",
    b")",
    b"",
]


def test_garbage_never_kills_the_session(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("s", "SELECT INBOX")
    for n, line in enumerate(NASTY):
        raw.send(line + b"\r\n")
        reply = raw.command(f"ok{n}", "NOOP")  # proves the session is alive (and the OK resets the BAD count)
        assert reply[-1].startswith(b"ok%d OK" % n), (line, reply)
    assert raw.command("z", "NOOP")[-1].startswith(b"z OK")
    assert "Traceback" not in relentad.log()


def _peer_certificate(daemon: Daemon, port: int) -> bytes:
    context = tls_client_context()
    with (
        socket.create_connection((daemon.host, port), timeout=15) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls_sock,
    ):
        certificate = tls_sock.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def test_sighup_reloads_the_certificate_for_new_connections(tmp_path: Path, dns_server: Dnsmasq) -> None:
    import signal
    import time

    from relentad.tls import make_self_signed

    daemon = imap_daemon(tmp_path / "hup", dns_server.nameserver)
    try:
        before = _peer_certificate(daemon, daemon.imaps_port)
        tls_dir = daemon.root / "data" / "tls"
        make_self_signed(tls_dir / "cert.pem", tls_dir / "key.pem", ["mx.example.test", "localhost"])
        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "configuration reloaded" not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the reload to be logged, not asserting on time
        assert "configuration reloaded" in daemon.log()
        assert _peer_certificate(daemon, daemon.imaps_port) != before
    finally:
        daemon.stop()
