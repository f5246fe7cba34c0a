"""One delivery attempt (deliver.attempt in MX mode) against a recording aiosmtpd peer on 127.0.0.1.

DNS is replaced: the MX of c.test is mx.c.test at 127.0.0.1, on the peer's ephemeral port.
"""

from __future__ import annotations

import dns.asyncresolver
import pytest

from relentad import dns as relentad_dns
from relentad.config import QueueConfig
from relentad.queue import deliver
from tests.support.smtp_peer import Sink, serving

MESSAGE = b"From: alice@a.test\r\nTo: bob@c.test\r\nSubject: hi\r\n\r\nbody\r\n"


async def attempt(
    monkeypatch: pytest.MonkeyPatch,
    port: int,
    recipients: list[str],
    data: bytes = MESSAGE,
    *,
    mail_from: str = "alice@a.test",
    timeout: float = 10.0,
) -> dict[str, deliver.Outcome]:
    async def mx_hosts(resolver: dns.asyncresolver.Resolver, domain: str) -> list[str]:
        return ["mx.c.test"]

    async def addresses(resolver: dns.asyncresolver.Resolver, host: str) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(relentad_dns, "mx_hosts", mx_hosts)
    monkeypatch.setattr(deliver, "_addresses", addresses)
    monkeypatch.setattr(deliver, "SMTP_PORT", port)
    return await deliver.attempt(
        domain="c.test",
        mail_from=mail_from,
        recipients=recipients,
        data=data,
        hostname="mx.a.test",
        queue=QueueConfig(timeout=timeout),
        resolver=dns.asyncresolver.Resolver(configure=False),
        smarthost=None,
    )


async def test_a_slow_reply_to_the_final_dot_is_awaited_not_resent(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 5321 §4.5.3.2.6: a server may take minutes after the "." (content scanning); giving up then means the
    message it is accepting gets sent again (next MX, next retry)."""
    sink = Sink(data_delay=1.5)
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], timeout=0.5)
    assert outcomes["bob@c.test"].state == "delivered"
    assert sink.data_attempts == 1
    assert deliver.DATA_TIMEOUT >= 600
