"""Submission (587 STARTTLS, 465 implicit TLS) over real sockets with smtplib, aiosmtplib and swaks.

Covers AUTH (TLS only, PLAIN and LOGIN, throttling, login history, password change), who may send as what,
the header fixes (Sender, Message-ID, Date, Received, Bcc), local delivery with a Sent copy, queueing of remote
recipients and the send counters.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import dkim as dkimpy
import pytest

from relentad.queue import dkim
from relentad.tls import make_self_signed
from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import PASSWORD, Daemon

SEEN = 1


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def message(
    from_: str = "Alice <alice@example.test>", to: str = "bob@example.test", subject: str = "hi", extra: str = ""
) -> bytes:
    headers = [f"From: {from_}", f"To: {to}", f"Subject: {subject}"]
    if extra:
        headers.append(extra)
    return ("\r\n".join(headers) + "\r\n\r\nHello from submission.\r\n").encode()


def submit(daemon: Daemon, user: str = "alice@example.test", password: str = PASSWORD) -> smtplib.SMTP:
    """An authenticated smtplib session on the STARTTLS port."""
    client = smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10)
    client.ehlo("laptop.example.test")
    client.starttls(context=tls_context())
    client.ehlo("laptop.example.test")
    client.user, client.password = user, password
    code, text = client.auth("PLAIN", client.auth_plain)  # one attempt (smtplib.login would try every mechanism)
    assert code == 235, text
    return client


# No DNS answers here (a port nobody serves): remote recipients stay queued, deferred, and no test ever asks
# the machine's resolver. tests/e2e/test_outbound.py delivers for real, with dnsmasq.
NO_DNS = {"dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5}}


@pytest.fixture
def relentad(make_daemon: MakeDaemon) -> Daemon:
    return provision(make_daemon(submission=True, settings=NO_DNS)).start()


# -- AUTH ---------------------------------------------------------------------------------------------------


def test_auth_only_after_starttls(relentad: Daemon) -> None:
    with smtplib.SMTP(relentad.host, relentad.submission_port, timeout=10) as client:
        client.ehlo("laptop.example.test")
        assert client.has_extn("starttls")
        assert not client.has_extn("auth"), "AUTH must not be offered before TLS"
        token = base64.b64encode(b"\0alice@example.test\0" + PASSWORD.encode()).decode()
        code, text = client.docmd("AUTH", f"PLAIN {token}")
        assert (code, text[:6]) == (538, b"5.7.11")
        code, text = client.docmd("MAIL", "FROM:<alice@example.test>")
        assert (code, text[:5]) == (530, b"5.7.0")
        client.starttls(context=tls_context())
        client.ehlo("laptop.example.test")
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        code, listed = client.docmd("HELP")
        assert code == 250 and b"AUTH" in listed
        assert client.login("alice@example.test", PASSWORD)[0] == 235


def test_only_real_mechanisms_are_offered(relentad: Daemon) -> None:
    """A handler helper once named auth_allowed was advertised as a mechanism "allowed" and crashed when used."""
    with smtplib.SMTP(relentad.host, relentad.submission_port, timeout=10) as client:
        client.ehlo("laptop.example.test")
        client.starttls(context=tls_context())
        client.ehlo("laptop.example.test")
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        code, text = client.docmd("AUTH", "allowed")
        assert (code, text[:5]) == (504, b"5.5.4")
        assert client.noop()[0] == 250


def test_plaintext_auth_on_loopback_only_when_configured(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(submission=True, settings={"auth": {"plaintext_loopback": True}})).start()
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as client:
        client.ehlo("laptop.example.test")
        assert client.has_extn("auth")
        assert client.login("alice@example.test", PASSWORD)[0] == 235


def test_implicit_tls_and_auth_login(relentad: Daemon) -> None:
    with smtplib.SMTP_SSL(relentad.host, relentad.submissions_port, timeout=10, context=tls_context()) as client:
        client.ehlo("laptop.example.test")
        assert not client.has_extn("starttls")
        client.user, client.password = "alice@example.test", PASSWORD
        code, _ = client.auth("LOGIN", client.auth_login)
        assert code == 235
        assert client.sendmail("alice@example.test", ["bob@example.test"], message()) == {}
    [stored] = relentad.messages("bob@example.test")
    assert b"with ESMTPSA" in stored


def test_overlong_auth_answer_gets_500_5_5_6_and_the_session_goes_on(relentad: Daemon) -> None:
    """RFC 4954 §4: an AUTH answer longer than the line limit is refused with 500 5.5.6; the rest of the line is
    dropped (not read as commands) and the client may try again. It used to get asyncio's ValueError text."""
    with smtplib.SMTP_SSL(relentad.host, relentad.submissions_port, timeout=10, context=tls_context()) as client:
        client.ehlo("laptop.example.test")
        for mechanism, too_long in (("LOGIN", b"A" * 100_000), ("PLAIN", b"B" * 10_100)):
            assert client.docmd("AUTH", mechanism)[0] == 334
            client.send(too_long + b"\r\n")
            assert client.getreply() == (500, b"5.5.6 Authentication Exchange line is too long")
            assert client.noop()[0] == 250
        assert client.login("alice@example.test", PASSWORD)[0] == 235
    assert "SMTP session exception" not in relentad.log()


def test_wrong_password_throttling_and_login_history(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(submission=True, settings={"auth": {"failures_per_ip": 3}})).start()
    for _ in range(3):
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            submit(daemon, password="wrong password")
        assert failed.value.smtp_code == 535
    with pytest.raises(smtplib.SMTPAuthenticationError) as throttled:
        submit(daemon)  # even the right password is refused while the IP is throttled
    assert throttled.value.smtp_code == 454
    rows = daemon.query("SELECT login, ip, protocol, result, reason FROM login_history ORDER BY id")
    assert [r["result"] for r in rows] == ["failure"] * 4
    assert {r["protocol"] for r in rows} == {"smtp"} and {r["ip"] for r in rows} == {"127.0.0.1"}
    assert rows[-1]["reason"] == "throttled-ip"


def test_successful_logins_are_recorded_and_a_password_change_drops_the_cache(relentad: Daemon) -> None:
    submit(relentad).quit()
    submit(relentad).quit()  # served from the credential cache
    relentad.cli("user", "passwd", "alice@example.test", "--password-stdin", input="a new password 42\n")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submit(relentad)
    submit(relentad, password="a new password 42").quit()
    rows = relentad.query(
        "SELECT h.result, h.reason FROM login_history h JOIN accounts a ON a.id = h.account_id ORDER BY h.id"
    )
    assert [(r["result"], r["reason"]) for r in rows] == [
        ("success", ""),
        ("success", "cached"),
        ("failure", "bad-password"),
        ("success", ""),
    ]


# -- who may send as what -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "author",
    ["alice@example.test", "Alice <ALICE@example.test>", "alice+news@example.test", "Sales <sales@example.test>"],
)
def test_owned_from_addresses_are_accepted(relentad: Daemon, author: str) -> None:
    with submit(relentad) as client:
        assert client.sendmail("alice@example.test", ["bob@example.test"], message(from_=author)) == {}


@pytest.mark.parametrize("author", ["carol@example.test", "info@example.test", "ceo@elsewhere.test"])
def test_from_not_owned_is_refused(relentad: Daemon, author: str) -> None:
    with submit(relentad) as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("alice@example.test", ["bob@example.test"], message(from_=author))
    assert refused.value.smtp_code == 553
    assert refused.value.smtp_error.startswith(b"5.7.1")
    assert relentad.messages("bob@example.test") == []


def test_mail_from_not_owned_is_refused(relentad: Daemon) -> None:
    with submit(relentad) as client:
        code, text = client.mail("carol@example.test")
        assert (code, text[:5]) == (553, b"5.7.1")


def test_send_as_grant_from_config(make_daemon: MakeDaemon) -> None:
    daemon = provision(
        make_daemon(submission=True, settings={"submission": {"send_as": ["alice@example.test=@partner.test"]}})
    ).start()
    with submit(daemon) as client:
        assert client.sendmail("alice@example.test", ["bob@example.test"], message(from_="x@partner.test")) == {}


# -- header fixes, local delivery, Sent copy ------------------------------------------------------------------


def test_a_second_starttls_is_refused_and_the_session_goes_on(relentad: Daemon) -> None:
    with submit(relentad) as client:
        code, text = client.docmd("STARTTLS")
        assert (code, text) == (554, b"5.5.1 TLS already active")
        assert client.noop()[0] == 250
        assert client.sendmail("alice@example.test", ["bob@example.test"], message()) == {}
    assert len(relentad.messages("bob@example.test")) == 1


def test_local_delivery_with_header_fixes_and_sent_copy(relentad: Daemon) -> None:
    raw = message(from_="Sales <sales@example.test>", extra="Bcc: secret@example.test")
    with submit(relentad) as client:
        assert client.sendmail("alice@example.test", ["bob@example.test", "carol@example.test"], raw) == {}
    [stored] = relentad.messages("bob@example.test")
    parsed = email.message_from_bytes(stored)
    assert parsed["Sender"] == "<alice@example.test>"
    assert parsed["Message-ID"].endswith("@mx.example.test>")
    assert parsed["Date"]
    assert parsed["Bcc"] is None
    [submitted] = parsed.get_all("Received")  # one hop, one Received: no second one for the local copy
    assert "authenticated as alice@example.test" in submitted
    assert b"127.0.0.1" not in stored, "hide_client_ip is on by default, local copies too"
    assert len(relentad.messages("carol@example.test")) == 1
    [sent] = relentad.query(
        """SELECT m.flags FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id
           JOIN accounts a ON a.id = x.account_id WHERE a.email = ? AND x.name = 'Sent'""",
        "alice@example.test",
    )
    assert sent["flags"] & SEEN
    [copy] = relentad.raw_blobs("alice@example.test", "Sent")
    assert copy == relentad.raw_blobs("bob@example.test")[0], "one stored message for every copy"


def test_existing_message_id_and_date_are_kept(relentad: Daemon) -> None:
    raw = message(extra="Message-ID: <keep.me@laptop>\r\nDate: Wed, 25 Nov 2026 08:00:00 +0000")
    with submit(relentad) as client:
        client.sendmail("alice@example.test", ["bob@example.test"], raw)
    parsed = email.message_from_bytes(relentad.messages("bob@example.test")[0])
    assert parsed["Message-ID"] == "<keep.me@laptop>"
    assert parsed["Date"] == "Wed, 25 Nov 2026 08:00:00 +0000"
    assert parsed["Sender"] is None, "envelope sender and From agree"


@pytest.mark.parametrize(
    "extra",
    [
        "Date: Wed, 25 Nov 2026 08:00:00 +0000\r\nDate: Wed, 25 Nov 2026 09:00:00 +0000",
        "Date: garbage",
        "Message-ID: <one@laptop>\r\nMessage-ID: <two@laptop>",
        "Sender: alice@example.test\r\nSender: alice+x@example.test",
        "Sender: alice@example.test, alice+x@example.test",
    ],
)
def test_invalid_origination_fields_are_refused(relentad: Daemon, extra: str) -> None:
    with submit(relentad) as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("alice@example.test", ["bob@example.test"], message(extra=extra))
    assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (550, b"5.6.0")
    assert relentad.messages("bob@example.test") == []


def test_added_date_and_received_are_in_utc(relentad: Daemon) -> None:
    with submit(relentad) as client:
        client.sendmail("alice@example.test", ["bob@example.test"], message())
    parsed = email.message_from_bytes(relentad.messages("bob@example.test")[0])
    assert parsed["Date"].endswith(" +0000"), "RFC 5322 §3.3: UTC is +0000; -0000 means 'zone unknown'"
    assert parsed["Received"].endswith(" +0000")


def test_null_sender_for_read_receipts(relentad: Daemon) -> None:
    """RFC 8098 §2.1: an MDN is sent with MAIL FROM:<>; the From check still applies and nothing bounces it."""
    mdn = message(subject="Read: hi", extra="Content-Type: multipart/report; report-type=disposition-notification")
    with submit(relentad) as client:
        assert client.sendmail("", ["bob@example.test", "someone@elsewhere.test"], mdn) == {}
        assert client.mail("")[0] == 250
        assert client.rcpt("bob@example.test")[0] == 250
        code, text = client.data(message(from_="bob@example.test"))
        assert (code, text[:5]) == (553, b"5.7.1"), "From must still be the user's"
    [stored] = relentad.messages("bob@example.test")
    assert stored.startswith(b"Return-Path: <>\r\n") and b"\r\nSender:" not in stored
    [queued] = json.loads(relentad.cli("queue", "list", "--json").stdout)
    assert queued["mail_from"] == ""


def test_bare_cr_is_a_line_break_for_the_checks_the_signature_and_every_copy(relentad: Daemon) -> None:
    """The queue's aiosmtplib sends a bare CR (or LF) as CRLF: the From check, the DKIM signature, the local copies
    and the queued copy all see those CRLFs, so a bare CR neither hides a second From nor breaks the body hash."""
    relentad.cli("dkim", "generate", "example.test", "--selector", "s1")
    record = dkim.txt_value((relentad.root / "data" / "dkim" / "example.test" / "s1.pem").read_bytes())
    hidden = b"Subject: x\rFrom: Victim <victim@elsewhere.test>\r\r\nFrom: alice@example.test\r\n"
    hidden += b"To: bob@example.test\r\n\r\nHi\r\n"
    raw = message().replace(b"Hello from", b"Hel\rlo\nfrom")
    with submit(relentad) as client:
        assert client.mail("alice@example.test")[0] == 250
        assert client.rcpt("someone@elsewhere.test")[0] == 250
        code, text = client.data(hidden)
        assert (code, text[:5]) == (553, b"5.7.1"), "the receiver would see From: Victim"
        assert client.sendmail("alice@example.test", ["bob@example.test", "someone@elsewhere.test"], raw) == {}
    [stored] = relentad.raw_blobs("bob@example.test")
    [queued] = relentad.query("SELECT data FROM queue_messages")
    assert queued["data"] == stored == relentad.raw_blobs("alice@example.test", "Sent")[0]
    assert b"\r\n\r\nHel\r\nlo\r\nfrom submission.\r\n" in stored
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", stored) is None, "no bare CR or LF left"

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return record.encode() if name.rstrip(b".") == b"s1._domainkey.example.test" else b""

    assert dkimpy.verify(stored, dnsfunc=dnsfunc)


def test_obsolete_header_syntax_is_signed_and_a_line_without_colon_refused(relentad: Daemon) -> None:
    """``Subject : hi`` (RFC 5322 §4.5.8) made dkimpy fail: 451 to the client, which retried forever."""
    relentad.cli("dkim", "generate", "example.test", "--selector", "s1")
    record = dkim.txt_value((relentad.root / "data" / "dkim" / "example.test" / "s1.pem").read_bytes())
    with submit(relentad) as client:
        raw = message().replace(b"Subject: hi", b"Subject : hi")
        assert client.sendmail("alice@example.test", ["bob@example.test"], raw) == {}
        assert client.mail("alice@example.test")[0] == 250
        assert client.rcpt("bob@example.test")[0] == 250
        code, text = client.data(message().replace(b"Subject: hi", b"Subject hi"))
        assert (code, text[:5]) == (550, b"5.6.0")
    [stored] = relentad.raw_blobs("bob@example.test")
    assert b"\r\nSubject: hi\r\n" in stored

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return record.encode() if name.rstrip(b".") == b"s1._domainkey.example.test" else b""

    assert dkimpy.verify(stored, dnsfunc=dnsfunc)


def test_two_authors_with_the_null_sender_get_the_logins_sender(relentad: Daemon) -> None:
    """RFC 5322 §3.6.2: a From with more than one mailbox needs a Sender, also when MAIL FROM is <>."""
    with submit(relentad) as client:
        raw = message(from_="alice@example.test, Sales <sales@example.test>")
        assert client.sendmail("", ["bob@example.test"], raw) == {}
    parsed = email.message_from_bytes(relentad.messages("bob@example.test")[0])
    assert parsed.get_all("Sender") == ["<alice@example.test>"]


def test_a_running_daemon_signs_with_a_new_key_only_once_it_is_activated(relentad: Daemon) -> None:
    def selector_used() -> str:
        with submit(relentad) as client:
            client.sendmail("alice@example.test", ["bob@example.test"], message())
        signature = email.message_from_bytes(relentad.messages("bob@example.test")[-1])["DKIM-Signature"]
        return dict(re.findall(r"\b([a-z]+)=([^;\s]+)", signature))["s"]

    relentad.cli("dkim", "generate", "example.test", "--selector", "s1")
    assert selector_used() == "s1"
    relentad.cli("dkim", "generate", "example.test", "--selector", "s2")
    assert selector_used() == "s1", "s2's DNS record cannot exist yet"
    relentad.cli("dkim", "activate", "example.test", "s2")
    assert selector_used() == "s2"


def test_unknown_local_user_is_refused(relentad: Daemon) -> None:
    with submit(relentad) as client:
        client.mail("alice@example.test")
        code, text = client.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")


def test_remote_recipient_is_queued_and_counted(relentad: Daemon) -> None:
    with submit(relentad) as client:
        refused = client.sendmail("alice@example.test", ["bob@example.test", "someone@elsewhere.test"], message())
    assert refused == {}
    listed = relentad.cli("queue", "list", "--json")
    [queued] = json.loads(listed.stdout)
    assert queued["mail_from"] == "alice@example.test"
    assert [r["address"] for r in queued["recipients"]] == ["someone@elsewhere.test"]
    [day] = relentad.query("SELECT recipients FROM send_counts WHERE period = 'day'")
    assert day["recipients"] == 2
    relentad.cli("queue", "delete", str(queued["id"]))
    assert json.loads(relentad.cli("queue", "list", "--json").stdout) == []
    missing = relentad.cli("queue", "retry", "999", check=False)
    assert missing.returncode != 0 and "no such queued message" in missing.stderr


async def test_aiosmtplib_client(relentad: Daemon) -> None:
    kwargs: dict[str, Any] = {"hostname": relentad.host, "port": relentad.submission_port, "tls_context": tls_context()}
    async with aiosmtplib.SMTP(start_tls=True, **kwargs) as client:
        await client.login("alice@example.test", PASSWORD)
        errors, response = await client.sendmail("alice@example.test", ["bob@example.test"], message())
    assert errors == {} and response.startswith("2.0.0")


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks(relentad: Daemon) -> None:
    server = f"{relentad.host}:{relentad.submission_port}"
    command = ["swaks", "--server", server, "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.test"]
    command += ["--auth-password", PASSWORD, "--from", "alice@example.test", "--to", "bob@example.test"]
    command += ["--header", "Subject: via swaks"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"Subject: via swaks" in relentad.messages("bob@example.test")[0]


def test_sighup_gives_new_465_connections_a_renewed_certificate(relentad: Daemon) -> None:
    before = ssl.get_server_certificate((relentad.host, relentad.submissions_port))
    tls_dir = relentad.root / "data" / "tls"
    make_self_signed(tls_dir / "cert.pem", tls_dir / "key.pem", ["renewed.example.test"])
    relentad.signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while ssl.get_server_certificate((relentad.host, relentad.submissions_port)) == before:
        assert time.monotonic() < deadline, "465 still serves the old certificate"
        time.sleep(0.1)
    with submit(relentad) as client:  # 587 and 465 both keep working
        assert client.noop()[0] == 250


def test_the_domains_footer_is_added_signed_and_kept_in_every_copy(relentad: Daemon, tmp_path: Path) -> None:
    """``relentad domain footer``: what alice sends carries example.test's footer in its text, in the copy bob
    gets, her Sent copy and the queued one alike, under a DKIM signature that verifies; --off stops it."""
    relentad.cli("dkim", "generate", "example.test", "--selector", "s1")
    record = dkim.txt_value((relentad.root / "data" / "dkim" / "example.test" / "s1.pem").read_bytes())
    text = tmp_path / "footer.txt"
    text.write_text("Example GmbH · Berlin\nHRB 12345\n", encoding="utf-8")
    shown = relentad.cli("domain", "footer", "example.test", "--text-file", str(text)).stdout
    assert "| Example GmbH · Berlin" in shown and "| HRB 12345" in shown
    assert json.loads(relentad.cli("domain", "footer", "example.test", "--json").stdout)["text"] == (
        "Example GmbH · Berlin\r\nHRB 12345"
    )
    with submit(relentad) as client:
        assert client.sendmail("alice@example.test", ["bob@example.test", "someone@elsewhere.test"], message()) == {}
    [stored] = relentad.raw_blobs("bob@example.test")
    [queued] = relentad.query("SELECT data FROM queue_messages")
    assert queued["data"] == stored == relentad.raw_blobs("alice@example.test", "Sent")[0]
    body = email.message_from_bytes(stored, policy=email.policy.default).get_content()
    assert body.replace("\r\n", "\n").endswith("Hello from submission.\n\nExample GmbH · Berlin\nHRB 12345\n")

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return record.encode() if name.rstrip(b".") == b"s1._domainkey.example.test" else b""

    assert dkimpy.verify(stored, dnsfunc=dnsfunc), "signed with the footer"
    assert "footer of example.test removed" in relentad.cli("domain", "footer", "example.test", "--off").stdout
    with submit(relentad) as client:
        client.sendmail("alice@example.test", ["bob@example.test"], message(subject="later"))
    assert b"HRB 12345" not in relentad.raw_blobs("bob@example.test")[-1]
    for bad in (["nowhere.test", "--text-file", str(text)], ["example.test", "--html-file", str(text)]):
        result = relentad.cli("domain", "footer", *bad, check=False)
        assert result.returncode == 1 and result.stderr.startswith("Error: "), result.stderr
