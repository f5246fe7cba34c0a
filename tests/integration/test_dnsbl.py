"""relentad.dnsbl over real DNS (dnsmasq): listings, refusal codes, broken zones, failures."""

from __future__ import annotations

import ipaddress

import pytest

from relentad.dns import make_resolver
from relentad.dnsbl import MAX_LINK_DOMAINS, Blocklists, Listing, health, is_listing, link_domains, query_name
from tests.support.dnsmasq import Dnsmasq, DnsRecords


@pytest.mark.parametrize(
    ("ip", "name"),
    [
        ("192.0.2.99", "99.2.0.192.bl.test"),
        ("::ffff:192.0.2.99", "99.2.0.192.bl.test"),
        ("2001:db8::1", "1.0.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.bl.test"),
        ("not-an-ip", None),
    ],
)
def test_query_name_reverses_octets_and_nibbles(ip: str, name: str | None) -> None:
    assert query_name(ip, "bl.test.") == name


@pytest.mark.parametrize(
    ("code", "listed"),
    [
        ("127.0.0.2", True),
        ("127.0.1.2", True),
        ("127.255.255.254", False),  # Spamhaus: refused (public resolver)
        ("127.0.0.1", False),  # URIBL: refused
        ("10.0.0.2", False),
        ("x", False),
    ],
)
def test_only_loopback_answers_outside_the_refusal_range_are_listings(code: str, listed: bool) -> None:
    assert is_listing(code) is listed


def zone(*entries: tuple[str, str]) -> DnsRecords:
    records = DnsRecords()
    for name, code in entries:
        records.add_a(name, code)
    return records


async def test_a_listed_address_names_the_zone_code_and_reason(dnsmasq: Dnsmasq) -> None:
    records = zone(("2.0.0.127.bl.test", "127.0.0.2"), ("99.2.0.192.other.test", "127.0.0.4"))
    dnsmasq.replace(records.add_txt("2.0.0.127.bl.test", "Listed\tfor testing\x07 see https://bl.test/"))
    lists = Blocklists(["bl.test", "other.test."], make_resolver([dnsmasq.nameserver], 1.0))
    reason = "Listed for testing see https://bl.test/"
    assert await lists.check("127.0.0.2") == Listing("127.0.0.2", "bl.test", "127.0.0.2", reason)
    assert await lists.check("192.0.2.99") == Listing("192.0.2.99", "other.test", "127.0.0.4", "")
    assert await lists.check("192.0.2.98") is None
    listing = Listing("192.0.2.1", "bl.test", "127.0.0.2", "why")
    assert listing.field() == b"X-DNSBL: 192.0.2.1 listed in bl.test (127.0.0.2: why)\r\n"


def test_link_domains_are_registrable_domains_without_ips_or_bare_suffixes() -> None:
    hosts = {"www.shop.example.com", "example.com", "co.uk", "offers.example.co.uk", "192.0.2.1", "localhost", "com"}
    assert link_domains(hosts) == ["example.co.uk", "example.com"]
    odd = {"bücher.example", "xn--bcher-kva.example", "ex ample.com", "-bad-.com", "x." + "y" * 70 + ".com"}
    assert link_domains(odd) == ["xn--bcher-kva.example"]
    assert len(link_domains(f"d{i}.example{i}.test" for i in range(50))) == MAX_LINK_DOMAINS


async def test_domain_zones_list_link_domains_and_are_checked_by_their_own_test_points(dnsmasq: Dnsmasq) -> None:
    records = zone(("bad.example.dbl.test", "127.0.1.2"), ("test.dbl.test", "127.0.1.2"))
    records = records.add_a("example.world.test", "127.0.1.2").add_a("invalid.world.test", "127.0.1.2")
    dnsmasq.replace(records.add_a("bad.example.uribl.test", "127.0.0.1"))  # URIBL's "refused"
    resolver = make_resolver([dnsmasq.nameserver], 1.0)
    lists = Blocklists([], resolver, ["uribl.test", "dbl.test", "world.test"])
    assert await lists.check_domains(["good.example", "bad.example"]) == Listing(
        "bad.example", "dbl.test", "127.0.1.2", ""
    )
    assert await lists.check_domains(["example"]) is None  # world.test lists INVALID: ignored
    assert lists._broken_until.keys() == {"world.test"}
    assert await health(resolver, "dbl.test", domains=True) is None
    assert "lists invalid" in str(await health(resolver, "world.test", domains=True))
    assert await lists.check("127.0.0.2") is None  # no IP zones


async def test_refusal_codes_and_zones_listing_everything_are_not_listings(dnsmasq: Dnsmasq) -> None:
    """Spamhaus answers 127.255.255.254 to a public resolver; a zone listing 127.0.0.1 lists the world."""
    records = zone(("2.0.0.127.refusing.test", "127.255.255.254"))
    records = records.add_a("2.0.0.127.world.test", "127.0.0.2").add_a("1.0.0.127.world.test", "127.0.0.2")
    dnsmasq.replace(records)
    lists = Blocklists(["refusing.test", "world.test"], make_resolver([dnsmasq.nameserver], 1.0))
    assert await lists.check("127.0.0.2") is None
    assert lists._broken_until.keys() == {"world.test"}


async def test_a_dns_failure_is_not_a_listing() -> None:
    lists = Blocklists(["bl.test"], make_resolver(["127.0.0.1:9"], 0.3))
    assert await lists.check("127.0.0.2") is None
    assert await Blocklists([], make_resolver(["127.0.0.1:9"], 0.3)).check("127.0.0.2") is None


async def test_health_judges_a_zone_by_its_test_points(dnsmasq: Dnsmasq) -> None:
    records = zone(("2.0.0.127.good.test", "127.0.0.2"), ("2.0.0.127.refusing.test", "127.255.255.254"))
    records = records.add_a("2.0.0.127.world.test", "127.0.0.2").add_a("1.0.0.127.world.test", "127.0.0.2")
    dnsmasq.replace(records)
    resolver = make_resolver([dnsmasq.nameserver], 1.0)
    assert await health(resolver, "good.test") is None
    refusing, world, typo = [await health(resolver, z) for z in ("refusing.test", "world.test", "typo.test")]
    assert refusing == ("fail", "refuses queries from this resolver (127.255.255.254): a public or shared resolver?")
    assert world is not None and world[0] == "fail" and "lists 127.0.0.1" in world[1]
    assert typo is not None and typo[0] == "warn" and "does not list the test point 127.0.0.2" in typo[1]
    unanswered = await health(make_resolver(["127.0.0.1:9"], 0.3), "good.test")
    assert unanswered is not None and unanswered[0] == "warn" and "no answer" in unanswered[1]


def nibbles(ip: str, zone: str) -> str:
    return ".".join(reversed(ipaddress.ip_address(ip).exploded.replace(":", ""))) + "." + zone


async def test_an_ipv6_client_is_checked_against_the_ipv6_test_point(dnsmasq: Dnsmasq) -> None:
    """RFC 5782 §5: an IPv6 list must not list ::FFFF:7F00:1 (asked as nibbles). The sanity check used to ask
    IPv4's 127.0.0.1, which an IPv6-only list never holds: one answering everything in its IPv6 tree counted."""
    client = "2001:db8::1"
    records = zone((nibbles(client, "good6.test"), "127.0.0.2"), (nibbles("::ffff:7f00:2", "good6.test"), "127.0.0.2"))
    for name in (client, "::ffff:7f00:1", "::ffff:7f00:2"):
        records = records.add_a(nibbles(name, "world6.test"), "127.0.0.2")
    dnsmasq.replace(records)
    lists = Blocklists(["world6.test", "good6.test"], make_resolver([dnsmasq.nameserver], 1.0))
    assert await lists.check(client) == Listing(client, "good6.test", "127.0.0.2", "")
    assert lists._broken_until.keys() == {"world6.test"}
    resolver = make_resolver([dnsmasq.nameserver], 1.0)
    assert await health(resolver, "good6.test") is None  # `relentad doctor`: an IPv6 list answers its own points
    world = await health(resolver, "world6.test")
    assert world is not None and world[0] == "fail" and "lists ::ffff:7f00:1" in world[1]
