"""POP3 (RFC 1939, 2449, 2595, 5034) end to end: the real daemon, Python's poplib and raw sockets; mail delivered
over SMTP is listed, retrieved and deleted over POP3, and IMAP sees what QUIT expunged."""

from __future__ import annotations

import base64
import imaplib
import poplib
import random
import shutil
import smtplib
import socket
import subprocess

import pytest

from relentad.pop3.parser import ParseError, parse
from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import PASSWORD, Daemon, free_port, wait_for, wait_for_port
from tests.support.imap import tls_client_context
from tests.support.metrics import http_get, sample

ALICE = "alice@example.test"
BOB = "bob@example.test"
SETTINGS = {"mailauth": {"verify": False}, "pop3": {"connections_per_ip": 6}}
DOTTED = "Hello.\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n"


@pytest.fixture
def relentad(make_daemon: MakeDaemon) -> Daemon:
    return provision(make_daemon(imap=True, pop3=True, settings=SETTINGS)).start()


def deliver(daemon: Daemon, subject: str, body: str = "Hello.\r\n", to: str = ALICE) -> None:
    raw = f"From: Shop <shop@elsewhere.test>\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}".encode()
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        assert client.sendmail("shop@elsewhere.test", [to], raw) == {}


def inbox(daemon: Daemon, count: int, user: str = ALICE) -> None:
    def arrived() -> bool:
        return (
            len(
                daemon.query(
                    "SELECT 1 FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
                    "JOIN accounts a ON a.id = b.account_id WHERE a.email = ? AND b.name = 'INBOX'",
                    user,
                )
            )
            >= count
        )

    wait_for(f"{count} messages in INBOX", arrived)


def stls(daemon: Daemon, user: str = ALICE) -> poplib.POP3:
    client = poplib.POP3(daemon.host, daemon.pop3_port, timeout=15)
    client.stls(tls_client_context())
    client.user(user)
    client.pass_(PASSWORD)
    return client


def pop3s(daemon: Daemon, user: str = ALICE) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL(daemon.host, daemon.pop3s_port, timeout=15, context=tls_client_context())
    client.user(user)
    client.pass_(PASSWORD)
    return client


def imap(daemon: Daemon) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(daemon.host, daemon.imaps_port, ssl_context=tls_client_context(), timeout=15)
    client.login(ALICE, PASSWORD)
    client.select("INBOX")
    return client


def retrieved(lines: list[bytes]) -> bytes:
    """What poplib's RETR lines were on the wire before stuffing: the message with CRLFs."""
    return b"".join(line + b"\r\n" for line in lines)


def test_stls_listing_retrieval_and_sizes_match_imap(relentad: Daemon) -> None:
    deliver(relentad, "first")
    deliver(relentad, "dotted", DOTTED)
    inbox(relentad, 2)
    client = poplib.POP3(relentad.host, relentad.pop3_port, timeout=15)
    assert client.getwelcome().startswith(b"+OK")
    before = client.capa()
    assert "STLS" in before and "USER" not in before and "SASL" not in before, "no password before TLS"
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
        client.user(ALICE)
    client.stls(tls_client_context())
    after = client.capa()
    assert "STLS" not in after and after["SASL"] == ["PLAIN"] and "USER" in after
    assert {"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"} <= set(after)
    assert after["EXPIRE"] == ["NEVER"] and after["IMPLEMENTATION"] == ["relentad"]
    client.user(ALICE)
    assert client.pass_(PASSWORD).startswith(b"+OK")
    count, total = client.stat()
    _, listing, _ = client.list()
    sizes = [int(line.split()[1]) for line in listing]
    assert count == 2 and total == sum(sizes)
    mail = imap(relentad)
    _, fetched = mail.fetch("1:2", "(RFC822.SIZE BODY.PEEK[])")
    imap_bodies = [part[1] for part in fetched if isinstance(part, tuple)]
    for n, size in enumerate(sizes, 1):
        _, lines, _ = client.retr(n)
        data = retrieved(lines)
        assert len(data) == size, "LIST's size is the octets RETR sends (before stuffing)"
        assert data == imap_bodies[n - 1], "the same octets as IMAP's BODY[], trace fields included"
        assert client.list(n) == f"+OK {n} {size}".encode()
    _, lines, _ = client.retr(2)
    assert retrieved(lines).endswith(DOTTED.encode()), "lines starting with a dot round-trip"
    _, head, _ = client.top(2, 1)
    assert b"Subject: dotted" in head and head[-2:] == [b"", b"Hello."], "the header, the blank line, one line"
    _, whole, _ = client.top(2, 100)
    assert whole == lines
    _, uids, _ = client.uidl()
    assert len({line.split()[1] for line in uids}) == 2
    assert client.quit().startswith(b"+OK")
    # RETR marks \Seen at QUIT (as Dovecot does); nothing was deleted
    mail.noop()
    _, flags = mail.fetch("1:2", "(FLAGS)")
    assert all(b"\\Seen" in line for line in flags), flags
    mail.logout()
    assert "Traceback" not in relentad.log()


def test_a_message_without_a_final_crlf_is_listed_with_the_crlf_retr_adds(relentad: Daemon) -> None:
    """An APPENDed draft may end mid-line; RETR must end its lines with CRLF, so LIST counts those two octets too
    (it gave IMAP's RFC822.SIZE, two short, until session 22)."""
    mail = imap(relentad)
    draft = b"From: alice@example.test\r\nSubject: open end\r\n\r\nno line break after this"
    assert mail.append("INBOX", None, None, draft)[0] == "OK"
    deliver(relentad, "closed")
    inbox(relentad, 2)
    mail.noop()
    _, fetched = mail.fetch("1:2", "(RFC822.SIZE BODY.PEEK[])")
    imap_bodies = [part[1] for part in fetched if isinstance(part, tuple)]
    mail.logout()
    client = stls(relentad)
    _, listing, _ = client.list()
    sizes = [int(line.split()[1]) for line in listing]
    retrieved_bodies = [retrieved(client.retr(n)[1]) for n in (1, 2)]
    assert [len(body) for body in retrieved_bodies] == sizes
    assert retrieved_bodies == [imap_bodies[0] + b"\r\n", imap_bodies[1]]
    assert client.stat() == (2, sum(sizes))
    client.quit()


def test_dele_quit_expunges_and_a_dropped_connection_deletes_nothing(relentad: Daemon) -> None:
    for n in range(3):
        deliver(relentad, f"message {n}")
    inbox(relentad, 3)
    client = pop3s(relentad)
    _, uids_before, _ = client.uidl()
    assert client.dele(1).startswith(b"+OK")
    client.sock.close()  # dropped without QUIT: RFC 1939 §6, nothing deleted
    client = pop3s(relentad)
    assert client.stat()[0] == 3
    _, uids, _ = client.uidl()
    assert uids == uids_before, "UIDL is stable across sessions"
    assert client.uidl(2) == b"+OK " + uids[1]
    client.dele(2)
    assert client.stat()[0] == 2
    with pytest.raises(poplib.error_proto, match="deleted"):
        client.retr(2)
    with pytest.raises(poplib.error_proto, match="deleted"):
        client.list(2)
    _, listing, _ = client.list()
    assert [line.split()[0] for line in listing] == [b"1", b"3"]
    assert client.rset().startswith(b"+OK maildrop has 3 messages")
    client.dele(1)
    client.dele(3)
    with pytest.raises(poplib.error_proto, match="no message 4"):
        client.dele(4)
    mail = imap(relentad)
    assert client.quit().startswith(b"+OK")
    # the IMAP session sees the expunges (the change bus), the retention area holds them
    mail.noop()
    assert sorted(mail.response("EXPUNGE")[1]) == [b"1", b"3"], "told at its next command (highest first)"
    _, data = mail.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert [part[1].strip() for part in data if isinstance(part, tuple)] == [b"Subject: message 1"]
    mail.logout()
    assert len(relentad.query("SELECT 1 FROM expunged WHERE mailbox_name = 'INBOX'")) == 2
    client = pop3s(relentad)
    _, uids_after, _ = client.uidl()
    assert [line.split()[1] for line in uids_after] == [uids[1].split()[1]]
    client.quit()
    assert "Traceback" not in relentad.log()


def test_concurrent_sessions_and_an_imap_expunge_meanwhile(relentad: Daemon) -> None:
    for n in range(3):
        deliver(relentad, f"message {n}")
    inbox(relentad, 3)
    one, two = stls(relentad), pop3s(relentad)
    # IMAP expunges message 3 while both POP3 sessions hold their snapshot
    mail = imap(relentad)
    mail.store("3", "+FLAGS", "\\Deleted")
    mail.expunge()
    with pytest.raises(poplib.error_proto, match="another session"):
        one.retr(3)
    assert one.stat()[0] == 3, "the snapshot keeps its numbers"
    one.dele(1)
    two.dele(1)
    two.dele(2)
    two.dele(3)
    assert one.quit().startswith(b"+OK") and two.quit().startswith(b"+OK")
    # each message expunged once: message 1 by the first QUIT, 2 by the second, 3 by IMAP
    assert len(relentad.query("SELECT 1 FROM expunged WHERE mailbox_name = 'INBOX'")) == 3
    [usage] = relentad.query("SELECT used_bytes, used_messages FROM accounts WHERE email = ?", ALICE)
    assert (usage["used_bytes"], usage["used_messages"]) == (0, 0), "the quota counters followed"
    assert "pop3 alice@example.test: QUIT expunged 1 of 3 deleted" in relentad.log(), "the others were gone"
    assert mail.select("INBOX")[1] == [b"0"]
    mail.logout()
    assert stls(relentad).stat() == (0, 0)


def plain(user: str = ALICE, password: str = PASSWORD) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


class Raw:
    """A line-level POP3 client for what poplib hides: exact replies, pipelining, garbage."""

    def __init__(self, daemon: Daemon, port: int | None = None) -> None:
        self.sock = socket.create_connection((daemon.host, port or daemon.pop3_port), timeout=15)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        return self.file.readline()

    def command(self, text: bytes | str) -> bytes:
        self.sock.sendall((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.line()

    def body(self) -> list[bytes]:
        lines = []
        while (line := self.line()) != b".\r\n":
            if not line:
                raise ConnectionError("closed in a multi-line response")
            lines.append(line)
        return lines

    def starttls(self) -> None:
        assert self.command("STLS").startswith(b"+OK")
        self.file.close()
        self.sock = tls_client_context().wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_protocol_errors_auth_and_limits(relentad: Daemon) -> None:
    raw = Raw(relentad)
    assert raw.greeting.startswith(b"+OK")
    assert raw.command("FROB").startswith(b"-ERR unknown command")
    assert raw.command("STAT").startswith(b"-ERR STAT: log in first")
    assert raw.command(f"AUTH PLAIN {plain()}").startswith(b"-ERR [AUTH] plaintext")
    assert raw.command("AUTH") == b"+OK SASL mechanisms follow\r\n" and raw.body() == [], "none before TLS"
    # the plaintext pipelined after STLS is dropped, never run inside TLS
    raw.sock.sendall(b"STLS\r\nUSER mallory@example.test\r\n")
    assert raw.line().startswith(b"+OK")
    raw.file.close()
    raw.sock = tls_client_context().wrap_socket(raw.sock)
    raw.file = raw.sock.makefile("rb")
    assert raw.command("PASS x").startswith(b"-ERR USER first"), "the injected USER never ran"
    assert raw.command("STLS").startswith(b"-ERR TLS is already active")
    assert raw.command("USER " + ALICE).startswith(b"+OK")
    assert raw.command("PASS wrong").startswith(b"-ERR [AUTH] authentication failed")
    assert raw.command("AUTH") == b"+OK SASL mechanisms follow\r\n" and raw.body() == [b"PLAIN\r\n"]
    assert raw.command("AUTH CRAM-MD5").startswith(b"-ERR unsupported SASL mechanism")
    assert raw.command("AUTH PLAIN") == b"+ \r\n"
    assert raw.command("*").startswith(b"-ERR authentication cancelled")
    assert raw.command("AUTH PLAIN !!!").startswith(b"-ERR the SASL response is not valid base64")
    assert raw.command("AUTH PLAIN") == b"+ \r\n"
    assert raw.command(plain()).startswith(b"+OK maildrop has 0 messages")
    assert raw.command("USER x").startswith(b"-ERR USER: not after login")
    assert raw.command("RETR 0").startswith(b"-ERR message numbers start at 1")
    assert raw.command("RETR x").startswith(b"-ERR 'x' is not a number")
    assert raw.command("RETR 1").startswith(b"-ERR no message 1")
    assert raw.command("TOP 1").startswith(b"-ERR wrong number of arguments")
    assert raw.command("LIST  1").startswith(b"-ERR arguments are separated by one space")
    raw.sock.sendall(b"NOOP\r\nSTAT\r\nNOOP\r\n")  # PIPELINING: answers in order
    assert [raw.line() for _ in range(3)] == [b"+OK\r\n", b"+OK 0 0\r\n", b"+OK\r\n"]
    # a line over the limit ends the session with -ERR, never a traceback
    assert raw.command(b"NOOP " + b"x" * 10000).startswith(b"-ERR line longer than")
    assert raw.line() == b""
    raw.close()
    history = relentad.query("SELECT result FROM login_history WHERE protocol = 'pop3' ORDER BY id")
    assert [row["result"] for row in history] == ["failure", "success"]
    # the sessions-open metric counts POP3 sessions; over the per-IP limit: -ERR [SYS/TEMP] at once
    held = [Raw(relentad) for _ in range(6)]
    extra = socket.create_connection((relentad.host, relentad.pop3_port), timeout=15)
    assert extra.makefile("rb").readline().startswith(b"-ERR [SYS/TEMP] too many connections from your address")
    extra.close()
    for conn in held:
        conn.close()
    # a terminated account's session ends at its next command; its login is refused
    session = wait_for("a free slot", lambda: _logged_in(relentad))
    relentad.cli("user", "terminate", ALICE, "--yes")
    wait_for("-ERR", lambda: session.command("NOOP").startswith(b"-ERR [SYS/PERM] the account was terminated"))
    again = Raw(relentad)
    again.starttls()
    assert again.command("USER " + ALICE).startswith(b"+OK")
    assert again.command("PASS " + PASSWORD).startswith(b"-ERR [AUTH]")
    again.close()
    assert "Traceback" not in relentad.log()


def _logged_in(daemon: Daemon) -> Raw | None:
    raw = Raw(daemon)
    if not raw.greeting.startswith(b"+OK"):
        raw.close()
        return None
    raw.starttls()
    assert raw.command(f"AUTH PLAIN {plain()}").startswith(b"+OK")
    return raw


def test_plaintext_on_loopback_the_login_timeout_and_shutdown(make_daemon: MakeDaemon) -> None:
    metrics_port = free_port()
    settings = {
        "auth": {"plaintext_loopback": True, "failures_per_account": 2},
        "pop3": {"login_timeout": "1s"},
        "listen": {"metrics": f"127.0.0.1:{metrics_port}"},
        "mailauth": {"verify": False},
    }
    daemon = provision(make_daemon(pop3=True, tls=False, settings=settings)).start()
    wait_for_port("127.0.0.1", metrics_port, proc=daemon.proc)
    assert daemon.pop3s_port == 0
    client = poplib.POP3(daemon.host, daemon.pop3_port, timeout=15)
    capabilities = client.capa()
    assert "USER" in capabilities and "STLS" not in capabilities, "no certificate, loopback allowed"
    client.user(BOB)
    client.pass_(PASSWORD)
    _, text = http_get(metrics_port, "/metrics")
    assert sample(text, "relentad_sessions_open", 'listener="pop3"') == 1
    client.quit()
    idle = Raw(daemon)  # never logs in: closed once login_timeout is over
    assert idle.line() == b"-ERR not logged in in time\r\n" and idle.line() == b""
    idle.close()
    # throttling: after two failures for the account, even the right password is refused for a while
    carol = Raw(daemon)
    for password in ("wrong", "wrong again", PASSWORD):
        reply = carol.command(f"AUTH PLAIN {plain('carol@example.test', password)}")
    assert reply.startswith(b"-ERR [SYS/TEMP] too many failed logins"), "not [AUTH]: the password is not the problem"
    carol.close()
    # SIGTERM: a logged-in session is closed with -ERR [SYS/TEMP], nothing deleted
    deliver(daemon, "kept", to=BOB)
    inbox(daemon, 1, BOB)
    waiting = Raw(daemon)
    assert waiting.command(f"AUTH PLAIN {plain(BOB)}").startswith(b"+OK maildrop has 1 messages")
    assert waiting.command("DELE 1").startswith(b"+OK")
    assert daemon.stop() == 0
    assert waiting.line() == b"-ERR [SYS/TEMP] server shutting down; nothing was deleted\r\n"
    waiting.close()
    assert (
        len(daemon.query("SELECT 1 FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.name = 'INBOX'"))
        == 1
    )
    assert "Traceback" not in daemon.log()


TEMPLATES = [b"STAT", b"LIST", b"LIST 1", b"UIDL", b"UIDL 2", b"RETR 1", b"TOP 2 3", b"DELE 1", b"RSET", b"NOOP"]
TEMPLATES += [b"CAPA", b"AUTH", b"AUTH PLAIN", b"USER x", b"PASS y", b"STLS", b"QUIT", b"RETR 99"]


def _multiline(command: bytes) -> bool:
    """Whether a +OK to this command has a body (the server's own reading of the line decides what it ran)."""
    try:
        parsed = parse(command)
    except ParseError:
        return False
    if parsed.name in ("LIST", "UIDL"):
        return not parsed.args
    return parsed.name in ("RETR", "TOP", "CAPA") or (parsed.name == "AUTH" and not parsed.args)


def test_fuzzed_commands_get_an_answer_never_a_traceback(make_daemon: MakeDaemon) -> None:
    """Seeded mutations of real commands after login: each gets +OK (with its body) or -ERR, never silence."""
    daemon = provision(make_daemon(pop3=True, tls=False, settings={"auth": {"plaintext_loopback": True}}))
    daemon.start()
    for n in range(2):
        deliver(daemon, f"fuzz {n}", DOTTED)
    inbox(daemon, 2)
    rng = random.Random(1939)
    raw = None
    for _ in range(300):
        if raw is None:
            raw = Raw(daemon)
            assert raw.command(f"AUTH PLAIN {plain()}").startswith(b"+OK")
        text = bytearray(rng.choice(TEMPLATES))
        for _ in range(rng.randint(0, 3)):
            position = rng.randint(0, len(text))
            if rng.random() < 0.5 and text:
                del text[min(position, len(text) - 1)]
            else:
                text.insert(position, rng.choice(b" 0123456789aZ.\x00\x7f\xc3\t"))
        command = bytes(text)
        reply = raw.command(command)
        if reply == b"+ \r\n":  # AUTH PLAIN's challenge (refused after login: never reached)
            reply = raw.command("*")
        assert reply.startswith((b"+OK", b"-ERR")), (command, reply)
        if reply.startswith(b"+OK") and _multiline(command):
            raw.body()
        if reply.startswith(b"-ERR too many invalid commands") or (
            reply.startswith(b"+OK") and parse(command).name == "QUIT"
        ):
            raw.close()
            raw = None
    assert raw is not None and raw.command("NOOP") == b"+OK\r\n"
    assert "Traceback" not in daemon.log()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_lists_and_retrieves_over_stls_and_995(relentad: Daemon) -> None:
    """curl's POP3 client: CAPA, then AUTH PLAIN inside TLS, the credentials after the "+ " challenge or inline."""
    deliver(relentad, "for curl", DOTTED)
    inbox(relentad, 1)

    def curl(url: str, *options: str) -> bytes:
        command = ["curl", "-sS", "-k", "--max-time", "20", "-u", f"{ALICE}:{PASSWORD}", *options, url]
        return subprocess.run(command, capture_output=True, check=True, timeout=30).stdout

    listing = curl(f"pop3://{relentad.host}:{relentad.pop3_port}/", "--ssl-reqd")
    number, size = listing.split()
    assert number == b"1"
    message = curl(f"pop3s://{relentad.host}:{relentad.pop3s_port}/1", "--sasl-ir")
    assert len(message) == int(size) and message.endswith(DOTTED.encode()), "un-stuffed, the size LIST gave"
    assert b"pop3 login alice@example.test" in relentad.log_path.read_bytes()


def test_a_pop3_port_taken_by_another_server_is_logged_and_mail_goes_on(make_daemon: MakeDaemon) -> None:
    """An old POP3 server still on the port (or a dev configuration from before POP3 naming 110): not fatal."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        daemon = provision(make_daemon(imap=True, pop3=True, pop3_port=port, settings=SETTINGS)).start()
        deliver(daemon, "still delivered")
        inbox(daemon, 1)
        assert f"pop3 listener not started: cannot listen on 127.0.0.1:{port}" in daemon.log()
        assert pop3s(daemon).stat()[0] == 1, "995 serves"
    assert daemon.stop() == 0
