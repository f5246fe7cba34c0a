"""Sending SMTP TLS reports (RFC 8460) between real servers on loopback.

The world: dnsmasq serves c.test's MX (mx.c.test, an aiosmtpd server on 127.0.0.44:25), its MTA-STS records
(policy on 127.0.0.45:443, mode enforce) and ``_smtp._tls.c.test`` asking for reports at tls@rua.test, whose MX is
another aiosmtpd server on 127.0.0.46:25. a.test's relentad delivers one message while c.test's MX has a certificate
for its name and one while it has a certificate for another name; ``relentad reports send`` then queues a TLS report,
which the daemon's queue delivers to rua.test's MX. Needs root (ports 25 and 443) and dnsmasq.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from relentad.authreports import intake, tlsrpt
from tests.e2e.conftest import MakeDaemon
from tests.e2e.test_outbound import message, queue_list, submit
from tests.support.daemon import Daemon, wait_for
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq, DnsRecords
from tests.support.https_peer import HttpsPeer
from tests.support.pki import TestCA
from tests.support.smtp_peer import Sink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binds ports 25 and 443 on 127.0.0.44-46: needs root")

A_HOST, MX_HOST, WEB_HOST, RUA_HOST = "127.0.0.42", "127.0.0.44", "127.0.0.45", "127.0.0.46"
POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx.c.test\r\nmax_age: 86400\r\n"


def records() -> DnsRecords:
    found = DnsRecords().add_mx("a.test", "mx.a.test").add_a("mx.a.test", A_HOST)
    found.add_mx("c.test", "mx.c.test").add_a("mx.c.test", MX_HOST).add_a("mta-sts.c.test", WEB_HOST)
    found.add_txt("_mta-sts.c.test", "v=STSv1; id=one;")
    found.add_txt("_smtp._tls.c.test", "v=TLSRPTv1; rua=mailto:tls@rua.test")
    found.add_mx("rua.test", "mx.rua.test").add_a("mx.rua.test", RUA_HOST)
    return found


class Peers:
    """aiosmtpd servers on port 25, stopped at the end."""

    def __init__(self) -> None:
        self.controllers: list[Controller] = []

    def start(self, host: str, **extra: Any) -> tuple[Sink, Controller]:
        handler = Sink()
        controller = Controller(handler, hostname=host, port=25, **extra)
        controller.start()
        self.controllers.append(controller)
        return handler, controller

    def close(self) -> None:
        for controller in self.controllers:
            controller.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Dnsmasq, TestCA, Peers]]:
    dns_server = start_or_skip(tmp_path / "dns", records())
    ca = TestCA(tmp_path / "ca")
    peers = Peers()
    try:
        with HttpsPeer(WEB_HOST, 443, ca.server_context("mta-sts.c.test")) as web:
            web.serve("/.well-known/mta-sts.txt", POLICY)
            yield dns_server, ca, peers
    finally:
        peers.close()
        dns_server.close()


def sender(make_daemon: MakeDaemon, dns_server: Dnsmasq, ca: TestCA, **extra: dict[str, Any]) -> Daemon:
    a = make_daemon(
        "a",
        host=A_HOST,
        submission=True,
        settings={
            "dns": {"nameservers": [dns_server.nameserver], "timeout": 2.0},
            # one attempt per message here: a deferred one waits an hour, so the session counts are exact
            "queue": {"retry_schedule": ["1h"], "scan_interval": "1s", "timeout": "10s", "ca_file": str(ca.pem)},
            "server": {"hostname": "mx.a.test"},
            **extra,
        },
    )
    a.add_domain("a.test")
    a.add_user("alice@a.test")
    return a


def attempted(a: Daemon, count: int) -> None:
    def done() -> bool:
        replies = [r["last_reply"] for m in queue_list(a) for r in m["recipients"] if r["attempts"]]
        return len(replies) >= count

    wait_for(f"{count} attempted message(s)", done)


def test_tls_report_counts_good_and_bad_sessions_and_reaches_the_rua_address(
    make_daemon: MakeDaemon, world: tuple[Dnsmasq, TestCA, Peers]
) -> None:
    dns_server, ca, peers = world
    a = sender(
        make_daemon,
        dns_server,
        ca,
        dmarc={"reporter": "reports@a.test", "org_name": "A Org"},
        tlsrpt={"send_reports": True},
    )
    a.cli("dkim", "generate", "a.test", "--activate")
    a.start()
    rua, _ = peers.start(RUA_HOST)  # no STARTTLS at all: a report gets through anyway
    good, good_controller = peers.start(MX_HOST, tls_context=ca.server_context("mx.c.test"))
    submit(a, ["carol@c.test"], message("carol@c.test", "first"))
    wait_for("delivery over verified TLS", lambda: good.accepted)
    wait_for("an empty queue", lambda: queue_list(a) == [])
    good_controller.stop()
    peers.controllers.remove(good_controller)

    bad, _ = peers.start(MX_HOST, tls_context=ca.server_context("other.test"))
    submit(a, ["carol@c.test"], message("carol@c.test", "second"))
    attempted(a, 1)
    assert bad.accepted == []
    rows = a.query("SELECT domain, policy_type, result, mx_host, mx_ip FROM tlsrpt_results ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("c.test", "sts", "success", "mx.c.test", MX_HOST),
        ("c.test", "sts", "certificate-host-mismatch", "mx.c.test", MX_HOST),
    ]

    out = a.cli("reports", "send").stdout.splitlines()
    assert out == ["TLS report for c.test queued to tls@rua.test"]  # [dmarc] send_reports is off
    [(mail_from, rcpts, raw)] = wait_for("the TLS report at rua.test's MX", lambda: rua.accepted)
    assert (mail_from, rcpts) == ("reports@a.test", ["tls@rua.test"])
    assert raw.startswith(b"DKIM-Signature:") and b"d=a.test" in raw.split(b"\r\n\r\n")[0]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["TLS-Report-Domain"] == "c.test" and msg["TLS-Report-Submitter"] == "a.test"
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "tlsrpt"
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    document = json.loads(gzip.decompress(attachment.get_content()))
    [policy] = document["policies"]
    assert policy["policy"]["policy-type"] == "sts" and policy["policy"]["mx-host"] == ["mx.c.test"]
    assert policy["summary"] == {"total-successful-session-count": 1, "total-failure-session-count": 1}
    [detail] = policy["failure-details"]
    assert detail["result-type"] == "certificate-host-mismatch"
    assert (detail["receiving-mx-hostname"], detail["receiving-ip"], detail["failed-session-count"]) == (
        "mx.c.test",
        MX_HOST,
        1,
    )
    assert detail["sending-mta-ip"].startswith("127.")

    [found] = intake.read(raw, 1_000_000)[1]  # what relentad's own receiving side makes of it
    assert isinstance(found.report, tlsrpt.TlsReport) and found.report.org == "A Org"
    assert a.query("SELECT * FROM tlsrpt_results") == [], "reported rows are gone; the report's own delivery is none"
    assert "Traceback" not in a.log()
    assert a.cli("reports", "send", "--tls").stdout.strip() == "no TLS report to send"


def test_off_by_default_records_and_sends_nothing(
    make_daemon: MakeDaemon, world: tuple[Dnsmasq, TestCA, Peers]
) -> None:
    dns_server, ca, peers = world
    a = sender(make_daemon, dns_server, ca)
    a.start()
    good, _ = peers.start(MX_HOST, tls_context=ca.server_context("mx.c.test"))
    submit(a, ["carol@c.test"], message("carol@c.test"))
    wait_for("delivery", lambda: good.accepted)
    wait_for("an empty queue", lambda: queue_list(a) == [])
    assert a.query("SELECT * FROM tlsrpt_results") == []
    refused = a.cli("reports", "send", "--tls", check=False)
    assert (refused.returncode, refused.stderr.strip()) == (
        1,
        "Error: [tlsrpt] send_reports is off: no TLS sessions are recorded, none to report",
    )
    both = a.cli("reports", "send", "--dmarc", "--tls", check=False)
    assert (both.returncode, both.stderr.strip()) == (
        1,
        "Error: --dmarc and --tls exclude each other (neither: both kinds)",
    )
    assert a.query("SELECT * FROM queue_messages") == []
