"""Outbound delivery between real servers: two relentad instances, dnsmasq, and aiosmtpd destinations.

The world: dnsmasq serves MX and A records for a.test (relentad on 127.0.0.2:25), b.test (relentad on
127.0.0.3:25) and c.test (an aiosmtpd server the test runs on 127.0.0.4:25 and scripts to answer 451, 550...),
plus a.test's DKIM key. alice@a.test submits through a.test's submission port; the queue finds the MX in DNS
and delivers over SMTP with opportunistic STARTTLS. Needs root (port 25) and dnsmasq; skipped otherwise.
"""

from __future__ import annotations

import email
import json
import os
import smtplib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
from aiosmtpd.controller import Controller

from relentad.dns import make_sync_resolver
from relentad.queue import dkim
from relentad.tls import make_self_signed
from tests.e2e.conftest import MakeDaemon
from tests.support.daemon import PASSWORD, Daemon, wait_for
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq, DnsRecords
from tests.support.dsn import status_blocks
from tests.support.smtp_peer import DsnSMTP, Sink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binds port 25 on 127.0.0.2-4: needs root")

A_HOST, B_HOST, SINK_HOST = "127.0.0.2", "127.0.0.3", "127.0.0.4"
FAST_QUEUE = {"retry_schedule": ["1s"], "scan_interval": "1s", "timeout": "60s"}


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def message(to: str, subject: str = "across the world") -> bytes:
    return (
        f"From: Alice <alice@a.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello from a.test.\r\n"
    ).encode()


def submit(daemon: Daemon, recipients: list[str], raw: bytes) -> None:
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as client:
        client.starttls(context=tls_context())
        client.login("alice@a.test", PASSWORD)
        assert client.sendmail("alice@a.test", recipients, raw) == {}


def queue_list(daemon: Daemon) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(daemon.cli("queue", "list", "--json").stdout)
    return result


@dataclass
class World:
    dns: Dnsmasq
    a: Daemon
    b: Daemon
    tmp: Path
    sinks: list[Controller] = field(default_factory=list)

    def sink(self, handler: Sink, port: int = 25, **kwargs: Any) -> Sink:
        controller = (DsnController if handler.dsn else Controller)(handler, hostname=SINK_HOST, port=port, **kwargs)
        controller.start()
        self.sinks.append(controller)
        return handler

    def resolver_dnsfunc(self) -> Callable[..., bytes]:
        resolver = make_sync_resolver([self.dns.nameserver], 5.0)

        def dnsfunc(name: bytes, timeout: float = 5.0) -> bytes:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
            return b"".join(b"".join(record.strings) for record in answer)

        return dnsfunc


class DsnController(Controller):
    def factory(self) -> DsnSMTP:
        return DsnSMTP(self.handler, **self.SMTP_kwargs)


def records(dkim_txt: str | None = None) -> DnsRecords:
    found = DnsRecords()
    for domain, host, ip in (("a.test", "mx.a.test", A_HOST), ("b.test", "mx.b.test", B_HOST)):
        found.add_mx(domain, host).add_a(host, ip)
    found.add_mx("c.test", "mx.c.test").add_a("mx.c.test", SINK_HOST)
    found.add_txt("a.test", "v=spf1 ip4:127.0.0.0/8 -all")  # b sends a.test's senders "delivered" reports only then
    if dkim_txt:
        found.add_txt("relentad._domainkey.a.test", dkim_txt)
    return found


@pytest.fixture
def world(tmp_path: Path, make_daemon: MakeDaemon) -> Iterator[World]:
    workdir = tmp_path / "dns"
    workdir.mkdir()
    dns_server = start_or_skip(workdir, records())
    made: World | None = None
    try:
        common = {"dns": {"nameservers": [dns_server.nameserver], "timeout": 2.0}, "queue": dict(FAST_QUEUE)}
        a = make_daemon(
            "a", host=A_HOST, smtp_port=25, submission=True, settings={**common, "server": {"hostname": "mx.a.test"}}
        )
        b = make_daemon("b", host=B_HOST, smtp_port=25, settings={**common, "server": {"hostname": "mx.b.test"}})
        a.add_domain("a.test")
        a.add_user("alice@a.test")
        b.add_domain("b.test")
        b.add_user("bob@b.test")
        a.cli("dkim", "generate", "a.test")
        pem = (a.root / "data" / "dkim" / "a.test" / "relentad.pem").read_bytes()
        dns_server.replace(records(dkim.txt_value(pem)))
        made = World(dns_server, a, b, tmp_path)
        yield made
    finally:
        for controller in made.sinks if made else []:
            controller.stop()
        if made is not None:  # captured: pytest shows it only when the test failed
            print(f"--- a.test daemon log\n{made.a.log()}\n--- b.test daemon log\n{made.b.log()}")
        dns_server.close()  # the daemons are stopped by make_daemon


# -- the tests --------------------------------------------------------------------------------------------------


def test_submission_reaches_the_other_server_signed(world: World) -> None:
    world.a.start()
    world.b.start()
    submit(world.a, ["bob@b.test"], message("bob@b.test"))
    [stored] = wait_for("bob's copy", lambda: world.b.messages("bob@b.test"))
    assert dkimpy.verify(stored, dnsfunc=world.resolver_dnsfunc()), "DKIM must verify against the DNS record"
    parsed = email.message_from_bytes(stored)
    assert parsed["Return-Path"] == "<alice@a.test>"
    assert parsed["From"] == "Alice <alice@a.test>"
    assert parsed["Message-ID"].endswith("@mx.a.test>") and parsed["Date"]
    signature = parsed["DKIM-Signature"]
    assert "d=a.test" in signature and "s=relentad" in signature and "c=relaxed/relaxed" in signature
    received = parsed.get_all("Received")
    assert "by mx.b.test (relentad) with ESMTPS" in received[0], "opportunistic STARTTLS between the servers"
    assert "authenticated as alice@a.test" in received[-1]
    wait_for("an empty queue", lambda: queue_list(world.a) == [])
    assert len(world.a.messages("alice@a.test", "Sent")) == 1
    assert world.a.messages("alice@a.test") == [], "no bounce"


def test_ed25519_dual_signature_verifies(world: World) -> None:
    generated = world.a.cli("dkim", "generate", "a.test", "--selector", "dual", "--ed25519", "--activate").stdout
    assert "dual._domainkey.a.test." in generated and "dual-ed25519._domainkey.a.test." in generated
    folder = world.a.root / "data" / "dkim" / "a.test"
    found = records()
    for selector in ("dual", "dual-ed25519"):
        found.add_txt(f"{selector}._domainkey.a.test", dkim.txt_value((folder / f"{selector}.pem").read_bytes()))
    world.dns.replace(found)
    world.a.start()
    world.b.start()
    submit(world.a, ["bob@b.test"], message("bob@b.test"))
    [stored] = wait_for("bob's copy", lambda: world.b.messages("bob@b.test"))
    dnsfunc = world.resolver_dnsfunc()
    verifier = dkimpy.DKIM(stored)
    signatures = email.message_from_bytes(stored).get_all("DKIM-Signature")
    assert len(signatures) == 2
    assert all(verifier.verify(idx=i, dnsfunc=dnsfunc) for i in range(2))


def test_temporary_failure_is_retried_and_delivered_once(world: World) -> None:
    sink = world.sink(Sink(data_replies=["451 4.3.0 Try again later"]))
    world.a.start()
    submit(world.a, ["carol@c.test"], message("carol@c.test"))
    wait_for("the retry to be accepted", lambda: sink.accepted)
    wait_for("an empty queue", lambda: queue_list(world.a) == [])
    assert sink.data_attempts == 2
    [(mail_from, rcpts, data)] = sink.accepted
    assert (mail_from, rcpts) == ("alice@a.test", ["carol@c.test"])
    assert b"DKIM-Signature:" in data
    assert world.a.messages("alice@a.test") == [], "a temporary failure is no bounce"


def test_permanent_failure_bounces_with_a_dsn(world: World) -> None:
    world.sink(Sink(rcpt_replies=["550 5.1.1 No such user carol"]))
    world.a.start()
    submit(world.a, ["carol@c.test"], message("carol@c.test", subject="will bounce"))
    [bounce] = wait_for("the DSN", lambda: world.a.messages("alice@a.test"))
    parsed = email.message_from_bytes(bounce)
    assert parsed["Return-Path"] == "<>"
    assert parsed["From"] == "Mail Delivery System <MAILER-DAEMON@mx.a.test>"
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    parts: list[Message] = parsed.get_payload()  # type: ignore[assignment]
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    status = _delivery_status(parsed)
    assert "Final-Recipient: rfc822; carol@c.test" in status
    assert "Action: failed" in status and "Status: 5.1.1" in status
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user carol" in status
    assert "Subject: will bounce" in str(parts[2].get_payload())
    assert queue_list(world.a) == []


def test_broken_starttls_falls_back_to_plain_text(world: World) -> None:
    cert, key = world.tmp / "mx-cert.pem", world.tmp / "mx-key.pem"
    make_self_signed(cert, key, ["mx.c.test"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED  # we present no client certificate: every handshake fails
    sink = world.sink(Sink(), tls_context=context)
    world.a.start()
    submit(world.a, ["carol@c.test"], message("carol@c.test"))
    [(_, rcpts, _)] = wait_for("plain-text delivery", lambda: sink.accepted)
    assert rcpts == ["carol@c.test"]
    assert "STARTTLS failed" in world.a.log()


def test_domain_without_dns_bounces_at_once(world: World) -> None:
    world.a.start()
    submit(world.a, ["someone@nowhere.test"], message("someone@nowhere.test"))
    [bounce] = wait_for("the DSN", lambda: world.a.messages("alice@a.test"))
    status = _delivery_status(email.message_from_bytes(bounce))
    assert "Action: failed" in status and "Status: 5.1.2" in status
    assert "Diagnostic-Code: X-Relentad; 550 5.1.2 nowhere.test: domain does not exist" in status, "ours, not smtp"
    assert queue_list(world.a) == []


def test_delay_notice_then_bounce_after_lifetime(world: World) -> None:
    world.sink(Sink(data_replies=["451 4.3.0 Busy"] * 100))
    world.a.write_config(queue={**FAST_QUEUE, "delay_notice": "1s", "lifetime": "5s"})
    world.a.start()
    submit(world.a, ["carol@c.test"], message("carol@c.test"))
    notices = wait_for("delay notice and bounce", lambda: _two(world.a.messages("alice@a.test")))
    delay, bounce = (email.message_from_bytes(n) for n in notices)
    assert "Action: delayed" in _delivery_status(delay) and "Will-Retry-Until:" in _delivery_status(delay)
    assert "Action: failed" in _delivery_status(bounce) and "Status: 5.3.0" in _delivery_status(bounce)
    assert queue_list(world.a) == []


def test_kill_with_queued_message_delivers_after_restart_exactly_once(world: World) -> None:
    world.a.write_config(queue={**FAST_QUEUE, "retry_schedule": ["1h"]})
    world.a.start()
    world.b.start()
    # c.test's server is down: bob@b.test is delivered at once, carol@c.test stays queued for an hour.
    submit(world.a, ["bob@b.test", "carol@c.test"], message("bob@b.test, carol@c.test"))
    wait_for("bob's copy", lambda: world.b.messages("bob@b.test"))
    [queued] = wait_for("carol deferred", lambda: [q for q in queue_list(world.a) if _attempted(q)])
    world.a.kill()
    sink = world.sink(Sink())
    world.a.start()
    world.a.cli("queue", "retry", str(queued["id"]))
    [(_, rcpts, _)] = wait_for("carol's copy", lambda: sink.accepted)
    assert rcpts == ["carol@c.test"]
    wait_for("an empty queue", lambda: queue_list(world.a) == [])
    assert len(world.b.messages("bob@b.test")) == 1, "bob was already accepted: never again"


def test_smarthost_with_auth(world: World) -> None:
    cert, key = world.tmp / "sink-cert.pem", world.tmp / "sink-key.pem"
    make_self_signed(cert, key, ["relay.test"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = Sink()
    world.sink(sink, port=2525, tls_context=context, authenticator=sink.authenticate, auth_require_tls=True)
    password_file = world.tmp / "relay-password"
    password_file.write_text("relay secret\n")
    world.a.write_config(
        queue={
            **FAST_QUEUE,
            "smarthost": f"{SINK_HOST}:2525",
            "smarthost_user": "relay-user",
            "smarthost_password_file": str(password_file),
            "smarthost_tls": "starttls",
            "smarthost_tls_verify": False,
        }
    )
    world.a.start()
    submit(world.a, ["bob@b.test"], message("bob@b.test"))  # b.test has an MX, but everything goes to the relay
    [(mail_from, rcpts, data)] = wait_for("the relay to get it", lambda: sink.accepted)
    assert (mail_from, rcpts) == ("alice@a.test", ["bob@b.test"])
    assert sink.logins == ["relay-user"]
    assert b"DKIM-Signature:" in data
    wait_for("an empty queue", lambda: queue_list(world.a) == [])


# -- DSN (RFC 3461) --------------------------------------------------------------------------------------------


def submit_dsn(daemon: Daemon, raw: bytes, mail: list[str], recipients: dict[str, list[str]]) -> None:
    """Submit with per-recipient DSN parameters (smtplib's sendmail gives every recipient the same)."""
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as client:
        client.starttls(context=tls_context())
        client.login("alice@a.test", PASSWORD)
        assert client.mail("alice@a.test", mail)[0] == 250
        for address, options in recipients.items():
            assert client.rcpt(address, options)[0] == 250
        assert client.data(raw)[0] == 250


def test_dsn_passes_to_the_next_relentad_which_reports_delivery(world: World) -> None:
    """b offers DSN: a passes RET/ENVID/NOTIFY/ORCPT on and sends no report itself; b delivers and queues a
    "delivered" report to alice, which reaches her INBOX at a over SMTP."""
    world.a.start()
    world.b.start()
    submit_dsn(
        world.a,
        message("bob@b.test", subject="did it arrive"),
        ["RET=HDRS", "ENVID=trip+2B1"],
        {"bob@b.test": ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Bob@b.test"]},
    )
    wait_for("bob's copy", lambda: world.b.messages("bob@b.test"))
    [report] = wait_for("the delivered report", lambda: world.a.messages("alice@a.test"))
    parsed, blocks = status_blocks(report)
    assert parsed["Return-Path"] == "<>"
    assert parsed["From"] == "Mail Delivery System <MAILER-DAEMON@mx.b.test>"
    assert blocks[0]["Reporting-MTA"] == "dns; mx.b.test"
    assert blocks[0]["Original-Envelope-Id"] == "trip+1"
    [block] = blocks[1:]
    assert (block["Final-Recipient"], block["Action"], block["Status"]) == ("rfc822; bob@b.test", "delivered", "2.0.0")
    assert block["Original-Recipient"] == "rfc822; Bob@b.test"
    wait_for("empty queues", lambda: queue_list(world.a) == [] and queue_list(world.b) == [])
    assert len(world.a.messages("alice@a.test")) == 1, "no 'relayed' report from a: b reported"


def test_parameters_relayed_and_a_full_bounce_only_where_notify_asks(world: World) -> None:
    sink = world.sink(Sink(dsn=True, rcpt_replies=["550 5.1.1 No carol", "550 5.1.1 No dave"]))
    world.a.start()
    raw = message("carol@c.test, dave@c.test", subject="return it all")
    submit_dsn(
        world.a,
        raw,
        ["RET=FULL", "ENVID=e+3D1"],
        {"carol@c.test": ["NOTIFY=FAILURE", "ORCPT=rfc822;Carol@c.test"], "dave@c.test": ["NOTIFY=NEVER"]},
    )
    [bounce] = wait_for("the bounce", lambda: world.a.messages("alice@a.test"))
    assert sink.dsn_params == [
        "MAIL RET=FULL ENVID=e+3D1",
        "RCPT NOTIFY=FAILURE ORCPT=rfc822;Carol@c.test",
        "RCPT NOTIFY=NEVER",
    ]
    parsed, blocks = status_blocks(bounce)
    assert blocks[0]["Original-Envelope-Id"] == "e=1"
    [block] = blocks[1:]
    assert (block["Final-Recipient"], block["Action"]) == ("rfc822; carol@c.test", "failed"), "not dave: NEVER"
    assert block["Original-Recipient"] == "rfc822; Carol@c.test"
    parts: list[Message] = parsed.get_payload()  # type: ignore[assignment]
    assert parts[2].get_content_type() == "message/rfc822", "RET=FULL: the whole message comes back"
    assert b"Hello from a.test." in bounce
    wait_for("an empty queue", lambda: queue_list(world.a) == [])


def test_relayed_report_when_the_next_hop_has_no_dsn(world: World) -> None:
    sink = world.sink(Sink())
    world.a.start()
    submit_dsn(world.a, message("carol@c.test"), ["ENVID=r1"], {"carol@c.test": ["NOTIFY=SUCCESS"]})
    [report] = wait_for("the relayed report", lambda: world.a.messages("alice@a.test"))
    sent = [c for c in sink.commands if c.startswith(("MAIL", "RCPT"))]
    assert sent == ["MAIL <alice@a.test>", "RCPT <carol@c.test>"], "no DSN offered: nothing passed on"
    parsed, blocks = status_blocks(report)
    assert parsed["Subject"] == "Relayed Mail Delivery Report"
    assert (blocks[1]["Action"], blocks[1]["Status"], blocks[1]["Remote-MTA"]) == ("relayed", "2.0.0", "dns; mx.c.test")
    assert "Original-Recipient" not in blocks[1]
    parts: list[Message] = parsed.get_payload()  # type: ignore[assignment]
    assert parts[2].get_content_type() == "text/rfc822-headers"


def test_no_delay_notice_without_delay_in_notify(world: World) -> None:
    world.sink(Sink(data_replies=["451 4.3.0 Busy"] * 100))
    world.a.write_config(queue={**FAST_QUEUE, "delay_notice": "1s", "lifetime": "4s"})
    world.a.start()
    submit_dsn(world.a, message("carol@c.test"), [], {"carol@c.test": ["NOTIFY=FAILURE"]})
    wait_for("an empty queue", lambda: queue_list(world.a) == [] and world.a.messages("alice@a.test"))
    [bounce] = world.a.messages("alice@a.test")
    assert status_blocks(bounce)[1][1]["Action"] == "failed", "the bounce, and no delay notice before it"


def _delivery_status(parsed: Message) -> str:
    for part in parsed.walk():
        if part.get_content_type() == "message/delivery-status":
            return "\n".join(str(block) for block in part.get_payload())  # type: ignore[union-attr]
    raise AssertionError("no message/delivery-status part")


def _two(found: list[bytes]) -> list[bytes] | None:
    return found if len(found) >= 2 else None


def _attempted(queued: dict[str, Any]) -> bool:
    return any(r["attempts"] > 0 and r["state"] == "queued" for r in queued["recipients"])
