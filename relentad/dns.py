"""DNS resolvers for relentad, built from the `[dns] nameservers` configuration.

Everything that touches DNS (SPF, DKIM, DMARC, MX lookups for the outbound queue) gets its resolver from
here, so one setting points the whole daemon (and every test) at a chosen server.

Invariants:
- When nameservers are given, /etc/resolv.conf is never read (`configure=False`); only an empty list means
  "use the system resolver".
- Only the daemon's long-lived resolvers (`make_resolvers`) cache, and only for each answer's TTL, as a local
  caching resolver would: a test may change its DNS server's records between two lookups (it serves TTL 0).
- Lookup helpers never leak dnspython exceptions: a missing name or type is an empty answer, a timeout or
  server failure is `DnsTemporaryError`, a domain that cannot receive mail is `DnsPermanentError`.
"""

from __future__ import annotations

import ipaddress
import random
import time
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.MX import MX

DEFAULT_PORT = 53


class DnsLookupError(Exception):
    """A DNS lookup could not give a usable answer."""


class DnsTemporaryError(DnsLookupError):
    """Timeout, SERVFAIL, refused or unreachable server: worth retrying later."""


class DnsPermanentError(DnsLookupError):
    """The answer itself says no: the domain does not exist or does not accept mail (null MX)."""


def parse_nameserver(spec: str) -> tuple[str, int]:
    """Split "host:port", "[v6]:port", a bare IPv4/IPv6 address into (address, port).

    Only IP addresses are accepted: resolving a nameserver's name would need a resolver first.
    """
    text = spec.strip()
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"bad nameserver {spec!r}: missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad nameserver {spec!r}")
            port = _parse_port(spec, rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _parse_port(spec, port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"bad nameserver {spec!r}: not an IP address") from None
    return host, port


def _parse_port(spec: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad nameserver {spec!r}: bad port")
    return int(text)


def _configure(
    resolver: dns.resolver.BaseResolver,
    nameservers: list[str],
    timeout: float,
    cache: dns.resolver.LRUCache | None = None,
) -> None:
    if nameservers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port) for host, port in map(parse_nameserver, nameservers)
        ]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.retry_servfail = False
    resolver.cache = cache
    # AD in the query asks the resolver to say whether it validated the answer (RFC 6840 §5.7), which DANE needs;
    # cheaper than DO, which would bring every RRSIG along.
    resolver.flags = dns.flags.RD | dns.flags.AD


class CachingResolver(dns.asyncresolver.Resolver):
    """An asyncio resolver whose `lookup` results are kept, by name and type, until the answer's TTL expires.

    dnspython's own cache (shared with the worker-thread resolver) still answers first, but reaching it costs
    a Resolution, a name parse and a cache key per query; for a busy MX asking the same sender's SPF and DMARC
    records for every message that was a tenth of the inbound CPU. Only positive and no-data answers are kept
    here; NXDOMAIN goes through dnspython's negative cache.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, configure: bool = True) -> None:
        super().__init__(configure=configure)
        self.records: dict[tuple[str, str], tuple[float, list[dns.rdata.Rdata]]] = {}

    def cached(self, name: str, rdtype: str) -> list[dns.rdata.Rdata] | None:
        entry = self.records.get((name, rdtype))
        if entry is None:
            return None
        if entry[0] <= time.time():
            del self.records[(name, rdtype)]
            return None
        return entry[1]

    def keep(self, name: str, rdtype: str, answer: dns.resolver.Answer, records: list[dns.rdata.Rdata]) -> None:
        if answer.expiration <= time.time():
            return  # TTL 0: asked again every time
        if len(self.records) >= self.MAX_ENTRIES:
            self.records.clear()  # simple and bounded; a refill costs one dnspython cache hit per entry
        self.records[(name, rdtype)] = (answer.expiration, records)


@dataclass(frozen=True)
class Resolvers:
    """The daemon's resolvers: one for the event loop, one for libraries in worker threads (dkimpy).

    They share one TTL-respecting LRU cache (thread-safe), so a sender's SPF, DMARC and DKIM records are asked
    for once per TTL, not once per message, as a local caching resolver would do.
    """

    aio: CachingResolver
    sync: dns.resolver.Resolver


def make_resolvers(nameservers: list[str], timeout: float, cache_size: int = 10_000) -> Resolvers:
    """A cached pair of resolvers asking `nameservers` ("host:port"), or the system's when the list is empty."""
    cache = dns.resolver.LRUCache(cache_size)
    async_resolver = CachingResolver(configure=not nameservers)
    _configure(async_resolver, nameservers, timeout, cache)
    sync_resolver = dns.resolver.Resolver(configure=not nameservers)
    _configure(sync_resolver, nameservers, timeout, cache)
    return Resolvers(async_resolver, sync_resolver)


def make_resolver(nameservers: list[str], timeout: float) -> dns.asyncresolver.Resolver:
    """An asyncio resolver asking `nameservers` ("host:port"), or the system's when the list is empty."""
    resolver = dns.asyncresolver.Resolver(configure=not nameservers)
    _configure(resolver, nameservers, timeout)
    return resolver


def make_sync_resolver(nameservers: list[str], timeout: float) -> dns.resolver.Resolver:
    """The blocking twin of `make_resolver`, for libraries (dkimpy) that run in a worker thread."""
    resolver = dns.resolver.Resolver(configure=not nameservers)
    _configure(resolver, nameservers, timeout)
    return resolver


async def lookup(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: dns.rdatatype.RdataType | str
) -> list[dns.rdata.Rdata]:
    """The records of one type at `name`; [] when the name or the type does not exist.

    Raises DnsTemporaryError for timeouts and server failures, the cases where "no" is not an answer.
    """
    cache = resolver if isinstance(resolver, CachingResolver) else None
    key = str(rdtype)
    if cache is not None:
        kept = cache.cached(name, key)
        if kept is not None:
            return list(kept)
    answer = await _resolve(resolver, name, rdtype)
    if answer is None:
        return []
    records = list(answer)
    if cache is not None:
        cache.keep(name, key, answer, records)
    return records


async def _resolve(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: dns.rdatatype.RdataType | str
) -> dns.resolver.Answer | None:
    """The answer (maybe without records: no data), None when the name does not exist; DnsTemporaryError for
    timeouts and server failures, the cases where "no" is not an answer."""
    try:
        return await resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except (dns.name.NameTooLong, dns.exception.SyntaxError):
        return None  # a name that cannot exist (empty or long label, bad escape) has no records
    except dns.exception.Timeout as exc:
        raise DnsTemporaryError(f"{name} {rdtype}: timeout") from exc
    except dns.exception.DNSException as exc:  # NoNameservers (SERVFAIL/REFUSED/unreachable) and the rest
        raise DnsTemporaryError(f"{name} {rdtype}: {exc}") from exc


@dataclass(frozen=True)
class Secured:
    """An answer with what DANE needs: whether the resolver validated it (the AD bit) and the name the CNAME chain
    ends at."""

    records: list[dns.rdata.Rdata]
    secure: bool
    canonical: str


def _secure(answer: dns.resolver.Answer) -> bool:
    return answer.response is not None and bool(answer.response.flags & dns.flags.AD)


async def lookup_secure(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: dns.rdatatype.RdataType | str
) -> Secured:
    """Like :func:`lookup`, uncached, with the AD bit: a name or type that does not exist is an empty answer (not
    secure: only positive answers matter to DANE); DnsTemporaryError for timeouts and SERVFAIL (a validating
    resolver's answer to bogus data)."""
    answer = await _resolve(resolver, name, rdtype)
    if answer is None:
        return Secured([], False, "")
    return Secured(list(answer), _secure(answer), answer.canonical_name.to_text(omit_final_dot=True).lower())


def reverse_name(ip: str) -> str:
    """The in-addr.arpa / ip6.arpa name for a PTR lookup of `ip`."""
    return dns.reversename.from_address(ip).to_text(omit_final_dot=True)


@dataclass(frozen=True)
class Route:
    """The MX hosts of a domain and whether the answer was DNSSEC-validated (RFC 7672 §2.2.1)."""

    hosts: list[str]
    secure: bool


async def mx_hosts(resolver: dns.asyncresolver.Resolver, domain: str) -> list[str]:
    """The hosts of :func:`mx_route`."""
    return (await mx_route(resolver, domain)).hosts


async def mx_route(resolver: dns.asyncresolver.Resolver, domain: str) -> Route:
    """The hosts to try for mail to `domain`, best first (RFC 5321 §5.1).

    MX targets are sorted by preference, equal preferences shuffled to spread load. Without MX records
    the domain itself is the host if it has an A or AAAA record. Raises DnsPermanentError for a domain
    that does not exist, publishes a null MX (RFC 7505) or has no address at all; DnsTemporaryError when
    DNS does not answer.
    """
    name = domain.rstrip(".").lower()
    try:
        answer = await resolver.resolve(name, "MX", search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN as exc:
        raise DnsPermanentError(f"{name}: domain does not exist") from exc
    except (dns.name.NameTooLong, dns.exception.SyntaxError) as exc:
        raise DnsPermanentError(f"{name}: invalid domain name") from exc
    except dns.exception.Timeout as exc:
        raise DnsTemporaryError(f"{name} MX: timeout") from exc
    except dns.exception.DNSException as exc:
        raise DnsTemporaryError(f"{name} MX: {exc}") from exc
    records = [r for r in answer if isinstance(r, MX)]
    if any(r.exchange == dns.name.root for r in records):
        raise DnsPermanentError(f"{name}: null MX, the domain accepts no mail")
    if records:
        random.shuffle(records)
        records.sort(key=lambda r: r.preference)
        hosts: list[str] = []
        for record in records:
            host = record.exchange.to_text(omit_final_dot=True).lower()
            if host not in hosts:
                hosts.append(host)
        return Route(hosts, _secure(answer))
    if await lookup(resolver, name, "A") or await lookup(resolver, name, "AAAA"):
        return Route([name], _secure(answer))  # a secure denial of MX: the domain is its own host
    raise DnsPermanentError(f"{name}: no MX and no address records")
