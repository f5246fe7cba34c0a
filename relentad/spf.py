"""SPF evaluation (RFC 7208 `check_host()`) over relentad's own asyncio resolver.

Why not pyspf (which authheaders calls): it resolves through a module-global DNS function reading
/etc/resolv.conf, so it would ignore `[dns] nameservers`, block the event loop, and could only be pointed
elsewhere by patching process-wide state. This evaluator is small, async, and uses the resolver it is given.

Invariants:
- Never raises for anything DNS or the record does: every outcome is one of the seven RFC 7208 §2.6
  results. DNS timeouts and server failures are `temperror`; record syntax errors (found when the record is
  parsed, before any term is evaluated: in any modifier, even an unknown one, or a separator other than SP),
  more than 10 DNS-querying terms (§4.6.4) or more than 2 void lookups are `permerror`.
- Internationalized MAIL FROM and HELO domains are checked, and reported, as A-labels (§4.3); a name that has
  no faithful A-label under Python's IDNA 2003 codec (ß would become ss: another domain) is `none`.
- `exp=` is parsed but not expanded: relentad never quotes a sender's explanation in its replies. The
  `%{p}` macro expands to "unknown", which §7.3 allows and which saves PTR lookups.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

import dns.asyncresolver
import dns.rdata
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT

from relentad.addrspec import a_label
from relentad.dns import DnsTemporaryError, lookup, reverse_name

SpfResult = Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOKUP_LIMIT = 10
VOID_LIMIT = 2
MX_PTR_NAME_LIMIT = 10

_QUALIFIERS: dict[str, SpfResult] = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_MACRO = re.compile(r"%(?:\{([slodiphcrtvSLODIPHCRTV])(\d*)(r?)([.\-+,/_=]*)\}|(.))")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+$")


class _PermError(Exception):
    """The record is broken: the whole check is permerror."""


class _TempError(Exception):
    """DNS failed: the whole check is temperror."""


@dataclass(frozen=True)
class SpfOutcome:
    """The SPF verdict for one message, with what Authentication-Results needs to show."""

    result: SpfResult
    identity: Literal["mailfrom", "helo"]
    """Which identity was checked: MAIL FROM, or HELO for the null sender (RFC 7208 §2.4)."""
    domain: str
    """The domain whose policy was evaluated (empty when there was none to check)."""
    sender: str
    """The address the check used: the MAIL FROM, or postmaster@<helo>."""
    reason: str = ""


@dataclass
class _Context:
    """State shared by one check_host() and everything it includes or redirects to."""

    resolver: dns.asyncresolver.Resolver
    ip: IPAddress
    sender: str
    helo: str
    lookups: int = 0
    voids: int = 0
    seen: list[str] = field(default_factory=list)

    def count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > LOOKUP_LIMIT:
            raise _PermError("more than 10 DNS lookups")

    async def query(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        try:
            records = await lookup(self.resolver, name, rdtype)
        except DnsTemporaryError as exc:
            raise _TempError(str(exc)) from exc
        if not records:
            self.voids += 1
            if self.voids > VOID_LIMIT:
                raise _PermError("more than 2 void lookups")
        return records

    async def addresses(self, name: str) -> list[IPAddress]:
        rdtype = "A" if self.ip.version == 4 else "AAAA"
        return [ipaddress.ip_address(r.to_text()) for r in await self.query(name, rdtype)]


def _valid_domain(domain: str) -> bool:
    """RFC 7208 §4.3: a multi-label name with labels of 1..63 characters."""
    labels = domain.rstrip(".").split(".")
    if "/" in domain or any(ch.isspace() for ch in domain):
        return False
    return len(labels) > 1 and all(0 < len(label) <= 63 for label in labels) and len(domain) <= 253


def identity(mail_from: str, helo: str) -> tuple[Literal["mailfrom", "helo"], str, str]:
    """The identity SPF checks for a transaction, its domain (lower-case A-labels when it has them) and the
    sender address the macros see: the MAIL FROM, or postmaster@HELO for the null reverse-path (§2.4)."""
    address = mail_from.strip().removeprefix("<").removesuffix(">")
    helo = helo.strip()
    helo = a_label(helo) or helo
    if not address:
        return "helo", helo.rstrip(".").lower(), f"postmaster@{helo}"
    local, domain = _split_sender(address)
    domain = a_label(domain) or domain
    return "mailfrom", domain.rstrip(".").lower(), f"{local}@{domain}"


def _client_ip(text: str) -> IPAddress:
    ip = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _split_sender(sender: str) -> tuple[str, str]:
    local, _, domain = sender.rpartition("@")
    return (local or "postmaster"), domain


def expand(macro_string: str, ctx: _Context, domain: str) -> str:
    """RFC 7208 §7 macro expansion for a domain-spec (explanation-only letters are errors)."""

    def one(match: re.Match[str]) -> str:
        letter, digits, reverse, delimiters, escape = match.groups()
        if escape is not None:
            literal = {"%": "%", "_": " ", "-": "%20"}.get(escape)
            if literal is None:
                raise _PermError(f"bad macro %{escape}")
            return literal
        local, sender_domain = _split_sender(ctx.sender)
        values = {
            "s": ctx.sender,
            "l": local,
            "o": sender_domain,
            "d": domain,
            "i": _dotted(ctx.ip),
            "p": "unknown",
            "v": "in-addr" if ctx.ip.version == 4 else "ip6",
            "h": ctx.helo,
        }
        key = letter.lower()
        if key not in values:
            raise _PermError(f"macro %{{{letter}}} is only allowed in exp")
        parts = re.split("[" + re.escape(delimiters or ".") + "]", values[key])
        if reverse:
            parts.reverse()
        if digits:
            if int(digits) == 0:
                raise _PermError("macro with zero labels")
            parts = parts[-int(digits) :]
        value = ".".join(parts)
        return urllib.parse.quote(value, safe="") if letter.isupper() else value

    expanded = _MACRO.sub(one, macro_string)
    while len(expanded) > 253 and "." in expanded:  # §7.3: drop labels from the left
        expanded = expanded.split(".", 1)[1]
    return expanded


def _dotted(ip: IPAddress) -> str:
    if ip.version == 4:
        return str(ip)
    return ".".join(ip.exploded.replace(":", ""))


@dataclass(frozen=True)
class _Term:
    qualifier: SpfResult
    mechanism: str
    argument: str | None
    """The domain-spec (macros unexpanded) or, for ip4/ip6, the network text."""
    cidr4: int = 32
    cidr6: int = 128
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None


_VALID_MACRO = re.compile(r"%\{[slodiphvSLODIPHV]\d*r?[.\-+,/_=]*\}|%[%_\-]")


_ANY_MACRO = re.compile(r"%\{[slodiphcrtvSLODIPHCRTV]\d*r?[.\-+,/_=]*\}|%[%_\-]")
_TERM = re.compile(r"[\x21-\x7e]+")
"""A term is visible ASCII: terms are separated by SP only (§4.6.1), and a record is 7-bit (§3.1)."""
_DOMAIN_END = re.compile(
    r".*\.(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9])\.?|.*(?:%\{[^}]*\}|%[%_\-])"
)
"""§7.1 domain-end: a dot and a toplabel (not all digits), or a macro."""


def _check_domain_spec(spec: str) -> str:
    """§7.1 syntax, checked before evaluation (§4.6: any syntax error makes the whole record permerror)."""
    if "%" in _VALID_MACRO.sub("", spec):
        raise _PermError(f"bad macro in {spec!r}")
    return spec


def _check_modifier(name: str, value: str) -> str:
    """§6 and §A: redirect= and exp= take a domain-spec, and even a modifier we ignore needs a valid macro-string."""
    if name not in ("redirect", "exp"):
        if "%" in _ANY_MACRO.sub("", value):
            raise _PermError(f"bad macro in {name}={value}")
        return value
    if not value:
        raise _PermError(f"empty {name}=")
    if not _DOMAIN_END.fullmatch(value):
        raise _PermError(f"{name}={value} is not a domain-spec")
    return _check_domain_spec(value)


def _parse_network(mechanism: str, text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    address, _, prefix = text.partition("/")
    if prefix and (not prefix.isdigit() or (len(prefix) > 1 and prefix.startswith("0"))):
        raise _PermError(f"bad {mechanism}:{text}")
    try:
        network = ipaddress.ip_network(text, strict=False)
        ipaddress.ip_address(address)
    except ValueError as exc:
        raise _PermError(f"bad {mechanism}:{text}") from exc
    if network.version != (4 if mechanism == "ip4" else 6):
        raise _PermError(f"bad {mechanism}:{text}")
    return network


def _parse_cidr(text: str) -> tuple[str | None, int, int]:
    """Split the "domain/24//64" of a and mx into its parts (each optional), checking the lengths."""
    cidr4, cidr6 = 32, 128
    match = re.fullmatch(r"(.*?)(?:/(\d+))?(?://(\d+))?", text)
    assert match is not None
    rest, four, six = match.groups()
    if four is not None:
        cidr4 = int(four)
        if cidr4 > 32 or (len(four) > 1 and four.startswith("0")):
            raise _PermError(f"bad ip4 cidr in {text!r}")
    if six is not None:
        cidr6 = int(six)
        if cidr6 > 128 or (len(six) > 1 and six.startswith("0")):
            raise _PermError(f"bad ip6 cidr in {text!r}")
    return (rest or None), cidr4, cidr6


@functools.lru_cache(maxsize=1024)
def parse_record(record: str) -> tuple[tuple[_Term, ...], str | None]:
    """The directives of an SPF record, in order, and its redirect= domain-spec (if any).

    Cached by the record's text: an MX sees the same few records all day, and parsing (ip4/ip6 networks above
    all) was a third of an SPF check. Records that do not parse raise each time (exceptions are not cached).
    """
    terms: list[_Term] = []
    redirect: str | None = None
    seen_modifiers: set[str] = set()
    for word in record.split(" ")[1:]:
        if not word:
            continue  # terms are separated by one or more SP
        if not _TERM.fullmatch(word):
            raise _PermError(f"{word!r} holds a character other than visible ASCII")
        modifier = re.fullmatch(r"([A-Za-z][A-Za-z0-9\-_.]*)=(.*)", word)
        if modifier:
            name = modifier.group(1).lower()
            if name in seen_modifiers and name in ("redirect", "exp"):
                raise _PermError(f"{name}= appears twice")
            seen_modifiers.add(name)
            value = _check_modifier(name, modifier.group(2))
            if name == "redirect":
                redirect = value
            continue  # exp= is never expanded, unknown modifiers are ignored (§6)
        qualifier: SpfResult = "pass"
        token = word
        if token[0] in _QUALIFIERS:
            qualifier, token = _QUALIFIERS[token[0]], token[1:]
        match = re.fullmatch(r"([A-Za-z0-9]+)(?:([:/])(.*))?", token)
        if not match or match.group(1).lower() not in _MECHANISMS:
            raise _PermError(f"unknown mechanism {token!r}")
        mechanism, sep, rest = match.group(1).lower(), match.group(2), match.group(3) or ""
        if sep == ":" and (not rest or rest.startswith("/")):
            raise _PermError(f"empty domain-spec in {token!r}")
        argument: str | None = None
        cidr4, cidr6 = 32, 128
        if mechanism == "all":
            if sep:
                raise _PermError("all takes no argument")
        elif mechanism in ("ip4", "ip6"):
            if sep != ":":
                raise _PermError(f"{mechanism} needs an address")
            terms.append(_Term(qualifier, mechanism, rest, network=_parse_network(mechanism, rest)))
            continue
        elif mechanism in ("a", "mx"):
            domain, cidr4, cidr6 = _parse_cidr(rest if sep == ":" else "/" + rest if sep else "")
            argument = _check_domain_spec(domain) if domain else None
        else:  # include, exists, ptr
            if sep == "/":
                raise _PermError(f"{mechanism} takes no cidr")
            if mechanism != "ptr" and not rest:
                raise _PermError(f"{mechanism} needs a domain")
            argument = _check_domain_spec(rest) if rest else None
        terms.append(_Term(qualifier, mechanism, argument, cidr4, cidr6))
    return tuple(terms), redirect


async def _spf_record(ctx: _Context, domain: str) -> str | None:
    try:
        records = await lookup(ctx.resolver, domain, "TXT")
    except DnsTemporaryError as exc:
        raise _TempError(str(exc)) from exc
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in records if isinstance(r, TXT)]
    spf = [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    if len(spf) > 1:
        raise _PermError(f"{domain} has more than one SPF record")
    return spf[0] if spf else None


def _in_network(ip: IPAddress, address: IPAddress, cidr4: int, cidr6: int) -> bool:
    if ip.version != address.version:
        return False
    prefix = cidr4 if ip.version == 4 else cidr6
    return ip in ipaddress.ip_network(f"{address}/{prefix}", strict=False)


async def _matches(ctx: _Context, term: _Term, domain: str) -> bool:
    if term.mechanism in ("all", "ip4", "ip6"):
        return term.mechanism == "all" or (
            term.network is not None and ctx.ip.version == term.network.version and ctx.ip in term.network
        )
    target = expand(term.argument, ctx, domain) if term.argument else domain
    if not _valid_domain(target):
        raise _PermError(f"invalid domain {target!r} in {term.mechanism}")
    match term.mechanism:
        case "a":
            ctx.count_lookup()
            return any(_in_network(ctx.ip, a, term.cidr4, term.cidr6) for a in await ctx.addresses(target))
        case "mx":
            ctx.count_lookup()
            exchanges = [r for r in await ctx.query(target, "MX") if isinstance(r, MX)]
            if len(exchanges) > MX_PTR_NAME_LIMIT:
                raise _PermError(f"{target} has more than 10 MX records")
            for mx in exchanges:
                host = mx.exchange.to_text(omit_final_dot=True)
                if (
                    host
                    and host != "."
                    and any(_in_network(ctx.ip, a, term.cidr4, term.cidr6) for a in await ctx.addresses(host))
                ):
                    return True
            return False
        case "exists":
            ctx.count_lookup()
            return bool(await ctx.query(target, "A"))
        case "ptr":
            ctx.count_lookup()
            return await _ptr_matches(ctx, target)
        case "include":
            ctx.count_lookup()
            result = await _check_host(ctx, target)
            if result == "temperror":
                raise _TempError(f"include:{target}")
            if result in ("permerror", "none"):
                raise _PermError(f"include:{target} gave {result}")
            return result == "pass"
    raise _PermError(f"unknown mechanism {term.mechanism}")


async def _ptr_matches(ctx: _Context, target: str) -> bool:
    """§5.5: some validated reverse name of the client equals or ends in the target.

    A failed PTR lookup is no match; a failed forward lookup only skips that name, the next ones are still tried.
    """
    rdtype = "A" if ctx.ip.version == 4 else "AAAA"
    target = target.lower()
    try:
        names = [r for r in await lookup(ctx.resolver, reverse_name(str(ctx.ip)), "PTR") if isinstance(r, PTR)]
    except DnsTemporaryError:
        return False
    for ptr in names[:MX_PTR_NAME_LIMIT]:
        name = ptr.target.to_text(omit_final_dot=True).lower()
        if name != target and not name.endswith("." + target):
            continue
        try:
            forward = await lookup(ctx.resolver, name, rdtype)
        except DnsTemporaryError:
            continue
        if any(ipaddress.ip_address(r.to_text()) == ctx.ip for r in forward):
            return True
    return False


async def _check_host(ctx: _Context, domain: str) -> SpfResult:
    """RFC 7208 §4: the result for `domain`, raising nothing but _PermError/_TempError up to `check`."""
    if not _valid_domain(domain):
        return "none"
    if domain.lower() in ctx.seen:
        raise _PermError(f"{domain} includes itself")
    ctx.seen.append(domain.lower())
    try:
        record = await _spf_record(ctx, domain)
        if record is None:
            return "none"
        terms, redirect = parse_record(record)
        for term in terms:
            if await _matches(ctx, term, domain):
                return term.qualifier
        if redirect is not None:
            ctx.count_lookup()
            target = expand(redirect, ctx, domain)
            result = await _check_host(ctx, target)
            if result == "none":
                raise _PermError(f"redirect={target} has no SPF record")
            return result
        return "neutral"
    finally:
        ctx.seen.pop()


async def check_host(
    resolver: dns.asyncresolver.Resolver, ip: str, domain: str, sender: str, helo: str = ""
) -> tuple[SpfResult, str]:
    """RFC 7208 check_host(): the result and a short reason (for logs and the header comment)."""
    try:
        client = _client_ip(ip)
    except ValueError:
        return "permerror", f"client address {ip!r} is not an IP address"
    ctx = _Context(resolver=resolver, ip=client, sender=sender, helo=helo)
    try:
        result = await _check_host(ctx, domain.rstrip("."))
    except _PermError as exc:
        return "permerror", str(exc)
    except _TempError as exc:
        return "temperror", str(exc)
    return result, ""


async def check(resolver: dns.asyncresolver.Resolver, *, ip: str, mail_from: str, helo: str) -> SpfOutcome:
    """SPF for an SMTP transaction: the MAIL FROM identity, or HELO when the reverse-path is null.

    An internationalized domain is checked as its A-labels (§4.3), and so reported.
    """
    helo = helo.strip()
    helo = a_label(helo) or helo
    kind, domain, sender = identity(mail_from, helo)
    if not _valid_domain(domain) or not _HOSTNAME.match(domain) or domain.rsplit(".", 1)[1].isdigit():
        return SpfOutcome("none", kind, domain, sender, "no checkable domain")
    result, reason = await check_host(resolver, ip, domain, sender, helo)
    return SpfOutcome(result, kind, domain, sender, reason)
