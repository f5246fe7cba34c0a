"""``relentad dane check DOMAIN``: what DANE says about a recipient domain, and whether its MX hosts pass.

The same lookups a delivery makes (:func:`relentad.dns.mx_route`, :func:`.dane.resolve_host`), then for each
address of each MX host one connection to port 25: EHLO, STARTTLS (unverified), the certificate chain checked
against the host's usable TLSA records with :func:`.dane.check`, QUIT. Nothing is sent and nothing stored.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import dns.asyncresolver
from cryptography.exceptions import UnsupportedAlgorithm

from .. import dns as relentad_dns
from . import dane, deliver

MAX_HOSTS = 10  # MX hosts shown, and addresses tried per host: a domain with more is shown only in part


@dataclass
class Probe:
    ip: str
    result: str  # "ok", "fail" (DANE applies and the host fails it) or "info" (no DANE: only what was seen)
    detail: str


@dataclass
class HostCheck:
    host: str
    addresses: list[str]
    secure: bool
    records: list[str]  # every TLSA record, "3 1 1 ab.. (DANE-EE)" with "unusable" marked
    applies: bool  # secure TLSA records: DANE is enforced for this host (TLS required; any usable one checked)
    error: str = ""  # the TLSA lookup failed: deliveries skip the host
    usable: bool = False  # some record is usable: the certificate must match
    probes: list[Probe] = field(default_factory=list)


@dataclass
class DomainCheck:
    domain: str
    secure: bool
    hosts: list[HostCheck]
    error: str = ""

    @property
    def failed(self) -> bool:
        """Whether mail to the domain would be held up by DANE (or DNS) on some host."""
        return bool(self.error) or any(h.error or any(p.result == "fail" for p in h.probes) for h in self.hosts)

    def as_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "secure": self.secure,
            "error": self.error,
            "hosts": [
                {
                    "host": h.host,
                    "addresses": h.addresses,
                    "secure": h.secure,
                    "tlsa": h.records,
                    "dane": h.applies,
                    "usable": h.usable,
                    "error": h.error,
                    "probes": [{"ip": p.ip, "result": p.result, "detail": p.detail} for p in h.probes],
                }
                for h in self.hosts
            ],
        }


def _record_text(record: dane.Tlsa) -> str:
    usage = dane.USAGES.get(record.usage, f"usage {record.usage}")
    return f"{record.text()} ({usage}{'' if record.usable else ', unusable for SMTP'})"


async def _chain(ip: str, host: str, hostname: str, time_limit: float, port: int) -> list[bytes]:
    """The certificate chain ``ip`` presents after STARTTLS; raises ValueError with a readable reason."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = aiosmtplib.SMTP(
        hostname=ip, port=port, local_hostname=hostname, timeout=time_limit, start_tls=False, tls_context=context
    )
    try:
        await client.connect()
        await client.ehlo()
        if not client.supports_extension("starttls"):
            raise ValueError("does not offer STARTTLS")
        await client.starttls(server_hostname=host, validate_certs=False)
        return dane.peer_chain(client.get_transport_info("ssl_object"))
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        await deliver.say_goodbye(client)


async def _probe(ip: str, found: dane.Host, hostname: str, time_limit: float, port: int) -> Probe:
    applies = found.tlsa.dane
    try:
        chain = await _chain(ip, applies.base if applies else found.name, hostname, time_limit, port)
    except ValueError as exc:
        return Probe(ip, "fail" if applies else "info", str(exc))
    if applies is None:
        try:
            key = dane.record_for(chain[0]).text() if chain else "none"
        except (ValueError, UnsupportedAlgorithm):
            key = "unreadable certificate"
        return Probe(ip, "info", f"STARTTLS works; no DANE here (its key as TLSA: {key})")
    failure = dane.check(applies, chain)
    if failure is not None:
        return Probe(ip, "fail", f"{failure.result}: {failure.detail}")
    if not applies.records:
        return Probe(ip, "ok", "STARTTLS works (no usable TLSA record: the certificate is not checked)")
    return Probe(ip, "ok", "STARTTLS works and the certificate matches the TLSA records")


async def check_domain(
    resolver: dns.asyncresolver.Resolver, domain: str, *, hostname: str, time_limit: float, port: int = dane.SMTP_PORT
) -> DomainCheck:
    """Look ``domain`` up as a delivery would and try each MX address (see the module docstring)."""
    try:
        route = await relentad_dns.mx_route(resolver, domain)
    except relentad_dns.DnsLookupError as exc:
        return DomainCheck(domain, False, [], error=str(exc))
    hosts: list[HostCheck] = []
    for name in route.hosts[:MAX_HOSTS]:
        try:
            found = await dane.resolve_host(resolver, name, route.secure)
        except relentad_dns.DnsLookupError as exc:
            hosts.append(HostCheck(name, [], False, [], False, error=f"addresses: {exc}"))
            continue
        tlsa = found.tlsa
        check = HostCheck(
            name,
            found.addresses,
            tlsa.secure,
            [_record_text(r) for r in tlsa.records],
            tlsa.dane is not None,
            tlsa.error,
            usable=tlsa.dane is not None and bool(tlsa.dane.records),
        )
        if not tlsa.error:
            check.probes = [await _probe(ip, found, hostname, time_limit, port) for ip in found.addresses[:MAX_HOSTS]]
        hosts.append(check)
    return DomainCheck(domain, route.secure, hosts)


def render(result: DomainCheck) -> str:
    """The text ``relentad dane check`` prints."""
    if result.error:
        return f"{result.domain}: DNS: {result.error}\n"
    lines = [f"{result.domain}: MX {'DNSSEC-secure' if result.secure else 'not DNSSEC-validated: no DANE'}"]
    for h in result.hosts:
        state = "secure" if h.secure else "insecure"
        lines.append(f"{h.host}: addresses {', '.join(h.addresses) or 'none'} ({state})")
        if h.error:
            lines.append(f"  TLSA: {h.error}; deliveries skip this host")
        elif h.secure:
            lines += [f"  TLSA {r}" for r in h.records] or ["  TLSA: none (opportunistic TLS)"]
            if h.applies and not h.usable:
                lines.append("  no usable TLSA record: STARTTLS required, the certificate not checked")
        for p in h.probes:
            lines.append(f"  {p.ip}: {p.result.upper() if p.result != 'info' else '-'} {p.detail}")
    return "\n".join(lines) + "\n"
