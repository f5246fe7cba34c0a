"""Greylisting end to end: the real daemon's MX with ``[greylist]`` on (a one-second delay, loopback not exempt),
smtplib as the sending server that retries, submission making a confirmed contact, the CLI's allow-list."""

from __future__ import annotations

import json
import smtplib
import time

import pytest

from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import PASSWORD, Daemon, free_port, wait_for
from tests.support.imap import tls_client_context
from tests.support.metrics import http_get, sample

ALICE, BOB = "alice@example.test", "bob@example.test"
GREYLIST = {"enabled": True, "delay": "1s", "exempt_networks": []}


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def relentad(make_daemon: MakeDaemon, metrics_port: int) -> Daemon:
    settings = {"mailauth": {"verify": False}, "greylist": GREYLIST, "listen": {"metrics": f"127.0.0.1:{metrics_port}"}}
    daemon = provision(make_daemon(submission=True, settings=settings))
    daemon.add_alias("postmaster@example.test", ALICE)
    return daemon.start()


def rcpt(daemon: Daemon, sender: str, recipient: str) -> tuple[int, bytes]:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        client.ehlo("sender.elsewhere.test")
        client.mail(sender)
        return client.rcpt(recipient)


def send(daemon: Daemon, sender: str, recipients: list[str], subject: str) -> dict[str, tuple[int, bytes]]:
    raw = f"From: <{sender}>\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        try:
            return client.sendmail(sender, recipients, raw)
        except smtplib.SMTPRecipientsRefused as exc:
            return exc.recipients


def test_a_retry_after_the_delay_passes_and_the_triplet_is_known_from_then_on(
    relentad: Daemon, metrics_port: int
) -> None:
    code, text = rcpt(relentad, "shop@elsewhere.test", ALICE)
    assert (code, text[:23]) == (451, b"4.7.1 Greylisted: pleas"), text
    assert rcpt(relentad, "shop@elsewhere.test", ALICE)[0] == 451, "an early retry waits too"
    assert rcpt(relentad, "shop@elsewhere.test", "postmaster@example.test")[0] == 250, "postmaster is never delayed"
    time.sleep(1.1)
    assert send(relentad, "shop@elsewhere.test", [ALICE], "first") == {}
    wait_for("the first message", lambda: relentad.messages(ALICE))
    assert send(relentad, "shop@elsewhere.test", [ALICE], "second") == {}, "known: no delay any more"
    # one transaction, two recipients: the known one is taken, the new triplet deferred (the sender retries it)
    refused = send(relentad, "shop@elsewhere.test", [ALICE, BOB], "third")
    assert list(refused) == [BOB] and refused[BOB][0] == 451
    assert len(wait_for("three for alice", lambda: len(relentad.messages(ALICE)) == 3 and relentad.messages(ALICE)))
    # a VERP sender of the same list is the same triplet: digits do not make a new one
    time.sleep(1.1)
    assert rcpt(relentad, "bounce-17@lists.elsewhere.test", ALICE)[0] == 451
    time.sleep(1.1)
    assert rcpt(relentad, "bounce-4242@lists.elsewhere.test", ALICE)[0] == 250
    assert "greylist: deferred <shop@elsewhere.test> -> <bob@example.test> from 127.0.0.0/24" in relentad.log()
    _status, text = http_get(metrics_port, "/metrics")
    assert sample(text, "relentad_greylist_total", 'result="deferred"') == 4
    assert sample(text, "relentad_greylist_total", 'result="passed"') == 2
    assert sample(text, "relentad_greylist_total", 'result="exempt"') == 1  # postmaster
    assert sample(text, "relentad_smtp_rejected_total", 'listener="smtp",reason="greylist"') == 4
    shown = json.loads(relentad.cli("greylist", "--json").stdout)
    assert shown == {"enabled": True, "waiting": 1, "passed": 2, "clients": 0}, "bob's triplet waits"
    assert "greylisting on: 1 triplet(s) waiting for a retry, 2 let through" in relentad.cli("greylist").stdout
    # the state is in the database: a restart keeps what passed
    relentad.stop()
    relentad.start()
    assert rcpt(relentad, "shop@elsewhere.test", ALICE)[0] == 250


def test_known_correspondents_are_never_delayed(relentad: Daemon) -> None:
    with smtplib.SMTP(relentad.host, relentad.submission_port, timeout=10) as client:
        client.starttls(context=tls_client_context())
        client.login(ALICE, PASSWORD)
        raw = f"From: <{ALICE}>\r\nTo: partner@elsewhere.test\r\nSubject: Offer\r\n\r\nHello.\r\n".encode()
        assert client.sendmail(ALICE, ["partner@elsewhere.test"], raw) == {}
    wait_for("alice's Sent copy", lambda: relentad.messages(ALICE, "Sent"))
    assert rcpt(relentad, "partner@elsewhere.test", ALICE)[0] == 250, "a contact alice wrote to"
    assert rcpt(relentad, "partner@elsewhere.test", BOB)[0] == 451, "not bob's correspondent"
    relentad.cli("spam", "allow", BOB, "@trusted.elsewhere.test")
    assert rcpt(relentad, "anyone@trusted.elsewhere.test", BOB)[0] == 250, "on bob's allow-list"


def test_exempt_networks_and_off(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(settings={"mailauth": {"verify": False}, "greylist": {"enabled": True}})
    provision(daemon).start()
    assert rcpt(daemon, "shop@elsewhere.test", ALICE)[0] == 250, "loopback is exempt by default"
    daemon.stop()
    daemon.write_config(greylist={"enabled": False, "exempt_networks": []})
    daemon.start()
    assert rcpt(daemon, "shop@elsewhere.test", ALICE)[0] == 250
    assert not daemon.query("SELECT * FROM greylist")
