"""MTA-STS (RFC 8461) on outbound delivery, between real servers on loopback.

The world: dnsmasq serves c.test's MX (mx.c.test, an aiosmtpd server on 127.0.0.34:25 offering STARTTLS), its
``_mta-sts.c.test`` TXT record and ``mta-sts.c.test`` (an HTTPS server on 127.0.0.35:443 serving the policy).
Certificates come from a private test CA that a.test's relentad trusts through ``[queue] ca_file``. alice@a.test
submits; the queue looks the policy up before delivering. Needs root (ports 25 and 443) and dnsmasq.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.e2e.conftest import MakeDaemon
from tests.e2e.test_outbound import message, queue_list, submit
from tests.support.daemon import Daemon, wait_for
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq, DnsRecords
from tests.support.https_peer import HttpsPeer
from tests.support.pki import TestCA
from tests.support.smtp_peer import Sink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binds ports 25 and 443 on 127.0.0.34-35: needs root")

A_HOST, MX_HOST, WEB_HOST = "127.0.0.32", "127.0.0.34", "127.0.0.35"
FAST_QUEUE = {"retry_schedule": ["1s"], "scan_interval": "1s", "timeout": "10s"}
WELL_KNOWN = "/.well-known/mta-sts.txt"


def policy(mode: str = "enforce", mx: str = "mx.c.test", max_age: int = 86400) -> str:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: {max_age}\r\n"


def records(txt_id: str | None = "one", mx_host: str = "mx.c.test") -> DnsRecords:
    found = DnsRecords().add_mx("a.test", "mx.a.test").add_a("mx.a.test", A_HOST)
    found.add_mx("c.test", mx_host).add_a(mx_host, MX_HOST).add_a("mta-sts.c.test", WEB_HOST)
    if txt_id is not None:
        found.add_txt("_mta-sts.c.test", f"v=STSv1; id={txt_id};")
    return found


@dataclass
class World:
    dns: Dnsmasq
    a: Daemon
    ca: TestCA
    web: HttpsPeer
    sinks: list[Controller] = field(default_factory=list)

    def sink(self, *names: str, starttls: bool = True) -> Sink:
        """The MX on 127.0.0.34:25, with STARTTLS and a CA-issued certificate for ``names`` (or none)."""
        handler = Sink()
        extra: dict[str, Any] = {"tls_context": self.ca.server_context(*names)} if starttls else {}
        controller = Controller(handler, hostname=MX_HOST, port=25, **extra)
        controller.start()
        self.sinks.append(controller)
        return handler

    def deferred(self) -> str:
        """The last reply of the (one) queued recipient once it was attempted."""

        def attempted() -> str | None:
            for queued in queue_list(self.a):
                for recipient in queued["recipients"]:
                    if recipient["attempts"] and recipient["last_reply"]:
                        return str(recipient["last_reply"])
            return None

        reply: str = wait_for("a deferred recipient", attempted)
        return reply


@pytest.fixture
def world(tmp_path: Path, make_daemon: MakeDaemon) -> Iterator[World]:
    dns_server = start_or_skip(tmp_path / "dns", records())
    ca = TestCA(tmp_path / "ca")
    made: World | None = None
    try:
        a = make_daemon(
            "a",
            host=A_HOST,
            submission=True,
            settings={
                "dns": {"nameservers": [dns_server.nameserver], "timeout": 2.0},
                "queue": {**FAST_QUEUE, "ca_file": str(ca.pem)},
                "server": {"hostname": "mx.a.test"},
            },
        )
        a.add_domain("a.test")
        a.add_user("alice@a.test")
        with HttpsPeer(WEB_HOST, 443, ca.server_context("mta-sts.c.test")) as web:
            made = World(dns_server, a, ca, web)
            yield made
    finally:
        for controller in made.sinks if made else []:
            controller.stop()
        if made is not None:
            print(f"--- a.test daemon log\n{made.a.log()}")
        dns_server.close()


def send(world: World) -> None:
    world.a.start()
    submit(world.a, ["carol@c.test"], message("carol@c.test"))


def test_enforce_delivers_over_verified_tls_and_a_cached_policy_outlives_a_failed_fetch(world: World) -> None:
    world.web.serve(WELL_KNOWN, policy())
    sink = world.sink("mx.c.test")
    send(world)
    [(_, rcpts, _)] = wait_for("delivery", lambda: sink.accepted)
    assert rcpts == ["carol@c.test"]
    mail_index = next(i for i, c in enumerate(sink.commands) if c.startswith("MAIL"))
    assert sink.tls[mail_index], "MAIL went over TLS"
    assert world.web.requests == [(WELL_KNOWN, "mta-sts.c.test")]
    [row] = world.a.query("SELECT domain, policy_id, mode, mx, max_age FROM mta_sts_policies")
    assert tuple(row) == ("c.test", "one", "enforce", "mx.c.test", 86400)
    shown = world.a.cli("mta-sts", "list").stdout
    assert "c.test" in shown and "enforce" in shown and "id=one" in shown
    live = world.a.cli("mta-sts", "show", "C.TEST").stdout
    assert "lookup: cached" in live and "mx: mx.c.test" in live

    # The domain moves its MX to a host the cached policy does not name and publishes a new id, but the new
    # policy cannot be fetched: the unexpired cached one still applies (RFC 8461 §5.1), so nothing is sent.
    world.dns.replace(records(txt_id="two", mx_host="mx2.c.test"))
    world.web.serve(WELL_KNOWN, "oops", status=500)
    sink.commands.clear()
    submit(world.a, ["carol@c.test"], message("carol@c.test"))
    reply = world.deferred()
    assert reply.startswith("451 4.7.5") and "mx2.c.test matches none of the policy's mx (mx.c.test)" in reply
    assert sink.commands == [], "a host outside the policy is never contacted"
    assert "fetch_failed_cached" in world.a.log()
    assert world.a.query("SELECT policy_id FROM mta_sts_policies")[0][0] == "one"
    assert "fetch_failed_cached: mta-sts.c.test: HTTP status 500" in world.a.cli("mta-sts", "show", "c.test").stdout
    assert world.a.cli("mta-sts", "forget", "c.test").stdout == "cached MTA-STS policy of c.test dropped\n"
    gone = world.a.cli("mta-sts", "forget", "c.test", check=False)
    assert gone.returncode == 1 and gone.stderr.strip() == "Error: no cached MTA-STS policy for c.test"


def test_enforce_with_a_certificate_for_another_name_defers_and_never_falls_back(world: World) -> None:
    world.web.serve(WELL_KNOWN, policy())
    sink = world.sink("other.test")
    send(world)
    reply = world.deferred()
    assert reply.startswith("451 4.7.5 MTA-STS policy of c.test: mx.c.test[127.0.0.34]: certificate not valid")
    assert not any(c.startswith(("MAIL", "RCPT", "DATA")) for c in sink.commands), "never in plain text"
    assert sink.accepted == []
    [queued] = queue_list(world.a)
    assert queued["recipients"][0]["state"] == "queued"


def test_enforce_with_mx_outside_the_policy_defers(world: World) -> None:
    world.web.serve(WELL_KNOWN, policy(mx="*.elsewhere.test"))
    sink = world.sink("mx.c.test")
    send(world)
    reply = world.deferred()
    assert reply == (
        "451 4.7.5 MTA-STS policy of c.test: MX host mx.c.test matches none of the policy's mx (*.elsewhere.test)"
    )
    assert sink.commands == [] and sink.accepted == []


def test_enforce_without_starttls_defers(world: World) -> None:
    world.web.serve(WELL_KNOWN, policy())
    sink = world.sink(starttls=False)
    send(world)
    assert "mx.c.test[127.0.0.34] does not offer STARTTLS" in world.deferred()
    assert sink.accepted == []


def test_testing_mode_delivers_and_reports(world: World) -> None:
    world.web.serve(WELL_KNOWN, policy(mode="testing"))
    sink = world.sink("other.test")
    send(world)
    [(_, rcpts, _)] = wait_for("delivery", lambda: sink.accepted)
    assert rcpts == ["carol@c.test"]
    wait_for("an empty queue", lambda: queue_list(world.a) == [])
    log = world.a.log()
    assert "mta-sts domain=c.test mode=testing certificate" in log and "used anyway (mode testing)" in log


def test_no_txt_record_delivers_as_before(world: World) -> None:
    world.dns.replace(records(txt_id=None))
    world.web.serve(WELL_KNOWN, policy(mx="nothing.test"))
    sink = world.sink(starttls=False)
    send(world)
    wait_for("plain-text delivery", lambda: sink.accepted)
    assert world.web.requests == [], "no TXT record: no fetch"
    assert world.a.query("SELECT * FROM mta_sts_policies") == []


def test_unusable_policies_are_ignored(world: World) -> None:
    """An invalid policy, a wrong Content-Type, a redirect: each is no policy (logged), and delivery goes on as
    without MTA-STS. Each comes with a new TXT id, so each is fetched."""
    sink = world.sink(starttls=False)
    world.a.start()
    cases = [
        (200, "text/plain", policy(mode="reject", mx="nothing.test"), "invalid_policy: bad mode 'reject'"),
        (200, "text/html", policy(mx="nothing.test"), "Content-Type 'text/html', not text/plain"),
        (301, "text/plain", policy(mx="nothing.test"), "HTTP status 301 (redirects are not followed)"),
    ]
    for number, (status, kind, body, logged) in enumerate(cases, 1):
        world.dns.replace(records(txt_id=f"id{number}"))
        world.web.serve(WELL_KNOWN, body, status=status, kind=kind)
        submit(world.a, ["carol@c.test"], message("carol@c.test"))
        wait_for("plain-text delivery", lambda n=number: len(sink.accepted) == n)
        assert logged in world.a.log()
        assert len(world.web.requests) == number
    assert world.a.query("SELECT * FROM mta_sts_policies") == []


def test_mta_sts_off_by_config(world: World) -> None:
    world.web.serve(WELL_KNOWN, policy(mx="nothing.test"))
    world.a.write_config(queue={**FAST_QUEUE, "mta_sts": False})
    sink = world.sink(starttls=False)
    send(world)
    wait_for("plain-text delivery", lambda: sink.accepted)
    assert world.web.requests == []
