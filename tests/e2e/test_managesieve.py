"""ManageSieve (RFC 5804) end to end: the real daemon, sievelib's client and raw sockets; a script uploaded and
activated over ManageSieve files mail delivered over SMTP into a folder IMAP shows."""

from __future__ import annotations

import base64
import imaplib
import json
import random
import re
import smtplib
import socket

import pytest
from sievelib.managesieve import Client

from relentad.crm import sieve
from relentad.managesieve.parser import pending_literal
from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import PASSWORD, Daemon, wait_for
from tests.support.imap import tls_client_context

ALICE = "alice@example.test"
SETTINGS = {"mailauth": {"verify": False}, "managesieve": {"max_scripts": 3, "connections_per_ip": 4}}
FILE_INVOICES = 'require ["fileinto"];\r\nif header :contains "subject" "invoice" { fileinto "Invoices"; }\r\n'


@pytest.fixture
def relentad(make_daemon: MakeDaemon) -> Daemon:
    return provision(make_daemon(imap=True, managesieve=True, settings=SETTINGS)).start()


def plain(user: str = ALICE, password: str = PASSWORD) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


class Raw:
    """A line-level ManageSieve client: exact responses, literals, garbage."""

    def __init__(self, daemon: Daemon) -> None:
        self.sock: socket.socket = socket.create_connection((daemon.host, daemon.managesieve_port), timeout=15)
        self.file = self.sock.makefile("rb")
        self.greeting = self.response()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> list[bytes]:
        """Lines up to and including the OK / NO / BYE; a literal's data is joined to its line."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError(f"server closed the connection after {lines}")
            if line.rstrip().endswith(b"}") and b"{" in line:
                size = int(line.rstrip()[line.rindex(b"{") + 1 : -1])
                line += self.file.read(size) + self.file.readline()
            lines.append(line)
            if line.split(b" ", 1)[0].rstrip() in (b"OK", b"NO", b"BYE"):
                return lines

    def command(self, text: bytes | str) -> list[bytes]:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.response()

    def starttls(self) -> list[bytes]:
        assert self.command("STARTTLS")[-1].startswith(b"OK")
        self.file.close()
        self.sock = tls_client_context().wrap_socket(self.sock)
        self.file = self.sock.makefile("rb")
        return self.response()

    def login(self, user: str = ALICE) -> None:
        reply = self.command(f'AUTHENTICATE "PLAIN" "{plain(user)}"')
        assert reply[-1].startswith(b"OK"), reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def capabilities(lines: list[bytes]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for line in lines[:-1]:
        name, _, value = line.strip().partition(b" ")
        out[name.strip(b'"').decode()] = value.strip(b'"').decode() if value else None
    return out


def sievelib(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> Client:
    """sievelib's client over STARTTLS, trusting the daemon's self-signed certificate."""
    monkeypatch.setenv("SSL_CERT_FILE", str(daemon.root / "data" / "tls" / "cert.pem"))
    client = Client(daemon.host, daemon.managesieve_port)
    assert client.connect(ALICE, PASSWORD, starttls=True, authmech="PLAIN"), client.errmsg
    return client


def test_capabilities_before_and_after_starttls_and_login(relentad: Daemon) -> None:
    raw = Raw(relentad)
    before = capabilities(raw.greeting)
    assert raw.greeting[-1].startswith(b"OK")
    assert before["IMPLEMENTATION"] == "relentad" and before["VERSION"] == "1.0"
    assert before["SIEVE"] == " ".join(sorted(sieve.CAPABILITIES)), "the engine's own list"
    assert "fileinto" in str(before["SIEVE"]).split() and "copy" in str(before["SIEVE"]).split()
    assert before["MAXREDIRECTS"] == str(sieve.MAX_REDIRECTS), "the engine's own limit"
    assert before["SASL"] == "" and "STARTTLS" in before, "no password before TLS"
    assert raw.command(f'AUTHENTICATE "PLAIN" "{plain()}"')[-1].startswith(b"NO (ENCRYPT-NEEDED)")
    assert raw.command("LISTSCRIPTS")[-1].startswith(b"NO"), "authentication first"
    # the plaintext sent after STARTTLS is dropped, never run inside TLS (no command injection)
    raw.send(b"STARTTLS\r\nLISTSCRIPTS\r\n")
    assert raw.response()[-1].startswith(b"OK")
    raw.file.close()
    raw.sock = tls_client_context().wrap_socket(raw.sock)
    raw.file = raw.sock.makefile("rb")
    after_tls = raw.response()
    assert capabilities(after_tls)["SASL"] == "PLAIN" and "STARTTLS" not in capabilities(after_tls)
    assert raw.command('NOOP "t1"') == [b'OK (TAG "t1") "done"\r\n'], "nothing ran in between"
    assert raw.command("STARTTLS")[-1].startswith(b"NO")
    assert raw.command(f'AUTHENTICATE "PLAIN" "{plain(password="wrong")}"')[-1].startswith(b"NO")
    # the SASL answer after an empty challenge, as a literal
    raw.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert raw.file.readline() == b'""\r\n'
    answer = plain().encode()
    assert raw.command(b"{%d+}\r\n%s" % (len(answer), answer))[-1].startswith(b"OK")
    logged_in = capabilities(raw.command("CAPABILITY"))
    assert logged_in["OWNER"] == ALICE and "STARTTLS" not in logged_in
    assert raw.command(f'AUTHENTICATE "PLAIN" "{plain()}"')[-1].startswith(b"NO"), "once is enough"
    assert raw.command("UNAUTHENTICATE")[-1].startswith(b"OK")
    assert raw.command("LISTSCRIPTS")[-1].startswith(b"NO")
    assert raw.command("LOGOUT")[-1].startswith(b"OK")
    raw.close()
    history = relentad.query("SELECT result FROM login_history WHERE protocol = 'managesieve' ORDER BY id")
    assert [row["result"] for row in history] == ["failure", "success"]


def test_sievelib_puts_lists_gets_activates_renames_checks_and_deletes(
    relentad: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = sievelib(relentad, monkeypatch)
    assert "fileinto" in client.get_sieve_capabilities()
    assert client.putscript("invoices", FILE_INVOICES)
    assert client.putscript("spare", "keep;\r\n")
    assert client.listscripts() == (None, ["invoices", "spare"])
    assert client.getscript("invoices") == FILE_INVOICES.replace("\r\n", "\n").strip(), "(sievelib's line ends)"
    assert client.setactive("invoices")
    assert client.listscripts() == ("invoices", ["spare"])
    assert not client.deletescript("invoices") and client.errcode == b"ACTIVE"
    assert client.renamescript("invoices", "bills") and client.listscripts() == ("bills", ["spare"])
    assert not client.renamescript("bills", "spare") and client.errcode == b"ALREADYEXISTS"
    assert not client.getscript("invoices") and client.errcode == b"NONEXISTENT"
    assert not client.setactive("nothing") and client.errcode == b"NONEXISTENT"
    assert client.havespace("third", 100)
    assert not client.havespace("third", sieve.MAX_SCRIPT + 1) and client.errcode == b"QUOTA/MAXSIZE"
    assert client.checkscript("keep;")
    # the admin's checker, its message passed on: refused actions, unsupported require, bad syntax
    assert not client.putscript("bad", "discard;")
    assert client.errmsg.startswith(b"sieve: line 1: discard is not supported")
    assert not client.checkscript('require "enotify";') and b"'enotify' is not supported" in client.errmsg
    assert not client.checkscript("if true {") and client.errmsg.startswith(b"sieve:")
    assert client.putscript("third", "keep;")
    assert not client.putscript("fourth", "keep;") and client.errcode == b"QUOTA/MAXSCRIPTS"
    assert client.putscript("third", "stop;"), "replacing a script does not add one"
    listed = json.loads(relentad.cli("rules", "list", ALICE, "--json").stdout)
    assert [(r["owner"], r["name"], r["active"]) for r in listed] == [
        ("user", "bills", True),
        ("user", "spare", False),
        ("user", "third", False),
    ]
    assert "user's script bills (active: runs last)" in relentad.cli("rules", "list", ALICE).stdout
    assert client.setactive("") and client.listscripts() == (None, ["bills", "spare", "third"])
    assert client.deletescript("bills")
    relentad.cli("rules", "remove", ALICE, "spare", "--user")
    assert client.listscripts() == (None, ["third"])
    client.logout()


def imap_folder(daemon: Daemon, folder: str) -> list[bytes]:
    """Subjects of a folder as IMAP shows them (STARTTLS, LOGIN)."""
    with imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=15) as conn:
        conn.starttls(tls_client_context())
        conn.login(ALICE, PASSWORD)
        status, _ = conn.select(f'"{folder}"', readonly=True)
        if status != "OK":
            return []
        _, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [part[1].strip() + b" " + part[0].split(b"FLAGS ")[1] for part in data if isinstance(part, tuple)]


def deliver(daemon: Daemon, subject: str) -> None:
    raw = f"From: Shop <shop@elsewhere.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        assert client.sendmail("shop@elsewhere.test", [ALICE], raw) == {}


def test_an_active_script_files_delivered_mail_after_the_admin_rules(
    relentad: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    relentad.cli("rules", "add", ALICE, "flag", "-", input='require "imap4flags"; addflag "$Shop";\n')
    client = sievelib(relentad, monkeypatch)
    assert client.putscript("invoices", FILE_INVOICES) and client.setactive("invoices")
    deliver(relentad, "invoice 1")
    [filed] = wait_for("the invoice filed", lambda: imap_folder(relentad, "Invoices"))
    assert filed.startswith(b"Subject: invoice 1") and b"$Shop" in filed, "the admin rule's flag is shared"
    assert client.setactive("")
    deliver(relentad, "invoice 2")
    wait_for("the second in INBOX", lambda: [m for m in imap_folder(relentad, "INBOX") if b"invoice 2" in m])
    assert len(imap_folder(relentad, "Invoices")) == 1, "no active script: not filed"
    # an admin rule's stop ends everything, the user's active script included
    relentad.cli("rules", "add", ALICE, "halt", "-", input="stop;\n")
    assert client.setactive("invoices")
    deliver(relentad, "invoice 3")
    wait_for("the third in INBOX", lambda: [m for m in imap_folder(relentad, "INBOX") if b"invoice 3" in m])
    assert len(imap_folder(relentad, "Invoices")) == 1
    client.logout()


EDIT_HEADER = (
    'require ["fileinto", "editheader", "variables"];\r\n'
    'deleteheader "X-Tracking";\r\n'
    'deleteheader "Received";\r\n'  # protected (RFC 5293 §6): ignored
    'addheader :last "X-Filed-By" "alice\'s rules";\r\n'
    'if header :matches "subject" "*" { deleteheader "Subject"; addheader "Subject" "[shop] ${1}"; }\r\n'
    'if header :contains "subject" "[shop]" { fileinto "Shop"; }\r\n'
)


def test_editheader_changes_only_the_copy_the_script_files(relentad: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    client = sievelib(relentad, monkeypatch)
    assert client.putscript("edit", EDIT_HEADER) and client.setactive("edit"), client.errmsg
    raw = (
        b"Received: from shop.elsewhere.test by relay.elsewhere.test; Fri, 27 Nov 2026 08:00:00 +0000\r\n"
        b"From: Shop <shop@elsewhere.test>\r\nTo: alice@example.test, bob@example.test\r\nSubject: invoice 7\r\n"
        b"X-Tracking: abc\r\nMessage-ID: <edit-1@elsewhere.test>\r\n\r\nHello.\r\n"
    )
    with smtplib.SMTP(relentad.host, relentad.smtp_port, timeout=10) as smtp:
        assert smtp.sendmail("shop@elsewhere.test", [ALICE, "bob@example.test"], raw) == {}
    wait_for("alice's copy filed", lambda: relentad.messages(ALICE, "Shop"))
    with imaplib.IMAP4(relentad.host, relentad.imap_port, timeout=15) as conn:
        conn.starttls(tls_client_context())
        conn.login(ALICE, PASSWORD)
        assert conn.select("Shop", readonly=True)[0] == "OK"
        _, data = conn.fetch("1", "(ENVELOPE BODY.PEEK[HEADER] RFC822.SIZE)")
    fetched = b"".join(part[1] if isinstance(part, tuple) else part for part in data)
    header = data[0][1]
    assert b'"[shop] invoice 7"' in data[0][0], "ENVELOPE reads the edited Subject"
    assert b"Subject: [shop] invoice 7\r\n" in header and header.count(b"Subject:") == 1
    assert b"X-Tracking" not in fetched and b"X-Filed-By: alice's rules\r\n" in header
    assert header.startswith(b"Return-Path: <shop@elsewhere.test>\r\nDelivered-To: alice@example.test\r\n")
    assert b"Received: from shop.elsewhere.test" in header, "a protected field stays"
    assert header.index(b"Received: from shop.elsewhere") < header.index(b"X-Filed-By"), ":last: after the others"
    [bobs] = relentad.raw_blobs("bob@example.test")
    assert bobs == raw, "bob's copy is the message as it came"
    [alices] = relentad.raw_blobs(ALICE, "Shop")
    size = relentad.query("SELECT m.size FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id WHERE x.name = 'Shop'")
    assert (
        re.search(rb"RFC822\.SIZE (\d+)", b" ".join(p if isinstance(p, bytes) else p[0] for p in data)).group(1)
        == str(size[0]["size"]).encode()
    )
    assert size[0]["size"] == len(relentad.messages(ALICE, "Shop")[0]), "the quota counts the edited copy"
    assert alices != raw and len(relentad.query("SELECT id FROM blobs")) == 2
    contacts = relentad.query(
        "SELECT subject FROM crm_messages c JOIN accounts a ON a.id = c.account_id WHERE a.email = ?", ALICE
    )
    assert [c["subject"] for c in contacts] == ["invoice 7"], "the CRM files the message once, as it came"
    # rules test shows the header as the rules leave it
    sample = relentad.root / "sample.eml"
    sample.write_bytes(raw)
    shown = relentad.cli("rules", "test", ALICE, str(sample)).stdout
    assert "  | Subject: [shop] invoice 7" in shown and "file into Shop" in shown, shown
    client.logout()


def test_an_active_script_includes_the_users_other_scripts(relentad: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    client = sievelib(relentad, monkeypatch)
    main = 'require ["include", "variables"];\r\nglobal "tag";\r\nset "tag" "shop";\r\ninclude "invoices";\r\n'
    library = (
        'require ["fileinto", "imap4flags", "include", "variables"];\r\nglobal "tag";\r\n'
        'if header :contains "subject" "invoice" { addflag "$${tag}"; fileinto "Invoices"; return; }\r\n'
        'fileinto "Other";\r\n'
    )
    assert client.putscript("main", main), client.errmsg  # the included one need not exist yet (RFC 6609)
    assert client.setactive("main"), client.errmsg
    deliver(relentad, "invoice 1")
    wait_for("kept: the included script is missing", lambda: imap_folder(relentad, "INBOX"))
    assert "include: there is no script 'invoices'" in relentad.log()
    assert client.putscript("invoices", library), client.errmsg
    deliver(relentad, "invoice 2")
    [filed] = wait_for("filed by the included script", lambda: imap_folder(relentad, "Invoices"))
    assert filed.startswith(b"Subject: invoice 2") and b"$shop" in filed, "a global variable set by the includer"
    assert not imap_folder(relentad, "Other"), "return ended the included script"
    assert not client.putscript("bad", 'require "include"; include :global "x";')
    assert b"include :global is not supported" in client.errmsg
    client.logout()


def test_protocol_errors_limits_and_terminated_accounts(relentad: Daemon) -> None:
    raw = Raw(relentad)
    assert raw.command("FROBNICATE")[-1].startswith(b"NO")
    assert raw.command('HAVESPACE "x" "y"')[-1].startswith(b"NO")
    assert raw.command(b"NOOP {40000+}\r\n" + b"x" * 40000)[-1].startswith(b"NO"), "over the pre-login literal"
    assert raw.command("NOOP")[-1].startswith(b"OK"), "the dropped literal did not desynchronise"
    raw.starttls()
    raw.login()
    script = b"keep;\r\n" * 10
    assert raw.command(b'PUTSCRIPT "one" {%d+}\r\n%s' % (len(script), script))[-1].startswith(b"OK")
    assert raw.command('GETSCRIPT "one"')[0] == b"{%d}\r\n%s\r\n" % (len(script), script)
    assert raw.command('PUTSCRIPT "two" "fileinto \\"x\\";"')[-1].startswith(b"NO")
    junk = b"x" * 5000
    reply = raw.command(b"CHECKSCRIPT {%d+}\r\n%s" % (len(junk), junk))
    assert reply[-1].startswith(b'NO "sieve: line 1: unknown command') and len(reply[-1]) < 400, "cut short"
    assert raw.command('PUTSCRIPT "bad\\\\name\x01" "keep;"')[-1].startswith(b"NO")
    assert raw.command(b'PUTSCRIPT "\xc3\xa9t\xc3\xa9" "keep;"')[-1].startswith(b"OK")
    listed = raw.command("LISTSCRIPTS")
    assert listed == [b'"one"\r\n', '"été"\r\n'.encode(), b'OK "listscripts completed"\r\n']
    reply = raw.command('PUTSCRIPT "folder" "require \\"fileinto\\"; fileinto \\"New\\";"')
    assert reply[-1].startswith(b"OK (WARNINGS)") and b"New" in reply[-1]
    # a line over the limit ends the session with BYE, never a traceback
    assert raw.command(b"NOOP " + b"x" * 10000)[-1].startswith(b"BYE")
    raw.close()
    huge = Raw(relentad)
    assert huge.command(b"NOOP {999999999+}")[-1].startswith(b"BYE"), "not worth reading"
    huge.close()
    # per-IP connection limit: the extra connection is told BYE at once
    held = [Raw(relentad) for _ in range(4)]
    extra = socket.create_connection((relentad.host, relentad.managesieve_port), timeout=15)
    assert extra.makefile("rb").readline().startswith(b"BYE (TRYLATER)")
    extra.close()
    for conn in held:
        conn.close()
    # a terminated account's session ends at its next command; its login is refused
    session = wait_for("a free slot", lambda: _logged_in(relentad))
    relentad.cli("user", "terminate", ALICE, "--yes")
    # (the session looks at most once a second: a NOOP answered OK came before that)
    wait_for("BYE", lambda: session.command("NOOP")[-1].startswith(b"BYE"))
    again = Raw(relentad)
    again.starttls()
    assert again.command(f'AUTHENTICATE "PLAIN" "{plain()}"')[-1].startswith(b"NO")
    again.close()
    assert "Traceback" not in relentad.log()


def _logged_in(daemon: Daemon) -> Raw | None:
    raw = Raw(daemon)
    if not raw.greeting[-1].startswith(b"OK"):
        raw.close()
        return None
    raw.starttls()
    raw.login()
    return raw


def test_plaintext_on_loopback_sasl_continuations_and_the_login_timeout(make_daemon: MakeDaemon) -> None:
    settings = {"auth": {"plaintext_loopback": True}, "managesieve": {"login_timeout": "2s"}}
    daemon = provision(make_daemon(managesieve=True, tls=False, settings=settings)).start()
    raw = Raw(daemon)
    greeting = capabilities(raw.greeting)
    assert greeting["SASL"] == "PLAIN" and "STARTTLS" not in greeting, "no certificate, loopback allowed"
    raw.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert raw.file.readline() == b'""\r\n'
    assert raw.command('"*"') == [b'NO "authentication cancelled"\r\n']
    raw.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert raw.file.readline() == b'""\r\n'
    reply = raw.command(b"{20000+}\r\n" + b"A" * 20000)
    assert reply == [b'NO "literal larger than 16384 octets"\r\n'], "one answer for the dropped literal"
    # the limit holds for a command's literals together: a chain of small ones cannot pile up megabytes
    literal = b" {10000+}\r\n" + b"A" * 10000
    assert raw.command(b"NOOP" + literal * 2) == [b'NO "literal larger than 16384 octets"\r\n']
    raw.send(b"NOOP" + literal * 6 + b" {10000+}\r\n")  # the seventh is not worth reading
    assert raw.response() == [b'BYE (QUOTA/MAXSIZE) "literal far larger than allowed"\r\n']
    raw.close()
    raw = Raw(daemon)
    assert raw.command(f'AUTHENTICATE "PLAIN" "{plain()}"')[-1].startswith(b"OK")
    raw.close()
    idle = Raw(daemon)  # never logs in: BYE once login_timeout is over
    assert idle.response()[-1].startswith(b'BYE "not logged in in time"')
    idle.close()
    # SIGTERM: an idle session is told BYE (TRYLATER) and the daemon exits cleanly
    waiting = Raw(daemon)
    assert waiting.command(f'AUTHENTICATE "PLAIN" "{plain()}"')[-1].startswith(b"OK")
    assert daemon.stop() == 0
    assert waiting.response() == [b'BYE (TRYLATER) "server shutting down"\r\n']
    waiting.close()
    assert "Traceback" not in daemon.log()


TEMPLATES = [
    b"CAPABILITY",
    b'NOOP "tag"',
    b"LISTSCRIPTS",
    b'HAVESPACE "fuzz" 100',
    b'PUTSCRIPT "fuzz" {lit}',
    b"CHECKSCRIPT {lit}",
    b'PUTSCRIPT "fuzz" "keep;"',
    b'GETSCRIPT "fuzz"',
    b'SETACTIVE "fuzz"',
    b'SETACTIVE ""',
    b'RENAMESCRIPT "fuzz" "fuzz2"',
    b'RENAMESCRIPT "fuzz2" "fuzz"',
    b'DELETESCRIPT "fuzz2"',
]
SCRIPTS = [b"keep;", b'require "fileinto"; fileinto "F";', b"if true {", b"discard;", "é".encode(), b"\xff\xfe"]


def fuzzed(rng: random.Random) -> bytes:
    """A template with consistent literals; the text around them mutated without CR/LF or new literals."""
    text = bytearray(rng.choice(TEMPLATES))
    for _ in range(rng.randint(0, 3)):
        position = rng.randint(0, len(text))
        if rng.random() < 0.5 and text:
            del text[min(position, len(text) - 1)]
        else:
            text.insert(position, rng.choice(b'"\\{}+ 0123456789aZ\x00\x7f\xc3'))
    script = rng.choice(SCRIPTS)
    literal = b"{%d%s}\r\n%s" % (len(script), rng.choice([b"+", b""]), script)
    command = bytes(text).replace(b"{lit}", literal, 1) + b"\r\n"
    announced = sum(pending_literal(line) is not None for line in command.splitlines(keepends=True))
    if announced != (b"{lit}" in text):  # the mutation announced a literal of its own: the client would owe it
        return b"NOOP\r\n"
    return command


def test_fuzzed_commands_get_an_answer_never_a_traceback(make_daemon: MakeDaemon) -> None:
    """Seeded mutations of real commands after login: each gets OK, NO or BYE (then a new session)."""
    daemon = provision(make_daemon(managesieve=True, tls=False, settings={"auth": {"plaintext_loopback": True}}))
    daemon.start()
    rng = random.Random(5804)
    raw = None
    for _ in range(300):
        if raw is None:
            raw = Raw(daemon)
            raw.login()
        command = fuzzed(rng)
        raw.send(command)
        reply = raw.response()
        assert reply[-1].split(b" ")[0].strip() in (b"OK", b"NO", b"BYE"), (command, reply)
        if reply[-1].startswith(b"BYE"):
            raw.close()
            raw = None
    assert raw is not None and raw.command("NOOP")[-1].startswith(b"OK")
    assert "Traceback" not in daemon.log()


def test_a_managesieve_port_taken_by_another_server_is_logged_and_mail_goes_on(make_daemon: MakeDaemon) -> None:
    """Dovecot's ManageSieve still on 4190 when relentad is upgraded to a release that listens there: not fatal."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        daemon = provision(make_daemon(managesieve=True, managesieve_port=port, settings=SETTINGS)).start()
        wait_for("the daemon ready", lambda: "relentad ready" in daemon.log())
        assert f"managesieve listener not started: cannot listen on 127.0.0.1:{port}" in daemon.log()
        with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=15) as smtp:
            assert smtp.noop()[0] == 250
    assert daemon.stop() == 0
