"""Forwarding between real servers: aliases with targets elsewhere, Sieve redirect, SRS and its bounces, ARC.

The world (as in test_outbound.py, on addresses of its own so that the two never share a port): dnsmasq serves
a.test (relentad on 127.0.0.22:25, the forwarder, with a DKIM key), b.test (relentad on 127.0.0.23:25, a receiver
that checks SPF, DKIM, DMARC and ARC itself) and c.test and d.test (both an aiosmtpd sink on 127.0.0.24:25).
dave@d.test is the original author: his mail is DKIM-signed by the test with d.test's key (published in dnsmasq,
with SPF and DMARC p=reject) and sent to a.test's MX from 127.0.0.25.
Needs root (port 25) and dnsmasq.
"""

from __future__ import annotations

import email
import json
import os
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dkim as dkimpy
import pytest
from aiosmtpd.controller import Controller
from sievelib.managesieve import Client

from relentad import srs
from relentad.dns import make_sync_resolver
from relentad.errors import AlreadyExists
from relentad.queue import dkim, dkimkeys
from tests.e2e.conftest import MakeDaemon
from tests.support.daemon import PASSWORD, Daemon, free_port, wait_for
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq, DnsRecords
from tests.support.metrics import http_get, sample
from tests.support.smtp_peer import Sink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binds port 25 on 127.0.0.22-24: needs root")

A_HOST, B_HOST, SINK_HOST, DAVE_HOST = "127.0.0.22", "127.0.0.23", "127.0.0.24", "127.0.0.25"
FAST_QUEUE = {"retry_schedule": ["1s"], "scan_interval": "1s", "timeout": "60s"}
D_KEY, D_TXT = dkim.generate_key()


def records(a_dkim: str | None = None) -> DnsRecords:
    found = DnsRecords()
    found.add_mx("a.test", "mx.a.test").add_a("mx.a.test", A_HOST)
    found.add_mx("b.test", "mx.b.test").add_a("mx.b.test", B_HOST)
    for domain in ("c.test", "d.test"):
        found.add_mx(domain, "mx.c.test")
    found.add_a("mx.c.test", SINK_HOST)
    # the queue connects from 127.0.0.1: only SRS (a.test's own envelope sender) passes SPF at the destination
    found.add_txt("a.test", "v=spf1 ip4:127.0.0.1 -all")
    found.add_txt("d.test", f"v=spf1 ip4:{DAVE_HOST} -all")
    found.add_txt("_dmarc.d.test", "v=DMARC1; p=reject")
    found.add_txt("sel._domainkey.d.test", D_TXT)
    if a_dkim:
        found.add_txt("relentad._domainkey.a.test", a_dkim)
    return found


def daves_message(to: str, subject: str = "from dave", extra: str = "", body: str = "Hello, forwarded world.") -> bytes:
    unsigned = (
        f"From: Dave <dave@d.test>\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Fri, 27 Nov 2026 08:00:00 +0000\r\n"
        f"Message-ID: <{time.time_ns()}@d.test>\r\n{extra}MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()
    signature: bytes = dkimpy.sign(
        unsigned, b"sel", b"d.test", D_KEY, include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]
    )
    return signature + unsigned


def send_in(daemon: Daemon, to: str, data: bytes, mail_from: str = "dave@d.test") -> None:
    with smtplib.SMTP(daemon.host, 25, timeout=20, source_address=(DAVE_HOST, 0)) as client:
        client.sendmail(mail_from, [to], data)


@dataclass
class World:
    dns: Dnsmasq
    a: Daemon
    b: Daemon
    sink: Sink
    tmp: Path
    metrics_port: int
    controllers: list[Controller] = field(default_factory=list)

    def dnsfunc(self) -> Callable[..., bytes]:
        resolver = make_sync_resolver([self.dns.nameserver], 5.0)

        def lookup(name: bytes, timeout: float = 5.0) -> bytes:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
            return b"".join(b"".join(record.strings) for record in answer)

        return lookup

    def recipients(self) -> list[str]:
        """Every recipient the sink took, in order (one domain's recipients share a transaction)."""
        return [r for _f, rcpts, _d in self.sink.accepted for r in rcpts]

    def received(self, count: int = 1) -> list[tuple[str, list[str], bytes]]:
        return list(
            wait_for(f"{count} message(s) at the sink", lambda: len(self.sink.accepted) >= count and self.sink.accepted)
        )


@pytest.fixture
def world(tmp_path: Path, make_daemon: MakeDaemon) -> Iterator[World]:
    workdir = tmp_path / "dns"
    dns_server = start_or_skip(workdir, records())
    made: World | None = None
    sink = Sink()
    controller = Controller(sink, hostname=SINK_HOST, port=25)
    controller.start()
    metrics_port = free_port()
    try:
        common = {"dns": {"nameservers": [dns_server.nameserver], "timeout": 2.0}, "queue": dict(FAST_QUEUE)}
        a = make_daemon(
            "a",
            host=A_HOST,
            smtp_port=25,
            managesieve=True,
            tls=False,
            settings={
                **common,
                "server": {"hostname": "mx.a.test"},
                "auth": {"plaintext_loopback": True},
                "listen": {"metrics": f"127.0.0.1:{metrics_port}"},
            },
        )
        b = make_daemon("b", host=B_HOST, smtp_port=25, settings={**common, "server": {"hostname": "mx.b.test"}})
        a.add_domain("a.test")
        a.add_user("alice@a.test")
        b.add_domain("b.test")
        b.add_user("bob@b.test")
        dkimkeys.generate(a.root / "data", "a.test", "relentad")  # what `relentad dkim generate a.test` does
        pem = (a.root / "data" / "dkim" / "a.test" / "relentad.pem").read_bytes()
        dns_server.replace(records(dkim.txt_value(pem)))
        made = World(dns_server, a, b, sink, tmp_path, metrics_port, [controller])
        yield made
    finally:
        controller.stop()
        if made is not None:
            print(f"--- a.test daemon log\n{made.a.log()}\n--- b.test daemon log\n{made.b.log()}")
        dns_server.close()


def smtp_reply(daemon: Daemon, mail_from: str, rcpt: str) -> tuple[int, bytes]:
    with smtplib.SMTP(daemon.host, 25, timeout=20, source_address=(DAVE_HOST, 0)) as client:
        client.ehlo("client.test")
        client.mail(mail_from)
        return client.rcpt(rcpt)


# -- the tests --------------------------------------------------------------------------------------------------


def test_a_mixed_alias_files_locally_and_forwards_with_srs_dkim_intact_and_an_arc_seal(world: World) -> None:
    world.a.add_alias("info@a.test", "alice@a.test")
    world.a.add_alias("info@a.test", "bob@b.test")
    world.a.cli("alias", "add", "info@a.test", "carol@c.test")
    listed = world.a.cli("alias", "list").stdout
    assert "info@a.test\tcarol@c.test\t(forwarded)" in listed and "info@a.test\talice@a.test\n" in listed
    world.a.start()
    world.b.start()
    message_file = world.tmp / "dave.eml"
    message_file.write_bytes(daves_message("info@a.test"))
    result = subprocess.run(
        ["swaks", "--server", f"{A_HOST}:25", "--local-interface", DAVE_HOST, "--from", "dave@d.test",
         "--to", "info@a.test", "--data", str(message_file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 OK delivered as" in result.stdout

    [local] = world.a.messages("alice@a.test")
    assert b"Hello, forwarded world." in local, "the local target gets its copy as before"
    crm = world.a.query("SELECT count(*) AS n FROM crm_messages")
    assert crm[0]["n"] == 1, "filed in the CRM for the local account"

    [(mail_from, rcpts, data)] = world.received()
    assert rcpts == ["carol@c.test"]
    assert mail_from.startswith("SRS0=") and mail_from.endswith("=d.test=dave@a.test"), mail_from
    assert srs.reverse(mail_from.rpartition("@")[0], [bytes(r["secret"]) for r in world.a.query(
        "SELECT secret FROM srs_secrets")]) == "dave@d.test"  # fmt: skip
    parsed = email.message_from_bytes(data)
    assert parsed["Delivered-To"] == "info@a.test" and "by mx.a.test (relentad)" in parsed["Received"]
    assert "spf=pass" in parsed["Authentication-Results"] and "dkim=pass" in parsed["Authentication-Results"]
    dnsfunc = world.dnsfunc()
    verifier = dkimpy.DKIM(data)
    assert verifier.verify(dnsfunc=dnsfunc), "dave's DKIM signature still verifies after the forward"
    cv, _results, comment = dkimpy.arc_verify(data, dnsfunc=dnsfunc)
    assert cv == b"pass", comment
    assert "d=a.test" in parsed["ARC-Seal"] and "i=1" in parsed["ARC-Seal"]

    [at_b] = wait_for("bob's forwarded copy", lambda: world.b.messages("bob@b.test"))
    results = email.message_from_bytes(at_b)["Authentication-Results"]
    assert results.startswith("mx.b.test;"), results
    for wanted in ("spf=pass", "dkim=pass", "dmarc=pass", "arc=pass"):
        assert wanted in results, f"{wanted} at the destination: {results}"

    # a long sender makes an SRS local part over 64 octets: relentad takes such a reverse-path (RFC 5321 §4.5.3.1)
    long_sender = "a.rather.long.local.part.for.a.newsletter+tracking-tag@d.test"
    send_in(world.a, "info@a.test", daves_message("info@a.test", subject="long"), mail_from=long_sender)
    [_, second] = wait_for(
        "the second copy at b", lambda: len(world.b.messages("bob@b.test")) == 2 and world.b.messages("bob@b.test")
    )
    return_path = email.message_from_bytes(second)["Return-Path"]
    assert return_path.endswith("=d.test=a.rather.long.local.part.for.a.newsletter+tracking-tag@a.test>")
    assert len(return_path.rpartition("@")[0]) > 64

    # doctor: a.test's SPF names 127.0.0.1, not the host's published address, so SRS senders would fail SPF there
    findings = json.loads(world.a.cli("doctor", "a.test", "--json", check=False).stdout)
    [spf_check] = [f for f in findings if f["check"] == "spf for forwarding a.test"]
    assert spf_check["status"] == "warn" and f"fails SPF from {A_HOST}: fail" in spf_check["message"], spf_check


def test_srs_bounces_are_relayed_back_and_forged_or_expired_ones_refused(world: World) -> None:
    world.a.add_alias("info@a.test", "carol@c.test")
    world.a.start()
    send_in(world.a, "info@a.test", daves_message("info@a.test"))
    [(srs_sender, _rcpts, _data)] = world.received()
    bounce = b"From: MAILER-DAEMON@c.test\r\nTo: " + srs_sender.encode() + b"\r\nSubject: Undelivered\r\n\r\nNo.\r\n"
    with smtplib.SMTP(A_HOST, 25, timeout=20, source_address=(DAVE_HOST, 0)) as client:
        client.sendmail("", [srs_sender.lower()], bounce)  # the hash is case-insensitive
    [_, (null, to_dave, relayed)] = world.received(2)
    assert (null, to_dave) == ("<>", ["dave@d.test"]) and b"Subject: Undelivered" in relayed

    secret = bytes(world.a.query("SELECT secret FROM srs_secrets")[0]["secret"])
    expired = srs.forward("dave@d.test", "a.test", secret, time.time() - 30 * 86400)
    forged = srs_sender.replace("=dave@", "=mallory@")
    for address in (expired, forged, "SRS0=AAAAAA=AA=d.test=dave@a.test", "srs0=garbage@a.test"):
        code, text = smtp_reply(world.a, "", address)
        assert (code, text[:5]) == (550, b"5.1.1"), (address, text)
    # a valid SRS address takes only bounces: anyone who saw it (every forward's Return-Path) could relay through it
    code, text = smtp_reply(world.a, "mallory@e.test", srs_sender)
    assert (code, text) == (550, b"5.7.1 An SRS address takes only bounces (null sender)"), text
    assert len(world.sink.accepted) == 2, "nothing relayed for them"
    status, text = http_get(world.metrics_port, "/metrics")
    assert status == 200
    assert sample(text, "relentad_srs_bounces_total", 'result="accepted"') == 1
    assert sample(text, "relentad_srs_bounces_total", 'result="refused"') == 5
    assert sample(text, "relentad_forwarded_total", 'kind="alias",result="queued"') == 1
    assert sample(text, "relentad_forwarded_total", 'kind="srs",result="queued"') == 1

    # a new secret signs; the old one still verifies bounces to earlier forwards until it is revoked
    assert "0 old one(s) removed" in world.a.cli("srs", "rotate").stdout
    assert smtp_reply(world.a, "", srs_sender) == (250, b"2.1.5 Recipient OK")
    send_in(world.a, "info@a.test", daves_message("info@a.test", subject="after the rotation"))
    newer = world.received(3)[-1][0]
    assert newer.split("=")[1] != srs_sender.split("=")[1], "signed by the new secret"
    assert "2 old one(s) removed" in world.a.cli("srs", "rotate", "--revoke").stdout
    for address in (srs_sender, newer):
        assert smtp_reply(world.a, "", address) == (550, b"5.1.1 Invalid or expired SRS address"), address


def test_a_bounce_comes_back_to_a_sender_whose_local_part_passes_64_octets(world: World) -> None:
    """The MX takes such a reverse-path (RFC 5321 §4.5.3.1), so the SRS address made of it must take its bounce."""
    world.a.add_alias("info@a.test", "carol@c.test")
    world.a.start()
    sender = "bounces-" + "x" * 70 + "@d.test"
    send_in(world.a, "info@a.test", daves_message("info@a.test"), mail_from=sender)
    [(srs_sender, _rcpts, _data)] = world.received()
    assert smtp_reply(world.a, "", srs_sender) == (250, b"2.1.5 Recipient OK")


def test_a_failed_forward_bounces_to_the_original_sender(world: World) -> None:
    world.sink.rcpt_replies = ["550 5.1.1 No such user carol"]
    world.a.add_alias("info@a.test", "carol@c.test")
    world.a.start()
    send_in(world.a, "info@a.test", daves_message("info@a.test", subject="will bounce"))
    [(null, to_dave, report)] = world.received()
    assert (null, to_dave) == ("<>", ["dave@d.test"])
    parsed = email.message_from_bytes(report)
    assert parsed.get_content_type() == "multipart/report"
    assert b"carol@c.test" in report and b"550 5.1.1 No such user carol" in report


def test_a_failed_forward_of_an_unverified_sender_is_not_bounced(world: World) -> None:
    """Backscatter: x@e.test passes neither SPF (e.test publishes none) nor DKIM (only d.test signed), so it may be
    forged; the forward goes out with NOTIFY=NEVER, its failure bounces to nobody, and the MX refuses a bounce to
    its SRS address (one a next hop without DSN would send)."""
    world.a.add_alias("info@a.test", "carol@c.test")
    world.a.start()
    send_in(world.a, "info@a.test", daves_message("info@a.test", subject="forged sender"), mail_from="x@e.test")
    [(srs_sender, _rcpts, _data)] = world.received()
    assert srs_sender.endswith("=e.test=x@a.test"), srs_sender
    reply = smtp_reply(world.a, "", srs_sender)
    assert reply == (550, b"5.7.1 Bounce not relayed: the original sender was not verified"), reply
    world.sink.accepted.clear()
    world.sink.rcpt_replies = ["550 5.1.1 No such user carol"]
    send_in(world.a, "info@a.test", daves_message("info@a.test", subject="forged sender"), mail_from="x@e.test")
    wait_for("the failed forward", lambda: "rcpt=<carol@c.test> result=failed" in world.a.log())
    wait_for("an empty queue", lambda: world.a.query("SELECT count(*) AS n FROM queue_messages")[0]["n"] == 0)
    assert world.sink.accepted == [], "no bounce to x@e.test"
    assert "→ <carol@c.test> (sender unverified: no bounce)" in world.a.log()


def test_a_forward_answered_250_survives_kill_9(world: World) -> None:
    world.sink.data_replies = ["451 4.3.0 Try again later"]  # the first attempt fails: the forward stays queued
    world.a.add_alias("info@a.test", "carol@c.test")
    world.a.start()
    send_in(world.a, "info@a.test", daves_message("info@a.test", subject="durable"))
    world.a.kill()  # SIGKILL right after 250, before or after the first attempt
    world.a.start()
    [(mail_from, rcpts, data)] = world.received()
    assert rcpts == ["carol@c.test"] and mail_from.startswith("SRS0=") and b"Subject: durable" in data
    wait_for("an empty queue", lambda: world.a.query("SELECT count(*) AS n FROM queue_messages")[0]["n"] == 0)
    assert len(world.sink.accepted) == 1, "delivered once"


def test_a_users_redirect_the_redirect_limit_and_the_send_limit(world: World) -> None:
    world.a.start()
    client = Client(A_HOST, world.a.managesieve_port)
    with pytest.warns(UserWarning, match="unencrypted"):  # plaintext on loopback, as the dev setup allows
        assert client.connect("alice@a.test", PASSWORD, starttls=False, authmech="PLAIN"), client.errmsg
    script = 'require ["copy"]; redirect :copy "carol@c.test"; redirect :copy "x@c.test";\n'
    assert client.putscript("fwd", script), client.errmsg
    assert client.setactive("fwd"), client.errmsg
    send_in(world.a, "alice@a.test", daves_message("alice@a.test", subject="one"))
    wait_for("both redirects", lambda: len(world.recipients()) == 2)
    assert sorted(world.recipients()) == ["carol@c.test", "x@c.test"]
    assert len(world.a.messages("alice@a.test")) == 1, ":copy keeps a copy"
    assert all(f.startswith("SRS0=") and f.endswith("@a.test") for f, _r, _d in world.sink.accepted)

    # more than MAXREDIRECTS (4): the first four go, and the message is kept
    many = "".join(f'redirect "r{i}@c.test";\n' for i in range(6))
    assert client.putscript("fwd", many), client.errmsg
    send_in(world.a, "alice@a.test", daves_message("alice@a.test", subject="two"))
    wait_for("four redirects more", lambda: len(world.recipients()) == 6)
    assert world.recipients()[2:] == ["r0@c.test", "r1@c.test", "r2@c.test", "r3@c.test"]
    assert len(world.a.messages("alice@a.test")) == 2, "over the limit: kept"

    # without :copy the redirect takes the message away (RFC 5228 §4.2): no local copy, and a vacation still answers
    away = 'require "vacation"; vacation "Away until Monday.";\nredirect "only@c.test";\n'
    assert client.putscript("fwd", away), client.errmsg
    send_in(world.a, "alice@a.test", daves_message("alice@a.test", subject="gone"))
    wait_for("the redirect and the reply", lambda: len(world.recipients()) == 8)
    assert sorted(world.recipients()[6:]) == ["dave@d.test", "only@c.test"]
    assert len(world.a.messages("alice@a.test")) == 2
    sample = world.tmp / "sample.eml"
    sample.write_bytes(daves_message("alice@a.test"))
    shown = world.a.cli("rules", "test", "alice@a.test", str(sample)).stdout
    assert "redirect to <only@c.test>" in shown and "file into" not in shown, shown

    # forwarding is sending: past the account's hourly limit the redirect is not done and the mail is kept
    world.a.cli("quota", "set", "alice@a.test", "--hourly-send", "7")
    assert client.putscript("fwd", 'redirect "late@c.test";\n'), client.errmsg
    send_in(world.a, "alice@a.test", daves_message("alice@a.test", subject="three"))
    wait_for("the third copy kept", lambda: len(world.a.messages("alice@a.test")) == 3)
    assert world.a.query("SELECT count(*) AS n FROM queue_recipients WHERE address = 'late@c.test'")[0]["n"] == 0
    assert len(world.recipients()) == 8
    assert "not done: the account's hourly send limit is reached" in world.a.log()
    client.logout()


def test_a_redirect_carries_the_header_edits_and_a_vacation_reply_quotes_the_message_as_it_came(
    world: World,
) -> None:
    world.a.start()
    script = (
        'require ["editheader", "vacation", "copy"];\n'
        'deleteheader "Subject"; addheader "Subject" "[fwd] edited"; addheader "X-Via" "alice";\n'
        'vacation "Away until Monday."; redirect :copy "carol@c.test";\n'
    )
    world.a.cli("rules", "add", "alice@a.test", "edit", "-", input=script)
    send_in(world.a, "alice@a.test", daves_message("alice@a.test", subject="from dave"))
    accepted = {rcpts[0]: data for _f, rcpts, data in world.received(2)}
    forwarded = email.message_from_bytes(accepted["carol@c.test"])
    assert forwarded["Subject"] == "[fwd] edited" and forwarded["X-Via"] == "alice", "the redirect is the edited copy"
    assert forwarded["Delivered-To"] == "alice@a.test" and forwarded["ARC-Seal"], "with our trace and ARC set on top"
    reply = email.message_from_bytes(accepted["dave@d.test"])
    assert reply["Subject"] == "Auto: from dave", "a response reads the message as it came (RFC 5293 §8)"
    [local] = world.a.messages("alice@a.test")
    assert b"Subject: [fwd] edited\r\n" in local and b"X-Via: alice\r\n" in local


def test_junk_and_loops_are_not_forwarded(world: World) -> None:
    world.a.add_alias("info@a.test", "carol@c.test")
    world.a.add_alias("team@a.test", "alice@a.test")
    world.a.add_alias("team@a.test", "carol@c.test")
    world.a.cli("spam", "block", "alice@a.test", "dave@d.test")
    world.a.start()
    # a blocked sender: the local copy goes to Junk, so the group's forward is withheld
    send_in(world.a, "team@a.test", daves_message("team@a.test"))
    wait_for("alice's Junk copy", lambda: world.a.messages("alice@a.test", "Junk"))
    # an unsigned message claiming d.test fails DMARC p=reject: refused at DATA, never forwarded
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_in(world.a, "info@a.test", b"From: dave@d.test\r\nSubject: forged\r\n\r\nx\r\n", mail_from="x@e.test")
    assert refused.value.smtp_code == 550
    # loops: our Delivered-To for the forwarding address, or too many hops
    looped = daves_message("info@a.test", extra="")
    for data in (b"Delivered-To: info@a.test\r\n" + looped, b"Received: from x by y; now\r\n" * 51 + looped):
        with pytest.raises(smtplib.SMTPDataError) as loop:
            send_in(world.a, "info@a.test", data)
        assert loop.value.smtp_code == 554 and loop.value.smtp_error.startswith(b"5.4.6"), loop.value
    assert world.a.query("SELECT count(*) AS n FROM queue_recipients")[0]["n"] == 0, "nothing was ever queued"
    assert world.sink.accepted == []
    assert "withheld: the local copy is in Junk" in world.a.log()


def test_two_servers_forwarding_to_each_other_stop_and_bounce_once(world: World) -> None:
    """a.test forwards info@ to b.test, whose alias forwards it back: a.test finds its own Delivered-To and refuses
    it (554 5.4.6); b.test's bounce goes to its SRS1 sender, back through a.test's SRS0, to dave — once."""
    world.a.add_alias("info@a.test", "loop@b.test")
    world.b.cli("alias", "add", "loop@b.test", "info@a.test")
    world.a.start()
    world.b.start()
    send_in(world.a, "info@a.test", daves_message("info@a.test", subject="round and round"))
    [(null, to_dave, report)] = world.received()
    assert (null, to_dave) == ("<>", ["dave@d.test"])
    assert b"554 5.4.6 Mail forwarding loop for <info@a.test>" in report
    for daemon in (world.a, world.b):
        wait_for("empty queues", lambda d=daemon: d.query("SELECT count(*) AS n FROM queue_messages")[0]["n"] == 0)
    assert len(world.sink.accepted) == 1


def test_alias_cycles_and_catch_alls_elsewhere_are_refused(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    daemon.add_domain("a.test")
    daemon.add_user("alice@a.test")
    daemon.cli("alias", "add", "info@a.test", "alice@a.test")
    for address, target, why in (
        ("x@a.test", "info@a.test", "is not an account here (it reaches alice@a.test)"),
        ("@a.test", "owner@gmail.test", "a catch-all is not forwarded elsewhere"),
        ("y@a.test", "not an address", "not an email address"),
    ):
        result = daemon.cli("alias", "add", address, target, check=False)
        assert result.returncode != 0 and why in result.stderr and "Traceback" not in result.stderr, result.stderr
    daemon.cli("alias", "add", "y@a.test", "owner@gmail.test")
    with pytest.raises(AlreadyExists):
        daemon.add_user("y@a.test")
    assert daemon.cli("alias", "remove", "y@a.test", "owner@gmail.test").returncode == 0
    assert "y@a.test" not in daemon.cli("alias", "list").stdout


def test_spam_to_an_alias_with_no_local_target_is_dropped_not_forwarded(world: World) -> None:
    """The global model judges mail for an alias whose targets are all elsewhere: a confident spam verdict drops it
    (logged and counted, never bounced: backscatter), anything else is forwarded."""
    world.a.write_config(spam={"min_trained": 5, "confident_after": 0})
    world.a.add_alias("info@a.test", "carol@c.test")
    ham, spam = world.tmp / "ham", world.tmp / "spam"
    for folder, words in ((ham, "quarterly project meeting agenda minutes budget review"),
                          (spam, "casino lottery winner cheap pills viagra click unsubscribe")):  # fmt: skip
        folder.mkdir()
        for i in range(12):
            text = f"From: x{i}@d.test\r\nSubject: {words.split()[i % 7]} {i}\r\n\r\n{words} {words} {i}\r\n"
            (folder / f"{i}.eml").write_text(text)
    world.a.cli("spam", "train", "--global", "--ham", str(ham), "--spam", str(spam))
    world.a.start()
    spammy = "casino lottery winner cheap pills viagra click unsubscribe"
    send_in(world.a, "info@a.test", daves_message("info@a.test", subject="casino lottery winner", body=spammy))
    wait_for("the verdict", lambda: "withheld: spam" in world.a.log())
    hammy = "quarterly project meeting agenda minutes budget review"
    send_in(world.a, "info@a.test", daves_message("info@a.test", subject="quarterly project meeting", body=hammy))
    [(_f, _r, data)] = world.received()
    assert b"Subject: quarterly project meeting" in data
    assert world.a.query("SELECT count(*) AS n FROM messages")[0]["n"] == 0, "nothing stored for a pure forward"


E_KEY, E_TXT = dkim.generate_key()


def test_arc_continues_an_earlier_chain_and_marks_a_broken_one_failed(world: World) -> None:
    """RFC 8617: mail that arrives with an ARC set (e.test's, as a mailing list would add) leaves with ours as i=2,
    cv=pass, and a receiver's dkimpy verifies the whole chain; a chain broken on the way in gets cv=fail, and one
    an earlier hop marked cv=fail has ended: nothing is added to it."""
    world.a.add_alias("info@a.test", "carol@c.test")
    pem = (world.a.root / "data" / "dkim" / "a.test" / "relentad.pem").read_bytes()
    world.dns.replace(records(dkim.txt_value(pem)).add_txt("arc._domainkey.e.test", E_TXT))
    world.a.start()
    results = (
        b"Authentication-Results: mx.e.test; spf=pass smtp.mailfrom=d.test; dkim=pass header.d=d.test; arc=none\r\n"
    )
    # a chain an earlier hop already marked failed (i=2, cv=fail) has ended: no set of ours after it
    unsealed = results + daves_message("info@a.test", subject="ended")
    first = b"".join(dkimpy.arc_sign(unsealed, b"arc", b"e.test", E_KEY, b"mx.e.test")) + unsealed
    failed = b"Authentication-Results: mx2.e.test; arc=fail\r\n" + first.replace(b"forwarded world", b"changed")
    ended = b"".join(dkimpy.arc_sign(failed, b"arc", b"e.test", E_KEY, b"mx2.e.test")) + failed
    assert b"cv=fail" in ended
    send_in(world.a, "info@a.test", ended)
    data = world.received(1)[-1][2]
    assert len(email.message_from_bytes(data).get_all("ARC-Seal")) == 2, "no third set"
    world.sink.accepted.clear()
    for count, (subject, tamper) in enumerate((("intact", False), ("broken", True)), start=1):
        unsealed = results + daves_message("info@a.test", subject=subject)
        sealed = b"".join(dkimpy.arc_sign(unsealed, b"arc", b"e.test", E_KEY, b"mx.e.test")) + unsealed
        send_in(world.a, "info@a.test", sealed.replace(b"forwarded world", b"tampered world") if tamper else sealed)
        data = world.received(count)[-1][2]
        seal = email.message_from_bytes(data).get_all("ARC-Seal")
        assert len(seal) == 2 and "i=2" in seal[0] and "d=a.test" in seal[0], seal
        cv, _details, comment = dkimpy.arc_verify(data, dnsfunc=world.dnsfunc())
        if tamper:
            assert "cv=fail" in seal[0], seal[0]
            assert cv != b"pass", comment
        else:
            assert "cv=pass" in seal[0], seal[0]
            assert cv == b"pass", comment
            aar = email.message_from_bytes(data)["ARC-Authentication-Results"]
            assert aar.startswith("i=2; mx.a.test;") and "arc=pass" in aar and "dkim=pass" in aar, aar


def test_the_send_limit_holds_for_redirects_of_messages_arriving_together(world: World) -> None:
    """Each delivery's sorter sees the same count until one commits: the limit is checked again, with the count,
    in the write transaction. What is not forwarded is kept in the mailbox: nothing lost, never past the limit."""
    rule = world.tmp / "fwd.sieve"
    rule.write_text('redirect "far@c.test";\n')
    world.a.cli("rules", "add", "alice@a.test", "fwd", str(rule))
    world.a.cli("quota", "set", "alice@a.test", "--hourly-send", "2")
    world.a.start()
    count = 8
    messages = [daves_message("alice@a.test", subject=f"together {i}") for i in range(count)]
    clients = [smtplib.SMTP(A_HOST, 25, timeout=20, source_address=(DAVE_HOST, 0)) for _ in range(count)]
    try:
        for client in clients:  # everything up to the message itself, then the messages all at once
            client.ehlo("client.test")
            client.mail("dave@d.test")
            client.rcpt("alice@a.test")
            client.putcmd("data")
            assert client.getreply()[0] == 354
        for client, data in zip(clients, messages, strict=True):
            client.send(data + b".\r\n")
        assert all(client.getreply()[0] == 250 for client in clients)
    finally:
        for client in clients:
            client.close()
    assert len(world.a.messages("alice@a.test")) == count - 2, "the others are kept"
    assert world.a.query("SELECT max(recipients) AS n FROM send_counts WHERE period = 'hour'")[0]["n"] == 2
    assert world.a.log().count("send limit is reached") == count - 2  # by the sorter or, racing, at the commit
    wait_for("the two forwards", lambda: len(world.recipients()) == 2)
