"""``relentad doctor``: check what a working mail server needs outside relentad, and say how to fix what is not.

Checks, each giving :class:`Finding` values (``ok``, ``warn`` or ``fail``, with a fix for the last two):
- DNS, through the configured resolver (``[dns] nameservers``; never a hard-coded one): for every hosted domain
  the records of :func:`relentad.dnsrecords.records` (required ones fail, recommended ones warn); the server's
  host name has an address, and each address's reverse DNS (PTR) names the host back (forward-confirmed rDNS);
- with ``[acme] enabled``, whether the last ACME attempt failed;
- the host's TLSA records (DANE), when published: they must match our certificate, or senders that validate
  DNSSEC hold our mail back (a failure when the resolver validated them, else a warning; none published is fine);
- the TLS certificate: readable, matching the key, not expired (warn under 14 days), valid for the host name, and
  with ``[listen] https`` on, for each domain's mta-sts., autoconfig. and autodiscover. names (a warning);
- the listeners: each configured address accepts a TCP connection (the daemon runs and bound it);
- ``[server] postmaster`` names an existing account: otherwise postmaster@ of a domain without a postmaster user
  or alias of its own is refused, which RFC 5321 §4.5.1 forbids (a warning: no other mail is affected);
- the spam filter's global model: trained at all, on at least ``[spam] min_trained`` messages of each class (short
  of that its verdicts file nothing), and with the current model version (an older one scores less surely until
  ``spam train`` relearns it); it says when the model's spam cut-off is raised or lowered (``[spam] confident_after``);
- with ``[backup] offsite``, the last off-site copy of a snapshot is under two days old (a warning, with the last
  sftp error when one came after it);
- the DMARC and TLS reports received in the last week (authreports/summary.py), when there are any: a source that
  passes DMARC but also fails it (mail of ours failing somewhere) and failed TLS sessions to our MX warn.

Invariants: read-only (DNS queries, a TCP connect, reading files; never a write to the store); a DNS timeout is a
finding, not a crash; the exit status is non-zero exactly when some finding is ``fail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver
from cryptography import x509
from cryptography.x509.oid import NameOID

from . import addrspec, clientconfig, dnsbl, dnsrecords, spf
from .authreports import summary
from .config import Config, SpamConfig, parse_address
from .dns import DnsLookupError, lookup, make_resolver, reverse_name
from .queue import dane
from .spam.tokenize import TOKENIZER_VERSION
from .spam.verdicts import short_of_training, size_note

CERT_WARN_DAYS = 14
_CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True)
class Finding:
    status: str  # "ok", "warn" or "fail"
    check: str
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.upper():4} {self.check}: {self.message}"
        return f"{text}\n     fix: {self.fix}" if self.fix else text

    def as_json(self) -> dict[str, str]:
        return {"status": self.status, "check": self.check, "message": self.message, "fix": self.fix}


def failed(findings: Iterable[Finding]) -> bool:
    return any(f.status == "fail" for f in findings)


def _normal(rtype: str, text: str) -> str:
    """A record value in a form two spellings can be compared in."""
    text = " ".join(text.split())
    if rtype in ("MX", "SRV", "CNAME"):
        return text.rstrip(".").lower()
    return text


def _txt(rdata: object) -> str:
    strings: list[bytes] = getattr(rdata, "strings", [])
    return b"".join(strings).decode(errors="replace")


async def _published(resolver: dns.asyncresolver.Resolver, name: str, rtype: str) -> list[str]:
    answers = await lookup(resolver, name, rtype)
    if rtype == "TXT":
        return [_txt(r) for r in answers]
    return [r.to_text() for r in answers]


async def check_record(resolver: dns.asyncresolver.Resolver, record: dnsrecords.Record) -> Finding:
    """One expected record against what DNS answers."""
    label = f"dns {record.rtype} {record.name}"
    bad = "fail" if record.required else "warn"
    try:
        found = await _published(resolver, record.name, record.rtype)
    except DnsLookupError as exc:
        return Finding("fail", label, f"no answer: {exc}", "check [dns] nameservers and the domain's name servers")
    if record.value is None:
        if record.rtype in ("A", "AAAA") and found:
            return Finding("ok", label, ", ".join(found))
        if record.rtype == "AAAA":
            return Finding("ok", label, "none (IPv4 only)")
        return Finding(bad, label, "missing", record.hint)
    zone_line = record.zone_line()
    if record.rtype == "TXT" and record.value.startswith(("v=spf1", "v=DMARC1", "v=STSv1", "v=TLSRPTv1")):
        tag = record.value.split(";", 1)[0].split(" ", 1)[0]
        same_kind = [value for value in found if value.startswith(tag)]
        if len(same_kind) > 1:
            return Finding("fail", label, f"{len(same_kind)} {tag} records (receivers ignore all of them)", zone_line)
        if not same_kind:
            return Finding(bad, label, "missing", f"publish: {zone_line}")
        if record.value.startswith(("v=STSv1", "v=DMARC1", "v=TLSRPTv1")) or same_kind[0] == record.value:
            return Finding("ok", label, same_kind[0])  # the admin may have tuned the policy
        return Finding("warn", label, f"published {same_kind[0]!r}, relentad suggests {record.value!r}", zone_line)
    if record.rtype == "TXT" and record.value.startswith("v=DKIM1"):
        wanted_key = record.value.rpartition("p=")[2]
        if any(value.replace(" ", "").rpartition("p=")[2] == wanted_key for value in found):
            return Finding("ok", label, "public key matches the signing key")
        what = "a different key" if found else "missing"
        return Finding("fail", label, what, f"publish: {zone_line}")
    wanted = _normal(record.rtype, record.value)
    if any(_normal(record.rtype, value) == wanted for value in found):
        return Finding("ok", label, record.value)
    if record.rtype == "MX" and found:
        host = wanted.split()[-1]
        if any(_normal("MX", value).split()[-1] == host for value in found):
            return Finding("ok", label, ", ".join(found))
    what = f"published {', '.join(found)}" if found else "missing"
    return Finding(bad, label, what, f"publish: {zone_line}")


async def check_tlsa(
    resolver: dns.asyncresolver.Resolver, record: dnsrecords.Record, chain: list[bytes], acme: bool = False
) -> Finding:
    """Our host's published TLSA records against our certificate chain, as a sending server would check them; with
    ``acme`` (a new key at every renewal) a match by DANE-EE records alone is a warning: it ends at the renewal."""
    label = f"dns TLSA {record.name}"
    host = record.name.split(".", 2)[2]
    found = await dane.lookup(resolver, host)
    if found.error:
        return Finding("fail", label, found.error, "senders that validate DNSSEC hold mail back: fix the zone")
    if not found.records:
        return Finding("ok", label, "none published (DANE not used)")
    if not found.secure:
        return Finding("warn", label, "published but not DNSSEC-validated: senders ignore it", "sign the zone")
    if found.dane is None or not found.dane.records:
        return Finding("warn", label, "no usable record (DANE-EE 3 or DANE-TA 2)", f"publish: {record.zone_line()}")
    failure = dane.check(found.dane, chain)
    if failure is None:
        anchors = dataclasses.replace(
            found.dane, records=tuple(r for r in found.dane.records if r.usage == dane.DANE_TA)
        )
        if acme and (not anchors.records or dane.check(anchors, chain) is not None):
            message = (
                "matches our key only (DANE-EE): [acme] makes a new key at the next renewal, which it will not match"
            )
            return Finding("warn", label, message, f"publish: {record.zone_line()}")
        return Finding("ok", label, "matches our certificate")
    return Finding(
        "fail",
        label,
        f"the published records do not match our certificate ({failure.detail}): senders using DANE will not deliver",
        f"publish: {record.zone_line()} (and keep the old record until the new one is seen everywhere)",
    )


def check_resolver(config: Config, nameservers: Sequence[object]) -> list[Finding]:
    """With DANE on (MX delivery): the resolvers whose AD bit it trusts are on this machine. The bit travels
    unprotected: from a resolver across a network anyone on the path can set it (RFC 6698 §4.1, RFC 7672 §2.1)."""
    smarthost = parse_address(config.queue.smarthost)
    if not config.queue.dane or (smarthost is not None and smarthost[0] is not None):
        return []
    addresses = [str(getattr(ns, "address", ns)) for ns in nameservers]
    remote = [a for a in addresses if not _loopback(a)]
    if not remote:
        return [Finding("ok", "dns resolver", f"DANE trusts the DNSSEC validation of {', '.join(addresses)} (local)")]
    message = (
        f"DANE trusts the AD bit of {', '.join(remote)}, which is not on this machine: it can be forged on the way"
    )
    return [
        Finding("warn", "dns resolver", message, 'run a validating resolver here: [dns] nameservers = ["127.0.0.1:53"]')
    ]


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def check_host(resolver: dns.asyncresolver.Resolver, hostname: str) -> list[Finding]:
    """The host name has an address, and each address's PTR names the host (forward-confirmed reverse DNS)."""
    findings: list[Finding] = []
    addresses: list[str] = []
    try:
        for rtype in ("A", "AAAA"):
            addresses += [r.to_text() for r in await lookup(resolver, hostname, rtype)]
    except DnsLookupError as exc:
        return [Finding("fail", f"dns address {hostname}", f"no answer: {exc}", "check [dns] nameservers")]
    if not addresses:
        return [
            Finding(
                "fail",
                f"dns address {hostname}",
                "the host name has no A or AAAA record",
                f"publish {hostname}. IN A <this server's public IPv4>",
            )
        ]
    findings.append(Finding("ok", f"dns address {hostname}", ", ".join(addresses)))
    for ip in addresses:
        label = f"reverse dns {ip}"
        try:
            names = [r.to_text().rstrip(".").lower() for r in await lookup(resolver, reverse_name(ip), "PTR")]
        except DnsLookupError as exc:
            findings.append(Finding("fail", label, f"no answer: {exc}", "check [dns] nameservers"))
            continue
        if hostname.lower() in names:
            findings.append(Finding("ok", label, hostname))
        else:
            found = ", ".join(names) if names else "no PTR record"
            findings.append(
                Finding(
                    "fail",
                    label,
                    f"{found} (receivers distrust mail from an address that does not name {hostname})",
                    f"ask the VPS provider to set the reverse DNS (PTR) of {ip} to {hostname}",
                )
            )
    return findings


async def check_forwarding_spf(
    resolver: dns.asyncresolver.Resolver, hostname: str, domains: Iterable[str]
) -> list[Finding]:
    """Each domain that forwards mail elsewhere (forwarding.py: its SRS envelope senders are ``…@DOMAIN``) must have
    an SPF record that passes this host's addresses, or the receivers see SPF fail on every forward."""
    findings: list[Finding] = []
    try:
        addresses = [r.to_text() for rtype in ("A", "AAAA") for r in await lookup(resolver, hostname, rtype)]
    except DnsLookupError:
        return []  # check_host reports it
    for domain in domains:
        label = f"spf for forwarding {domain}"
        bad = []
        for ip in addresses:
            result, reason = await spf.check_host(resolver, ip, domain, f"postmaster@{domain}")
            if result != "pass":
                bad.append(f"{ip}: {result}" + (f" ({reason})" if reason else ""))
        if bad:
            fix = f"make the SPF record of {domain} authorise this host (relentad domain dns {domain}: v=spf1 mx -all)"
            findings.append(
                Finding("warn", label, "forwarded mail (SRS0=…@" + domain + ") fails SPF from " + "; ".join(bad), fix)
            )
        elif addresses:
            findings.append(Finding("ok", label, "SPF passes this host's addresses"))
    return findings


def _names_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [name.lower() for name in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(common[0].value).lower()] if common else []


def _matches(pattern: str, hostname: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = hostname.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == hostname


def check_acme(config: Config, now: float | None = None) -> list[Finding]:
    """With ``[acme] enabled``: whether the last attempt failed (the daemon retries with back-off; the certificate
    it has keeps serving)."""
    if not config.acme.enabled:
        return []
    from .acme import store as acme_store

    state = acme_store.load_state(config.acme_dir)
    if state.last_error:
        return [
            Finding(
                "warn",
                "acme",
                f"{state.failures} attempt(s) in a row failed, the last: {state.last_error}",
                "see the README's ACME section: the names must resolve here and ports 80/443 reach relentad; "
                "then relentad acme renew",
            )
        ]
    if not state.last_success or not config.cert_files()[0].exists():  # (check_certificate is silent then)
        return [Finding("warn", "acme", "no certificate obtained yet", "start relentad; see relentad acme status")]
    return [
        Finding(
            "ok", "acme", f"last certificate obtained {dt.datetime.fromtimestamp(state.last_success, dt.UTC):%Y-%m-%d}"
        )
    ]


def check_certificate(config: Config, now: dt.datetime | None = None) -> list[Finding]:
    """The configured certificate: loadable with its key, in date, valid for the host name."""
    if config.acme.enabled and not config.cert_files()[0].exists():
        return []  # check_acme says why there is none yet
    if not config.tls_enabled:
        return [
            Finding(
                "fail",
                "tls",
                "no certificate configured: no STARTTLS, no port 465/993/995",
                "set [acme] enabled = true, or [tls] cert and key (certbot: /etc/letsencrypt/live/HOST/fullchain.pem, "
                "privkey.pem)",
            )
        ]
    cert_path, key_path = config.cert_files()
    try:
        pem = Path(cert_path).read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_path, key_path)
    except (OSError, ValueError, ssl.SSLError) as exc:
        return [Finding("fail", "tls certificate", f"cannot load {cert_path} / {key_path}: {exc}", "fix the paths")]
    findings: list[Finding] = []
    now = now or dt.datetime.now(dt.UTC)
    left = cert.not_valid_after_utc - now
    expires = cert.not_valid_after_utc.strftime("%Y-%m-%d")
    renew = (
        "see relentad acme status and the README's ACME section"
        if config.acme.enabled
        else "renew it (certbot renew; relentad loads the new files within [tls] reload_interval), or use [acme]"
    )
    if left.total_seconds() <= 0:
        findings.append(Finding("fail", "tls expiry", f"expired on {expires}", renew))
    elif left.days < CERT_WARN_DAYS:
        findings.append(Finding("warn", "tls expiry", f"expires on {expires} ({left.days} days)", renew))
    else:
        findings.append(Finding("ok", "tls expiry", f"valid until {expires} ({left.days} days)"))
    names = _names_of(cert)
    hostname = config.server.hostname.rstrip(".").lower()
    if any(_matches(name, hostname) for name in names):
        findings.append(Finding("ok", "tls names", f"covers {hostname}"))
    else:
        findings.append(
            Finding(
                "fail",
                "tls names",
                f"the certificate names {', '.join(names) or 'nothing'}, not {hostname}",
                f"get a certificate for {hostname} ([acme], or certbot certonly -d {hostname})",
            )
        )
    return findings


def check_web_names(config: Config, domains: Sequence[str]) -> list[Finding]:
    """With ``[listen] https`` on: does the certificate cover each domain's web names? A client (and an MTA-STS
    sender, RFC 8461 §3.3) refuses a certificate that does not name the host it asked for."""
    if not config.listen.https or not config.tls_enabled or not domains:
        return []
    try:
        names = _names_of(x509.load_pem_x509_certificate(config.cert_files()[0].read_bytes()))
    except (OSError, ValueError):
        return []  # check_certificate reports it
    missing = [
        wanted
        for domain in domains
        for wanted in clientconfig.web_names(addrspec.normalize_domain(domain))
        if not any(_matches(name, wanted) for name in names)
    ]
    if not missing:
        return [Finding("ok", "tls web names", f"covers the web names of {len(domains)} domain(s)")]
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return [
        Finding(
            "warn",
            "tls web names",
            f"the certificate does not name {shown}: clients asking there refuse it",
            "with [acme]: leave [acme] names empty (they are added) or add them; with certbot: add the names to "
            "the certificate (certbot certonly --expand -d ... -d mta-sts.DOMAIN -d autoconfig.DOMAIN "
            '-d autodiscover.DOMAIN), or set [listen] https = "" and serve them elsewhere',
        )
    ]


async def check_listeners(config: Config) -> list[Finding]:
    """Every configured listener accepts a TCP connection."""
    findings: list[Finding] = []
    for setting in dataclasses.fields(config.listen):
        name, text = setting.name, getattr(config.listen, setting.name)
        address = parse_address(text)
        if address is None:
            continue
        host = address[0] or "127.0.0.1"
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                host = "::1" if ipaddress.ip_address(host).version == 6 else "127.0.0.1"
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                _, writer = await asyncio.open_connection(host, address[1])
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            findings.append(Finding("ok", f"port {name}", f"{text} accepts connections"))
        except (OSError, TimeoutError) as exc:
            findings.append(
                Finding(
                    "fail",
                    f"port {name}",
                    f"nothing answers on {text} ({exc.__class__.__name__})",
                    "start relentad (systemctl start relentad) and read its log (journalctl -u relentad)",
                )
            )
    return findings


def check_listen_defaults(config: Config) -> list[Finding]:
    """A listener on by its default because the file does not name it (a release added it after the file was
    written): a port the admin may not know is open."""
    return [
        Finding(
            "warn",
            f"port {name}",
            f"{getattr(config.listen, name)} is on by default: [listen] {name} is not in {config.path}",
            f'set [listen] {name} = "{getattr(config.listen, name)}" to keep it, or "" to turn it off',
        )
        for name in config.listen_defaults
    ]


async def check_blocklists(config: Config, resolver: dns.asyncresolver.Resolver) -> list[Finding]:
    """Each ``[dnsbl]`` zone (IP and domain) answers its RFC 5782 test points as a blocklist should, through our
    resolver."""
    findings: list[Finding] = []
    zones = [(zone, False) for zone in config.dnsbl.zones] + [(zone, True) for zone in config.dnsbl.domain_zones]
    for zone, domains in zones:
        problem = await dnsbl.health(resolver, zone, domains=domains)
        if problem is None:
            findings.append(Finding("ok", "dnsbl", f"{zone} answers its test points"))
        else:
            fix = "ask through a resolver of your own (unbound on this host, in [dns] nameservers), or fix the name"
            findings.append(Finding(problem[0], "dnsbl", f"{zone} {problem[1]}", fix))
    return findings


DEFAULT_SPAM = SpamConfig()
_SPAM_TRAIN = "relentad spam train --global --ham DIR --spam DIR"


def check_spam_model(models: Sequence[Mapping[str, object]], spam: SpamConfig = DEFAULT_SPAM) -> list[Finding]:
    """The global spam model exists, has recorded ``[spam] min_trained`` messages of each class and is of the current
    version (``models``: ``spam.storage.stats`` rows); the finding says when its spam cut-off is raised or lowered,
    being short of or past ``confident_after`` messages (``spam.verdicts.size_note``).

    All are warnings: mail still flows, but short of ``min_trained`` every message stays in INBOX (``untrained``)
    until an account's own corrections make up the difference, and a model of an older version scores less
    surely than a retrained one.
    """
    min_trained = spam.min_trained
    fix = f"{_SPAM_TRAIN}, with folders of ham and of spam (one message per file)"
    model = next((m for m in models if m["scope"] == "global"), None)
    if model is None or not (model["nspam"] and model["nham"]):
        message = "no global model trained: no mail is filed by its spam score until an account's model has learned"
        return [Finding("warn", "spam model", f"{message} {min_trained} spam and {min_trained} ham", fix)]
    counts = int(str(model["recorded_spam"])), int(str(model["recorded_ham"]))
    recorded = f"{counts[0]} spam and {counts[1]} ham"
    if short_of_training(counts, min_trained):
        message = f"the global model has recorded {recorded}, fewer than [spam] min_trained ({min_trained}) of each"
        return [Finding("warn", "spam model", f"{message}: its verdicts file no mail yet", f"{fix}, more of them")]
    trained = f"{model['nspam']} spam, {model['nham']} ham"
    if model["stale"]:
        message = f"the global model ({trained}) is of version {model['tokenizer']}, older than {TOKENIZER_VERSION}"
        fix = f"{_SPAM_TRAIN} again, with the folders it was trained from (each file is relearned)"
        return [Finding("warn", "spam model", message, fix)]
    message = f"global model: {trained} trained, version {model['tokenizer']}"
    note = size_note(spam, counts)
    if note:
        message += f"; {note}"
    return [Finding("ok", "spam model", message)]


def check_postmaster(config: Config, is_account: bool) -> list[Finding]:
    """``[server] postmaster`` is set and ``is_account`` (it names an active account, as the store says)."""
    postmaster = config.server.postmaster
    fix = "set [server] postmaster to an existing account's address (relentad user list)"
    if not postmaster:
        message = "[server] postmaster is not set: postmaster@ of a domain without its own postmaster gets 550"
        return [Finding("warn", "postmaster", message, fix)]
    if not is_account:
        message = f"[server] postmaster {postmaster!r} is not an active account: postmaster@ mail gets 550"
        return [Finding("warn", "postmaster", message, fix)]
    return [Finding("ok", "postmaster", f"postmaster@ of every hosted domain reaches {postmaster}")]


REPORT_DAYS = 7


def check_reports(dmarc: Sequence[summary.DmarcSummary], tls: Sequence[summary.TlsSummary]) -> list[Finding]:
    """What the reports of the last :data:`REPORT_DAYS` days say; nothing when none came. A source IP that passed DMARC
    is taken to be ours: its failures mean mail of ours fails somewhere (a warning); failures of sources that never
    pass are someone else using the domain, which the DMARC policy handles (ok, for information)."""
    findings: list[Finding] = []
    for s in dmarc:
        check = f"DMARC reports {s.domain}"
        fix = f"relentad reports dmarc --domain {s.domain}: check DKIM signing and SPF for these sources"
        mixed = [src for src in s.sources.values() if src.passed and src.failed]
        strangers = [src for src in s.sources.values() if src.failed and not src.passed]
        if mixed:
            worst = max(mixed, key=lambda src: src.failed)
            message = (
                f"{sum(src.failed for src in mixed)} message(s) from {len(mixed)} source(s) that otherwise pass failed "
                f"DMARC in the last {REPORT_DAYS} days (most: {worst.source_ip}, {worst.failed} of {worst.messages})"
            )
            findings.append(Finding("warn", check, message, fix))
        elif s.messages:
            message = f"{s.passed} of {s.messages} message(s) passed DMARC in the last {REPORT_DAYS} days"
            if strangers:
                message += f"; {s.failed} from {len(strangers)} source(s) that never pass (not yours) failed"
            findings.append(Finding("ok", check, message))
    for t in tls:
        check = f"TLS reports {t.domain}"
        if t.failures:
            top = t.ordered_failures()
            what = f" (most: {top[0].result_type} at {top[0].receiving_mx_hostname or '?'})" if top else ""
            message = (
                f"{t.failures} of {t.successes + t.failures} TLS session(s) to the MX failed in the last "
                f"{REPORT_DAYS} days{what}"
            )
            fix = f"relentad reports tls --domain {t.domain}: check the certificate, its names and STARTTLS on the MX"
            findings.append(Finding("warn", check, message, fix))
        elif t.successes:
            findings.append(Finding("ok", check, f"{t.successes} TLS session(s), none failed"))
    return findings


def check_offsite(config: Config, now: float | None = None) -> list[Finding]:
    """With ``[backup] offsite``: a warning when no off-site copy was made in the last two days."""
    if not config.backup.offsite:
        return []
    from .lifecycle import offsite

    stale = offsite.staleness(config, now)
    if stale is None:
        return [Finding("ok", "off-site backup", f"last copy {offsite.read_state(config).get('last_file')}")]
    fix = "relentad backup create (it copies off-site and prints why not); relentad backup list --offsite"
    return [Finding("warn", "off-site backup", stale, fix)]


async def run(
    config: Config,
    domains: list[str],
    spam_models: Sequence[Mapping[str, object]],
    postmaster_is_account: bool = True,
    reports: Sequence[Finding] = (),
    forwarding: Sequence[str] = (),
) -> list[Finding]:
    """Every check, in the order they are printed; ``spam_models`` are the store's ``spam.storage.stats`` rows,
    ``postmaster_is_account`` whether ``[server] postmaster`` names an active account of the store, ``reports``
    :func:`check_reports` on the store's reports, ``forwarding`` the domains that forward mail elsewhere."""
    resolver = make_resolver(config.dns.nameservers, config.dns.timeout)
    findings: list[Finding] = []
    checked_tlsa: set[str] = set()
    if not domains:
        findings.append(Finding("warn", "domains", "no hosted domain", "relentad domain add DOMAIN"))
    for domain in domains:
        for record in dnsrecords.records(config, domain):
            if record.rtype in ("A", "AAAA") or record.rtype == "CNAME":
                continue  # the host's addresses are checked once below; CNAMEs depend on the web setup
            if record.rtype == "TLSA":
                if record.name not in checked_tlsa:  # the same host's record under every domain
                    checked_tlsa.add(record.name)
                    chain = dnsrecords.certificate_chain(config)
                    findings.append(await check_tlsa(resolver, record, chain, config.acme.enabled))
                continue
            findings.append(await check_record(resolver, record))
    findings += await check_host(resolver, config.server.hostname.rstrip("."))
    findings += check_resolver(config, resolver.nameservers)
    findings += check_acme(config)
    findings += await check_forwarding_spf(resolver, config.server.hostname.rstrip("."), forwarding)
    findings += check_certificate(config)
    findings += check_web_names(config, domains)
    findings += await check_listeners(config)
    findings += check_listen_defaults(config)
    findings += await check_blocklists(config, resolver)
    findings += check_postmaster(config, postmaster_is_account)
    findings += check_offsite(config)
    if config.spam.enabled:
        findings += check_spam_model(spam_models, config.spam)
    findings += reports
    return findings
