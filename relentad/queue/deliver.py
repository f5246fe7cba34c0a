"""One delivery attempt over SMTP: to the destination's MX hosts, or to the configured smarthost.

Returns a result per recipient and never raises for anything the network or the remote server does:
- ``delivered``: the server accepted the message for that recipient (2xx after RCPT and DATA);
- ``failed``: a 5xx for that recipient, for the sender or for the data; DNS says the domain takes no mail; an
  internationalized address at a server without SMTPUTF8;
- ``deferred``: a 4xx, a dropped connection, a timeout, no reachable host, DNS not answering.

MX mode (RFC 5321 §5.1): hosts from :func:`relentad.dns.mx_hosts` (null MX and the A fallback included), their
addresses from the configured resolver (never the system's), tried in order until one answers; opportunistic
STARTTLS whenever offered, without certificate verification (RFC 7435: encryption without authentication
beats plain text; a broken handshake moves on to the next host). After STARTTLS, EHLO again: the extensions
offered before TLS do not count (RFC 3207 §4.2), and MAIL's options are chosen from the new list. A server
that refuses EHLO (5xx) gets HELO and a transaction without extensions (RFC 5321 §3.2). Smarthost
mode: one relay, TLS as configured (verified unless turned off), AUTH when a user is configured.

MTA-STS (RFC 8461 §4, §5; the policy comes from :mod:`relentad.queue.mtasts`): with mode ``enforce`` only the MX
hosts the policy names are tried, STARTTLS is required and the certificate must verify for the MX host name; a
host that fails is skipped like an unreachable one (never plain text), and when none is left the recipients stay
queued with a ``451 4.7.5`` saying why. With mode ``testing`` the same checks run, and a failure is logged and
counted, then the host gets the message as without a policy. Never applied to the smarthost.

DANE (RFC 7672; the records come from :mod:`relentad.queue.dane`): when the domain's MX answer and a host's address
answers are DNSSEC-validated and the host publishes TLSA records, that host is tried only over STARTTLS and, when
any record is usable, only with a certificate chain matching them, checked after an unverified handshake; a host
that fails, or whose TLSA lookup failed, is skipped (never plain text) and the recipients stay queued with a
``451 4.7.5 DANE: ...``.
Such a host is not held to the MTA-STS policy (RFC 8461 §2: DANE takes precedence). Never applied to the smarthost.

TLS reporting (RFC 8460): given a ``sessions`` list, MX mode notes each host's first try as a :class:`TlsSession`
(success, or the §4.3 result type of what failed: no STARTTLS, the certificate, the handshake, an MX host outside
the policy, a TLSA mismatch or lookup failure) under the host's TLSA records, the domain's MTA-STS policy or none;
the runner stores them. The retries of a host without the policy or without TLS are not sessions of their own.

Content goes as it is: 8-bit with BODY=8BITMIME where offered and unchanged where not (no conversion to 7 bit:
the DKIM signature covers the body), UTF-8 header fields with SMTPUTF8 where offered. An address that needs
SMTPUTF8 never goes to a server without it (RFC 6531 §3.2): those recipients fail with our own 553 5.6.7, and
the sender gets a bounce.

DSN (RFC 3461): at a server that offers it, MAIL carries the message's RET and ENVID and each RCPT its NOTIFY and
ORCPT, as the sender gave them; the outcome says whether the server took them (``dsn_passed``), for then the
success report is that server's to send, not ours ("relayed", §6.2.3).

Invariant: no database access here; the runner records results, one transaction per attempt.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib
import dns.asyncresolver

from .. import config as config_mod
from .. import dns as relentad_dns
from .. import metrics
from ..config import QueueConfig
from ..smtp import dsnparams
from . import dane as dane_mod
from . import mtasts

log = logging.getLogger("relentad.queue")

SMTP_PORT = 25
# RFC 5321 §4.5.3.2.6: wait at least 10 minutes for the reply to the final ".". The server may already have the
# message (a slow content scanner): giving up sooner makes us send it again to the next MX or on the next retry.
DATA_TIMEOUT = 600.0
State = Literal["delivered", "failed", "deferred"]
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True)
class Outcome:
    state: State
    reply: str  # "550 5.1.1 No such user" or our own description of what went wrong
    remote: str = ""  # the host that gave the reply, for the DSN's Remote-MTA
    # True when ``reply`` is that server's own reply, False for a text of ours (timeout, DNS, no TLS...): only the
    # former is an ``smtp`` Diagnostic-Code in a DSN (RFC 3464 §2.3.6).
    from_remote: bool = False
    dsn_passed: bool = False  # delivered to a server that offers DSN: it reports success (and later failure)


@dataclass(frozen=True)
class TlsSession:
    """One TLS session tried with an MX host (RFC 8460 §4.3): ``result`` is ``success`` or a result type;
    ``policy`` the domain's MTA-STS policy (None: no-policy-found); ``tlsa`` the host's TLSA records, one a line,
    when DANE applied instead (policy type tlsa)."""

    result: str
    policy: mtasts.Policy | None
    mx_host: str = ""
    mx_ip: str = ""
    sending_ip: str = ""
    detail: str = ""
    tlsa: str = ""
    tlsa_base: str = ""  # the TLSA base domain: a tlsa policy's policy-domain (RFC 8460 §1.1)


# OpenSSL's verify codes (X509_V_ERR_*) by RFC 8460 §4.3.2 result type; any other is validation-failure
_VERIFY_RESULTS = {
    9: "certificate-expired",  # not yet valid
    10: "certificate-expired",
    2: "certificate-not-trusted",  # unable to get issuer certificate
    18: "certificate-not-trusted",  # self-signed
    19: "certificate-not-trusted",  # self-signed in chain
    20: "certificate-not-trusted",  # unable to get local issuer certificate
    21: "certificate-not-trusted",  # unable to verify the first certificate
    62: "certificate-host-mismatch",
}


def verify_result(exc: ssl.SSLCertVerificationError) -> str:
    """The RFC 8460 result type of a failed certificate verification."""
    return _VERIFY_RESULTS.get(int(getattr(exc, "verify_code", 0) or 0), "validation-failure")


@dataclass(frozen=True)
class Dsn:
    """The DSN parameters to pass on: the message's and each recipient's (by address)."""

    mail: dsnparams.MailParams = dsnparams.NO_MAIL_PARAMS
    rcpt: Mapping[str, dsnparams.RcptParams] = field(default_factory=dict)

    def mail_options(self) -> list[str]:
        options = [f"RET={self.mail.ret}"] if self.mail.ret else []
        if self.mail.envid is not None:
            options.append(f"ENVID={dsnparams.xtext_encode(self.mail.envid)}")
        return options

    def rcpt_options(self, recipient: str) -> list[str]:
        params = self.rcpt.get(recipient, dsnparams.NO_RCPT_PARAMS)
        notify = dsnparams.notify_text(params.notify)
        options = [f"NOTIFY={notify}"] if notify else []
        if params.orcpt:
            options.append(f"ORCPT={dsnparams.orcpt_field(params.orcpt)}")
        return options


NO_DSN = Dsn()


@dataclass(frozen=True)
class Smarthost:
    host: str
    port: int
    tls: str  # "starttls" | "tls" | "none"
    verify: bool
    user: str
    password: str


def smarthost_of(config: config_mod.Config) -> Smarthost | None:
    """The configured smarthost, with its password read from its file; None in MX mode."""
    queue = config.queue
    address = config_mod.parse_address(queue.smarthost)
    if address is None or address[0] is None:
        return None
    password = ""
    if queue.smarthost_password_file:
        lines = config.resolve(queue.smarthost_password_file).read_text(encoding="utf-8").splitlines()
        password = lines[0] if lines else ""
    return Smarthost(
        host=address[0],
        port=address[1],
        tls=queue.smarthost_tls,
        verify=queue.smarthost_tls_verify,
        user=queue.smarthost_user,
        password=password,
    )


def enhanced_status(reply: str, default: str) -> str:
    """The enhanced status code (RFC 3463) in an SMTP reply text, else ``default``."""
    text = reply[4:] if len(reply) > 4 and reply[:3].isdigit() else reply
    match = _ENHANCED.match(text)
    return match.group(1) if match else default


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}"[:500]


def _answer(state: State, code: int, message: str, remote: str, dsn_passed: bool = False) -> Outcome:
    """The outcome that is the remote server's own reply."""
    return Outcome(state, _reply(code, message), remote, from_remote=True, dsn_passed=dsn_passed)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO; HELO when the server refuses EHLO with a 5xx (RFC 5321 §3.2), and then no extensions are used."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code < 500 or not client.is_connected:
            raise
        await client.helo()


class _HostFailed(Exception):
    """This host could not take the message (connection, TLS, 4xx greeting): try the next one.

    ``remote`` names the host when the message is that host's own reply (a 4xx greeting), else it is empty.
    """

    def __init__(self, message: str, remote: str = "") -> None:
        super().__init__(message)
        self.remote = remote


class _TlsFailed(_HostFailed):
    """The STARTTLS handshake failed: in MX mode the same host is tried once more without TLS."""


class _Unauthenticated(_HostFailed):
    """This host does not meet what the recipient domain published for TLS; ``reason`` is the metric's label."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _PolicyFailed(_Unauthenticated):
    """This host does not meet the domain's MTA-STS policy (``reason``: no_starttls, certificate, tls)."""


class _DaneFailed(_Unauthenticated):
    """This host does not meet its TLSA records (``reason``: no_starttls, tls, tlsa, name, expired): never used in
    plain text."""


def _dane_failure(domain: str, reason: str, detail: str) -> str:
    """Log and count one MX host that fails DANE; the deferral text (4.7.5: cryptographic failure)."""
    metrics.dane_failure(reason)
    log.warning("dane domain=%s %s: %s; not used", domain, reason, detail)
    return f"451 4.7.5 DANE: {detail}"


_DANE_REASONS = {
    "tlsa-invalid": "tlsa",
    "certificate-host-mismatch": "name",
    "certificate-expired": "expired",
    "validation-failure": "tls",
}


def _policy_failure(policy: mtasts.Policy, reason: str, detail: str) -> str:
    """Log and count one MX host that fails ``policy``; the deferral text (4.7.5, RFC 3463: cryptographic failure)."""
    metrics.mta_sts_failure(policy.mode, reason)
    consequence = "not used" if policy.mode == "enforce" else "used anyway (mode testing)"
    log.warning("mta-sts domain=%s mode=%s %s: %s; %s", policy.domain, policy.mode, reason, detail, consequence)
    return f"451 4.7.5 MTA-STS policy of {policy.domain}: {detail}"


def _header(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[:end]


def _refuse_utf8(mail_from: str, recipients: list[str], remote: str, results: dict[str, Outcome]) -> list[str]:
    """Fail the recipients whose envelope needs SMTPUTF8 at a server without it (RFC 6531 §3.2); the others."""
    refused = recipients if not mail_from.isascii() else [r for r in recipients if not r.isascii()]
    reply = f"553 5.6.7 {remote} does not support SMTPUTF8, which the address needs"
    for recipient in refused:
        results[recipient] = Outcome("failed", reply)
    return [r for r in recipients if r not in refused]


def _mail_options(client: aiosmtplib.SMTP, mail_from: str, recipients: list[str], data: bytes) -> list[str]:
    """BODY=8BITMIME and SMTPUTF8 where the message needs them and the server offers them (else sent as is)."""
    options: list[str] = []
    if any(b > 127 for b in data) and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    envelope_utf8 = not mail_from.isascii() or not all(r.isascii() for r in recipients)
    if (envelope_utf8 or not _header(data).isascii()) and client.supports_extension("smtputf8"):
        options.append("SMTPUTF8")
    return options


async def _transaction(
    client: aiosmtplib.SMTP,
    mail_from: str,
    recipients: list[str],
    data: bytes,
    remote: str,
    results: dict[str, Outcome],
    time_limit: float,
    dsn: Dsn = NO_DSN,
) -> None:
    """MAIL, RCPT per recipient, DATA on an open connection; fills ``results`` as replies come in."""
    if not client.supports_extension("smtputf8"):
        recipients = _refuse_utf8(mail_from, recipients, remote, results)
        if not recipients:
            return
    options = _mail_options(client, mail_from, recipients, data)
    dsn_passed = client.supports_extension("dsn")
    if dsn_passed:
        options += dsn.mail_options()
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    try:
        await client.mail(mail_from, options=options, encoding=encoding)
    except aiosmtplib.SMTPResponseException as exc:
        state: State = "failed" if exc.code >= 500 else "deferred"
        for recipient in recipients:
            results[recipient] = _answer(state, exc.code, exc.message, remote)
        return
    accepted: list[str] = []
    for recipient in recipients:
        try:
            await client.rcpt(recipient, options=dsn.rcpt_options(recipient) if dsn_passed else [], encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            state = "failed" if exc.code >= 500 else "deferred"
            results[recipient] = _answer(state, exc.code, exc.message, remote)
            continue
        accepted.append(recipient)
    if not accepted:
        return
    try:
        # aiosmtplib has one timeout for the 354 and the final reply: the longer one serves both.
        response = await client.data(data, timeout=max(time_limit, DATA_TIMEOUT))
    except aiosmtplib.SMTPResponseException as exc:
        state = "failed" if exc.code >= 500 else "deferred"
        for recipient in accepted:
            results[recipient] = _answer(state, exc.code, exc.message, remote)
        return
    for recipient in accepted:
        results[recipient] = _answer("delivered", response.code, response.message, remote, dsn_passed)


async def _via_host(
    ip: str,
    port: int,
    name: str,
    *,
    hostname: str,
    time_limit: float,
    mail_from: str,
    recipients: list[str],
    data: bytes,
    results: dict[str, Outcome],
    smarthost: Smarthost | None = None,
    opportunistic_tls: bool = True,
    dsn: Dsn = NO_DSN,
    verified: ssl.SSLContext | None = None,
    policy: mtasts.Policy | None = None,
    session: Callable[[str, str, str], None] | None = None,
    dane: dane_mod.Dane | None = None,
) -> None:
    """Connect to one address and run the transaction; raises _HostFailed when the host never took part.

    ``verified`` verifies the certificate (chain and the host name) with that context; ``policy`` (MX mode with
    ``verified``) makes STARTTLS required and a failed verification a _PolicyFailed, but with mode testing a host
    without STARTTLS still gets the message in plain text (reported), unless ``dane`` is given. ``dane`` (MX mode,
    without ``verified``, or with ``policy`` when none of its records is usable) makes STARTTLS required and the
    certificate checked against its TLSA records after the handshake (:func:`.dane.check`), else a _DaneFailed.
    ``session(result, detail, sending_ip)`` hears how TLS went, once the connection stands (TLS reporting)."""
    use_tls = smarthost is not None and smarthost.tls == "tls"
    verify = verified is not None and (smarthost is None or smarthost.verify)
    client = aiosmtplib.SMTP(
        hostname=ip,
        port=port,
        local_hostname=hostname,
        timeout=time_limit,
        use_tls=use_tls,
        start_tls=False,
        validate_certs=verify,
        tls_context=verified if verify else _unverified_context(),
    )
    sending_ip = ""
    noted = session is None

    def note(result: str, detail: str = "") -> None:
        nonlocal noted
        if not noted and session is not None:
            noted = True
            session(result, detail[:200], sending_ip)

    try:
        try:
            await client.connect()
            sockname = client.get_transport_info("sockname")
            sending_ip = str(sockname[0]) if sockname else ""
            await _greet(client)
            if smarthost is not None:
                want_tls = smarthost.tls == "starttls"
            elif dane is not None:
                want_tls = client.supports_extension("starttls")
                if not want_tls:
                    note("starttls-not-supported")
                    raise _DaneFailed(f"{name}[{ip}] does not offer STARTTLS", "no_starttls")
            elif policy is not None:
                want_tls = client.supports_extension("starttls")
                if not want_tls:
                    detail = f"{name}[{ip}] does not offer STARTTLS"
                    note("starttls-not-supported")
                    if policy.mode == "enforce":
                        raise _PolicyFailed(detail, "no_starttls")
                    _policy_failure(policy, "no_starttls", detail)
            else:
                want_tls = opportunistic_tls and client.supports_extension("starttls")
                if opportunistic_tls and not want_tls:
                    note("starttls-not-supported")
            if want_tls:
                try:
                    # SNI: with DANE the TLSA base domain, the CNAME target where the records were (RFC 7672 §8.1)
                    sni = dane.base if dane is not None and not verify else name
                    await client.starttls(server_hostname=sni, validate_certs=verify)
                    if dane is not None:
                        _check_dane(client, dane, f"{name}[{ip}]", note)
                    note("success")
                    await _greet(client)  # RFC 3207 §4.2: the extensions before TLS are forgotten, ask again
                except ssl.SSLCertVerificationError as exc:
                    detail = f"{name}[{ip}]: certificate not valid for {name}: {exc.verify_message or exc}"
                    note(verify_result(exc), str(exc.verify_message or exc))
                    if policy is not None:
                        raise _PolicyFailed(detail, "certificate") from exc
                    raise _TlsFailed(detail) from exc
                except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
                    detail = f"{name}[{ip}]: STARTTLS failed: {type(exc).__name__}: {exc}"
                    note("validation-failure", f"{type(exc).__name__}: {exc}")
                    if dane is not None:
                        raise _DaneFailed(detail, "tls") from exc
                    if policy is not None:
                        raise _PolicyFailed(detail, "tls") from exc
                    raise _TlsFailed(detail) from exc
            if smarthost is not None and smarthost.user:
                await client.login(smarthost.user, smarthost.password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise _HostFailed(f"smarthost refused our login: {_reply(exc.code, exc.message)}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _HostFailed(_reply(exc.code, exc.message), remote=name) from exc
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise _HostFailed(f"{name}[{ip}]: {type(exc).__name__}: {exc}") from exc
        try:
            await _transaction(client, mail_from, recipients, data, name, results, time_limit, dsn)
        except (aiosmtplib.SMTPException, OSError) as exc:  # dropped mid-transaction: undecided ones are deferred
            raise _HostFailed(f"{name}[{ip}]: {type(exc).__name__}: {exc}") from exc
    finally:
        await say_goodbye(client)


async def say_goodbye(client: aiosmtplib.SMTP) -> None:
    """QUIT a connected session politely; a server that does not answer it is just disconnected."""
    if client.is_connected:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()


def _check_dane(client: aiosmtplib.SMTP, dane: dane_mod.Dane, where: str, note: Callable[[str, str], None]) -> None:
    """Raise _DaneFailed unless the certificate chain of the TLS session just set up matches ``dane``."""
    failure = dane_mod.check(dane, dane_mod.peer_chain(client.get_transport_info("ssl_object")))
    if failure is not None:
        note(failure.result, failure.detail)
        raise _DaneFailed(f"{where}: {failure.detail}", _DANE_REASONS.get(failure.result, "tlsa"))


async def _host(resolver: dns.asyncresolver.Resolver, host: str, secure_mx: bool) -> dane_mod.Host:
    """:func:`.dane.resolve_host`, counted."""
    found = await dane_mod.resolve_host(resolver, host, secure_mx)
    metrics.dane_lookup(found.tlsa.state)
    return found


async def attempt(
    *,
    domain: str,
    mail_from: str,
    recipients: list[str],
    data: bytes,
    hostname: str,
    queue: QueueConfig,
    resolver: dns.asyncresolver.Resolver,
    smarthost: Smarthost | None,
    dsn: Dsn = NO_DSN,
    policy: mtasts.Policy | None = None,
    verified: ssl.SSLContext | None = None,
    sessions: list[TlsSession] | None = None,
) -> dict[str, Outcome]:
    """Try to deliver ``data`` to ``recipients`` (all at ``domain``); an outcome for every recipient.

    ``policy`` is the domain's MTA-STS policy (MX mode only); ``verified`` the context that verifies certificates
    (the system's CAs plus ``[queue] ca_file``), for the smarthost and for MTA-STS. ``sessions`` (MX mode) gets
    the TLS sessions tried, for TLS reporting."""
    results: dict[str, Outcome] = {}
    last_error, last_remote = "no host could be reached", ""
    verified = verified or mtasts.verified_context(None, cn_fallback=smarthost is not None)
    reported = policy  # the policy TLS reports name, mode none included
    if smarthost is not None:
        sessions = None
    if smarthost is not None or (policy is not None and policy.mode == "none"):
        policy = None

    def recorder(name: str, ip: str, dane: dane_mod.Dane | None) -> Callable[[str, str, str], None] | None:
        found = sessions
        if found is None:
            return None
        tlsa, base = (dane.text(), dane.base) if dane is not None else ("", "")

        def note(result: str, detail: str, sending_ip: str) -> None:
            policy = None if dane is not None else reported
            found.append(TlsSession(result, policy, name, ip, sending_ip, detail, tlsa, base))

        return note

    def pending() -> list[str]:
        return [r for r in recipients if r not in results or results[r].state == "deferred"]

    targets: list[tuple[str, int, str, dane_mod.Dane | None]] = []
    if smarthost is not None:
        targets = [(smarthost.host, smarthost.port, smarthost.host, None)]
    else:
        try:
            route = await relentad_dns.mx_route(resolver, domain)
            hosts = route.hosts
        except relentad_dns.DnsPermanentError as exc:
            return {r: Outcome("failed", f"550 5.1.2 {exc}") for r in recipients}
        except relentad_dns.DnsTemporaryError as exc:
            return {r: Outcome("deferred", f"451 4.4.3 DNS: {exc}") for r in recipients}
        if policy is not None:
            outside = [host for host in hosts if not policy.allows(host)]
            if sessions is not None:
                sessions += [
                    TlsSession("validation-failure", policy, h, detail="MX host not in the policy") for h in outside
                ]
            hosts, last_error = _policy_hosts(policy, hosts, last_error)
        for host in hosts:
            try:
                found = await _host(resolver, host, queue.dane and route.secure)
            except relentad_dns.DnsTemporaryError as exc:
                last_error, last_remote = f"451 4.4.3 DNS: {exc}", ""
                continue
            if found.tlsa.error:  # §2.2: a secure host whose TLSA records cannot be had is not used, nor downgraded
                last_error, last_remote = _dane_failure(domain, "dnssec", f"{host}: {found.tlsa.error}"), ""
                if sessions is not None:
                    base = found.tlsa.name or host
                    sessions.append(
                        TlsSession("dnssec-invalid", None, host, detail=found.tlsa.error[:200], tlsa_base=base)
                    )
                continue
            targets += [(ip, SMTP_PORT, host, found.tlsa.dane) for ip in found.addresses]
    for ip, port, name, dane in targets:
        todo = pending()
        if not todo:
            break
        # DANE takes precedence over MTA-STS for a host with usable TLSA records (RFC 8461 §2); TLSA records that
        # are all unusable leave the policy in force and make TLS required, whatever the policy's mode (RFC 7672 §2.2)
        authenticated = dane is not None and bool(dane.records)
        host_policy = policy if not authenticated and policy is not None and policy.allows(name) else None
        # (opportunistic TLS, policy): a host failing a testing policy is tried again as if there were none
        tries: list[tuple[bool, mtasts.Policy | None]] = [(True, host_policy)] if host_policy is not None else []
        if authenticated:
            tries = [(True, None)]  # TLS with a matching certificate, or not at all
        elif host_policy is None or host_policy.mode == "testing":
            tries += [(True, None)] if dane is not None else [(True, None), (False, None)]  # never plain text
        first = policy is None or policy.allows(name)  # a testing policy's outside host: already noted
        for opportunistic_tls, applied in tries:
            session, first = (recorder(name, ip, dane if host_policy is None else None) if first else None), False
            try:
                await _via_host(
                    ip,
                    port,
                    name,
                    hostname=hostname,
                    time_limit=queue.timeout,
                    mail_from=mail_from,
                    recipients=pending(),
                    data=data,
                    results=results,
                    smarthost=smarthost,
                    opportunistic_tls=opportunistic_tls,
                    dsn=dsn,
                    verified=verified if applied is not None or smarthost is not None else None,
                    policy=applied,
                    session=session,
                    dane=dane,
                )
            except _DaneFailed as exc:
                last_error, last_remote = _dane_failure(domain, exc.reason, str(exc)), ""
            except _PolicyFailed as exc:
                assert applied is not None
                last_error, last_remote = _policy_failure(applied, exc.reason, str(exc)), ""
                if applied.mode == "testing":
                    continue  # deliver as if there were no policy
            except _TlsFailed as exc:
                last_error, last_remote = str(exc), exc.remote
                log.info("queue domain=%s host=%s[%s] failed: %s", domain, name, ip, last_error)
                if smarthost is None:
                    continue  # RFC 7435: opportunistic TLS falls back to plain text rather than not delivering
            except _HostFailed as exc:
                last_error, last_remote = str(exc), exc.remote
                log.info("queue domain=%s host=%s[%s] failed: %s", domain, name, ip, last_error)
            break
        if all(results.get(r) is not None and results[r].state != "deferred" for r in todo):
            break
    if not last_error[:3].isdigit():
        last_error = f"451 4.4.1 {last_error}"
    for recipient in recipients:
        results.setdefault(recipient, Outcome("deferred", last_error, last_remote, from_remote=bool(last_remote)))
    return results


def _policy_hosts(policy: mtasts.Policy, hosts: list[str], last_error: str) -> tuple[list[str], str]:
    """The MX hosts to try under ``policy`` and the deferral text when none is left: with mode enforce only the
    hosts its ``mx`` patterns match (§5.1); with mode testing all of them, the others only reported (never the
    reason a message waits)."""
    outside = [host for host in hosts if not policy.allows(host)]
    for host in outside:
        failure = _policy_failure(
            policy, "mx_mismatch", f"MX host {host} matches none of the policy's mx ({', '.join(policy.mx)})"
        )
        last_error = failure if policy.mode == "enforce" else last_error
    if policy.mode != "enforce":
        return hosts, last_error
    return [host for host in hosts if host not in outside], last_error
