"""relentad.dns (resolver factory, MX selection) and the dnsmasq test helper, over real DNS."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import dns.name
import dns.nameserver
import dns.resolver
import pytest

from relentad.dns import (
    DnsPermanentError,
    DnsTemporaryError,
    lookup,
    make_resolver,
    make_resolvers,
    make_sync_resolver,
    mx_hosts,
    parse_nameserver,
)
from tests.support.dns_fixture import SKIP_REASON
from tests.support.dnsmasq import Dnsmasq, DnsRecords, dnsmasq_path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("2001:db8::53", ("2001:db8::53", 53)),
    ],
)
def test_parse_nameserver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(spec) == expected


@pytest.mark.parametrize("spec", ["ns.example.com:53", "127.0.0.1:0", "127.0.0.1:x", "[::1", "[::1]x"])
def test_parse_nameserver_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="bad nameserver"):
        parse_nameserver(spec)


def test_resolvers_use_only_the_given_nameservers() -> None:
    for resolver in (make_resolver(["127.0.0.1:5353"], 1.5), make_sync_resolver(["127.0.0.1:5353"], 1.5)):
        [server] = resolver.nameservers
        assert isinstance(server, dns.nameserver.Do53Nameserver)
        assert (server.address, server.port) == ("127.0.0.1", 5353)
        assert resolver.search == []  # nothing came from /etc/resolv.conf
        assert resolver.domain == dns.name.root
        assert (resolver.timeout, resolver.lifetime) == (1.5, 1.5)


async def test_mx_hosts_sorted_by_preference(dnsmasq: Dnsmasq) -> None:
    zone = DnsRecords().add_mx("a.test", "backup.a.test", 20).add_mx("a.test", "MX1.a.test", 5)
    dnsmasq.replace(zone.add_mx("a.test", "mx2.a.test", 10))
    resolver = make_resolver([dnsmasq.nameserver], 1.0)
    assert await mx_hosts(resolver, "A.test.") == ["mx1.a.test", "mx2.a.test", "backup.a.test"]


async def test_mx_hosts_falls_back_to_the_address(dnsmasq: Dnsmasq) -> None:
    dnsmasq.replace(DnsRecords().add_a("v4.test", "192.0.2.1").add_aaaa("v6.test", "2001:db8::1"))
    resolver = make_resolver([dnsmasq.nameserver], 1.0)
    assert await mx_hosts(resolver, "v4.test") == ["v4.test"]
    assert await mx_hosts(resolver, "v6.test") == ["v6.test"]


async def test_mx_hosts_permanent_failures(dnsmasq: Dnsmasq) -> None:
    dnsmasq.replace(DnsRecords().add_mx("null.test", ".", 0).add_txt("txtonly.test", "hello"))
    resolver = make_resolver([dnsmasq.nameserver], 1.0)
    with pytest.raises(DnsPermanentError, match="null MX"):
        await mx_hosts(resolver, "null.test")
    with pytest.raises(DnsPermanentError, match="does not exist"):
        await mx_hosts(resolver, "nowhere.test")
    with pytest.raises(DnsPermanentError, match="no MX and no address"):
        await mx_hosts(resolver, "txtonly.test")


async def test_unanswered_queries_are_temporary(dnsmasq: Dnsmasq) -> None:
    resolver = make_resolver([dnsmasq.nameserver], 0.2)
    dnsmasq.stop()
    with pytest.raises(DnsTemporaryError):
        await mx_hosts(resolver, "a.test")
    with pytest.raises(DnsTemporaryError):
        await lookup(resolver, "a.test", "TXT")


async def test_dnsmasq_serves_long_txt_ptr_and_replacement(dnsmasq: Dnsmasq) -> None:
    long_value = "v=DKIM1; k=rsa; p=" + "A" * 600 + '"quoted", with comma'
    dnsmasq.replace(DnsRecords().add_txt("k.test", long_value).add_ptr("192.0.2.9", "host.a.test"))
    resolver = make_resolver([dnsmasq.nameserver], 1.0)
    [txt] = await lookup(resolver, "k.test", "TXT")
    strings = txt.strings  # type: ignore[attr-defined]
    assert [len(s) for s in strings][:2] == [255, 255]
    assert b"".join(strings).decode() == long_value
    [ptr] = await lookup(resolver, "9.2.0.192.in-addr.arpa", "PTR")
    assert ptr.to_text() == "host.a.test."
    assert await lookup(resolver, "unknown.test", "A") == []  # NXDOMAIN, not forwarded anywhere

    before = dnsmasq.nameserver
    dnsmasq.replace(DnsRecords().add_a("k.test", "192.0.2.7"))
    assert dnsmasq.nameserver == before
    assert await lookup(resolver, "k.test", "TXT") == []
    assert [r.to_text() for r in await lookup(resolver, "k.test", "A")] == ["192.0.2.7"]
    assert "query[A] k.test" in dnsmasq.log()


def test_daemon_resolver_keeps_answers_for_their_ttl(tmp_path: Path) -> None:
    """make_resolvers' asyncio resolver answers repeated lookups from its own table until the TTL runs out."""
    if dnsmasq_path() is None:
        pytest.skip(SKIP_REASON)
    records = DnsRecords().add_txt("cached.test", "v=spf1 -all")
    with Dnsmasq(records, workdir=tmp_path / "dns", ttl=300).start() as server:
        resolvers = make_resolvers([server.nameserver], 2.0)

        async def twice() -> tuple[list[str], list[str]]:
            first = [r.to_text() for r in await lookup(resolvers.aio, "cached.test", "TXT")]
            server.replace(DnsRecords().add_txt("cached.test", "v=spf1 +all"))
            return first, [r.to_text() for r in await lookup(resolvers.aio, "cached.test", "TXT")]

        first, second = asyncio.run(twice())
        assert first == second == ['"v=spf1 -all"']
        expiry, _ = resolvers.aio.records[("cached.test", "TXT")]
        assert 0 < expiry - time.time() <= 300


def test_daemon_resolver_keeps_nothing_with_ttl_zero(dnsmasq: Dnsmasq) -> None:
    """TTL 0 (every test's dnsmasq) means each lookup asks again: a test's record change is seen at once."""
    dnsmasq.replace(DnsRecords().add_txt("fresh.test", "one"))
    resolvers = make_resolvers([dnsmasq.nameserver], 2.0)

    async def twice() -> tuple[list[str], list[str]]:
        first = [r.to_text() for r in await lookup(resolvers.aio, "fresh.test", "TXT")]
        dnsmasq.replace(DnsRecords().add_txt("fresh.test", "two"))
        return first, [r.to_text() for r in await lookup(resolvers.aio, "fresh.test", "TXT")]

    assert asyncio.run(twice()) == (['"one"'], ['"two"'])
    assert resolvers.aio.records == {}


def hold(host: str, port: int) -> socket.socket:
    """A UDP socket bound to the port, as a client's ephemeral one would be. Another process's client socket may
    hold the port right after the stop (the very race under test; it failed a CI run once): wait for it to go."""
    deadline = time.monotonic() + 5
    while True:
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            holder.bind((host, port))
            return holder
        except OSError:
            holder.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_restart_waits_for_its_port_held_for_a_moment_by_a_client_socket(dnsmasq: Dnsmasq) -> None:
    """``replace`` restarts on the same port; a client's ephemeral UDP socket may hold it for a moment (a full parallel
    run once failed so), and the restart then waits instead of failing."""
    port = dnsmasq.port
    dnsmasq.stop()
    holder = hold(dnsmasq.host, port)
    release = threading.Timer(0.5, holder.close)
    release.start()
    try:
        dnsmasq.replace(DnsRecords().add_txt("held.test", "v=spf1 -all"))
        dnsmasq.start()
    finally:
        release.join()
        holder.close()
    assert dnsmasq.running and dnsmasq.port == port
    answers = dns.resolver.Resolver(configure=False)
    answers.nameservers, answers.port = [dnsmasq.host], port
    assert [r.to_text() for r in answers.resolve("held.test", "TXT")] == ['"v=spf1 -all"']
