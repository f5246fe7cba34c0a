"""DNS blocklists (RFC 5782): is the IP address of a client of the MX listed?

Asked once per SMTP connection (at its first accepted recipient), every configured zone at once. Invariants:
- Only an A answer inside 127.0.0.0/8 is a listing, and never one inside 127.255.255.0/24: Spamhaus answers there
  when it refuses the query (a public resolver, over its free quota). Taking those for listings would block
  every sender.
- A zone that lists 127.0.0.1, which RFC 5782 §5 says no list may, is broken or answering everything: its
  answers are ignored (logged as an error) and it is tried again after :data:`ZONE_RECHECK` seconds.
- A DNS failure means "not listed" (fail open, logged): a blocklist outage never stops mail.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass

import dns.asyncresolver

from .dns import DnsLookupError, lookup

log = logging.getLogger(__name__)

ZONE_RECHECK = 3600.0
REASON_LENGTH = 200  # the TXT record is quoted in an SMTP reply and a header: printable ASCII, shortened
_LISTED = ipaddress.ip_network("127.0.0.0/8")
_REFUSED = ipaddress.ip_network("127.255.255.0/24")
_TEST_POINT_UNLISTED = "127.0.0.1"  # RFC 5782 §5: must never be listed
_TEST_POINT_LISTED = "127.0.0.2"  # RFC 5782 §5: must always be listed


@dataclass(frozen=True, slots=True)
class Listing:
    """Why a client is listed: the zone, its A answer (the list's code) and its TXT reason ("" when none)."""

    zone: str
    code: str
    reason: str

    def describe(self) -> str:
        """One line for SMTP replies and the X-DNSBL field: ``zen.example (127.0.0.2: reason)``."""
        return f"{self.zone} ({self.code}{': ' + self.reason if self.reason else ''})"


def query_name(ip: str, zone: str) -> str | None:
    """The name to ask ``zone`` about ``ip`` (RFC 5782 §2.1 / §2.4): reversed octets or nibbles; None for a bad IP."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
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
    return address in _LISTED and address not in _REFUSED


def _printable(text: str) -> str:
    cleaned = "".join(c if " " <= c <= "~" else " " for c in text)
    return " ".join(cleaned.split())[:REASON_LENGTH]


class Blocklists:
    """The configured zones and what is known of their health; one per configuration (rebuilt on reload)."""

    def __init__(self, zones: list[str], resolver: dns.asyncresolver.Resolver) -> None:
        self.zones = [zone.strip(".").lower() for zone in zones if zone.strip(".")]
        self.resolver = resolver
        self._broken_until: dict[str, float] = {}

    async def check(self, ip: str) -> Listing | None:
        """The first zone (in configured order) listing ``ip``, or None."""
        if not self.zones:
            return None
        found = await asyncio.gather(*(self._ask(zone, ip) for zone in self.zones))
        return next((listing for listing in found if listing is not None), None)

    async def _ask(self, zone: str, ip: str) -> Listing | None:
        name = query_name(ip, zone)
        if name is None or self._broken_until.get(zone, 0.0) > time.monotonic():
            return None
        codes = await self._codes(name)
        if not codes or await self._lists_everything(zone):
            return None
        reason = ""
        try:
            texts = await lookup(self.resolver, name, "TXT")
            strings = (b"".join(getattr(record, "strings", ())) for record in texts)
            reason = _printable(" ".join(text.decode("ascii", "replace") for text in strings))
        except DnsLookupError:
            pass  # the reason is a courtesy; the listing stands without it
        return Listing(zone, codes[0], reason)

    async def _codes(self, name: str) -> list[str]:
        try:
            records = await lookup(self.resolver, name, "A")
        except DnsLookupError as exc:
            log.warning("dnsbl: %s: %s; taken as not listed", name, exc)
            return []
        return [code for code in (record.to_text() for record in records) if is_listing(code)]

    async def _lists_everything(self, zone: str) -> bool:
        """Whether ``zone`` lists the RFC 5782 test point that must never be listed (then it is ignored a while)."""
        name = query_name(_TEST_POINT_UNLISTED, zone)
        if name is None or not await self._codes(name):
            return False
        log.error("dnsbl: %s lists 127.0.0.1 (broken, or refusing this resolver): ignored for an hour", zone)
        self._broken_until[zone] = time.monotonic() + ZONE_RECHECK
        return True


async def health(resolver: dns.asyncresolver.Resolver, zone: str) -> str | None:
    """What is wrong with ``zone``, judged by RFC 5782 §5's test points (None: it answers as a blocklist should).

    For ``relentad doctor``: the usual trouble is a list refusing the daemon's resolver (Spamhaus answers
    127.255.255.x to public resolvers), which makes the list silently useless.
    """
    answers: dict[str, list[str]] = {}
    for point in (_TEST_POINT_LISTED, _TEST_POINT_UNLISTED):
        name = query_name(point, zone) or zone
        try:
            answers[point] = [record.to_text() for record in await lookup(resolver, name, "A")]
        except DnsLookupError as exc:
            return f"no answer about the test point {point}: {exc}"
    refused = [code for code in answers[_TEST_POINT_LISTED] if code.startswith("127.255.255.")]
    if refused:
        return f"refuses queries from this resolver ({refused[0]}): a public or shared resolver?"
    if any(is_listing(code) for code in answers[_TEST_POINT_UNLISTED]):
        return "lists 127.0.0.1, which no blocklist may: broken, so relentad ignores its answers"
    if not any(is_listing(code) for code in answers[_TEST_POINT_LISTED]):
        return "does not list the test point 127.0.0.2: not a blocklist zone, or a mistyped name"
    return None
