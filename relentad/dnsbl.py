"""DNS blocklists (RFC 5782): is the MX client's IP address listed, or a domain the message links to?

IP zones are asked once per SMTP connection (at its first accepted recipient; STARTTLS keeps the answer), domain
zones once per message about the registrable domains of its links (at most :data:`MAX_LINK_DOMAINS`); every
question of one check is asked at once. Invariants:
- Only an A answer inside 127.0.0.0/8 is a listing, and never 127.0.0.1 or one inside 127.255.255.0/24: those
  are how lists say they refuse the query (Spamhaus answers 127.255.255.x to public resolvers and over its free
  quota, URIBL 127.0.0.1). Taking them for listings would block every sender.
- A zone that lists its never-listed test point (RFC 5782 §5: 127.0.0.1, or ::FFFF:7F00:1 when asked about an
  IPv6 address, for IP lists; the name INVALID for domain lists) is broken or answering everything: its answers
  are ignored (logged as an error) and it is tried again after :data:`ZONE_RECHECK` seconds.
- A DNS failure means "not listed" (fail open, logged): a blocklist outage never stops mail.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import publicsuffix2

from .addrspec import normalize_domain
from .dns import DnsLookupError, lookup
from .errors import InvalidInput
from .mailauth import organizational_domain

log = logging.getLogger(__name__)

ZONE_RECHECK = 3600.0
MAX_LINK_DOMAINS = 20  # registrable domains of one message's links looked up (spam links few; lists cost queries)
REASON_LENGTH = 200  # the TXT record is quoted in an SMTP reply and a header: printable ASCII, shortened
_LISTED = ipaddress.ip_network("127.0.0.0/8")
_REFUSED = ipaddress.ip_network("127.255.255.0/24")
_REFUSED_URIBL = ipaddress.ip_address("127.0.0.1")
# RFC 5782 §5 test points: (always listed, never listed) for IP-based lists (IPv4, IPv6: asked as nibbles, not
# as the IPv4 address they map) and for domain-based lists
_IP_TEST_POINTS = ("127.0.0.2", "127.0.0.1")
_IPV6_TEST_POINTS = ("::ffff:7f00:2", "::ffff:7f00:1")
_DOMAIN_TEST_POINTS = ("test", "invalid")


FIELD = "x-dnsbl"
"""The field :meth:`Listing.field` writes; removed from mail arriving with it, so that no sender can fake a listing."""


@dataclass(frozen=True, slots=True)
class Listing:
    """Why mail is suspect: what was listed (an IP address or a domain), the zone, its A answer (the list's code)
    and its TXT reason ("" when none)."""

    listed: str
    zone: str
    code: str
    reason: str

    def describe(self) -> str:
        """``zen.example (127.0.0.2: reason)``, for SMTP replies and the X-DNSBL field."""
        return f"{self.zone} ({self.code}{': ' + self.reason if self.reason else ''})"

    def field(self) -> bytes:
        """The ``X-DNSBL`` header field that tells the user why the message is in Junk (one arriving with the
        message is removed first: :data:`FIELD`)."""
        return f"X-DNSBL: {self.listed} listed in {self.describe()}\r\n".encode("ascii", "replace")


def query_name(ip: str, zone: str) -> str | None:
    """The name to ask ``zone`` about ``ip`` (RFC 5782 §2.1 / §2.4): reversed octets or nibbles; None for a bad IP."""
    address = _client_address(ip)
    return None if address is None else _reversed_name(address, zone)


def _client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address lists are asked about: an IPv4-mapped IPv6 address is the IPv4 client it stands for."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _reversed_name(address: ipaddress.IPv4Address | ipaddress.IPv6Address, zone: str) -> str:
    if isinstance(address, ipaddress.IPv4Address):
        labels = reversed(str(address).split("."))
    else:
        labels = reversed(address.exploded.replace(":", ""))
    return ".".join(labels) + "." + zone.strip(".")


def is_listing(code: str) -> bool:
    """Whether an A answer means "listed": inside 127.0.0.0/8 and not a refusal code."""
    try:
        address = ipaddress.ip_address(code)
    except ValueError:
        return False
    return address in _LISTED and address not in _REFUSED and address != _REFUSED_URIBL


def link_domains(hosts: Iterable[str]) -> list[str]:
    """The registrable domains of link hosts as A-labels (public suffix plus one label; IP addresses, bare public
    suffixes and names that are no host names dropped), sorted, at most :data:`MAX_LINK_DOMAINS`."""
    domains = set()
    for host in hosts:
        name = host.lower().strip(".")
        if "." not in name or name.replace(".", "").isdigit() or publicsuffix2.get_tld(name, wildcard=True) == name:
            continue
        try:
            domains.add(normalize_domain(organizational_domain(name)))  # an A-label, and a valid host name
        except InvalidInput:
            continue
    return sorted(domains)[:MAX_LINK_DOMAINS]


def _printable(text: str) -> str:
    cleaned = "".join(c if " " <= c <= "~" else " " for c in text)
    return " ".join(cleaned.split())[:REASON_LENGTH]


class Blocklists:
    """The configured zones and what is known of their health; one per configuration (rebuilt on reload)."""

    def __init__(
        self, zones: list[str], resolver: dns.asyncresolver.Resolver, domain_zones: list[str] | None = None
    ) -> None:
        self.zones = _names(zones)
        self.domain_zones = _names(domain_zones or [])
        self.resolver = resolver
        self._broken_until: dict[str, float] = {}

    async def check(self, ip: str) -> Listing | None:
        """The first IP zone (in configured order) listing ``ip``, or None."""
        address = _client_address(ip)
        if address is None:
            return None
        ipv6 = isinstance(address, ipaddress.IPv6Address)
        never_listed = (_IPV6_TEST_POINTS if ipv6 else _IP_TEST_POINTS)[1]  # an IPv6 list may hold no IPv4 points
        questions = [(ip, zone, _reversed_name(address, zone), never_listed) for zone in self.zones]
        return await self._first(questions)

    async def check_domains(self, domains: list[str]) -> Listing | None:
        """The first listing of ``domains`` (in their order, then the zones') in the domain zones, or None."""
        questions = [(d, zone, f"{d}.{zone}", _DOMAIN_TEST_POINTS[1]) for d in domains for zone in self.domain_zones]
        return await self._first(questions)

    async def _first(self, questions: Sequence[tuple[str, str, str | None, str]]) -> Listing | None:
        found = await asyncio.gather(*(self._ask(*question) for question in questions))
        return next((listing for listing in found if listing is not None), None)

    async def _ask(self, listed: str, zone: str, name: str | None, never_listed: str) -> Listing | None:
        if name is None or self._broken_until.get(zone, 0.0) > time.monotonic():
            return None
        codes = await self._codes(name)
        if not codes or await self._lists_everything(zone, never_listed):
            return None
        reason = ""
        try:
            texts = await lookup(self.resolver, name, "TXT")
            strings = (b"".join(getattr(record, "strings", ())) for record in texts)
            reason = _printable(" ".join(text.decode("ascii", "replace") for text in strings))
        except DnsLookupError:
            pass  # the reason is a courtesy; the listing stands without it
        return Listing(listed, zone, codes[0], reason)

    async def _codes(self, name: str) -> list[str]:
        try:
            records = await lookup(self.resolver, name, "A")
        except DnsLookupError as exc:
            log.warning("dnsbl: %s: %s; taken as not listed", name, exc)
            return []
        return [code for code in (record.to_text() for record in records) if is_listing(code)]

    async def _lists_everything(self, zone: str, never_listed: str) -> bool:
        """Whether ``zone`` lists its test point that must never be listed (then it is ignored a while)."""
        if not await self._codes(_test_name(never_listed, zone)):
            return False
        log.error("dnsbl: %s lists %s (broken, or refusing this resolver): ignored for an hour", zone, never_listed)
        self._broken_until[zone] = time.monotonic() + ZONE_RECHECK
        return True


def _names(zones: list[str]) -> list[str]:
    return [zone.strip(".").lower() for zone in zones if zone.strip(".")]


def _test_name(point: str, zone: str) -> str:
    """The name of a test point in ``zone``: reversed octets, nibbles (``::ffff:7f00:1`` too), or the domain."""
    try:
        return _reversed_name(ipaddress.ip_address(point), zone)
    except ValueError:
        return f"{point}.{zone.strip('.')}"


async def health(resolver: dns.asyncresolver.Resolver, zone: str, *, domains: bool = False) -> tuple[str, str] | None:
    """What is wrong with ``zone``, judged by RFC 5782 §5's test points, as (``"fail"`` or ``"warn"``, why); None
    when it answers as a blocklist should: 127.0.0.2 listed and 127.0.0.1 not for an IP list (or, for an IPv6
    list, ::FFFF:7F00:2 and ::FFFF:7F00:1), TEST listed and INVALID not for a domain list.

    For ``relentad doctor``: the usual trouble is a list refusing the daemon's resolver (Spamhaus answers
    127.255.255.x to public resolvers), which makes the list silently useless. A list that does not list its
    test point only warns: not every list follows §5 for it (Spamhaus DBL's own test name is dbltest.com).
    """
    if domains:
        return await _judge(resolver, zone, *_DOMAIN_TEST_POINTS)
    verdict = await _judge(resolver, zone, *_IP_TEST_POINTS)
    if verdict != _unlisted_test_point(_IP_TEST_POINTS[0]):
        return verdict
    ipv6 = await _judge(resolver, zone, *_IPV6_TEST_POINTS)  # an IPv6-only list has no IPv4 test point
    return verdict if ipv6 == _unlisted_test_point(_IPV6_TEST_POINTS[0]) else ipv6


def _unlisted_test_point(point: str) -> tuple[str, str]:
    return "warn", f"does not list the test point {point}: not a blocklist zone of this kind, or a mistyped name"


async def _judge(resolver: dns.asyncresolver.Resolver, zone: str, listed: str, unlisted: str) -> tuple[str, str] | None:
    answers: dict[str, list[str]] = {}
    for point in (listed, unlisted):
        try:
            answers[point] = [record.to_text() for record in await lookup(resolver, _test_name(point, zone), "A")]
        except DnsLookupError as exc:
            return "warn", f"no answer about the test point {point}: {exc}"
    refused = [code for code in answers[listed] if not is_listing(code) and ipaddress.ip_address(code) in _LISTED]
    if refused:
        return "fail", f"refuses queries from this resolver ({refused[0]}): a public or shared resolver?"
    if any(is_listing(code) for code in answers[unlisted]):
        return "fail", f"lists {unlisted}, which no blocklist may: broken, so relentad ignores its answers"
    if not any(is_listing(code) for code in answers[listed]):
        return _unlisted_test_point(listed)
    return None
