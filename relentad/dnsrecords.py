"""The DNS records a hosted domain should publish, computed from the configuration and the DKIM keys on disk.

``relentad domain dns DOMAIN`` prints them; ``relentad doctor`` (:mod:`relentad.doctor`) compares them with what
the configured resolver answers. Both use :func:`records`, so what is printed is exactly what is checked.

Invariants:
- Pure: reads the configuration, ``data/dkim/DOMAIN`` and the ``[tls] cert`` file (for the TLSA record) only; no
  network, no database.
- Names are absolute and written without the final dot; TXT values are the joined string (zone output splits
  them into 255-byte character-strings).
- ``required`` records are the ones mail delivery depends on (MX, the host's address, SPF, DKIM when a key
  exists, DMARC); the others (MTA-STS, TLS-RPT, RFC 6186 SRV, autoconfig names) are recommended. The web names
  (mta-sts., autoconfig., autodiscover.) point at the host, whose ``[listen] https`` answers them
  (:mod:`relentad.web`). A record whose
  value cannot be known here (the server's public IP) has ``value`` None and a ``hint``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import addrspec
from .config import Config, parse_address
from .queue import dane, dkim, dkimkeys

MTA_STS_MAX_AGE = 604_800  # one week, as RFC 8461 suggests for a stable policy


@dataclass(frozen=True)
class Record:
    name: str
    rtype: str  # MX, A, AAAA, TXT, SRV, CNAME, TLSA
    value: str | None  # presentation form (TXT joined, unquoted); None when only the admin knows it
    purpose: str
    required: bool = True
    hint: str = ""

    def zone_line(self) -> str:
        """One zone-file line (a commented placeholder when the value is not known here)."""
        if self.value is None:
            return f"; {self.name}. IN {self.rtype} <{self.hint}>"
        value = self.value
        if self.rtype == "TXT":
            raw = value.encode()
            value = " ".join(f'"{raw[i : i + 255].decode()}"' for i in range(0, len(raw), 255)) or '""'
        elif self.rtype in ("MX", "SRV", "CNAME") and not value.endswith("."):
            value += "."
        return f"{self.name}. IN {self.rtype} {value}"

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.rtype,
            "value": self.value,
            "purpose": self.purpose,
            "required": self.required,
            "hint": self.hint,
        }


def host_addresses(config: Config) -> tuple[list[str], list[str]]:
    """(IPv4, IPv6) public addresses named by the listeners; wildcards and loopback/private ones are not
    advertised (the admin fills those in from the VPS's panel)."""
    v4: list[str] = []
    v6: list[str] = []
    for text in (config.listen.smtp, config.listen.submission, config.listen.imap):
        try:
            address = parse_address(text)
        except ValueError:
            continue
        if address is None or address[0] is None:
            continue
        try:
            ip = ipaddress.ip_address(address[0])
        except ValueError:
            continue
        if not ip.is_global:
            continue
        target = v4 if ip.version == 4 else v6
        if str(ip) not in target:
            target.append(str(ip))
    return v4, v6


def _port(text: str) -> int | None:
    try:
        address = parse_address(text)
    except ValueError:
        return None
    return None if address is None else address[1]


def mta_sts_policy(config: Config) -> str:
    """The policy file served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 §3.2)."""
    return f"version: STSv1\nmode: enforce\nmx: {config.server.hostname}\nmax_age: {MTA_STS_MAX_AGE}\n"


def mta_sts_id(config: Config) -> str:
    """The policy id: changes whenever the policy text changes (1-32 alphanumerics)."""
    return hashlib.sha256(mta_sts_policy(config).encode()).hexdigest()[:20]


def records(config: Config, domain: str) -> list[Record]:
    """Every record ``domain`` should publish for this server, in the order an admin enters them."""
    name = addrspec.normalize_domain(domain)
    host = config.server.hostname.rstrip(".").lower()
    out: list[Record] = [Record(name, "MX", f"10 {host}", "mail for the domain goes to this server")]
    v4, v6 = host_addresses(config)
    for ip in v4:
        out.append(Record(host, "A", ip, "this server's address"))
    for ip in v6:
        out.append(Record(host, "AAAA", ip, "this server's address", required=False))
    if not v4 and not v6:
        out.append(Record(host, "A", None, "this server's address", hint="the VPS's public IPv4 address"))
        out.append(Record(host, "AAAA", None, "this server's address", required=False, hint="its IPv6 address, if any"))
    tlsa = tlsa_record(config)
    if tlsa is not None:
        out.append(tlsa)
    out.append(Record(name, "TXT", "v=spf1 mx -all", "SPF: only this domain's MX sends its mail"))
    keys = dkimkeys.load(config.data_dir, name)
    if keys is None:
        out.append(
            Record(
                f"default._domainkey.{name}",
                "TXT",
                None,
                "DKIM public key",
                hint=f"no DKIM key yet: run `relentad dkim generate {name}`",
            )
        )
    else:
        out.extend(_dkim_records(keys, "", required=True))
        pending, previous = dkimkeys.rotation(config.data_dir, name)
        if pending is not None:
            note = f", pending: publish it, then `relentad dkim activate {name} {pending.selector}`"
            out.extend(_dkim_records(pending, note, required=False))
        if previous is not None:
            note = f", previous: keep it until mail it signed is delivered, then `relentad dkim retire {name}`"
            out.extend(_dkim_records(previous, note, required=False))
    out.append(
        Record(
            f"_dmarc.{name}",
            "TXT",
            f"v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:postmaster@{name}",
            "DMARC: receivers quarantine mail that fails SPF and DKIM alignment",
        )
    )
    out.append(
        Record(
            f"_mta-sts.{name}",
            "TXT",
            f"v=STSv1; id={mta_sts_id(config)}",
            "MTA-STS: senders must use TLS (serve the policy file below over HTTPS)",
            required=False,
        )
    )
    web = "relentad's [listen] https serves" if config.listen.https else "the web host serving"
    out.append(Record(f"mta-sts.{name}", "CNAME", host, f"{web} the MTA-STS policy", required=False))
    out.append(
        Record(
            f"_smtp._tls.{name}",
            "TXT",
            f"v=TLSRPTv1; rua=mailto:postmaster@{name}",
            "TLS-RPT: where senders report TLS failures",
            required=False,
        )
    )
    for service, listener in (("submission", "submission"), ("submissions", "submissions"), ("imap", "imap")):
        out.append(_srv(name, host, service, _port(getattr(config.listen, listener))))
    out.append(_srv(name, host, "imaps", _port(config.listen.imaps)))
    for service in ("pop3", "pop3s"):  # RFC 6186 §3.4: a lower priority than IMAP's, which clients should prefer
        out.append(_srv(name, host, service, _port(getattr(config.listen, service)), priority=10))
    out.append(_srv(name, host, "sieve", _port(config.listen.managesieve)))  # RFC 5804 §1.8
    carddav = _srv(name, host, "carddavs", _port(config.listen.https))
    out.append(replace(carddav, purpose="phones find the contacts (CardDAV, RFC 6764) here"))
    for label in ("autoconfig", "autodiscover"):
        purpose = f"{web} mail client set-up ({'Thunderbird' if label == 'autoconfig' else 'Outlook'})"
        out.append(Record(f"{label}.{name}", "CNAME", host, purpose, required=False))
    return out


def certificate_chain(config: Config) -> list[bytes]:
    """The certificates the listeners load, ``[tls] cert`` or ACME's (DER, ours first); [] without TLS or when the
    file cannot be read (ACME's before its first certificate)."""
    if not config.tls_enabled:
        return []
    try:
        pem = config.cert_files()[0].read_bytes()
        return [c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(pem)]
    except (OSError, ValueError):
        return []


def tlsa_record(config: Config) -> Record | None:
    """The DANE record (RFC 7672) for our host: ``3 1 1``, the SHA-256 of the certificate's public key, which
    survives renewals with the same key (certbot's default reuses none: see the README on key rollover). With
    ``[acme]``, whose every renewal makes a new key, a placeholder for ``2 1 1`` records of the CA's intermediates."""
    chain = certificate_chain(config)
    if not chain:
        return None
    host = config.server.hostname.rstrip(".").lower()
    if config.acme.enabled:  # a new key at every renewal: a record of this one would lock senders out in 60 days
        return Record(
            f"_25._tcp.{host}",
            "TLSA",
            None,
            "DANE: senders that validate DNSSEC accept only a chain these records name (only in a DNSSEC-signed "
            "zone); [acme] makes a new key at every renewal, so name the CA's intermediates, not our key",
            required=False,
            hint="2 1 1 <SHA-256 of the public key of each intermediate your CA issues from>",
        )
    return Record(
        f"_25._tcp.{host}",
        "TLSA",
        dane.record_for(chain[0]).text(),
        "DANE: senders that validate DNSSEC accept only this key on port 25 (only in a DNSSEC-signed zone; publish "
        "the next key's record beside it before changing keys)",
        required=False,
    )


def _dkim_records(keys: dkimkeys.DomainKeys, note: str, *, required: bool) -> list[Record]:
    """The TXT record(s) of one DKIM key (RSA, and ed25519 when dual-signing)."""
    name = dkim.record_name(keys.selector, keys.domain)
    found = [Record(name, "TXT", dkim.txt_value(keys.rsa), f"DKIM (RSA){note}", required)]
    if keys.ed25519 is not None:
        name = dkim.record_name(dkim.default_ed25519_selector(keys.selector), keys.domain)
        found.append(Record(name, "TXT", dkim.txt_value(keys.ed25519), f"DKIM (ed25519){note}", required))
    return found


def _srv(domain: str, host: str, service: str, port: int | None, priority: int = 0) -> Record:
    """An RFC 6186 / RFC 8314 (RFC 5804 for sieve) SRV record; "0 0 0 ." says the service is not offered."""
    value = f"{priority} 1 {port} {host}" if port else "0 0 0 ."
    return Record(f"_{service}._tcp.{domain}", "SRV", value, f"mail clients find {service} here", required=False)


def render(config: Config, domain: str) -> str:
    """The zone-file text printed by ``relentad domain dns``, with the MTA-STS policy file at the end."""
    name = addrspec.normalize_domain(domain)
    lines = [f"; DNS records for {name} (relentad on {config.server.hostname})"]
    for record in records(config, domain):
        lines.append(f"; {record.purpose}{'' if record.required else ' (recommended)'}")
        lines.append(record.zone_line())
    lines.append("")
    where = "served by relentad" if config.listen.https else "serve it"
    lines.append(f"; MTA-STS policy: {where} as https://mta-sts.{name}/.well-known/mta-sts.txt")
    lines.extend(f"; {line}" for line in mta_sts_policy(config).splitlines())
    lines.append(
        f"; Reverse DNS: ask the VPS provider to set the PTR of each address above to {config.server.hostname}"
    )
    return "\n".join(lines) + "\n"
