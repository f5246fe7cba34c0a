"""SMTP inbound (the MX) over real sockets with real clients: smtplib, aiosmtplib and swaks."""

from __future__ import annotations

import asyncio
import base64
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import aiosmtplib
import pytest

from relentad.message import ParsedMessage
from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import PASSWORD, Daemon, greeted


def message(subject: str = "hello", body: str = "Hi there.\r\n", msgid: str | None = None) -> bytes:
    headers = [
        "From: Friend <friend@elsewhere.test>",
        "To: alice@example.test",
        f"Subject: {subject}",
        f"Message-ID: <{msgid or subject.replace(' ', '.')}@elsewhere.test>",
        "Date: Wed, 25 Nov 2026 08:00:00 +0000",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def smtp(daemon: Daemon) -> smtplib.SMTP:
    client = smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10)
    client.ehlo("client.elsewhere.test")
    return client


def rcpt_reply(daemon: Daemon, address: str) -> tuple[int, bytes]:
    with smtp(daemon) as client:
        client.mail("friend@elsewhere.test")
        return client.rcpt(address)


# -- EHLO ---------------------------------------------------------------------------------------------------


def test_banner_and_ehlo_advertise_what_a_public_mx_needs(relentad: Daemon) -> None:
    client = smtplib.SMTP(relentad.host, relentad.smtp_port, timeout=10)
    code, banner = client.ehlo("client.elsewhere.test")
    assert code == 250
    assert banner.splitlines()[0] == b"mx.example.test"
    for extension in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "starttls"):
        assert client.has_extn(extension), extension
    assert client.esmtp_features["size"] == "50000000"
    assert not client.has_extn("auth"), "the MX must not offer AUTH"
    client.quit()
    with socket.create_connection((relentad.host, relentad.smtp_port)) as sock:
        assert sock.recv(200).startswith(b"220 mx.example.test ")


def test_no_starttls_without_certificate(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(tls=False)).start()
    with smtp(daemon) as client:
        assert not client.has_extn("starttls")
        code, _ = client.docmd("STARTTLS")
        assert code in (454, 502)  # RFC 3207: 454 TLS not available


# -- recipients -----------------------------------------------------------------------------------------------


def test_delivers_to_user_with_trace_headers(relentad: Daemon) -> None:
    raw = message("to alice")
    with smtp(relentad) as client:
        refused = client.sendmail("friend@elsewhere.test", ["alice@example.test"], raw)
    assert refused == {}
    [stored] = relentad.messages("alice@example.test")
    head, _, _ = stored.partition(b"\r\n")
    assert head == b"Return-Path: <friend@elsewhere.test>"
    assert b"Delivered-To: alice@example.test\r\n" in stored
    assert b"Received: from client.elsewhere.test ([127.0.0.1])\r\n\tby mx.example.test (relentad) with ESMTP" in stored
    assert b"for <alice@example.test>;" in stored
    assert stored.endswith(raw), "the message itself is stored exactly as sent"
    assert relentad.raw_blobs("alice@example.test") == [raw]
    [blob] = relentad.query("SELECT structure FROM blobs")
    parsed = ParsedMessage.from_json(blob["structure"])
    assert parsed.subject == "to alice" and parsed.message_id == "to.alice@elsewhere.test"


def test_alias_reaches_every_target_and_stores_the_message_once(relentad: Daemon) -> None:
    raw = message("to sales")
    with smtp(relentad) as client:
        client.sendmail("friend@elsewhere.test", ["sales@example.test"], raw)
    assert relentad.raw_blobs("alice@example.test") == [raw]
    assert relentad.raw_blobs("bob@example.test") == [raw]
    assert relentad.raw_blobs("carol@example.test") == []
    [blob] = relentad.query("SELECT refs FROM blobs")
    assert blob["refs"] == 2
    assert b"Delivered-To: sales@example.test" in relentad.messages("bob@example.test")[0]


def test_same_account_through_two_addresses_gets_one_copy(relentad: Daemon) -> None:
    with smtp(relentad) as client:
        client.sendmail("friend@elsewhere.test", ["info@example.test", "carol@example.test"], message("twice"))
    assert len(relentad.messages("carol@example.test")) == 1


def test_subaddress_reaches_the_user(relentad: Daemon) -> None:
    with smtp(relentad) as client:
        assert client.sendmail("friend@elsewhere.test", ["Alice+Newsletters@EXAMPLE.test"], message("tagged")) == {}
    [stored] = relentad.messages("alice@example.test")
    assert b"Delivered-To: alice+newsletters@example.test" in stored


def test_catch_all_takes_unknown_users_of_its_domain(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon())
    daemon.add_domain("catch.test")
    daemon.add_user("boss@catch.test")
    daemon.add_alias("@catch.test", "carol@example.test")
    daemon.start()
    with smtp(daemon) as client:
        client.sendmail("friend@elsewhere.test", ["whoever@catch.test", "boss@catch.test"], message("catch"))
    assert len(daemon.messages("carol@example.test")) == 1
    assert len(daemon.messages("boss@catch.test")) == 1
    # The catch-all is per domain: example.test has none.
    assert rcpt_reply(daemon, "whoever@example.test")[0] == 550


def test_unknown_user_of_hosted_domain_gets_550_5_1_1(relentad: Daemon) -> None:
    code, text = rcpt_reply(relentad, "nobody@example.test")
    assert (code, text[:5]) == (550, b"5.1.1")


def test_postmaster_of_every_hosted_domain_is_accepted(make_daemon: MakeDaemon) -> None:
    """RFC 5321 §4.5.1: postmaster@ of a hosted domain (any case) and the bare Postmaster MUST be accepted;
    ``[server] postmaster`` names the account they reach where a domain has no postmaster of its own."""
    unset = provision(make_daemon("unset")).start()
    code, text = rcpt_reply(unset, "postmaster@example.test")
    assert (code, text[:5]) == (550, b"5.1.1"), "unset: refused, never silently lost"
    assert "WARN postmaster: [server] postmaster is not set" in unset.cli("doctor", check=False).stdout
    unset.stop()

    daemon = provision(make_daemon("set", settings={"server": {"postmaster": "carol@example.test"}}))
    daemon.add_domain("other.test")
    daemon.add_domain("own.test")
    daemon.add_user("admin@own.test")
    daemon.add_alias("postmaster@own.test", "admin@own.test")
    daemon.start()
    with smtp(daemon) as client:
        client.mail("friend@elsewhere.test")
        for address in ("postmaster@example.test", "PostMaster@Example.Test", "Postmaster", "postmaster@other.test"):
            assert client.rcpt(address)[0] == 250, address
        assert client.rcpt("postmaster@own.test")[0] == 250
        assert client.data(message("to postmaster"))[0] == 250
    [copy] = daemon.messages("carol@example.test")  # one copy for four addresses
    assert b"Delivered-To: postmaster@example.test" in copy
    assert len(daemon.messages("admin@own.test")) == 1, "a domain's own postmaster alias wins"
    assert rcpt_reply(daemon, "nobody@other.test")[0] == 550
    assert (
        "OK   postmaster: postmaster@ of every hosted domain reaches carol@example.test"
        in daemon.cli("doctor", check=False).stdout
    )
    daemon.stop()
    daemon.write_config(server={"postmaster": "nobody@example.test"})
    assert "is not an active account" in daemon.cli("doctor", check=False).stdout


def test_quoted_local_parts_and_nfd_local_parts(relentad: Daemon) -> None:
    """RFC 5321 §4.1.2: a quoted local part is valid in MAIL and RCPT (RCPT still reaches real users only); a
    local part in NFD reaches the account of the same name in NFC."""
    relentad.add_user("m\u00fcller@example.test")
    with smtp(relentad) as client:
        client.command_encoding = "utf-8"
        assert client.docmd('MAIL FROM:<"john doe"@elsewhere.test>')[0] == 250
        code, text = client.docmd('RCPT TO:<"john doe"@example.test>')
        assert (code, text[:5]) == (550, b"5.1.1")
        assert client.docmd('RCPT TO:<"al\\ice"@example.test>')[0] == 250  # a quoted-pair: alice
        assert client.data(message("quoted"))[0] == 250
        assert client.docmd("MAIL FROM:<friend@elsewhere.test> SMTPUTF8")[0] == 250
        assert client.docmd("RCPT TO:<mu\u0308ller@example.test>")[0] == 250
        assert client.data(message("nfd"))[0] == 250
    [copy] = relentad.messages("alice@example.test")
    assert copy.startswith(b'Return-Path: <"john doe"@elsewhere.test>\r\n')
    assert len(relentad.messages("m\u00fcller@example.test")) == 1


@pytest.mark.parametrize(
    "address",
    [
        "victim@elsewhere.test",
        "alice@example.test.",  # trailing dot
        "victim%elsewhere.test@example.test",  # percent hack
        '"victim@elsewhere.test"@example.test',  # quoted local part
        "@example.test:victim@elsewhere.test",  # source route
        "victim@elsewhere.test@example.test",
        "alice@[127.0.0.1]",  # address literal
        "alice@xn--exmple-cua.test",  # IDN lookalike
        "alice",
    ],
)
def test_never_an_open_relay(relentad: Daemon, address: str) -> None:
    with smtp(relentad) as client:
        client.mail("friend@elsewhere.test")
        code, text = client.docmd(f"RCPT TO:<{address}>")
    assert code >= 550, (address, code, text)
    assert relentad.query("SELECT count(*) AS n FROM messages")[0]["n"] == 0


def test_relay_denied_is_554_5_7_1(relentad: Daemon) -> None:
    code, text = rcpt_reply(relentad, "victim@elsewhere.test")
    assert (code, text[:5]) == (554, b"5.7.1")


def test_too_many_recipients_gets_452_4_5_3(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"limits": {"max_recipients": 2}})).start()
    with smtp(daemon) as client:
        client.mail("friend@elsewhere.test")
        assert client.rcpt("alice@example.test")[0] == 250
        assert client.rcpt("bob@example.test")[0] == 250
        code, text = client.rcpt("carol@example.test")
        assert (code, text[:5]) == (452, b"4.5.3")
        client.data(message("two of three"))
    assert len(daemon.messages("alice@example.test")) == 1
    assert daemon.messages("carol@example.test") == []


# -- sizes, lines, syntax --------------------------------------------------------------------------------------


def test_declared_size_over_limit_gets_552_5_3_4(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"limits": {"message_size": 10_000}})).start()
    with smtp(daemon) as client:
        assert client.esmtp_features["size"] == "10000"
        code, text = client.docmd("MAIL FROM:<friend@elsewhere.test> SIZE=20000")
    assert (code, text[:5]) == (552, b"5.3.4")


def test_actual_size_over_limit_gets_552_5_3_4_and_nothing_is_stored(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"limits": {"message_size": 10_000}})).start()
    big = message("big", body="x" * 70 + "\r\n") * 200
    with smtp(daemon) as client:
        client.mail("friend@elsewhere.test")
        client.rcpt("alice@example.test")
        code, text = client.data(big)
        assert (code, text[:5]) == (552, b"5.3.4")
        # The session goes on.
        assert client.noop()[0] == 250
    assert daemon.messages("alice@example.test") == []


def test_over_long_line_gets_500_5_5_2(relentad: Daemon) -> None:
    with smtp(relentad) as client:
        client.mail("friend@elsewhere.test")
        client.rcpt("alice@example.test")
        code, text = client.data(message("long", body="y" * 20_000 + "\r\n"))
        assert (code, text[:5]) == (500, b"5.5.2")
    assert relentad.messages("alice@example.test") == []


def test_unknown_and_malformed_commands_get_5xx_and_the_session_goes_on(relentad: Daemon) -> None:
    with smtp(relentad) as client:
        code, text = client.docmd("FROBNICATE")
        assert code == 500 and text.startswith(b"5.5.2")
        code, text = client.docmd("MAIL FROM:<not an address>")
        assert code in (501, 553)
        code, text = client.docmd("RCPT TO:<alice@example.test>")
        assert code == 503 and text.startswith(b"5.5.1")
        code, text = client.docmd("MAIL FROM:<bad@@address>")
        assert code >= 500
        assert client.sendmail("friend@elsewhere.test", ["alice@example.test"], message("after errors")) == {}
    assert len(relentad.messages("alice@example.test")) == 1


def test_null_sender_is_accepted_for_bounces(relentad: Daemon) -> None:
    with smtp(relentad) as client:
        code, _ = client.docmd("MAIL FROM:<>")
        assert code == 250
        assert client.rcpt("alice@example.test")[0] == 250
        assert client.data(message("bounce"))[0] == 250
    [stored] = relentad.messages("alice@example.test")
    assert stored.startswith(b"Return-Path: <>\r\n")


def test_pipelined_transaction(relentad: Daemon) -> None:
    raw = message("pipelined")
    with socket.create_connection((relentad.host, relentad.smtp_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"EHLO pipeline.test\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        sock.sendall(
            b"MAIL FROM:<friend@elsewhere.test>\r\n"
            b"RCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\n"
            b"DATA\r\n"
        )
        replies = [reader.readline()[:3] for _ in range(5)]
        assert replies == [b"250", b"250", b"550", b"250", b"354"]
        sock.sendall(raw + b".\r\nQUIT\r\n")
        assert reader.readline().startswith(b"250 2.0.0")
        assert reader.readline().startswith(b"221")
    assert relentad.raw_blobs("alice@example.test") == [raw]
    assert relentad.raw_blobs("bob@example.test") == [raw]


def _transaction(raw: bytes) -> bytes:
    return b"MAIL FROM:<friend@elsewhere.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n" + raw + b".\r\n"


def test_data_framing_dot_stuffing_split_markers_and_pipelined_followers(make_daemon: MakeDaemon) -> None:
    """DATA is read in chunks: the end marker may arrive split, what follows it belongs to the next command."""
    daemon = provision(make_daemon(settings={"limits": {"message_size": 2_000}})).start()
    stuffed = b"Subject: dots\r\n\r\n..\r\n..leading\r\nmid.dle\r\n...\r\n"
    unstuffed = b"Subject: dots\r\n\r\n.\r\n.leading\r\nmid.dle\r\n..\r\n"
    dotfirst = b"..starts with a dot\r\n"
    with socket.create_connection((daemon.host, daemon.smtp_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"HELO framing.test\r\n")
        assert reader.readline().startswith(b"250")
        # Two whole transactions, an oversized one and an empty one in one write: each reply in order.
        sock.sendall(
            _transaction(stuffed) + _transaction(dotfirst) + _transaction((b"y" * 70 + b"\r\n") * 40)
            + _transaction(b"") + b"NOOP\r\n"
        )  # fmt: skip
        codes = [reader.readline()[:3] for _ in range(4 * 4 + 1)]
        assert codes == [b"250", b"250", b"354", b"250"] * 2 + [b"250", b"250", b"354", b"552"] + [
            b"250", b"250", b"354", b"250", b"250"
        ]  # fmt: skip
        # The end marker trickling in byte by byte, after a body that ends in a CR.
        sock.sendall(b"MAIL FROM:<friend@elsewhere.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [reader.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        for piece in (b"Subject: slow\r\n\r\nbody\r", b"\n", b".", b"\r", b"\n"):
            sock.sendall(piece)
            time.sleep(0.05)
        assert reader.readline()[:3] == b"250"
    assert daemon.raw_blobs("alice@example.test") == [
        unstuffed,
        b".starts with a dot\r\n",
        b"",
        b"Subject: slow\r\n\r\nbody\r\n",
    ]


def test_client_hanging_up_mid_data_frees_its_slot_and_stores_nothing(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"limits": {"connections_per_ip": 1}})).start()
    with greeted(daemon) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"HELO gone.test\r\n" + _transaction(b"")[: -len(b".\r\n")] + b"Subject: half\r\n\r\nhal")
        assert [reader.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        sock.shutdown(socket.SHUT_WR)  # half-close: the server must give up the message and close
        assert reader.read() == b""
    greeted(daemon).close()  # the one connection this IP may have is free again
    assert daemon.messages("alice@example.test") == []


def test_8bit_and_smtputf8_messages_are_stored_byte_identical(relentad: Daemon) -> None:
    eight_bit = (
        "From: Jürgen <j@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Grüße\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Schöne Grüße, ça va? 日本語\r\n"
    ).encode()
    latin1 = b"From: x@elsewhere.test\r\nSubject: caf\xe9\r\n\r\nna\xefve \xff\xfe bytes\r\n.leading dot\r\n"
    with smtp(relentad) as client:
        assert client.sendmail("friend@elsewhere.test", ["alice@example.test"], eight_bit, ["BODY=8BITMIME"]) == {}
        assert client.sendmail("friend@elsewhere.test", ["alice@example.test"], latin1, ["BODY=8BITMIME"]) == {}
        refused = client.sendmail(
            "jürgen@elsewhere.test", ["alice@example.test"], eight_bit + b"utf8\r\n", ["SMTPUTF8", "BODY=8BITMIME"]
        )
        assert refused == {}
    stored = relentad.raw_blobs("alice@example.test")
    assert stored == [eight_bit, latin1, eight_bit + b"utf8\r\n"]
    assert b"with UTF8SMTP" in relentad.messages("alice@example.test")[2]


def test_bare_lf_and_no_trailing_newline_are_kept_as_sent(relentad: Daemon) -> None:
    with socket.create_connection((relentad.host, relentad.smtp_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"HELO lf.test\r\nMAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        for _ in range(4):
            reader.readline()
        sock.sendall(b"Subject: lf\nX-Odd: yes\n\nline one\nline two\r\n.\r\n")
        assert reader.readline().startswith(b"250")
    assert relentad.raw_blobs("alice@example.test") == [b"Subject: lf\nX-Odd: yes\n\nline one\nline two\r\n"]


# -- TLS ----------------------------------------------------------------------------------------------------


def test_failed_starttls_handshake_is_one_info_line(relentad: Daemon) -> None:
    """A client that fails the STARTTLS handshake (here: not TLS at all) is logged in one line, not with an ERROR
    and a traceback (every scanner on the internet would fill the log)."""
    with greeted(relentad) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"EHLO scanner.test\r\nSTARTTLS\r\n")
        while not reader.readline().startswith(b"220 "):
            pass
        sock.sendall(b"this is not a TLS record\r\n")
        reader.read()  # perhaps a TLS alert, then the close
    deadline = time.monotonic() + 5
    while "smtp STARTTLS failed" not in relentad.log():
        assert time.monotonic() < deadline, relentad.log()
        time.sleep(0.05)
    assert "SMTP session exception" not in relentad.log() and "Traceback" not in relentad.log()


def test_starttls_then_delivery_records_tls_in_received(relentad: Daemon) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtp(relentad) as client:
        client.starttls(context=context)
        client.ehlo("client.elsewhere.test")
        assert not client.has_extn("starttls")
        code, text = client.docmd("STARTTLS")  # aiosmtpd answered 220 and then lost the connection
        assert (code, text) == (554, b"5.5.1 TLS already active"), "as Postfix; the session goes on"
        assert client.sendmail("friend@elsewhere.test", ["alice@example.test"], message("secret")) == {}
    [stored] = relentad.messages("alice@example.test")
    assert b"with ESMTPS id" in stored
    assert b"(using TLSv1." in stored


def test_auth_on_the_mx_gets_502_with_or_without_tls_and_help_leaves_it_out(relentad: Daemon) -> None:
    """The MX never authenticates and its EHLO does not offer AUTH; the command used to get 538 before TLS and
    535 for the right password after it, and HELP listed it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    plain = base64.b64encode(f"\0alice@example.test\0{PASSWORD}".encode()).decode()
    with smtp(relentad) as client:
        assert client.docmd("AUTH", f"PLAIN {plain}") == (502, b"5.5.1 AUTH is not available on this port")
        client.starttls(context=context)
        client.ehlo("client.elsewhere.test")
        assert client.docmd("AUTH", f"PLAIN {plain}") == (502, b"5.5.1 AUTH is not available on this port")
        code, listed = client.docmd("HELP")
        assert code == 250 and b"MAIL" in listed and b"AUTH" not in listed
        assert client.docmd("HELP", "AUTH")[0] == 501
        assert client.sendmail("friend@elsewhere.test", ["alice@example.test"], message("after auth")) == {}


# -- concurrency and tools ----------------------------------------------------------------------------------


async def test_many_concurrent_sessions_all_delivered(make_daemon: MakeDaemon) -> None:
    relentad = provision(make_daemon(settings={"limits": {"connections_per_ip": 100}})).start()

    async def send(i: int) -> None:
        await aiosmtplib.send(
            message(f"concurrent {i}"),
            sender="friend@elsewhere.test",
            recipients=["alice@example.test", "bob@example.test"],
            hostname=relentad.host,
            port=relentad.smtp_port,
            start_tls=False,
            timeout=30,
        )

    await asyncio.gather(*(send(i) for i in range(60)))
    assert len(relentad.messages("alice@example.test")) == 60
    assert len(relentad.messages("bob@example.test")) == 60
    uids = [
        r["uid"]
        for r in relentad.query(
            "SELECT uid FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id "
            "WHERE x.name = 'INBOX' AND x.account_id = 1 ORDER BY uid"
        )
    ]
    assert uids == list(range(1, 61))


def test_per_ip_connection_limit_answers_421(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"limits": {"connections_per_ip": 3}})).start()
    time.sleep(0.5)  # let the daemon see start()'s readiness probe disconnect
    held = [socket.create_connection((daemon.host, daemon.smtp_port), timeout=10) for _ in range(3)]
    try:
        for sock in held:
            assert sock.recv(100).startswith(b"220")
        with socket.create_connection((daemon.host, daemon.smtp_port), timeout=10) as extra:
            assert extra.recv(100).startswith(b"421 4.7.0")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    with smtp(daemon) as client:  # slots are released when connections close
        assert client.noop()[0] == 250


def test_idle_timeout_answers_421(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"limits": {"command_timeout": 1.0}})).start()
    with socket.create_connection((daemon.host, daemon.smtp_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        assert reader.readline().startswith(b"421 4.4.2")
        assert reader.readline() == b""


def test_stalled_data_times_out_with_421_and_stores_nothing(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"limits": {"data_timeout": 1.0}})).start()
    with socket.create_connection((daemon.host, daemon.smtp_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"HELO slow.test\r\nMAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        for _ in range(4):
            reader.readline()
        sock.sendall(b"Subject: never finished\r\n\r\nhalf a message")
        assert reader.readline().startswith(b"421 4.4.2")
    assert daemon.messages("alice@example.test") == []


@pytest.mark.skipif(shutil.which("swaks") is None, reason="Debian's swaks is not installed (scripts/test installs it)")
def test_swaks_delivers_over_starttls(relentad: Daemon) -> None:
    result = subprocess.run(
        [
            "swaks", "--server", f"{relentad.host}:{relentad.smtp_port}", "--tls",
            "--from", "friend@elsewhere.test", "--to", "bob@example.test",
            "--header", "Subject: via swaks", "--body", "Sent with swaks.",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 OK delivered as" in result.stdout
    [stored] = relentad.messages("bob@example.test")
    assert b"Subject: via swaks" in stored and b"Sent with swaks." in stored


@pytest.mark.skipif(shutil.which("swaks") is None, reason="Debian's swaks is not installed (scripts/test installs it)")
def test_swaks_relay_attempt_is_refused(relentad: Daemon) -> None:
    result = subprocess.run(
        ["swaks", "--server", f"{relentad.host}:{relentad.smtp_port}", "--from", "a@example.test",
         "--to", "victim@elsewhere.test"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "554 5.7.1" in result.stdout


def test_transaction_log_line(relentad: Daemon) -> None:
    with smtp(relentad) as client:
        client.sendmail("friend@elsewhere.test", ["alice@example.test"], message("logged"))
    relentad.stop()
    lines = [line for line in relentad.log().splitlines() if "smtp tx=" in line]
    assert len(lines) == 1
    line = lines[0]
    for part in ("peer=127.0.0.1", "from=<friend@elsewhere.test>", "rcpt=<alice@example.test>", "result=250", "ms="):
        assert part in line, line
