"""The delivery step that records reports: mail from the world to a report address (``[reports] addresses``,
postmaster@ of every hosted domain by default) that carries a DMARC aggregate or TLS-RPT report.

Why it is built this way:
- cheap for all other mail: :meth:`Addresses.match` is a few string comparisons per recipient, and nothing else
  runs unless a report address is among the recipients;
- only authenticated reports count (RFC 7489 §7.1: report mail "MUST conform to the DMARC mechanism, thereby
  resulting in an aligned pass"): anybody can mail postmaster@ a forged report saying that our mail fails;
- reading (MIME, decompression, XML/JSON) runs in a worker thread, bounded by ``[reports] max_size``; recording
  runs in the delivery's transaction inside its own savepoint, so that a report is stored exactly when the message
  carrying it is, and never costs that message: whatever goes wrong is logged and the message delivered as usual;
- only reports about hosted domains (or their subdomains) are kept, and each (kind, org, report id) once.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from .. import addrspec, mailauth, trace
from ..errors import InvalidInput
from ..store import db
from . import dmarc, payload, tlsrpt
from .dmarc import DmarcReport, ReportError
from .tlsrpt import TlsReport

log = logging.getLogger("relentad.reports")

_REPORT_DOMAIN = re.compile(r"Report[ -]Domain:\s*(\S+)", re.IGNORECASE)
_SUBMITTER = re.compile(r"Submitter:\s*(\S+)", re.IGNORECASE)


@dataclass(frozen=True)
class Addresses:
    """``[reports] addresses``: local parts (for every hosted domain) and full addresses, in lower case."""

    local_parts: frozenset[str]
    full: frozenset[str]

    @classmethod
    def of(cls, entries: Iterable[str]) -> Addresses:
        local_parts: set[str] = set()
        full: set[str] = set()
        for entry in entries:
            (full if "@" in entry else local_parts).add(entry.lower())
        return cls(frozenset(local_parts), frozenset(full))

    def match(self, addresses: Iterable[str]) -> list[str]:
        """Those of ``addresses`` (recipients as delivered, normalised) that are report addresses; ``user+tag@``
        counts as ``user@``, the bare ``Postmaster`` as postmaster."""
        if not self.local_parts and not self.full:
            return []
        found = []
        for address in addresses:
            local, _, domain = address.lower().rpartition("@") if "@" in address else (address.lower(), "", "")
            local = local.partition("+")[0]
            if local in self.local_parts or f"{local}@{domain}" in self.full:
                found.append(address)
        return found


def trusted(auth: mailauth.AuthResult | None) -> bool:
    """The report's mail passed DMARC, or (the reporter publishes no DMARC record) SPF or DKIM passed aligned with
    its From domain. None (``[mailauth] verify = false``: nothing is checked) counts as trusted, as elsewhere."""
    if auth is None:
        return True
    if auth.dmarc.result == "pass":
        return True
    author = auth.dmarc.from_domain
    if auth.dmarc.result != "none" or not author:
        return False
    if any(mailauth.aligned(domain, author, "r") for domain in auth.dkim_pass_domains):
        return True
    spf = auth.spf
    return spf.result == "pass" and spf.identity == "mailfrom" and mailauth.aligned(spf.domain, author, "r")


@dataclass(frozen=True)
class Found:
    """One report part of a message: read (``report``) or not (``error`` says why)."""

    kind: str  # "dmarc" or "tls"
    report: DmarcReport | TlsReport | None
    error: str = ""


@dataclass(frozen=True)
class Letter:
    """What the message says about itself, for reports that could not be read."""

    message_id: str
    subject_domain: str  # "Report Domain:" of the Subject (RFC 7489 §7.2.1.1, RFC 8460 §5.3)
    submitter: str  # "Submitter:" of the Subject, else the From domain
    tls: bool  # multipart/report; report-type=tlsrpt


def _letter(raw: bytes) -> Letter:
    try:
        msg = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", policy=email.policy.compat32)
        subject = str(msg.get("Subject", ""))[:500]
        sender = email.utils.parseaddr(str(msg.get("From", "")))[1]
        message_id = str(msg.get("Message-ID", "")).strip()[:500]
        tls = msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "tlsrpt"
    except Exception:
        return Letter("", "", "", False)
    domain = _REPORT_DOMAIN.search(subject)
    submitter = _SUBMITTER.search(subject)
    return Letter(
        message_id=message_id,
        subject_domain=domain.group(1).lower().rstrip(".") if domain else "",
        submitter=submitter.group(1)[:200] if submitter else sender.rpartition("@")[2].lower(),
        tls=tls,
    )


def _kind(part: payload.Part, letter: Letter) -> str:
    """The kind a report that cannot be read claims to be."""
    if letter.tls or "tlsrpt" in part.content_type or ".json" in part.filename.lower():
        return "tls"
    return "dmarc"


def read(raw: bytes, limit: int) -> tuple[Letter, list[Found]]:
    """The reports ``raw`` carries, each read or with why not (never raises); empty when it carries none."""
    found: list[Found] = []
    parts = payload.report_parts(raw)
    letter = _letter(raw) if parts else Letter("", "", "", False)
    for part in parts:
        try:
            data = payload.decompress(part.data, limit)
            head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
            if head == b"{":
                found.append(Found("tls", tlsrpt.parse(data)))
            elif head == b"<":
                found.append(Found("dmarc", dmarc.parse(data)))
            else:
                found.append(Found(_kind(part, letter), None, "neither XML nor JSON"))
        except (payload.PayloadError, ReportError) as exc:
            found.append(Found(_kind(part, letter), None, str(exc)))
        except Exception as exc:  # a parser bug must not cost the message: recorded as not read
            log.exception("reports: reading a report failed")
            found.append(Found(_kind(part, letter), None, f"internal error: {type(exc).__name__}"))
    return letter, found


def hosted(conn: sqlite3.Connection, domain: str) -> bool:
    """``domain`` is a hosted domain or a subdomain of one."""
    try:
        name = addrspec.normalize_domain(domain)
    except InvalidInput:
        return False
    labels = name.split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)] or [name]
    marks = ",".join("?" * len(candidates))
    return conn.execute(f"SELECT 1 FROM domains WHERE name IN ({marks})", candidates).fetchone() is not None


def record(conn: sqlite3.Connection, letter: Letter, found: list[Found], received: float, fallback_domain: str) -> None:
    """Store ``found`` (the delivery's transaction, one of its ``also``): in a savepoint, so that a failure is logged
    and rolled back alone. ``fallback_domain``: the report address's domain, for a report that cannot be read and
    whose Subject names none."""
    with db.on_the_side(conn, log, "reports: recording failed; the message is delivered without it"):
        for item in found:
            _record_one(conn, letter, item, received, fallback_domain)


def _insert_report(conn: sqlite3.Connection, kind: str, values: dict[str, object]) -> int | None:
    """The new report's id; None when this (kind, org, report id) was recorded before."""
    columns = ["kind", *values]
    cursor = conn.execute(
        f"INSERT OR IGNORE INTO reports ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [kind, *values.values()],
    )
    return cursor.lastrowid if cursor.rowcount == 1 else None


SKEW = 86_400
"""How far a report's period may end after the report arrived (clocks, time zones) before it is not believed."""


def _record_one(conn: sqlite3.Connection, letter: Letter, item: Found, received: float, fallback: str) -> None:
    report = item.report
    if report is not None and report.end > received + SKEW:
        # kept as it is, it would be "recent" for years: in the summaries, the doctor's findings, never purged
        ends = time.strftime("%Y-%m-%d", time.gmtime(report.end))
        item, report = Found(item.kind, None, f"its period ends after it arrived, on {ends}"), None
    if report is None:
        domain = letter.subject_domain or fallback
        if not hosted(conn, domain):
            log.info("reports: %s report not recorded: %s is not hosted here", item.kind, trace.clean(domain))
            return
        _insert_report(
            conn,
            item.kind,
            {
                "org": letter.submitter,
                "report_id": "",
                "domain": domain,
                "begin": received,
                "end": received,
                "received": received,
                "message_id": letter.message_id,
                "error": item.error,
            },
        )
        log.info(
            "reports: %s report from %s for %s could not be read: %s",
            item.kind,
            trace.clean(letter.submitter),
            trace.clean(domain),
            item.error,
        )
        return
    if isinstance(report, DmarcReport):
        _record_dmarc(conn, letter, report, received)
    else:
        _record_tls(conn, letter, report, received)


def _record_dmarc(conn: sqlite3.Connection, letter: Letter, report: DmarcReport, received: float) -> None:
    what = f"dmarc report {trace.clean(report.report_id)} from {trace.clean(report.org)}"
    if not hosted(conn, report.domain):
        log.info("reports: %s not recorded: %s is not hosted here", what, trace.clean(report.domain))
        return
    report_id = _insert_report(
        conn,
        "dmarc",
        {
            "org": report.org,
            "report_id": report.report_id,
            "domain": report.domain,
            "begin": report.begin,
            "end": report.end,
            "received": received,
            "contact": report.email,
            "policy": json.dumps(report.policy),
            "message_id": letter.message_id,
        },
    )
    if report_id is None:
        log.info("reports: %s already recorded", what)
        return
    conn.executemany(
        "INSERT INTO dmarc_records (report_id, source_ip, count, disposition, dkim, spf, header_from, envelope_from,"
        " reasons, auth_results) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                report_id,
                r.source_ip,
                r.count,
                r.disposition,
                r.dkim,
                r.spf,
                r.header_from,
                r.envelope_from,
                " ".join(r.reasons),
                json.dumps({"dkim": [asdict(a) for a in r.dkim_results], "spf": [asdict(a) for a in r.spf_results]}),
            )
            for r in report.records
        ],
    )
    dropped = f" ({report.dropped} more dropped)" if report.dropped else ""
    log.info("reports: %s for %s recorded: %d record(s)%s", what, report.domain, len(report.records), dropped)


def _record_tls(conn: sqlite3.Connection, letter: Letter, report: TlsReport, received: float) -> None:
    what = f"tls report {trace.clean(report.report_id)} from {trace.clean(report.org)}"
    policies = [p for p in report.policies if hosted(conn, p.domain)]
    if not policies:
        domains = ", ".join(sorted({trace.clean(p.domain) for p in report.policies}))
        log.info("reports: %s not recorded: %s not hosted here", what, domains)
        return
    report_id = _insert_report(
        conn,
        "tls",
        {
            "org": report.org,
            "report_id": report.report_id,
            "domain": policies[0].domain,
            "begin": report.begin,
            "end": report.end,
            "received": received,
            "contact": report.contact,
            "message_id": letter.message_id,
        },
    )
    if report_id is None:
        log.info("reports: %s already recorded", what)
        return
    conn.executemany(
        "INSERT INTO tls_policies (report_id, policy_type, domain, successes, failures, mx_hosts, strings, details)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                report_id,
                p.policy_type,
                p.domain,
                p.successes,
                p.failures,
                json.dumps(p.mx_hosts),
                json.dumps(p.strings),
                json.dumps([asdict(d) for d in p.details]),
            )
            for p in policies
        ],
    )
    log.info("reports: %s recorded: %d policy(ies)", what, len(policies))
