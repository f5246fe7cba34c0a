"""Sending SMTP TLS reports (RFC 8460) about this server's outbound deliveries. Off unless ``[tlsrpt]
send_reports``: a report tells a recipient domain how many TLS sessions with its MX hosts succeeded and failed, and
from which of our addresses — how much mail this server sends there, given only when the admin chooses to.

How: while it is on, the queue runner records each TLS session with an MX host (MX mode; not the smarthost) and each
failed MTA-STS policy discovery as a ``tlsrpt_results`` row (:mod:`relentad.queue.tlsresults`, in the transaction that
records the attempt). Once a day (:func:`.sending.run_daily`, with the DMARC reports; ``relentad reports send`` on
demand) the rows are summed up per recipient domain, by policy (``sts`` with its text and mx patterns, ``tlsa`` with an
MX host's TLSA records and their base domain as the policy domain, or ``no-policy-found``), into one JSON report (§4.4)
— when ``_smtp._tls.<domain>`` publishes exactly one ``v=TLSRPTv1`` record (§3) — gzipped and queued as the mail of
§5.3, DKIM-signed for ``[dmarc] reporter``'s domain, to the record's ``mailto:`` addresses (unlike DMARC, RFC 8460 asks
no consent of a third-party address).

``https:`` destinations (§3, a POST of the gzipped report) are not used: a report through the queue is stored until
delivered and retried as any mail, and no report is lost to a web server that is down at the moment of the daily
run, while a POST would need a retry store of its own. A domain that names only ``https:`` gets no report (logged).

The rows reported, and those of domains without a usable record, are deleted in the transaction that queues the
reports; hosted domains are never reported (our own MX); a row left over (a failed run) is dropped after
:data:`KEEP_DAYS` days. A report mail is delivered without the domain's MTA-STS policy and is no session of its own
(§5.3; :data:`relentad.queue.tlsresults.TLS_REPORT_PREFIX`).
"""

from __future__ import annotations

import email.policy
import gzip
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import dns.asyncresolver

from .. import daily
from ..config import Config
from ..dns import DnsTemporaryError, lookup
from ..queue.dkimkeys import KeyRing
from ..queue.tlsresults import TLS_REPORT_PREFIX
from . import intake, sending
from .sending import Outgoing

log = logging.getLogger("relentad.reports")

KEEP_DAYS = 3
MAX_POLICIES = 20
MAX_DETAILS = 100
"""Failure-detail entries per policy, the most frequent first (the summary counts all sessions)."""
_RECORD_START = "v=tlsrptv1"


@dataclass
class PolicyResults:
    """The sessions under one policy of a domain: the §4.4 ``policies`` entry."""

    policy_type: str  # sts, tlsa (DANE: policy the TLSA records, mx their base domain) or no-policy-found
    text: str
    mx: list[str]
    successes: int = 0
    failures: int = 0
    details: list[tuple[str, str, str, str, str, int]] = field(default_factory=list)
    # (result type, sending IP, MX host, MX IP, reason, sessions)


@dataclass
class Pending:
    """A recipient domain's sessions not yet reported."""

    domain: str
    begin: float
    end: float
    last_id: int
    policies: list[PolicyResults]
    hosted: bool = False


def collect(conn: sqlite3.Connection) -> list[Pending]:
    """Every recipient domain's pending sessions, summed up by policy."""
    found = []
    domains = conn.execute(
        "SELECT domain, min(at), max(at), max(id) FROM tlsrpt_results GROUP BY domain ORDER BY domain"
    ).fetchall()
    for domain, begin, end, last_id in domains:
        policies: dict[tuple[str, str, str], PolicyResults] = {}
        for kind, text, mx, ok, failed in conn.execute(
            "SELECT policy_type, policy, mx, sum(result = 'success'), sum(result != 'success') FROM tlsrpt_results"
            " WHERE domain = ? AND id <= ? GROUP BY 1, 2, 3 ORDER BY count(*) DESC LIMIT ?",
            (domain, last_id, MAX_POLICIES),
        ):
            policies[(kind, text, mx)] = PolicyResults(kind, text, mx.split(), ok, failed)
        for key, entry in policies.items():
            rows = conn.execute(
                "SELECT result, sending_ip, mx_host, mx_ip, detail, count(*) FROM tlsrpt_results"
                " WHERE domain = ? AND id <= ? AND policy_type = ? AND policy = ? AND mx = ? AND result != 'success'"
                " GROUP BY 1, 2, 3, 4, 5 ORDER BY count(*) DESC LIMIT ?",
                (domain, last_id, *key, MAX_DETAILS),
            ).fetchall()
            entry.details = [tuple(r) for r in rows]
        found.append(Pending(domain, begin, end, last_id, list(policies.values()), intake.hosted(conn, domain)))
    return found


def _datetime(moment: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def report_json(pending: Pending, *, org_name: str, contact: str, report_id: str, begin: int, end: int) -> bytes:
    """The report of RFC 8460 §4.4 for ``pending``."""
    policies = []
    for entry in pending.policies:
        policy: dict[str, Any] = {"policy-type": entry.policy_type}
        if entry.text:
            policy["policy-string"] = [line.rstrip("\r") for line in entry.text.split("\n") if line.strip()]
        if entry.policy_type == "tlsa":  # DANE's policy domain is the TLSA base domain (RFC 8460 §1.1); no mx-host
            policy["policy-domain"] = entry.mx[0] if entry.mx else pending.domain
        else:
            policy["policy-domain"] = pending.domain
            if entry.mx:
                policy["mx-host"] = entry.mx
        details = []
        for result, sending_ip, mx_host, mx_ip, reason, count in entry.details:
            detail: dict[str, Any] = {"result-type": result}
            if sending_ip:
                detail["sending-mta-ip"] = sending_ip
            if mx_host:
                detail["receiving-mx-hostname"] = mx_host
            if mx_ip:
                detail["receiving-ip"] = mx_ip
            detail["failed-session-count"] = count
            if reason:
                detail["failure-reason-code"] = reason
            details.append(detail)
        summary = {"total-successful-session-count": entry.successes, "total-failure-session-count": entry.failures}
        item: dict[str, Any] = {"policy": policy, "summary": summary}
        if details:
            item["failure-details"] = details
        policies.append(item)
    document = {
        "organization-name": org_name,
        "date-range": {"start-datetime": _datetime(begin), "end-datetime": _datetime(end)},
        "contact-info": contact,
        "report-id": report_id,
        "policies": policies,
    }
    return json.dumps(document, indent=1).encode() + b"\n"


def record_rua(texts: list[str]) -> str | None:
    """The ``rua`` of a domain's ``_smtp._tls`` TXT records, None unless exactly one starts with ``v=TLSRPTv1``
    (RFC 8460 §3: the others are discarded; none or several mean no TLS reporting)."""
    candidates = [t for t in texts if t.replace(" ", "").replace("\t", "").lower().startswith(_RECORD_START + ";")]
    if len(candidates) != 1:
        return None
    for field_ in candidates[0].split(";")[1:]:
        name, _, value = field_.strip(" \t").partition("=")
        if name.strip().lower() == "rua":
            return value.strip()
    return None


async def rua_of(resolver: dns.asyncresolver.Resolver, domain: str) -> str | None:
    """The domain's ``rua`` (None: no TLS reporting, or DNS failing: not this time)."""
    try:
        records = await lookup(resolver, f"_smtp._tls.{domain}", "TXT")
    except DnsTemporaryError as exc:
        log.info("reports: no TLS report for %s this time: %s", domain, exc)
        return None
    return record_rua([b"".join(getattr(r, "strings", ())).decode("utf-8", "replace") for r in records])


def compose(
    pending: Pending, config: Config, compressed: bytes, recipients: list[str], report_id: str, begin: int, end: int
) -> bytes:
    """The report mail of RFC 8460 §5.3: multipart/report of type tlsrpt, a short text and the gzipped JSON. The
    submitter, in the header fields, the subject and the file name (§5.1), is a domain name: the reporter's."""
    submitter = config.dmarc.reporter.rpartition("@")[2]
    org_name = config.dmarc.org_name or config.server.hostname
    msg = sending.message(config, pending.domain, submitter, recipients, report_id, end)
    msg["Message-ID"] = f"<tlsrpt-{report_id}>"
    msg["TLS-Report-Domain"] = pending.domain
    msg["TLS-Report-Submitter"] = submitter
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"This is an SMTP TLS report (RFC 8460) from {org_name} for {pending.domain}, covering "
        f"{sending.period(begin, end)}.\n"
    )
    name = f"{submitter}!{pending.domain}!{begin}!{end}!{report_id.partition('@')[0]}.json.gz"
    msg.add_attachment(compressed, maintype="application", subtype="tlsrpt+gzip", filename=name)
    msg.set_type("multipart/report")
    msg.set_param("report-type", "tlsrpt")
    return msg.as_bytes(policy=email.policy.SMTP)


async def prepare(
    batches: list[Pending], config: Config, resolver: dns.asyncresolver.Resolver, keyring: KeyRing | None, now: float
) -> list[Outgoing]:
    """The report mails for ``batches``, to each domain's ``mailto:`` destinations, DKIM-signed."""
    out = []
    org_name = config.dmarc.org_name or config.server.hostname
    for pending in batches:
        if pending.hosted:
            continue
        rua = await rua_of(resolver, pending.domain)
        if rua is None:
            continue
        recipients = [d.address for d in sending.destinations(rua)]
        if not recipients:
            log.info("reports: %s's TLS reports go to no mailto: address (rua=%.100s)", pending.domain, rua)
            continue
        begin, end = int(pending.begin), int(now)
        report_id = f"{end}.{pending.last_id}@{config.server.hostname}"
        report = report_json(
            pending, org_name=org_name, contact=config.dmarc.reporter, report_id=report_id, begin=begin, end=end
        )
        compressed = gzip.compress(report, mtime=0)
        raw = compose(pending, config, compressed, recipients, report_id, begin, end)
        out.append(Outgoing(pending.domain, await sending.sign(raw, config, keyring), recipients, report_id))
    return out


def commit(
    conn: sqlite3.Connection, batches: list[Pending], outgoing: list[Outgoing], config: Config, now: float
) -> None:
    """Queue the reports and delete the sessions they cover (and those no report could go to)."""
    for mail in outgoing:
        sending.enqueue(conn, config, mail.raw, mail.recipients, f"{TLS_REPORT_PREFIX}{mail.report_id}", now)
        log.info("reports: TLS report for %s queued to %s", mail.domain, ", ".join(mail.recipients))
    for pending in batches:
        conn.execute("DELETE FROM tlsrpt_results WHERE domain = ? AND id <= ?", (pending.domain, pending.last_id))
    expire(conn, now)


async def send(
    read: sending.Reader,
    write: sending.Writer,
    config: Config,
    resolver: dns.asyncresolver.Resolver,
    keyring: KeyRing | None,
    now: float | None = None,
) -> list[Outgoing]:
    """One run over the pending sessions (:func:`.sending.run`)."""
    return await sending.run(read, write, collect, prepare, commit, config, resolver, keyring, now)


def expire(conn: sqlite3.Connection, now: float) -> int:
    """Drop the sessions older than ``KEEP_DAYS`` that no report took: also run by the daily retention purge, so
    what was recorded before ``send_reports`` was switched off does not stay for ever."""
    cursor = conn.execute("DELETE FROM tlsrpt_results WHERE at < ?", (now - KEEP_DAYS * daily.DAY,))
    return int(cursor.rowcount)
